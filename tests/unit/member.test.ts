import { describe, expect, it } from 'vitest';
import { BackendProtocolError, postJson } from '../../inference/backends/http.js';
import {
  attemptDeadline,
  leaseLapsed,
  PoolMember,
  RouterLeaseExpiredError,
  replyError,
  routerLease,
} from '../../inference/member.js';
import { PoolClient } from '../../inference/pool-client.js';
import { BackendDeadlineError, ContextLengthError } from '../../inference/types.js';
import { WireDecodeError } from '../../inference/wire.js';
import { SimBackend } from '../../sim/backend.js';
import { fakeJsonServer } from '../helpers/fake-http.js';

const fast = { baseMs: 1, maxMs: 5 };

/** What postJson throws against a server that always answers `status`. */
async function httpFailure(status: number, body: unknown): Promise<unknown> {
  const s = await fakeJsonServer(() => ({ status, body }));
  return postJson(s.url, {}, { deadline: Date.now() + 5000, retries: 1, backoff: fast }).catch((e) => e);
}

describe('member error replies', () => {
  it('does not send a request the server rejected as invalid (HTTP 400) to another member', async () => {
    // The body mentions a deadline: the text of a message must not decide anything.
    const err = await httpFailure(400, { error: 'deadline must be in the future' });
    expect(replyError(err)).toMatchObject({ code: 'backend_error', retryable: false });
    expect(replyError(err).message).toContain('HTTP 400');
  });

  it('reports a prompt over the context length as context_length, from vLLM, SGLang and OpenAI wordings alike', async () => {
    const wordings = [
      "This model's maximum context length is 32768 tokens. However, you requested 40000 tokens",
      "The input (40000 tokens) is longer than the model's context length (32768 tokens).",
      // vLLM's input processor, for a prompt of token ids.
      'The decoder prompt (length 5951) is longer than the maximum model length of 4096.',
      { message: 'too many tokens', code: 'context_length_exceeded' },
    ];
    for (const error of wordings) {
      const err = await httpFailure(400, { error });
      expect(err).toBeInstanceOf(ContextLengthError);
      expect(replyError(err)).toMatchObject({ code: 'context_length', retryable: false });
    }
    // Another 400 stays a plain rejection.
    expect(await httpFailure(400, { error: 'top_logprobs must be <= 20' })).not.toBeInstanceOf(
      ContextLengthError,
    );
  });

  it('lets the router try another member after a server error (HTTP 5xx) or an unreachable server', async () => {
    expect(replyError(await httpFailure(503, { error: 'busy' }))).toMatchObject({
      code: 'backend_error',
      retryable: true,
    });
    const s = await fakeJsonServer(() => ({}));
    await s.close();
    const unreachable = await postJson(s.url, {}, { deadline: Date.now() + 5000, retries: 0 }).catch(
      (e) => e,
    );
    expect(replyError(unreachable)).toMatchObject({ code: 'backend_error', retryable: true });
  });

  it('reports a size refused by the server or a proxy before it (HTTP 413) as payload_too_large: the request, not the member', async () => {
    const err = await httpFailure(413, '<html>413 Request Entity Too Large</html>');
    expect(replyError(err)).toMatchObject({ code: 'payload_too_large', retryable: true });
    expect(replyError(err).message).toContain('HTTP 413');
  });

  it('reports a server rate limit (HTTP 429) or a full queue (503) as overloaded: busy, not broken, so no breaker counts it', async () => {
    const err = await httpFailure(429, { error: 'rate limited' });
    expect(replyError(err)).toMatchObject({ code: 'overloaded', retryable: true });
    expect(replyError(err).message).toContain('HTTP 429');
    const full = await httpFailure(503, { error: { message: 'The request queue is full.' } });
    expect(replyError(full)).toMatchObject({ code: 'overloaded', retryable: true });
  });

  it('follows the flag of a protocol error (an abort is retryable, a malformed answer is not)', () => {
    expect(replyError(new BackendProtocolError('no logprobs')).retryable).toBe(false);
    expect(replyError(new BackendProtocolError('aborted', { retryable: true })).retryable).toBe(true);
  });

  it('reports a passed deadline as deadline_exceeded, whichever backend hit it', async () => {
    const http = await postJson(
      (await fakeJsonServer(() => ({ body: {}, delayMs: 3000 }))).url,
      {},
      { deadline: Date.now() + 100 },
    ).catch((e) => e);
    expect(http).toBeInstanceOf(BackendDeadlineError);
    expect(replyError(http)).toMatchObject({ code: 'deadline_exceeded', retryable: false });

    const sim = new SimBackend();
    const late = await sim
      .generate(
        {
          id: 'r1',
          messages: [{ role: 'user', content: 'hi' }],
          params: { maxTokens: 8, temperature: 0, topLogprobs: 2 },
          deadline: Date.now() - 1,
        },
        new AbortController().signal,
      )
      .catch((e) => e);
    await sim.close();
    expect(late).toBeInstanceOf(BackendDeadlineError);
    expect(replyError(late).code).toBe('deadline_exceeded');
  });

  it('reports an invalid request as bad_request, and an error that says nothing as retryable', () => {
    expect(replyError(new WireDecodeError('generate request: id: required'))).toMatchObject({
      code: 'bad_request',
      retryable: false,
    });
    expect(replyError(new Error('blob store timed out'))).toMatchObject({
      code: 'backend_error',
      message: 'blob store timed out',
      retryable: true,
    });
  });
});

