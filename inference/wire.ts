// The NATS wire protocol between rollout workers and pool members. Every message is msgpackr-encoded and
// zod-validated on receipt: a member must survive any bytes a peer sends, and a caller must treat a reply
// it cannot decode as that member's failure.
import { z } from 'zod';
import { BLOB_REF_RE } from '../common/blob-store.js';
import { formatZodError } from '../common/errors.js';
import { packValue, unpackValue } from '../common/msgpack.js';

export const WIRE_VERSION = 1;

/**
 * Pool names and member ids are tokens of NATS subjects (`muse.pool.<pool>.member.<id>`): a dot would address other
 * subjects, and a `*` or `>` subscribe to other pools' requests.
 */
export const SUBJECT_TOKEN_RE = /^[A-Za-z0-9_-]+$/;

/** Throws naming the field unless `value` can be a subject token (see SUBJECT_TOKEN_RE). */
export function assertSubjectToken(what: string, value: string): void {
  if (!SUBJECT_TOKEN_RE.test(value))
    throw new Error(`${what} '${value}' may hold only letters, digits, '-' and '_' (it names NATS subjects)`);
}

export const subjects = {
  /** Any member of the pool answers (queue group): used when the router has no view of the pool yet. */
  generate: (pool: string) => `muse.pool.${pool}.generate`,
  queueGroup: (pool: string) => `muse-pool-${pool}`,
  /** One member, chosen by the router. */
  member: (pool: string, memberId: string) => `muse.pool.${pool}.member.${memberId}`,
  /** Members publish their load here at a short interval. */
  announce: (pool: string) => `muse.pool.${pool}.announce`,
  /** A request here makes every live member announce itself at once (router start-up). */
  discover: (pool: string) => `muse.pool.${pool}.discover`,
  /** A member that stops gracefully says so here so it leaves rotation without waiting for its TTL. */
  leave: (pool: string) => `muse.pool.${pool}.leave`,
  /** Routers tell each other which member served which prompt prefix, so each knows where prefixes live. */
  placed: (pool: string) => `muse.pool.${pool}.placed`,
  /** A router gave up on a request it sent this member (timed out, cancelled, failed over): stop working on it. */
  cancel: (pool: string, memberId: string) => `muse.pool.${pool}.member.${memberId}.cancel`,
  /** As cancel, for a request sent through the queue group: every member hears it, the one holding it stops. */
  cancelAny: (pool: string) => `muse.pool.${pool}.cancel`,
  /** A router asks which of its requests the member still holds, after a connection came back (HoldsWire). */
  holds: (pool: string, memberId: string) => `muse.pool.${pool}.member.${memberId}.holds`,
  /** A router renews its lease on the requests it has on this member (LeaseWire): it is alive and still waiting. */
  lease: (pool: string, memberId: string) => `muse.pool.${pool}.member.${memberId}.lease`,
};

/**
 * Header of a generate request: how long this attempt may take, in ms from receipt (the router's attempt limit or the
 * time left before the request's deadline, whichever is less). The member stops then, so an attempt the router
 * abandoned does not hold a batch slot until the activity's deadline. A duration, not a time: members need not share
 * the router's clock.
 */
export const ATTEMPT_TIMEOUT_HEADER = 'Muse-Attempt-Timeout-Ms';

/**
 * Headers of a generate request sent to one member: the router that waits for it, and how long the member may go
 * without hearing from that router (a LeaseWire, or another request) before it stops the work. A router whose process
 * was killed sends no cancel; without the lease its requests would hold batch slots until they end or reach their
 * deadline, while Temporal runs the same steps again elsewhere. Requests without them (older routers, the queue
 * group) have no lease.
 */
export const ROUTER_HEADER = 'Muse-Router';
export const ROUTER_LEASE_HEADER = 'Muse-Router-Lease-Ms';

const ChatMessageWire = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() });
/** A prompt: inline in a request, or stored under its messagesRef. */
export const ChatMessagesWire = z.array(ChatMessageWire).min(1);

