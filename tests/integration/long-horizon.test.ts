// Long-horizon trajectories: 2048 durable iterresearch steps with bounded history per run, large
// observations kept out of history, and a worker killed at continue-as-new boundaries.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { exportTrajectory } from '../../client/content.js';
import { historyChain } from '../../client/history.js';
import { queryProgress, startTrajectory } from '../../client/trajectories.js';
import { PoolMember } from '../../inference/member.js';
import { SimBackend } from '../../sim/backend.js';
import { sampleQuestions } from '../../sim/world.js';
import { ToolRegistry } from '../../tools/registry.js';
import {
  inProcessMember,
  inProcessWorker,
  killHard,
  recordingBackend,
  spawnMuse,
  useSuite,
  waitUntil,
} from '../helpers/stack.js';

const suite = useSuite();
const { cfg } = suite;

/**
 * One trajectory of sample question `seed` (with `directives` for the simulator) on a sim member and a rollout worker
 * of its own, both stopped once it has ended: what the tests read afterwards is in Temporal and the content store.
 */
async function simTrajectory(
  seed: number,
  directives: string,
  spec: Omit<Parameters<typeof startTrajectory>[2], 'question'> & { pool: string },
  stack: { maxModelLen?: number; tools?: ToolRegistry } = {},
) {
  const member = await inProcessMember(
    cfg,
    { backend: 'sim', timeScale: 0, ...(stack.maxModelLen ? { maxModelLen: stack.maxModelLen } : {}) },
    { pool: spec.pool },
  );
  const worker = await inProcessWorker(cfg, stack.tools ? { tools: stack.tools } : {});
  try {
    const [q] = sampleQuestions(1, seed);
    const handle = await startTrajectory(suite.client, cfg, {
      ...spec,
      question: `${q!.question} ${directives}`,
    });
    return { handle, result: await handle.result() };
  } finally {
    await worker.stop();
    await member.stop();
  }
}