describe('routerLease', () => {
  it('reads the lease a request asks for, kept from 1 s to 1 h', () => {
    expect(routerLease('r-1', '10000')).toEqual({ router: 'r-1', ms: 10_000 });
    // A lease too short to survive a router's brief pause, or longer than anyone waits for a generation.
    expect(routerLease('r-1', '5')).toEqual({ router: 'r-1', ms: 1_000 });
    expect(routerLease('r-1', String(48 * 3600_000))).toEqual({ router: 'r-1', ms: 3_600_000 });
  });

  it('serves a request whose lease headers are missing or malformed without a lease, instead of refusing it', () => {
    for (const [router, ms] of [
      [undefined, '10000'],
      ['r-1', undefined],
      ['', '10000'],
      ['r-1', 'soon'],
      ['r-1', '0'],
      ['r-1', '-5'],
      ['x'.repeat(101), '10000'],
    ] as const)
      expect(routerLease(router, ms)).toBeUndefined();
  });

  it('ends a lease only when the router had been silent for longer than it at the previous check', () => {
    // Last heard at 10 s, a lease of 1 s: not at a previous check 1 s on, at one just past it.
    expect(leaseLapsed(10_000, 10_900, 1000)).toBe(false);
    expect(leaseLapsed(10_000, 11_000, 1000)).toBe(false);
    expect(leaseLapsed(10_000, 11_001, 1000)).toBe(true);
  });

  it('answers a request stopped for its lease as lease_expired, which the router may send again', () => {
    const err = new RouterLeaseExpiredError('req-1', 'r-1', 10_250);
    expect(replyError(err)).toEqual({
      code: 'lease_expired',
      message: 'request req-1 stopped: its router r-1 was not heard from for 10250 ms (its lease)',
      retryable: true,
    });
  });
});

describe('attemptDeadline', () => {
  it("counts the attempt's duration from receipt, whatever the member's clock says of the body's deadline", () => {
    const now = 1_000_000;
    // The member's clock runs 10 s ahead of the router's: by its clock the body deadline has passed.
    expect(attemptDeadline(now - 1_000, '5000', now)).toBe(now + 5_000);
    // Without the header (an older router), the body's absolute deadline.
    expect(attemptDeadline(now + 9_000, undefined, now)).toBe(now + 9_000);
    expect(attemptDeadline(now + 9_000, 'garbage', now)).toBe(now + 9_000);
  });

  it('brings a deadline past what a timer can wait (~24.8 days) in to that, instead of firing at once', () => {
    const now = Date.now();
    const month = 30 * 24 * 3600 * 1000;
    expect(attemptDeadline(now + month, undefined, now)).toBe(now + 2 ** 31 - 1);
    expect(attemptDeadline(1e16, undefined, now)).toBe(now + 2 ** 31 - 1);
    expect(attemptDeadline(now, String(month), now)).toBe(now + 2 ** 31 - 1);
  });

  it('the simulator serves a request whose deadline is a month or an absurd time away', async () => {
    const sim = new SimBackend({ profile: { timeScale: 0.001 } });
    const request = (deadline: number) =>
      sim.generate(
        {
          id: `far-${deadline}`,
          messages: [{ role: 'user', content: 'hi' }],
          params: { maxTokens: 8, temperature: 0, topLogprobs: 2 },
          deadline,
        },
        new AbortController().signal,
      );
    try {
      expect((await request(Date.now() + 30 * 24 * 3600 * 1000)).tokens.length).toBeGreaterThan(0);
      expect((await request(1e16)).tokens.length).toBeGreaterThan(0);
    } finally {
      await sim.close();
    }
  });
});

describe('member settings', () => {
  it('refuses an id or pool name routers would drop and a capacity below one, instead of serving unseen', () => {
    const backend = { kind: 'none', generate: () => Promise.reject(new Error('unused')) };
    const nc = {} as never;
    expect(() => new PoolMember({ nc, pool: 'p', backend, id: 'gpu.0' })).toThrow(
      /member id 'gpu\.0' may hold only letters, digits/,
    );
    expect(() => new PoolMember({ nc, pool: 'p', backend, id: 'gpu-0', capacity: 0 })).toThrow(
      /capacity must be a whole number of at least 1, got 0/,
    );
    expect(() => new PoolMember({ nc, pool: 'p', backend, id: 'gpu-0', maxQueue: Number.NaN })).toThrow(
      /maxQueue must be a whole number of at least 0, got NaN/,
    );
    expect(() => new PoolMember({ nc, pool: 'p', backend, id: 'gpu-0', announceIntervalMs: 0 })).toThrow(
      /announceIntervalMs must be a number of milliseconds of at least 10, got 0/,
    );
    expect(() => new PoolMember({ nc, pool: 'p', backend, id: 'gpu-0', minAnnounceIntervalMs: -1 })).toThrow(
      /minAnnounceIntervalMs must be a number of milliseconds of at least 10, got -1/,
    );
    // A pool of '*' would take the queue-group requests of every pool.
    expect(() => new PoolMember({ nc, pool: '*', backend, id: 'gpu-0' })).toThrow(
      /pool name '\*' may hold only/,
    );
    expect(() => new PoolClient({ nc, pool: 'a.b' })).toThrow(/pool name 'a\.b' may hold only/);
    expect(new PoolMember({ nc, pool: 'p', backend, id: 'gpu_0', capacity: 8 }).stats.id).toBe('gpu_0');
  });
});
