// Routing policies: given the pool as the router sees it, order the healthy members best first. The first is
// where the request goes; the rest are the failover order when it fails (no responders, timeout, member gone).
import { fmix32, fnv1a32 } from '../../common/hash.js';
import { PrefixIndex } from './prefix.js';

export interface MemberView {
  id: string;
  /** Requests the member runs at once (its backend's max batch). */
  capacity: number;
  /** Running as the member last reported, or what this router has outstanding there if that is more. */
  inFlight: number;
  queued: number;
  cacheCapacityTokens: number;
  cacheUsedTokens: number;
  /** Circuit not open and announcement fresh. */
  healthy: boolean;
}

export interface RouteRequest {
  /** Prefix block keys of the prompt (see prefix.ts). */
  prefixKeys: string[];
  /** Characters the keys cover (the last block may be partial); 0 when the keys were not computed. */
  prefixChars?: number;
  /** Requests that should land together when nothing is cached yet, e.g. every rollout of one question. */
  stickyKey?: string;
}

export type PolicyName = 'round_robin' | 'least_loaded' | 'prefix_affinity';

export interface RoutingPolicy {
  readonly name: PolicyName;
  /** Whether rank() and onRouted() read `prefixKeys`; when false the router leaves them empty (hashing costs). */
  readonly usesPrefixKeys: boolean;
  /** Every healthy member, best first; unhealthy members are left out. */
  rank(req: RouteRequest, members: MemberView[]): string[];
  /**
   * The request was sent to this member (called once per attempt that was actually sent). Returns an undo, which
   * the router calls when the member turned the request away (overloaded, stopping, not listening): it never held
   * the prompt.
   */
  onRouted?(memberId: string, req: RouteRequest): () => void;
  /** The member served the request; `promptTokens` is the prompt length its server counted. */
  onServed?(memberId: string, req: RouteRequest, promptTokens: number): void;
  /** Another router's request with these prefix keys was served by the member. */
  onPeerServed?(memberId: string, prefixKeys: string[]): void;
  onMemberGone(memberId: string): void;
}

/** Outstanding work relative to what the member runs at once; queued requests count fully. */
export function utilisation(m: MemberView): number {
  return (m.inFlight + m.queued) / Math.max(1, m.capacity);
}

function outstanding(m: MemberView): number {
  return m.inFlight + m.queued;
}

/** In flight plus queued at or above what the member runs at once: what it is sent now waits in a queue. */
export function isFull(m: MemberView): boolean {
  return outstanding(m) >= Math.max(1, m.capacity);
}

function byId(a: MemberView, b: MemberView): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function leastLoadedOrder(members: MemberView[]): MemberView[] {
  return [...members].sort((a, b) => utilisation(a) - utilisation(b) || byId(a, b));
}

// ---------------------------------------------------------------------------------------------------------------

export class RoundRobinPolicy implements RoutingPolicy {
  readonly name = 'round_robin' as const;
  readonly usesPrefixKeys = false;
  private next = 0;

  rank(_req: RouteRequest, members: MemberView[]): string[] {
    // Sorted so the rotation is stable when announcements reorder the member list.
    const healthy = members.filter((m) => m.healthy).sort(byId);
    if (healthy.length === 0) return [];
    const start = this.next % healthy.length;
    this.next = (start + 1) % Number.MAX_SAFE_INTEGER;
    return [...healthy.slice(start), ...healthy.slice(0, start)].map((m) => m.id);
  }

  onMemberGone(): void {}
}

// ---------------------------------------------------------------------------------------------------------------

export class LeastLoadedPolicy implements RoutingPolicy {
  readonly name = 'least_loaded' as const;
  readonly usesPrefixKeys = false;

  rank(_req: RouteRequest, members: MemberView[]): string[] {
    return leastLoadedOrder(members.filter((m) => m.healthy)).map((m) => m.id);
  }

  onMemberGone(): void {}
}

// ---------------------------------------------------------------------------------------------------------------

export interface PrefixAffinityOptions {
  /**
   * The imbalance guard (bounded load, as in consistent hashing with bounded loads): the member a request would
   * go to counts as overloaded when its load exceeds the pool's mean load by more than this many requests (scaled
   * to an average member's capacity in a mixed pool)... Default 6: a handful of requests queued behind one member
   * cost less than re-prefilling a long prefix elsewhere; more than that and the rest of the pool idles. Chosen
   * by a bench/routing sweep (docs/routing.md): 4 cost branch-burst hits, 8 let utilisation fall below 0.9.
   */
  balanceAbsThreshold?: number;
  /**
   * ...and by more than this multiple of the mean. Default 1.25, the usual bound of bounded-load hashing. The mean,
   * not the minimum as in SGLang's router: with a few members one idle member would otherwise trip the guard, and
   * sticky rollouts are bursty by nature.
   */
  balanceRelThreshold?: number;
  /**
   * Fraction of the prompt's blocks the best member must already hold for the request to follow it. Default 0.3
   * (SGLang's cache_threshold): below it the saving is too small to justify concentrating load.
   */
  cacheThreshold?: number;
  /**
   * Where a request goes when no member holds enough of its prefix. 'rendezvous' hashes the sticky key (else the
   * whole-prompt key) so related requests converge; 'least_loaded' spreads. 'auto' (default) uses rendezvous only
   * when the request has a stickyKey: without one the whole-prompt key is unique and hashing it just scatters.
   */
  coldPlacement?: 'auto' | 'rendezvous' | 'least_loaded';
  /** PrefixIndex blocks per member when the member does not announce its cache size. Default 16384. */
  defaultCapacityBlocks?: number;
  /** Block size the prefix keys were made with, to turn announced cache tokens into blocks. Default 256. */
  blockChars?: number;
  /**
   * Characters per token for that conversion until the pool's own figure is known: from the first served requests
   * on, the ratio of prompt characters to the prompt tokens members report is used. Default 4.
   */
  charsPerToken?: number;
  /** Share an index with other components (e.g. benchmarks inspecting it); one is created otherwise. */
  index?: PrefixIndex;
}

