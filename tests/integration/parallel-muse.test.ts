// ParallelMuse end to end on real Temporal + NATS with the simulator: branching, budget, reuse,
// aggregation, crash recovery, and the batch runner.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatch } from '../../client/batch.js';
import { runParallelMuse } from '../../client/parallel-muse.js';
import { JobSpecError } from '../../client/trajectories.js';
import { sampleQuestions } from '../../sim/world.js';
import {
  inProcessMember,
  inProcessWorker,
  killHard,
  spawnMuse,
  useSuite,
  waitUntil,
} from '../helpers/stack.js';

const suite = useSuite();
const { cfg } = suite;
let member: Awaited<ReturnType<typeof inProcessMember>>;
const modelCalls: { trajectoryId: string; step: number; kind: string }[] = [];

beforeAll(async () => {
  member = await inProcessMember(cfg, { backend: 'sim', timeScale: 0 });
});

afterAll(async () => {
  await member?.stop();
});

const questions = sampleQuestions(6, 404);

describe('ParallelMuse', () => {
  it('runs initial rollouts, branches from uncertain steps reusing the prefix, and aggregates to one answer', async () => {
    const worker = await inProcessWorker(cfg, { onModelCall: (e) => modelCalls.push(e) });
    try {
      const q = questions[0]!;
      const { result } = await runParallelMuse(
        suite.client,
        cfg,
        { trajectory: { question: q.question, answer: q.answer, maxTurns: 30 } },
        { workflowId: 'pm-default', jobId: 'pm-default' },
      );
      // Reference default N=8, M=1, K=2, T=3, R=1: 1 initial + 6 partial + 1 from scratch.
      expect(result.plan).toMatchObject({ n: 8, initial: 1, partial: 6, scratch: 1, rounds: 1 });
      expect(result.rollouts).toHaveLength(8);
      expect(result.rollouts.filter((r) => r.rollout_type === 'partial_rollout')).toHaveLength(6);
      expect(result.prediction).toBeTruthy();
      expect(Object.keys(result.outcomes).sort()).toEqual([
        'compressed',
        'confidence_weighted',
        'majority',
        'min_uncertainty',
      ]);
      expect(result.compression!.reportChars).toBeLessThan(result.compression!.trajectoryChars);
      for (const r of result.rollouts.filter((r) => r.origin === 'branch')) {
        expect(r.lineage.parentRolloutId).toBe('initial-0');
        // No model call for the reused prefix: every recorded call of this branch is at or after its branch step.
        const calls = modelCalls.filter((c) => c.trajectoryId === `pm-default/${r.rolloutId}`);
        expect(calls.length).toBe(r.steps - r.lineage.reusedSteps);
        for (const c of calls) expect(c.step).toBeGreaterThanOrEqual(r.lineage.branchStep!);
        expect(r.usage.toolCalls).toBeLessThanOrEqual(r.steps - r.lineage.reusedSteps);
      }
      expect(result.accounting.reuseFactor).toBeGreaterThan(1);
    } finally {
      await worker.stop();
    }
  });

  it('counts the budget like the reference for R=2 and rejects a plan that cannot fit, with the numbers', async () => {
    await expect(
      runParallelMuse(
        suite.client,
        cfg,
        { n: 5, trajectory: { question: 'q' } },
        { workflowId: 'never', jobId: 'never' },
      ),
    ).rejects.toThrow(JobSpecError);
    await expect(
      runParallelMuse(
        suite.client,
        cfg,
        { n: 5, trajectory: { question: 'q' } },
        { workflowId: 'never', jobId: 'never' },
      ),
    ).rejects.toThrow(/N=5.*7/);
    const worker = await inProcessWorker(cfg);
    try {
      const q = questions[1]!;
      const { result } = await runParallelMuse(
        suite.client,
        cfg,
        { n: 13, r: 2, trajectory: { question: q.question, answer: q.answer, maxTurns: 30 } },
        { workflowId: 'pm-r2', jobId: 'pm-r2' },
      );
      // N = M + M·K·R·T = 1 + 1·2·2·3 = 13: no scratch unless branch points were missing.
      expect(result.plan.initial).toBe(1);
      expect(result.plan.partial + result.plan.scratch).toBe(12);
      const round2 = result.rollouts.filter((r) => r.lineage.round === 2);
      expect(round2.length).toBe(6);
      for (const r of round2) expect(r.lineage.parentRolloutId).toMatch(/^r1-/);
    } finally {
      await worker.stop();
    }
  });

  it('ends with an explicit no-answer result when no trajectory answers', async () => {
    const worker = await inProcessWorker(cfg);
    try {
      const { result } = await runParallelMuse(
        suite.client,
        cfg,
        {
          n: 3,
          branchMode: 'none',
          trajectory: { question: `${questions[2]!.question} [sim:min-turns=50]`, maxTurns: 2 },
        },
        { workflowId: 'pm-none', jobId: 'pm-none' },
      );
      expect(result.prediction).toBeNull();
      expect(result.excluded).toHaveLength(3);
      expect(result.outcomes.compressed!.reason).toMatch(/no answered trajectory/);
      expect(result.outcomes.majority!.answer).toBeNull();
    } finally {
      await worker.stop();
    }
  });

  it('gives the same final answer when the rollout worker is killed mid-question', async () => {
    const q = questions[3]!;
    const spec = {
      trajectory: { question: `${q.question} [sim:min-turns=6]`, answer: q.answer, maxTurns: 30 },
    };
    const reference = await (async () => {
      const worker = await inProcessWorker(cfg);
      try {
        return (await runParallelMuse(suite.client, cfg, spec, { workflowId: 'pm-ref', jobId: 'pm-ref' }))
          .result;
      } finally {
        await worker.stop();
      }
    })();
    const child = await spawnMuse(cfg, ['worker'], /rollout worker on task queue/);
    suite.children.push(child);
    const running = runParallelMuse(suite.client, cfg, spec, {
      workflowId: 'pm-kill',
      jobId: 'pm-kill',
      timeouts: { stepMs: 60_000, heartbeatMs: 2_000 },
    });
    await waitUntil(
      async () => {
        const d = await suite.client.workflow
          .getHandle('pm-kill')
          .describe()
          .catch(() => undefined);
        return Boolean(d && (d.raw.pendingChildren?.length ?? 0) > 0);
      },
      60_000,
      'children in flight',
    );
    await killHard(child);
    // No worker is left: the question cannot have finished, so what follows is the new worker's doing.
    expect((await suite.client.workflow.getHandle('pm-kill').describe()).status.name).toBe('RUNNING');
    const worker = await inProcessWorker(cfg);
    try {
      const { result } = await running;
      expect(result.prediction).toBe(reference.prediction);
      expect(result.rollouts.map((r) => r.prediction)).toEqual(reference.rollouts.map((r) => r.prediction));
    } finally {
      await worker.stop();
    }
  });

  it('batch: reports bad lines by number, and a re-run after a kill does not redo finished questions', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'muse-batch-'));
    const input = join(dir, 'q.jsonl');
    const out = join(dir, 'out.jsonl');
    const lines = questions.slice(0, 4).map((q) => JSON.stringify(q));
    lines.splice(2, 0, '{"question": oops}');
    writeFileSync(input, `${lines.join('\n')}\n`);
    const child = await spawnMuse(cfg, ['worker'], /rollout worker on task queue/);
    suite.children.push(child);
    const batch = await spawnMuse(
      cfg,
      [
        'batch',
        input,
        '--out',
        out,
        '--n',
        '2',
        '--branch-mode',
        'none',
        '--concurrency',
        '1',
        '--job',
        'batch-it',
      ],
      /questions|line/,
    );
    suite.children.push(batch);
    await waitUntil(
      () => {
        try {
          return readFileSync(out, 'utf8').trim().split('\n').filter(Boolean).length >= 1;
        } catch {
          return false;
        }
      },
      90_000,
      'the first result line',
    );
    await killHard(batch);
    const before = readFileSync(out, 'utf8').trim().split('\n').filter(Boolean).length;
    const summary = await runBatch(suite.client, cfg, {
      input,
      output: out,
      jobId: 'batch-it',
      concurrency: 2,
      spec: { n: 2, branchMode: 'none', trajectory: {} },
    });
    expect(summary.badLines).toEqual([{ line: 3, error: expect.stringMatching(/line 3 is not valid JSON/) }]);
    expect(summary.skipped).toBe(before);
    expect(summary.completed + summary.skipped).toBe(4);
    const results = readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    // One line per question: a question done again would append a second line with the same id.
    expect(results).toHaveLength(4);
    expect(new Set(results.map((r) => r.workflowId)).size).toBe(4);
    for (const r of results) {
      expect(r.rollouts).toHaveLength(2);
      expect(r.rollouts[0]).toMatchObject({ question: r.question, rollout_type: 'traj_level_rollout' });
      expect(r.aggregator).toBe('compressed');
    }
    await killHard(child);
  });
});
