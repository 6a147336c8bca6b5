import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BackendDeadlineError,
  BackendHttpError,
  BackendProtocolError,
  BackendUnavailableError,
  parseRetryAfter,
  postJson,
} from '../../inference/backends/http.js';

interface Reply {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
  delayMs?: number;
}

interface Seen {
  path: string;
  body: unknown;
  headers: http.IncomingHttpHeaders;
}

async function fakeServer(handler: (req: Seen, n: number) => Reply) {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const s: Seen = { path: req.url ?? '', body: raw ? JSON.parse(raw) : undefined, headers: req.headers };
      seen.push(s);
      const r = handler(s, seen.length);
      const send = () => {
        if (res.destroyed) return;
        res.writeHead(r.status ?? 200, { 'content-type': 'application/json', ...r.headers });
        res.end(typeof r.body === 'string' ? r.body : JSON.stringify(r.body ?? {}));
      };
      if (r.delayMs) setTimeout(send, r.delayMs);
      else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return { url: `http://127.0.0.1:${port}`, seen, close };
}

const fast = { baseMs: 1, maxMs: 5 };
let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

describe('postJson', () => {
  it('posts JSON with the bearer key and returns the parsed answer', async () => {
    const s = await fakeServer(() => ({ body: { ok: true } }));
    cleanup = s.close;
    const out = await postJson(`${s.url}/x`, { a: 1 }, { apiKey: 'k1', deadline: Date.now() + 5000 });
    expect(out).toEqual({ ok: true });
    expect(s.seen[0]!.body).toEqual({ a: 1 });
    expect(s.seen[0]!.headers.authorization).toBe('Bearer k1');
    expect(s.seen[0]!.headers['content-type']).toBe('application/json');
  });

  it('retries 429 then succeeds', async () => {
    const s = await fakeServer((_, n) =>
      n === 1 ? { status: 429, body: 'slow down', headers: { 'retry-after': '0' } } : { body: { n } },
    );
    cleanup = s.close;
    const out = await postJson(s.url, {}, { deadline: Date.now() + 5000, backoff: fast });
    expect(out).toEqual({ n: 2 });
    expect(s.seen).toHaveLength(2);
  });

  it('retries 5xx and 408 up to the retry count, then reports the last status', async () => {
    const s = await fakeServer((_, n) => ({ status: n % 2 ? 503 : 408, body: { error: 'busy' } }));
    cleanup = s.close;
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
    const s = await fakeServer(() => ({
      status: 400,
      body: { error: { message: 'top_logprobs must be <= 20' } },
    }));
    cleanup = s.close;
    const err = await postJson(s.url, {}, { deadline: Date.now() + 5000, backoff: fast }).catch((e) => e);
    expect(err).toBeInstanceOf(BackendHttpError);
    expect((err as BackendHttpError).status).toBe(400);
    expect((err as BackendHttpError).retryable).toBe(false);
    expect((err as BackendHttpError).bodyExcerpt).toContain('top_logprobs must be <= 20');
    expect(s.seen).toHaveLength(1);
  });

  it('gives up at the deadline when the server stalls', async () => {
    const s = await fakeServer(() => ({ body: {}, delayMs: 3000 }));
    cleanup = s.close;
    const t0 = Date.now();
    const err = await postJson(s.url, {}, { deadline: t0 + 200, backoff: fast }).catch((e) => e);
    expect(err).toBeInstanceOf(BackendDeadlineError);
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('does not sleep past the deadline for a Retry-After it cannot honour', async () => {
    const s = await fakeServer(() => ({ status: 429, body: 'later', headers: { 'retry-after': '30' } }));
    cleanup = s.close;
    const t0 = Date.now();
    const err = await postJson(s.url, {}, { deadline: t0 + 1000, backoff: fast }).catch((e) => e);
    expect(Date.now() - t0).toBeLessThan(500);
    expect(err).toBeInstanceOf(BackendHttpError);
    expect((err as BackendHttpError).status).toBe(429);
    expect(s.seen).toHaveLength(1);
  });

  it('waits at least Retry-After', async () => {
    const s = await fakeServer((_, n) =>
      n === 1 ? { status: 503, headers: { 'retry-after': '0.3' } } : { body: {} },
    );
    cleanup = s.close;
    const t0 = Date.now();
    await postJson(s.url, {}, { deadline: t0 + 5000, backoff: fast });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
  });

  it('rejects with the abort reason when the caller aborts', async () => {
    const s = await fakeServer(() => ({ body: {}, delayMs: 3000 }));
    cleanup = s.close;
    const ac = new AbortController();
    const reason = new Error('cancelled by caller');
    setTimeout(() => ac.abort(reason), 50);
    const err = await postJson(s.url, {}, { deadline: Date.now() + 5000, signal: ac.signal }).catch((e) => e);
    expect(err).toBe(reason);
  });

  it('retries connection errors and then reports the server unreachable', async () => {
    const s = await fakeServer(() => ({}));
    const url = s.url;
    await s.close();
    const err = await postJson(url, {}, { deadline: Date.now() + 5000, retries: 2, backoff: fast }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as BackendUnavailableError).attempts).toBe(3);
  });

  it('reports a 200 with a non-JSON body as a protocol error', async () => {
    const s = await fakeServer(() => ({ body: '<html>proxy</html>' }));
    cleanup = s.close;
    const err = await postJson(s.url, {}, { deadline: Date.now() + 5000 }).catch((e) => e);
    expect(err).toBeInstanceOf(BackendProtocolError);
    expect(s.seen).toHaveLength(1);
  });

  it('parses Retry-After in seconds and as a date', () => {
    expect(parseRetryAfter('2', 0)).toBe(2000);
    expect(parseRetryAfter(null, 0)).toBeUndefined();
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:03 GMT', now)).toBe(3000);
  });
});
