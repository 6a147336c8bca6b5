import { describe, expect, it } from 'vitest';
import { FNV32_OFFSET, Fnv1a32x2, fmix32, fnv1a32 } from '../../common/hash.js';
import { rendezvousScore } from '../../inference/router/policies.js';
import { prefixBlockHashes } from '../../inference/router/prefix.js';
import { promptBlockKeys } from '../../sim/serving.js';
import { simTokenId } from '../../sim/tokenizer.js';

describe('common hashes', () => {
  it('computes FNV-1a 32 (reference vectors)', () => {
    expect(fnv1a32('')).toBe(FNV32_OFFSET);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
  });

  it('hashes a string in pieces as it hashes it whole', () => {
    const s = 'prefix blocks 😀 and more';
    expect(fnv1a32(s.slice(9), fnv1a32(s.slice(0, 9)))).toBe(fnv1a32(s));
    const whole = new Fnv1a32x2();
    whole.update(s);
    const pieces = new Fnv1a32x2();
    pieces.update(s, 0, 5);
    pieces.update(s, 5);
    expect([pieces.a, pieces.b]).toEqual([whole.a, whole.b]);
    expect(whole.a >>> 0).toBe(fnv1a32(s));
    expect(whole.b).not.toBe(whole.a);
  });

  it('finishes with murmur3 fmix32', () => {
    expect(fmix32(0)).toBe(0);
    expect(fmix32(1)).toBe(0x514e28b7);
  });

  // Token ids, rendezvous placement and prefix keys must agree across processes and versions (a router and a
  // member on different releases); these are the values the router and simulator have always derived.
  it('keeps the values the router and the simulator already use', () => {
    expect([simTokenId('hello'), simTokenId(' world')]).toEqual([10411, 2525]);
    expect([rendezvousScore('q42', 'm-a'), rendezvousScore('q42', 'm-b')]).toEqual([2573497350, 443648452]);
    expect(prefixBlockHashes('abc'.repeat(100))).toEqual(['0a3ef393b43e64d2', 'e602050a10f42740']);
    expect(promptBlockKeys(['a', 'b', 'c', 'd'], 2)).toEqual([1931617473840806, 1359011180404803]);
  });
});
