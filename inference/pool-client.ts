// The rollout worker's view of an inference pool: membership from announcements, a routing policy that
// ranks members, and failover across them. A member failing is the router's business: the caller sees
// PoolUnavailableError only when no member could serve, or the request's own error when no member ever could
// (BadRequestError, RequestTooLargeError, BackendRejectedError, ContextLengthError).
import { randomUUID } from 'node:crypto';
import {
  ClosedConnectionError,
  DrainingConnectionError,
  headers,
  type NatsConnection,
  RequestError,
  type Subscription,
  TimeoutError,
} from '@nats-io/nats-core';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { generationAllowanceMs } from '../agent/trajectory.js';
import type { ChatMessage } from '../agent/types.js';
import { type BlobStore, longestBlobRef } from '../common/blob-store.js';
import { ROUTER_LEASE_MS, routerLeaseAllowed } from '../common/config.js';
import { watchStatus, withinMaxPayload } from '../common/nats.js';
import { injectTraceHeaders, tracer } from '../common/telemetry.js';
import { backoffDelay, monotonicNow, sleep, timerDeadline, untilAborted } from './retry.js';
import { type BreakerTicket, CircuitBreaker } from './router/breaker.js';
import {
  createPolicy,
  isFull,
  type MemberView,
  type RouteRequest,
  type RoutingPolicy,
} from './router/policies.js';
import {
  messagesPrefixChars,
  messagesPrefixKeys,
  packPrefixKeys,
  unpackPrefixKeys,
} from './router/prefix.js';
import { ContextLengthError, type GenerateParams, type Generation } from './types.js';
import {
  ATTEMPT_TIMEOUT_HEADER,
  assertSubjectToken,
  type CancelWire,
  decodeWire,
  encodeWire,
  GenerateReplyWire,
  type GenerateRequestWire,
  HEADER_ROOM_BYTES,
  HeldWire,
  type HoldsWire,
  type LeaseWire,
  MAX_HOLDS_IDS,
  MAX_PLACEMENT_KEYS,
  MemberAnnouncementWire,
  PlacementWire,
  ROUTER_HEADER,
  ROUTER_LEASE_HEADER,
  subjects,
  tryDecodeWire,
  WIRE_VERSION,
} from './wire.js';

/** Between failover attempts: short, since the next attempt goes to another member. */
const FAILOVER_BACKOFF = { baseMs: 50 };
/** How long a request waits between looks while members' announcements are awaited (see announcementAwaited). */
const ANNOUNCEMENT_WAIT_MS = 100;
/** Sends lost on the way that go again without counting as attempts (see LostAttempt); past them, they count. */
const MAX_LOST_RESENDS = 2;
/**
 * A half-open member's probe is held past its attempt's timeout by this much: the request's own timer starts just
 * after the probe is taken, and a hold ending first would let a second probe out before the first one's failure
 * came back (and that failure, no longer the current probe's, would then be ignored).
 */
const PROBE_HOLD_MARGIN_MS = 1_000;

export class PoolUnavailableError extends Error {
  override name = 'PoolUnavailableError';
}
export class RequestTooLargeError extends Error {
  override name = 'RequestTooLargeError';
}
/**
 * The member's server refused or mangled this request in a way another server would too (an HTTP 400, an answer
 * without the logprobs asked for): neither failover nor a Temporal retry can help.
 */
export class BackendRejectedError extends Error {
  override name = 'BackendRejectedError';
}
/** A request the member rejected as invalid: retrying elsewhere cannot help. */
export class BadRequestError extends Error {
  override name = 'BadRequestError';
}

export interface PoolClientOptions {
  nc: NatsConnection;
  pool: string;
  policy?: RoutingPolicy | 'round_robin' | 'least_loaded' | 'prefix_affinity';
  memberTtlMs?: number;
  maxAttempts?: number;
  /** Per-attempt timeout; default: what a healthy server may take for the request's maxTokens (see config). */
  attemptTimeoutMs?: number;
  /** Encoded requests above this send their messages by blob reference (needs `blobs`). */
  inlineRequestBytes?: number;
  maxRequestBytes?: number;
  blobs?: BlobStore;
  /** Blob namespace for request bodies sent by reference, where a request names none (PoolGenerateOptions). */
  blobNamespace?: string;
  /**
   * Tell the pool's other routers which member served which prompt prefix, and learn the same from them (default
   * true; only policies that route by prefix use it). With several rollout workers each router sees only its share
   * of a trajectory's turns; without this, a turn whose earlier turns went through other routers looks cold.
   */
  sharePlacements?: boolean;
  /**
   * How long a member goes on with this router's requests without hearing from it (default 10 s; 0: no lease). The
   * router renews its lease at a quarter of that while it waits; a router killed with requests in flight sends no
   * cancel, and its members stop that work when the lease runs out instead of when it ends, while Temporal runs the
   * same steps again elsewhere. From 1 s to 1 h (what members take).
   */
  leaseMs?: number;
  /**
   * The router's clock, for tests: deadlines (epoch ms) are read against it, and so are member TTLs and circuit
   * breakers. By default those two read a monotonic clock, which a stepped wall clock (NTP, a resumed VM) does not
   * move: a step back would otherwise keep a dead member in rotation and an open circuit open for as long as it was.
   */
  now?: () => number;
}

export interface PoolGenerateOptions {
  /** Absolute deadline (epoch ms); no attempt outlives it. */
  deadline: number;
  signal?: AbortSignal;
  /** Keeps one trajectory on one member where load allows (its prefix grows turn by turn). */
  stickyKey?: string;
  model?: string;
  /**
   * Blob namespace for this request's body if it is sent by reference: the job's, so `muse content delete` and the
   * job's retention remove it with the rest of the job's content.
   */
  blobNamespace?: string;
  /** Called once per attempt with the member tried; used for heartbeats and tests. */
  onAttempt?: (memberId: string | undefined, attempt: number) => void;
}

interface MemberState {
  info: MemberAnnouncementWire;
  lastSeen: number;
  /** Requests this router has outstanding on the member (fresher than the member's own report). */
  outstanding: number;
  breaker: CircuitBreaker;
  /**
   * When the member said it is stopping: out of rotation, but what it is finishing is still awaited (its `info` is
   * then its leave, which says for how long: see leaveGraceMs, leaveRepeats).
   */
  leavingSince?: number;
  /** How the last request this router counted against the member failed: why its circuit is open. */
  lastFailure?: string;
  /** NATS said nobody listens on the member's subject: out of rotation until it announces itself again. */
  unreachable?: boolean;
}

