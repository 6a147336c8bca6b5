// The content store's object reads, without a server: a read whose chunks were purged under it is made again.
import { describe, expect, it } from 'vitest';
import {
  BLOB_REF_RE,
  longestBlobRef,
  namespaceFor,
  parseBlobRef,
  readObject,
} from '../../common/blob-store.js';

const ref = `obj:job:${'a'.repeat(64)}`;

/** An object read as the client gives it: chunks every `everyMs`, or a stream that never yields after `stallAfter`. */
function objectRead(chunks: number[][], opts: { everyMs?: number; stallAfter?: number } = {}) {
  let cancelled = false;
  let i = 0;
  const data = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (opts.stallAfter !== undefined && i >= opts.stallAfter) return new Promise<void>(() => {});
      await new Promise((r) => setTimeout(r, opts.everyMs ?? 0));
      if (i < chunks.length) controller.enqueue(new Uint8Array(chunks[i++]!));
      else controller.close();
    },
    cancel() {
      cancelled = true;
    },
  });
  return { result: { info: {} as never, data, error: Promise.resolve(null) }, cancelled: () => cancelled };
}

describe('object reads', () => {
  it('cancels a read that stalls on purged chunks and reads the object again', async () => {
    const stalled = objectRead([[9]], { stallAfter: 1 });
    const whole = objectRead([[1, 2], [3]]);
    const reads = [stalled, whole];
    let calls = 0;
    const os = { get: async () => reads[calls++]!.result };
    expect([...(await readObject(os, 'k', ref, 50))!]).toEqual([1, 2, 3]);
    expect(calls).toBe(2);
    expect(stalled.cancelled()).toBe(true);
  });

  it('lets a slow read that keeps receiving chunks finish, however long it takes in all', async () => {
    const slow = objectRead([[1], [2], [3], [4], [5]], { everyMs: 30 });
    let calls = 0;
    const os = {
      get: async () => {
        calls++;
        return slow.result;
      },
    };
    // 5 chunks 30 ms apart: 150 ms in all, against an idle limit of 60 ms.
    expect([...(await readObject(os, 'k', ref, 60))!]).toEqual([1, 2, 3, 4, 5]);
    expect(calls).toBe(1);
  });

  it('names the reference when the object stalls twice, instead of waiting forever', async () => {
    const os = { get: async () => objectRead([], { stallAfter: 0 }).result };
    await expect(readObject(os, 'k', ref, 20)).rejects.toThrow(`reading ${ref} stalled twice for 20 ms`);
  });

  it("fails with the client's error when its stream errors, leaving no rejection unhandled (which ends the process)", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const broken = new Error('consumer stopped');
      const read = (stallAfter?: number) => {
        // As the client does: the stream errors and `error` rejects with the same error.
        const data = new ReadableStream<Uint8Array>({
          pull: (controller) =>
            stallAfter === undefined ? controller.error(broken) : new Promise<void>(() => {}),
        });
        return { info: {} as never, data, error: Promise.reject(broken) };
      };
      await expect(readObject({ get: async () => read() }, 'k', ref, 20)).rejects.toThrow('consumer stopped');
      // A read that stalls is made again: its `error` is never awaited either.
      await expect(readObject({ get: async () => read(0) }, 'k', ref, 20)).rejects.toThrow('stalled twice');
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('a missing object is null', async () => {
    expect(await readObject({ get: async () => null }, 'k', ref, 20)).toBeNull();
  });
});

describe('namespaceFor', () => {
  it('keeps a clean job id, hashes any other, and never gives two ids one namespace', () => {
    expect(namespaceFor('batch-1a2b3c4d5e')).toBe('batch-1a2b3c4d5e');
    const hashed = namespaceFor('team/run-1');
    expect(hashed).toMatch(/^team_run-1_[0-9a-f]{12}$/);
    // The hashed name, given as a job id of its own, is not that namespace.
    expect(namespaceFor(hashed)).not.toBe(hashed);
    expect(namespaceFor('')).toMatch(/^_[0-9a-f]{12}$/);
    expect(namespaceFor('x'.repeat(49))).not.toBe(namespaceFor('x'.repeat(50)));
  });
});

describe('longestBlobRef', () => {
  it('is a reference of the namespace, no shorter than any put there can return', () => {
    const longest = longestBlobRef('job-1');
    expect(BLOB_REF_RE.test(longest)).toBe(true);
    expect(parseBlobRef(longest).namespace).toBe('job-1');
    for (const kind of ['kv', 'obj']) {
      expect(longest.length).toBeGreaterThanOrEqual(`${kind}:job-1:${'f'.repeat(64)}`.length);
    }
  });
});
