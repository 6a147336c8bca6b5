// Starting ParallelMuse questions and batches from outside Temporal. Workflow ids are derived from the
// spec (and for a batch, the question's place among identical ones), so re-running the same command after
// a crash picks up finished and running questions instead of redoing them, and a changed option starts new work.
import { createHash } from 'node:crypto';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { WorkflowIdReusePolicy } from '@temporalio/common';
import { historyBudgetProblem, planBudget } from '../agent/branching.js';
import {
  DEFAULT_MAX_CONCURRENT_ROLLOUTS,
  type ParallelMuseSpec,
  type ParallelMuseSpecInput,
  ParallelMuseSpecSchema,
  samplingKeysProblem,
  startedAtOnce,
  trajectorySpecProblem,
} from '../agent/job.js';
import type { MuseConfig } from '../common/config.js';
import { formatZodError } from '../common/errors.js';
import type { ParallelMuseResult, parallelMuse } from '../workflows/parallel-muse.js';
import type { StepTimeouts } from '../workflows/trajectory.js';
import { JobSpecError } from './trajectories.js';

/** Validates the spec and the budget up front, so a plan that cannot fit is rejected before anything runs. */
export function parseParallelMuseSpec(input: unknown): ParallelMuseSpec {
  const parsed = ParallelMuseSpecSchema.safeParse(input);
  if (!parsed.success) throw new JobSpecError(`invalid job spec: ${formatZodError(parsed.error)}`);
  const keysProblem = samplingKeysProblem(
    (input as { trajectory?: unknown }).trajectory,
    'trajectory.sampling',
  );
  if (keysProblem) throw new JobSpecError(`invalid job spec: ${keysProblem}`);
  const s = parsed.data;
  const p = trajectorySpecProblem(s.trajectory, startedAtOnce(s));
  if (p) throw new JobSpecError(`invalid job spec: trajectory.${p.field}: ${p.problem}`);
  let plan: ReturnType<typeof planBudget>;
  try {
    plan = planBudget({ n: s.n, m: s.m, k: s.k, t: s.t, r: s.r, mode: s.branchMode });
  } catch (err) {
    throw new JobSpecError(`invalid job spec: ${(err as Error).message}`);
  }
  const problem = historyBudgetProblem(plan, s);
  if (problem) throw new JobSpecError(`invalid job spec: ${problem}`);
  return s;
}

/** JSON with object keys sorted, so equal values give equal text whatever order their keys were set in. */
function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Hex sha256 of a (validated) spec: the same options always hash the same, any change hashes differently. */
export function specHash(spec: unknown): string {
  return createHash('sha256').update(stableJson(spec)).digest('hex');
}

/**
 * What names a run: the spec with its scheduling-only option, maxConcurrentRollouts, at the default, so a batch resumed
 * with another limit goes on with its questions' runs instead of refusing them. At the default a spec hashes as every
 * spec did before, when the limit counted, so those runs keep their ids.
 */
export function runIdentity<T extends Pick<ParallelMuseSpec, 'maxConcurrentRollouts'>>(spec: T): T {
  return { ...spec, maxConcurrentRollouts: DEFAULT_MAX_CONCURRENT_ROLLOUTS };
}

/** `muse run --mode parallel-muse`: the validated spec (question, answer and every option; see runIdentity). */
export function parallelMuseRunId(spec: ParallelMuseSpec): string {
  return `pm-${specHash(runIdentity(spec)).slice(0, 16)}`;
}

/**
 * The id `muse run --mode parallel-muse` runs the spec under: parallelMuseRunId, or the id an earlier version gave it
 * (its maxConcurrentRollouts counted then) where a run under that one exists, so the same command attaches to it.
 */
export async function parallelMuseRunIdFor(client: Client, spec: ParallelMuseSpec): Promise<string> {
  const id = parallelMuseRunId(spec);
  const earlier = `pm-${specHash(spec).slice(0, 16)}`;
  return earlier !== id && (await workflowExists(client, earlier)) ? earlier : id;
}