/**
 * An attempt on a member waiting for its reply. It fails over at once when that member's process is dropped (killed,
 * partitioned, gone for good) or, after a connection came back, no longer holds it (see recheckPending).
 */
interface PendingAttempt {
  /** The member's state when the request was sent: a process restarted under the same id gets a new one. */
  member: MemberState;
  lose(reason: Error): void;
}

/** How long a member has to say which requests it holds; one that does not is asked again after a pause. */
const HOLDS_TIMEOUT_MS = 2_000;
const HOLDS_RETRY = { baseMs: 500, maxMs: 8_000 };
/** How long the check of this router's own connection (see liveMembers) may take before the connection is redone. */
const CONNECTION_CHECK_MS = 2_000;

/** Members named in a "no member in rotation" message; a large pool's others are counted. */
const MEMBERS_NAMED = 3;

/**
 * How long a stopping member's requests in flight are awaited before they fail over: 5 s longer than the member says it
 * waits for them on stop (its leave's drainMs; 10 s for members that do not say), so work it finishes is not thrown
 * away.
 */
function leaveGraceMs(leave: MemberAnnouncementWire): number {
  return (leave.drainMs ?? 10_000) + 5_000;
}

/**
 * Whether a leaving member says it is leaving at each heartbeat while it finishes (members that tell their drainMs
 * do): silent for a TTL, it died while finishing, and what it held fails over then rather than at the end of its grace.
 */
function leaveRepeats(leave: MemberAnnouncementWire): boolean {
  return leave.drainMs !== undefined;
}

/** Failures a member reports that say nothing of its health: failed over without counting against its breaker. */
const NOT_MEMBER_FAULTS = new Set<string>(['overloaded', 'shutting_down', 'unhealthy']);

export class PoolClient {
  private readonly members = new Map<string, MemberState>();
  /**
   * Leaving processes whose id a new process took over before they were done: out of the map, but what they hold is
   * still awaited for the rest of their grace, then failed over.
   */
  private readonly departing = new Set<MemberState>();
  /** Attempts on members waiting for a reply, by request id (a request has one attempt out at a time). */
  private readonly pending = new Map<string, PendingAttempt>();
  private readonly subs: Subscription[] = [];
  private readonly policy: RoutingPolicy;
  /** Wall clock (epoch ms): for deadlines, which the worker computes from its own. */
  private readonly now: () => number;
  /** Monotonic: for member TTLs, leaves and breakers. */
  private readonly clock: () => number;
  private readonly ttl: number;
  private readonly maxAttempts: number;
  private readonly attemptTimeout: number | undefined;
  private readonly inlineBytes: number;
  private readonly maxBytes: number;
  private readonly sharePlacements: boolean;
  /** Names this router in placement events, so it skips its own, and in the leases on its requests. */
  private readonly routerId = randomUUID();
  /** What renews those leases: the same message every time. */
  private readonly renewal = encodeWire({ v: WIRE_VERSION, router: this.routerId } satisfies LeaseWire);
  private started?: Promise<void>;
  /** Counts close() calls: a start still under way when the client is closed must not leave its sweep running. */
  private closes = 0;
  private sweeper?: NodeJS.Timeout;
  private readonly leaseMs: number;
  private renewer?: NodeJS.Timeout;
  private readonly sweepMs: number;
  private lastSweepAt?: number;
  /**
   * After this router's event loop stalled, announcements still queued get this long to be read before TTL drops;
   * after its NATS connection came back, members get a TTL to be heard again.
   */
  private noDropsUntil = 0;
  /** The NATS connection is down: no announcement can arrive, so silence says nothing of the members. */
  private disconnected = false;
  /** A check of this router's connection under way, and when one last succeeded (see connectionInDoubt). */
  private connectionCheck?: Promise<void>;
  private connectionOkAt = -Infinity;
  /** Ends watchConnection's loop (close()). */
  private stopWatching?: () => void;

  constructor(private readonly opts: PoolClientOptions) {
    assertSubjectToken('pool name', opts.pool);
    this.policy =
      typeof opts.policy === 'object' ? opts.policy : createPolicy(opts.policy ?? 'prefix_affinity');
    this.now = opts.now ?? Date.now;
    this.clock = opts.now ?? monotonicNow;
    this.ttl = opts.memberTtlMs ?? 3000;
    this.sweepMs = Math.max(100, Math.floor(this.ttl / 4));
    this.maxAttempts = opts.maxAttempts ?? 4;
    this.leaseMs = opts.leaseMs ?? ROUTER_LEASE_MS.default;
    if (!routerLeaseAllowed(this.leaseMs))
      throw new Error(
        `router leaseMs must be 0 (no lease) or a whole number of ms from ${ROUTER_LEASE_MS.min} to ${ROUTER_LEASE_MS.max}, got ${this.leaseMs}`,
      );
    this.attemptTimeout = opts.attemptTimeoutMs;
    this.inlineBytes = opts.inlineRequestBytes ?? 512 * 1024;
    this.maxBytes = opts.maxRequestBytes ?? 64 * 1024 * 1024;
    this.sharePlacements =
      (opts.sharePlacements ?? true) && this.policy.usesPrefixKeys && this.policy.onPeerServed !== undefined;
  }

  /**
   * The largest request sent inline: router.inlineRequestBytes, but never more than the server takes in one message
   * (its max_payload, less room for headers), which would fail every attempt of the request on every member.
   */
  private inlineLimit(): number {
    return withinMaxPayload(this.opts.nc, this.inlineBytes, HEADER_ROOM_BYTES);
  }

  get policyName(): string {
    return this.policy.name;
  }

  /** Subscribes to announcements and asks live members to identify themselves. Idempotent. */
  start(): Promise<void> {
    this.started ??= this.doStart().catch((err: unknown) => {
      // NATS was unreachable (a flush while disconnected): undo the half start, so the next call starts afresh
      // instead of every model call of this worker failing on the one remembered rejection.
      this.close();
      throw err;
    });
    return this.started;
  }

