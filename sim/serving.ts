// Serving-cost model of one GPU inference server (simulated).
//
// What it models, and why each piece matters to Muse:
// - continuous batching: up to maxBatch sequences run at once, the rest queue FIFO. Per-sequence
//   decode speed falls as the batch grows while aggregate throughput rises sublinearly, so pool
//   utilisation and routing decisions have real consequences;
// - a paged KV cache of fixed-size token blocks shared by running sequences and cached prefixes:
//   prompt blocks are keyed by a hash chain over the prompt tokens (as vLLM's automatic prefix
//   caching and SGLang's radix cache do), cached prompt tokens skip prefill, unreferenced blocks
//   are evicted least-recently-used, a finished sequence leaves its output cached too, and a
//   request waits when its blocks do not fit. This is what makes prefix-affinity routing of
//   branches measurable;
// - prefill and decode throughput, with time optionally compressed (timeScale) so benchmarks of
//   thousands of steps finish in seconds while reporting realistic simulated milliseconds. Prefill
//   shares the engine steps with decoding (chunked prefill): while a prompt is prefilled each step
//   decodes one token per running sequence and prefills the rest of the step's budget
//   (maxBatchedTokens), so decoding slows to a token per such step; a member that misses its cache
//   slows everything it serves. Prefill is scheduled a step's budget ahead, as chunked-prefill
//   schedulers do: a request takes its KV blocks when its prefill is about to start, not while it
//   waits behind others'.
//
// Defaults: one H100 SXM 80 GB serving a Qwen3-30B-A3B-class MoE (30.5B total, 3.3B active,
// 48 layers, GQA with 4 KV heads of dim 128) with FP8 weights under vLLM or SGLang. Sources and
// arithmetic are in docs/simulator.md; in short:
// - KV cache: 2 (K,V) x 48 layers x 4 heads x 128 x 2 bytes = 96 KiB per token. With
//   gpu-memory-utilization 0.9 (72 GB), ~31 GB of FP8 weights and ~3-5 GB of activations and CUDA
//   graphs, about 36 GiB remain: 36 GiB / 96 KiB = 393,216 tokens;
// - decode, one sequence: each step reads the ~3.3B active parameters (~3.3 GB in FP8); at the
//   H100's 3.35 TB/s the bound is ~1,000 tok/s and measured single-stream rates for 30B-A3B MoEs
//   are a few hundred tok/s (e.g. up to ~196 tok/s on an RTX 4090, 1 TB/s, 4-bit weights); 200 is used;
// - batching: per-sequence speed s(b) = s1 * b^-0.3, aggregate s1 * b^0.7: ~3,700 tok/s at batch
//   64 and ~6,000 at 128, in line with published multi-thousand tok/s serving results for
//   30B-class models on one H100 (gpustack performance lab, vLLM serving benchmarks);
// - prefill: ~6.6 GFLOP per token for 3.3B active parameters; at ~15% of the H100's 989 dense BF16
//   TFLOPS, counting attention over agentic contexts of 16-64k tokens, ~20,000 tok/s;
// - maxBatchedTokens 8192: vLLM's default for its OpenAI server on GPUs of 70 GiB or more other than the A100;
// - maxBatch 64: agent prompts are long, so the KV cache rather than the scheduler's max_num_seqs
//   (1024 for that server on such GPUs) is what bounds concurrency in practice; 64 keeps the queue visible.

import { FNV32_OFFSET, FNV32_PRIME } from '../common/hash.js';
import type { BackendLoad } from '../inference/types.js';

export interface SimServingProfile {
  /** Sequences that run at once (continuous batching); the rest queue. */
  maxBatch: number;
  /** Aggregate prefill throughput of uncached prompt tokens. */
  prefillTokensPerSec: number;
  /** Decode speed of a single running sequence. */
  decodeTokensPerSec: number;
  /** Per-sequence decode speed is decodeTokensPerSec * batch^-decodeBatchExponent (0 = no slowdown). */
  decodeBatchExponent: number;
  /** Tokens per KV block; prefix caching works in whole blocks. */
  blockSize: number;
  /** KV cache size in tokens, shared by running sequences and cached prefixes. */
  cacheCapacityTokens: number;
  /**
   * Prompt tokens one engine step prefills (vLLM's max_num_batched_tokens, SGLang's chunked_prefill_size). A queued
   * request is admitted, and takes its KV blocks, once the prefill ahead of it fits in one step: like a chunked-prefill
   * scheduler, the engine holds no KV for a request still waiting for its prefill to start.
   */
  maxBatchedTokens: number;
  /** Real seconds per simulated second: 1 = real time, 0.05 = 20x faster, 0 = no waiting at all. */
  timeScale: number;
}

