// The content store's object reads, without a server: a read whose chunks were purged under it is made again.
import { describe, expect, it } from 'vitest';
import { readObject } from '../../common/blob-store.js';

const ref = `obj:job:${'a'.repeat(64)}`;

describe('object reads', () => {
  it('gives up a read that waits on purged chunks and reads the object again', async () => {
    let calls = 0;
    const os = {
      getBlob: () => {
        calls++;
        // The first read's chunks were purged by a rewrite: it never ends. The second reads the new chunks.
        return calls === 1 ? new Promise<never>(() => {}) : Promise.resolve(new Uint8Array([1, 2, 3]));
      },
    };
    expect(await readObject(os, 'k', ref, 50)).toEqual(new Uint8Array([1, 2, 3]));
    expect(calls).toBe(2);
  });

  it('names the reference when the object cannot be read twice, instead of waiting forever', async () => {
    const os = { getBlob: () => new Promise<never>(() => {}) };
    await expect(readObject(os, 'k', ref, 20)).rejects.toThrow(`reading ${ref} took over 20 ms twice`);
  });
});
