// Small non-cryptographic string hashes shared by the router (prefix keys, rendezvous placement) and the simulator
// (token ids, prefix-cache blocks). Deterministic across processes and platforms: every router and member must
// derive the same values from the same text. All of them read UTF-16 code units, not UTF-8 bytes.

/** FNV-1a 32-bit offset basis. */
export const FNV32_OFFSET = 0x811c9dc5;
/** FNV-1a 32-bit prime. */
export const FNV32_PRIME = 0x01000193;

/** FNV-1a of `text`; pass a previous result as `seed` to hash a sequence of strings (equal to hashing them joined). */
export function fnv1a32(text: string, seed = FNV32_OFFSET): number {
  let h = seed;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), FNV32_PRIME);
  return h >>> 0;
}

/** murmur3's 32-bit finaliser: spreads every input bit over the output (FNV's low bits mix poorly on their own). */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

// The second lane's offset basis and prime: odd and far from FNV's so the lanes do not move together.
const OFFSET_B = FNV32_PRIME ^ 0x9e3779b9;
const PRIME_B = 0x01000247;

/**
 * Two independent streaming FNV-1a lanes (different offset bases, different primes): a 64-bit hash without
 * BigInt, which would be an order of magnitude slower on multi-MB prompts. Feed text in any pieces; `a` and `b`
 * are the lanes' states (signed 32-bit) after everything fed so far, to be finished with fmix32.
 */
export class Fnv1a32x2 {
  a = FNV32_OFFSET | 0;
  b = OFFSET_B | 0;

  /** Feeds `text[start, end)`. */
  update(text: string, start = 0, end = text.length): void {
    let a = this.a;
    let b = this.b;
    for (let i = start; i < end; i++) {
      const c = text.charCodeAt(i);
      a = Math.imul(a ^ c, FNV32_PRIME);
      b = Math.imul(b ^ c, PRIME_B);
    }
    this.a = a;
    this.b = b;
  }
}