export const GenerateRequestWire = z
  .object({
    v: z.literal(WIRE_VERSION),
    id: z.string().min(1).max(200),
    pool: z.string().regex(SUBJECT_TOKEN_RE),
    model: z.string().optional(),
    /** Inline messages, or a blob-store reference when they are too large for one NATS message. */
    messages: ChatMessagesWire.optional(),
    messagesRef: z.string().regex(BLOB_REF_RE, 'not a content reference').optional(),
    params: z.object({
      maxTokens: z.number().int().positive(),
      temperature: z.number().min(0),
      topLogprobs: z.number().int().min(1).max(20),
      seed: z.number().int().optional(),
      stop: z.array(z.string()).optional(),
    }),
    /** Absolute deadline (epoch ms): a member never works on a request past it. */
    deadline: z.number().int().positive(),
  })
  .refine((r) => (r.messages ? 1 : 0) + (r.messagesRef ? 1 : 0) === 1, {
    message: 'exactly one of messages or messagesRef is required',
    path: ['messages'],
  });
export type GenerateRequestWire = z.infer<typeof GenerateRequestWire>;

export const WireErrorCode = z.enum([
  'bad_request',
  'deadline_exceeded',
  'overloaded',
  'backend_error',
  'shutting_down',
  /**
   * The member's server fails its health checks: it is out of rotation until one passes (not counted as a fault). Also
   * a member without a blob store given a request by reference: another member serves it.
   */
  'unhealthy',
  /** The server refused the prompt as longer than its context; retrying elsewhere cannot help. */
  'context_length',
  /** The member heard nothing from the router for the request's lease and stopped it (see ROUTER_LEASE_HEADER). */
  'lease_expired',
  /**
   * The member's server, or a proxy before it, refused the request's size (HTTP 413): another member may take it, and
   * it says nothing of this one's health (one long prompt must not open the breaker of every member behind one proxy).
   */
  'payload_too_large',
]);
export type WireErrorCode = z.infer<typeof WireErrorCode>;

export const GenerationWire = z.object({
  text: z.string(),
  entropies: z.custom<Float32Array>((v) => v instanceof Float32Array, 'expected a Float32Array'),
  regions: z.object({
    think_ppl: z.number().nullable(),
    tool_call_ppl: z.number().nullable(),
    all_ppl: z.number().nullable(),
  }),
  usage: z.object({
    promptTokens: z.number().int().nonnegative(),
    cachedPromptTokens: z.number().int().nonnegative(),
    completionTokens: z.number().int().nonnegative(),
  }),
  finishReason: z.enum(['stop', 'length']),
  model: z.string(),
  backend: z.string().max(100).optional(),
  memberId: z.string(),
});

export const GenerateReplyWire = z.discriminatedUnion('ok', [
  z.object({ v: z.literal(WIRE_VERSION), ok: z.literal(true), id: z.string(), generation: GenerationWire }),
  z.object({
    v: z.literal(WIRE_VERSION),
    ok: z.literal(false),
    id: z.string(),
    memberId: z.string().optional(),
    error: z.object({ code: WireErrorCode, message: z.string(), retryable: z.boolean() }),
  }),
]);
export type GenerateReplyWire = z.infer<typeof GenerateReplyWire>;

/** Room a message's headers (trace context, the attempt's timeout) take beside its payload in one NATS message. */
export const HEADER_ROOM_BYTES = 16 * 1024;

/** The longest wait on stop a member can tell routers of (an hour). */
export const MAX_DRAIN_MS = 3_600_000;

export const MemberAnnouncementWire = z.object({
  v: z.literal(WIRE_VERSION),
  id: z.string().regex(SUBJECT_TOKEN_RE),
  pool: z.string(),
  model: z.string(),
  backend: z.string(),
  /** Requests the member runs concurrently before it reports itself saturated. */
  capacity: z.number().int().positive(),
  inFlight: z.number().int().nonnegative(),
  queued: z.number().int().nonnegative(),
  cacheCapacityTokens: z.number().nonnegative(),
  cacheUsedTokens: z.number().nonnegative(),
  servedRequests: z.number().int().nonnegative(),
  /**
   * New for every start of a member process: a member restarted under the same id (a fixed --id, a pod's name) is a
   * different process, which never received what the old one held. Optional: members that predate it omit it.
   */
  instance: z.string().min(1).max(100).optional(),
  /**
   * How many times the member's NATS connection has come back: a change tells routers that requests and replies in
   * flight on it may have been lost. Optional: members that predate it omit it.
   */
  reconnects: z.number().int().nonnegative().optional(),
  /** False while the member's server fails its health checks: routers send it nothing. Absent: healthy. */
  healthy: z.boolean().optional(),
  /** Set on the announcements (on `leave`) of a member that is stopping. */
  leaving: z.boolean().optional(),
  /**
   * With `leaving`: how long the member waits for what it is finishing before it gives the rest up, so routers wait
   * as long. Absent: members that predate it, which wait 10 s and say they leave once.
   */
  drainMs: z.number().int().nonnegative().max(MAX_DRAIN_MS).optional(),
});
export type MemberAnnouncementWire = z.infer<typeof MemberAnnouncementWire>;

