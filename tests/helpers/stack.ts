// Test harness over the real servers started by tests/setup/global.ts: configs with a unique task queue,
// in-process pool members and workers, and rollout workers as child processes (to SIGKILL them).
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, inject } from 'vitest';
import { loadConfig, type MuseConfig } from '../../common/config.js';
import { connectNats } from '../../common/nats.js';
import { connectClient } from '../../common/temporal.js';
import type { BackendSpec } from '../../inference/backends/index.js';
import { PoolMember } from '../../inference/member.js';
import type { BackendRequest, InferenceBackend } from '../../inference/types.js';
import { startPoolMember } from '../../workers/pool-member.js';
import { createRolloutWorker, type RolloutWorkerOptions } from '../../workers/rollout-worker.js';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export function testConfig(overrides: Record<string, unknown> = {}): MuseConfig {
  const id = randomUUID().slice(0, 8);
  return loadConfig({
    env: {},
    overrides: {
      dataDir: join(inject('dataDir'), 'state'),
      temporal: { address: inject('temporalAddress'), taskQueue: `muse-test-${id}` },
      nats: { url: inject('natsUrl') },
      router: { memberTtlMs: 1500 },
      ...overrides,
    },
  });
}

/**
 * The environment of a `muse` child of a test: the test's config, and none of the caller's own Muse settings (a
 * MUSE_CONFIG or namespace of the developer's would point the child elsewhere than the in-process side, which
 * reads none of them); the binaries' locations, the SDK's log level and the test settings stay.
 */
export function configEnv(cfg: MuseConfig): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) =>
        !k.startsWith('MUSE_') ||
        k.startsWith('MUSE_TEST_') ||
        k === 'MUSE_TEMPORAL_BIN' ||
        k === 'MUSE_NATS_SERVER_BIN' ||
        k === 'MUSE_LOG_LEVEL',
    ),
  );
  return {
    ...inherited,
    MUSE_DATA_DIR: cfg.dataDir,
    MUSE_TEMPORAL_ADDRESS: cfg.temporal.address,
    MUSE_TASK_QUEUE: cfg.temporal.taskQueue,
    MUSE_NATS_URL: cfg.nats.url,
    MUSE_ROUTING_POLICY: cfg.router.policy,
    MUSE_MEMBER_TTL_MS: String(cfg.router.memberTtlMs),
    MUSE_TRACE_EXPORTER: cfg.telemetry.exporter,
    ...(cfg.telemetry.file ? { MUSE_TRACE_FILE: cfg.telemetry.file } : {}),
  };
}

export async function inProcessMember(
  cfg: MuseConfig,
  backend: BackendSpec = { backend: 'sim' },
  extra: { pool?: string; id?: string; capacity?: number } = {},
) {
  return startPoolMember({
    config: cfg,
    pool: extra.pool ?? 'default',
    backend,
    id: extra.id,
    capacity: extra.capacity,
  });
}

export async function inProcessWorker(cfg: MuseConfig, opts: Partial<RolloutWorkerOptions> = {}) {
  const w = await createRolloutWorker({ config: cfg, ...opts });
  const running = w.run();
  return {
    ...w,
    async stop() {
      await w.shutdown();
      await running.catch(() => {});
    },
  };
}

/** Spawns `muse <args>` as a separate process; resolves once `readyPattern` appears on its stderr. */
export async function spawnMuse(
  cfg: MuseConfig,
  args: string[],
  readyPattern: RegExp,
  timeoutMs = 60_000,
): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'muse.js'), ...args], {
    cwd: repoRoot,
    env: configEnv(cfg),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Not left running: it would take the test queue's tasks, and reconnect to NATS forever after the run.
      child.kill('SIGKILL');
      reject(new Error(`muse ${args.join(' ')} not ready after ${timeoutMs} ms:\n${log}`));
    }, timeoutMs);
    const onData = (d: Buffer) => {
      log += d.toString();
      if (readyPattern.test(log)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stderr!.on('data', onData);
    child.stdout!.on('data', (d: Buffer) => {
      log += d.toString();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`muse ${args.join(' ')} exited with ${code} before ready:\n${log}`));
    });
  });
  return child;
}

/** `muse <args>` as a child process, run to its end: the child (to stop it early) and its exit code and output. */
export function runMuse(cfg: MuseConfig, args: string[]) {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'muse.js'), ...args], {
    cwd: repoRoot,
    env: configEnv(cfg),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  // 'close', not 'exit': output still in the pipes when the process exits would be missing from what it printed.
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('close', (code) => resolve({ code, stdout, stderr })),
  );
  return { child, done };
}

/**
 * `muse <args>` on a terminal of its own (a pseudo-terminal from util-linux's `script`), as a person runs it: what a
 * command does only on a terminal (progress bars) runs. Standard output and error come back as one stream.
 */