  private async doStart(): Promise<void> {
    const { nc, pool } = this.opts;
    const closes = this.closes;
    this.subs.push(
      nc.subscribe(subjects.announce(pool), {
        callback: (e, m) => {
          if (!e) this.onAnnounce(m.data);
        },
      }),
    );
    this.subs.push(
      nc.subscribe(subjects.leave(pool), {
        callback: (e, m) => {
          if (!e) this.onLeave(m.data);
        },
      }),
    );
    if (this.sharePlacements) {
      this.subs.push(
        nc.subscribe(subjects.placed(pool), {
          callback: (e, m) => {
            if (!e) this.onPlacement(m.data);
          },
        }),
      );
    }
    await nc.flush();
    if (this.closes !== closes) return;
    this.watchConnection();
    // Requests in flight on a member that stops announcing fail over without waiting for their timeout.
    this.sweeper = setInterval(() => this.liveMembers(), this.sweepMs);
    this.sweeper.unref();
    if (this.leaseMs > 0) {
      this.renewer = setInterval(() => this.renewLeases(), Math.floor(this.leaseMs / 4));
      this.renewer.unref();
    }
    await this.discover();
  }

  /**
   * Follows the connection's state. While it is down the members' announcements cannot reach this router: dropping
   * them for their silence would fail over every request they are still working on (and their replies sent after the
   * reconnect would find nobody waiting), so members are kept, and given a TTL to announce again once it is back.
   * What was in flight across the gap is checked (recheckPending).
   */
  private watchConnection(): void {
    this.stopWatching = watchStatus(this.opts.nc, (type) => {
      if (type === 'disconnect') this.disconnected = true;
      else if (type === 'reconnect') {
        this.disconnected = false;
        this.noDropsUntil = Math.max(this.noDropsUntil, this.clock() + this.ttl);
        void this.recheckPending();
      }
    });
  }

  /**
   * After a connection came back (this router's, or `memberId`'s): a request published into a server that went down,
   * or a reply sent before this router had subscribed again, is lost, and its attempt would wait out its whole limit
   * (minutes, for a long generation). Each member is asked which of them it still holds; the others are sent again.
   * A member that cannot say yet (not back, stalled) is asked again, with pauses, for as long as any of them is out
   * and it is in rotation. Attempts sent through the queue group (only before this router knows any member) keep
   * their limit.
   */
  private async recheckPending(only?: MemberState): Promise<void> {
    const closes = this.closes;
    const byMember = new Map<MemberState, Map<string, PendingAttempt>>();
    for (const [id, p] of this.pending) {
      if (only !== undefined && p.member !== only) continue;
      const group = byMember.get(p.member) ?? new Map<string, PendingAttempt>();
      group.set(id, p);
      byMember.set(p.member, group);
    }
    await Promise.all(
      [...byMember].map(async ([member, attempts]) => {
        const { id: memberId, instance } = member.info;
        let held: Set<string> | undefined;
        for (let asked = 0; !held; asked++) {
          if (asked > 0) await sleep(backoffDelay(asked - 1, HOLDS_RETRY), undefined);
          const open = [...attempts].filter(([id, p]) => this.pending.get(id) === p).map(([id]) => id);
          // Ended, or nobody left to ask: the router closed, or the member's process is gone (its attempts failed
          // over when it was dropped or replaced).
          if (open.length === 0 || this.closes !== closes || this.members.get(memberId) !== member) return;
          held = await this.heldBy(memberId, instance, open);
        }
        for (const [id, p] of attempts) {
          // Still this attempt (not a later one of the same request) and not held: lost on the way.
          if (held.has(id) || this.pending.get(id) !== p) continue;
          p.lose(
            new LostAttempt(`request lost while a NATS connection was down (${memberId} does not hold it)`),
          );
        }
      }),
    );
  }

  /** The requests among `ids` that `memberId`'s process `instance` holds; undefined when it does not say in time. */
  private async heldBy(
    memberId: string,
    instance: string | undefined,
    ids: string[],
  ): Promise<Set<string> | undefined> {
    const held = new Set<string>();
    for (let i = 0; i < ids.length; i += MAX_HOLDS_IDS) {
      const question: HoldsWire = {
        v: WIRE_VERSION,
        ids: ids.slice(i, i + MAX_HOLDS_IDS),
        ...(instance ? { instance } : {}),
      };
      try {
        const msg = await this.opts.nc.request(
          subjects.holds(this.opts.pool, memberId),
          encodeWire(question),
          {
            timeout: HOLDS_TIMEOUT_MS,
          },
        );
        for (const id of decodeWire(HeldWire, msg.data, `holds reply from ${memberId}`).held) held.add(id);
      } catch {
        return undefined;
      }
    }
    return held;
  }

  /** Tells each member this router has requests on that it is alive and still waits for them (see leaseMs). */
  private renewLeases(): void {
    const memberIds = new Set([...this.pending.values()].map((p) => p.member.info.id));
    for (const memberId of memberIds) {
      try {
        this.opts.nc.publish(subjects.lease(this.opts.pool, memberId), this.renewal);
      } catch {
        // Closed or draining: what is left in flight is failed or abandoned with it.
      }
    }
  }

  /** Collects immediate answers from live members (bounded wait). */
  async discover(waitMs = 250): Promise<void> {
    const { nc, pool } = this.opts;
    const inbox = nc.subscribe(`_INBOX.${randomUUID()}`, {
      callback: (e, m) => {
        if (!e) this.onAnnounce(m.data);
      },
    });
    nc.publish(subjects.discover(pool), new Uint8Array(), { reply: inbox.getSubject() });
    await new Promise((r) => setTimeout(r, waitMs));
    inbox.unsubscribe();
  }

  close(): void {
    this.closes++;
    this.stopWatching?.();
    this.stopWatching = undefined;
    this.disconnected = false;
    clearInterval(this.sweeper);
    clearInterval(this.renewer);
    this.renewer = undefined;
    for (const s of this.subs) s.unsubscribe();
    this.subs.length = 0;
    this.started = undefined;
  }

  /**
   * Whether every member in rotation has gone silent without this router's connection having been checked since.
   * That looks more like this router's own connection dying unnoticed (a NATS node lost without closing it: the
   * pings notice after ~30 s) than the whole pool dying, and dropping them would fail over everything they are
   * working on, into a connection that delivers nothing. So the connection is checked first: a flush answered in
   * time lets the next sweep drop them; one that is not has the connection redone, and what was in flight across the
   * gap is checked as after any reconnect.
   */
  private connectionInDoubt(now: number): boolean {
    if (this.dropsHeld(now)) return false;
    let newestSeen = -Infinity;
    let inRotation = 0;
    for (const m of this.members.values()) {
      // A leaving member that says so at each heartbeat is heard like one in rotation: its silence, with every other
      // member's, may be this router's connection, not its death.
      if (m.leavingSince !== undefined && !leaveRepeats(m.info)) continue;
      if (now - m.lastSeen <= this.ttl) return false;
      inRotation++;
      newestSeen = Math.max(newestSeen, m.lastSeen);
    }
    if (inRotation === 0 || this.connectionOkAt > newestSeen + this.ttl) return false;
    if (!this.connectionCheck) {
      const closes = this.closes;
      const startedAt = performance.now();
      this.connectionCheck = untilAborted(this.opts.nc.flush(), AbortSignal.timeout(CONNECTION_CHECK_MS))
        .then(
          () => {
            this.connectionOkAt = this.clock();
          },
          () => {
            // Far past the limit: this process stalled, and the answer may be unread; the next sweep asks again.
            const stalled = performance.now() - startedAt > 2 * CONNECTION_CHECK_MS;
            if (this.closes === closes && !stalled) this.opts.nc.reconnect?.().catch(() => {});
          },
        )
        .finally(() => {
          this.connectionCheck = undefined;
        });
    }
    return true;
  }

