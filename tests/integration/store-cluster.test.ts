// The content store on a 3-node NATS cluster (as k8s/nats.yaml runs it): with store.replicas 3 a job's content
// outlives the node that led its buckets. Starts its own cluster on loopback ports and stops it.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect as natsConnect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../common/blob-store.js';
import { resolveBinary } from '../../infra/binaries.js';
import { freePort, stopProcess } from '../../infra/services.js';
import { waitUntil } from '../helpers/stack.js';

interface Node {
  name: string;
  url: string;
  child: ChildProcess;
}

const dir = mkdtempSync(join(tmpdir(), 'muse-cluster-'));
const nodes: Node[] = [];
const connections: NatsConnection[] = [];

beforeAll(async () => {
  const ports = await Promise.all(
    Array.from({ length: 3 }, async () => [await freePort(), await freePort()]),
  );
  for (const [i, [client, route]] of ports.entries()) {
    const name = `n${i + 1}`;
    const routes = ports.filter((_, j) => j !== i).map(([, r]) => `nats-route://127.0.0.1:${r}`);
    const conf = join(dir, `${name}.conf`);
    writeFileSync(
      conf,
      `server_name: ${name}\nlisten: 127.0.0.1:${client}\njetstream { store_dir: "${join(dir, name)}" }\n` +
        `cluster { name: muse-test, listen: 127.0.0.1:${route}, routes: [${routes.join(', ')}] }\n`,
    );
    const child = spawn(resolveBinary('nats-server'), ['-c', conf], { stdio: 'ignore' });
    nodes.push({ name, url: `nats://127.0.0.1:${client}`, child });
  }
}, 30_000);

afterAll(async () => {
  await Promise.all(connections.map((nc) => nc.close().catch(() => {})));
  await Promise.all(nodes.map((n) => stopProcess(n.child.pid!, { timeoutMs: 5000 }).catch(() => {})));
  rmSync(dir, { recursive: true, force: true });
});

async function connect(node: Node): Promise<NatsConnection> {
  let nc: NatsConnection | undefined;
  await waitUntil(
    async () => {
      nc = await natsConnect({ servers: node.url }).catch(() => undefined);
      return nc !== undefined;
    },
    20_000,
    `${node.name} to accept connections`,
  );
  connections.push(nc!);
  return nc!;
}

describe('content store on a 3-node NATS cluster', () => {
  it('with 3 replicas, content stays readable and writable after the node leading its buckets is killed', async () => {
    const nc = await connect(nodes[0]!);
    // JetStream answers once the cluster has elected its meta leader.
    let jsm: JetStreamManager | undefined;
    await waitUntil(
      async () => {
        jsm = await jetstreamManager(nc).catch(() => undefined);
        return jsm !== undefined;
      },
      30_000,
      'the cluster to elect a JetStream leader',
    );
    const ns = `replicated-${Date.now()}`;
    const writer = new BlobStore(nc, { replicas: 3 });
    const small = await writer.put(ns, 'a turn');
    const page = 'a long page '.repeat(25_000);
    const large = await writer.put(ns, page);
    const kvInfo = await jsm!.streams.info(`KV_muse-${ns}`);
    const objInfo = await jsm!.streams.info(`OBJ_muse-${ns}`);
    expect(kvInfo.config.num_replicas).toBe(3);
    expect(objInfo.config.num_replicas).toBe(3);

    // Kill the node that leads the KV bucket; read from a node that survives.
    const leader = nodes.find((n) => n.name === kvInfo.cluster?.leader)!;
    expect(leader, `leader ${kvInfo.cluster?.leader}`).toBeDefined();
    leader.child.kill('SIGKILL');
    const survivor = nodes.find((n) => n !== leader && n !== nodes[0]) ?? nodes.find((n) => n !== leader)!;
    const reader = new BlobStore(await connect(survivor));
    let read: [string, string] | undefined;
    await waitUntil(
      async () => {
        read = await Promise.all([reader.get<string>(small), reader.get<string>(large)]).catch(
          () => undefined,
        );
        return read !== undefined;
      },
      20_000,
      'the buckets to elect a new leader',
    );
    expect(read).toEqual(['a turn', page]);
    const after = await new BlobStore(connections.at(-1)!, { replicas: 3 }).put(ns, 'written after the loss');
    expect(await reader.get(after)).toBe('written after the loss');
  }, 90_000);
});
