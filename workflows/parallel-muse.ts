// ParallelMuse for one question: initial rollouts, uncertainty-guided partial rollouts that reuse the
// recorded prefix (by reference: no model or tool call is repeated), optional further rounds that branch
// from the branches, from-scratch rollouts to fill the budget, then compressed reasoning aggregation and the
// vote baselines over the same rollouts. Every rollout is a child trajectory workflow with a deterministic
// id, bounded in flight.
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  deprecatePatch,
  executeChild,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  proxyActivities,
  workflowInfo,
} from '@temporalio/workflow';
import type { MuseActivities } from '../activities/index.js';
import {
  type AggregateResult,
  aggregate,
  exactMatch,
  hasAnswerText,
  withinErrorLimit,
  withinResultLimit,
} from '../agent/aggregate.js';
import {
  type BranchPoint,
  type BudgetPlan,
  branchCandidates,
  historyBudgetProblem,
  lastBranchStepBeforeAnswer,
  planBudget,
  type RolloutOrigin,
  type RoundCandidate,
  rolloutType,
  scratchToFill,
  selectRoundBranchPoints,
  type UnscoredSteps,
} from '../agent/branching.js';
import { type ParallelMuseSpec, ParallelMuseSpecSchema } from '../agent/job.js';
import {
  addUsage,
  type BranchableStep,
  emptyUsage,
  generationAllowanceMs,
  type Lineage,
  noteModel,
  reuseTotals,
  type TrajectoryResult,
  type UsageTotals,
} from '../agent/trajectory.js';
import type { Termination } from '../agent/types.js';
import { meanUncertainty, tallyTurns } from '../agent/uncertainty.js';
import { causeChainMessage } from '../common/errors.js';
import { fmix32, fnv1a32 } from '../common/hash.js';
import { createLimiter } from '../common/limiter.js';
import { checkedInput, inputFailure } from './input.js';
import { DEFAULT_TIMEOUTS, NON_RETRYABLE, type StepTimeouts, trajectory } from './trajectory.js';

export interface ParallelMuseInput {
  spec: ParallelMuseSpec;
  jobId: string;
  timeouts?: StepTimeouts;
}

export interface RolloutRecord {
  rolloutId: string;
  /** As in the reference's output: traj_level_rollout | partial_rollout. */
  rollout_type: string;
  origin: RolloutOrigin;
  /** Clipped in the question's result when the rollouts' answers together pass its limit (withinResultLimit). */
  prediction: string | null;
  termination: Termination;
  steps: number;
  usage: UsageTotals;
  uncertainty: number;
  lineage: Lineage;
  error?: string;
  /** The trajectory's reason for ending short of an answer without failing (TrajectoryResult.reason). */
  reason?: string;
}

export interface AggregatorOutcome extends AggregateResult {
  correct?: boolean;
  /** compressed: answered rollouts whose report call failed, left out of the integration. */
  failedReports?: { rolloutId: string; error: string }[];
  /**
   * compressed: no answer because its model calls failed for good (every report call, or the integration call),
   * not because the model gave none: as primary aggregator it leaves the question unscored, not wrong.
   */
  callFailed?: true;
}

export interface ParallelMuseResult {
  questionId: string;
  question: string;
  answer?: string;
  /** The primary aggregator's answer; null when no trajectory answered or that aggregator failed (its reason says). */
  prediction: string | null;
  aggregator: string;
  /**
   * Whether the prediction matches the answer; absent without an answer, when an LLM judge gave no verdict, or when
   * the primary aggregator's model calls failed (judge.error says which).
   */
  correct?: boolean;
  judge?: { method: 'exact' | 'llm'; correct: boolean | null; error?: string };
  outcomes: Record<string, AggregatorOutcome>;
  rollouts: RolloutRecord[];
  /** Rollouts without an answer, left out of aggregation. */
  excluded: string[];
  plan: { n: number; initial: number; partial: number; scratch: number; rounds: number };
  accounting: {
    promptTokens: number;
    cachedPromptTokens: number;
    /** Tokens the model generated for this question's rollouts (reused prefixes not counted again). */
    generatedTokens: number;
    toolCalls: number;
    reusedTokens: number;
    reusedToolCalls: number;
    /** 1 + Σreused / Σgenerated. */
    reuseFactor: number;
    /** Report, integration and judge calls (llmCalls counts them). */
    aggregation: UsageTotals;
  };
  compression?: { trajectoryChars: number; reportChars: number; integrationContextChars: number };
  /** What generated the rollouts' turns and the aggregation calls (TrajectoryResult.models). */
  models?: string[];
}

