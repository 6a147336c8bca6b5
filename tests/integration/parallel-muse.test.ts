// ParallelMuse end to end on real Temporal + NATS with the simulator: branching, budget, reuse,
// aggregation, crash recovery, and the batch runner.
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planBudget, questionHistoryBytes } from '../../agent/branching.js';
import type { TrajectoryResult } from '../../agent/trajectory.js';
import { tallyTurns } from '../../agent/uncertainty.js';
import { assignWorkflowIds, resultLine, runBatch, sharedBatchSpec } from '../../client/batch.js';
import {
  parseParallelMuseSpec,
  runParallelMuse,
  specHash,
  startParallelMuse,
} from '../../client/parallel-muse.js';
import { failureMessage, JobSpecError, queryProgress, stepsInRetry } from '../../client/trajectories.js';
import { unpackValue } from '../../common/msgpack.js';
import { PoolMember } from '../../inference/member.js';
import type { InferenceBackend } from '../../inference/types.js';
import { SimBackend } from '../../sim/backend.js';
import { sampleQuestions } from '../../sim/world.js';
import type { parallelMuse } from '../../workflows/parallel-muse.js';
import type { TrajectoryInput } from '../../workflows/trajectory.js';
import {
  completedActivities,
  inProcessMember,
  inProcessWorker,
  killHard,
  runMuseInSuite,
  runMuseOnTerminal,
  scriptedMember,
  spawnMuse,
  useSuite,
  waitUntil,
} from '../helpers/stack.js';
import { tempDir } from '../helpers/temp.js';

const suite = useSuite();
const { cfg } = suite;
let member: Awaited<ReturnType<typeof inProcessMember>>;
const modelCalls: { trajectoryId: string; step: number; kind: string; promptTokenRatio?: number }[] = [];
const toolCalls: { trajectoryId?: string; step?: number; tool: string }[] = [];

/** A child trajectory's own result, read from Temporal. */
const childResult = (questionId: string, rolloutId: string) =>
  suite.client.workflow.getHandle(`${questionId}/${rolloutId}`).result() as Promise<TrajectoryResult>;

/** What a rollout was started with (its first run's input, as its history holds it). */
async function childInput(questionId: string, rolloutId: string): Promise<TrajectoryInput> {
  const history = await suite.client.workflow.getHandle(`${questionId}/${rolloutId}`).fetchHistory();
  const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  return unpackValue<TrajectoryInput>(started!.input!.payloads![0]!.data!);
}

/**
 * An aggregation member that refuses chosen report or integration calls for good (a server's rejection that no retry
 * or other member can fix), or cuts chosen ones off at the token limit, and shows the test every request it gets.
 */
function refusingBackend(
  refuse: (kind: 'report' | 'integrate', n: number) => boolean,
  seen: { kind: string; prompt: string }[],
  cut: (kind: 'report' | 'integrate') => boolean = () => false,
): InferenceBackend {
  const inner = new SimBackend({ profile: { timeScale: 0 } });
  const counts = { report: 0, integrate: 0 };
  return {
    kind: inner.kind,
    load: () => inner.load(),
    generate(req, signal) {
      const prompt = req.messages[req.messages.length - 1]!.content;
      const kind = prompt.includes('<reports>')
        ? 'integrate'
        : prompt.includes('<trajectory>')
          ? 'report'
          : 'other';
      seen.push({ kind, prompt });
      if (kind !== 'other' && refuse(kind, counts[kind]++))
        return Promise.reject(Object.assign(new Error(`refused ${kind} call (test)`), { retryable: false }));
      if (kind !== 'other' && cut(kind))
        return inner
          .generate(req, signal)
          .then((g) => ({ ...g, text: '<think>Let me plan the report', finishReason: 'length' as const }));
      return inner.generate(req, signal);
    },
  };
}

/** A server's refusal of a request for good (a model it does not serve, say), which no retry or member can fix. */
const notServed = () =>
  Promise.reject(Object.assign(new Error('model not served (test)'), { retryable: false }));

const startMuse = (args: string[]) => runMuseInSuite(suite, cfg, args);
const runMuse = (args: string[]) => startMuse(args).done;

beforeAll(async () => {
  member = await inProcessMember(cfg, { backend: 'sim', timeScale: 0 });
});

afterAll(async () => {
  await member?.stop();
});

const questions = sampleQuestions(6, 404);

/** Runs `fn` with a rollout worker in this process, stopped afterwards. */
async function withWorker<T>(fn: () => Promise<T>): Promise<T> {
  const worker = await inProcessWorker(cfg);
  try {
    return await fn();
  } finally {
    await worker.stop();
  }
}