export const PREFIX_AFFINITY_DEFAULTS = {
  balanceAbsThreshold: 6,
  balanceRelThreshold: 1.25,
  cacheThreshold: 0.3,
  coldPlacement: 'auto',
  defaultCapacityBlocks: 16384,
  blockChars: 256,
  charsPerToken: 4,
} as const satisfies Required<Omit<PrefixAffinityOptions, 'index'>>;

/** Prompt tokens served before the learned characters-per-token ratio replaces the default. */
const MIN_TOKENS_TO_LEARN = 10_000;

/** Highest-random-weight score of (key, member): stable per pair, so a key keeps its member while others come and go. */
export function rendezvousScore(key: string, memberId: string): number {
  // FNV-1a of key, a U+00FF separator, then the member id, finished with fmix32.
  return fmix32(fnv1a32(memberId, fnv1a32('\u00ff', fnv1a32(key))));
}

export type AffinityDecision =
  | 'affinity'
  | 'cold_rendezvous'
  | 'cold_least_loaded'
  | 'imbalanced'
  | 'affinity_full';

/**
 * Cache-aware routing after SGLang's router: follow the member holding the longest prefix while it is not
 * overloaded, place cold prefixes by rendezvous hashing on the sticky key, and when the chosen member is
 * overloaded or full take the next member in the same preference order that is not. Dynamo's KV router and
 * llm-d's prefix scorer weigh the same two signals; a hard switch keeps the behaviour easy to predict.
 *
 * The preference order (longest recorded prefix, then rendezvous rank of the sticky key) is the same in every
 * router process, so a question's overflow lands on one stable second member, which then holds its prefix too,
 * instead of scattering over whichever member is least loaded at that instant.
 */
export class PrefixAffinityPolicy implements RoutingPolicy {
  readonly name = 'prefix_affinity' as const;
  readonly usesPrefixKeys = true;
  readonly index: PrefixIndex;
  private readonly o: Required<Omit<PrefixAffinityOptions, 'index'>>;
  /** Why the last rank() put its first member first; for metrics and tests. */
  lastDecision: AffinityDecision | undefined;
  /** Prompt characters (as block keys cover them) and server tokens of served requests: the learned ratio. */
  private servedChars = 0;
  private servedTokens = 0;

  constructor(opts: PrefixAffinityOptions = {}) {
    const { index, ...rest } = opts;
    this.o = { ...PREFIX_AFFINITY_DEFAULTS, ...stripUndefined(rest) };
    this.index = index ?? new PrefixIndex({ capacityBlocks: this.o.defaultCapacityBlocks });
  }

  /**
   * Member loads in "requests on an average member": equal to outstanding requests in a uniform pool (so the
   * thresholds read as request counts), scaled by capacity in a mixed one so a big server is not called
   * overloaded for carrying its share.
   */
  private loads(members: MemberView[]): Map<string, number> {
    const mean = members.reduce((s, m) => s + Math.max(1, m.capacity), 0) / members.length;
    return new Map(members.map((m) => [m.id, (outstanding(m) * mean) / Math.max(1, m.capacity)]));
  }