export async function parallelMuse(given: ParallelMuseInput): Promise<ParallelMuseResult> {
  const {
    input,
    plan: checkedPlan,
    checkedIn,
  } = await checkedInput('parallelMuse', ParallelMuseSpecSchema, given);
  const { spec, jobId } = input;
  const questionId = workflowInfo().workflowId;
  const tspec = spec.trajectory;
  const aggregation = proxyActivities<MuseActivities>({
    // Reports and the integration generate up to maxTokensPerTurn, as a turn does.
    startToCloseTimeout: Math.max(10 * 60_000, 2 * generationAllowanceMs(tspec.sampling.maxTokensPerTurn)),
    heartbeatTimeout: '1 minute',
    retry: {
      initialInterval: '1s',
      maximumInterval: '15s',
      nonRetryableErrorTypes: NON_RETRYABLE,
    },
  });
  // The plan the input check recorded; runs started before it was recorded plan here, as they did.
  let plan: BudgetPlan;
  if (checkedPlan) plan = checkedPlan;
  else {
    try {
      plan = planBudget({ n: spec.n, m: spec.m, k: spec.k, t: spec.t, r: spec.r, mode: spec.branchMode });
    } catch (err) {
      throw inputFailure(err);
    }
    // Runs started before the history check replay without it.
    if (patched('check-history-budget')) {
      const problem = historyBudgetProblem(plan, spec);
      if (problem) throw ApplicationFailure.nonRetryable(`parallelMuse: ${problem}`, 'BudgetError');
    }
  }

  const limit = createLimiter(spec.maxConcurrentRollouts);
  const rollouts: RolloutRecord[] = [];
  const outputs = new Map<string, TrajectoryResult>();
  // Every rollout launched, in launch order: records are listed in it (within each origin), and a cancelled
  // question waits for all of them before it ends.
  const launched = new Map<string, Promise<RolloutRecord>>();
  // Workflow ids of the rollouts started and not yet ended (a launched one may still wait for a slot). When the
  // question is cancelled they are also asked by workflow id (see cancelLatestRuns).
  const running = new Set<string>();
  void CancellationScope.current().cancelRequested.catch(() =>
    CancellationScope.nonCancellable(() => cancelLatestRuns(running)),
  );

  const runRollout = (
    rolloutId: string,
    origin: RolloutOrigin,
    seed: number,
    branch?: { parent: TrajectoryResult; parentId: string; step: number; round: number },
  ): Promise<RolloutRecord> => {
    const p = limit(async () => {
      const workflowId = `${questionId}/${rolloutId}`;
      const keepsBranchable = branchedFrom(origin, branch?.round);
      // The parent's facts for the steps a branch takes over unchanged.
      const reused = branch ? branch.parent.branchable!.slice(0, branch.step) : [];
      const lineage: Lineage = branch
        ? branchLineage(reused, branch.parentId, branch.step, branch.round, spec.branchMode)
        : {
            rolloutType: origin === 'initial' ? 'initial' : 'scratch',
            round: 0,
            reusedSteps: 0,
            reusedCompletionTokens: 0,
            reusedToolCalls: 0,
          };
      let out: TrajectoryResult | undefined;
      let error: string | undefined;
      running.add(workflowId);
      try {
        out = await executeChild(trajectory, {
          workflowId,
          args: [
            {
              spec: { ...tspec, seed },
              jobId,
              timeouts: input.timeouts ?? DEFAULT_TIMEOUTS,
              routeKey: questionId,
              ...(keepsBranchable ? {} : { keepBranchable: false }),
              ...(branch
                ? {
                    branch: {
                      contextRef: branch.parent.branchable![branch.step]!.contextBefore,
                      step: branch.step,
                      prefixLog: branch.parent.log.map((s) => ({
                        ref: s.ref,
                        untilStep: Math.min(s.untilStep ?? Number.MAX_SAFE_INTEGER, branch.step),
                      })),
                      ...(keepsBranchable
                        ? { prefixSteps: reused }
                        : { prefixUncertainty: tallyTurns(reused.map((s) => s.regions)) }),
                      lineage,
                      ...branchRatio(branch.parent, branch.step),
                    },
                  }
                : {}),
            },
          ],
        });
        outputs.set(rolloutId, out);
      } catch (err) {
        if (isCancellation(err)) throw err;
        // With its cause: a child's failure alone says only "Child Workflow execution failed".
        error = causeChainMessage(err);
      } finally {
        running.delete(workflowId);
      }
      const record: RolloutRecord = {
        rolloutId,
        rollout_type: rolloutType(origin),
        origin,
        prediction: out?.prediction ?? null,
        termination: out?.termination ?? 'error',
        steps: out?.steps ?? 0,
        usage: out?.usage ?? emptyUsage(),
        uncertainty: out ? meanUncertainty(out.uncertainty) : Number.POSITIVE_INFINITY,
        lineage,
        ...((error ?? out?.error) ? { error: error ?? out?.error } : {}),
        ...(out?.reason ? { reason: out.reason } : {}),
      };
      rollouts.push(record);
      return record;
    });
    launched.set(rolloutId, p);
    return p;
  };

  /** Whether a later round may branch from this rollout: initial ones when branching is on, and all but the last round. */
  const branchedFrom = (origin: RolloutOrigin, round = 0) =>
    spec.branchMode !== 'none' && origin !== 'scratch' && round < spec.r;

  // Each rollout's seed derives from its id, unique within the question, so no two rollouts share one.
  const seedFor = (rolloutId: string) => fmix32(fnv1a32(rolloutId, fnv1a32(String(tspec.seed))));
  let partialLaunched = 0;
  let topUp = 0;
  try {
    // Initial and from-scratch rollouts are independent of one another: all start at once (bounded).
    const initial = Array.from({ length: plan.initial }, (_, j) =>
      runRollout(`initial-${j}`, 'initial', seedFor(`initial-${j}`)),
    );
    const scratch = Array.from({ length: plan.scratch }, (_, s) =>
      runRollout(`scratch-${s}`, 'scratch', seedFor(`scratch-${s}`)),
    );

    if (spec.branchMode !== 'none') {
      const initialRecords = await Promise.all(initial);
      // One lineage per initial rollout; each round branches from the previous round's rollouts of that lineage.
      let frontier: { lineage: number; ids: string[]; branchSteps: number[] }[] = initialRecords.map(
        (r, j) => ({
          lineage: j,
          ids: [r.rolloutId],
          branchSteps: [0],
        }),
      );
      // Later rounds branch past each branch's own branch point: its step there was sampled from the state the
      // previous round already branched at. (A question that chose its round-2 points before this rule replays as it
      // ran: asked once, when round 2 is about to choose.)
      let pastBranchPoint = false;
      // Steps without the mode's score, and a finished rollout's answer turn, are candidates ranked last. Questions
      // that chose before, with them left out, must replay as they ran, and that change was made without a patch:
      // the version that started a run is told by its input check instead, which came nine minutes before it. Runs
      // without one chose the old way; runs started in those nine minutes are taken for the new one.
      const unscored: UnscoredSteps = checkedIn === 'none' ? 'skipped' : 'last';
      for (let round = 1; round <= spec.r; round++) {
        throwIfCancelled();
        // Questions started by the version that told the rules apart by this patch recorded its marker here. Every
        // later version records it deprecated, whichever rule it chose by, and workflow code cannot tell the two
        // apart: the rule stays with the input check, and questions of that version's 20 minutes without one do not
        // replay.
        if (round === 1) deprecatePatch('branch-unscored-ranked-last');
        if (round === 2) pastBranchPoint = patched('rounds-branch-past-branch-point');
        const next: typeof frontier = [];
        const roundRollouts: Promise<RolloutRecord>[] = [];
        for (const f of frontier) {
          const candidates: RoundCandidate[] = [];
          f.ids.forEach((id, i) => {
            const out = outputs.get(id);
            if (!out?.branchable?.length) return;
            const regions = out.branchable.map((s) => s.regions);
            const answered = out.termination === 'answer';
            candidates.push({
              rolloutId: id,
              minStep: f.branchSteps[i]! + (pastBranchPoint ? 1 : 0),
              ...(unscored === 'last'
                ? { steps: branchCandidates(regions, out.steps, answered) }
                : {
                    steps: regions,
                    maxStep: lastBranchStepBeforeAnswer(regions.length, out.steps, answered),
                  }),
            });
          });
          const points: BranchPoint[] = selectRoundBranchPoints(
            candidates,
            spec.branchMode,
            spec.k,
            unscored,
          );
          const ids: string[] = [];
          const steps: number[] = [];
          points.forEach((p, pi) => {
            const parent = outputs.get(p.rolloutId)!;
            for (let t = 0; t < spec.t; t++) {
              const id = `r${round}-l${f.lineage}-p${pi}-b${t}`;
              ids.push(id);
              steps.push(p.step);
              partialLaunched++;
              roundRollouts.push(
                runRollout(id, 'branch', seedFor(id), {
                  parent,
                  parentId: p.rolloutId,
                  step: p.step,
                  round,
                }),
              );
            }
          });
          next.push({ lineage: f.lineage, ids, branchSteps: steps });
        }
        await Promise.all(roundRollouts);
        frontier = next;
      }
    }
    // Branch points that could not be found (short trajectories) are made up by from-scratch rollouts.
    // scratchToFill counts every from-scratch rollout the budget still needs, the planned ones included.
    topUp = spec.branchMode === 'none' ? 0 : Math.max(0, scratchToFill(plan, partialLaunched) - plan.scratch);
    throwIfCancelled();
    const extra = Array.from({ length: topUp }, (_, s) =>
      runRollout(`scratch-${plan.scratch + s}`, 'scratch', seedFor(`scratch-${plan.scratch + s}`)),
    );
    await Promise.all([...initial, ...scratch, ...extra]);
    // A child asked to cancel ends normally (termination `cancelled`), so the question checks for itself.
    throwIfCancelled();
  } catch (err) {
    // Each rollout of a cancelled question ends `cancelled` and saves its step log: the question ends after them,
    // not before (its close would terminate them midway).
    if (isCancellation(err)) await Promise.allSettled(launched.values());
    throw err;
  }
  // Launch order within each origin, so rollout-10 comes after rollout-2 (the votes break ties by it).
  const launchIndex = new Map([...launched.keys()].map((id, i) => [id, i]));
  const rank = (r: RolloutRecord) => ORIGIN_ORDER[r.origin] * launched.size + launchIndex.get(r.rolloutId)!;
  rollouts.sort((a, b) => rank(a) - rank(b));

  // Every rollout failed (a server that refuses the model, say): the question failed rather than completing with no
  // answer, so `muse run` says so and a batch re-run tries it again. Patched: a question that completed this way
  // before still replays as completed.
  if (
    rollouts.length > 0 &&
    rollouts.every((r) => r.termination === 'error') &&
    patched('fail-when-every-rollout-failed')
  )
    throw ApplicationFailure.nonRetryable(
      `every rollout of the question failed (${rollouts.length}); the first: ${rollouts[0]!.error ?? 'no cause recorded'}`,
      'RolloutsFailed',
    );

  // Stage 2: aggregation over answered rollouts only.
  const hasAnswer = (r: RolloutRecord) =>
    r.termination === 'answer' && r.prediction !== null && r.prediction.trim() !== '';
  const answered = rollouts.filter(hasAnswer);
  const excluded = rollouts.filter((r) => !hasAnswer(r)).map((r) => r.rolloutId);
  // Every rollout, the unanswered without an answer: the votes list them as excluded, as the compressed outcome does.
  const candidates = rollouts.map((r) => ({
    rolloutId: r.rolloutId,
    answer: hasAnswer(r) ? r.prediction : null,
    uncertainty: r.uncertainty,
  }));
  let aggUsage = emptyUsage();
  let aggModels: string[] = [];
  let compression: ParallelMuseResult['compression'];
  const aggPool = spec.aggregatorPool ?? tspec.pool;
  const aggModel = spec.aggregatorModel ?? tspec.model;

  // Compressed reasoning aggregation. Its model calls can fail for good (a report input too large for the server,
  // an expired step log, too many reports for one prompt): that costs this outcome, or one report, never the
  // question, whose rollouts and vote baselines stand on their own.
  const compressed = async (): Promise<AggregatorOutcome> => {
    if (answered.length === 0)
      return { answer: null, support: 0, excluded, reason: 'no answered trajectory' };
    const reported = await Promise.all(
      answered.map((r) =>
        limit(async () => {
          const out = outputs.get(r.rolloutId)!;
          try {
            const report = await aggregation.reportStep({
              jobId,
              rolloutId: `${questionId}/${r.rolloutId}`,
              question: tspec.question,
              segments: out.log,
              pool: aggPool,
              model: aggModel,
              sampling: tspec.sampling,
              seed: seedFor(`report/${r.rolloutId}`),
              contextWindow: tspec.contextWindow,
              ...(out.promptTokenRatio !== undefined ? { promptTokenRatio: out.promptTokenRatio } : {}),
            });
            return { rolloutId: r.rolloutId, report };
          } catch (err) {
            return { rolloutId: r.rolloutId, error: containedFailure(err) };
          }
        }),
      ),
    );
    // Every call that answered counts, one cut off before its report was finished too.
    for (const { report } of reported) {
      if (!report) continue;
      aggUsage = addUsage(aggUsage, { ...report.usage, llmCalls: 1 });
      aggModels = noteModel(aggModels, report.model);
    }
    const reports = reported.flatMap((r) =>
      r.report?.reportRef ? [{ rolloutId: r.rolloutId, ...r.report, reportRef: r.report.reportRef }] : [],
    );
    const failedReports = reported.flatMap((r) => {
      if (r.error !== undefined) return [{ rolloutId: r.rolloutId, error: r.error }];
      if (r.report && !r.report.reportRef)
        return [{ rolloutId: r.rolloutId, error: r.report.reason ?? 'the report call wrote no report' }];
      return [];
    });
    const errors = withinErrorLimit(failedReports.map((f) => f.error));
    const failed =
      failedReports.length > 0
        ? { failedReports: failedReports.map((f, i) => ({ ...f, error: errors[i]! })) }
        : {};
    if (reports.length === 0)
      return {
        answer: null,
        support: 0,
        excluded,
        reason: 'every report call failed',
        ...failed,
        ...(reported.every((r) => r.error !== undefined) ? { callFailed: true as const } : {}),
      };
    let integrated: Awaited<ReturnType<typeof aggregation.integrateStep>>;
    try {
      integrated = await aggregation.integrateStep({
        jobId,
        questionId,
        question: tspec.question,
        reportRefs: reports.map((r) => r.reportRef),
        pool: aggPool,
        model: aggModel,
        sampling: tspec.sampling,
        seed: seedFor('integrate'),
        contextWindow: tspec.contextWindow,
        ...integrationRatio(reports.map((r) => outputs.get(r.rolloutId)?.promptTokenRatio)),
      });
    } catch (err) {
      const reason = `the integration call failed: ${containedFailure(err)}`;
      return { answer: null, support: 0, excluded, reason, ...failed, callFailed: true };
    }
    aggUsage = addUsage(aggUsage, { ...integrated.usage, llmCalls: 1 });
    aggModels = noteModel(aggModels, integrated.model);
    compression = {
      trajectoryChars: reports.reduce((n, r) => n + r.trajectoryChars, 0),
      reportChars: reports.reduce((n, r) => n + r.reportChars, 0),
      integrationContextChars: integrated.contextChars,
    };
    const support = integrated.answer
      ? candidates.filter(
          (c) => c.answer && hasAnswerText(c.answer) && exactMatch(c.answer, integrated.answer!),
        ).length
      : 0;
    return {
      answer: integrated.answer,
      support,
      excluded,
      ...(integrated.answer ? {} : { reason: integrated.reason ?? 'the integration call gave no answer' }),
      ...failed,
    };
  };

  // The votes need no model call; compressed() contains its own failures (a failed call costs only its outcome).
  const outcomes: Record<string, AggregatorOutcome> = {};
  for (const name of spec.aggregators)
    outcomes[name] = name === 'compressed' ? await compressed() : aggregate(name, candidates);

  const gold = tspec.answer;
  if (gold !== undefined)
    for (const o of Object.values(outcomes)) if (!o.callFailed) o.correct = exactMatch(o.answer, gold);
  const primary = outcomes[spec.primaryAggregator] ?? outcomes[spec.aggregators[0]!]!;
  let judge: ParallelMuseResult['judge'];
  if (gold !== undefined) {
    // Scored as the judge's failure is: a server that failed the aggregator says nothing of the answer.
    if (primary.callFailed)
      judge = {
        method: spec.judge,
        correct: null,
        error: `the ${spec.primaryAggregator} aggregator failed: ${primary.reason ?? 'no cause recorded'}`,
      };
    else if (spec.judge === 'llm' && primary.answer) {
      try {
        const j = await aggregation.judgeStep({
          jobId,
          question: tspec.question,
          gold,
          prediction: primary.answer,
          pool: aggPool,
          model: aggModel,
          sampling: tspec.sampling,
        });
        aggUsage = addUsage(aggUsage, { ...j.usage, llmCalls: 1 });
        aggModels = noteModel(aggModels, j.model);
        judge = { method: 'llm', correct: j.correct, ...(j.reason ? { error: j.reason } : {}) };
      } catch (err) {
        judge = { method: 'llm', correct: null, error: containedFailure(err) };
      }
    }
    // An exact judge, or no answer to judge: scored without a model call (no answer is wrong under either judge).
    else judge = { method: spec.judge, correct: primary.correct ?? false };
  }

  const totals = rollouts.reduce((t, r) => addUsage(t, r.usage), emptyUsage());
  const { tokens: reusedTokens, toolCalls: reusedToolCalls } = reuseTotals(rollouts);
  const models = [...[...outputs.values()].flatMap((o) => o.models ?? []), ...aggModels].reduce<string[]>(
    noteModel,
    [],
  );
  return {
    questionId,
    question: tspec.question,
    ...(gold !== undefined ? { answer: gold } : {}),
    prediction: primary.answer,
    aggregator: spec.primaryAggregator,
    // A judge without a verdict scores nothing: counting it as wrong would lower the accuracy for the judge's failure.
    ...(typeof judge?.correct === 'boolean' ? { correct: judge.correct } : {}),
    ...(judge ? { judge } : {}),
    outcomes,
    rollouts: withinResultLimit(rollouts),
    excluded,
    plan: {
      n: spec.n,
      initial: plan.initial,
      partial: partialLaunched,
      scratch: plan.scratch + topUp,
      rounds: spec.branchMode === 'none' ? 0 : spec.r,
    },
    accounting: {
      promptTokens: totals.promptTokens,
      cachedPromptTokens: totals.cachedPromptTokens,
      generatedTokens: totals.completionTokens,
      toolCalls: totals.toolCalls,
      reusedTokens,
      reusedToolCalls,
      reuseFactor: totals.completionTokens ? 1 + reusedTokens / totals.completionTokens : 1,
      aggregation: aggUsage,
    },
    ...(compression ? { compression } : {}),
    ...(models.length > 0 ? { models } : {}),
  };
}

