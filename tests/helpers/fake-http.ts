// A JSON-over-HTTP server on loopback for backend tests: scripted replies, a record of what it was sent, closed
// when the test that started it finishes.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';

export interface FakeReply {
  status?: number;
  /** Sent as is when a string (to fake non-JSON bodies), JSON-encoded otherwise. */
  body?: unknown;
  headers?: Record<string, string>;
  delayMs?: number;
}

export interface SeenRequest {
  path: string;
  body: Record<string, unknown>;
  headers: http.IncomingHttpHeaders;
}

/**
 * Starts the server; `handler` gets each request and its 1-based number. `url` is the server root; `close` may be
 * called early (to test an unreachable server) and is safe to call again.
 */
export async function fakeJsonServer(handler: (req: SeenRequest, n: number) => FakeReply) {
  const seen: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const s: SeenRequest = { path: req.url ?? '', body: raw ? JSON.parse(raw) : {}, headers: req.headers };
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
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  onTestFinished(close);
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, seen, close };
}