export const DEFAULT_SIM_SERVING_PROFILE: Readonly<SimServingProfile> = Object.freeze({
  maxBatch: 64,
  prefillTokensPerSec: 20_000,
  decodeTokensPerSec: 200,
  decodeBatchExponent: 0.3,
  blockSize: 16,
  cacheCapacityTokens: 393_216,
  maxBatchedTokens: 8192,
  timeScale: 0,
});

export interface SimRunResult {
  /** Prompt tokens served from the prefix cache (whole blocks). */
  cachedPromptTokens: number;
  /** Simulated milliseconds spent waiting for a batch slot or KV blocks. */
  queuedMs: number;
  /** Simulated milliseconds from admission to the last token (prefill + decode). */
  serviceMs: number;
}

export interface SimServerStats {
  /** Requests received, including any aborted before they ran. */
  requests: number;
  /**
   * Prompt and cached prompt tokens of the requests that ran (were given KV blocks), and the completion tokens they
   * generated (an aborted one's up to where it stopped).
   */
  promptTokens: number;
  cachedPromptTokens: number;
  completionTokens: number;
  evictedBlocks: number;
  aborted: number;
}

/** The running hash pair of a block-key chain at a block boundary: enough to continue the chain from there. */
export interface BlockChainState {
  /** Tokens hashed so far (a multiple of the block size). */
  tokens: number;
  h1: number;
  h2: number;
}

const CHAIN_START: BlockChainState = { tokens: 0, h1: FNV32_OFFSET, h2: FNV32_PRIME ^ 0x5bd1e995 };

/**
 * Block keys: a running pair of 32-bit hashes over the token stream (FNV-1a, and a multiply-xorshift lane),
 * snapshotted at each full block into one 53-bit number. The FNV lane is written out here rather than called from
 * common/hash: a call per token (a few characters each) makes this hot loop about twice as slow.
 */
export function promptBlockKeys(tokens: readonly string[], blockSize: number): number[] {
  return chainBlockKeys(tokens, blockSize, CHAIN_START).keys;
}

/**
 * The keys of the full blocks of `tokens`, which continue a chain at `from`; `at` also returns the chain's state
 * after that many of `tokens` (a block boundary), so another stream sharing those tokens can continue from there.
 */
