// Starting ParallelMuse questions and batches from outside Temporal. Workflow ids are derived from the
// batch and the question, so re-running a batch after a crash picks up finished and running questions
// instead of redoing them.
import { createHash } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { planBudget } from '../agent/branching.js';
import { type ParallelMuseSpec, type ParallelMuseSpecInput, ParallelMuseSpecSchema } from '../agent/job.js';
import { formatZodError, type MuseConfig } from '../common/config.js';
import type { ParallelMuseResult, parallelMuse } from '../workflows/parallel-muse.js';
import type { StepTimeouts } from '../workflows/trajectory.js';
import { JobSpecError } from './trajectories.js';

/** Validates the spec and the budget up front, so a plan that cannot fit is rejected before anything runs. */
export function parseParallelMuseSpec(input: unknown): ParallelMuseSpec {
  const parsed = ParallelMuseSpecSchema.safeParse(input);
  if (!parsed.success) throw new JobSpecError(`invalid job spec: ${formatZodError(parsed.error)}`);
  const s = parsed.data;
  try {
    planBudget({ n: s.n, m: s.m, k: s.k, t: s.t, r: s.r, mode: s.branchMode });
  } catch (err) {
    throw new JobSpecError(`invalid job spec: ${(err as Error).message}`);
  }
  return s;
}

export function questionWorkflowId(jobId: string, question: string, index: number): string {
  const h = createHash('sha256').update(question).digest('hex').slice(0, 10);
  return `${jobId}-q${index}-${h}`;
}

export interface RunQuestionOptions {
  workflowId: string;
  jobId: string;
  timeouts?: StepTimeouts;
}

/** Starts the question's workflow, or attaches to it when it already ran or is running (idempotent). */
export async function runParallelMuse(
  client: Client,
  cfg: MuseConfig,
  specInput: ParallelMuseSpecInput,
  opts: RunQuestionOptions,
): Promise<{ result: ParallelMuseResult; reused: boolean }> {
  const spec = parseParallelMuseSpec(specInput);
  try {
    const handle = await client.workflow.start<typeof parallelMuse>('parallelMuse', {
      taskQueue: cfg.temporal.taskQueue,
      workflowId: opts.workflowId,
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      args: [{ spec, jobId: opts.jobId, ...(opts.timeouts ? { timeouts: opts.timeouts } : {}) }],
    });
    return { result: await handle.result(), reused: false };
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    const handle = client.workflow.getHandle<typeof parallelMuse>(opts.workflowId);
    return { result: await handle.result(), reused: true };
  }
}