/** The integration prompt's ratio (see IntegrateInput): the largest any reported rollout learned. */
function integrationRatio(ratios: (number | undefined)[]): { promptTokenRatio?: number } {
  const known = ratios.filter((r): r is number => r !== undefined);
  return known.length > 0 ? { promptTokenRatio: Math.max(...known) } : {};
}

/** A cancelled question starts nothing more. */
function throwIfCancelled(): void {
  if (CancellationScope.current().consideredCancelled)
    throw new CancelledFailure('the question was cancelled');
}

/**
 * The message of an aggregation call's failure, which the caller contains. A cancellation is rethrown (the question
 * stops), and so is anything but an activity's failure: a bug in workflow code fails the task, to be retried.
 */
function containedFailure(err: unknown): string {
  if (isCancellation(err) || !(err instanceof ActivityFailure || err instanceof ApplicationFailure))
    throw err;
  return causeChainMessage(err);
}

/**
 * The ratio a branch starts its window checks from: the one its parent's step used, so the branch renders that
 * step's prompt as the parent did (an IterResearch workspace clips its last observation by it), not with a ratio the
 * parent learned later.
 */
function branchRatio(parent: TrajectoryResult, step: number): { promptTokenRatio?: number } {
  const recorded = parent.branchable?.[step]?.promptTokenRatio;
  const ratio = recorded === undefined ? parent.promptTokenRatio : (recorded ?? undefined);
  return ratio !== undefined ? { promptTokenRatio: ratio } : {};
}

