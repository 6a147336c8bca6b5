import { Agent, getGlobalDispatcher, setGlobalDispatcher } from 'undici';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  BackendHttpError,
  BackendProtocolError,
  BackendUnavailableError,
  checkHealth,
  HealthCheckUnsupportedError,
  HttpBackendLoad,
  parseResponse,
  parseRetryAfter,
  postJson,
  serverFetch,
} from '../../inference/backends/http.js';
import { replyError } from '../../inference/member.js';
import { backoffDelay, sleep, untilAborted } from '../../inference/retry.js';
import { BackendDeadlineError, ContextLengthError } from '../../inference/types.js';
import { fakeJsonServer } from '../helpers/fake-http.js';

const fast = { baseMs: 1, maxMs: 5 };
describe('postJson', () => {
  it('posts JSON with the bearer key and returns the parsed answer', async () => {
    const s = await fakeJsonServer(() => ({ body: { ok: true } }));
    const out = await postJson(`${s.url}/x`, { a: 1 }, { apiKey: 'k1', deadline: Date.now() + 5000 });
    expect(out).toEqual({ ok: true });
    expect(s.seen[0]!.body).toEqual({ a: 1 });
    expect(s.seen[0]!.headers.authorization).toBe('Bearer k1');
    expect(s.seen[0]!.headers['content-type']).toBe('application/json');
  });

  it('retries 429 then succeeds', async () => {
    const s = await fakeJsonServer((_, n) =>
      n === 1 ? { status: 429, body: 'slow down', headers: { 'retry-after': '0' } } : { body: { n } },
    );
    const out = await postJson(s.url, {}, { deadline: Date.now() + 5000, backoff: fast });
    expect(out).toEqual({ n: 2 });
    expect(s.seen).toHaveLength(2);
  });

  it('retries 5xx and 408 up to the retry count, then reports the last status', async () => {
    const s = await fakeJsonServer((_, n) => ({ status: n % 2 ? 503 : 408, body: { error: 'busy' } }));
    const err = await postJson(s.url, {}, { deadline: Date.now() + 5000, retries: 2, backoff: fast }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(BackendHttpError);
    expect((err as BackendHttpError).status).toBe(503);
    expect((err as BackendHttpError).attempts).toBe(3);
    expect((err as BackendHttpError).retryable).toBe(true);
    expect(s.seen).toHaveLength(3);
  });

  it('does not retry a 400 and carries a short excerpt of the body', async () => {
    const s = await fakeJsonServer(() => ({
      status: 400,
      body: { error: { message: 'top_logprobs must be <= 20' } },
    }));
    const err = await postJson(s.url, {}, { deadline: Date.now() + 5000, backoff: fast }).catch((e) => e);
    expect(err).toBeInstanceOf(BackendHttpError);
    expect((err as BackendHttpError).status).toBe(400);
    expect((err as BackendHttpError).retryable).toBe(false);
    expect((err as BackendHttpError).bodyExcerpt).toContain('top_logprobs must be <= 20');
    expect(s.seen).toHaveLength(1);
  });

  it('does not retry 401/403/404/413 on the same server, but marks them for another member (a misconfigured server)', async () => {
    // 413: a proxy in front of this member with a body limit; another member without one can take the request.
    for (const status of [401, 403, 404, 413]) {
      const s = await fakeJsonServer(() => ({ status, body: { error: 'no such model' } }));
      const err = await postJson(s.url, {}, { deadline: Date.now() + 5000, backoff: fast }).catch((e) => e);
      expect(err).toBeInstanceOf(BackendHttpError);
      expect((err as BackendHttpError).retryable).toBe(true);
      expect(s.seen).toHaveLength(1);
    }
  });

  it('does not follow a redirect (a POST sent on as a bare GET): fails over to another member, naming where it points', async () => {
    for (const status of [301, 302, 307, 308]) {
      let followed = 0;
      const target = await fakeJsonServer(() => {
        followed++;
        return { body: {} };
      });
      const s = await fakeJsonServer(() => ({
        status,
        headers: { location: `${target.url}/v1` },
        body: 'moved',
      }));
      const err = await postJson(s.url, {}, { deadline: Date.now() + 5000, backoff: fast }).catch((e) => e);
      expect(err).toBeInstanceOf(BackendHttpError);
      expect((err as BackendHttpError).retryable).toBe(true);
      expect((err as Error).message).toContain(`HTTP ${status}`);
      expect((err as Error).message).toContain(`redirects to ${target.url}/v1: set the member's --base-url`);
      expect(s.seen).toHaveLength(1);
      expect(followed).toBe(0);
    }
  });

  it('stops reading an answer over the size limit, and says so instead of asking the same server again', async () => {
    const s = await fakeJsonServer(() => ({ body: { text: 'x'.repeat(50_000) } }));
    const err = await postJson(
      s.url,
      {},
      {
        deadline: Date.now() + 5000,
        backoff: fast,
        fetch: serverFetch({ headersTimeout: 0, bodyTimeout: 0 }, 10_000),
      },
    ).catch((e) => e);
    expect(err).toBeInstanceOf(BackendProtocolError);
    expect((err as Error).message).toMatch(/the answer is larger than a member reads .*--base-url/);
    // Another member's server may answer within it.
    expect((err as BackendProtocolError).retryable).toBe(true);
    expect(s.seen).toHaveLength(1);
  });

  it('gives up at the deadline when the server stalls', async () => {
    const s = await fakeJsonServer(() => ({ body: {}, delayMs: 3000 }));
    const t0 = Date.now();
    const err = await postJson(s.url, {}, { deadline: t0 + 200, backoff: fast }).catch((e) => e);
    expect(err).toBeInstanceOf(BackendDeadlineError);
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('does not sleep past the deadline for a Retry-After it cannot honour', async () => {
    const s = await fakeJsonServer(() => ({ status: 429, body: 'later', headers: { 'retry-after': '30' } }));
    const t0 = Date.now();
    const err = await postJson(s.url, {}, { deadline: t0 + 5000, backoff: fast }).catch((e) => e);
    // Given up at once: not after sleeping to the deadline (5 s) in the hope of a retry. The bound is the deadline
    // less ample room for a first request on a busy machine.
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(err).toBeInstanceOf(BackendHttpError);
    expect((err as BackendHttpError).status).toBe(429);
    expect(s.seen).toHaveLength(1);
    expect((err as BackendHttpError).attempts).toBe(1); // made, not allowed
  });

  it('waits at least Retry-After', async () => {
    const s = await fakeJsonServer((_, n) =>
      n === 1 ? { status: 503, headers: { 'retry-after': '0.3' } } : { body: {} },
    );
    const t0 = Date.now();
    await postJson(s.url, {}, { deadline: t0 + 5000, backoff: fast });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
  });

  it('rejects with the abort reason when the caller aborts', async () => {
    const s = await fakeJsonServer(() => ({ body: {}, delayMs: 3000 }));
    const ac = new AbortController();
    const reason = new Error('cancelled by caller');
    setTimeout(() => ac.abort(reason), 50);
    const err = await postJson(s.url, {}, { deadline: Date.now() + 5000, signal: ac.signal }).catch((e) => e);
    expect(err).toBe(reason);
  });

  it('retries connection errors and then reports the server unreachable', async () => {
    const s = await fakeJsonServer(() => ({}));
    const url = s.url;
    await s.close();
    const err = await postJson(url, {}, { deadline: Date.now() + 5000, retries: 2, backoff: fast }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as BackendUnavailableError).attempts).toBe(3);
  });

  it("waits for a server that holds its headers (a generation under way) until the deadline, not the HTTP client's own limit", async () => {
    const s = await fakeJsonServer(() => ({ body: { ok: true }, delayMs: 1500 }));
    // A connection pool's own headers timeout does cut such a request off (Node's bundled fetch has one of 300 s)...
    const limited = serverFetch({ headersTimeout: 500, bodyTimeout: 0 });
    const err = await postJson(s.url, {}, { deadline: Date.now() + 5000, retries: 0, fetch: limited }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect(String((err as Error).message)).toMatch(/Headers Timeout/i);
    // ...and postJson's own has none: with the process-wide pool (what Node's fetch uses) limited the same way, the
    // global fetch is cut off while postJson waits; only the request's deadline bounds it.
    const previous = getGlobalDispatcher();
    setGlobalDispatcher(new Agent({ headersTimeout: 500, bodyTimeout: 500 }));
    try {
      await expect(fetch(s.url, { method: 'POST', body: '{}' })).rejects.toThrow(/fetch failed/);
      expect(await postJson(s.url, {}, { deadline: Date.now() + 5000, retries: 0 })).toEqual({ ok: true });
    } finally {
      setGlobalDispatcher(previous);
    }
    await expect(postJson(s.url, {}, { deadline: Date.now() + 700, retries: 0 })).rejects.toThrow(
      BackendDeadlineError,
    );
  });

  it("reports a 200 with a non-JSON body as this server's protocol error, which another member's server may not make", async () => {
    const s = await fakeJsonServer(() => ({ body: '<html>proxy</html>' }));
    const err = await postJson(s.url, {}, { deadline: Date.now() + 5000 }).catch((e) => e);
    expect(err).toBeInstanceOf(BackendProtocolError);
    expect((err as Error).message).toMatch(/not JSON \(is --base-url the inference server\?\): <html>proxy/);
    // The router fails the request over, and this member's breaker counts it: not the step failed outright.
    expect((err as BackendProtocolError).retryable).toBe(true);
    expect(replyError(err)).toMatchObject({ code: 'backend_error', retryable: true });
    expect(s.seen).toHaveLength(1);
  });

  it('parses Retry-After in seconds and as a date', () => {
    expect(parseRetryAfter('2', 0)).toBe(2000);
    expect(parseRetryAfter(null, 0)).toBeUndefined();
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:03 GMT', now)).toBe(3000);
  });
});

describe('parseResponse', () => {
  const Shape = z.object({ choices: z.array(z.unknown()) });
  it('reads an error object sent with status 200, retryable only when its code is a transient status', () => {
    const fail = (body: unknown) => {
      try {
        parseResponse(Shape, body, 'openai backend');
      } catch (err) {
        return err as Error & { retryable?: boolean };
      }
      throw new Error('parsed');
    };
    // A gateway relaying an upstream timeout: another try, or member, may succeed.
    const relayed = fail({ error: { message: 'upstream timed out', code: 504 } });
    expect(relayed).toBeInstanceOf(BackendProtocolError);
    expect(relayed.message).toBe('openai backend: server returned an error (code 504): upstream timed out');
    expect(relayed.retryable).toBe(true);
    expect(fail({ error: { message: 'rate limited', code: '429' } }).retryable).toBe(true);
    // vLLM's own shape, with the server's message rather than "choices: expected array".
    const vllm = fail({
      object: 'error',
      message: 'bad sampling params',
      type: 'BadRequestError',
      code: 400,
    });
    expect(vllm.message).toBe('openai backend: server returned an error (code 400): bad sampling params');
    expect(vllm.retryable).toBe(false);
    expect(fail({ error: 'no such route' }).retryable).toBe(false);
    // Without a code, the server's message still comes through.
    expect(fail({ error: { message: 'boom' } }).message).toBe(
      'openai backend: server returned an error: boom',
    );
    expect(fail({ object: 'error', message: 'bad request' }).message).toBe(
      'openai backend: server returned an error: bad request',
    );
    // A relayed rate limit is the member's server being busy, as a real 429 is: answered overloaded, no breaker.
    expect(replyError(fail({ error: { message: 'rate limited', code: 429 } }))).toMatchObject({
      code: 'overloaded',
      retryable: true,
    });
    expect(replyError(relayed)).toMatchObject({ code: 'backend_error', retryable: true });
    // A prompt over the context length is the caller's to cut, as with a 400.
    const long = fail({
      object: 'error',
      message: "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens",
      code: 400,
    });
    expect(long).toBeInstanceOf(ContextLengthError);
  });
});

describe('HttpBackendLoad', () => {
  it('counts a request in flight until it settles, rejected ones included, and reports the configured limits', async () => {
    const tracker = new HttpBackendLoad({ maxBatch: 8, cacheCapacityTokens: 1000 });
    let release!: () => void;
    const pending = tracker.track(() => new Promise<void>((r) => (release = r)));
    const failing = tracker.track(() => Promise.reject(new Error('boom')));
    expect(tracker.load().running).toBe(2);
    await expect(failing).rejects.toThrow('boom');
    expect(tracker.load().running).toBe(1);
    release();
    await pending;
    expect(tracker.load()).toEqual({
      running: 0,
      queued: 0,
      maxBatch: 8,
      cacheCapacityTokens: 1000,
      cacheUsedTokens: 0,
    });
    expect(new HttpBackendLoad({}).load().maxBatch).toBe(256);
  });
});

describe('untilAborted', () => {
  it('stops waiting for work that never ends once the signal aborts, and passes the work through otherwise', async () => {
    const ac = new AbortController();
    const stalled = untilAborted(new Promise<never>(() => {}), ac.signal);
    const reason = new Error('cancelled by the router');
    setTimeout(() => ac.abort(reason), 10);
    await expect(stalled).rejects.toBe(reason);
    await expect(untilAborted(Promise.resolve(7), new AbortController().signal)).resolves.toBe(7);
    await expect(
      untilAborted(Promise.reject(new Error('gone')), new AbortController().signal),
    ).rejects.toThrow('gone');
    await expect(untilAborted(Promise.resolve(1), ac.signal)).rejects.toBe(reason);
  });
});

describe('retry waits', () => {
  it('backs off exponentially with equal jitter, up to the cap', () => {
    for (let attempt = 0; attempt < 8; attempt++) {
      const exp = Math.min(1000, 50 * 2 ** attempt);
      const d = backoffDelay(attempt, { baseMs: 50, maxMs: 1000 });
      expect(d).toBeGreaterThanOrEqual(exp / 2);
      expect(d).toBeLessThanOrEqual(exp);
    }
  });

  it('stops sleeping with the abort reason as soon as the signal aborts', async () => {
    const ac = new AbortController();
    const reason = new Error('cancelled');
    const t0 = Date.now();
    setTimeout(() => ac.abort(reason), 20);
    await expect(sleep(5000, ac.signal)).rejects.toBe(reason);
    expect(Date.now() - t0).toBeLessThan(1000);
    await expect(sleep(5000, ac.signal)).rejects.toBe(reason);
  });
});

describe('checkHealth', () => {
  it('passes on 2xx, takes 401, 403, 404 and 405 for no usable endpoint, and fails naming the status or the silence otherwise', async () => {
    const statuses = [200, 401, 403, 404, 405, 503];
    const s = await fakeJsonServer((_req, n) =>
      n <= statuses.length ? { status: statuses[n - 1], body: { n } } : { delayMs: 5_000 },
    );
    const check = () =>
      checkHealth(`${s.url}/health`, {}, AbortSignal.timeout(300)).then(
        () => 'healthy',
        (e: Error) => (e instanceof HealthCheckUnsupportedError ? 'no endpoint' : e.message),
      );
    const outcomes = [];
    for (let i = 0; i <= statuses.length; i++) outcomes.push(await check());
    expect(outcomes.slice(0, 5)).toEqual([
      'healthy',
      'no endpoint',
      'no endpoint',
      'no endpoint',
      'no endpoint',
    ]);
    expect(outcomes[5]).toMatch(/^GET http:\/\/127\.0\.0\.1:\d+\/health: HTTP 503 \{"n":6\}$/);
    expect(outcomes[6]).toMatch(/health: no answer in time$/);
    expect(s.seen.map((r) => r.path)).toEqual(Array(7).fill('/health'));
  });
});
