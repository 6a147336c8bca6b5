import { spawn } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../common/config.js';
import { connectClient } from '../../common/temporal.js';
import { MissingBinaryError, resolveBinary } from '../../infra/binaries.js';
import { isProcessAlive, processStartTime } from '../../infra/processes.js';
import {
  checkNats,
  checkTemporal,
  down,
  freePort,
  isPortInUse,
  type NatsHandle,
  namespaceRetentionMs,
  PortInUseError,
  readStackFile,
  type ServiceRecord,
  ServiceStartError,
  stackFilePath,
  stackStatus,
  startNats,
  startTemporal,
  type TemporalHandle,
  up,
} from '../../infra/services.js';
import { onFreePorts, startAll } from '../helpers/servers.js';
import { repoRoot } from '../helpers/stack.js';
import { tempDir } from '../helpers/temp.js';

/** Pids of the processes whose command line (arguments joined by spaces) matches, read from /proc. */
function processesWhoseCommandLine(matches: (args: string) => boolean): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string;
    try {
      args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch {
      continue; // gone meanwhile, or not ours to read
    }
    if (matches(args)) pids.push(Number(entry));
  }
  return pids;
}

const infraDir = () => tempDir('muse-infra-');
/** Directories a test makes beside its temporary ones (a sibling named after one), removed at the end too. */
const dirs: string[] = [];

