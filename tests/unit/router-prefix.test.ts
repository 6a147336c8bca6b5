import { describe, expect, it } from 'vitest';
import {
  messagesPrefixChars,
  messagesPrefixKeys,
  PrefixHasher,
  PrefixIndex,
  packPrefixKeys,
  prefixBlockHashes,
  unpackPrefixKeys,
} from '../../inference/router/prefix.js';

const text = (n: number, seed = 'a') =>
  Array.from({ length: n }, (_, i) => String.fromCharCode(97 + ((i * 7 + seed.charCodeAt(0)) % 26))).join('');

describe('prefixBlockHashes', () => {
  it('gives one key per block plus one for a partial tail', () => {
    expect(prefixBlockHashes(text(256 * 3))).toHaveLength(3);
    expect(prefixBlockHashes(text(256 * 3 + 1))).toHaveLength(4);
    expect(prefixBlockHashes(text(256 * 3 + 1), 256, false)).toHaveLength(3);
    expect(prefixBlockHashes('', 256)).toEqual([]);
    expect(prefixBlockHashes('short')).toHaveLength(1);
    for (const k of prefixBlockHashes(text(600))) expect(k).toMatch(/^[0-9a-f]{16}$/);
  });

  it('chains: equal keys exactly as far as the prefixes agree', () => {
    const shared = text(256 * 4);
    const a = prefixBlockHashes(`${shared}${text(512, 'x')}`);
    const b = prefixBlockHashes(`${shared}${text(512, 'y')}`);
    expect(a.slice(0, 4)).toEqual(b.slice(0, 4));
    expect(a[4]).not.toBe(b[4]);
    expect(a[5]).not.toBe(b[5]);
    // a difference in block 0 changes every later key even where the later text is equal
    const c = prefixBlockHashes(`Z${shared.slice(1)}${text(512, 'x')}`);
    for (let i = 0; i < a.length; i++) expect(c[i]).not.toBe(a[i]);
  });

  it('streams: feeding pieces gives the same keys as one string', () => {
    const t = text(2000);
    const h = new PrefixHasher(100);
    h.update(t.slice(0, 7)).update(t.slice(7, 333)).update(t.slice(333));
    expect(h.digest()).toEqual(prefixBlockHashes(t, 100));
  });

  it('keeps message boundaries in the keys', () => {
    const a = messagesPrefixKeys(
      [
        { role: 'user', content: 'ab' },
        { role: 'assistant', content: 'c' },
      ],
      4,
    );
    const b = messagesPrefixKeys(
      [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'bc' },
      ],
      4,
    );
    expect(a.at(-1)).not.toBe(b.at(-1));
  });

  it('hashes a multi-MB prompt quickly', () => {
    const big = text(4 * 1024 * 1024);
    const t0 = performance.now();
    const keys = prefixBlockHashes(big);
    const ms = performance.now() - t0;
    expect(keys).toHaveLength(16384);
    expect(new Set(keys).size).toBe(keys.length);
    expect(ms).toBeLessThan(1000);
  });
});

