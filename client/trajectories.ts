// Starting, watching and reading trajectories from outside Temporal (CLI, tests, benchmarks).
import { randomUUID } from 'node:crypto';
import type { Client, WorkflowHandle, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { type TrajectorySpec, type TrajectorySpecInput, TrajectorySpecSchema } from '../agent/job.js';
import type { TrajectoryProgress, TrajectoryResult } from '../agent/trajectory.js';
import { formatZodError, type MuseConfig } from '../common/config.js';
import { progressQuery, type StepTimeouts, type trajectory } from '../workflows/trajectory.js';

export class JobSpecError extends Error {
  override name = 'JobSpecError';
}

export function parseTrajectorySpec(input: unknown): TrajectorySpec {
  const parsed = TrajectorySpecSchema.safeParse(input);
  if (!parsed.success) throw new JobSpecError(`invalid job spec: ${formatZodError(parsed.error)}`);
  return parsed.data;
}

export interface StartTrajectoryOptions {
  workflowId?: string;
  jobId?: string;
  timeouts?: StepTimeouts;
}

export async function startTrajectory(
  client: Client,
  cfg: MuseConfig,
  specInput: TrajectorySpecInput,
  opts: StartTrajectoryOptions = {},
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof trajectory>> {
  const spec = parseTrajectorySpec(specInput);
  const workflowId = opts.workflowId ?? `traj-${randomUUID().slice(0, 12)}`;
  return client.workflow.start<typeof trajectory>('trajectory', {
    taskQueue: cfg.temporal.taskQueue,
    workflowId,
    args: [{ spec, jobId: opts.jobId ?? workflowId, ...(opts.timeouts ? { timeouts: opts.timeouts } : {}) }],
  });
}

export async function queryProgress(handle: WorkflowHandle): Promise<TrajectoryProgress | undefined> {
  try {
    return await handle.query(progressQuery);
  } catch {
    return undefined; // not started yet, or between runs
  }
}

/** Polls progress until the trajectory ends; returns its result. */
export async function followTrajectory(
  handle: WorkflowHandle<typeof trajectory>,
  onProgress: (p: TrajectoryProgress) => void,
  intervalMs = 250,
): Promise<TrajectoryResult> {
  let done = false;
  const result = handle.result().finally(() => {
    done = true;
  });
  void (async () => {
    while (!done) {
      const p = await queryProgress(handle);
      if (p && !done) onProgress(p);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return result;
}
