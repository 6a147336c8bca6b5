// Prefix block keys and the router's approximate record of which prefixes each member holds.
//
// A prompt is cut into fixed-size character blocks; block i's key hashes the whole prompt up to the end of
// block i (a hash chain), so equal keys mean equal prefixes and "longest shared prefix" is "longest run of
// equal keys". Characters rather than tokens: the router never sees a tokenizer, and branches of one question
// re-send byte-identical rendered prefixes, so character blocks line up exactly where the server's KV pages do
// (at a coarser grain: 256 chars is about 64 tokens).
import type { ChatMessage } from '../../agent/types.js';
import { Fnv1a32x2, fmix32 } from '../../common/hash.js';

export const DEFAULT_BLOCK_CHARS = 256;

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

/**
 * Streams text in any number of pieces and emits a key at every block boundary. The running state is never
 * reset, so each key covers everything fed so far: the chain property comes for free.
 */
export class PrefixHasher {
  private readonly h = new Fnv1a32x2();
  private inBlock = 0;
  readonly keys: string[] = [];

  constructor(readonly blockChars: number = DEFAULT_BLOCK_CHARS) {
    if (!Number.isInteger(blockChars) || blockChars <= 0)
      throw new RangeError('blockChars must be a positive integer');
  }

  update(text: string): this {
    const h = this.h;
    const size = this.blockChars;
    for (let i = 0; i < text.length; ) {
      const end = Math.min(text.length, i + size - this.inBlock);
      h.update(text, i, end);
      this.inBlock += end - i;
      i = end;
      if (this.inBlock === size) {
        // fmix32: FNV's low bits mix poorly, and keys are compared (and rendezvous-hashed) as strings.
        this.keys.push(hex8(fmix32(h.a)) + hex8(fmix32(h.b ^ 0x5bd1e995)));
        this.inBlock = 0;
      }
    }
    return this;
  }

  /**
   * The keys so far, plus one for a trailing partial block when `includePartial`. That last key identifies the
   * whole prompt, so a short prompt (below one block) still has an identity; it rarely matches anything else.
   */
  digest(includePartial = true): string[] {
    if (!includePartial || this.inBlock === 0) return [...this.keys];
    return [...this.keys, `${hex8(fmix32(this.h.a ^ 0x27d4eb2f))}${hex8(fmix32(this.h.b ^ 0x165667b1))}`];
  }
}

/** Block keys of `text`: key i identifies text[0, (i+1)·blockChars). */
export function prefixBlockHashes(
  text: string,
  blockChars = DEFAULT_BLOCK_CHARS,
  includePartial = true,
): string[] {
  return new PrefixHasher(blockChars).update(text).digest(includePartial);
}

/**
 * Block keys of a chat without concatenating it. The separators keep role and message boundaries in the hash so
 * ["ab","c"] and ["a","bc"] differ; the exact bytes the server's template writes do not matter, only that equal
 * conversations give equal keys.
 */
export function messagesPrefixKeys(
  messages: readonly ChatMessage[],
  blockChars = DEFAULT_BLOCK_CHARS,
  includePartial = true,
): string[] {
  const h = new PrefixHasher(blockChars);
  for (const m of messages) h.update(m.role).update('\u0000').update(m.content).update('\u0001');
  return h.digest(includePartial);
}

/** Characters messagesPrefixKeys hashes for a chat: what its keys cover. */
export function messagesPrefixChars(messages: readonly ChatMessage[]): number {
  let n = 0;
  for (const m of messages) n += m.role.length + m.content.length + 2;
  return n;
}

/**
 * Prefix keys as 8 bytes each (the two 32-bit lanes), for sending to other routers. Every router reads every other's
 * placements, so both ways go through one hex conversion of the whole list (five times faster than key by key).
 */
export function packPrefixKeys(keys: readonly string[]): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(keys.join(''), 'hex'));
}

export function unpackPrefixKeys(bytes: Uint8Array): string[] {
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
  const keys = new Array<string>(bytes.length >>> 3);
  for (let i = 0; i < keys.length; i++) keys[i] = hex.slice(16 * i, 16 * i + 16);
  return keys;
}