  /**
   * Whether members may not be dropped for their silence now: this router's connection is down, or came back (or
   * this process stalled) too recently for them to have been heard since.
   */
  private dropsHeld(now: number): boolean {
    return this.disconnected || now < this.noDropsUntil;
  }

  /** Live members as the router sees them (for status output, tests and benchmarks). */
  liveMembers(): MemberView[] {
    const now = this.clock();
    // The sweep runs every sweepMs; a much longer gap means this process stalled (CPU-bound, paused), and the
    // members' announcements of that time are still unread. Dropping them now would fail over every request in flight.
    if (this.lastSweepAt !== undefined && now - this.lastSweepAt > Math.max(this.ttl / 2, 2 * this.sweepMs)) {
      this.noDropsUntil = Math.max(this.noDropsUntil, now + Math.min(this.ttl, 1000));
    }
    this.lastSweepAt = now;
    const holdDrops = this.connectionInDoubt(now);
    // Unheard for a TTL, and not for this router's own connection.
    const gone = (m: MemberState) => now - m.lastSeen > this.ttl && !this.dropsHeld(now) && !holdDrops;
    // A leaving member is let go once what it finishes is done, its grace is over, or it fell silent (died meanwhile).
    const leaveOver = (m: MemberState) =>
      m.outstanding === 0 ||
      now - m.leavingSince! > leaveGraceMs(m.info) ||
      (leaveRepeats(m.info) && gone(m));
    for (const m of this.departing) {
      if (leaveOver(m)) {
        this.departing.delete(m);
        this.failOver(m, `member ${m.info.id}'s previous process left the pool`);
      }
    }
    const views: MemberView[] = [];
    for (const [id, m] of this.members) {
      if (m.leavingSince !== undefined) {
        if (leaveOver(m)) this.dropMember(id, `member ${id} left the pool`);
        continue;
      }
      if (gone(m)) {
        this.dropMember(id, `member ${id} stopped announcing (no heartbeat for ${this.ttl} ms)`);
        continue;
      }
      // Silent past its TTL while drops are held: kept, but out of this sweep's view.
      if (now - m.lastSeen > this.ttl) continue;
      views.push(memberView(id, m));
    }
    return views;
  }

  async generate(
    messages: ChatMessage[],
    params: GenerateParams,
    options: PoolGenerateOptions,
  ): Promise<Generation> {
    // Waits before the first attempt (the router's start, a large prompt's store write while the stream has no
    // leader) end with the caller's cancellation and at the request's deadline, as the attempts do.
    const bounded = async <T>(work: Promise<T>, what: string): Promise<T> => {
      const deadline = new AbortController();
      const timer = setTimeout(
        () =>
          deadline.abort(
            new PoolUnavailableError(
              `pool '${this.opts.pool}': the deadline passed ${what}, before any attempt`,
            ),
          ),
        Math.max(0, timerDeadline(options.deadline, this.now()) - this.now()),
      );
      try {
        const untilDeadline = untilAborted(work, deadline.signal);
        return await (options.signal ? untilAborted(untilDeadline, options.signal) : untilDeadline);
      } finally {
        clearTimeout(timer);
      }
    };
    await bounded(this.start(), 'while the router started');
    const id = randomUUID();
    const body: GenerateRequestWire = {
      v: WIRE_VERSION,
      id,
      pool: this.opts.pool,
      params,
      // Whole milliseconds, as the wire takes them: a computed deadline with a fraction would be refused as a bad
      // request, which fails the step for good.
      deadline: Math.floor(options.deadline),
      ...(options.model ? { model: options.model } : {}),
    };
    // The messages are encoded once, inline; only a request too large to send that way is encoded again, small,
    // with a blob reference in their place.
    let payload = encodeWire({ ...body, messages });
    if (payload.length > this.maxBytes) {
      throw new RequestTooLargeError(
        `request of ${payload.length} bytes exceeds the limit of ${this.maxBytes} bytes (router.maxRequestBytes)`,
      );
    }
    const inlineLimit = this.inlineLimit();
    if (payload.length > inlineLimit) {
      if (!this.opts.blobs) {
        throw new RequestTooLargeError(
          `request of ${payload.length} bytes exceeds the inline limit of ${inlineLimit} bytes and no blob store is configured`,
        );
      }
      const namespace = options.blobNamespace ?? this.opts.blobNamespace ?? 'requests';
      // What is left (the parameters: stop strings, say) can still be too large: NATS would refuse it on every
      // attempt. Sized before the messages are stored, so a refused request leaves nothing behind in the store.
      const byReference = encodeWire({ ...body, messagesRef: longestBlobRef(namespace) }).length;
      if (byReference > inlineLimit) {
        throw new RequestTooLargeError(
          `request of ${byReference} bytes without its messages (stored by reference) still exceeds the inline limit of ${inlineLimit} bytes`,
        );
      }
      const messagesRef = await bounded(
        this.opts.blobs.put(namespace, messages),
        'while the messages were stored',
      );
      payload = encodeWire({ ...body, messagesRef });
    }
    const route: RouteRequest = this.policy.usesPrefixKeys
      ? {
          prefixKeys: messagesPrefixKeys(messages),
          prefixChars: messagesPrefixChars(messages),
          stickyKey: options.stickyKey,
        }
      : { prefixKeys: [], stickyKey: options.stickyKey };

    return tracer().startActiveSpan(
      'pool.request',
      { kind: SpanKind.CLIENT, attributes: { 'muse.pool': this.opts.pool, 'muse.request': id } },
      async (span) => {
        try {
          const g = await this.withFailover(payload, params.maxTokens, id, route, options);
          span.setAttribute('muse.member', g.memberId);
          return g;
        } catch (err) {
          span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
          throw err;
        } finally {
          span.end();
        }
      },
    );
  }