describe('long-horizon trajectories', () => {
  it('runs 2048 iterresearch steps durably with every run under 10,240 events and 10 MB of history', {
    timeout: 900_000,
  }, async () => {
    const { handle, result } = await simTrajectory(31, '[sim:min-turns=4096]', {
      policy: 'iterresearch',
      maxTurns: 2048,
      pool: 'long',
    });
    expect(result.termination).toBe('max_turns');
    expect(result.steps).toBe(2048);
    // Every turn is in the trajectory's uncertainty, though branch points are kept for the first 512 only.
    expect(result.uncertainty.scoredTurns).toBe(2048);
    expect(result.runs).toBeGreaterThan(1);
    const runs = await historyChain(suite.client, handle.workflowId, handle.firstExecutionRunId);
    expect(runs.length).toBe(result.runs);
    for (const run of runs) {
      expect(run.events).toBeLessThan(10_240);
      expect(run.bytes).toBeLessThan(10 * 1024 * 1024);
    }
    let n = 0;
    for await (const step of exportTrajectory(suite.client, suite.nc, handle.workflowId)) {
      expect(step.step).toBe(n);
      expect(step.turn.length).toBeGreaterThan(0);
      n++;
    }
    expect(n).toBe(2048);
  });

  it('completes a react trajectory with 512 KB observations, with history holding references only', {
    timeout: 600_000,
  }, async () => {
    // A model with a 64M-token context: the simulated server must take prompts that long too.
    const { handle, result } = await simTrajectory(
      32,
      '[sim:obs-bytes=524288] [sim:min-turns=30]',
      { policy: 'react', maxTurns: 40, contextWindow: 64_000_000, pool: 'big' },
      { maxModelLen: 64_000_000 },
    );
    expect(result.termination).toBe('answer');
    expect(result.steps).toBeGreaterThanOrEqual(30);
    let bigObservations = 0;
    for await (const step of exportTrajectory(suite.client, suite.nc, handle.workflowId)) {
      if ((step.observation?.length ?? 0) >= 524_288) bigObservations++;
    }
    expect(bigObservations).toBeGreaterThanOrEqual(10);
    const runs = await historyChain(suite.client, handle.workflowId, handle.firstExecutionRunId);
    const totalBytes = runs.reduce((n, r) => n + r.bytes, 0);
    // Inline, the observations alone would be > 5 MB of history, and every prompt from the fifth big observation on
    // would pass Temporal's 2 MB payload limit.
    expect(totalBytes).toBeLessThan(2 * 1024 * 1024);
  });

  it('a run whose step records grow large (long CJK tool errors) writes its step log and continues as new before Temporal would refuse it', {
    timeout: 300_000,
  }, async () => {
    // Every search fails with a long message: each step's record keeps its first 1,000 characters, 3 bytes each.
    const failing = new ToolRegistry([
      {
        name: 'search',
        description: 'a search whose upstream always fails',
        args: z.object({ query: z.array(z.string()) }),
        run: async () => {
          throw new Error(`上游服务错误：${'无法连接到搜索后端。'.repeat(200)}`);
        },
      },
    ]);
    const { handle, result } = await simTrajectory(
      34,
      '[sim:min-turns=400]',
      { policy: 'iterresearch', maxTurns: 200, stepsPerRun: 1000, pool: 'errs' },
      { tools: failing },
    );
    expect(result.termination).toBe('max_turns');
    expect(result.steps).toBe(200);
    // 200 records of about 4 KB are past the 512 KiB a run's step log may take, though within stepsPerRun.
    expect(result.runs).toBeGreaterThan(1);
    const runs = await historyChain(suite.client, handle.workflowId, handle.firstExecutionRunId);
    for (const run of runs) {
      const events = (await suite.client.workflow.getHandle(handle.workflowId, run.runId).fetchHistory())
        .events!;
      const logWrites = events
        .map((e) => e.activityTaskScheduledEventAttributes)
        .filter((a) => a?.activityType?.name === 'saveStepLog');
      expect(logWrites).toHaveLength(1);
      expect(logWrites[0]!.input!.payloads![0]!.data!.length).toBeLessThan(600 * 1024);
    }
    let n = 0;
    for await (const step of exportTrajectory(suite.client, suite.nc, handle.workflowId)) {
      expect(step.step).toBe(n++);
      expect(step.toolError).toMatch(/^Error: tool 'search' failed: 上游服务错误/);
    }
    expect(n).toBe(200);
  });

  it('a worker killed at continue-as-new boundaries loses no step and repeats at most the one in flight at each kill', {
    timeout: 300_000,
  }, async () => {
    let calls = 0;
    const recording = recordingBackend(new SimBackend({ profile: { timeScale: 0.05 } }), () => {
      calls++;
    });
    const member = new PoolMember({ nc: suite.nc, pool: 'can', id: 'rec-can', backend: recording });
    await member.start();
    try {
      const [q] = sampleQuestions(1, 33);
      const handle = await startTrajectory(
        suite.client,
        cfg,
        {
          question: `${q!.question} [sim:min-turns=40]`,
          policy: 'iterresearch',
          maxTurns: 40,
          stepsPerRun: 4,
          pool: 'can',
        },
        { timeouts: { stepMs: 60_000, heartbeatMs: 2_000 } },
      );
      let worker = await spawnMuse(cfg, ['worker'], /rollout worker on task queue/);
      suite.children.push(worker);
      let kills = 0;
      let lastRun = 1;
      while (kills < 3) {
        // The run is read where it was seen: a second query can land between runs, where there is no progress.
        let seen = lastRun;
        await waitUntil(
          async () => {
            seen = (await queryProgress(handle))?.run ?? seen;
            return seen > lastRun;
          },
          120_000,
          'the next continue-as-new',
        );
        lastRun = seen;
        await killHard(worker);
        kills++;
        worker = await spawnMuse(cfg, ['worker'], /rollout worker on task queue/);
        suite.children.push(worker);
      }
      const result = await handle.result();
      expect(result.steps).toBe(40);
      const steps: number[] = [];
      for await (const step of exportTrajectory(suite.client, suite.nc, handle.workflowId))
        steps.push(step.step);
      expect(steps).toEqual([...Array(40).keys()]);
      expect(result.runs).toBeGreaterThanOrEqual(10);
      // One request per step; beyond that, only the steps in flight at the three kills may have been asked again.
      expect(calls).toBeGreaterThanOrEqual(40);
      expect(calls).toBeLessThanOrEqual(40 + 3);
    } finally {
      await member.stop();
    }
  });
});
