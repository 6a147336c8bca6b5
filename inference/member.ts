// A pool member: the small process beside one inference server. It serves its pool's queue-group subject
// and its own routed subject, turns top-k logprobs into per-token entropies and region scores where the
// logprobs are (so replies stay small), and announces its load so routers can balance against it.
import { randomUUID } from 'node:crypto';
import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import { context, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { clipText, wellFormed } from '../agent/clip.js';
import { regionScores } from '../agent/regions.js';
import type { ChatMessage } from '../agent/types.js';
import { tokenEntropies } from '../agent/uncertainty.js';
import { BlobNotFoundError, type BlobStore } from '../common/blob-store.js';
import { ROUTER_LEASE_MS } from '../common/config.js';
import { formatZodError } from '../common/errors.js';
import { watchStatus } from '../common/nats.js';
import { extractTraceContext, tracer } from '../common/telemetry.js';
import { BackendHttpError, BackendProtocolError } from './backends/http.js';
import { type HealthCheckOptions, healthChecksOn, ServerHealth } from './health.js';
import { monotonicNow, timerDeadline, untilAborted } from './retry.js';
import { BackendDeadlineError, ContextLengthError, type Generation, type InferenceBackend } from './types.js';
import {
  ATTEMPT_TIMEOUT_HEADER,
  assertSubjectToken,
  CancelWire,
  ChatMessagesWire,
  decodeWire,
  encodeWire,
  type GenerateReplyWire,
  GenerateRequestWire,
  type HeldWire,
  HoldsWire,
  LeaseWire,
  MAX_DRAIN_MS,
  MemberAnnouncementWire,
  ROUTER_HEADER,
  ROUTER_LEASE_HEADER,
  RouterId,
  subjects,
  tryDecodeWire,
  WIRE_VERSION,
  WireDecodeError,
  type WireErrorCode,
} from './wire.js';

export interface PoolMemberOptions {
  nc: NatsConnection;
  pool: string;
  backend: InferenceBackend;
  id?: string;
  model?: string;
  /** Requests run at once; beyond it requests wait in the member's queue. */
  capacity?: number;
  /** Requests allowed to wait; beyond it the member answers `overloaded` so the router tries another. */
  maxQueue?: number;
  /** Heartbeat: the member announces itself at least this often (default 1000 ms). */
  announceIntervalMs?: number;
  /**
   * A change of load is announced within this long (default 100 ms), not at the next heartbeat: routers balance on
   * these figures, and with several routers a second-old count sends their overflow after load that has moved.
   */
  minAnnounceIntervalMs?: number;
  /** Resolves `messagesRef` requests (prompts too large for one NATS message). */
  blobs?: BlobStore;
  /**
   * Checks of the server's health, for backends that have one (see HealthCheckOptions). Out of rotation the member
   * refuses work, and fails what it holds, with the retryable code `unhealthy`, so routers send it elsewhere now
   * instead of at the attempt limit (minutes, for a long generation).
   */
  healthCheck?: HealthCheckOptions;
  /** Told when the member leaves rotation for failed health checks, and when it comes back (for its operator's log). */
  onHealthChange?: (healthy: boolean, why: string) => void;
  /**
   * Told, once per process, when another live process announces this member's id in its pool: a replacement during
   * a blue/green deploy, or two members given one id by mistake (for its operator's log).
   */
  onIdShared?: (otherInstance: string) => void;
}

/** This member's server failed its health checks: what it held, and what comes while it fails, goes elsewhere. */
export class ServerUnhealthyError extends Error {
  override readonly name = 'ServerUnhealthyError';
  readonly retryable = true;
}

/**
 * A request by reference (too large to send inline) reached a member without a blob store: another member takes it,
 * and this one, fine for every other request, is not counted as failing.
 */
export class NoBlobStoreError extends Error {
  override readonly name = 'NoBlobStoreError';
  readonly retryable = true;
}

/** A request a stopping member gives up: still queued when it stopped, or still running when its wait ran out. */
export class MemberStoppingError extends Error {
  override readonly name = 'MemberStoppingError';
  readonly retryable = true;
}

/**
 * How a failed request is reported to the router. Backend errors say themselves whether another member could do
 * better (`retryable`: an HTTP 5xx or an unreachable server yes, an HTTP 400 or a malformed answer no); an error
 * that does not say (a blob-store hiccup, say) is taken as this member's trouble and left to the router to retry.
 */
export function replyError(err: unknown): { code: WireErrorCode; message: string; retryable: boolean } {
  if (err instanceof WireDecodeError) return { code: 'bad_request', message: err.message, retryable: false };
  const message = (err as Error)?.message ?? String(err);
  // Busy, not broken: the router tries another member without counting it against this one. SGLang answers a full
  // request queue (--max-queued-requests) with 503 in some versions: a breaker opened on it would take a healthy
  // server out of rotation when the pool needs it most.
  if (
    err instanceof QueueWaitError ||
    (err instanceof BackendHttpError && busyStatus(err.status, err.bodyExcerpt)) ||
    // A gateway relaying its upstream's rate limit in a 200: busy the same way.
    (err instanceof BackendProtocolError &&
      err.relayedStatus !== undefined &&
      busyStatus(err.relayedStatus, err.message))
  )
    return { code: 'overloaded', message, retryable: true };
  if (err instanceof BackendDeadlineError)
    return { code: 'deadline_exceeded', message, retryable: err.retryable };
  if (err instanceof BackendHttpError && err.status === 413)
    return { code: 'payload_too_large', message, retryable: true };
  if (err instanceof ContextLengthError) return { code: 'context_length', message, retryable: false };
  // Not 'payload_too_large': with every member refusing it, the router would take the prompt for too long for the
  // model. Not a fault either: the member serves every request sent inline. Another member serves this one.
  if (err instanceof ServerUnhealthyError || err instanceof NoBlobStoreError)
    return { code: 'unhealthy', message, retryable: true };
  if (err instanceof MemberStoppingError) return { code: 'shutting_down', message, retryable: true };
  if (err instanceof RouterLeaseExpiredError) return { code: 'lease_expired', message, retryable: true };
  const flag = (err as { retryable?: unknown } | null | undefined)?.retryable;
  return { code: 'backend_error', message, retryable: typeof flag === 'boolean' ? flag : true };
}

/** A rate limit (429), or a 503 whose body says the server's queue is full. */
function busyStatus(status: number, body: string): boolean {
  return status === 429 || (status === 503 && /queue is full|too many requests|overloaded/i.test(body));
}

/** A reply too large for one NATS message; not retryable, as every member would generate it again to the same end. */
export class ReplyTooLargeError extends Error {
  override readonly name = 'ReplyTooLargeError';
  readonly retryable = false;
}

/** The longest error message a reply carries (a validation error can name thousands of fields). */
const MAX_ERROR_CHARS = 4096;

/** How long a stopping member gives the requests it gave up to send their replies. */
const STOPPED_REPLIES_MS = 1000;

/** How long a stopping member waits for the server to confirm its subscriptions drained. */
const SUBSCRIPTION_DRAIN_MS = 2000;

/** How long a stopping member waits for its last messages (replies, the leave) to be flushed. */
const FINAL_FLUSH_MS = 2000;

/**
 * A request still waiting in this member's queue when its attempt is nearly over. Answered as `overloaded` a little
 * before the router's own timeout, so the router hears "busy" and tries elsewhere; a timeout would count against
 * this member's circuit breaker, and breakers opening on busy members take the capacity a saturated pool needs.
 */
export class QueueWaitError extends Error {
  override readonly name = 'QueueWaitError';
  readonly retryable = true;
  constructor(memberId: string, waitedMs: number) {
    super(`member ${memberId} could not start the request within its attempt (queued ${waitedMs} ms)`);
  }
}

/**
 * How long before the attempt's end a request still queued is answered `overloaded`: 10% of the attempt, at least
 * 500 ms (two NATS hops and a busy event loop must fit before the router's own timeout) and at most 5 s, never more
 * than a quarter of a short attempt.
 */
export function queueGiveUpMs(attemptMs: number): number {
  return Math.min(attemptMs / 4, Math.max(500, Math.min(5000, attemptMs / 10)));
}

/** The router that sent the request gave up on it. */
export class RequestCancelledError extends Error {
  override readonly name = 'RequestCancelledError';
  readonly retryable = false;
  constructor(readonly requestId: string) {
    super(`request ${requestId} was cancelled by its router`);
  }
}

/**
 * When this member must give up on a request: the attempt's duration (header) from receipt. The router sends the
 * lesser of its attempt limit and the time left before the request's deadline, measured on its own clock, so a member
 * whose clock runs ahead or behind still stops at the right moment. The absolute deadline in the body is the fallback
 * for requests without the header.
 */
export function attemptDeadline(
  deadline: number,
  timeoutHeader: string | undefined,
  now = Date.now(),
): number {
  const ms = Number(timeoutHeader);
  return timerDeadline(timeoutHeader && Number.isFinite(ms) && ms > 0 ? now + ms : deadline, now);
}

/** The router that waits for a request, and how long it may go unheard before the member stops the work. */
export interface RouterLease {
  router: string;
  ms: number;
}

/** How often held requests are checked against their routers' leases. */
const LEASE_CHECK_MS = 250;

/**
 * The lease a request's headers ask for (ROUTER_HEADER, ROUTER_LEASE_HEADER), kept within ROUTER_LEASE_MS; undefined when it
 * asks for none or the headers are malformed (the request is served without a lease, never refused over one).
 */
export function routerLease(router: string | undefined, ms: string | undefined): RouterLease | undefined {
  const id = RouterId.safeParse(router);
  const n = Number(ms);
  if (!id.success || !ms || !Number.isFinite(n) || n <= 0) return undefined;
  return { router: id.data, ms: Math.min(ROUTER_LEASE_MS.max, Math.max(ROUTER_LEASE_MS.min, Math.round(n))) };
}

/** The router that sent the request went silent for its lease: killed, or cut off. Its work is stopped. */
export class RouterLeaseExpiredError extends Error {
  override readonly name = 'RouterLeaseExpiredError';
  readonly retryable = true;
  constructor(requestId: string, router: string, silentMs: number) {
    super(
      `request ${requestId} stopped: its router ${router} was not heard from for ${silentMs} ms (its lease)`,
    );
  }
}

/**
 * Whether a router last heard at `heardAt` has let its lease of `ms` lapse, judged at a check whose previous one ran
 * at `lastCheckAt` (all on the monotonic clock). Judged by the previous check, not by now: messages that came while
 * this process was paused (a GC pause, a long encode) are read only after the timer that runs first when it resumes,
 * so a router is silent for its lease only if it already was at the previous check, by which time everything it sent
 * before had been read. A lease so ends at most one check late, and no pause of the member's ends a live one.
 */
export function leaseLapsed(heardAt: number, lastCheckAt: number, ms: number): boolean {
  return lastCheckAt - heardAt > ms;
}

/** A request held under its router's lease. */
interface LeasedRequest {
  id: string;
  ctl: AbortController;
  lease: RouterLease;
  since: number;
}

export class PoolMember {
  readonly id: string;
  /** Work and discovery subscriptions, which end when the member stops; cancels are taken until it has drained. */
  private readonly subs: Subscription[] = [];
  private cancelSubs: Subscription[] = [];
  private timer?: NodeJS.Timeout;
  /** A load-change announcement waiting for minAnnounceIntervalMs to pass since the last one. */
  private pendingAnnounce?: NodeJS.Timeout;
  private lastAnnounceAt = 0;
  private inFlight = 0;
  private waiting: Array<() => void> = [];
  /** Requests taken (queued or running) by id, to abort on a router's cancel. */
  private readonly active = new Map<string, Set<AbortController>>();
  private served = 0;
  /** Times this member's connection came back (see MemberAnnouncementWire.reconnects). */
  private reconnects = 0;
  /** When each router was last heard from (a lease renewal or a request), for the requests held under its lease. */
  private readonly routersHeard = new Map<string, number>();
  private readonly leased = new Set<LeasedRequest>();
  private leaseTimer?: NodeJS.Timeout;
  private lastLeaseCheckAt = 0;
  /** Silence before this says nothing of any router: this member's own connection was down until then. */
  private heardAllAt = 0;
  private disconnected = false;
  /** Its server's health checks, where it has any. */
  private readonly health?: ServerHealth;
  private stopWatching?: () => void;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  /**
   * Each request's way out of the queue while it waits for a batch slot: aborted when the member stops (see stop).
   * Per request, not one signal for all: a long-lived signal in AbortSignal.any keeps an entry for every request.
   */
  private readonly queuedCtls = new Set<AbortController>();
  private readonly instance = randomUUID();
  /** Other processes heard announcing this member's id (see onIdShared). */
  private readonly sharedWith = new Set<string>();
  private readonly capacity: number;
  private readonly maxQueue: number;
  private readonly model: string;

  constructor(private readonly opts: PoolMemberOptions) {
    this.id = opts.id ?? `m-${randomUUID().slice(0, 8)}`;
    this.capacity = opts.capacity ?? opts.backend.load?.().maxBatch ?? 64;
    // Routers drop announcements that break these, so a member that did would serve and never be sent work.
    assertSubjectToken('pool member id', this.id);
    assertSubjectToken('pool name', opts.pool);
    if (!(Number.isInteger(this.capacity) && this.capacity >= 1))
      throw new Error(`pool member capacity must be a whole number of at least 1, got ${this.capacity}`);
    this.maxQueue = opts.maxQueue ?? this.capacity * 4;
    // NaN would leave the queue unbounded (no length is >= NaN), 0 ms would announce without pause.
    if (!(Number.isInteger(this.maxQueue) && this.maxQueue >= 0))
      throw new Error(`pool member maxQueue must be a whole number of at least 0, got ${this.maxQueue}`);
    for (const key of ['announceIntervalMs', 'minAnnounceIntervalMs'] as const) {
      const ms = opts[key];
      if (ms !== undefined && !(Number.isFinite(ms) && ms >= 10))
        throw new Error(`pool member ${key} must be a number of milliseconds of at least 10, got ${ms}`);
    }
    this.model = opts.model ?? opts.backend.kind;
    const { backend } = opts;
    if (backend.health && healthChecksOn(opts.healthCheck))
      this.health = new ServerHealth(
        this.id,
        (signal) => backend.health!(signal),
        opts.healthCheck ?? {},
        (healthy, why) => this.onHealthChange(healthy, why),
      );
  }

  get stats() {
    return { id: this.id, inFlight: this.inFlight, queued: this.waiting.length, served: this.served };
  }

  async start(): Promise<void> {
    const { nc, pool } = this.opts;
    const handler = (err: Error | null, msg: Msg) => {
      if (!err) void this.handle(msg);
    };
    this.subs.push(
      nc.subscribe(subjects.generate(pool), { queue: subjects.queueGroup(pool), callback: handler }),
    );
    // Not a queue group: a process under this id whose connection died unnoticed (a node lost) would stay in the
    // group for minutes and take half the id's requests into nothing. Two live ones both run each request; the router
    // takes the first answer.
    this.subs.push(nc.subscribe(subjects.member(pool, this.id), { callback: handler }));
    // Another live process under this id is told to the operator: both run every request sent to the id, and routers,
    // seeing the id's process change with each announcement, fail its work over again and again.
    this.subs.push(
      nc.subscribe(subjects.announce(pool), {
        callback: (err, msg) => {
          const a = err ? undefined : tryDecodeWire(MemberAnnouncementWire, msg.data, 'announcement');
          if (!a || a.id !== this.id || a.instance === this.instance || a.leaving || this.stopping) return;
          const other = a.instance ?? 'unnamed';
          if (this.sharedWith.has(other)) return;
          this.sharedWith.add(other);
          try {
            this.opts.onIdShared?.(other);
          } catch {
            // An observer's failure must not stop the member hearing its pool.
          }
        },
      }),
    );
    const onCancel = (err: Error | null, msg: Msg) => {
      if (!err) this.onCancel(msg.data);
    };
    this.cancelSubs = [
      nc.subscribe(subjects.cancel(pool, this.id), { callback: onCancel }),
      nc.subscribe(subjects.cancelAny(pool), { callback: onCancel }),
      nc.subscribe(subjects.lease(pool, this.id), {
        callback: (err, msg) => {
          const lease = err ? undefined : tryDecodeWire(LeaseWire, msg.data, 'lease');
          if (lease) this.routersHeard.set(lease.router, monotonicNow());
        },
      }),
      // Answered while draining too: what a stopping member finishes is still worth waiting for.
      nc.subscribe(subjects.holds(pool, this.id), {
        callback: (err, msg) => {
          if (!err) this.onHolds(msg);
        },
      }),
    ];
    this.subs.push(
      nc.subscribe(subjects.discover(pool), {
        callback: (err, msg) => {
          // A stopping member is not offered to a router asking who serves the pool (its drain still delivers).
          if (err || this.stopping) return;
          // A throw here would end the connection's reader: the member would stop hearing requests.
          try {
            msg.respond(encodeWire(this.announcement()));
          } catch {
            // The router asking is gone; its next discovery or the heartbeat finds this member.
          }
        },
      }),
    );
    await nc.flush();
    if (this.stopping) return; // stopped while starting: no heartbeat to leak
    // Told at once: routers ask what this member still holds of their requests, and fail over the rest.
    this.stopWatching = watchStatus(nc, (type) => {
      if (type === 'disconnect') this.disconnected = true;
      if (type !== 'reconnect') return;
      // Renewals sent while the connection was down are lost: every router gets its lease again from now.
      this.disconnected = false;
      this.heardAllAt = monotonicNow();
      this.reconnects++;
      this.announce();
    });
    this.lastLeaseCheckAt = monotonicNow();
    this.leaseTimer = setInterval(() => this.checkLeases(), LEASE_CHECK_MS);
    this.health?.start();
    this.announce();
    this.timer = setInterval(() => this.announce(), this.opts.announceIntervalMs ?? 1000);
  }

  private onHealthChange(healthy: boolean, why: string): void {
    this.announce();
    if (!healthy) {
      const reason = new ServerUnhealthyError(why);
      for (const ctls of this.active.values()) for (const ctl of ctls) ctl.abort(reason);
    }
    try {
      this.opts.onHealthChange?.(healthy, why);
    } catch {
      // An observer's failure must not stop the checks.
    }
  }

  /**
   * Stops taking work, tells routers, and waits (bounded) for requests in flight. A second call (SIGTERM, then
   * SIGINT) waits for the first: returning at once, its caller would close the backend and the connection under the
   * requests the first still waits for.
   */
  stop(timeoutMs = 10_000): Promise<void> {
    this.stopped ??= this.stopNow(timeoutMs);
    return this.stopped;
  }

  private async stopNow(timeoutMs: number): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    this.health?.stop();
    clearTimeout(this.pendingAnnounce);
    // The leave goes out before the subscriptions end, so a router reads it before any "no responders" for this
    // member's subject and waits for what it has here instead of failing it over. Cancels are still taken while the
    // requests in hand finish: a router that gives up on one frees its slot at once.
    // Longer waits than the wire takes are told as its limit.
    const drainMs = Math.min(Math.round(timeoutMs), MAX_DRAIN_MS);
    const sayLeaving = () => {
      try {
        this.opts.nc.publish(subjects.leave(this.opts.pool), encodeWire(this.announcement({ drainMs })));
      } catch {
        // The connection is closed or draining: routers drop this member by its TTL instead.
      }
    };
    sayLeaving();
    // Said again at each heartbeat while it finishes: a router whose connection was down when the first went out
    // would drop this member at its TTL and fail over what it is finishing, to be generated twice.
    const leaveAgain = setInterval(sayLeaving, this.opts.announceIntervalMs ?? 1000);
    // On the monotonic clock: a wall clock stepped back would hold the stop far past its limit.
    const until = monotonicNow() + timeoutMs;
    // Requests still queued have not reached the server: answered shutting_down now, so routers fail them over at
    // once, instead of started one by one as running ones finish, past what the wait below allows.
    const stopped = new MemberStoppingError(`member ${this.id} is stopping`);
    for (const queued of this.queuedCtls) queued.abort(stopped);
    // Drained, not just unsubscribed: a request the server had already handed over, still unread, is answered
    // shutting_down (the router fails it over at once) instead of dropped unanswered for the router to wait out.
    await untilAborted(
      Promise.all(this.subs.map((s) => s.drain().catch(() => {}))),
      AbortSignal.timeout(Math.min(SUBSCRIPTION_DRAIN_MS, timeoutMs)),
    ).catch(() => {}); // a server that is down cannot confirm the drain: bounded
    for (const s of this.subs) if (!s.isClosed()) s.unsubscribe();
    const settled = async (by: number) => {
      while ((this.inFlight > 0 || this.waiting.length > 0) && monotonicNow() < by) {
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await settled(until);
    if (this.active.size > 0) {
      // Still running when the wait ran out: stopped on the server, and answered shutting_down, so routers fail them
      // over now instead of at their own timeout, and no generation runs on for nobody.
      const gaveUp = new MemberStoppingError(`member ${this.id} stopped before the request finished`);
      for (const ctls of this.active.values()) for (const ctl of ctls) ctl.abort(gaveUp);
      await settled(monotonicNow() + STOPPED_REPLIES_MS);
    }
    clearInterval(leaveAgain);
    for (const s of this.cancelSubs) s.unsubscribe();
    clearInterval(this.leaseTimer);
    // Watched until here: leases are judged while the requests in hand finish, and not while the connection is down.
    this.stopWatching?.();
    // Bounded: a connection that died unnoticed answers no ping until the client's own pings notice (~30 s), past
    // what a pod's grace period leaves.
    await untilAborted(this.opts.nc.flush(), AbortSignal.timeout(FINAL_FLUSH_MS)).catch(() => {});
  }

  private announcement(leaving?: { drainMs: number }): MemberAnnouncementWire {
    const load = this.opts.backend.load?.();
    const backendQueued = Math.min(this.inFlight, load?.queued ?? 0);
    return {
      v: WIRE_VERSION,
      id: this.id,
      pool: this.opts.pool,
      model: this.model,
      backend: this.opts.backend.kind,
      capacity: this.capacity,
      // A request the backend still queues (no batch slot or KV blocks yet) is waiting, not running: count it once,
      // as queued, or routers see a member with a backlog as carrying it twice.
      inFlight: Math.max(0, this.inFlight - backendQueued),
      queued: this.waiting.length + backendQueued,
      cacheCapacityTokens: load?.cacheCapacityTokens ?? 0,
      cacheUsedTokens: load?.cacheUsedTokens ?? 0,
      servedRequests: this.served,
      instance: this.instance,
      reconnects: this.reconnects,
      healthy: this.health?.reason === undefined,
      ...(leaving ? { leaving: true, drainMs: leaving.drainMs } : {}),
    };
  }

  private announce(): void {
    clearTimeout(this.pendingAnnounce);
    this.pendingAnnounce = undefined;
    if (this.stopping || this.opts.nc.isClosed() || this.opts.nc.isDraining()) return;
    this.lastAnnounceAt = Date.now();
    try {
      this.opts.nc.publish(subjects.announce(this.opts.pool), encodeWire(this.announcement()));
    } catch {
      // Called from request handling: a connection going away must not fail the request; the TTL covers it.
    }
  }

  /** Announces a load change now, or once minAnnounceIntervalMs has passed since the last announcement. */
  private announceSoon(): void {
    if (this.pendingAnnounce || this.stopping) return;
    const wait = this.lastAnnounceAt + Math.max(10, this.opts.minAnnounceIntervalMs ?? 100) - Date.now();
    if (wait <= 0) this.announce();
    else this.pendingAnnounce = setTimeout(() => this.announce(), wait);
  }

  private async handle(msg: Msg): Promise<void> {
    // Published without a reply subject: nobody could hear the answer, and the generation would hold a slot for it.
    if (!msg.reply) return;
    let id = '?';
    try {
      const req = decodeWire(GenerateRequestWire, msg.data, 'generate request');
      id = req.id;
      if (this.stopping) return this.fail(msg, id, 'shutting_down', 'member is stopping', true);
      const unhealthy = this.health?.reason;
      if (unhealthy !== undefined) return this.fail(msg, id, 'unhealthy', unhealthy, true);
      const deadline = attemptDeadline(req.deadline, msg.headers?.get(ATTEMPT_TIMEOUT_HEADER));
      const lease = routerLease(msg.headers?.get(ROUTER_HEADER), msg.headers?.get(ROUTER_LEASE_HEADER));
      if (lease) this.routersHeard.set(lease.router, monotonicNow());
      if (Date.now() >= deadline)
        return this.fail(msg, id, 'deadline_exceeded', 'deadline passed before start', false);
      if (this.inFlight >= this.capacity && this.waiting.length >= this.maxQueue) {
        return this.fail(msg, id, 'overloaded', `member ${this.id} queue is full (${this.maxQueue})`, true);
      }
      const parent = extractTraceContext(msg.headers);
      await context.with(parent, () =>
        tracer().startActiveSpan(
          'pool.generate',
          { kind: SpanKind.SERVER, attributes: { 'muse.member': this.id, 'muse.request': id } },
          async (span) => {
            try {
              const generation = await this.generate(req, deadline, lease);
              span.setAttributes({
                'muse.prompt_tokens': generation.usage.promptTokens,
                'muse.cached_tokens': generation.usage.cachedPromptTokens,
              });
              const reply: GenerateReplyWire = { v: WIRE_VERSION, ok: true, id, generation };
              const payload = encodeWire(reply);
              // Too large for one message (a reply carries no headers): every member would generate it again.
              const maxPayload = this.opts.nc.info?.max_payload;
              if (maxPayload && payload.length > maxPayload)
                throw new ReplyTooLargeError(
                  `the reply of ${payload.length} bytes exceeds the NATS server's max_payload of ${maxPayload} bytes; raise max_payload (muse up and k8s/nats.yaml use 8 MB) or lower maxTokensPerTurn`,
                );
              msg.respond(payload);
            } catch (err) {
              span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
              throw err;
            } finally {
              span.end();
            }
          },
        ),
      );
    } catch (err) {
      const e = replyError(err);
      this.fail(msg, id, e.code, e.message, e.retryable);
    }
  }

  private async generate(
    req: GenerateRequestWire,
    deadline: number,
    lease: RouterLease | undefined,
  ): Promise<Generation> {
    const ctl = new AbortController();
    const leased = lease ? { id: req.id, ctl, lease, since: monotonicNow() } : undefined;
    if (leased) this.leased.add(leased);
    const timer = setTimeout(
      () => ctl.abort(new BackendDeadlineError(`request ${req.id} passed its deadline`, deadline)),
      Math.max(0, deadline - Date.now()),
    );
    const mine = this.active.get(req.id) ?? new Set<AbortController>();
    mine.add(ctl);
    this.active.set(req.id, mine);
    const queuedAt = Date.now();
    const queued = new AbortController();
    const queueTimer = setTimeout(
      () => queued.abort(new QueueWaitError(this.id, Date.now() - queuedAt)),
      Math.max(0, deadline - queuedAt - queueGiveUpMs(deadline - queuedAt)),
    );
    try {
      // The slot is taken before a large prompt is fetched, so a queue of blob-referenced requests holds no prompts.
      try {
        this.queuedCtls.add(queued);
        await this.acquire(AbortSignal.any([ctl.signal, queued.signal]));
      } finally {
        clearTimeout(queueTimer);
        this.queuedCtls.delete(queued);
      }
      try {
        // A stalled content read must not hold the batch slot past a cancel or the deadline.
        const messages =
          req.messages ?? (await untilAborted(this.resolveMessages(req.messagesRef!), ctl.signal));
        ctl.signal.throwIfAborted();
        const raw = await this.opts.backend.generate(
          { id: req.id, model: req.model, messages, params: req.params, deadline },
          ctl.signal,
        );
        const entropies = tokenEntropies(raw.tokens);
        // Every later copy (the reply, the stored turn, history) goes through msgpack: see wellFormed.
        const text = wellFormed(raw.text);
        this.served++;
        this.health?.answered();
        return {
          text,
          entropies,
          regions: regionScores(text, raw.tokens, entropies),
          usage: raw.usage,
          finishReason: raw.finishReason,
          model: raw.model,
          backend: this.opts.backend.kind,
          memberId: this.id,
        };
      } finally {
        this.release();
      }
    } finally {
      clearTimeout(timer);
      if (leased) this.leased.delete(leased);
      mine.delete(ctl);
      if (mine.size === 0) this.active.delete(req.id);
    }
  }

  /**
   * Stops the requests whose router has let its lease lapse (leaseLapsed). Not while this member's own connection is
   * down (renewals cannot arrive): every router is given its lease again from when it is back. A connection that died
   * unnoticed is not told apart; routers have dropped this member by then (its announcements stopped reaching them)
   * and sent its work elsewhere.
   */
  private checkLeases(): void {
    const now = monotonicNow();
    const lastCheckAt = this.lastLeaseCheckAt;
    this.lastLeaseCheckAt = now;
    if (this.disconnected) return;
    const leasing = new Set<string>();
    for (const held of this.leased) {
      const { router, ms } = held.lease;
      leasing.add(router);
      const heard = Math.max(held.since, this.heardAllAt, this.routersHeard.get(router) ?? -Infinity);
      if (leaseLapsed(heard, lastCheckAt, ms))
        held.ctl.abort(new RouterLeaseExpiredError(held.id, router, Math.round(now - heard)));
    }
    // Routers with nothing leased here any more (renewals for them, or from anyone, only add a line).
    for (const router of this.routersHeard.keys()) if (!leasing.has(router)) this.routersHeard.delete(router);
  }

  private onCancel(data: Uint8Array): void {
    // A malformed cancel changes nothing: the request's own deadline still bounds it.
    const cancel = tryDecodeWire(CancelWire, data, 'cancel');
    if (!cancel) return;
    for (const ctl of this.active.get(cancel.id) ?? []) ctl.abort(new RequestCancelledError(cancel.id));
  }

  /**
   * Which of the asked requests this member holds (queued or running). A malformed question, or one for another process
   * under this id, goes unanswered.
   */
  private onHolds(msg: Msg): void {
    const holds = tryDecodeWire(HoldsWire, msg.data, 'holds');
    if (!holds || (holds.instance !== undefined && holds.instance !== this.instance)) return;
    const reply: HeldWire = { v: WIRE_VERSION, held: holds.ids.filter((id) => this.active.has(id)) };
    try {
      msg.respond(encodeWire(reply));
    } catch {
      // The router gave up waiting; it asks again.
    }
  }

  private async resolveMessages(ref: string): Promise<ChatMessage[]> {
    if (!this.opts.blobs)
      throw new NoBlobStoreError('generate request: messagesRef given but this member has no blob store');
    let stored: unknown;
    try {
      stored = await this.opts.blobs.get(ref);
    } catch (err) {
      // Gone for every member alike (expired, or its job deleted): not this member's failure to fail over from.
      if (err instanceof BlobNotFoundError) throw new WireDecodeError(`generate request: ${err.message}`);
      throw err;
    }
    const messages = ChatMessagesWire.safeParse(stored);
    if (!messages.success)
      throw new WireDecodeError(
        `generate request: ${ref} does not hold a message list (${formatZodError(messages.error)})`,
      );
    return messages.data;
  }

  /** A batch slot now, or a place in the queue; leaves the queue when `signal` aborts (deadline, cancel). */
  private acquire(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.inFlight < this.capacity) {
      this.inFlight++;
      this.announceSoon();
      return Promise.resolve();
    }
    const admitted = new Promise<void>((resolve, reject) => {
      const admit = () => {
        signal.removeEventListener('abort', onAbort);
        this.inFlight++;
        resolve();
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(admit);
        if (i >= 0) this.waiting.splice(i, 1);
        this.announceSoon();
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(admit);
    });
    this.announceSoon();
    return admitted;
  }

  private release(): void {
    this.inFlight--;
    this.waiting.shift()?.();
    this.announceSoon();
  }

  private fail(msg: Msg, id: string, code: WireErrorCode, message: string, retryable: boolean): void {
    const reply: GenerateReplyWire = {
      v: WIRE_VERSION,
      ok: false,
      id,
      memberId: this.id,
      // Bounded so the reply fits in a NATS message: a reply too large to send leaves the router waiting out its
      // attempt and blaming this member, where it should hear the failure at once.
      error: { code, message: clipText(message, MAX_ERROR_CHARS), retryable },
    };
    try {
      msg.respond(encodeWire(reply));
    } catch {
      // The requester is gone (timed out); nothing left to tell.
    }
  }
}