describe('PrefixIndex', () => {
  const keys = (p: string, n: number) => Array.from({ length: n }, (_, i) => `${p}${i}`);

  it('matches the longest recorded prefix per member', () => {
    const idx = new PrefixIndex();
    const a = prefixBlockHashes(text(256 * 10));
    idx.record('m1', a.slice(0, 6));
    expect(idx.matchLength('m1', a)).toBe(6);
    expect(idx.matchLength('m1', a.slice(0, 3))).toBe(3);
    expect(idx.matchLength('m2', a)).toBe(0);
    expect(idx.matchLength('m1', [])).toBe(0);
    idx.record('m1', a);
    expect(idx.matchLength('m1', a)).toBe(10);
  });

  it('evicts least recently used blocks, tails before heads', () => {
    const idx = new PrefixIndex({ capacityBlocks: 4 });
    const a = keys('a', 3);
    const b = keys('b', 3);
    idx.record('m', a);
    idx.record('m', b);
    expect(idx.size('m')).toBe(4);
    expect(idx.matchLength('m', b)).toBe(3);
    // a's head survived; its tail went first
    expect(idx.matchLength('m', a)).toBe(1);
    // touching a makes b the older one
    idx.record('m', a);
    expect(idx.matchLength('m', a)).toBe(3);
    expect(idx.matchLength('m', b)).toBe(1);
  });

  it('records at most capacity blocks of one long prompt, from its head', () => {
    const idx = new PrefixIndex({ capacityBlocks: 5 });
    const a = keys('a', 20);
    idx.record('m', a);
    expect(idx.matchLength('m', a)).toBe(5);
  });

  it("a record's undo takes back only the keys it added that no later record touched: what stays is a prefix", () => {
    const idx = new PrefixIndex();
    const k = keys('k', 13);
    idx.record('m', k.slice(0, 5)); // served earlier
    const undoA = idx.record('m', k.slice(0, 10)); // adds k5..k9
    idx.record('m', k); // a branch sharing the prefix, sent meanwhile: touches k5..k9, adds k10..k12
    undoA(); // the first was turned away
    expect(idx.size('m')).toBe(13);
    expect(idx.matchLength('m', k.slice(0, 10))).toBe(10);
    expect(idx.matchLength('m', k)).toBe(13);
    // Alone, an undo leaves what the member held before.
    const idx2 = new PrefixIndex();
    idx2.record('m', k.slice(0, 5));
    idx2.record('m', k.slice(0, 10))();
    expect(idx2.matchLength('m', k)).toBe(5);
    expect(idx2.size('m')).toBe(5);
  });

  it('shrinks when a member announces a smaller cache, and forgets a member', () => {
    const idx = new PrefixIndex({ capacityBlocks: 100 });
    const a = keys('a', 50);
    idx.record('m', a);
    idx.setCapacity('m', 10);
    expect(idx.matchLength('m', a)).toBe(10);
    idx.forget('m');
    expect(idx.matchLength('m', a)).toBe(0);
    expect(idx.size('m')).toBe(0);
    expect(idx.capacity('m')).toBe(100);
  });

  it("bounds what a member's announcement can make it remember", () => {
    const idx = new PrefixIndex();
    idx.setCapacity('m', 1e15 / 64);
    expect(idx.capacity('m')).toBe(64 * 16384);
    idx.setCapacity('m', 200_000);
    expect(idx.capacity('m')).toBe(200_000);
  });
});

describe('messagesPrefixChars', () => {
  it('counts the characters the keys cover', () => {
    const chat = [
      { role: 'system' as const, content: 'x'.repeat(300) },
      { role: 'user' as const, content: 'y'.repeat(250) },
    ];
    const chars = messagesPrefixChars(chat);
    expect(chars).toBe(6 + 300 + 2 + 4 + 250 + 2);
    expect(messagesPrefixKeys(chat)).toHaveLength(Math.ceil(chars / 256));
  });
});

describe('packPrefixKeys', () => {
  it('round-trips keys through 8 bytes each', () => {
    const keys = prefixBlockHashes('z'.repeat(256 * 5 + 17));
    const packed = packPrefixKeys(keys);
    expect(packed.length).toBe(keys.length * 8);
    expect(unpackPrefixKeys(packed)).toEqual(keys);
    expect(unpackPrefixKeys(packPrefixKeys([]))).toEqual([]);
    // Decoded messages hand over views into a larger buffer.
    const framed = new Uint8Array(packed.length + 13);
    framed.set(packed, 5);
    expect(unpackPrefixKeys(framed.subarray(5, 5 + packed.length))).toEqual(keys);
  });

  it('keeps the wire format routers of other versions read: each lane big-endian, in key order', () => {
    expect([...packPrefixKeys(['0123456789abcdef', 'fedcba9876543210'])]).toEqual([
      0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
    ]);
    expect(unpackPrefixKeys(new Uint8Array([0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 9]))).toEqual([
      '00000001ffffffff',
    ]);
  });
});