/** Whether a workflow (any run of it, finished or not) exists under the id. */
export async function workflowExists(client: Client, workflowId: string): Promise<boolean> {
  try {
    await client.workflow.getHandle(workflowId).describe();
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

/**
 * A batch question: keyed on its text and how many identical questions came before it in the file, not on its
 * line, so fixing, inserting or deleting other lines leaves its id (and its finished result) alone. The shared
 * spec's hash keeps a batch with other options from attaching to this one's workflows under the same job.
 */
export function questionWorkflowId(
  jobId: string,
  sharedSpecHash: string,
  question: string,
  occurrence: number,
): string {
  const h = createHash('sha256').update(question).digest('hex').slice(0, 12);
  return `${jobId}-${sharedSpecHash.slice(0, 8)}-${h}-${occurrence}`;
}

export interface RunQuestionOptions {
  workflowId: string;
  jobId: string;
  timeouts?: StepTimeouts;
  /**
   * Attach to the run even when it was started with another answer (`muse batch` after an answer was corrected):
   * the run stays judged against the answer it started with, which its result records, for the caller to compare.
   */
  acceptOtherAnswer?: boolean;
}

/**
 * Starts the question's workflow, or attaches to it when it is running or completed (`reused`). A run that
 * failed, was terminated, cancelled or timed out is started again, so re-running retries it.
 */
export async function startParallelMuse(
  client: Client,
  cfg: MuseConfig,
  specInput: ParallelMuseSpecInput,
  opts: RunQuestionOptions,
): Promise<{ handle: WorkflowHandle<typeof parallelMuse>; reused: boolean }> {
  const spec = parseParallelMuseSpec(specInput);
  const { answer: _answer, ...unscored } = spec.trajectory;
  const hash = specHash(runIdentity(spec));
  const unscoredHash = specHash(runIdentity({ ...spec, trajectory: unscored }));
  // Runs started before runIdentity recorded the hashes of their spec as it was, limit included.
  const withLimit = { hash: specHash(spec), unscoredHash: specHash({ ...spec, trajectory: unscored }) };
  try {
    const handle = await client.workflow.start<typeof parallelMuse>('parallelMuse', {
      taskQueue: cfg.temporal.taskQueue,
      workflowId: opts.workflowId,
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
      args: [{ spec, jobId: opts.jobId, ...(opts.timeouts ? { timeouts: opts.timeouts } : {}) }],
      // What the run was started with, so attaching to it by id can tell it is the same question; and its job, whose
      // content `muse content delete` does not delete while the run goes on (runningRunsOfJob).
      memo: { specHash: hash, unscoredHash, jobId: opts.jobId },
    });
    return { handle, reused: false };
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    const handle = client.workflow.getHandle<typeof parallelMuse>(opts.workflowId);
    const description = await handle.describe();
    if (description.type !== 'parallelMuse')
      throw new JobSpecError(
        `workflow ${opts.workflowId} is a ${description.type} workflow, not a ParallelMuse question; pass another id`,
      );
    const memo = description.memo;
    // Runs started before the memo existed have none: attached as before; before `unscoredHash`, the full hash.
    const same =
      opts.acceptOtherAnswer && memo?.unscoredHash !== undefined
        ? memo.unscoredHash === unscoredHash || memo.unscoredHash === withLimit.unscoredHash
        : memo?.specHash === undefined || memo.specHash === hash || memo.specHash === withLimit.hash;
    if (!same)
      throw new JobSpecError(
        `workflow ${opts.workflowId} already ran (or is running) with another question, answer or other options; ` +
          'pass another id (muse batch: another --out) to run this one',
      );
    return { handle, reused: true };
  }
}

/** Starts or attaches (see startParallelMuse) and waits for the result. */
export async function runParallelMuse(
  client: Client,
  cfg: MuseConfig,
  specInput: ParallelMuseSpecInput,
  opts: RunQuestionOptions,
): Promise<{ result: ParallelMuseResult; reused: boolean }> {
  const { handle, reused } = await startParallelMuse(client, cfg, specInput, opts);
  return { result: await handle.result(), reused };
}
