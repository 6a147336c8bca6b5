// Benchmarks start their own Temporal dev server and nats-server on free loopback ports, in a temp dir.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import type { ActivityDeps } from '../activities/index.js';
import { loadConfig, type MuseConfig } from '../common/config.js';
import { connectClient } from '../common/temporal.js';
import { freePort, type ServiceHandle, startNats, startTemporal } from '../infra/services.js';
import { startPoolMember } from '../workers/pool-member.js';
import { createRolloutWorker } from '../workers/rollout-worker.js';

/** Temp dirs of stacks not stopped yet: removed when the process exits without stopping them. */
const leftDirs = new Set<string>();
let timeLimited = false;

/** The longest BENCH_TIMEOUT_S: a timer past 2^31 ms would fire at once. */
const MAX_TIMEOUT_S = 2_000_000;

/**
 * Ends the benchmark, failed, once it has run `BENCH_TIMEOUT_S` (default an hour; a sweep of many loads may need
 * more): a step Temporal retries for ever (a member gone, a bug throwing a retryable error) would otherwise hold it,
 * and its servers, with no end. The servers are killed on exit (infra/services.ts); their temp dirs go with them.
 */
function limitRunTime(name: string): void {
  if (timeLimited) return;
  timeLimited = true;
  const limitS = envNumber('BENCH_TIMEOUT_S', 3600);
  if (limitS > MAX_TIMEOUT_S)
    throw new Error(`BENCH_TIMEOUT_S must be at most ${MAX_TIMEOUT_S}, got ${limitS}`);
  setTimeout(() => {
    console.error(`bench ${name}: still running after ${limitS} s (BENCH_TIMEOUT_S); stopped`);
    process.exit(1);
  }, limitS * 1000).unref();
  process.on('exit', () => {
    for (const dir of leftDirs) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  });
}

/** A throwaway NATS server and, unless `temporal` is false (benchmarks of the pool alone), a Temporal dev server. */
export async function benchStack(
  name: string,
  opts: { temporal?: boolean } = {},
): Promise<{ cfg: MuseConfig; stop(): Promise<void> }> {
  limitRunTime(name);
  const dataDir = mkdtempSync(join(tmpdir(), `muse-bench-${name}-`));
  leftDirs.add(dataDir);
  const [tp, np] = [await freePort(), await freePort()];
  // An idle Temporal server would still take CPU from the 2 cores the measured work runs on.
  const started = await Promise.allSettled([
    opts.temporal === false ? undefined : startTemporal({ dataDir, port: tp }),
    startNats({ dataDir, port: np }),
  ]);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    // The one that did start would outlive the benchmark.
    await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value?.stop() : undefined)));
    rmSync(dataDir, { recursive: true, force: true });
    leftDirs.delete(dataDir);
    throw failed.reason;
  }
  const [temporal, nats] = started.map(
    (r) => (r as PromiseFulfilledResult<ServiceHandle | undefined>).value,
  ) as [ServiceHandle | undefined, ServiceHandle];
  const cfg = loadConfig({
    env: {},
    overrides: {
      dataDir: join(dataDir, 'state'),
      temporal: { ...(temporal ? { address: temporal.address } : {}), taskQueue: `bench-${name}` },
      nats: { url: nats.url },
    },
  });
  return {
    cfg,
    async stop() {
      await Promise.all([temporal?.stop(), nats.stop()]);
      rmSync(dataDir, { recursive: true, force: true });
      leftDirs.delete(dataDir);
    },
  };
}

export function table(rows: Record<string, string | number>[]): string {
  const cols = Object.keys(rows[0] ?? {});
  const cell = (v: string | number) =>
    typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : v;
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c] ?? '').length)));
  const line = (vals: string[]) => `| ${vals.map((v, i) => v.padEnd(widths[i]!)).join(' | ')} |`;
  return [
    line(cols),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map((r) => line(cols.map((c) => cell(r[c] ?? '')))),
  ].join('\n');
}

/** The embedded engine for a benchmark: its own servers, simulated members at zero latency, one worker, a client. */
export async function benchEngine(
  name: string,
  opts: { members?: number; onModelCall?: ActivityDeps['onModelCall'] } = {},
): Promise<{ cfg: MuseConfig; client: Client; stop(): Promise<void> }> {
  const stack = await benchStack(name);
  const members: Awaited<ReturnType<typeof startPoolMember>>[] = [];
  let worker: Awaited<ReturnType<typeof createRolloutWorker>> | undefined;
  let running: Promise<void> | undefined;
  let client: Client;
  try {
    for (let i = 0; i < (opts.members ?? 1); i++)
      members.push(
        await startPoolMember({
          config: stack.cfg,
          pool: 'default',
          id: `sim-${i}`,
          backend: { backend: 'sim', timeScale: 0 },
        }),
      );
    worker = await createRolloutWorker({ config: stack.cfg, onModelCall: opts.onModelCall });
    running = worker.run();
    client = await connectClient(stack.cfg);
  } catch (err) {
    // Not left running when the benchmark cannot start: the servers are this process's children.
    await worker?.shutdown().catch(() => {});
    await Promise.all(members.map((m) => m.stop().catch(() => {})));
    await stack.stop();
    throw err;
  }
  const started = { worker, running };
  return {
    cfg: stack.cfg,
    client,
    async stop() {
      // The servers are stopped however the rest of the engine stops.
      try {
        await client.connection.close();
        await started.worker.shutdown();
        await started.running;
        await Promise.all(members.map((m) => m.stop()));
      } finally {
        await stack.stop();
      }
    },
  };
}

/** Maps with at most `n` calls in flight; results in input order. */
export async function mapPooled<T, R>(
  items: readonly T[],
  n: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, n) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

/**
 * A numeric setting from the environment, or `fallback` when unset. Whole numbers of at least 1 unless `real` (then
 * any number above 0), so a mistyped setting stops the run with its name instead of running on NaN.
 */
export function envNumber(name: string, fallback: number, opts: { real?: boolean } = {}): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  return checkedNumber(name, raw, raw, opts.real ?? false);
}

/** A comma-separated list of positive integers (a sweep); one value is a list of one. */
export function envNumberList(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  return raw.split(',').map((part) => checkedNumber(name, raw, part.trim(), false));
}

function checkedNumber(name: string, raw: string, text: string, real: boolean): number {
  const n = Number(text);
  if (real ? !(n > 0 && Number.isFinite(n)) : !(Number.isInteger(n) && n >= 1))
    throw new Error(
      `${name} must be ${real ? 'a finite number above 0' : 'a positive integer'}, got '${raw}'`,
    );
  return n;
}

export const sum = (xs: readonly number[]) => xs.reduce((n, x) => n + x, 0);
