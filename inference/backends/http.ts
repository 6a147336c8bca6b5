// JSON over HTTP for the real inference backends (vLLM, SGLang, any OpenAI-compatible server).
// Runs inside pool members, never in workflow code, so wall clocks and Math.random are fine here.
import { Agent, fetch as undiciFetch } from 'undici';
import { z } from 'zod';
import { causeChainMessage, formatZodError } from '../../common/errors.js';
import { type BackoffOptions, backoffDelay, sleep } from '../retry.js';
import {
  BackendDeadlineError,
  type BackendLoad,
  CONTEXT_LENGTH_MESSAGE,
  ContextLengthError,
} from '../types.js';

/** How a backend talks to its server, whatever the request: the part of postJson's options its own options carry. */
export interface HttpClientOptions {
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Retries after the first attempt. Default 3. */
  retries?: number;
  backoff?: BackoffOptions;
  /** Injectable for tests; defaults to serverFetch. */
  fetch?: typeof fetch;
}

/**
 * fetch through a connection pool whose own time limits are `timeouts` (ms, 0 = none). The fetch Node bundles gives
 * up after 300 s without response headers, and vLLM and SGLang send none until a (non-streaming) generation is done:
 * a long turn on a busy server would be cut off at 300 s and sent again, its GPU work thrown away. postJson's own
 * deadline bounds every request instead.
 */
export function serverFetch(
  timeouts: { headersTimeout: number; bodyTimeout: number },
  maxResponseBytes = MAX_RESPONSE_BYTES,
): typeof fetch {
  const dispatcher = new Agent({ ...timeouts, maxResponseSize: maxResponseBytes });
  // Redirects are not followed: fetch would send a POST on as a GET without its body (a 301 or 302), or drop the API
  // key at another host, and the server's odd answer to that would hide the real cause (see redirectedTo).
  return ((url: string, init: RequestInit) =>
    undiciFetch(url, { ...(init as object), redirect: 'manual', dispatcher })) as unknown as typeof fetch;
}

/**
 * The most of a server's answer read: far above a long generation's with top-k logprobs for every token (estimated,
 * not measured: 16k tokens x 20 logprobs x ~60 bytes of JSON, ~20 MB), but a wrong --base-url (a file server, a
 * stream) cannot fill the member's memory.
 */
export const MAX_RESPONSE_BYTES = 256 * 1024 * 1024;

/** Whether `err` (or a cause of it) is undici's answer to a body over the dispatcher's maxResponseSize. */
function responseTooLarge(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e)
    if (e.code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') return true;
  return false;
}

/** A 3xx answer's body for its error: where it points, and what to do about it. */
function redirectedTo(location: string | null): string {
  return `the server redirects to ${location ?? '(no Location)'}: set the member's --base-url to where the server answers (redirects are not followed)`;
}

const fetchUntilDeadline = serverFetch({ headersTimeout: 0, bodyTimeout: 0 });

export interface PostJsonOptions extends HttpClientOptions {
  /** Absolute deadline, epoch ms. No attempt starts, and no wait ends, after it. */
  deadline: number;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** Injectable clock for the deadline arithmetic; defaults to Date.now. */
  now?: () => number;
}

const EXCERPT_CHARS = 300;

function excerpt(body: string): string {
  const oneLine = body.replace(/\s+/g, ' ').trim();
  return oneLine.length > EXCERPT_CHARS ? `${oneLine.slice(0, EXCERPT_CHARS)}…` : oneLine;
}

/** The server answered with an error status. `retryable` says whether another member could do better. */
export class BackendHttpError extends Error {
  override readonly name = 'BackendHttpError';
  constructor(
    readonly url: string,
    readonly status: number,
    readonly bodyExcerpt: string,
    readonly attempts: number,
  ) {
    super(`POST ${url} failed with HTTP ${status} after ${attempts} attempt(s): ${bodyExcerpt}`);
  }
  /**
   * Whether another member could do better: a transient status, one that says this member's server is set up wrong
   * (401/403: its API key; 404: its model name or path; a 3xx: its --base-url points at a redirect), which the
   * router fails over and the member's breaker counts, or a 413 (a proxy in front of it with a body limit, such as
   * nginx's 1 MB default), which the member reports as payload_too_large and no breaker counts.
   */
  get retryable(): boolean {
    return (
      isRetryableStatus(this.status) || MEMBER_SETUP_STATUSES.has(this.status) || isRedirect(this.status)
    );
  }
}