/** Prefix keys per placement event at most: 8 bytes each, a prompt of ~1M characters. */
export const MAX_PLACEMENT_KEYS = 4096;

/** A router's id, as it names itself in placements, leases and request headers. */
export const RouterId = z.string().min(1).max(100);

/**
 * One router's served request, for the other routers of the pool: the member now holds this prompt prefix. The
 * keys are the prompt's prefix block keys (router/prefix.ts), packed as 8 bytes each.
 */
export const PlacementWire = z.object({
  v: z.literal(WIRE_VERSION),
  router: RouterId,
  member: z
    .string()
    .max(200)
    .regex(/^[A-Za-z0-9_-]+$/),
  keys: z
    .instanceof(Uint8Array)
    .refine((b) => b.length % 8 === 0, 'keys must be whole 8-byte keys')
    .refine((b) => b.length <= MAX_PLACEMENT_KEYS * 8, `at most ${MAX_PLACEMENT_KEYS} keys`),
  /**
   * The member's process that served it (its announcements' `instance`): a router that knows a newer process under the
   * id, whose cache is cold, does not record it. Absent from routers that predate it.
   */
  instance: z.string().min(1).max(100).optional(),
});
export type PlacementWire = z.infer<typeof PlacementWire>;

/** A router's renewal of its lease on the requests it has on a member (subjects.lease). */
export const LeaseWire = z.object({ v: z.literal(WIRE_VERSION), router: RouterId });
export type LeaseWire = z.infer<typeof LeaseWire>;

export const CancelWire = z.object({ v: z.literal(WIRE_VERSION), id: z.string().min(1).max(200) });
export type CancelWire = z.infer<typeof CancelWire>;

/** Request ids per holds question at most: more than a router has in flight on one member. */
export const MAX_HOLDS_IDS = 4096;

/**
 * Which of these requests does the member hold (queued or running)? Answered with HeldWire. With `instance`, only that
 * process of the member answers: a replacement under the same id, and the process it replaces, both listen here.
 */
export const HoldsWire = z.object({
  v: z.literal(WIRE_VERSION),
  ids: z.array(z.string().min(1).max(200)).max(MAX_HOLDS_IDS),
  instance: z.string().min(1).max(100).optional(),
});
export type HoldsWire = z.infer<typeof HoldsWire>;

export const HeldWire = z.object({ v: z.literal(WIRE_VERSION), held: z.array(z.string()) });
export type HeldWire = z.infer<typeof HeldWire>;

export class WireDecodeError extends Error {
  override name = 'WireDecodeError';
}

/** decodeWire for messages that only ever add a hint (announcements, placements, cancels): undefined when malformed. */
export function tryDecodeWire<S extends z.ZodTypeAny>(
  schema: S,
  bytes: Uint8Array,
  what: string,
): z.infer<S> | undefined {
  try {
    return decodeWire(schema, bytes, what);
  } catch {
    return undefined;
  }
}

/** Decodes and validates; throws WireDecodeError naming what is wrong (never a raw decoder crash). */
export function decodeWire<S extends z.ZodTypeAny>(schema: S, bytes: Uint8Array, what: string): z.infer<S> {
  let raw: unknown;
  try {
    raw = unpackValue(bytes);
  } catch (err) {
    throw new WireDecodeError(`${what}: not valid msgpack (${(err as Error).message})`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new WireDecodeError(`${what}: ${formatZodError(parsed.error)}`);
  return parsed.data;
}

export function encodeWire(value: unknown): Uint8Array {
  return packValue(value);
}