  rank(req: RouteRequest, members: MemberView[]): string[] {
    const healthy = members.filter((m) => m.healthy);
    if (healthy.length === 0) {
      this.lastDecision = undefined;
      return [];
    }
    // The index must remember about as much as the member's cache holds: too little and the router forgets
    // prefixes the member still has, sending their next turns elsewhere as if cold.
    const charsPerToken = this.charsPerToken();
    for (const m of healthy) {
      if (m.cacheCapacityTokens > 0) {
        this.index.setCapacity(m.id, (m.cacheCapacityTokens * charsPerToken) / this.o.blockChars);
      }
    }
    const total = req.prefixKeys.length;
    const match = new Map(healthy.map((m) => [m.id, this.index.matchLength(m.id, req.prefixKeys)]));
    const util = new Map(healthy.map((m) => [m.id, utilisation(m)]));
    const key = req.stickyKey ?? req.prefixKeys[total - 1];
    const rendezvous = new Map(
      healthy.map((m) => [m.id, key === undefined ? 0 : rendezvousScore(key, m.id)]),
    );
    const leastLoaded = (a: MemberView, b: MemberView) =>
      util.get(a.id)! - util.get(b.id)! || match.get(b.id)! - match.get(a.id)! || byId(a, b);

    const best = healthy.reduce((a, b) => (match.get(b.id)! > match.get(a.id)! ? b : a));
    const warm = total > 0 && match.get(best.id)! > 0 && match.get(best.id)! / total >= this.o.cacheThreshold;
    const sticky =
      this.o.coldPlacement === 'rendezvous' ||
      (this.o.coldPlacement === 'auto' && req.stickyKey !== undefined);

    let preferred: MemberView[];
    let decision: AffinityDecision;
    if (warm || sticky) {
      // Longest recorded prefix first; among equals (all cold, say) the sticky key's rendezvous rank.
      preferred = [...healthy].sort(
        (a, b) =>
          match.get(b.id)! - match.get(a.id)! ||
          (sticky ? rendezvous.get(b.id)! - rendezvous.get(a.id)! : 0) ||
          leastLoaded(a, b),
      );
      decision = warm ? 'affinity' : 'cold_rendezvous';
      // A new key takes the less loaded of its two rendezvous choices (the power of two choices): placement stays
      // nearly as stable across routers, and a handful of sticky keys no longer land 5/3/2/2 by chance. New means
      // the two hold as much of its prefix as each other (none, or only the system prompt every member has); a
      // request that shares more with its first choice stays there.
      if (
        !warm &&
        preferred.length > 1 &&
        match.get(preferred[0]!.id) === match.get(preferred[1]!.id) &&
        util.get(preferred[1]!.id)! < util.get(preferred[0]!.id)!
      ) {
        preferred = [preferred[1]!, preferred[0]!, ...preferred.slice(2)];
      }
    } else {
      preferred = [...healthy].sort(leastLoaded);
      decision = 'cold_least_loaded';
    }

    const loads = this.loads(healthy);
    let sum = 0;
    for (const l of loads.values()) sum += l;
    const mean = sum / healthy.length;
    const overloaded = (m: MemberView) => {
      const l = loads.get(m.id)!;
      return l - mean > this.o.balanceAbsThreshold && l > this.o.balanceRelThreshold * mean;
    };

    // The guard orders the whole list, not only its head: a request whose first choice fails goes on to the next
    // member in this order, which must not be an overloaded one while others have room.
    const hasRoom = (m: MemberView) => !overloaded(m) && !isFull(m);
    // Every member full (a pool at its throughput): each queues what it is sent, so being full tells none apart, and
    // the request waits where its prefix is unless that member is overloaded against the rest. (Not every member can
    // be overloaded: that is a load above the mean. Nor can one with free slots be, while every other member is full:
    // loads are scaled by capacity, so a full member's is at least any with free slots.)
    const fits = preferred.some(hasRoom) ? hasRoom : (m: MemberView) => !overloaded(m);
    const first = preferred[0]!;
    this.lastDecision = fits(first) ? decision : overloaded(first) ? 'imbalanced' : 'affinity_full';
    return [...preferred.filter(fits), ...preferred.filter((m) => !fits(m))].map((m) => m.id);
  }

  onRouted(memberId: string, req: RouteRequest): () => void {
    return this.index.record(memberId, req.prefixKeys);
  }

  onPeerServed(memberId: string, prefixKeys: string[]): void {
    this.index.record(memberId, prefixKeys);
  }

  onServed(_memberId: string, req: RouteRequest, promptTokens: number): void {
    if (!(promptTokens > 0) || !(req.prefixChars && req.prefixChars > 0)) return;
    this.servedChars += req.prefixChars;
    this.servedTokens += promptTokens;
    // Halving keeps the ratio a running average that follows a change of model or tokenizer.
    if (this.servedTokens > 1e8) {
      this.servedChars /= 2;
      this.servedTokens /= 2;
    }
  }

  /** Learned from served requests once there are enough tokens to trust, else the configured default. */
  charsPerToken(): number {
    if (this.servedTokens < MIN_TOKENS_TO_LEARN) return this.o.charsPerToken;
    return Math.min(32, Math.max(1, this.servedChars / this.servedTokens));
  }

  onMemberGone(memberId: string): void {
    this.index.forget(memberId);
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

// ---------------------------------------------------------------------------------------------------------------

export type PolicyOptions = PrefixAffinityOptions;

export const DEFAULT_POLICY: PolicyName = 'prefix_affinity';

export function createPolicy(name: PolicyName = DEFAULT_POLICY, opts?: PolicyOptions): RoutingPolicy {
  switch (name) {
    case 'round_robin':
      return new RoundRobinPolicy();
    case 'least_loaded':
      return new LeastLoadedPolicy();
    case 'prefix_affinity':
      return new PrefixAffinityPolicy(opts);
    default: {
      const never: never = name;
      throw new Error(`unknown routing policy: ${String(never)}`);
    }
  }
}