const ORIGIN_ORDER: Record<RolloutOrigin, number> = { initial: 0, branch: 1, scratch: 2 };

function branchLineage(
  prefix: readonly BranchableStep[],
  parentId: string,
  step: number,
  round: number,
  mode: string,
): Lineage {
  return {
    rolloutType: 'partial',
    parentRolloutId: parentId,
    branchStep: step,
    round,
    mode,
    reusedSteps: step,
    reusedCompletionTokens: prefix.reduce((n, s) => n + s.completionTokens, 0),
    reusedToolCalls: prefix.filter((s) => s.toolCalled).length,
  };
}

/**
 * The SDK cancels a child through the run it started, which a rollout that has continued as new since has closed:
 * the request lands on the closed run and the running one never hears it (temporalio/features#503), so the question
 * would wait for it forever. Each running rollout is also asked by workflow id alone, which reaches its latest run.
 * Patched: a question cancelled under the earlier code replays without these requests. The set was narrowed to the
 * started rollouts under the same patch, 17 minutes after it came in: questions cancelled in those minutes with
 * rollouts waiting for a slot do not replay, which a second patch would have traded for every one cancelled since.
 */
async function cancelLatestRuns(workflowIds: Iterable<string>): Promise<void> {
  if (!patched('cancel-rollouts-latest-run')) return;
  await Promise.allSettled([...workflowIds].map((id) => getExternalWorkflowHandle(id).cancel()));
}
