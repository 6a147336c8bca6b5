// A finished trajectory's content, resolved from the blob store: for export and retention.

import type { NatsConnection } from '@nats-io/nats-core';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import type { StepRecord, TrajectoryResult } from '../agent/trajectory.js';
import { BlobStore, namespaceFor } from '../common/blob-store.js';
import { causeChainMessage } from '../common/errors.js';
import { readStepLog } from '../common/step-log.js';

export interface ExportedStep extends Omit<StepRecord, 'turnRef' | 'observationRef' | 'contextBefore'> {
  turn: string;
  observation?: string;
}

/** Resolves every step of a finished trajectory (all continue-as-new runs, a branch's prefix included). */
export async function* exportTrajectory(
  client: Client,
  nc: NatsConnection,
  workflowId: string,
): AsyncGenerator<ExportedStep> {
  const handle = client.workflow.getHandle(workflowId);
  const { type, status } = await handle.describe();
  if (type !== 'trajectory')
    throw new Error(
      `${workflowId} is a ${type} workflow, not a trajectory: export one of its rollouts (${workflowId}/<rollout id>, ` +
        'each listed under rolloutIds by muse status)',
    );
  // A running trajectory would hold the export until it ended (a continued-as-new one reads as running too).
  if (status.name === 'RUNNING')
    throw new Error(
      `${workflowId} is still running: export it once it has ended (see muse status ${workflowId})`,
    );
  // A trajectory ends COMPLETED however it ended (answer, cancel, error): its result lists its steps. Only one
  // stopped from outside (terminated, timed out) has none.
  if (status.name !== 'COMPLETED') {
    // Why it ended so (a failed one's cause), as the result would have said.
    const why = await handle.result().then(
      () => undefined,
      (err: unknown) => causeChainMessage(err),
    );
    throw new Error(
      `${workflowId} was ${status.name.toLowerCase().replace('_', ' ')}: it has no result, which lists its steps, to ` +
        `export${why ? ` (${why})` : ''}`,
    );
  }
  const result = (await handle.result()) as TrajectoryResult;
  const blobs = new BlobStore(nc);
  try {
    for (const r of await readStepLog(blobs, result.log)) {
      const { turnRef, observationRef, contextBefore: _c, ...meta } = r;
      yield {
        ...meta,
        turn: await blobs.getText(turnRef),
        ...(observationRef ? { observation: await blobs.getText(observationRef) } : {}),
      };
    }
  } finally {
    blobs.close();
  }
}

/** The workflows that run a job's steps, and so read and write its content. */
const JOB_WORKFLOW_TYPES: readonly string[] = ['trajectory', 'parallelMuse'];

/** Runs listed by name in an error at most; the others are counted. */
const RUNS_NAMED = 5;

/**
 * The running workflows that use `jobId`'s content: those started with it in their memo (Muse's clients record it),
 * and one whose id is the job's (a trajectory started alone, or started before the memo was recorded).
 */
export async function runningRunsOfJob(client: Client, jobId: string): Promise<string[]> {
  const running: string[] = [];
  for await (const run of client.workflow.list({
    query: `ExecutionStatus = "Running" AND WorkflowType IN (${JOB_WORKFLOW_TYPES.map((t) => `"${t}"`).join(', ')})`,
  })) {
    if (run.memo?.jobId === jobId || run.workflowId === jobId) running.push(run.workflowId);
  }
  // The listing follows a moment behind: a run just started under the job's own id (muse run) is asked for directly.
  if (!running.includes(jobId)) {
    // Only "not found" is no run: a timeout or a refused request says nothing, and deleting on it could fail a run.
    const own = await client.workflow
      .getHandle(jobId)
      .describe()
      .catch((err: unknown) => {
        if (err instanceof WorkflowNotFoundError) return undefined;
        throw new Error(`cannot tell whether ${jobId} still runs: ${causeChainMessage(err)}`, { cause: err });
      });
    if (own?.status.name === 'RUNNING' && JOB_WORKFLOW_TYPES.includes(own.type)) running.push(jobId);
  }
  return running;
}

/** A job's content asked to be deleted while runs still use it: each would fail at its next step. */
export class JobStillRunningError extends Error {
  override readonly name = 'JobStillRunningError';
  constructor(jobId: string, runs: string[]) {
    const named =
      runs.slice(0, RUNS_NAMED).join(', ') +
      (runs.length > RUNS_NAMED ? `, and ${runs.length - RUNS_NAMED} more` : '');
    super(
      `job ${jobId} has ${runs.length} run(s) still going (${named}): deleting its content now would fail them at their next step; ` +
        'wait for them to end, cancel them (muse cancel <id>), or pass --force',
    );
  }
}

/**
 * Deletes a job's stored content. Refused while runs of it still go on (runningRunsOfJob, asked of `client`), unless
 * `force`.
 */
export async function deleteJobContent(
  nc: NatsConnection,
  jobId: string,
  opts: { client: Client } | { force: true },
): Promise<string[]> {
  if ('client' in opts) {
    const running = await runningRunsOfJob(opts.client, jobId);
    if (running.length > 0) throw new JobStillRunningError(jobId, running);
  }
  const blobs = new BlobStore(nc);
  try {
    return (await blobs.deleteNamespace(namespaceFor(jobId))).deleted;
  } finally {
    blobs.close();
  }
}