const MEMBER_SETUP_STATUSES = new Set([401, 403, 404, 413]);

const NO_HEALTH_ENDPOINT_STATUSES = new Set([401, 403, 404, 405]);

/** The server has no health endpoint (an OpenAI-compatible service other than vLLM or SGLang): nothing to check. */
export class HealthCheckUnsupportedError extends Error {
  override readonly name = 'HealthCheckUnsupportedError';
}

/**
 * GET `url` (vLLM's and SGLang's /health), bounded by `signal`: a 2xx answer is healthy; a 401, 403, 404 or 405 says
 * the server is up but has no health endpoint this member may use (HealthCheckUnsupportedError: a gateway in front
 * of it, another OpenAI-compatible service); any other answer, or none, is not healthy.
 */
export async function checkHealth(
  url: string,
  client: HttpClientOptions,
  signal: AbortSignal,
): Promise<void> {
  let res: Response;
  let body: string;
  try {
    res = await (client.fetch ?? fetchUntilDeadline)(url, {
      method: 'GET',
      headers: client.apiKey ? { authorization: `Bearer ${client.apiKey}` } : {},
      signal,
    });
    body = await res.text();
  } catch (err) {
    throw new Error(`GET ${url}: ${signal.aborted ? 'no answer in time' : causeChainMessage(err)}`);
  }
  if (NO_HEALTH_ENDPOINT_STATUSES.has(res.status))
    throw new HealthCheckUnsupportedError(`GET ${url}: HTTP ${res.status}`);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status} ${excerpt(body)}`.trim());
}

/** The server could not be reached (connection refused, reset, DNS) on every attempt. */
export class BackendUnavailableError extends Error {
  override readonly name = 'BackendUnavailableError';
  readonly retryable = true;
  constructor(
    readonly url: string,
    readonly attempts: number,
    cause: unknown,
  ) {
    // undici says "fetch failed" and keeps the useful part (ECONNREFUSED, a timeout) in the cause.
    super(`POST ${url} unreachable after ${attempts} attempt(s): ${causeChainMessage(cause)}`, { cause });
  }
}

/** A 2xx answer whose body is not what the backend protocol promises (not JSON, missing logprobs, ...). */
export class BackendProtocolError extends Error {
  override readonly name = 'BackendProtocolError';
  /** True only where the server itself gave up (e.g. finish_reason "abort"), so another member may succeed. */
  readonly retryable: boolean;
  /** The HTTP status an error body sent with a 200 names (a gateway relaying its upstream's), when it names one. */
  readonly relayedStatus?: number;
  constructor(message: string, opts?: { retryable?: boolean; cause?: unknown; relayedStatus?: number }) {
    super(message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.retryable = opts?.retryable ?? false;
    if (opts?.relayedStatus !== undefined) this.relayedStatus = opts.relayedStatus;
  }
}

/**
 * `err`, a BackendProtocolError, naming the server it came from (`base`), where its message does not already: in a
 * pool of many members the operator must tell which server answered wrong.
 */
export function namingServer(err: unknown, base: string): unknown {
  // One naming a URL already (the tokenizer's, which may be elsewhere) names its server.
  if (!(err instanceof BackendProtocolError) || /https?:\/\//.test(err.message)) return err;
  return new BackendProtocolError(`${err.message} (server ${base})`, {
    retryable: err.retryable,
    cause: err,
    ...(err.relayedStatus !== undefined ? { relayedStatus: err.relayedStatus } : {}),
  });
}

/** An error as servers describe it: a message, and perhaps a code (an HTTP status, or a name). */
const ErrorDetail = z.object({ message: z.string(), code: z.unknown().optional() }).loose();

/**
 * An error body some servers send with status 200 (or that a proxy or gateway relays): `{"error": "..."}`,
 * `{"error": {"message": ..., "code"?: ...}}`, or vLLM's `{"object": "error", "message": ..., "code"?: ...}`; read as
 * its detail.
 */
const ServerError = z.union([
  z
    .object({ error: z.union([z.string().transform((message) => ({ message })), ErrorDetail]) })
    .loose()
    .transform((body): { message: string; code?: unknown } => body.error),
  ErrorDetail.extend({ object: z.literal('error') }),
]);

/** The HTTP status an error body's `code` names (a number, or a numeric string); undefined for other codes. */
function statusOf(code: unknown): number | undefined {
  const n =
    typeof code === 'number' ? code : typeof code === 'string' && /^\d{3}$/.test(code) ? Number(code) : NaN;
  return Number.isInteger(n) && n >= 100 && n < 600 ? n : undefined;
}

/**
 * Validates a server's answer against `schema`. A mismatch is a BackendProtocolError naming `what` and either the
 * server's own error message (when the body is an error object) or the first few fields that are wrong.
 */
export function parseResponse<S extends z.ZodType>(schema: S, body: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const err = ServerError.safeParse(body);
  if (err.success) {
    const { message, code } = err.data;
    const status = statusOf(code);
    if (CONTEXT_LENGTH_MESSAGE.test(message))
      throw new ContextLengthError(`${what}: server refused the prompt: ${message}`);
    // A gateway relaying an upstream's transient failure (a 429, a 504) in a 200: another try, or member, may succeed.
    throw new BackendProtocolError(
      `${what}: server returned an error${status !== undefined ? ` (code ${status})` : ''}: ${message}`,
      {
        retryable: status !== undefined && isRetryableStatus(status),
        ...(status !== undefined ? { relayedStatus: status } : {}),
      },
    );
  }
  throw new BackendProtocolError(`${what}: unexpected response shape: ${formatZodError(parsed.error)}`);
}

/**
 * The load an HTTP backend can report: the requests this process has in flight. The server's own queue and cache
 * use are not visible through its API, so they read as 0; the limits are what the operator configured.
 */
export class HttpBackendLoad {
  private running = 0;

  constructor(private readonly limits: { maxBatch?: number; cacheCapacityTokens?: number }) {}

  /** Runs one request, counted as in flight until it settles. */
  async track<T>(request: () => Promise<T>): Promise<T> {
    this.running++;
    try {
      return await request();
    } finally {
      this.running--;
    }
  }

  load(): BackendLoad {
    return {
      running: this.running,
      queued: 0,
      maxBatch: this.limits.maxBatch ?? 256,
      cacheCapacityTokens: this.limits.cacheCapacityTokens ?? 0,
      cacheUsedTokens: 0,
    };
  }
}

function isRedirect(status: number): boolean {
  return status >= 300 && status < 400;
}

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** Retry-After is either delta-seconds or an HTTP date; returns ms to wait, or undefined. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

type Attempt =
  | { kind: 'ok'; value: unknown }
  | { kind: 'http'; status: number; body: string; retryAfterMs?: number }
  | { kind: 'network'; error: unknown }
  | { kind: 'deadline'; error?: unknown };

/**
 * POST `body` as JSON and return the parsed JSON answer.
 * Retries network errors and 408/429/5xx with exponential backoff and jitter (at least Retry-After when the
 * server sends one), never waiting or starting an attempt past `deadline`. Other statuses fail at once.
 * An abort of `signal` rejects with the signal's reason, untouched, so callers can tell cancellation apart.
 */
export async function postJson(url: string, body: unknown, opts: PostJsonOptions): Promise<unknown> {
  const doFetch = opts.fetch ?? fetchUntilDeadline;
  const now = opts.now ?? Date.now;
  const retries = Math.max(0, opts.retries ?? 3);
  const payload = JSON.stringify(body);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json',
    ...opts.headers,
  };
  if (opts.apiKey) headers.authorization = `Bearer ${opts.apiKey}`;

  let last: Attempt | undefined;
  let attempts = 0;
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    const remaining = opts.deadline - now();
    if (remaining <= 0) throw finalError(url, opts.deadline, attempt, last, true);

    last = await attemptOnce(doFetch, url, payload, headers, remaining, opts.signal, now);
    attempts = attempt + 1;
    if (last.kind === 'ok') return last.value;
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (last.kind === 'deadline') throw deadlineError(url, opts.deadline, attempt + 1, last.error);
    if (last.kind === 'http' && !isRetryableStatus(last.status)) {
      if (last.status === 400 && CONTEXT_LENGTH_MESSAGE.test(last.body))
        throw new ContextLengthError(`POST ${url} refused the prompt: ${excerpt(last.body)}`);
      throw new BackendHttpError(url, last.status, excerpt(last.body), attempt + 1);
    }
    if (attempt === retries) break;

    let wait = backoffDelay(attempt, opts.backoff);
    if (last.kind === 'http' && last.retryAfterMs !== undefined) wait = Math.max(wait, last.retryAfterMs);
    // Sleeping into the deadline only to fail there wastes the caller's failover budget: report the real
    // cause now so the router can try the next member while time is left.
    if (now() + wait >= opts.deadline) break;
    await sleep(wait, opts.signal);
  }
  // Attempts made, not allowed: the loop also ends early when the next wait would pass the deadline.
  throw finalError(url, opts.deadline, attempts, last, false);
}

/** postJson with a backend's client options, for one request's deadline and signal. */
export function postBackendJson(
  url: string,
  body: unknown,
  client: HttpClientOptions,
  deadline: number,
  signal: AbortSignal,
): Promise<unknown> {
  const { apiKey, retries, backoff } = client;
  return postJson(url, body, { apiKey, retries, backoff, fetch: client.fetch, deadline, signal });
}

function finalError(
  url: string,
  deadline: number,
  attempts: number,
  last: Attempt | undefined,
  expired: boolean,
) {
  if (last?.kind === 'http') return new BackendHttpError(url, last.status, excerpt(last.body), attempts);
  if (last?.kind === 'network' && !expired) return new BackendUnavailableError(url, attempts, last.error);
  return deadlineError(url, deadline, attempts, last?.kind === 'network' ? last.error : undefined);
}

function deadlineError(
  url: string,
  deadline: number,
  attempts: number,
  cause: unknown,
): BackendDeadlineError {
  return new BackendDeadlineError(
    `POST ${url} did not finish before its deadline (${new Date(deadline).toISOString()}, ${attempts} attempt(s))` +
      (cause === undefined ? '' : `: ${causeChainMessage(cause)}`),
    deadline,
    cause === undefined ? undefined : { cause },
  );
}

async function attemptOnce(
  doFetch: typeof fetch,
  url: string,
  payload: string,
  headers: Record<string, string>,
  remainingMs: number,
  signal: AbortSignal | undefined,
  now: () => number,
): Promise<Attempt> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new Error('deadline reached'));
  }, remainingMs);
  const onAbort = () => controller.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const res = await doFetch(url, { method: 'POST', headers, body: payload, signal: controller.signal });
    // The body is read under the same timer: a server that sends headers and then stalls still hits the deadline.
    const redirect = isRedirect(res.status);
    // A redirect's body is not read: released, so its connection goes back to the pool instead of waiting for GC.
    if (redirect) await res.body?.cancel().catch(() => {});
    const text = redirect ? redirectedTo(res.headers.get('location')) : await res.text();
    if (!res.ok) {
      const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'), now());
      return retryAfterMs === undefined
        ? { kind: 'http', status: res.status, body: text }
        : { kind: 'http', status: res.status, body: text, retryAfterMs };
    }
    try {
      return { kind: 'ok', value: JSON.parse(text) as unknown };
    } catch {
      // This server's fault, not the request's (a web UI or proxy at the base URL answers HTML): another member's
      // server may answer, and this member's breaker counts it.
      throw new BackendProtocolError(
        `POST ${url} returned HTTP ${res.status} with a body that is not JSON (is --base-url the inference server?): ${excerpt(text)}`,
        { retryable: true },
      );
    }
  } catch (err) {
    if (err instanceof BackendProtocolError) throw err;
    // Not retried here: the same request would bring the same answer. Another member's server may answer smaller.
    if (responseTooLarge(err))
      throw new BackendProtocolError(
        `POST ${url}: the answer is larger than a member reads (${MAX_RESPONSE_BYTES / 2 ** 20} MiB by default); is --base-url the inference server?`,
        { retryable: true, cause: err },
      );
    if (timedOut) return { kind: 'deadline', error: err };
    // A caller abort also lands here; postJson checks the signal and rethrows its reason.
    return { kind: 'network', error: err };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}
