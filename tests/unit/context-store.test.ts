import { describe, expect, it } from 'vitest';
import { ContextStore } from '../../activities/content.js';
import type { BlobStore } from '../../common/blob-store.js';

/** A store that holds texts in memory and counts the reads and writes it has in flight at once. */
function countingStore() {
  const texts = new Map<string, unknown>();
  let inFlight = 0;
  let peak = 0;
  const io = async <T>(fn: () => T): Promise<T> => {
    peak = Math.max(peak, ++inFlight);
    await new Promise((r) => setTimeout(r, 1));
    inFlight--;
    return fn();
  };
  const store = {
    generation: () => 0,
    freshForMs: () => 0,
    writtenAt: () => 0,
    put: (ns: string, value: unknown) =>
      io(() => {
        const ref = `kv:${ns}:${texts.size.toString(16).padStart(64, '0')}`;
        texts.set(ref, value);
        return ref;
      }),
    getText: (ref: string) => io(() => texts.get(ref) as string),
    get: (ref: string) => io(() => texts.get(ref)),
  };
  return { blobs: store as unknown as BlobStore, peak: () => peak, reset: () => (peak = 0) };
}

describe('ContextStore', () => {
  it('reads and writes a long context a bounded number of texts at a time, and reads back what it wrote', async () => {
    const { blobs, peak, reset } = countingStore();
    const contexts = new ContextStore(blobs);
    const state = {
      question: 'q',
      steps: Array.from({ length: 500 }, (_, i) => ({ turn: `turn ${i}`, observation: `observation ${i}` })),
      round: 0,
    };
    const ref = await contexts.putContext('job', 'react', state);
    expect(peak()).toBeLessThanOrEqual(32);
    reset();
    // A worker with a cold cache reads it back (a new ContextStore has no references remembered).
    const read = await new ContextStore(blobs).getContext(ref);
    expect(peak()).toBeLessThanOrEqual(32);
    expect(peak()).toBeGreaterThan(1);
    expect(read).toEqual({ policy: 'react', state });
  });
});
