import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import type { MuseConfig } from './config.js';

export async function connectNats(cfg: MuseConfig, name: string): Promise<NatsConnection> {
  try {
    return await connect({
      servers: cfg.nats.url,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      // A connection that died without a close (a node lost, a partition) is noticed after two unanswered pings:
      // ~30 s, not the 4-6 minutes of the 2-minute default, while every request it carries times out.
      pingInterval: 15_000,
      maxPingOut: 2,
    });
  } catch (err) {
    throw new Error(
      `cannot reach NATS at ${cfg.nats.url} (${(err as Error).message}); start it with \`muse up\` or set MUSE_NATS_URL`,
    );
  }
}

/**
 * `limit`, or less where the server takes less in one message: its max_payload less `roomBytes` for what travels
 * beside the payload (subject, headers). A message over max_payload fails on every retry.
 */
export function withinMaxPayload(nc: NatsConnection, limit: number, roomBytes: number): number {
  const maxPayload = nc.info?.max_payload;
  return maxPayload ? Math.min(limit, maxPayload - roomBytes) : limit;
}

/**
 * Drains a connection this process owns, and closes it when the drain does not finish within `timeoutMs`: a drain
 * flushes first, which waits for a server that is down (the connection reconnects forever) and would keep the
 * process alive.
 */
export async function closeNats(nc: NatsConnection, timeoutMs = 5000): Promise<void> {
  const drained = nc.drain().then(
    () => true,
    () => false,
  );
  const timedOut = new Promise<false>((r) => setTimeout(() => r(false), timeoutMs).unref());
  if (!(await Promise.race([drained, timedOut]))) await nc.close().catch(() => {});
}

/**
 * Calls `onStatus` with each change of the connection's state (disconnect, reconnect, ...) until the returned stop is
 * called or the connection closes. A connection without status events (a test's stand-in) is never reported on.
 */
export function watchStatus(nc: NatsConnection, onStatus: (type: string) => void): () => void {
  let statuses: ReturnType<NatsConnection['status']> | undefined;
  let stopped = false;
  void (async () => {
    statuses = nc.status();
    for await (const status of statuses) {
      if (stopped) return;
      onStatus(status.type);
    }
  })().catch(() => {});
  return () => {
    stopped = true;
    (statuses as { stop?: () => void } | undefined)?.stop?.();
  };
}

/**
 * Follows whether the connection is down (from a 'disconnect' until the 'reconnect'): `since()` is when it went, or
 * undefined while it is up; `onChange` hears each change once (not each reconnect attempt).
 */
export function trackDowntime(
  nc: NatsConnection,
  onChange?: (down: boolean, downForMs: number) => void,
): { since(): number | undefined; stop(): void } {
  let since: number | undefined;
  const stop = watchStatus(nc, (type) => {
    if (type === 'disconnect' && since === undefined) {
      since = Date.now();
      onChange?.(true, 0);
    } else if (type === 'reconnect' && since !== undefined) {
      const downFor = Date.now() - since;
      since = undefined;
      onChange?.(false, downFor);
    }
  });
  return { since: () => since, stop };
}