describe('ParallelMuse', () => {
  it('runs initial rollouts, branches from uncertain steps reusing the prefix, and aggregates to one answer', async () => {
    const worker = await inProcessWorker(cfg, {
      onModelCall: (e) => modelCalls.push(e),
      onToolCall: (e) => toolCalls.push(e),
    });
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
      const parent = await childResult('pm-default', 'initial-0');
      expect(parent.promptTokenRatio).toBeGreaterThan(0);
      const toolsOf = (id: string) => toolCalls.filter((c) => c.trajectoryId === `pm-default/${id}`);
      // The hook sees every tool run: the parent's count matches its own usage.
      expect(toolsOf('initial-0').length).toBe(parent.usage.toolCalls);
      const branches = result.rollouts.filter((r) => r.origin === 'branch');
      for (const r of branches) {
        expect(r.lineage.parentRolloutId).toBe('initial-0');
        // No model call for the reused prefix: every recorded call of this branch is at or after its branch step.
        const calls = modelCalls.filter((c) => c.trajectoryId === `pm-default/${r.rolloutId}`);
        expect(calls.length).toBe(r.steps - r.lineage.reusedSteps);
        for (const c of calls) expect(c.step).toBeGreaterThanOrEqual(r.lineage.branchStep!);
        // Its first window check uses the ratio the parent's own check at that step used (so it renders the step's
        // prompt as the parent did), not one the parent learned later, nor 1.
        const parentAtStep = modelCalls.find(
          (c) => c.trajectoryId === 'pm-default/initial-0' && c.step === r.lineage.branchStep,
        );
        expect(calls.find((c) => c.step === r.lineage.branchStep)?.promptTokenRatio).toBe(
          parentAtStep!.promptTokenRatio,
        );
        // No tool run for the reused prefix either: the branch ran exactly its own tool steps, none before its branch step.
        const tools = toolsOf(r.rolloutId);
        expect(tools.length).toBe(r.usage.toolCalls);
        for (const c of tools) expect(c.step).toBeGreaterThanOrEqual(r.lineage.branchStep!);
      }
      // The ratio check tells the two apart only where the parent's ratio moved after the branch step.
      expect(
        branches.some(
          (r) =>
            modelCalls.find(
              (c) => c.trajectoryId === 'pm-default/initial-0' && c.step === r.lineage.branchStep,
            )?.promptTokenRatio !== parent.promptTokenRatio,
        ),
      ).toBe(true);
      // The check above means something only if some prefix had tool calls to repeat.
      expect(branches.some((r) => r.lineage.reusedToolCalls > 0)).toBe(true);
      expect(result.accounting.reuseFactor).toBeGreaterThan(1);
      // Rollouts and aggregation calls alike ran on the simulator, and the result says so.
      expect(result.models).toEqual(['muse-sim (simulator, not a language model)']);
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
    await withWorker(async () => {
      const q = questions[1]!;
      const { result } = await runParallelMuse(
        suite.client,
        cfg,
        { n: 13, r: 2, trajectory: { question: q.question, answer: q.answer, maxTurns: 30 } },
        { workflowId: 'pm-r2', jobId: 'pm-r2' },
      );
      // N = M + M·K·R·T = 1 + 1·2·2·3 = 13: no scratch unless branch points were missing.
      expect(result.plan.initial).toBe(1);
      // Each round's branch points, worked out here from the parents' own step scores: the top K = 2
      // (rollout, step) pairs by tool_call_ppl at or after each parent's branch step; a step without a score, and an
      // answer turn whatever its scores, would rank last (the reference scores them -1), which these long
      // trajectories seldom reach: agent-branching.test.ts covers that rule.
      const topPoints = async (parents: { id: string; from: number }[]) => {
        const cands: { id: string; step: number; score: number }[] = [];
        for (const p of parents) {
          const out = await childResult('pm-r2', p.id);
          out.branchable!.forEach((s, step) => {
            const answerTurn = out.termination === 'answer' && step === out.steps - 1;
            const score = answerTurn ? null : s.regions.tool_call_ppl;
            if (step >= p.from) cands.push({ id: p.id, step, score: score ?? -1 });
          });
        }
        // Stable: equal scores keep the earlier rollout, then the earlier step.
        return cands.sort((a, b) => b.score - a.score).slice(0, 2);
      };
      const pointsOf = (round: number) =>
        result.rollouts
          .filter((r) => r.lineage.round === round && r.origin === 'branch')
          .map((r) => `${r.lineage.parentRolloutId}@${r.lineage.branchStep}`)
          .sort();
      const expected = (points: { id: string; step: number }[]) =>
        points.flatMap((p) => Array(3).fill(`${p.id}@${p.step}`)).sort();
      const round1 = await topPoints([{ id: 'initial-0', from: 0 }]);
      expect(pointsOf(1)).toEqual(expected(round1));
      const round1Ids = result.rollouts.filter((r) => r.lineage.round === 1).map((r) => r.rolloutId);
      const round2 = await topPoints(
        result.rollouts
          .filter((r) => r.lineage.round === 1)
          // Past each branch's own branch point: its step there was sampled from the state round 1 branched at.
          .map((r) => ({ id: r.rolloutId, from: r.lineage.branchStep! + 1 })),
      );
      expect(round2.length).toBeGreaterThan(0);
      for (const p of round2) expect(round1Ids).toContain(p.id);
      expect(pointsOf(2)).toEqual(expected(round2));
      const byId = new Map(result.rollouts.map((r) => [r.rolloutId, r]));
      for (const r of result.rollouts.filter((x) => x.lineage.round === 2 && x.origin === 'branch'))
        expect(r.lineage.branchStep!).toBeGreaterThan(
          byId.get(r.lineage.parentRolloutId!)!.lineage.branchStep!,
        );
      // Only rollouts a later round branches from carry their branching facts into the question's history: in their
      // results, and in a branch's start (the parent's facts for the steps it reuses; a last-round branch gets the
      // tally of their uncertainty instead).
      for (const r of result.rollouts) {
        const out = await childResult('pm-r2', r.rolloutId);
        const branchedFrom = r.origin !== 'scratch' && r.lineage.round < 2;
        expect(out.branchable !== undefined, r.rolloutId).toBe(branchedFrom);
        if (r.origin !== 'branch') continue;
        const { branch } = await childInput('pm-r2', r.rolloutId);
        expect(branch!.prefixSteps !== undefined, r.rolloutId).toBe(branchedFrom);
        expect(branch!.prefixUncertainty !== undefined, r.rolloutId).toBe(!branchedFrom);
        const parent = await childResult('pm-r2', r.lineage.parentRolloutId!);
        const reused = parent.branchable!.slice(0, branch!.step);
        if (branchedFrom) expect(branch!.prefixSteps).toEqual(reused);
        else expect(branch!.prefixUncertainty).toEqual(tallyTurns(reused.map((s) => s.regions)));
      }
      // T = 3 branches per point found; whatever the points could not use is filled from scratch.
      expect(result.plan.partial).toBe(3 * (round1.length + round2.length));
      expect(result.plan.scratch).toBe(13 - 1 - result.plan.partial);
      expect(result.rollouts.filter((r) => r.origin === 'scratch')).toHaveLength(result.plan.scratch);
      // The question's history stays under the estimate that refuses plans too large for one history.
      const history = await suite.client.workflow.getHandle('pm-r2').fetchHistory();
      const bytes = temporal.api.history.v1.History.encode(history).finish().length;
      const estimate = questionHistoryBytes(
        planBudget({ n: 13, m: 1, k: 2, t: 3, r: 2, mode: 'tool_call_ppl' }),
        {
          rounds: 2,
          questionBytes: Buffer.byteLength(q.question),
          maxTurns: 30,
          stepsPerRun: 200,
          branching: true,
        },
      );
      expect(bytes, `history ${bytes} B, estimate ${estimate} B`).toBeLessThan(estimate);
    });
  });

  it('fails the question when every rollout failed, and says why', async () => {
    // A server that refuses every request outright (a model name it does not serve, say).
    const refusing = await scriptedMember(suite.nc, 'refuses-all', notServed);
    try {
      await withWorker(async () => {
        const failure = await runParallelMuse(
          suite.client,
          cfg,
          { n: 2, branchMode: 'none', trajectory: { question: questions[3]!.question, pool: 'refuses-all' } },
          { workflowId: 'pm-all-failed', jobId: 'pm-all-failed' },
        ).then(() => 'completed', failureMessage);
        expect(failure).toMatch(/every rollout of the question failed \(2\).*model not served/);
      });
    } finally {
      await refusing.stop();
    }
  });

  it('a rollout whose workflow was terminated is recorded as terminated, not only "child workflow failed"', async () => {
    await withWorker(async () => {
      // A pool nobody serves: the rollouts wait (their steps in retry) until they are terminated.
      const { handle } = await startParallelMuse(
        suite.client,
        cfg,
        { n: 2, branchMode: 'none', trajectory: { question: questions[3]!.question, pool: 'nobody-term' } },
        { workflowId: 'pm-term', jobId: 'pm-term' },
      );
      for (const rollout of ['initial-0', 'initial-1']) {
        const child = suite.client.workflow.getHandle(`pm-term/${rollout}`);
        await waitUntil(
          async () => (await child.describe().catch(() => undefined))?.status.name === 'RUNNING',
          30_000,
          `rollout ${rollout} running`,
        );
        await child.terminate('stopped by the operator (test)');
      }
      const failure = await handle.result().then(() => 'completed', failureMessage);
      // Temporal does not pass the reason on to the parent; that it was terminated, it does.
      expect(failure).toMatch(
        /every rollout of the question failed \(2\).*Child Workflow execution failed: Terminated/,
      );
    });
  });

  it('ends with an explicit no-answer result when no trajectory answers', async () => {
    await withWorker(async () => {
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
      // Every outcome lists the rollouts it left out, the votes as the compressed one does.
      for (const outcome of Object.values(result.outcomes))
        expect(new Set(outcome.excluded)).toEqual(new Set(result.excluded));
    });
  });

  it('a failed report leaves its rollout out of the integration, a failed integration leaves the votes', async () => {
    const seen: { kind: string; prompt: string }[] = [];
    // The first question's first report call is refused, and every integration call of the second question; the
    // third question's first report call is cut off at the token limit; every report call of the fourth is refused.
    let question = 0;
    let cutNextReport = false;
    const agg = new PoolMember({
      nc: suite.nc,
      pool: 'agg-refusing',
      id: 'agg-refusing',
      backend: refusingBackend(
        (kind, n) => (kind === 'report' ? n === 0 || question === 4 : question === 2),
        seen,
        (kind) => {
          if (kind !== 'report' || !cutNextReport) return false;
          cutNextReport = false;
          return true;
        },
      ),
    });
    await agg.start();
    const worker = await inProcessWorker(cfg);
    try {
      const run = (q: { question: string; answer: string }, id: string) =>
        runParallelMuse(
          suite.client,
          cfg,
          {
            n: 4,
            branchMode: 'none',
            aggregatorPool: 'agg-refusing',
            trajectory: { question: q.question, answer: q.answer, maxTurns: 30 },
          },
          { workflowId: id, jobId: id },
        );
      question = 1;
      const first = (await run(questions[4]!, 'pm-report-refused')).result;
      const answered = first.rollouts.filter((r) => r.termination === 'answer');
      expect(answered.length).toBeGreaterThanOrEqual(2);
      const c1 = first.outcomes.compressed!;
      expect(c1.failedReports).toEqual([
        { rolloutId: expect.any(String), error: expect.stringMatching(/refused report call/) },
      ]);
      expect(answered.map((r) => r.rolloutId)).toContain(c1.failedReports![0]!.rolloutId);
      // The integration read the other reports only, and still chose.
      const integration = seen.filter((r) => r.kind === 'integrate');
      expect(integration).toHaveLength(1);
      expect(integration[0]!.prompt.match(/<report id=/g)).toHaveLength(answered.length - 1);
      expect(c1.answer).toBeTruthy();
      expect(first.prediction).toBe(c1.answer);
      expect(first.accounting.aggregation.llmCalls).toBe(answered.length);

      question = 2;
      seen.length = 0;
      const second = (await run(questions[5]!, 'pm-integration-refused')).result;
      expect(second.rollouts).toHaveLength(4);
      const c2 = second.outcomes.compressed!;
      expect(c2.answer).toBeNull();
      expect(c2.reason).toMatch(/the integration call failed: .*refused integrate call/);
      expect(c2.failedReports).toBeUndefined();
      // The vote baselines stand; the prediction is the primary (compressed) aggregator's, so none.
      for (const name of ['majority', 'confidence_weighted', 'min_uncertainty'])
        expect(second.outcomes[name]!.answer).toBeTruthy();
      expect(second.prediction).toBeNull();
      // The server's failure says nothing of the answer: unscored, as a judge's failure is, not wrong.
      expect(second.correct).toBeUndefined();
      expect(second.judge).toEqual({
        method: 'exact',
        correct: null,
        error: expect.stringMatching(
          /^the compressed aggregator failed: the integration call failed: .*refused/,
        ),
      });
      expect(c2.correct).toBeUndefined();
      expect(second.outcomes.majority!.correct).toEqual(expect.any(Boolean));
      expect(second.compression).toBeUndefined();

      // A report cut off at the token limit is no report: its rollout is left out, named, and its call still counts.
      question = 3;
      cutNextReport = true;
      seen.length = 0;
      const third = (await run(questions[1]!, 'pm-report-cut-off')).result;
      const answered3 = third.rollouts.filter((r) => r.termination === 'answer');
      expect(answered3.length).toBeGreaterThanOrEqual(2);
      const c3 = third.outcomes.compressed!;
      expect(c3.failedReports).toEqual([
        {
          rolloutId: expect.any(String),
          error: expect.stringMatching(/report of .* was cut off at \d+ tokens \(maxTokensPerTurn\)/),
        },
      ]);
      const integration3 = seen.filter((r) => r.kind === 'integrate');
      expect(integration3).toHaveLength(1);
      expect(integration3[0]!.prompt.match(/<report id=/g)).toHaveLength(answered3.length - 1);
      expect(c3.answer).toBeTruthy();
      expect(third.accounting.aggregation.llmCalls).toBe(answered3.length + 1);
      expect(c3.callFailed).toBeUndefined();
      expect(typeof third.correct).toBe('boolean');

      question = 4;
      seen.length = 0;
      const fourth = (await run(questions[3]!, 'pm-reports-refused')).result;
      const c4 = fourth.outcomes.compressed!;
      expect(c4.answer).toBeNull();
      expect(c4.reason).toBe('every report call failed');
      expect(c4.callFailed).toBe(true);
      expect(seen.filter((r) => r.kind === 'integrate')).toHaveLength(0);
      expect(fourth.correct).toBeUndefined();
      expect(fourth.judge).toEqual({
        method: 'exact',
        correct: null,
        error: 'the compressed aggregator failed: every report call failed',
      });
    } finally {
      await worker.stop();
      await agg.stop();
    }
  });

  /**
   * A question of two rollouts, without branching, judged by an LLM on a pool of its own whose judge gives no verdict:
   * its result, and how many times the judge was asked.
   */
  async function judgedByVerdictlessLlm(workflowId: string, maxTurns: number) {
    const sim = new SimBackend({ profile: { timeScale: 0 } });
    let judgeCalls = 0;
    const agg = new PoolMember({
      nc: suite.nc,
      pool: 'agg-no-verdict',
      id: 'agg-no-verdict',
      backend: {
        kind: sim.kind,
        async generate(req, signal) {
          const g = await sim.generate(req, signal);
          if (!req.messages[req.messages.length - 1]!.content.includes('<gold>')) return g;
          judgeCalls++;
          return { ...g, text: 'Both answers name a place; hard to say.' };
        },
      },
    });
    await agg.start();
    const worker = await inProcessWorker(cfg);
    try {
      const q = questions[2]!;
      const { result } = await runParallelMuse(
        suite.client,
        cfg,
        {
          n: 2,
          branchMode: 'none',
          aggregators: ['majority'],
          primaryAggregator: 'majority',
          judge: 'llm',
          aggregatorPool: 'agg-no-verdict',
          trajectory: { question: q.question, answer: q.answer, maxTurns },
        },
        { workflowId, jobId: workflowId },
      );
      return { result, judgeCalls };
    } finally {
      await worker.stop();
      await agg.stop();
    }
  }

  it('an LLM judge that gives no verdict leaves the question unscored, not wrong', async () => {
    const workflowId = 'pm-judge-no-verdict';
    const { result, judgeCalls } = await judgedByVerdictlessLlm(workflowId, 30);
    expect(result.prediction).toBeTruthy();
    expect(judgeCalls).toBe(1);
    expect(result.judge).toEqual({
      method: 'llm',
      correct: null,
      error: expect.stringMatching(/no verdict/),
    });
    expect(result.correct).toBeUndefined();
    // In a batch's results file: unscored (null), which its accuracy leaves out, not false.
    expect(resultLine(workflowId, workflowId, 'h', result).correct).toBeNull();
  });

  it('a question with no answer to judge is scored wrong under the judge it asked for, with no judge call', async () => {
    // One turn: the simulated agent searches first, so no rollout answers.
    const { result, judgeCalls } = await judgedByVerdictlessLlm('pm-judge-no-answer', 1);
    expect(result.prediction).toBeNull();
    expect(judgeCalls).toBe(0);
    expect(result.judge).toEqual({ method: 'llm', correct: false });
  });

  it('reports a long iterresearch trajectory within the aggregation server window', async () => {
    // Every step repeats the evolving report: rendered whole, 30 steps would be far past 8000 tokens.
    const small = await inProcessMember(
      cfg,
      { backend: 'sim', timeScale: 0, maxModelLen: 8000 },
      { id: 'agg-small', pool: 'agg-small' },
    );
    const worker = await inProcessWorker(cfg);
    try {
      const q = questions[0]!;
      const { result } = await runParallelMuse(
        suite.client,
        cfg,
        {
          n: 2,
          branchMode: 'none',
          aggregatorPool: 'agg-small',
          trajectory: {
            question: `${q.question} [sim:min-turns=30]`,
            answer: q.answer,
            policy: 'iterresearch',
            maxTurns: 40,
            contextWindow: 8000,
            sampling: { maxTokensPerTurn: 1500 },
          },
        },
        { workflowId: 'pm-long-report', jobId: 'pm-long-report' },
      );
      expect(result.rollouts.filter((r) => r.termination === 'answer').length).toBe(2);
      expect(result.rollouts.every((r) => r.steps >= 30)).toBe(true);
      const c = result.outcomes.compressed!;
      expect(c.failedReports).toBeUndefined();
      expect(c.answer).toBeTruthy();
      // The trajectories are far past the window, yet no report call failed on a server that refuses any prompt
      // longer than it (failedReports above): what the report calls read was cut to fit.
      expect(result.compression!.trajectoryChars).toBeGreaterThan(8000 * 4);
      // And they reached that server: two reports and the integration.
      expect(small.member.stats.served).toBeGreaterThanOrEqual(3);
    } finally {
      await worker.stop();
      await small.stop();
    }
  });

  it('lists rollouts in launch order past ten (initial-10 after initial-9)', async () => {
    await withWorker(async () => {
      const { result } = await runParallelMuse(
        suite.client,
        cfg,
        {
          n: 12,
          branchMode: 'none',
          aggregators: ['majority'],
          primaryAggregator: 'majority',
          trajectory: { question: questions[1]!.question, maxTurns: 3 },
        },
        { workflowId: 'pm-order', jobId: 'pm-order' },
      );
      expect(result.rollouts.map((r) => r.rolloutId)).toEqual(
        Array.from({ length: 12 }, (_, i) => `initial-${i}`),
      );
    });
  });

  it('a cancelled question stops: no later round starts, and it ends cancelled once its rollouts have', async () => {
    await withWorker(async () => {
      const q = questions[2]!;
      const spec = parseParallelMuseSpec({
        trajectory: { question: `${q.question} [sim:min-turns=150]`, maxTurns: 200 },
      });
      const handle = await suite.client.workflow.start<typeof parallelMuse>('parallelMuse', {
        taskQueue: cfg.temporal.taskQueue,
        workflowId: 'pm-cancel',
        args: [{ spec, jobId: 'pm-cancel' }],
      });
      const initial = suite.client.workflow.getHandle('pm-cancel/initial-0');
      await waitUntil(
        async () => ((await queryProgress(initial).catch(() => undefined))?.step ?? 0) >= 3,
        60_000,
        'the initial rollout under way',
      );
      await handle.cancel();
      await expect(handle.result()).rejects.toThrow();
      expect((await handle.describe()).status.name).toBe('CANCELLED');
      // Only the initial and the planned from-scratch rollout ever started, and both ended on their own.
      const started: string[] = [];
      for (const e of (await handle.fetchHistory()).events ?? [])
        if (e.startChildWorkflowExecutionInitiatedEventAttributes)
          started.push(e.startChildWorkflowExecutionInitiatedEventAttributes.workflowId!);
      expect(started.sort()).toEqual(['pm-cancel/initial-0', 'pm-cancel/scratch-0']);
      for (const id of started) {
        const child = suite.client.workflow.getHandle(id);
        expect((await child.describe()).status.name).toBe('COMPLETED');
        expect(((await child.result()) as TrajectoryResult).termination).toBe('cancelled');
      }
    });
  });

  it("muse status of a question waiting on a pool nobody serves lists its rollouts' steps in retry", async () => {
    await withWorker(async () => {
      const { handle } = await startParallelMuse(
        suite.client,
        cfg,
        {
          n: 2,
          branchMode: 'none',
          trajectory: { question: questions[4]!.question, maxTurns: 5, pool: 'nobody' },
        },
        { workflowId: 'pm-nobody', jobId: 'pm-nobody', timeouts: { stepMs: 60_000, heartbeatMs: 2_000 } },
      );
      await waitUntil(
        async () => (await stepsInRetry(suite.client, await handle.describe())).length > 0,
        60_000,
        "a rollout's step in retry",
      );
      const status = await runMuse(['status', 'pm-nobody']);
      expect(status.code, status.stderr).toBe(0);
      const shown = JSON.parse(status.stdout);
      expect(shown).toMatchObject({ type: 'parallelMuse', status: 'RUNNING' });
      expect(shown.retrying.length).toBeGreaterThan(0);
      for (const step of shown.retrying) {
        expect(step.workflowId).toMatch(/^pm-nobody\/(initial|scratch)-\d+$/);
        expect(step.activity).toBe('llmStep');
        expect(step.lastFailure).toContain("pool 'nobody' is unavailable");
      }
      await handle.cancel();
      await expect(handle.result()).rejects.toThrow();
    });
  });

  it('a rollout that continued as new: its steps in retry are found, and cancelling the question reaches it', async () => {
    const worker = await inProcessWorker(cfg);
    const fading = await inProcessMember(cfg, { backend: 'sim' }, { pool: 'fading', id: 'fading-0' });
    let stopped = false;
    try {
      const { handle } = await startParallelMuse(
        suite.client,
        cfg,
        {
          n: 1,
          branchMode: 'none',
          trajectory: {
            question: `${questions[5]!.question} [sim:min-turns=150]`,
            maxTurns: 200,
            stepsPerRun: 2,
            pool: 'fading',
          },
        },
        { workflowId: 'pm-fading', jobId: 'pm-fading', timeouts: { stepMs: 60_000, heartbeatMs: 2_000 } },
      );
      const rollout = suite.client.workflow.getHandle('pm-fading/initial-0');
      await waitUntil(
        async () => ((await queryProgress(rollout).catch(() => undefined))?.step ?? 0) >= 5,
        60_000,
        'the rollout past two continue-as-new boundaries',
      );
      await fading.stop();
      stopped = true;
      await waitUntil(
        async () => (await stepsInRetry(suite.client, await handle.describe())).length > 0,
        60_000,
        "the rollout's step in retry",
      );
      const [step] = await stepsInRetry(suite.client, await handle.describe());
      expect(step).toMatchObject({ workflowId: 'pm-fading/initial-0', activity: 'llmStep' });
      expect(step!.lastFailure).toContain("pool 'fading' is unavailable");
      // The SDK cancels the run it started, which has closed; the question must reach the latest one itself.
      await handle.cancel();
      await expect(handle.result()).rejects.toThrow();
      expect((await handle.describe()).status.name).toBe('CANCELLED');
      expect((await rollout.describe()).status.name).toBe('COMPLETED');
      expect(((await rollout.result()) as TrajectoryResult).termination).toBe('cancelled');
    } finally {
      if (!stopped) await fading.stop();
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
    // Awaited below; until then its failure would go unhandled and hide whatever check failed first.
    running.catch(() => {});
    // Killed when a rollout is steps into its run, so that a restarted worker has steps it must not run again.
    await waitUntil(
      async () =>
        ((await queryProgress(suite.client.workflow.getHandle('pm-kill/initial-0')).catch(() => undefined))
          ?.step ?? 0) >= 2,
      60_000,
      'a rollout two steps in',
    );
    await killHard(child);
    // No worker is left: the question cannot have finished, so what follows is the new worker's doing.
    expect((await suite.client.workflow.getHandle('pm-kill').describe()).status.name).toBe('RUNNING');
    await withWorker(async () => {
      const { result } = await running;
      expect(result.prediction).toBe(reference.prediction);
      expect(result.rollouts.map((r) => r.prediction)).toEqual(reference.rollouts.map((r) => r.prediction));
      // No finished step ran again: each rollout's history has one completed llmStep per step it took itself.
      for (const r of result.rollouts) {
        const child = suite.client.workflow.getHandle(`pm-kill/${r.rolloutId}`);
        expect(await completedActivities(child, 'llmStep'), r.rolloutId).toBe(
          r.steps - r.lineage.reusedSteps,
        );
      }
      expect(result.rollouts.length).toBeGreaterThan(1);
    });
  });

  it('a question that was terminated (or failed) starts again when re-run, instead of repeating the failure', async () => {
    const spec = parseParallelMuseSpec({
      n: 2,
      branchMode: 'none',
      trajectory: { question: questions[5]!.question, maxTurns: 30 },
    });
    // No worker yet: the first run never gets anywhere before it is terminated.
    const first = await suite.client.workflow.start<typeof parallelMuse>('parallelMuse', {
      taskQueue: cfg.temporal.taskQueue,
      workflowId: 'pm-retry',
      args: [{ spec, jobId: 'pm-retry' }],
    });
    await first.terminate('test');
    await withWorker(async () => {
      const again = await runParallelMuse(suite.client, cfg, spec, {
        workflowId: 'pm-retry',
        jobId: 'pm-retry',
      });
      expect(again.reused).toBe(false);
      expect(again.result.rollouts).toHaveLength(2);
      // Completed now: a further run attaches to it.
      const third = await runParallelMuse(suite.client, cfg, spec, {
        workflowId: 'pm-retry',
        jobId: 'pm-retry',
      });
      expect(third.reused).toBe(true);
      expect(third.result.prediction).toBe(again.result.prediction);
    });
  });

  it('muse run --mode parallel-muse: the same command reuses its run, a changed option runs anew, another question cannot take its id; muse export of it', async () => {
    await withWorker(async () => {
      const q = questions[2]!.question;
      const args = (n: number) => [
        'run',
        '--mode',
        'parallel-muse',
        '--n',
        `${n}`,
        '--branch-mode',
        'none',
        '--max-turns',
        '30',
        q,
      ];
      const first = await runMuse([...args(2), '--json']);
      expect(first.code, first.stderr).toBe(0);
      const a = JSON.parse(first.stdout);
      expect(a).toMatchObject({ reused: false, plan: { n: 2 } });
      expect(a.models).toEqual(['muse-sim (simulator, not a language model)']);
      const same = await runMuse(args(2));
      expect(same.code, same.stderr).toBe(0);
      expect(same.stdout).toContain('model      : muse-sim (simulator, not a language model)');
      expect(same.stderr).toMatch(new RegExp(`reusing run ${a.questionId}`));
      const changed = await runMuse([...args(3), '--json']);
      expect(changed.code, changed.stderr).toBe(0);
      const c = JSON.parse(changed.stdout);
      expect(c).toMatchObject({ reused: false, plan: { n: 3 } });
      expect(c.rollouts).toHaveLength(3);
      expect(c.questionId).not.toBe(a.questionId);
      // The first run's id given to another question: refused, not answered with the first question's result.
      const otherQuestion = await runMuse([
        ...args(2).slice(0, -1),
        questions[3]!.question,
        '--id',
        a.questionId,
      ]);
      expect(otherQuestion.code).not.toBe(0);
      expect(otherQuestion.stderr).toMatch(
        new RegExp(`workflow ${a.questionId} already ran \\(or is running\\) with another question`),
      );
      // muse export names what a question id is and leaves an earlier export alone; a rollout of it exports.
      const exported = join(tempDir('muse-export-'), 'steps.jsonl');
      const earlier = `${JSON.stringify({ step: 0, kind: 'tool', turn: 'an earlier export' })}\n`;
      writeFileSync(exported, earlier);
      const wrongKind = await runMuse(['export', a.questionId, '--out', exported]);
      expect(wrongKind.code).not.toBe(0);
      expect(wrongKind.stderr).toMatch(/is a parallelMuse workflow, not a trajectory/);
      expect(readFileSync(exported, 'utf8')).toBe(earlier);
      const rollout = await runMuse(['export', `${a.questionId}/initial-0`, '--out', exported]);
      expect(rollout.code, rollout.stderr).toBe(0);
      const lines = readFileSync(exported, 'utf8').trim().split('\n');
      expect(lines.length).toBeGreaterThan(0);
      expect(JSON.parse(lines[0]!)).toHaveProperty('turn');
      // muse status of the ended question shows its result.
      const status = await runMuse(['status', a.questionId]);
      expect(status.code, status.stderr).toBe(0);
      expect(JSON.parse(status.stdout)).toMatchObject({
        status: 'COMPLETED',
        result: {
          prediction: a.prediction,
          rollouts: 2,
          rolloutIds: expect.arrayContaining([`${a.questionId}/initial-0`]),
        },
      });
      // muse content delete removes the job's stored content (its id is the question's workflow id): the rollout
      // no longer exports, and a second delete finds nothing.
      const deleted = await runMuse(['content', 'delete', a.questionId]);
      expect(deleted.code, deleted.stderr).toBe(0);
      expect(deleted.stdout).toMatch(/^deleted KV_muse-/);
      const gone = await runMuse(['export', `${a.questionId}/initial-0`, '--out', exported]);
      expect(gone.code).not.toBe(0);
      expect(gone.stderr).toMatch(/content reference kv:\S+ cannot be resolved: the blob is missing/);
      const again = await runMuse(['content', 'delete', a.questionId]);
      expect(again.stdout).toMatch(/no stored content for job/);
    });
  });

  it('an --id that names another kind of workflow, or a finished trajectory, is refused rather than attached to or run again', async () => {
    await withWorker(async () => {
      const id = 'cli-id-reuse';
      const q = questions[0]!.question;
      const first = await runMuse(['run', '--id', id, '--max-turns', '20', '--json', q]);
      expect(first.code, first.stderr).toBe(0);
      const asQuestion = await runMuse([
        'run',
        '--mode',
        'parallel-muse',
        '--n',
        '2',
        '--branch-mode',
        'none',
        '--max-turns',
        '20',
        '--id',
        id,
        '--json',
        q,
      ]);
      expect(asQuestion.code).not.toBe(0);
      expect(asQuestion.stderr).toMatch(
        /workflow cli-id-reuse is a trajectory workflow, not a ParallelMuse question/,
      );
      expect(asQuestion.stdout).toBe('');
      const again = await runMuse(['run', '--id', id, '--max-turns', '20', q]);
      expect(again.code).not.toBe(0);
      expect(again.stderr).toMatch(/a workflow with id 'cli-id-reuse' is already running or kept/);
      // One that ended in error (its server refused the model) is run anew under its id once that is fixed.
      const refusing = await scriptedMember(suite.nc, 'refuses-id', notServed);
      try {
        const failed = await runMuse([
          'run',
          '--id',
          'cli-id-error',
          '--pool',
          'refuses-id',
          '--max-turns',
          '20',
          q,
        ]);
        expect(failed.code).toBe(1);
        expect(failed.stdout).toMatch(/termination: error/);
      } finally {
        await refusing.stop();
      }
      const rerun = await runMuse(['run', '--id', 'cli-id-error', '--max-turns', '20', '--json', q]);
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(JSON.parse(rerun.stdout)).toMatchObject({ id: 'cli-id-error', termination: 'answer' });
    });
  });

  /** `muse batch` of `input` into `out` at a budget of 2 rollouts a question, without branching, and `more`. */
  const smallBatch = (input: string, out: string, ...more: string[]) => [
    'batch',
    input,
    '--out',
    out,
    '--n',
    '2',
    '--branch-mode',
    'none',
    ...more,
  ];

  /**
   * Two simulator questions in a file, the second refused for good (a model the server does not have) by the member
   * of pool `job` while `refusing()` says so, and the `muse batch` arguments that run them under job `job`.
   */
  async function batchWithRefusedQuestion(job: string, seed: number, refusing: () => boolean = () => true) {
    const dir = tempDir(`muse-${job}-`);
    const input = join(dir, 'q.jsonl');
    const out = join(dir, 'out.jsonl');
    const [fine, refused] = sampleQuestions(2, seed) as [(typeof questions)[0], (typeof questions)[0]];
    writeFileSync(input, `${JSON.stringify(fine)}\n${JSON.stringify(refused)}\n`);
    const sim = new SimBackend({ profile: { timeScale: 0 } });
    const flaky = await scriptedMember(suite.nc, job, (req, signal) =>
      refusing() && JSON.stringify(req.messages).includes(refused.question)
        ? notServed()
        : sim.generate(req, signal),
    );
    const args = smallBatch(input, out, '--pool', job, '--job', job);
    const stop = async () => {
      await flaky.stop();
      await sim.close();
    };
    return { out, fine, refused, args, stop };
  }

  it('batch: a question that failed is left out of --out, the CLI names it and exits 1, and a re-run runs it again', async () => {
    // Until it is fixed, the server refuses every request of the second question for good.
    let refusing = true;
    const { out, fine, refused, args, stop } = await batchWithRefusedQuestion(
      'batch-failed',
      406,
      () => refusing,
    );
    try {
      await withWorker(async () => {
        const first = await runMuse(args);
        expect(first.code).toBe(1);
        expect(first.stdout).toMatch(/job batch-failed: 1 completed, 0 already done, 1 failed, 0 bad lines/);
        expect(first.stderr).toMatch(
          /question on line 2 failed: .*every rollout of the question failed.*model not served/,
        );
        const results = () =>
          readFileSync(out, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as { question: string });
        expect(results().map((r) => r.question)).toEqual([fine.question]);
        refusing = false;
        const second = await runMuse(args);
        expect(second.code, second.stderr).toBe(0);
        expect(second.stdout).toMatch(/job batch-failed: 1 completed, 1 already done, 0 failed, 0 bad lines/);
        expect(results().map((r) => r.question)).toEqual([fine.question, refused.question]);
      });
    } finally {
      await stop();
    }
  });

  it('batch on a terminal: a progress bar, and the failures told once it is gone, with the summary', async () => {
    const { args, stop } = await batchWithRefusedQuestion('batch-tty', 407);
    try {
      await withWorker(async () => {
        const run = runMuseOnTerminal(cfg, args);
        suite.children.push(run.child);
        const { code, output } = await run.done;
        expect(code, output).toBe(1);
        // The bar (cli-progress redraws it in place: carriage returns, no line per question as without a terminal).
        expect(output).toMatch(/[░█]{10,} 2\/2 questions, 0 running/);
        expect(output).not.toMatch(/^ {2}\d+\/2 questions/m);
        // The failure, after the bar's last drawing, and the summary.
        const failure = output.search(/question on line 2 failed: .*every rollout of the question failed/);
        expect(failure).toBeGreaterThan(output.lastIndexOf('2/2 questions'));
        expect(output).toMatch(/job batch-tty: 1 completed, 0 already done, 1 failed, 0 bad lines/);
      });
    } finally {
      await stop();
    }
  });

  it('batch: reports bad lines by number, and a re-run after a kill does not redo finished questions', async () => {
    const dir = tempDir('muse-batch-');
    const input = join(dir, 'q.jsonl');
    const out = join(dir, 'out.jsonl');
    const lines = questions.slice(0, 4).map((q) => JSON.stringify(q));
    lines.splice(2, 0, '{"question": oops}');
    writeFileSync(input, `${lines.join('\n')}\n`);
    const child = await spawnMuse(cfg, ['worker'], /rollout worker on task queue/);
    suite.children.push(child);
    const batchArgs = (extra: string[] = []) =>
      smallBatch(input, out, '--concurrency', '1', '--job', 'batch-it', ...extra);
    const batch = await spawnMuse(cfg, batchArgs(), /questions|line/);
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
    // A line cut short by a crash, and the lock the killed batch left: both handled on the next start.
    const cut = '{"job":"batch-it","workflowId":"cut-sh';
    appendFileSync(out, cut);
    expect(existsSync(`${out}.lock`)).toBe(true);
    const spec = { n: 2, branchMode: 'none' as const, trajectory: {} };
    const summary = await runBatch(suite.client, cfg, {
      input,
      output: out,
      jobId: 'batch-it',
      concurrency: 2,
      spec,
    });
    expect(existsSync(`${out}.lock`)).toBe(false);
    expect(summary.badLines).toEqual([{ line: 3, error: expect.stringMatching(/line 3 is not valid JSON/) }]);
    expect(summary.skipped).toBe(before);
    expect(summary.completed + summary.skipped).toBe(4);
    const readResults = () => {
      const all = readFileSync(out, 'utf8').split('\n').filter(Boolean);
      // The cut line is gone (its question's result was fetched again): every line is whole JSON.
      expect(all).not.toContain(cut);
      return all.map((l) => JSON.parse(l));
    };
    const results = readResults();
    // One line per question: a question done again would append a second line with the same id.
    expect(results).toHaveLength(4);
    expect(new Set(results.map((r) => r.workflowId)).size).toBe(4);
    for (const r of results) {
      expect(r.rollouts).toHaveLength(2);
      expect(r.rollouts[0]).toMatchObject({ question: r.question, rollout_type: 'traj_level_rollout' });
      expect(r.aggregator).toBe('compressed');
    }

    // The CLI, everything done: the bad line still makes it fail, with a summary.
    const rerun = await runMuse(batchArgs());
    expect(rerun.code, rerun.stderr).toBe(1);
    expect(rerun.stdout).toMatch(/0 completed, 4 already done, 0 failed, 1 bad lines/);
    expect(rerun.stderr).toMatch(/1 bad line\(s\) in .* did not run/);
    // Other options on the same results file: refused, naming --out, nothing appended.
    const other = await runMuse(batchArgs(['--n', '3']));
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/--out.*other options|other options.*--out/);
    expect(readResults()).toHaveLength(4);

    // Fixing the bad line moves the later questions down a line: they are not run again.
    lines[2] = JSON.stringify(questions[4]!);
    writeFileSync(input, `${lines.join('\n')}\n`);
    const fixed = await runBatch(suite.client, cfg, {
      input,
      output: out,
      jobId: 'batch-it',
      concurrency: 2,
      spec,
    });
    expect(fixed).toMatchObject({ completed: 1, skipped: 4, badLines: [] });
    const after = readResults();
    expect(after).toHaveLength(5);
    expect(new Set(after.map((r) => r.workflowId)).size).toBe(5);
    // The accuracy covers every question in the file, not only this run's one.
    const correct = after.filter((r) => r.correct === true).length;
    expect(fixed).toMatchObject({ scored: 5, correct });

    // Everything done: nothing redone, the accuracy over the whole file.
    const paced = await runMuse(batchArgs());
    expect(paced.code, paced.stderr).toBe(0);
    expect(paced.stdout).toMatch(
      new RegExp(`0 completed, 5 already done, 0 failed, 0 bad lines; accuracy ${correct}/5`),
    );
    // Another limit of rollouts in flight is not other options: the same questions, nothing redone.
    const relimited = await runMuse(batchArgs(['--max-concurrent-rollouts', '4']));
    expect(relimited.code, relimited.stderr).toBe(0);
    expect(relimited.stdout).toMatch(/0 completed, 5 already done, 0 failed, 0 bad lines/);

    // A corrected answer: that question's verdict was for the old one, so it is named and left out of the accuracy.
    lines[0] = JSON.stringify({ ...questions[0]!, answer: 'a corrected answer' });
    writeFileSync(input, `${lines.join('\n')}\n`);
    const corrected = await runMuse(batchArgs());
    expect(corrected.code, corrected.stderr).toBe(0);
    expect(corrected.stderr).toMatch(
      /question on line 1 was judged against the answer ".+", not "a corrected answer": left out of the accuracy/,
    );
    const first = after.find((r) => r.question === questions[0]!.question)!;
    expect(corrected.stdout).toMatch(new RegExp(`accuracy ${correct - (first.correct === true ? 1 : 0)}/4`));
    expect(readResults()).toHaveLength(5);

    // An answer corrected while its question runs (or ran, before its line was written): the batch attaches to the
    // run, which stays judged against the answer it started with, and names it instead of failing the question.
    const late = join(dir, 'late.jsonl');
    const lateOut = join(dir, 'late-out.jsonl');
    const [pending] = assignWorkflowIds(
      [{ ...questions[5]!, occurrence: 0 }],
      'batch-late',
      sharedBatchSpec(spec).hash,
    );
    await startParallelMuse(
      suite.client,
      cfg,
      { ...spec, trajectory: { question: questions[5]!.question, answer: 'the first answer' } },
      { workflowId: pending!.workflowId, jobId: 'batch-late' },
    );
    writeFileSync(
      late,
      `${JSON.stringify({ question: questions[5]!.question, answer: 'the corrected answer' })}\n`,
    );
    // Re-run with another limit of rollouts in flight: still attached (the run keeps the limit it started with).
    const attached = await runBatch(suite.client, cfg, {
      input: late,
      output: lateOut,
      jobId: 'batch-late',
      concurrency: 1,
      spec: { ...spec, maxConcurrentRollouts: 4 },
    });
    expect(attached).toMatchObject({
      completed: 1,
      failed: [],
      scored: 0,
      answerChanged: [{ line: 1, judgedAgainst: 'the first answer', now: 'the corrected answer' }],
    });
    expect(JSON.parse(readFileSync(lateOut, 'utf8'))).toMatchObject({
      workflowId: pending!.workflowId,
      answer: 'the first answer',
    });

    // A run an earlier version started, with a limit other than the default, recorded the hash of its spec with the
    // limit: the same options still attach to it.
    const earlier = {
      ...spec,
      maxConcurrentRollouts: 3,
      trajectory: { question: questions[1]!.question, answer: questions[1]!.answer },
    };
    const earlierId = `batch-earlier-${randomUUID().slice(0, 8)}`;
    const full = parseParallelMuseSpec(earlier);
    await suite.client.workflow.start<typeof parallelMuse>('parallelMuse', {
      taskQueue: cfg.temporal.taskQueue,
      workflowId: earlierId,
      args: [{ spec: full, jobId: 'batch-earlier' }],
      memo: { specHash: specHash(full), jobId: 'batch-earlier' },
    });
    const reattached = await startParallelMuse(suite.client, cfg, earlier, {
      workflowId: earlierId,
      jobId: 'batch-earlier',
    });
    expect(reattached.reused).toBe(true);
    await reattached.handle.result();
    await expect(
      startParallelMuse(
        suite.client,
        cfg,
        { ...earlier, n: 3 },
        { workflowId: earlierId, jobId: 'batch-earlier' },
      ),
    ).rejects.toThrow(/already ran .* with another question, answer or other options/);
    await killHard(child);
  });

  it('batch: a result it cannot write stops the batch with the reason, instead of running every other question for nothing', async () => {
    const dir = tempDir('muse-batch-unwritable-');
    const input = join(dir, 'q.jsonl');
    const out = join(dir, 'out.jsonl');
    writeFileSync(
      input,
      `${sampleQuestions(3, 407)
        .map((q) => JSON.stringify(q))
        .join('\n')}\n`,
    );
    const spec = { n: 1, branchMode: 'none' as const, trajectory: {} };
    const started: number[] = [];
    await withWorker(async () => {
      const run = runBatch(suite.client, cfg, {
        input,
        output: out,
        jobId: 'batch-unwritable',
        concurrency: 1,
        spec,
        // The results file becomes a directory once the batch has opened it: every append fails (EISDIR), as on a
        // full disk.
        onStart: () => mkdirSync(out),
        onProgress: (e) => started.push(e.running),
      });
      await expect(run).rejects.toThrow(/cannot write .*out\.jsonl \(--out\): EISDIR.*the batch stopped/);
    });
    // One question ran (its start and end reported); the other two never started.
    expect(started.filter((running) => running === 1)).toHaveLength(1);
  });

  it('batch: an error in one worker stops the others writing, since the lock goes with it', async () => {
    const dir = tempDir('muse-batch-crash-');
    const input = join(dir, 'q.jsonl');
    const out = join(dir, 'out.jsonl');
    const asked = sampleQuestions(2, 408);
    writeFileSync(input, `${asked.map((q) => JSON.stringify(q)).join('\n')}\n`);
    const spec = { n: 1, branchMode: 'none' as const, trajectory: {} };
    await withWorker(async () => {
      const run = runBatch(suite.client, cfg, {
        input,
        output: out,
        jobId: 'batch-crash',
        concurrency: 2,
        spec,
        // The second worker fails as it starts its question; the first one's question is already under way.
        onProgress: (e) => {
          if (e.running === 2) throw new Error('progress display failed');
        },
      });
      await expect(run).rejects.toThrow('progress display failed');
      expect(existsSync(`${out}.lock`)).toBe(false);
      // The first question still finishes in Temporal; with the lock gone, its result is not appended.
      const [first] = assignWorkflowIds(
        asked.map((q) => ({ question: q.question, occurrence: 0 })),
        'batch-crash',
        sharedBatchSpec(spec).hash,
      );
      // Its start may still be on its way when the batch has failed.
      const handle = suite.client.workflow.getHandle(first!.workflowId);
      await waitUntil(
        () =>
          handle.describe().then(
            () => true,
            () => false,
          ),
        20_000,
        'the first question started',
      );
      await handle.result();
      await sleep(1_000);
    });
    expect(existsSync(out) ? readFileSync(out, 'utf8') : '').toBe('');
  });

  it('batch: one copy at a time per results file; Ctrl-C removes the lock', async () => {
    const dir = tempDir('muse-batch-lock-');
    const input = join(dir, 'q.jsonl');
    const out = join(dir, 'out.jsonl');
    const question = `${questions[5]!.question} [lock test]`;
    writeFileSync(input, `${JSON.stringify({ question })}\n`);
    // No worker on this queue: the batch waits on its question, holding the lock.
    const { child, done } = startMuse(smallBatch(input, out, '--job', 'batch-lock'));
    await waitUntil(() => existsSync(`${out}.lock`), 60_000, 'the batch lock');
    // Recorded before any result: a re-run without --job continues this job.
    await waitUntil(() => existsSync(`${out}.job`), 10_000, 'the recorded job');
    expect(readFileSync(`${out}.job`, 'utf8')).toBe('batch-lock\n');
    const spec = { n: 2, branchMode: 'none' as const, trajectory: {} };
    await expect(
      runBatch(suite.client, cfg, { input, output: out, jobId: 'batch-lock', concurrency: 1, spec }),
    ).rejects.toThrow(new RegExp(`another muse batch \\(pid ${child.pid} .*--out`));
    child.kill('SIGINT');
    const ended = await done;
    expect(ended.code, ended.stderr).toBe(130);
    expect(existsSync(`${out}.lock`)).toBe(false);
    const [item] = assignWorkflowIds([{ question, occurrence: 0 }], 'batch-lock', sharedBatchSpec(spec).hash);
    await suite.client.workflow
      .getHandle(item!.workflowId)
      .terminate('test cleanup')
      .catch(() => {});
  });
});
