// One agent trajectory as a durable MDP. Every step is an activity (LLM turn, tool call, context
// management), so a killed worker or restarted server resumes at the last finished step. The workflow holds
// only references and small metadata; it continues-as-new when the server suggests it (or at a step cap),
// keeping one workflow id, so a 2048-step run never approaches the history limits.
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  continueAsNew,
  defineQuery,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { MuseActivities } from '../activities/index.js';
import { appendBranchable } from '../agent/branching.js';
import { clipText, utf8Length } from '../agent/clip.js';
import { type TrajectorySpec, TrajectorySpecSchema } from '../agent/job.js';
import {
  addUsage,
  type BranchableStep,
  emptyUsage,
  generationAllowanceMs,
  type Lineage,
  noteModel,
  type StepLogSegment,
  type StepRecord,
  type TrajectoryProgress,
  type TrajectoryResult,
  type UsageTotals,
} from '../agent/trajectory.js';
import type { Termination } from '../agent/types.js';
import { addTurnUncertainty, tallyTurns, type UncertaintyTally } from '../agent/uncertainty.js';
import { causeChainMessage } from '../common/errors.js';
import { checkedInput } from './input.js';

export interface StepTimeouts {
  /** Upper bound of one step's activity attempt. */
  stepMs: number;
  /** A worker that stops heartbeating for this long is presumed dead and the step is retried elsewhere. */
  heartbeatMs: number;
}

export const DEFAULT_TIMEOUTS: StepTimeouts = { stepMs: 10 * 60_000, heartbeatMs: 20_000 };

export interface TrajectoryInput {
  spec: TrajectorySpec;
  /** Blob namespace and retention unit. */
  jobId: string;
  timeouts?: StepTimeouts;
  /** Routing affinity key for this trajectory's model calls (ParallelMuse: the question). */
  routeKey?: string;
  /**
   * Whether the result carries `branchable` (default true). ParallelMuse turns it off for rollouts nothing will branch
   * from: up to 512 steps of facts per rollout would otherwise land in the question's history for nothing.
   */
  keepBranchable?: boolean;
  /** Start from a recorded step of another trajectory instead of from scratch (partial rollout). */
  branch?: {
    contextRef: string;
    step: number;
    prefixLog: StepLogSegment[];
    /**
     * The parent's branching facts for the reused steps, which this rollout's own `branchable` continues: sent only
     * when it keeps them (a later round branches from it). Otherwise `prefixUncertainty` stands in for them: each
     * branch's start would copy up to 512 steps of facts into the question's history for one tally.
     */
    prefixSteps?: BranchableStep[];
    /** The uncertainty over the reused steps, when `prefixSteps` is not sent. */
    prefixUncertainty?: UncertaintyTally;
    lineage: Lineage;
    /** The parent's learned ratio (see CarriedState), so the branch's first window check is calibrated. */
    promptTokenRatio?: number;
  };
  /** State carried across continue-as-new. */
  carried?: CarriedState;
}

interface CarriedState {
  step: number;
  run: number;
  contextRef?: string;
  usage: UsageTotals;
  log: StepLogSegment[];
  /** Branching facts, index = step; stops growing at BRANCHABLE_STEP_LIMIT (see appendBranchable). */
  branchable?: BranchableStep[];
  /**
   * Over every turn so far, a branch's reused prefix included (branchable stops at BRANCHABLE_STEP_LIMIT). Absent in
   * the state of a run that continued-as-new from a version without it: rebuilt from branchable then, which
   * undercounts a run past BRANCHABLE_STEP_LIMIT but keeps it going.
   */
  uncertainty?: UncertaintyTally;
  lastAction: string;
  /** Server prompt tokens per estimated token at the last turn (see LlmStepInput); absent before the first. */
  promptTokenRatio?: number;
  /** The next step's record is the first after a summary (a run may continue-as-new between the two). */
  summarized?: boolean;
  /** A branch's lineage, which its first run got with its branch input. */
  lineage?: Lineage;
  /** TrajectoryResult.models so far; absent in the state of a run that continued-as-new from a version without it. */
  models?: string[];
}

export const progressQuery = defineQuery<TrajectoryProgress>('progress');

/** Errors a retry cannot fix: the request itself is wrong, or what it refers to is gone. */
export const NON_RETRYABLE = [
  'BadRequestError',
  'BackendRejectedError',
  'ContextLengthError',
  'RequestTooLargeError',
  'BlobNotFoundError',
  'TypeError',
  'ZodError',
];

