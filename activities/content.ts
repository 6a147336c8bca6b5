// Trajectory content by reference. A context (what the next prompt is built from) is stored as a small
// object of references to turns, observations, reports and summaries; each is content-addressed, so a branch
// shares its parent's prefix without copying it, and Temporal history carries one reference per step.
import type { ContextState, ContextStep } from '../agent/context.js';
import type { ContextPolicyName } from '../agent/types.js';
import { type BlobRef, type BlobStore, parseBlobRef } from '../common/blob-store.js';
import { createFailFastLimiter } from '../common/limiter.js';

interface StoredStep {
  turn: BlobRef;
  observation?: BlobRef;
}

interface StoredContext {
  kind: 'muse.context';
  policy: ContextPolicyName;
  question: BlobRef;
  steps: StoredStep[];
  report?: BlobRef;
  summary?: BlobRef;
  round: number;
}

/**
 * Remembers which stored text a string came from, so storing an unchanged context rehashes nothing. An entry is
 * used only while the store surely keeps the text (`freshForMs` of its namespace since the store last wrote it): a long trajectory
 * writes its early turns again before the store's TTL would expire them under later contexts. A text read back
 * carries the write time the store reports (a KV entry's), so a worker taking over a trajectory does not write its
 * history again; a text of unknown age (a large object) is written once by the next put.
 */
class TextRefCache {
  private readonly map = new Map<string, { ref: BlobRef; writtenAt: number; generation: number }>();
  private chars = 0;
  constructor(
    private readonly maxChars: number,
    private readonly blobs: BlobStore,
  ) {}
  /** A reference to hand out without writing: written recently enough, and its namespace not deleted since. */
  get(text: string, namespace: string): BlobRef | undefined {
    const e = this.map.get(text);
    if (!e || parseBlobRef(e.ref).namespace !== namespace) return undefined;
    if (e.generation !== this.blobs.generation(namespace)) return undefined;
    return Date.now() - e.writtenAt <= this.blobs.freshForMs(namespace) ? e.ref : undefined;
  }
  written(text: string, ref: BlobRef, writtenAt: number, generation: number): void {
    this.add(text, ref, writtenAt, generation);
  }
  /** `generation`: the namespace's, read before the read began (a deletion during it leaves the reference stale). */
  read(text: string, ref: BlobRef, writtenAt: number, generation: number): void {
    const e = this.map.get(text);
    if (!e || e.writtenAt < writtenAt || e.generation !== this.generationOf(e.ref))
      this.add(text, ref, writtenAt, generation);
  }
  private generationOf(ref: BlobRef): number {
    return this.blobs.generation(parseBlobRef(ref).namespace);
  }
  private add(text: string, ref: BlobRef, writtenAt: number, generation: number): void {
    const e = this.map.get(text);
    if (e) {
      e.ref = ref;
      e.writtenAt = writtenAt;
      e.generation = generation;
      return;
    }
    if (text.length > this.maxChars / 4) return;
    this.map.set(text, { ref, writtenAt, generation });
    this.chars += text.length;
    while (this.chars > this.maxChars) {
      const oldest = this.map.keys().next().value;
      if (oldest === undefined) break;
      this.map.delete(oldest);
      this.chars -= oldest.length;
    }
  }
}

export class ContextStore {
  private readonly refs: TextRefCache;

  constructor(private readonly blobs: BlobStore) {
    this.refs = new TextRefCache(128 * 1024 * 1024, blobs);
  }

  async putText(namespace: string, text: string): Promise<BlobRef> {
    const known = this.refs.get(text, namespace);
    if (known) return known;
    // Taken before the write: a deletion announced while it is under way leaves the reference stale at once.
    const generation = this.blobs.generation(namespace);
    const ref = await this.blobs.put(namespace, text);
    // A large text's put may keep the copy already stored instead of writing: that copy's write time, not now, is
    // what bounds how long the reference may be handed out again.
    this.refs.written(text, ref, this.blobs.writtenAt(ref), generation);
    return ref;
  }

