// The content store on a 3-node NATS cluster (as k8s/nats.yaml runs it, with k8s/nats.conf): with store.replicas 3 a job's content
// outlives the node that led its buckets. Starts its own cluster on loopback ports and stops it.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect as natsConnect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobNotFoundError, BlobStore } from '../../common/blob-store.js';
import { resolveBinary } from '../../infra/binaries.js';
import { freePort, stopProcess } from '../../infra/services.js';
import { waitUntil } from '../helpers/stack.js';

interface Node {
  name: string;
  url: string;
  conf: string;
  child: ChildProcess;
}

function spawnNode(conf: string): ChildProcess {
  return spawn(resolveBinary('nats-server'), ['-c', conf], { stdio: 'ignore' });
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
    nodes.push({ name, url: `nats://127.0.0.1:${client}`, conf, child: spawnNode(conf) });
  }
}, 30_000);

afterAll(async () => {
  await Promise.all(connections.map((nc) => nc.close().catch(() => {})));
  await Promise.all(nodes.map((n) => stopProcess(n.child.pid!, { timeoutMs: 5000 }).catch(() => {})));
  rmSync(dir, { recursive: true, force: true });
});

/** Starts again any node an earlier test killed, so each test begins with the whole cluster. */
function allNodesUp(): void {
  for (const node of nodes)
    if (node.child.exitCode !== null || node.child.signalCode !== null) node.child = spawnNode(node.conf);
}

/** A read that failed while content is out of reach: undefined (try again), unless the store took it for gone. */
function outOfReach(err: unknown): undefined {
  if (err instanceof BlobNotFoundError) throw err;
  return undefined;
}

/** A JetStream manager on `nc`, once the cluster has elected its meta leader. */
async function jetStreamReady(nc: NatsConnection): Promise<JetStreamManager> {
  let jsm: JetStreamManager | undefined;
  await waitUntil(
    async () => {
      jsm = await jetstreamManager(nc).catch(() => undefined);
      return jsm !== undefined;
    },
    30_000,
    'the cluster to elect a JetStream leader',
  );
  return jsm!;
}

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
    const jsm = await jetStreamReady(nc);
    const ns = `replicated-${Date.now()}`;
    const writer = new BlobStore(nc, { replicas: 3 });
    const small = await writer.put(ns, 'a turn');
    const page = 'a long page '.repeat(25_000);
    const large = await writer.put(ns, page);
    const kvInfo = await jsm.streams.info(`KV_muse-${ns}`);
    const objInfo = await jsm.streams.info(`OBJ_muse-${ns}`);
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
        read = await Promise.all([reader.get<string>(small), reader.get<string>(large)]).catch(outOfReach);
        return read !== undefined;
      },
      20_000,
      'the buckets to elect a new leader',
    );
    expect(read).toEqual(['a turn', page]);
    const after = await new BlobStore(connections.at(-1)!, { replicas: 3 }).put(ns, 'written after the loss');
    expect(await reader.get(after)).toBe('written after the loss');
  }, 90_000);

  it('content whose only server is down is out of reach, not gone: the read fails retryably and works once it is back', async () => {
    allNodesUp();
    const nc = await connect(nodes[0]!);
    const jsm = await jetStreamReady(nc);
    const ns = `single-${Date.now()}`;
    const writer = new BlobStore(nc);
    const ref = await writer.put(ns, 'a turn on one server');
    await writer.setMemo(ns, 'search#1', { observation: 'recorded' });
    const holderName = (await jsm.streams.info(`KV_muse-${ns}`)).cluster?.leader;
    const holder = nodes.find((n) => n.name === holderName)!;
    expect(holder, `holder ${holderName}`).toBeDefined();
    holder.child.kill('SIGKILL');

    const other = nodes.find((n) => n !== holder)!;
    const reader = new BlobStore(await connect(other));
    // Not BlobNotFoundError (which fails a step for good) and no memo miss (which runs a recorded tool call again).
    const readErr = await reader.get(ref).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(readErr).toBeInstanceOf(Error);
    expect(readErr).not.toBeInstanceOf(BlobNotFoundError);
    await expect(reader.getMemo(ns, 'search#1')).rejects.not.toBeInstanceOf(BlobNotFoundError);

    holder.child = spawnNode(holder.conf);
    let read: string | undefined;
    await waitUntil(
      async () => {
        read = await reader.get<string>(ref).catch(outOfReach);
        return read !== undefined;
      },
      30_000,
      `${holder.name} to serve the bucket again`,
    );
    expect(read).toBe('a turn on one server');
    expect(await reader.getMemo(ns, 'search#1')).toEqual({ observation: 'recorded' });
    expect(reader.generation(ns), 'the namespace was dropped as deleted during the outage').toBe(0);

    // Nothing answering a read (the client's 'jetstream is not enabled') while the stream is there, as while its
    // server starts again: an error the step retries, not a memo miss that runs a recorded tool call again.
    const kv = await (reader as unknown as { kvs: Map<string, Promise<KV>> }).kvs.get(ns)!;
    const realGet = kv.get.bind(kv);
    kv.get = async () => {
      throw Object.assign(new Error('jetstream is not enabled'), { name: 'JetStreamNotEnabled' });
    };
    try {
      await expect(reader.getMemo(ns, 'search#1')).rejects.toThrow(/jetstream is not enabled/);
      expect(reader.generation(ns), 'the namespace was dropped as deleted').toBe(0);
    } finally {
      kv.get = realGet;
    }
  }, 120_000);

  it("a worker's settings check refuses more replicas than the cluster has servers, and takes as many", async () => {
    allNodesUp();
    const nc = await connect(nodes[0]!);
    await jetStreamReady(nc);
    const tooMany = new BlobStore(nc, { replicas: 5 });
    await expect(tooMany.checkSettings()).rejects.toThrow(
      /refuses the content store's settings \(store\.replicas 5.*no suitable peers/,
    );
    tooMany.close();
    const three = new BlobStore(nc, { replicas: 3 });
    await waitUntil(
      () =>
        three.checkSettings().then(
          () => true,
          () => false,
        ),
      30_000,
      'the cluster to place a bucket on all three nodes',
    );
    three.close();
  }, 60_000);
});