async function occupy(port: number): Promise<Server> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(port, '127.0.0.1', ok));
  return server;
}

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('global setup', () => {
  it('exposes reachable Temporal and NATS servers', async () => {
    const temporalAddress = inject('temporalAddress');
    const natsUrl = inject('natsUrl');
    expect(temporalAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(natsUrl).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    expect(inject('dataDir')).toBeTruthy();
    await checkTemporal(temporalAddress);
    await checkNats(natsUrl, 8 * 1024 * 1024);
  });

  it('a client set up for TLS does not fall back to plaintext: the plaintext dev server refuses it', async () => {
    const cfg = loadConfig({ env: { MUSE_TEMPORAL_ADDRESS: inject('temporalAddress') } });
    const client = await connectClient(cfg);
    await client.connection.close();
    await expect(connectClient({ ...cfg, temporal: { ...cfg.temporal, tls: true } })).rejects.toThrow(
      /cannot reach the Temporal server/,
    );
  });
});

describe('startTemporal / startNats', () => {
  it('start, answer health checks, and stop', async () => {
    const dataDir = infraDir();
    let temporalPort = 0;
    let natsPort = 0;
    const [temporal, nats] = await startAll<[TemporalHandle, NatsHandle]>([
      onFreePorts((port) => {
        temporalPort = port;
        return startTemporal({
          dataDir,
          port,
          namespace: 'muse-infra-test',
          retentionMs: namespaceRetentionMs(7 * 24 * 3_600_000),
        });
      }),
      onFreePorts((port) => {
        natsPort = port;
        return startNats({ dataDir, port });
      }),
    ]);
    try {
      expect(temporal.address).toBe(`127.0.0.1:${temporalPort}`);
      expect(nats.url).toBe(`nats://127.0.0.1:${natsPort}`);
      expect(isProcessAlive(temporal.pid)).toBe(true);
      expect(isProcessAlive(nats.pid)).toBe(true);
      await checkTemporal(temporal.address, 'muse-infra-test');
      // Ended runs are kept as long as their content (the store's 7 days), not the dev server's own day.
      const connection = await Connection.connect({ address: temporal.address });
      try {
        const { config } = await connection.workflowService.describeNamespace({
          namespace: 'muse-infra-test',
        });
        expect(Number(config?.workflowExecutionRetentionTtl?.seconds)).toBe(7 * 24 * 3_600);
      } finally {
        await connection.close();
      }
      // 8 MiB default payload, so large bodies need no object-store detour unless they exceed it.
      await checkNats(nats.url, 8 * 1024 * 1024);
      expect(existsSync(join(dataDir, 'temporal.db'))).toBe(true);
    } finally {
      await Promise.all([temporal.stop(), nats.stop()]);
    }
    expect(isProcessAlive(temporal.pid)).toBe(false);
    expect(isProcessAlive(nats.pid)).toBe(false);
    expect(await isPortInUse(temporalPort)).toBe(false);
    expect(await isPortInUse(natsPort)).toBe(false);
    // stop is idempotent
    await temporal.stop();
    await nats.stop();
  });

  it('a retention the server refuses is a warning, not a failed start: the server is up and answers', async () => {
    const dataDir = infraDir();
    const temporal = await onFreePorts((port) => startTemporal({ dataDir, port, retentionMs: -3_600_000 }));
    try {
      expect(temporal.retentionWarning).toMatch(
        /^could not set namespace default's retention to -1 h \(.+\): ended runs are kept for the server's own retention$/,
      );
      await checkTemporal(temporal.address);
    } finally {
      await temporal.stop();
    }
  });

  it('refuse a taken port with a clear error before spawning', async () => {
    const port = await freePort();
    const blocker = await occupy(port);
    try {
      const nats = startNats({ dataDir: infraDir(), port });
      await expect(nats).rejects.toBeInstanceOf(PortInUseError);
      await expect(nats).rejects.toThrow(
        `port ${port} on 127.0.0.1 is already in use; pass --nats-port or stop the other process`,
      );
      await expect(startTemporal({ dataDir: infraDir(), port })).rejects.toThrow(
        `port ${port} on 127.0.0.1 is already in use; pass --temporal-port or stop the other process`,
      );
    } finally {
      await new Promise((ok) => blocker.close(ok));
    }
  });

  describe('binary resolution', () => {
    const saved = { nats: process.env.MUSE_NATS_SERVER_BIN, temporal: process.env.MUSE_TEMPORAL_BIN };
    afterEach(() => {
      for (const [key, value] of [
        ['MUSE_NATS_SERVER_BIN', saved.nats],
        ['MUSE_TEMPORAL_BIN', saved.temporal],
      ] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    });

    it('resolves both binaries to absolute paths', () => {
      expect(resolveBinary('temporal')).toMatch(/^\//);
      expect(resolveBinary('nats-server')).toMatch(/^\//);
    });

    it('a missing binary gives MissingBinaryError with an install hint', async () => {
      process.env.MUSE_NATS_SERVER_BIN = '/nonexistent';
      expect(() => resolveBinary('nats-server')).toThrow(MissingBinaryError);
      const start = startNats({ dataDir: infraDir(), port: await freePort() });
      await expect(start).rejects.toBeInstanceOf(MissingBinaryError);
      await expect(start).rejects.toThrow(/nats-server-bin/);

      process.env.MUSE_TEMPORAL_BIN = '/nonexistent/temporal';
      await expect(startTemporal({ dataDir: infraDir(), port: await freePort() })).rejects.toThrow(
        MissingBinaryError,
      );
    });

    it('a server that dies during startup fails fast with its log tail', async () => {
      const dir = infraDir();
      const fake = join(dir, 'nats-server');
      writeFileSync(fake, '#!/bin/sh\necho "fake nats-server: config rejected" >&2\nexit 3\n');
      chmodSync(fake, 0o755);
      process.env.MUSE_NATS_SERVER_BIN = fake;
      const started = Date.now();
      const start = startNats({ dataDir: dir, port: await freePort() });
      await expect(start).rejects.toBeInstanceOf(ServiceStartError);
      await expect(start).rejects.toThrow(/exited during startup \(code 3\)[\s\S]*config rejected/);
      expect(Date.now() - started).toBeLessThan(10_000);
    });

    it('a server that lost its port to another one is not taken for healthy because that one answers', async () => {
      const dir = infraDir();
      const pidFile = join(dir, 'other.pid');
      // The port race, staged: the spawned "server" starts another nats-server on its port (detached, not its
      // descendant, as another data directory's server starting at that moment would be), then fails to bind.
      const fake = join(dir, 'nats-server');
      writeFileSync(
        fake,
        [
          '#!/bin/sh',
          `( "${resolveBinary('nats-server')}" "$@" -sd "${join(dir, 'other')}" -P "${pidFile}" >/dev/null 2>&1 & )`,
          'sleep 3',
          'echo "listen tcp: bind: address already in use" >&2',
          'exit 1',
          '',
        ].join('\n'),
      );
      chmodSync(fake, 0o755);
      process.env.MUSE_NATS_SERVER_BIN = fake;
      try {
        const start = startNats({ dataDir: dir, port: await freePort() });
        await expect(start).rejects.toThrow(/exited during startup \(code 1\)[\s\S]*address already in use/);
        // The other server did answer meanwhile: the check was not passed for want of one.
        expect(existsSync(pidFile)).toBe(true);
      } finally {
        if (existsSync(pidFile)) process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 'SIGTERM');
      }
    });
  });
});

describe('up / down', () => {
  let dataDir: string;
  let temporalPort: number;
  let natsPort: number;

  beforeAll(async () => {
    dataDir = infraDir();
    temporalPort = await freePort();
    natsPort = await freePort();
  });

  afterAll(async () => {
    await down({ dataDir });
  });

  it('down before anything ran is fine', async () => {
    const result = await down({ dataDir });
    expect(result.wasRunning).toBe(false);
    expect(result.stopped).toEqual([]);
  });

  it('up starts the stack in the background and is idempotent', async () => {
    const first = await up({ dataDir, temporalPort, natsPort });
    expect(first.alreadyRunning).toBe(false);
    expect(first.started.sort()).toEqual(['nats', 'temporal']);
    expect(first.temporalAddress).toBe(`127.0.0.1:${temporalPort}`);
    expect(first.natsUrl).toBe(`nats://127.0.0.1:${natsPort}`);
    expect(existsSync(stackFilePath(dataDir))).toBe(true);
    expect(existsSync(join(dataDir, 'logs', 'temporal.log'))).toBe(true);
    expect(existsSync(join(dataDir, 'logs', 'nats.log'))).toBe(true);

    const status = await stackStatus({ dataDir });
    expect(status.running).toBe(true);
    expect(status.temporal?.healthy).toBe(true);
    expect(status.nats?.healthy).toBe(true);

    const again = await up({ dataDir, temporalPort, natsPort });
    expect(again.alreadyRunning).toBe(true);
    expect(again.started).toEqual([]);
    expect(again.messages.join('\n')).toMatch(/already running/);
    expect(again.stack.temporal.pid).toBe(first.stack.temporal.pid);
    expect(again.stack.nats.pid).toBe(first.stack.nats.pid);

    // Without explicit ports, up() reuses whatever the running stack has.
    const plain = await up({ dataDir });
    expect(plain.alreadyRunning).toBe(true);
  });

  it('up refuses to silently ignore a different explicit port', async () => {
    const other = await freePort();
    await expect(up({ dataDir, temporalPort: other, natsPort })).rejects.toThrow(/already running on port/);
  });

  it('up refuses a namespace the running server was not started with, and sets a changed retention on it', async () => {
    // Kept running, the server would hold only 'default': workers of 'research' would fail later, not here.
    await expect(up({ dataDir, namespace: 'research' })).rejects.toThrow(
      /already running without namespace 'research' \(temporal\.namespace \/ MUSE_TEMPORAL_NAMESPACE; it was started with 'default'\): run `muse down`/,
    );
    const retentionMs = 3 * 24 * 3_600_000;
    const kept = await up({ dataDir, retentionMs });
    expect(kept.alreadyRunning).toBe(true);
    const connection = await Connection.connect({ address: kept.temporalAddress });
    try {
      const ns = await connection.workflowService.describeNamespace({ namespace: 'default' });
      expect(Number(ns.config?.workflowExecutionRetentionTtl?.seconds)).toBe(retentionMs / 1000);
    } finally {
      await connection.close();
    }
  });

  it('up restarts only the service that died', async () => {
    const before = await stackStatus({ dataDir });
    const natsPid = before.nats?.record.pid ?? 0;
    const temporalPid = before.temporal?.record.pid ?? 0;
    process.kill(natsPid, 'SIGKILL');
    await expect.poll(() => isProcessAlive(natsPid), { timeout: 10_000 }).toBe(false);

    // No ports given: the dead one comes back on the port it had, where the running worker and members look.
    const result = await up({ dataDir });
    expect(result.started).toEqual(['nats']);
    expect(result.stack.temporal.pid).toBe(temporalPid);
    expect(result.stack.nats.pid).not.toBe(natsPid);
    expect(result.natsUrl).toBe(`nats://127.0.0.1:${natsPort}`);
    await checkNats(result.natsUrl);
  });

  it('down({ only }) stops those and keeps the others recorded (muse demo stops only what it started)', async () => {
    const before = await stackStatus({ dataDir });
    const [natsPid, temporalPid] = [before.nats!.record.pid, before.temporal!.record.pid];
    const result = await down({ dataDir, only: ['nats'] });
    expect(result.stopped).toEqual(['nats']);
    expect(isProcessAlive(natsPid)).toBe(false);
    expect(isProcessAlive(temporalPid)).toBe(true);
    const after = await stackStatus({ dataDir });
    expect(after.temporal?.record.pid).toBe(temporalPid);
    expect(after.nats).toBeUndefined();
    expect((await up({ dataDir, temporalPort, natsPort })).started).toEqual(['nats']);
  });

  it("a demo's servers are stopped when it ends, unless a muse up found them running meanwhile", async () => {
    await down({ dataDir, only: ['nats'] });
    // As muse demo starts them: marked as its own; the one already running is not.
    const demo = await up({ dataDir, temporalPort, natsPort, temporary: true });
    expect(demo.started).toEqual(['nats']);
    expect(demo.stack.nats.temporaryFor).toBe(process.pid);
    expect(demo.stack.temporal.temporaryFor).toBeUndefined();
    // A muse up meanwhile reports it running, and so wants it kept.
    const plain = await up({ dataDir, temporalPort, natsPort });
    expect(plain.alreadyRunning).toBe(true);
    expect(plain.messages.join('\n')).toMatch(
      new RegExp(`nats was started by muse demo \\(pid ${process.pid}\\); it now stays up`),
    );
    expect(plain.stack.nats.temporaryFor).toBeUndefined();
    const ended = await down({ dataDir, temporaryFor: process.pid });
    expect(ended.stopped).toEqual([]);
    expect(ended.messages.join('\n')).toMatch(/nats left running .*another session since wants it/);
    expect(isProcessAlive(demo.stack.nats.pid)).toBe(true);
    expect((await stackStatus({ dataDir })).nats?.record.pid).toBe(demo.stack.nats.pid);
    // Not claimed, the demo's own server goes when it ends; the other stays recorded.
    await down({ dataDir, only: ['nats'] });
    const again = await up({ dataDir, temporalPort, natsPort, temporary: true });
    const done = await down({ dataDir, temporaryFor: process.pid });
    expect(done.stopped).toEqual(['nats']);
    expect(isProcessAlive(again.stack.nats.pid)).toBe(false);
    const after = await stackStatus({ dataDir });
    expect(after.nats).toBeUndefined();
    expect(after.temporal?.record.pid).toBe(demo.stack.temporal.pid);
    expect((await up({ dataDir, temporalPort, natsPort })).started).toEqual(['nats']);
  });

  it('down stops everything and is idempotent', async () => {
    const status = await stackStatus({ dataDir });
    const pids = [status.temporal?.record.pid ?? 0, status.nats?.record.pid ?? 0];

    const first = await down({ dataDir });
    expect(first.wasRunning).toBe(true);
    expect(first.stopped.sort()).toEqual(['nats', 'temporal']);
    for (const pid of pids) expect(isProcessAlive(pid)).toBe(false);
    expect(existsSync(stackFilePath(dataDir))).toBe(false);
    expect(await isPortInUse(temporalPort)).toBe(false);
    expect(await isPortInUse(natsPort)).toBe(false);

    const second = await down({ dataDir });
    expect(second.wasRunning).toBe(false);
    expect((await stackStatus({ dataDir })).running).toBe(false);
  });

  it('up after down starts again on the same data', async () => {
    const result = await up({ dataDir, temporalPort, natsPort });
    expect(result.started.sort()).toEqual(['nats', 'temporal']);
    await down({ dataDir });
  });
});

describe('a stale stack file', () => {
  /** Records naming another stack's servers, as a crash and pid reuse can leave them behind. */
  const staleRecords = (
    stack: Awaited<ReturnType<typeof up>>['stack'],
    as: (record: ServiceRecord) => ServiceRecord,
  ) => ({ temporal: as(stack.temporal), nats: as(stack.nats) });

  /** `mine`'s stack file naming the running stack of `theirs` (its records as `as` writes them): down(mine) spares it. */
  async function downSparesTheirs(
    mine: string,
    theirs: string,
    as: (record: ServiceRecord) => ServiceRecord,
  ): Promise<void> {
    const other = await up({ dataDir: theirs, temporalPort: await freePort(), natsPort: await freePort() });
    try {
      const records = staleRecords(other.stack, as);
      writeFileSync(stackFilePath(mine), JSON.stringify({ version: 1, dataDir: mine, ...records }));
      const result = await down({ dataDir: mine });
      expect(result.stopped).toEqual([]);
      expect(isProcessAlive(other.stack.temporal.pid)).toBe(true);
      expect(isProcessAlive(other.stack.nats.pid)).toBe(true);
    } finally {
      await down({ dataDir: theirs });
    }
  }

  it("never stops another data directory's servers, even when its pids now name them", async () => {
    const mine = infraDir();
    // As this directory's own up recorded its servers: with this directory, and their start times.
    await downSparesTheirs(mine, infraDir(), (r) => ({ ...r, dataDir: mine, processStart: '1' }));
  });

  it('written by an older muse (no start times), a sibling directory whose name extends this one is not this one', async () => {
    const mine = infraDir();
    dirs.push(`${mine}-2`);
    await downSparesTheirs(mine, `${mine}-2`, ({ dataDir: _d, dataDirId: _i, processStart: _s, ...r }) => r);
  });
});

describe('the servers a stack file records', () => {
  /** This test's servers, by their command lines (both name paths inside the data directory). */
  const serversOf = (dataDir: string) =>
    processesWhoseCommandLine((args) => args.includes(`${dataDir}/`) && !args.includes('muse.js'));

  it('are stopped by down through another path to the same directory (a symlink), as they were started', async () => {
    const real = infraDir();
    const link = `${infraDir()}/link`;
    symlinkSync(real, link);
    const started = await up({ dataDir: link, temporalPort: await freePort(), natsPort: await freePort() });
    try {
      const result = await down({ dataDir: real });
      expect(result.stopped.sort()).toEqual(['nats', 'temporal']);
      expect(isProcessAlive(started.stack.temporal.pid)).toBe(false);
      expect(isProcessAlive(started.stack.nats.pid)).toBe(false);
    } finally {
      await down({ dataDir: link });
    }
  });

  it("are not a copy's: a data directory copied with its stack file (a backup) does not stop or take the original's", async () => {
    const original = infraDir();
    const copy = infraDir();
    const started = await up({
      dataDir: original,
      temporalPort: await freePort(),
      natsPort: await freePort(),
    });
    try {
      copyFileSync(stackFilePath(original), stackFilePath(copy));
      expect((await stackStatus({ dataDir: copy })).running).toBe(false);
      expect((await down({ dataDir: copy })).stopped).toEqual([]);
      expect(isProcessAlive(started.stack.temporal.pid)).toBe(true);
      expect(isProcessAlive(started.stack.nats.pid)).toBe(true);
    } finally {
      await down({ dataDir: original });
    }
  });

  it('are not left running when their record cannot be written: up fails and stops them', async () => {
    const dataDir = infraDir();
    // A directory where stack.json goes: it cannot be replaced, as on a full or read-only disk.
    mkdirSync(join(dataDir, 'stack.json', 'in-the-way'), { recursive: true });
    try {
      await expect(
        up({ dataDir, temporalPort: await freePort(), natsPort: await freePort() }),
      ).rejects.toThrow(/stack\.json/);
      expect(serversOf(dataDir)).toEqual([]);
    } finally {
      for (const pid of serversOf(dataDir)) process.kill(pid, 'SIGKILL');
    }
  });

  it('a server muse up started, restarted by muse demo, stays up when the demo ends', async () => {
    const dataDir = infraDir();
    const ports = { temporalPort: await freePort(), natsPort: await freePort() };
    try {
      const first = await up({ dataDir, ...ports });
      process.kill(first.stack.temporal.pid, 'SIGKILL');
      await expect.poll(() => isProcessAlive(first.stack.temporal.pid), { timeout: 10_000 }).toBe(false);
      const demo = await up({ dataDir, ...ports, temporary: true });
      expect(demo.started).toEqual(['temporal']);
      expect(demo.stack.temporal.temporaryFor).toBeUndefined();
      const ended = await down({ dataDir, temporaryFor: process.pid });
      expect(ended.stopped).toEqual([]);
      expect(isProcessAlive(demo.stack.temporal.pid)).toBe(true);
      expect((await stackStatus({ dataDir })).running).toBe(true);
    } finally {
      await down({ dataDir });
    }
  });
});

describe('two muse up at once', () => {
  it('on one data directory, the second waits for the first and finds its stack running', async () => {
    const dataDir = infraDir();
    const ports = { temporalPort: await freePort(), natsPort: await freePort() };
    try {
      const [a, b] = await Promise.all([up({ dataDir, ...ports }), up({ dataDir, ...ports })]);
      const [starter, waiter] = a.started.length > 0 ? [a, b] : [b, a];
      expect(starter.started.sort()).toEqual(['nats', 'temporal']);
      expect(waiter.alreadyRunning).toBe(true);
      expect(waiter.started).toEqual([]);
      expect(waiter.stack.temporal.pid).toBe(starter.stack.temporal.pid);
      expect(existsSync(join(dataDir, 'up.lock'))).toBe(false);
    } finally {
      await down({ dataDir });
    }
  });

  it('down waits for an up under way on its data directory, instead of acting on the stack file it is rewriting', async () => {
    const dataDir = infraDir();
    const ports = { temporalPort: await freePort(), natsPort: await freePort() };
    await up({ dataDir, ...ports });
    const { holder, waitingFor } = holdUpLock(dataDir);
    const told: string[] = [];
    try {
      const result = await down({ dataDir, onWaiting: (m) => told.push(m) });
      // It stopped the servers only once that process was gone, and said whom it waited for meanwhile.
      expect(holder.exitCode).toBe(0);
      expect(told).toEqual([waitingFor]);
      expect(result.stopped.sort()).toEqual(['nats', 'temporal']);
    } finally {
      holder.kill();
      await down({ dataDir });
    }
  });

  it('says whom it waits for once the wait is noticeable, and goes on when that process is gone', async () => {
    const dataDir = infraDir();
    const ports = { temporalPort: await freePort(), natsPort: await freePort() };
    const { holder, waitingFor } = holdUpLock(dataDir);
    const told: string[] = [];
    try {
      const r = await up({ dataDir, ...ports, onWaiting: (m) => told.push(m) });
      expect(told).toEqual([waitingFor]);
      expect(holder.exitCode).toBe(0);
      expect(r.started.sort()).toEqual(['nats', 'temporal']);
    } finally {
      holder.kill();
      await down({ dataDir });
    }
  });
});

/**
 * Another process on this host holding `dataDir`'s up.lock for 3 s, as a slow first `muse up` would (past the 2 s
 * after which a waiting up or down says so), and what the waiting one says of it.
 */
function holdUpLock(dataDir: string) {
  const holder = spawn('sleep', ['3']);
  const pid = holder.pid!;
  writeFileSync(
    join(dataDir, 'up.lock'),
    JSON.stringify({ pid, host: hostname(), start: processStartTime(pid) }),
  );
  const waitingFor = `another muse up (pid ${pid} on ${hostname()}) is starting the servers of ${dataDir}; waiting for it`;
  return { holder, waitingFor };
}

/**
 * `muse <command>` as a child process on a data directory and ports of its own; `output()` is all it printed. `env`:
 * more of its environment.
 */
async function museOnOwnPorts(command: 'up' | 'demo', env: NodeJS.ProcessEnv = {}) {
  const dataDir = infraDir();
  const [temporalPort, natsPort] = [await freePort(), await freePort()];
  const child = spawn(
    process.execPath,
    [
      join(repoRoot, 'bin', 'muse.js'),
      '--data-dir',
      dataDir,
      command,
      '--temporal-port',
      String(temporalPort),
      '--nats-port',
      String(natsPort),
    ],
    { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  let printed = '';
  child.stdout!.on('data', (d: Buffer) => (printed += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (printed += d.toString()));
  // 'close', not 'exit': its last output may still be in the pipes when it exits.
  const exited = new Promise<number | null>((ok) => child.on('close', (code) => ok(code)));
  return { dataDir, temporalPort, child, output: () => printed, exited };
}

describe('muse up', () => {
  it.each(['as installed', 'behind a wrapper script that does not exec'])(
    'interrupted while its servers start (%s), stops them instead of leaving them running unrecorded',
    async (how) => {
      let env: NodeJS.ProcessEnv = {};
      if (how !== 'as installed') {
        // The server runs as the wrapper's child: signalled alone, the wrapper would die and leave it running.
        const wrapper = join(infraDir(), 'temporal-wrapper');
        writeFileSync(wrapper, `#!/bin/sh\n"${resolveBinary('temporal')}" "$@"\n`);
        chmodSync(wrapper, 0o755);
        env = { MUSE_TEMPORAL_BIN: wrapper };
      }
      const { dataDir, child, output, exited } = await museOnOwnPorts('up', env);
      // The servers of this data directory, by their command lines (both name a path inside it), read from /proc
      // (slim images have no ps). A zombie's command line is empty, so only running servers are found.
      const servers = () =>
        processesWhoseCommandLine((args) => args.includes(dataDir) && !args.includes('muse.js'));
      try {
        await expect.poll(servers, { timeout: 30_000, interval: 20 }).not.toEqual([]);
        child.kill('SIGINT');
        expect(await exited).toBe(130);
        expect(output()).toMatch(/interrupted \(SIGINT\) while starting the servers/);
        await expect.poll(servers, { timeout: 15_000 }).toEqual([]);
      } finally {
        child.kill('SIGKILL');
        for (const pid of servers()) process.kill(pid, 'SIGKILL');
      }
    },
  );
  it('killed while its servers start (SIGKILL cannot be caught), leaves them recorded: the next up keeps them', async () => {
    const { dataDir, child, exited } = await museOnOwnPorts('up');
    try {
      // Recorded as soon as it is spawned, before it answers.
      await expect
        .poll(() => readStackFile(dataDir)?.temporal?.starting, { timeout: 30_000, interval: 10 })
        .toBe(true);
      const spawned = readStackFile(dataDir)!.temporal!.pid;
      child.kill('SIGKILL');
      await exited;
      expect(isProcessAlive(spawned)).toBe(true);
      const again = await up({ dataDir });
      expect(again.started).not.toContain('temporal');
      expect(again.stack.temporal.pid).toBe(spawned);
      expect(again.stack.temporal.starting).toBeUndefined();
      const result = await down({ dataDir });
      expect(result.stopped.sort()).toEqual(['nats', 'temporal']);
      expect(isProcessAlive(spawned)).toBe(false);
    } finally {
      child.kill('SIGKILL');
      await down({ dataDir });
    }
  });
});

describe('muse demo', () => {
  it('stops the servers it started when interrupted mid-run (they run detached: Ctrl-C does not reach them)', async () => {
    const { dataDir, temporalPort, child, output, exited } = await museOnOwnPorts('demo');
    try {
      await expect.poll(output, { timeout: 60_000, interval: 50 }).toMatch(/started \(policy/);
      const { temporal, nats } = await stackStatus({ dataDir });
      const pids = [temporal?.record.pid ?? 0, nats?.record.pid ?? 0];
      expect(pids.every((p) => p > 0 && isProcessAlive(p))).toBe(true);
      child.kill('SIGINT');
      expect(await exited).toBe(130);
      expect(output()).toMatch(/interrupted \(SIGINT\); stopping the servers it started/);
      for (const pid of pids) expect(isProcessAlive(pid)).toBe(false);
      expect(await isPortInUse(temporalPort)).toBe(false);
    } finally {
      child.kill('SIGKILL');
      await down({ dataDir });
    }
  });
});