  async getText(ref: BlobRef): Promise<string> {
    const generation = this.blobs.generation(parseBlobRef(ref).namespace);
    const text = await this.blobs.getText(ref);
    this.refs.read(text, ref, this.blobs.writtenAt(ref), generation);
    return text;
  }

  async putContext(namespace: string, policy: ContextPolicyName, state: ContextState): Promise<BlobRef> {
    const generation = this.blobs.generation(namespace);
    const ref = await this.putContextOnce(namespace, policy, state);
    return this.stale(namespace, generation) ? this.putContextOnce(namespace, policy, state) : ref;
  }

  /**
   * A tool step's observation and the context after it. `stored`: the observation as the step stored it already
   * (the tool's record), with the namespace's generation read before that; written again too if it is stale.
   */
  async putStep(
    namespace: string,
    policy: ContextPolicyName,
    next: ContextState,
    observation: string,
    stored: { observationRef?: BlobRef; generation: number },
  ): Promise<{ observationRef: BlobRef; contextRef: BlobRef }> {
    const write = async (observationRef?: BlobRef) => {
      const [o, c] = await Promise.all([
        observationRef ?? this.putText(namespace, observation),
        this.putContextOnce(namespace, policy, next),
      ]);
      return { observationRef: o, contextRef: c };
    };
    const first = await write(stored.observationRef);
    return this.stale(namespace, stored.generation) ? write() : first;
  }

  /**
   * Whether the namespace was found deleted since `generation` was read: a deletion this worker did not hear of
   * (the notice is sent once; a worker cut off from NATS misses it) is found by the first write that finds the
   * bucket gone, or assumed at a reconnect (BlobStore). The references handed out from the cache before then may
   * point at nothing, so what was written since is written again, once.
   */
  private stale(namespace: string, generation: number): boolean {
    return this.blobs.generation(namespace) !== generation;
  }

  private async putContextOnce(
    namespace: string,
    policy: ContextPolicyName,
    state: ContextState,
  ): Promise<BlobRef> {
    const limit = createFailFastLimiter(CONTEXT_TEXTS_IN_FLIGHT);
    const put = (t: string) => limit(() => this.putText(namespace, t));
    const steps = await Promise.all(
      state.steps.map(
        async (s): Promise<StoredStep> => ({
          turn: await put(s.turn),
          ...(s.observation !== undefined ? { observation: await put(s.observation) } : {}),
        }),
      ),
    );
    const stored: StoredContext = {
      kind: 'muse.context',
      policy,
      question: await put(state.question),
      steps,
      round: state.round,
      ...(state.report !== undefined ? { report: await put(state.report) } : {}),
      ...(state.summary !== undefined ? { summary: await put(state.summary) } : {}),
    };
    return this.blobs.put(namespace, stored);
  }

  async getContext(ref: BlobRef): Promise<{ policy: ContextPolicyName; state: ContextState }> {
    const stored = await this.blobs.get<StoredContext>(ref);
    if (stored?.kind !== 'muse.context')
      throw new TypeError(`content reference ${ref} does not hold a trajectory context`);
    const limit = createFailFastLimiter(CONTEXT_TEXTS_IN_FLIGHT);
    const get = (r: BlobRef) => limit(() => this.getText(r));
    const steps = await Promise.all(
      stored.steps.map(
        async (s): Promise<ContextStep> => ({
          turn: await get(s.turn),
          ...(s.observation ? { observation: await get(s.observation) } : {}),
        }),
      ),
    );
    return {
      policy: stored.policy,
      state: {
        question: await get(stored.question),
        steps,
        round: stored.round,
        ...(stored.report ? { report: await get(stored.report) } : {}),
        ...(stored.summary ? { summary: await get(stored.summary) } : {}),
      },
    };
  }
}

/**
 * Texts of one context read or written at once. A long react context has thousands; on a cold cache (a new worker,
 * or after a reconnect cleared it) all of them at once would queue thousands of KV requests per trajectory, and
 * under load those time out together and fail the attempt. After one fails, the rest are not started: the attempt
 * has failed, and its retry should not queue behind them.
 */
const CONTEXT_TEXTS_IN_FLIGHT = 32;
