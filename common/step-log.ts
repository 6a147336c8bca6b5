// A trajectory's step log: one stored blob of step records per workflow run, read back through segments
// (a branch reads its parent's segments up to its branch step, then its own).
import type { StepLogSegment, StepRecord } from '../agent/trajectory.js';
import type { BlobRef, BlobStore } from './blob-store.js';

interface StoredStepLog {
  kind: 'muse.steplog';
  records: StepRecord[];
}

export function writeStepLog(blobs: BlobStore, namespace: string, records: StepRecord[]): Promise<BlobRef> {
  const log: StoredStepLog = { kind: 'muse.steplog', records };
  return blobs.put(namespace, log);
}

/** Every step of the segments, in order; a reference that holds no step log fails loudly. */
export async function readStepLog(
  blobs: BlobStore,
  segments: readonly StepLogSegment[],
): Promise<StepRecord[]> {
  const out: StepRecord[] = [];
  for (const seg of segments) {
    const log = await blobs.get<StoredStepLog>(seg.ref);
    if (log?.kind !== 'muse.steplog')
      throw new TypeError(`content reference ${seg.ref} does not hold a step log`);
    for (const r of log.records) if (seg.untilStep === undefined || r.step < seg.untilStep) out.push(r);
  }
  return out;
}