  private async withFailover(
    payload: Uint8Array,
    maxTokens: number,
    requestId: string,
    route: RouteRequest,
    options: PoolGenerateOptions,
  ): Promise<Generation> {
    const errors: string[] = [];
    // Members tried for this request, in the order last tried, and how their last attempt ended.
    const tried = new Map<string, TriedOutcome>();
    // The attempt limit catches a member that is alive (announcing) but stuck; it must not cut off a long generation.
    const attemptLimit = this.attemptTimeout ?? generationAllowanceMs(maxTokens);
    // Between attempts (none after the last): jittered backoff, never past the deadline.
    const pause = async (attempt: number) => {
      if (attempt >= this.maxAttempts - 1) return;
      const delay = Math.min(
        backoffDelay(attempt, FAILOVER_BACKOFF),
        Math.max(0, options.deadline - this.now()),
      );
      await sleep(delay, options.signal);
    };
    // Sends lost on the way (a reconnect, a lease run out) go again at once and count as no attempt: up to this many.
    let lostResends = 0;
    let waitingSince: number | undefined;
    let sent = 0;
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      options.signal?.throwIfAborted();
      const remaining = options.deadline - this.now();
      if (remaining <= 0) break;
      const ranked = this.policy.rank(route, this.liveMembers());
      const awaited = ranked.length === 0 ? this.announcementAwaited() : undefined;
      if (awaited !== undefined) {
        // Members out of rotation only for a moment (see announcementAwaited): their announcements are on the way
        // (every second). Waited for, within the deadline and two TTLs, rather than spending the attempts in 250 ms;
        // members still unheard after that fail the request, for Temporal to retry.
        if (waitingSince === undefined) {
          waitingSince = this.clock();
          errors.push(`waited for members' announcements (${awaited})`);
        }
        if (this.clock() - waitingSince < 2 * this.ttl) {
          await sleep(Math.min(ANNOUNCEMENT_WAIT_MS, remaining), options.signal);
          attempt--;
          continue;
        }
      }
      // Heard again: a later spell of silence gets its own wait.
      if (ranked.length > 0) waitingSince = undefined;
      if (ranked.length === 0 && this.members.size > 0) {
        // Members are known but none may be sent to (circuits open, stopping): the queue group would reach exactly
        // those members, bypassing their breakers. The pool is unavailable for now; a half-open circuit may free one.
        errors.push(`no member in rotation (${this.outOfRotation()})`);
        await pause(attempt);
        continue;
      }
      const timeout = Math.max(1, Math.min(remaining, attemptLimit));
      const probeHoldMs = timeout + PROBE_HOLD_MARGIN_MS;
      // Prefer members not yet tried for this request; fall back to the queue group when none is known.
      let ticket: BreakerTicket | null = null;
      let memberId =
        ranked.find((m) => {
          if (tried.has(m)) return false;
          ticket = this.members.get(m)?.breaker.tryAcquire(probeHoldMs) ?? null;
          return ticket !== null;
        }) ?? (ranked.length === 0 ? undefined : retryTarget(ranked, tried));
      if (memberId !== undefined && ticket === null) {
        // A member tried before gets the attempt through its breaker too: a half-open one only as its single probe.
        ticket = this.members.get(memberId)?.breaker.tryAcquire(probeHoldMs) ?? null;
        if (ticket === null) memberId = undefined;
      }
      if (memberId === undefined && ranked.length > 0) {
        // Those in rotation refused its size; another known member, out of rotation for now, may take it.
        errors.push(
          ranked.every((m) => tried.get(m) === 'size_refused')
            ? `no member in rotation takes the request's size (${ranked.length} refused it)`
            : `no member in rotation (${ranked.length} tried, their circuits probing)`,
        );
        await pause(attempt);
        continue;
      }
      if (memberId) {
        tried.delete(memberId); // re-inserted at the end: the map's order is the order members were last tried in
        tried.set(memberId, 'failed');
      }
      try {
        options.onAttempt?.(memberId, attempt);
        // Cancelled meanwhile (by the hook, say): nothing is sent.
        options.signal?.throwIfAborted();
      } catch (err) {
        // Nothing was sent: a half-open member's probe goes back rather than held until its attempt would time out.
        if (memberId) this.members.get(memberId)?.breaker.release(ticket);
        throw err;
      }
      const subject = memberId
        ? subjects.member(this.opts.pool, memberId)
        : subjects.generate(this.opts.pool);
      const state = memberId ? this.members.get(memberId) : undefined;
      const unroute = memberId ? this.policy.onRouted?.(memberId, route) : undefined;
      // Full when sent: the request waits in the member's queue behind others (see busyMeanwhile). Its server may
      // queue some short of the member's capacity (no KV blocks free): those count as queued too.
      const fullAtSend =
        state !== undefined && (state.info.queued > 0 || isFull(memberView(memberId!, state)));
      if (state) state.outstanding++;
      const servedAtSend = state?.info.servedRequests;
      let answered = false;
      let failure: unknown;
      // Set by the router's timer or the member's own answer that the attempt's time ran out: busy or broken, which
      // busyMeanwhile tells apart.
      let outOfTime = false;
      try {
        const h = headers();
        injectTraceHeaders(h);
        h.set(ATTEMPT_TIMEOUT_HEADER, String(timeout));
        // Renewed only for attempts sent to a member by name (renewLeases), not through the queue group, and only while
        // this router renews (not once it is closed).
        if (state && this.renewer) {
          h.set(ROUTER_HEADER, this.routerId);
          h.set(ROUTER_LEASE_HEADER, String(this.leaseMs));
        }
        sent++;
        const request = this.opts.nc.request(subject, payload, { timeout, headers: h });
        let pending: PendingAttempt | undefined;
        const gone = new Promise<never>((_, reject) => {
          if (state) pending = { member: state, lose: reject };
        });
        if (pending) this.pending.set(requestId, pending);
        const { signal } = options;
        let onAbort: (() => void) | undefined;
        const aborted = new Promise<never>((_, reject) => {
          onAbort = () => reject(signal?.reason);
          signal?.addEventListener('abort', onAbort, { once: true });
        });
        const msg = await Promise.race([request, gone, aborted]).finally(() => {
          if (pending && this.pending.get(requestId) === pending) this.pending.delete(requestId);
          if (onAbort) signal?.removeEventListener('abort', onAbort);
          request.catch(() => {});
          aborted.catch(() => {});
          gone.catch(() => {});
        });
        answered = true;
        let reply: GenerateReplyWire;
        try {
          reply = decodeWire(GenerateReplyWire, msg.data, `reply from ${memberId ?? 'pool'}`);
        } catch (err) {
          // An undecodable reply is that member's failure, not ours: try the next one.
          throw new MemberFailure(String((err as Error).message), true);
        }
        if (reply.ok) {
          state?.breaker.onSuccess();
          const g = reply.generation as Generation;
          // A process that has since been replaced under its id (departing) served it: the new one does not hold it.
          if (memberId && !replacedSince(state, this.members.get(memberId)))
            this.noteServed(memberId, route, g, state?.info.instance);
          return g;
        }
        const { code, message, retryable } = reply.error;
        if (code === 'bad_request') throw new BadRequestError(`pool member rejected the request: ${message}`);
        if (code === 'context_length')
          throw new ContextLengthError(`${memberId ?? 'pool member'}'s server: ${message}`);
        // This router was not heard from for the lease (stalled, or its renewals lost): nothing served, nobody's fault.
        if (code === 'lease_expired')
          throw new LostAttempt(`${memberId ?? 'pool member'} stopped the request: ${message}`);
        if (code === 'backend_error' && !retryable)
          throw new BackendRejectedError(
            `${memberId ?? 'pool member'}'s server rejected the request: ${message}`,
          );
        // The member's deadline is this attempt's (the header): its answer that it ran out is this attempt timing
        // out, and can beat the router's own timer by a millisecond. Fail over as on a timeout, counted against the
        // member as one is: unless the attempt ended at the request's own deadline.
        if (code === 'deadline_exceeded') {
          outOfTime = true;
          throw new MemberFailure(`${code}: ${message}`, true, timeout >= attemptLimit);
        }
        // A full queue is backpressure, a stopping member is going anyway, an unhealthy one has said so in its
        // announcements (ranked out already), and a size refused is the request's: fail over without counting any of
        // them against the member, whose breaker would otherwise keep it nearly idle for minutes once it is back.
        if (code === 'payload_too_large') throw new SizeRefused(`${memberId ?? 'pool member'}: ${message}`);
        const turnedAway = NOT_MEMBER_FAULTS.has(code);
        throw new MemberFailure(
          `${code}: ${message}`,
          retryable,
          !turnedAway,
          turnedAway && (code === 'overloaded' ? 'backpressure' : 'turned_away'),
        );
      } catch (err) {
        failure = err;
        if (err instanceof TimeoutError) outOfTime = true;
      } finally {
        if (state) state.outstanding--;
      }
      // Out of time on a member that was full when the request was sent and finished other requests meanwhile (its
      // announced count rose): busy, not broken. The request waited in its queue and started too late to end within
      // the attempt; a breaker opened on that would take a saturated but healthy server out of rotation when the pool
      // needs it most. One with room that served others while this request ran out of time stalled it: counted.
      const busyMeanwhile =
        outOfTime &&
        fullAtSend &&
        servedAtSend !== undefined &&
        (state?.info.servedRequests ?? 0) > servedAtSend;
      // Abandoned without an answer (timed out, member gone, caller cancelled): the member may still be working.
      if (!answered) this.cancelOn(memberId, requestId);
      const callerGaveUp = options.signal?.aborted === true;
      const refused =
        failure instanceof BadRequestError ||
        failure instanceof BackendRejectedError ||
        failure instanceof ContextLengthError;
      const reason = describe(failure);
      const noResponders = failure instanceof RequestError && failure.isNoResponders();
      // Just after this router's connection came back, a member may not have subscribed again yet: its subject's
      // silence says nothing of it, and dropping it would fail over everything it is still working on.
      const reconnecting = noResponders && this.dropsHeld(this.clock());
      // Refused by this router's own connection (closed, draining), never sent: no member's doing, and no other
      // member would fare better.
      const unsent = failure instanceof ClosedConnectionError || failure instanceof DrainingConnectionError;
      // No responders is not counted either: it takes the member out of rotation until its next announcement, and a
      // breaker opened meanwhile would keep it out for its cooldown after that.
      if (
        !callerGaveUp &&
        !refused &&
        !noResponders &&
        !unsent &&
        !busyMeanwhile &&
        countsAgainstMember(failure, timeout < attemptLimit)
      ) {
        state?.breaker.onFailure(ticket);
        if (state) state.lastFailure = reason;
      } else state?.breaker.release(ticket);
      if (callerGaveUp) throw options.signal!.reason;
      if (refused) throw failure;
      if (unsent)
        throw new PoolUnavailableError(
          `pool '${this.opts.pool}': this router's NATS connection refused the request (${reason})`,
          { cause: failure },
        );
      errors.push(`${memberId ?? 'queue-group'}: ${reason}`);
      // Backpressure: turned away unserved (overloaded, stopping). No responders: never received. Either way the
      // member does not hold the prompt.
      const lost = failure instanceof LostAttempt;
      const unserved = failure instanceof MemberFailure ? failure.unserved : false;
      const backpressure = unserved !== false;
      if (backpressure || noResponders) unroute?.();
      if (memberId && failure instanceof SizeRefused) {
        tried.set(memberId, 'size_refused');
        // Too large for every member's server: as a prompt over the context length is, the caller's to cut.
        if (this.everyMemberRefused(tried))
          throw new ContextLengthError(
            `pool '${this.opts.pool}': every member's server refused the request's size (HTTP 413): ${collapseRepeats(errors).join('; ')}`,
          );
      } else if (memberId && backpressure) tried.set(memberId, unserved);
      // Lost on the way: sent again at once as if it had never been, so usually to the same member, which may hold
      // the prompt.
      if (memberId && lost) tried.delete(memberId);
      if (lost && lostResends < MAX_LOST_RESENDS) {
        lostResends++;
        attempt--;
        continue;
      }
      // Only NATS saying nobody listens on the member's subject means it may be gone (a 503 a member relays from its
      // server is that member failing one request, which the breaker already counts): out of rotation until it
      // announces itself again. What it holds is not failed over: a member whose own connection is being redone
      // (a NATS node restarting) has no subscriptions for a moment but goes on generating, and answers once back; a
      // killed one is dropped when its announcements stop (memberTtlMs), and what it held fails over then. A member
      // that announced it is leaving stops listening once its leave is out, and finishes what it holds.
      const m = memberId === undefined ? undefined : this.members.get(memberId);
      if (noResponders && !reconnecting && m && m.leavingSince === undefined) m.unreachable = true;
      if (failure instanceof MemberFailure && !failure.retryable) break;
      await pause(attempt);
    }
    const deadlinePassed = options.deadline - this.now() <= 0;
    throw new PoolUnavailableError(
      `pool '${this.opts.pool}' is unavailable after ${sent} request(s) sent` +
        (deadlinePassed ? ", when the request's deadline passed" : '') +
        `: ${collapseRepeats(errors).join('; ') || 'no member was tried'}`,
    );
  }

  /**
   * Why members out of rotation may be back within a moment, so a request finding none in rotation waits for their
   * announcements; undefined when none may. Either this router's connection is in doubt or just came back (members
   * silent meanwhile), or NATS found nobody listening on a member that is otherwise fine: a member whose own
   * connection is being redone (its NATS node restarting) has no subscriptions for a moment and announces itself
   * once back, while a killed one stops announcing and is dropped at its TTL.
   */
  private announcementAwaited(): string | undefined {
    if (this.silentWhileHeld()) return "this router's connection was in doubt or reconnecting";
    for (const m of this.members.values())
      if (
        m.unreachable &&
        m.leavingSince === undefined &&
        m.info.healthy !== false &&
        m.breaker.isAvailable()
      )
        return 'no responders on their subjects, as while their connections are redone';
    return undefined;
  }

  /** Whether a member is out of rotation only for being silent while this router holds off dropping members. */
  private silentWhileHeld(): boolean {
    const now = this.clock();
    if (!this.dropsHeld(now) && this.connectionCheck === undefined) return false;
    for (const m of this.members.values())
      if (m.leavingSince === undefined && now - m.lastSeen > this.ttl) return true;
    return false;
  }

  /** Whether every member known (and not leaving) has refused the request's size, whether in rotation now or not. */
  private everyMemberRefused(tried: Map<string, TriedOutcome>): boolean {
    const known = [...this.members].filter(([, m]) => m.leavingSince === undefined).map(([id]) => id);
    return known.length > 0 && known.every((id) => tried.get(id) === 'size_refused');
  }

  /**
   * Why the known members are out of rotation: a circuit opened by failures would otherwise hide them (the server
   * unreachable, its model missing) behind "circuit open" for as long as it stays open.
   */
  private outOfRotation(): string {
    const now = this.clock();
    const named = [...this.members].slice(0, MEMBERS_NAMED).map(([id, m]) => {
      if (m.leavingSince !== undefined) return `${id}: stopping`;
      if (now - m.lastSeen > this.ttl) return `${id}: not heard from for ${Math.round(now - m.lastSeen)} ms`;
      if (m.info.healthy === false) return `${id}: its server is failing health checks`;
      if (m.unreachable) return `${id}: no responders on its subject`;
      return `${id}: circuit ${m.breaker.state.replace('_', '-')}${m.lastFailure ? ` after ${m.lastFailure}` : ''}`;
    });
    const more = this.members.size - named.length;
    return `${this.members.size} known; ${named.join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
  }

  /**
   * Tells a member (whichever took it, for a request sent through the queue group) to stop work nobody waits for any
   * more; lost or late, the attempt's own timeout still ends it.
   */
  private cancelOn(memberId: string | undefined, id: string): void {
    try {
      const cancel: CancelWire = { v: WIRE_VERSION, id };
      const subject = memberId
        ? subjects.cancel(this.opts.pool, memberId)
        : subjects.cancelAny(this.opts.pool);
      this.opts.nc.publish(subject, encodeWire(cancel));
    } catch {
      // best effort
    }
  }

  /**
   * Routing hints from a served request: the policy's own bookkeeping, and the placement for the other routers. A
   * hint that cannot be sent (connection draining at shutdown) must not turn the generation in hand into a failure.
   */
  private noteServed(
    memberId: string,
    route: RouteRequest,
    g: Generation,
    instance: string | undefined,
  ): void {
    try {
      this.policy.onServed?.(memberId, route, g.usage.promptTokens);
      if (!this.sharePlacements || route.prefixKeys.length === 0) return;
      const event: PlacementWire = {
        v: WIRE_VERSION,
        router: this.routerId,
        member: memberId,
        keys: packPrefixKeys(route.prefixKeys.slice(0, MAX_PLACEMENT_KEYS)),
        ...(instance !== undefined ? { instance } : {}),
      };
      this.opts.nc.publish(subjects.placed(this.opts.pool), encodeWire(event));
    } catch {
      // only a hint
    }
  }

  private onPlacement(data: Uint8Array): void {
    const event = tryDecodeWire(PlacementWire, data, 'placement event');
    // Malformed events only lose a hint; own ones were recorded when sent; ones for members out of rotation would
    // only hold memory; ones served by a process since replaced under the id (the sender had not heard of the
    // replacement yet) would tell of prefixes the new process's cold cache does not hold.
    const member = event && this.members.get(event.member);
    if (!event || event.router === this.routerId || !member || restarted(member.info, event)) return;
    this.policy.onPeerServed?.(event.member, unpackPrefixKeys(event.keys));
  }

  private onAnnounce(data: Uint8Array): void {
    const info = tryDecodeWire(MemberAnnouncementWire, data, 'member announcement');
    // A malformed announcement cannot put a member into rotation.
    if (!info || info.pool !== this.opts.pool) return;
    if (info.leaving) {
      this.retire(info);
      return;
    }
    let existing = this.members.get(info.id);
    if (existing && restarted(existing.info, info)) {
      // A new process under the same id: its cache is cold and it never got what the old one held. What the old
      // one held is lost if it crashed (fail it over now, not at the attempt timeout); if it left gracefully it is
      // finishing those requests, which keep waiting on their own.
      if (existing.leavingSince === undefined) this.dropMember(info.id, `member ${info.id} restarted`);
      else {
        this.members.delete(info.id);
        this.policy.onMemberGone(info.id);
        this.departing.add(existing);
      }
      existing = undefined;
    }
    if (existing) {
      // Its connection came back: what it was sent or answered meanwhile may be lost.
      if ((info.reconnects ?? 0) > (existing.info.reconnects ?? 0)) void this.recheckPending(existing);
      existing.info = info;
      existing.lastSeen = this.clock();
      existing.unreachable = false;
      existing.leavingSince = undefined; // back: restarted by a member that does not name its process
    } else {
      this.members.set(info.id, {
        info,
        lastSeen: this.clock(),
        outstanding: 0,
        breaker: new CircuitBreaker({ now: this.clock }),
      });
    }
  }

  private onLeave(data: Uint8Array): void {
    const info = tryDecodeWire(MemberAnnouncementWire, data, 'leave');
    if (info) this.retire(info);
  }

  /** A stopping member: no new work; what it is finishing is awaited (leaveGraceMs), then it is dropped. */
  private retire(leave: MemberAnnouncementWire): void {
    const { id } = leave;
    // Said again while it finishes: heard from, so alive (the process in rotation, or one it replaced).
    for (const m of [this.members.get(id), ...this.departing])
      if (m?.info.id === id && m.leavingSince !== undefined && !restarted(m.info, leave)) {
        m.info = leave;
        m.lastSeen = this.clock();
      }
    const m = this.members.get(id);
    // A leave from an earlier process under this id (one that overlapped its replacement) says nothing of the
    // process in rotation now.
    if (!m || m.leavingSince !== undefined || restarted(m.info, leave)) return;
    m.info = leave;
    m.leavingSince = this.clock();
    m.lastSeen = this.clock();
    if (m.outstanding === 0) this.dropMember(id, `member ${id} left the pool`);
  }

  private dropMember(id: string, reason: string): void {
    const m = this.members.get(id);
    if (!m) return;
    this.members.delete(id);
    this.policy.onMemberGone(id);
    this.failOver(m, reason);
  }

  /** Fails the requests in flight on a member that is gone, so each tries another member now. */
  private failOver(m: MemberState, reason: string): void {
    for (const p of this.pending.values()) if (p.member === m) p.lose(new MemberFailure(reason, true));
  }
}

class MemberFailure extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    /** Whether it says something about the member's health (an overloaded member is healthy, just busy). */
    readonly memberFault = retryable,
    /**
     * Turned away before the member read the prompt, so it does not hold it: `backpressure` (overloaded: it takes the
     * request once a slot frees) or `turned_away` (stopping, unhealthy, too large: it will not). A member that ran out of time
     * on the request has read it, and may well hold it.
     */
    readonly unserved: false | Extract<TriedOutcome, 'backpressure' | 'turned_away'> = false,
  ) {
    super(message);
  }
}

/** A request or its reply lost while a connection was down (see recheckPending): nobody's fault, nothing served. */
class LostAttempt extends MemberFailure {
  constructor(message: string) {
    super(message, true, false);
  }
}

/**
 * A member's `payload_too_large` (see WireErrorCode): failed over, not counted against it, not asked again for the
 * request; refused by every member in rotation, the request fails as one over the context length does.
 */
class SizeRefused extends MemberFailure {
  constructor(message: string) {
    super(message, true, false, 'turned_away');
  }
}

/** A member as the policies see it. */
function memberView(id: string, m: MemberState): MemberView {
  return {
    id,
    capacity: m.info.capacity,
    // What this router sent since may not be in the member's last report yet; what the member queues is part of
    // both, so the total is the larger of the two, not their sum.
    inFlight: Math.max(m.info.inFlight, m.outstanding - m.info.queued),
    queued: m.info.queued,
    cacheCapacityTokens: m.info.cacheCapacityTokens,
    cacheUsedTokens: m.info.cacheUsedTokens,
    healthy: m.info.healthy !== false && m.breaker.isAvailable() && !m.unreachable,
  };
}

/**
 * Whether the process a request was sent to is no longer the one the router knows under its id: dropped and not
 * back, or replaced (one dropped for silence and heard again from the same process still holds what it served).
 */
function replacedSince(sentTo: MemberState | undefined, now: MemberState | undefined): boolean {
  if (!sentTo || !now) return true;
  return now !== sentTo && restarted(sentTo.info, now.info);
}

/**
 * Both messages (announcements, or a placement against the announcement) name their process and the processes differ
 * (members and routers that predate the field never match).
 */
function restarted(before: { instance?: string }, now: { instance?: string }): boolean {
  return before.instance !== undefined && now.instance !== undefined && before.instance !== now.instance;
}

/**
 * How a member's last attempt at a request ended: `backpressure`, it answered overloaded; `turned_away`, it said it
 * would not serve it (stopping, its server unhealthy, no blob store for a prompt sent by reference); `size_refused`,
 * its server refused the request's size (HTTP 413).
 */
export type TriedOutcome = 'failed' | 'backpressure' | 'turned_away' | 'size_refused';

/**
 * Where an attempt goes once every ranked member has been tried: one that only said it was busy, else the one tried
 * longest ago, not the policy's first choice, which is often the member that just hung for a whole attempt; one that
 * turned the request away only when no other is left (it would answer the same while another may serve). Never one
 * that refused the request's size, which would refuse it again: undefined when only those are left.
 */
export function retryTarget(ranked: string[], tried: Map<string, TriedOutcome>): string | undefined {
  const candidates = ranked.filter((m) => tried.get(m) !== 'size_refused');
  const busy = candidates.find((m) => tried.get(m) === 'backpressure');
  if (busy) return busy;
  const willing = candidates.filter((m) => tried.get(m) !== 'turned_away');
  for (const pick of [willing, candidates]) {
    for (const m of tried.keys()) if (pick.includes(m)) return m;
    if (pick[0] !== undefined) return pick[0];
  }
  return undefined;
}

/**
 * Whether a failed attempt counts against the member's circuit breaker. Not when the request's own deadline ran out
 * (a reply marked non-retryable, or a timeout that was the deadline's rather than the attempt limit's), and not
 * for backpressure.
 */
function countsAgainstMember(err: unknown, timeoutWasDeadline: boolean): boolean {
  if (err instanceof MemberFailure) return err.memberFault;
  if (err instanceof TimeoutError) return !timeoutWasDeadline;
  return true;
}

/** Attempts that failed alike in a row, said once with their count. */
function collapseRepeats(errors: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < errors.length; ) {
    let j = i + 1;
    while (j < errors.length && errors[j] === errors[i]) j++;
    out.push(j - i > 1 ? `${errors[i]} (${j - i} times)` : errors[i]!);
    i = j;
  }
  return out;
}

function describe(err: unknown): string {
  const e = err as Error & { code?: string; cause?: unknown };
  const cause = e?.cause ? ` (${(e.cause as Error).message ?? e.cause})` : '';
  // A member's own failures name their code or cause already; "Error: " before them says nothing.
  if (err instanceof MemberFailure) return `${e.message}${cause}`;
  return `${e?.name ?? 'Error'}: ${e?.message ?? String(err)}${cause}`;
}