export function runMuseOnTerminal(cfg: MuseConfig, args: string[]) {
  const quote = (a: string) => `'${a.replaceAll("'", "'\\''")}'`;
  const line = [process.execPath, join(repoRoot, 'bin', 'muse.js'), ...args].map(quote).join(' ');
  const child = spawn('script', ['-qec', line, '/dev/null'], {
    cwd: repoRoot,
    // script runs the line with $SHELL: the quoting above is a POSIX shell's.
    env: { ...configEnv(cfg), COLUMNS: '160', SHELL: '/bin/sh' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  for (const stream of [child.stdout!, child.stderr!])
    stream.on('data', (d: Buffer) => {
      output += d.toString();
    });
  const done = new Promise<{ code: number | null; output: string }>((resolve) =>
    child.once('close', (code) => resolve({ code, output })),
  );
  return { child, done };
}

/** `muse <args>` as runMuse runs it, its child killed with the suite's if the test ends first (a hang, a failure). */
export function runMuseInSuite(suite: Suite, cfg: MuseConfig, args: string[]) {
  const run = runMuse(cfg, args);
  suite.children.push(run.child);
  return run;
}

export function killHard(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

export async function natsFor(cfg: MuseConfig): Promise<NatsConnection> {
  return connectNats(cfg, 'muse-test');
}

/** `nc` as seen by code that reads the server's max_payload: a server taking `bytes` per message. */
export function withMaxPayload(nc: NatsConnection, bytes: number): NatsConnection {
  return new Proxy(nc, {
    get(target, prop) {
      if (prop === 'info') return { ...target.info!, max_payload: bytes };
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
  what = 'condition',
): Promise<void> {
  const until = Date.now() + timeoutMs;
  // A condition that throws (a describe or query the server could not answer just then) is asked again: one
  // transient error does not end the wait; the last one is named if the wait runs out.
  let lastError: unknown;
  while (Date.now() < until) {
    try {
      if (await cond()) return;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `timed out waiting for ${what}${lastError === undefined ? '' : ` (last asked: ${(lastError as Error)?.message ?? lastError})`}`,
    lastError === undefined ? undefined : { cause: lastError },
  );
}

/** A started member of `pool` (its id the pool's name) whose server answers as `generate` does. */
export async function scriptedMember(
  nc: NatsConnection,
  pool: string,
  generate: InferenceBackend['generate'],
): Promise<PoolMember> {
  const m = new PoolMember({ nc, pool, id: pool, backend: { kind: 'scripted', generate } });
  await m.start();
  return m;
}

/** Wraps a backend so a test sees every model request a pool member serves. */
export function recordingBackend(
  inner: InferenceBackend,
  onRequest: (req: BackendRequest) => void,
): InferenceBackend {
  return {
    kind: inner.kind,
    load: () => inner.load!(),
    generate(req, signal) {
      onRequest(req);
      return inner.generate(req, signal);
    },
  };
}

/** What a test file shares: a Temporal client and a NATS connection, and what to tear down after it. */
export interface Suite {
  readonly cfg: MuseConfig;
  client: Client;
  nc: NatsConnection;
  /** Child processes (muse workers, members) to SIGKILL after the file, whatever state its tests left. */
  children: ChildProcess[];
  /** Run after the file, last added first, before the connections close. */
  cleanups: Array<() => unknown>;
}

/**
 * Registers the file's beforeAll/afterAll: connects a client and NATS before the tests, then kills children, runs
 * cleanups and closes the connections after them. Fields are set once beforeAll has run.
 */
export function useSuite(cfg: MuseConfig = testConfig()): Suite {
  const suite = { cfg, children: [], cleanups: [] } as unknown as Suite;
  beforeAll(async () => {
    suite.client = await connectClient(cfg);
    suite.nc = await natsFor(cfg);
  });
  afterAll(async () => {
    // Every cleanup runs and the connections close even when one fails; the failures are reported together after.
    const failures: unknown[] = [];
    await Promise.all(suite.children.map(killHard));
    for (const c of suite.cleanups.reverse())
      await Promise.resolve()
        .then(c)
        .catch((e) => failures.push(e));
    await suite.nc?.drain().catch((e) => failures.push(e));
    await suite.client?.connection.close().catch((e) => failures.push(e));
    if (failures.length > 0) throw new AggregateError(failures, 'suite teardown failed');
  });
  return suite;
}

/** How many activities of a type the workflow's history records as completed; needs no worker, unlike a query. */
export async function completedActivities(handle: WorkflowHandle, activityType: string): Promise<number> {
  const events = (await handle.fetchHistory()).events ?? [];
  const scheduled = new Set<string>();
  for (const e of events) {
    if (e.activityTaskScheduledEventAttributes?.activityType?.name === activityType)
      scheduled.add(String(e.eventId));
  }
  return events.filter(
    (e) =>
      e.activityTaskCompletedEventAttributes &&
      scheduled.has(String(e.activityTaskCompletedEventAttributes.scheduledEventId)),
  ).length;
}
