// One OpenTelemetry trace per trajectory: client → workflow → activities → NATS → pool member.

import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startTrajectory } from '../../client/trajectories.js';
import type { MuseConfig } from '../../common/config.js';
import { initTelemetry, shutdownTelemetry } from '../../common/telemetry.js';
import { connectClient } from '../../common/temporal.js';
import { sampleQuestions } from '../../sim/world.js';
import {
  inProcessMember,
  inProcessWorker,
  killHard,
  runMuse,
  testConfig,
  waitUntil,
} from '../helpers/stack.js';
import { tempDir } from '../helpers/temp.js';

/** `muse` processes this file started: any still running when a test ends (failed, timed out) is killed. */
const children: ChildProcess[] = [];
afterEach(async () => {
  await Promise.all(children.splice(0).map(killHard));
});

/** `muse <args>` run to its end; registered, so it is killed if the test gives up on it first. */
function runToEnd(cfg: MuseConfig, args: string[]) {
  const { child, done } = runMuse(cfg, args);
  children.push(child);
  return done;
}

describe('tracing', () => {
  it('puts client, workflow, activity and pool-member spans of one trajectory in one trace', async () => {
    await withTracedStack('traced', async (cfg, file) => {
      const client = await connectClient(cfg);
      try {
        const [q] = sampleQuestions(1, 51);
        const handle = await startTrajectory(client, cfg, {
          question: q!.question,
          pool: 'traced',
          maxTurns: 20,
        });
        await handle.result();
      } finally {
        await client.connection.close();
      }
      const { inTrace } = await startedTrace(file);
      expect(inTrace.some((n) => n.startsWith('RunWorkflow:trajectory'))).toBe(true);
      expect(inTrace.some((n) => n.startsWith('RunActivity:llmStep'))).toBe(true);
      expect(inTrace).toContain('pool.request');
      expect(inTrace).toContain('pool.generate');
    });
  });

  it('a trajectory started by muse run, a process that is only a client, is one trace with its worker and member spans', async () => {
    await withTracedStack('traced-cli', async (cfg, file) => {
      const [q] = sampleQuestions(1, 52);
      const args = ['--pool', 'traced-cli', '--max-turns', '20', q!.question];
      const run = await runToEnd(cfg, ['run', ...args]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toContain('model      : muse-sim (simulator, not a language model)');
      // Only the CLI process started a workflow in this test, so the client span is muse run's.
      const { spans, inTrace } = await startedTrace(file);
      expect(inTrace.some((n) => n.startsWith('RunWorkflow:trajectory'))).toBe(true);
      expect(inTrace).toContain('pool.generate');
      // muse run polls progress several times a second; those queries are not traced, each a trace of its own.
      expect(spans.filter((s) => s.name.startsWith('QueryWorkflow'))).toEqual([]);

      // The console exporter writes to stderr: what --json prints on stdout stays JSON.
      const consoleCfg = { ...cfg, telemetry: { ...cfg.telemetry, exporter: 'console' as const } };
      const json = await runToEnd(consoleCfg, ['run', '--json', ...args]);
      expect(json.code, json.stderr).toBe(0);
      expect(JSON.parse(json.stdout)).toMatchObject({
        termination: expect.any(String),
        models: ['muse-sim (simulator, not a language model)'],
      });
      expect(json.stderr).toContain('"name":"StartWorkflow:trajectory"');
    });
  });
});

/** A pool member and a rollout worker in this process, tracing to a fresh file; stopped, with telemetry, after. */
async function withTracedStack(pool: string, fn: (cfg: MuseConfig, file: string) => Promise<void>) {
  const file = join(tempDir('muse-trace-'), 'traces.jsonl');
  const cfg = testConfig({ telemetry: { exporter: 'file', file } });
  // Whatever part started is stopped, so a failed start cannot leave the next test writing to this test's file.
  let member: Awaited<ReturnType<typeof inProcessMember>> | undefined;
  let worker: Awaited<ReturnType<typeof inProcessWorker>> | undefined;
  try {
    initTelemetry(cfg, 'test');
    member = await inProcessMember(cfg, { backend: 'sim' }, { pool });
    worker = await inProcessWorker(cfg);
    await fn(cfg, file);
  } finally {
    await worker?.stop();
    await member?.stop();
    await shutdownTelemetry();
  }
}

type Span = { traceId: string; name: string };

/** Every span written, and the names of those in the trace a trajectory's client span opened. */
async function startedTrace(file: string): Promise<{ spans: Span[]; inTrace: string[] }> {
  const read = (): Span[] =>
    existsSync(file)
      ? readFileSync(file, 'utf8')
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Span)
      : [];
  // Each process writes its spans as they end (the workflow's at its end, through the worker's sink): waited for
  // by every kind the tests check, not by one.
  const kinds = [
    'StartWorkflow:trajectory',
    'RunWorkflow:trajectory',
    'RunActivity:llmStep',
    'pool.request',
    'pool.generate',
  ];
  await waitUntil(
    () => {
      const names = read().map((s) => s.name);
      return kinds.every((k) => names.some((n) => n.startsWith(k)));
    },
    10_000,
    'client, workflow, activity, router and member spans',
  );
  const spans = read();
  const start = spans.find((s) => s.name.startsWith('StartWorkflow:trajectory'));
  expect(start, 'the client span').toBeDefined();
  return { spans, inTrace: spans.filter((s) => s.traceId === start!.traceId).map((s) => s.name) };
}