function chainBlockKeys(
  tokens: readonly string[],
  blockSize: number,
  from: BlockChainState,
  at?: number,
): { keys: number[]; state?: BlockChainState } {
  const keys: number[] = [];
  const prime = FNV32_PRIME; // a local: an imported binding read in the loop is several times slower
  let h1 = from.h1;
  let h2 = from.h2;
  let state = at === 0 ? from : undefined;
  const full = Math.floor(tokens.length / blockSize) * blockSize;
  for (let i = 0; i < full; i++) {
    const t = tokens[i]!;
    for (let j = 0; j < t.length; j++) {
      const c = t.charCodeAt(j);
      h1 = Math.imul(h1 ^ c, prime);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    // A boundary marker keeps "ab"+"c" and "a"+"bc" apart.
    h1 = Math.imul(h1 ^ 0x1f, prime);
    h2 = Math.imul(h2 ^ 0x1f, 0x5bd1e995);
    if ((i + 1) % blockSize === 0) {
      keys.push((h1 >>> 0) * 0x200000 + ((h2 >>> 0) >>> 11));
      if (i + 1 === at) state = { tokens: from.tokens + at, h1, h2 };
    }
  }
  return state ? { keys, state } : { keys };
}

interface CacheEntry {
  key: number;
  refs: number;
  /** Links of the evictable (unreferenced) LRU list; null when referenced or at an end. */
  prev: CacheEntry | null;
  next: CacheEntry | null;
  listed: boolean;
}

/** Intrusive doubly linked LRU list: O(1) insert, remove and pop-oldest at any size. */
class LruList {
  private head: CacheEntry | null = null;
  private tail: CacheEntry | null = null;
  size = 0;

  push(e: CacheEntry): void {
    e.prev = this.tail;
    e.next = null;
    if (this.tail) this.tail.next = e;
    else this.head = e;
    this.tail = e;
    e.listed = true;
    this.size++;
  }

  remove(e: CacheEntry): void {
    if (!e.listed) return;
    e.listed = false;
    if (e.prev) e.prev.next = e.next;
    else this.head = e.next;
    if (e.next) e.next.prev = e.prev;
    else this.tail = e.prev;
    e.prev = null;
    e.next = null;
    this.size--;
  }

  shift(): CacheEntry | null {
    const e = this.head;
    if (e) this.remove(e);
    return e;
  }
}

interface Job {
  promptTokens: number;
  completion: number;
  keys: number[];
  /** The output as the next turn's prompt cuts it, and where its blocks continue the prompt's chain (see run). */
  continuation: { tokens: string[]; from: BlockChainState } | null;
  privateBlocks: number;
  arrive: number;
  admit: number;
  /** Simulated time its prefill starts and ends (prefill phase). */
  prefillFrom: number;
  prefillUntil: number;
  /** Prompt tokens per second its prefill was scheduled at. */
  prefillRate: number;
  cached: number;
  pinned: number[];
  /** The pinned blocks this job put into the cache (not found there): the only ones a give-up can drop. */
  created: Set<number>;
  phase: 'queued' | 'prefill' | 'decode' | 'done';
  remaining: number;
  timer: ReturnType<typeof setTimeout> | null;
  signal: AbortSignal;
  onAbort: () => void;
  resolve: (r: SimRunResult) => void;
  reject: (e: unknown) => void;
}

function abortError(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r;
  return new Error(typeof r === 'string' ? r : 'simulated request aborted');
}

/** One simulated GPU server: continuous batching, paged KV cache with prefix caching, timing. */
export class SimServer {
  readonly profile: Readonly<SimServingProfile>;
  private readonly capacityBlocks: number;
  private readonly cache = new Map<number, CacheEntry>();
  /** Unreferenced cached blocks in LRU order (oldest first). */
  private readonly evictable = new LruList();
  private privateBlocks = 0;
  private running = 0;
  private readonly queue: Job[] = [];
  private readonly decoding = new Set<Job>();
  private readonly active = new Set<Job>();
  private decodeTimer: ReturnType<typeof setTimeout> | null = null;
  private lastAdvance = 0;
  private prefillFreeAt = 0;
  /** Wakes tryAdmit when the prefill ahead of the queue's head has come down to one step. */
  private admitTimer: ReturnType<typeof setTimeout> | null = null;
  /** Simulated time the admit timer fires at: a prefill given up can bring the head's turn earlier than that. */
  private admitAt = 0;
  private readonly epoch = performance.now();
  private closed = false;
  private readonly counters: SimServerStats = {
    requests: 0,
    promptTokens: 0,
    cachedPromptTokens: 0,
    completionTokens: 0,
    evictedBlocks: 0,
    aborted: 0,
  };

  constructor(profile: Partial<SimServingProfile> = {}) {
    // An explicit undefined keeps the default rather than wiping it (NaN would then hang every request).
    const given = Object.fromEntries(Object.entries(profile).filter(([, v]) => v !== undefined));
    const p: SimServingProfile = { ...DEFAULT_SIM_SERVING_PROFILE, ...given };
    // Whole numbers: a block of 16.5 tokens would close every 33, and a batch of 1.5 would run two sequences.
    if (!(Number.isInteger(p.maxBatch) && p.maxBatch >= 1))
      throw new Error(`maxBatch must be a whole number >= 1, got ${p.maxBatch}`);
    if (!(Number.isInteger(p.blockSize) && p.blockSize >= 1))
      throw new Error(`blockSize must be a whole number >= 1, got ${p.blockSize}`);
    if (!(p.prefillTokensPerSec > 0) || !(p.decodeTokensPerSec > 0))
      throw new Error('throughputs must be > 0');
    if (!(p.timeScale >= 0)) throw new Error(`timeScale must be >= 0, got ${p.timeScale}`);
    if (!(p.maxBatchedTokens >= 1))
      throw new Error(`maxBatchedTokens must be >= 1, got ${p.maxBatchedTokens}`);
    // Below 0 a sequence would decode faster as the batch grows; at 1 the batch's throughput would not grow at all.
    if (!(p.decodeBatchExponent >= 0 && p.decodeBatchExponent < 1))
      throw new Error(`decodeBatchExponent must be in [0, 1), got ${p.decodeBatchExponent}`);
    if (!(p.cacheCapacityTokens >= p.blockSize && Number.isFinite(p.cacheCapacityTokens)))
      throw new Error(
        `cacheCapacityTokens must be a finite number of at least one block (${p.blockSize}), got ${p.cacheCapacityTokens}`,
      );
    this.profile = Object.freeze(p);
    this.capacityBlocks = Math.max(1, Math.floor(p.cacheCapacityTokens / p.blockSize));
  }

  /** Per-sequence decode speed with b sequences decoding and no prefill in the engine's steps. */
  decodeRate(b: number): number {
    return this.profile.decodeTokensPerSec * Math.max(1, b) ** -this.profile.decodeBatchExponent;
  }

  /**
   * Per-sequence decode speed while prompts are being prefilled. With chunked prefill every engine step decodes one
   * token of each running sequence and prefills what is left of its token budget (maxBatchedTokens), so a step
   * takes a decode step's time plus that prefill's, and decoding slows to one token per such step.
   */
  mixedDecodeRate(b: number): number {
    const prefillPerStep = Math.max(1, this.profile.maxBatchedTokens - b);
    return 1 / (1 / this.decodeRate(b) + prefillPerStep / this.profile.prefillTokensPerSec);
  }

  /** Prefill throughput while b sequences decode in the same steps (the step budget less their tokens, per step). */
  prefillRate(b: number): number {
    if (b === 0) return this.profile.prefillTokensPerSec;
    return Math.max(1, this.profile.maxBatchedTokens - b) * this.mixedDecodeRate(b);
  }

  load(): BackendLoad {
    return {
      running: this.running,
      queued: this.queue.length,
      maxBatch: this.profile.maxBatch,
      cacheCapacityTokens: this.capacityBlocks * this.profile.blockSize,
      cacheUsedTokens: (this.cache.size + this.privateBlocks) * this.profile.blockSize,
    };
  }

  stats(): SimServerStats {
    return { ...this.counters };
  }

  /**
   * Serves one request: waits for a slot and KV blocks, prefills the uncached part, decodes. `continuation`, when
   * given, is the prompt's last token and the output as a later prompt would cut them (a token can join across that
   * boundary): on success the full blocks of the prompt so continued stay cached, as vLLM and SGLang keep a finished
   * sequence's decoded KV, so the next turn of a conversation hits through the model's own reply too.
   */
  run(
    promptTokens: readonly string[],
    completionTokens: number,
    signal: AbortSignal,
    continuation?: readonly string[],
  ): Promise<SimRunResult> {
    if (this.closed) return Promise.reject(new Error('simulated server is closed'));
    if (signal.aborted) return Promise.reject(abortError(signal));
    const bs = this.profile.blockSize;
    // NaN or Infinity would make the request's block count NaN or Infinity for good: it would fit nowhere and stall
    // the queue behind it.
    if (!Number.isFinite(completionTokens))
      return Promise.reject(
        new RangeError(`completion tokens must be a finite number, got ${completionTokens}`),
      );
    const completion = Math.max(0, Math.floor(completionTokens));
    // The continuation replaces the prompt's last token: blocks ending before it are the prompt's own, and the
    // chain is picked up at the last such boundary.
    const last = Math.max(0, promptTokens.length - 1);
    const resumeAt = Math.floor(last / bs) * bs;
    const { keys, state } = chainBlockKeys(
      promptTokens,
      bs,
      CHAIN_START,
      continuation ? resumeAt : undefined,
    );
    const job: Job = {
      promptTokens: promptTokens.length,
      completion,
      keys,
      continuation:
        continuation && state
          ? { tokens: [...promptTokens.slice(resumeAt, last), ...continuation], from: state }
          : null,
      privateBlocks: Math.ceil(((promptTokens.length % bs) + completion) / bs),
      arrive: this.now(),
      admit: 0,
      prefillFrom: 0,
      prefillUntil: 0,
      prefillRate: 0,
      cached: 0,
      pinned: [],
      created: new Set(),
      phase: 'queued',
      remaining: completion,
      timer: null,
      signal,
      onAbort: () => this.abort(job),
      resolve: () => {},
      reject: () => {},
    };
    this.counters.requests++;
    return new Promise<SimRunResult>((resolve, reject) => {
      job.resolve = resolve;
      job.reject = reject;
      signal.addEventListener('abort', job.onAbort, { once: true });
      this.active.add(job);
      if (this.profile.timeScale === 0) {
        this.instant(job);
        return;
      }
      this.queue.push(job);
      this.tryAdmit();
    });
  }

  /** Rejects everything in flight; later calls fail. */
  close(): void {
    this.closed = true;
    if (this.admitTimer) clearTimeout(this.admitTimer);
    this.admitTimer = null;
    for (const j of [...this.active]) this.fail(j, new Error('simulated server closed'));
    if (this.decodeTimer) clearTimeout(this.decodeTimer);
    this.decodeTimer = null;
  }

  // -- time ---------------------------------------------------------------------------------

  private now(): number {
    const ts = this.profile.timeScale;
    return ts > 0 ? (performance.now() - this.epoch) / ts : 0;
  }

  private realDelay(simMs: number): number {
    return Math.max(0, simMs * this.profile.timeScale);
  }

  // -- KV blocks -----------------------------------------------------------------------------

  private leadingHits(keys: readonly number[]): number {
    let n = 0;
    while (n < keys.length && this.cache.has(keys[n]!)) n++;
    return n;
  }

  private fits(job: Job): boolean {
    const hits = this.leadingHits(job.keys);
    let pinnedEvictable = 0;
    for (let i = 0; i < hits; i++) if (this.cache.get(job.keys[i]!)!.refs === 0) pinnedEvictable++;
    const need = job.keys.length - hits + job.privateBlocks;
    const free = this.capacityBlocks - this.cache.size - this.privateBlocks;
    return need <= free + this.evictable.size - pinnedEvictable;
  }

  private evictOne(): boolean {
    const oldest = this.evictable.shift();
    if (!oldest) return false;
    this.cache.delete(oldest.key);
    this.counters.evictedBlocks++;
    return true;
  }

  private allocate(job: Job): void {
    const bs = this.profile.blockSize;
    const hits = this.leadingHits(job.keys);
    for (const key of job.keys) {
      const e = this.cache.get(key);
      if (e) {
        if (e.refs === 0) this.evictable.remove(e);
        e.refs++;
      } else {
        this.makeRoom(1);
        this.cache.set(key, { key, refs: 1, prev: null, next: null, listed: false });
        job.created.add(key);
      }
      job.pinned.push(key);
    }
    this.privateBlocks += job.privateBlocks;
    // The sequence's own blocks (its partial last prompt block, its output) take room too: cached prefixes make way.
    this.makeRoom(0);
    // The last prompt token is always recomputed to produce the first output logits.
    const maxCached = Math.floor(Math.max(0, job.promptTokens - 1) / bs) * bs;
    job.cached = Math.min(hits * bs, maxCached);
    this.counters.cachedPromptTokens += job.cached;
    this.counters.promptTokens += job.promptTokens;
    this.counters.completionTokens += job.completion;
  }

  /**
   * Keeps the finished sequence's blocks past its prompt: its private blocks (output, partial last prompt block) are
   * freed and the full blocks of the continued prompt become cached blocks. They are listed as evictable ahead of the
   * prompt's (release pushes those after), deepest first, so a conversation's tail goes before its shared prefix.
   */
  private retainSequence(job: Job): void {
    this.privateBlocks -= job.privateBlocks;
    job.privateBlocks = 0;
    if (!job.continuation) return;
    const { tokens, from } = job.continuation;
    const first = from.tokens / this.profile.blockSize;
    const keys = chainBlockKeys(tokens, this.profile.blockSize, from).keys;
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i]!;
      if (key === job.keys[first + i]) continue; // the prompt's own block, pinned by this job
      const e = this.cache.get(key);
      if (e) {
        if (e.refs === 0) {
          this.evictable.remove(e);
          this.evictable.push(e);
        }
        continue;
      }
      if (!this.makeRoom(1)) return;
      const entry: CacheEntry = { key, refs: 0, prev: null, next: null, listed: false };
      this.cache.set(key, entry);
      this.evictable.push(entry);
    }
  }

  /** Evicts least-recently-used unreferenced blocks until `blocks` more fit; false when they cannot. */
  private makeRoom(blocks: number): boolean {
    while (this.cache.size + this.privateBlocks + blocks > this.capacityBlocks && this.evictOne()) {}
    return this.cache.size + this.privateBlocks + blocks <= this.capacityBlocks;
  }

  /**
   * Unpins the job's blocks. The first `computedBlocks` of its prompt stay cached; blocks past them that this job put
   * into the cache and no other job holds were never computed (it was given up mid-prefill) and are dropped, as vLLM
   * caches only computed blocks. Blocks that were cached before it came stay, wherever they lie.
   */
  private release(job: Job, computedBlocks = job.pinned.length): void {
    // Tail blocks become evictable first, so a shared prefix outlives the branches hanging off it.
    for (let i = job.pinned.length - 1; i >= 0; i--) {
      const key = job.pinned[i]!;
      const e = this.cache.get(key);
      if (!e) continue;
      e.refs--;
      if (e.refs <= 0) {
        e.refs = 0;
        if (i >= computedBlocks && job.created.has(key)) this.cache.delete(key);
        else this.evictable.push(e);
      }
    }
    job.pinned = [];
    job.created.clear();
    this.privateBlocks -= job.privateBlocks;
    this.makeRoom(0);
  }

  // -- scheduling ----------------------------------------------------------------------------

  private instant(job: Job): void {
    this.allocate(job);
    this.running++;
    const uncached = job.promptTokens - job.cached;
    const serviceMs =
      (uncached / this.profile.prefillTokensPerSec) * 1000 +
      (job.completion / this.decodeRate(this.running)) * 1000;
    job.phase = 'decode';
    setImmediate(() => {
      if (job.phase === 'done') return;
      this.finish(job, { cachedPromptTokens: job.cached, queuedMs: 0, serviceMs });
    });
  }

  private tryAdmit(): void {
    // close() fails what runs first: the slots that frees must not admit the queue it is about to fail.
    if (this.closed) return;
    while (this.queue.length > 0 && this.running < this.profile.maxBatch) {
      const head = this.queue[0]!;
      if (this.running > 0 && !this.fits(head)) break;
      const untilStep = this.prefillFreeAt - this.now() - this.stepPrefillMs();
      if (this.running > 0 && untilStep > 0) {
        this.wakeAdmitIn(untilStep);
        break;
      }
      this.queue.shift();
      this.admit(head);
    }
  }

  private wakeAdmitIn(simMs: number): void {
    const at = this.now() + simMs;
    if (this.admitTimer) {
      if (this.admitAt <= at) return;
      clearTimeout(this.admitTimer);
    }
    this.admitAt = at;
    this.admitTimer = setTimeout(() => {
      this.admitTimer = null;
      this.tryAdmit();
    }, this.realDelay(simMs));
  }

  /** Simulated milliseconds one engine step's prefill budget takes. */
  private stepPrefillMs(): number {
    return (this.profile.maxBatchedTokens / this.profile.prefillTokensPerSec) * 1000;
  }

  private admit(job: Job): void {
    const now = this.now();
    this.allocate(job);
    this.running++;
    job.admit = now;
    job.phase = 'prefill';
    const uncached = job.promptTokens - job.cached;
    const start = Math.max(now, this.prefillFreeAt);
    // At the rate the sequences decoding now leave it; they slow down for as long as it lasts.
    const end = start + (uncached / this.prefillRate(this.decoding.size)) * 1000;
    this.setPrefillFreeAt(end);
    job.prefillFrom = start;
    job.prefillUntil = end;
    job.prefillRate = this.prefillRate(this.decoding.size);
    job.timer = setTimeout(
      () => {
        job.timer = null;
        this.startDecode(job);
      },
      this.realDelay(end - now),
    );
  }

  private startDecode(job: Job): void {
    if (job.phase !== 'prefill') return;
    this.advance();
    job.phase = 'decode';
    if (job.remaining <= 0) {
      this.complete(job);
      this.reschedule();
      return;
    }
    this.decoding.add(job);
    this.reschedule();
  }

  /** Moves the end of the prefill line; decoding, which runs slower until then, is brought up to date and retimed. */
  private setPrefillFreeAt(t: number): void {
    this.advance();
    this.prefillFreeAt = t;
    this.reschedule();
  }

  /** Decodes up to now: at the mixed rate while prefill was under way, at the decode-only rate after. */
  private advance(): void {
    const now = this.now();
    const from = this.lastAdvance;
    this.lastAdvance = now;
    const b = this.decoding.size;
    if (now <= from || b === 0) return;
    const mixedMs = Math.max(0, Math.min(now, this.prefillFreeAt) - from);
    const step =
      (mixedMs / 1000) * this.mixedDecodeRate(b) + ((now - from - mixedMs) / 1000) * this.decodeRate(b);
    for (const j of this.decoding) j.remaining -= step;
  }

  private reschedule(): void {
    if (this.decodeTimer) clearTimeout(this.decodeTimer);
    this.decodeTimer = null;
    const b = this.decoding.size;
    if (b === 0) return;
    let min = Infinity;
    for (const j of this.decoding) min = Math.max(0, Math.min(min, j.remaining));
    // The next sequence to finish: through what is left of the prefill at the mixed rate, then at the full one.
    const mixedMs = Math.max(0, this.prefillFreeAt - this.now());
    const mixedTokens = (mixedMs / 1000) * this.mixedDecodeRate(b);
    const simMs =
      min <= mixedTokens
        ? (min / this.mixedDecodeRate(b)) * 1000
        : mixedMs + ((min - mixedTokens) / this.decodeRate(b)) * 1000;
    this.decodeTimer = setTimeout(() => {
      this.decodeTimer = null;
      this.advance();
      for (const j of [...this.decoding]) if (j.remaining <= 1e-6) this.complete(j);
      this.reschedule();
    }, this.realDelay(simMs));
  }

  private complete(job: Job): void {
    this.decoding.delete(job);
    const now = this.now();
    this.finish(job, {
      cachedPromptTokens: job.cached,
      queuedMs: job.admit - job.arrive,
      serviceMs: now - job.admit,
    });
  }

  private finish(job: Job, result: SimRunResult): void {
    if (job.phase === 'done') return;
    job.phase = 'done';
    this.active.delete(job);
    job.signal.removeEventListener('abort', job.onAbort);
    this.retainSequence(job);
    this.release(job);
    this.running--;
    job.resolve(result);
    this.tryAdmit();
  }

  /**
   * A prefill given up: the part of its window not yet spent is let go, and the prefills behind it in line move up by
   * that much, as an engine's scheduler takes the next request's chunks at once (they keep the rate they were given).
   */
  private dropFromPrefillLine(job: Job): void {
    const now = this.now();
    const unspent = job.prefillUntil - Math.max(now, job.prefillFrom);
    if (unspent <= 0) return;
    // The line is contiguous from the given-up prefill on (each admitted one starts where the line ended).
    for (const j of this.active) {
      if (j === job || j.phase !== 'prefill' || j.prefillFrom < job.prefillUntil) continue;
      j.prefillFrom -= unspent;
      j.prefillUntil -= unspent;
      if (j.timer) clearTimeout(j.timer);
      j.timer = setTimeout(
        () => {
          j.timer = null;
          this.startDecode(j);
        },
        this.realDelay(j.prefillUntil - now),
      );
    }
    this.setPrefillFreeAt(Math.max(now, this.prefillFreeAt - unspent));
  }

  private abort(job: Job): void {
    this.counters.aborted++;
    this.fail(job, abortError(job.signal));
  }

  private fail(job: Job, err: Error): void {
    if (job.phase === 'done') return;
    const phase = job.phase;
    job.phase = 'done';
    this.active.delete(job);
    job.signal.removeEventListener('abort', job.onAbort);
    if (job.timer) clearTimeout(job.timer);
    job.timer = null;
    if (phase === 'queued') {
      const i = this.queue.indexOf(job);
      if (i >= 0) this.queue.splice(i, 1);
    } else {
      if (phase === 'prefill') this.dropFromPrefillLine(job);
      if (phase === 'decode' && this.decoding.has(job)) {
        this.advance();
        this.decoding.delete(job);
        this.reschedule();
      }
      // Counted whole when it was admitted: only what it decoded before it stopped was generated.
      this.counters.completionTokens -= Math.ceil(Math.max(0, job.remaining));
      // Given up mid-prefill: only what was computed by now stays cached.
      const computed =
        phase === 'prefill'
          ? Math.min(
              job.promptTokens,
              job.cached + (Math.max(0, this.now() - job.prefillFrom) / 1000) * job.prefillRate,
            )
          : job.promptTokens;
      this.release(job, Math.floor(computed / this.profile.blockSize));
      this.running--;
    }
    job.reject(err);
    this.tryAdmit();
  }
}
