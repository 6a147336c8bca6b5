// A finished trajectory's content, resolved from the blob store: for export and retention.

import type { NatsConnection } from '@nats-io/nats-core';
import type { Client } from '@temporalio/client';
import type { StepRecord, TrajectoryResult } from '../agent/trajectory.js';
import { BlobStore, namespaceFor } from '../common/blob-store.js';
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
        'listed by muse status)',
    );
  // A running trajectory would hold the export until it ended (a continued-as-new one reads as running too).
  if (status.name === 'RUNNING')
    throw new Error(
      `${workflowId} is still running: export it once it has ended (see muse status ${workflowId})`,
    );
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

export async function deleteJobContent(nc: NatsConnection, jobId: string): Promise<string[]> {
  const blobs = new BlobStore(nc);
  try {
    return (await blobs.deleteNamespace(namespaceFor(jobId))).deleted;
  } finally {
    blobs.close();
  }
}
