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