export async function trajectory(given: TrajectoryInput): Promise<TrajectoryResult> {
  const { input } = await checkedInput('trajectory', TrajectorySpecSchema, given);
  const { spec, jobId } = input;
  const timeouts = input.timeouts ?? DEFAULT_TIMEOUTS;
  const steps = proxyActivities<MuseActivities>({
    // Room for the longest turn the spec allows, twice (one failover), however short the configured step time.
    startToCloseTimeout: Math.max(timeouts.stepMs, 2 * generationAllowanceMs(spec.sampling.maxTokensPerTurn)),
    heartbeatTimeout: timeouts.heartbeatMs,
    retry: {
      initialInterval: '500ms',
      backoffCoefficient: 2,
      maximumInterval: '10s',
      nonRetryableErrorTypes: NON_RETRYABLE,
    },
  });
  const bookkeeping = proxyActivities<MuseActivities>({
    startToCloseTimeout: '1 minute',
    retry: { initialInterval: '500ms', maximumInterval: '10s', nonRetryableErrorTypes: NON_RETRYABLE },
  });

  const trajectoryId = workflowInfo().workflowId;
  const carried: CarriedState = input.carried ?? {
    step: input.branch?.step ?? 0,
    run: 1,
    contextRef: input.branch?.contextRef,
    usage: emptyUsage(),
    log: input.branch?.prefixLog ?? [],
    ...(input.keepBranchable === false
      ? {}
      : { branchable: input.branch ? [...(input.branch.prefixSteps ?? [])] : [] }),
    uncertainty:
      input.branch?.prefixUncertainty ?? tallyTurns((input.branch?.prefixSteps ?? []).map((s) => s.regions)),
    lastAction: input.branch ? `branched at step ${input.branch.step}` : 'starting',
    ...(input.branch?.promptTokenRatio !== undefined
      ? { promptTokenRatio: input.branch.promptTokenRatio }
      : {}),
  };
  let { step, contextRef, usage, lastAction, promptTokenRatio } = carried;
  let uncertainty = carried.uncertainty ?? tallyTurns((carried.branchable ?? []).map((s) => s.regions));
  let branchable = carried.branchable;
  let models = carried.models ?? [];
  const log = [...carried.log];
  const records: StepRecord[] = [];
  /** What the records would take as the step-log write's input, about (their JSON's bytes). */
  let recordBytes = 0;
  const keep = (record: StepRecord) => {
    records.push(record);
    recordBytes += utf8Length(JSON.stringify(record));
  };
  let finished:
    | { termination: Termination; prediction: string | null; error?: string; reason?: string }
    | undefined;

  setHandler(progressQuery, () => ({
    status: finished ? 'finished' : 'running',
    step,
    run: carried.run,
    lastAction,
    usage,
    ...(finished ? { termination: finished.termination, prediction: finished.prediction } : {}),
  }));

  const flushRecords = async () => {
    if (records.length === 0) return;
    const ref = await bookkeeping.saveStepLog({ jobId, records: [...records] });
    log.push({ ref });
    records.length = 0;
    recordBytes = 0;
  };

  const common = {
    jobId,
    trajectoryId,
    policy: spec.policy,
    pool: spec.pool,
    model: spec.model,
    sampling: spec.sampling,
  };

  let summarized = carried.summarized ?? false;
  const lineage = input.branch?.lineage ?? carried.lineage;
  try {
    while (!finished) {
      if (CancellationScope.current().consideredCancelled) throw new CancelledByUser();
      if (step >= spec.maxTurns) {
        finished = { termination: 'max_turns', prediction: null };
        break;
      }
      if (
        records.length >= spec.stepsPerRun ||
        (records.length > 0 && workflowInfo().continueAsNewSuggested) ||
        // Records with long tool errors (up to 1,000 characters each, three bytes a character in CJK) could pass
        // Temporal's 2 MB limit on the step-log write's input well within stepsPerRun, and the run would fail with
        // its steps done. (Asked only when the records are that large: runs from before replay as they ran.)
        (recordBytes >= STEP_LOG_BYTES && patched('step-log-by-size'))
      ) {
        await flushRecords();
        // A cancel that came in with the flush's completion would stay with this run, unseen by the next one.
        // (Asked only then, so histories from before the check replay as they ran.)
        if (CancellationScope.current().consideredCancelled && patched('cancel-before-continue-as-new'))
          throw new CancelledByUser();
        const next: CarriedState = {
          step,
          run: carried.run + 1,
          contextRef,
          usage,
          log,
          branchable,
          uncertainty,
          lastAction,
          promptTokenRatio,
          ...(summarized ? { summarized } : {}),
          ...(lineage ? { lineage } : {}),
          ...(models.length > 0 ? { models } : {}),
        };
        return await continueAsNew<typeof trajectory>({
          spec,
          jobId,
          timeouts,
          routeKey: input.routeKey,
          ...(input.keepBranchable !== undefined ? { keepBranchable: input.keepBranchable } : {}),
          carried: next,
        });
      }
      const seed = stepSeed(spec.seed, step);
      const ratioAtStep = promptTokenRatio;
      const r = await steps.llmStep({
        ...common,
        step,
        contextRef,
        question: contextRef ? undefined : spec.question,
        seed,
        contextWindow: spec.contextWindow,
        summaryThreshold: spec.summaryThreshold,
        ...(spec.date !== undefined ? { date: spec.date } : {}),
        routeKey: input.routeKey,
        promptTokenRatio,
      });
      contextRef = r.contextRef;
      if (r.status === 'needs_summary') {
        const s = await steps.summarizeStep({
          ...common,
          step,
          contextRef,
          seed: seed + 1,
          contextWindow: spec.contextWindow,
          promptTokenRatio,
        });
        usage = addUsage(usage, { ...s.usage, llmCalls: 1 });
        models = noteModel(models, s.model);
        if (s.status === 'max_context') {
          lastAction = `could not summarise: ${s.reason ?? 'no usable summary'}`;
          finished = { termination: 'max_context', prediction: null, reason: lastAction };
          break;
        }
        contextRef = s.contextRef;
        summarized = true;
        lastAction = 'summarised the history';
        continue;
      }
      if (r.status === 'max_context') {
        finished = {
          termination: 'max_context',
          prediction: null,
          ...(r.reason ? { reason: r.reason } : {}),
        };
        break;
      }
      usage = addUsage(usage, { ...r.usage, llmCalls: 1 });
      models = noteModel(models, r.model);
      // Window checks run on estimates; the server's count of this prompt says how far off they are.
      if (r.usage.promptTokens > 0 && r.estimatedPromptTokens > 0)
        promptTokenRatio = r.usage.promptTokens / r.estimatedPromptTokens;
      const record: StepRecord = {
        step,
        kind: r.kind,
        contextBefore: r.contextRef,
        turnRef: r.turnRef,
        actionPreview: r.actionPreview,
        regions: r.regions,
        usage: r.usage,
        memberId: r.memberId,
        ...(r.model ? { model: r.model } : {}),
        ...(r.tool ? { tool: r.tool } : {}),
        ...(r.answer !== undefined ? { answer: r.answer } : {}),
        ...(summarized ? { summarized } : {}),
      };
      summarized = false;
      lastAction = r.actionPreview;
      let toolCalled = false;
      if (r.kind === 'answer') {
        finished = { termination: 'answer', prediction: r.answer ?? '' };
      } else {
        const t = await steps
          .toolStep({
            jobId,
            trajectoryId,
            step,
            policy: spec.policy,
            contextRef,
            turnRef: r.turnRef,
            ...(r.finishReason === 'length' ? { finishReason: r.finishReason } : {}),
          })
          .catch((err: unknown) => {
            // The run ends here: its log keeps the turn (counted in its usage), the one to look at. Histories from
            // before it was kept replay without it.
            if (patched('record-unfinished-turn'))
              keep({ ...record, unfinished: true, toolError: unfinishedBecause(err) });
            throw err;
          });
        contextRef = t.contextRef;
        record.observationRef = t.observationRef;
        if (t.toolError) record.toolError = t.toolError;
        toolCalled = t.toolCalled;
        if (toolCalled) usage = addUsage(usage, { toolCalls: 1 });
      }
      keep(record);
      uncertainty = addTurnUncertainty(uncertainty, r.regions);
      if (input.keepBranchable !== false)
        branchable = appendBranchable(branchable, {
          regions: r.regions,
          contextBefore: r.contextRef,
          completionTokens: r.usage.completionTokens,
          toolCalled,
          promptTokenRatio: ratioAtStep ?? null,
        });
      step++;
    }
  } catch (err) {
    if (isCancellation(err) || err instanceof CancelledByUser) {
      finished = { termination: 'cancelled', prediction: null };
    } else if (err instanceof ActivityFailure || err instanceof ApplicationFailure) {
      finished = { termination: 'error', prediction: null, error: causeChainMessage(err) };
    } else throw err;
  }

  // Bookkeeping must complete even when the trajectory was cancelled.
  await CancellationScope.nonCancellable(flushRecords);
  const result: TrajectoryResult = {
    trajectoryId,
    prediction: finished.prediction,
    termination: finished.termination,
    steps: step,
    usage,
    uncertainty,
    ...(finished.error ? { error: finished.error } : {}),
    ...(finished.reason ? { reason: finished.reason } : {}),
    log,
    ...(branchable ? { branchable } : {}),
    ...(lineage ? { lineage } : {}),
    ...(promptTokenRatio !== undefined ? { promptTokenRatio } : {}),
    runs: carried.run,
    ...(models.length > 0 ? { models } : {}),
  };
  return result;
}

class CancelledByUser extends Error {}

/**
 * Bytes of step records at which a run writes its step log and continues as new, before stepsPerRun: Temporal warns
 * of a payload past 512 KiB and refuses one past 2 MB.
 */
const STEP_LOG_BYTES = 512 * 1024;

function unfinishedBecause(err: unknown): string {
  // Clipped: the record travels in history (the step-log write's input) beside the run's own error.
  return isCancellation(err)
    ? 'cancelled before its tool step finished'
    : clipText(`tool step failed: ${causeChainMessage(err)}`, UNFINISHED_REASON_CHARS);
}
const UNFINISHED_REASON_CHARS = 2_000;

/** Distinct per step and per trajectory seed; a retried step reuses its seed, so a replayed sample is identical. */
export function stepSeed(seed: number, step: number): number {
  // Reduced first: a large seed (a timestamp, say) times 10,007 would pass 2^53 and lose the low digits that tell
  // one step's seed from the next. Seeds below the modulus get what they always got.
  return ((seed % SEED_MODULUS) * 10_007 + step * 7 + 1) % SEED_MODULUS;
}
const SEED_MODULUS = 2_147_483_647;