const MAX_CAPACITY_BLOCKS = 64 * 16384;

export interface PrefixIndexOptions {
  /**
   * Blocks remembered per member before the least recently used are forgotten. Default 16384 blocks of 256
   * chars, about a million tokens: the order of one GPU's KV cache. Per-member values come from setCapacity.
   */
  capacityBlocks?: number;
}

/**
 * What was served where, per member, as an LRU set of block keys: this router's own requests, and those other
 * routers of the pool report (placement events). Approximate by design: the member's real cache evicts on its own
 * schedule, so a match is a hint, never a promise.
 */
export class PrefixIndex {
  private readonly defaultCapacity: number;
  /** Per member, key → the record that last touched it (Map order is recency order). */
  private readonly members = new Map<string, Map<string, number>>();
  private records = 0;
  private readonly capacities = new Map<string, number>();

  constructor(opts: PrefixIndexOptions = {}) {
    this.defaultCapacity = Math.max(1, Math.floor(opts.capacityBlocks ?? 16384));
  }

  capacity(memberId: string): number {
    return this.capacities.get(memberId) ?? this.defaultCapacity;
  }

  /**
   * From the member's announced cache. Bounded, as the announcement is only checked to be a number: a member that
   * announced 1e15 tokens would have this router remember everything ever sent to it. The bound, 1M blocks (about
   * 64M tokens at the default 256-character blocks and 4 characters a token), is past any one server's KV cache.
   */
  setCapacity(memberId: string, blocks: number): void {
    const cap = Math.min(MAX_CAPACITY_BLOCKS, Math.max(1, Math.floor(blocks)));
    this.capacities.set(memberId, cap);
    const set = this.members.get(memberId);
    if (set) evictTo(set, cap);
  }

  /** Blocks of the longest prefix of `keys` recorded for the member. */
  matchLength(memberId: string, keys: readonly string[]): number {
    const set = this.members.get(memberId);
    if (!set || keys.length === 0 || !set.has(keys[0]!)) return 0;
    // record() touches keys last-to-first, so a prefix's early blocks are always more recent than its later ones
    // and eviction removes from the end: the recorded keys of any chain form a prefix, and binary search is exact.
    let lo = 1; // keys[0, lo) are present
    let hi = keys.length; // keys[hi] onwards are absent (hi = length: unknown past the end)
    if (set.has(keys[hi - 1]!)) return hi;
    hi -= 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (set.has(keys[mid]!)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Records the keys as the member's most recent. Returns the record's undo (see PrefixAffinityPolicy.onRouted): it
   * takes back the keys this record added, those no later record touched since, so what stays is still a prefix of
   * every chain.
   */
  record(memberId: string, keys: readonly string[]): () => void {
    if (keys.length === 0) return () => {};
    let set = this.members.get(memberId);
    if (!set) {
      set = new Map();
      this.members.set(memberId, set);
    }
    const cap = this.capacity(memberId);
    const record = ++this.records;
    const added: string[] = [];
    // Only the first `cap` blocks can be held at once; recording more would evict this prompt's own head.
    const n = Math.min(keys.length, cap);
    for (let i = n - 1; i >= 0; i--) {
      const k = keys[i]!;
      if (!set.delete(k)) added.push(k);
      set.set(k, record);
    }
    evictTo(set, cap);
    return () => {
      const now = this.members.get(memberId);
      if (now) for (const k of added) if (now.get(k) === record) now.delete(k);
    };
  }

  forget(memberId: string): void {
    this.members.delete(memberId);
    this.capacities.delete(memberId);
  }

  /** Blocks currently recorded for the member. */
  size(memberId: string): number {
    return this.members.get(memberId)?.size ?? 0;
  }
}

function evictTo(set: Map<string, number>, cap: number): void {
  if (set.size <= cap) return;
  let excess = set.size - cap;
  // Map iteration is insertion order, and record() re-inserts on touch: the first keys are the least recent.
  for (const k of set.keys()) {
    if (excess-- <= 0) break;
    set.delete(k);
  }
}
