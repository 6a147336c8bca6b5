// Entry point of a pool-member process: one inference server (or the simulator) served on NATS.
import type { NatsConnection } from '@nats-io/nats-core';
import { BlobStore } from '../common/blob-store.js';
import type { MuseConfig } from '../common/config.js';
import { closeNats, connectNats } from '../common/nats.js';
import { initTelemetry } from '../common/telemetry.js';
import { type BackendSpec, createBackend } from '../inference/backends/index.js';
import { PoolMember, type PoolMemberOptions } from '../inference/member.js';

export interface PoolMemberProcessOptions {
  config: MuseConfig;
  pool: string;
  backend: BackendSpec;
  id?: string;
  capacity?: number;
  nc?: NatsConnection;
  healthCheck?: PoolMemberOptions['healthCheck'];
  onHealthChange?: PoolMemberOptions['onHealthChange'];
  onIdShared?: PoolMemberOptions['onIdShared'];
  /** How long stop() waits for the requests in hand before it gives the rest up (default 10 s). */
  drainTimeoutMs?: number;
}

export async function startPoolMember(
  opts: PoolMemberProcessOptions,
): Promise<{ member: PoolMember; nc: NatsConnection; stop(): Promise<void> }> {
  initTelemetry(opts.config, 'pool-member');
  const backend = createBackend(opts.backend);
  let nc: NatsConnection;
  try {
    nc = opts.nc ?? (await connectNats(opts.config, `muse-pool-${opts.pool}`));
  } catch (err) {
    await backend.close?.();
    throw err;
  }
  const blobs = new BlobStore(nc, { ttlMs: opts.config.store.ttlMs, replicas: opts.config.store.replicas });
  // Everything this process opened for the member, closed once (a second stop waits for the first), each step even
  // when one before it fails.
  let released: Promise<void> | undefined;
  const release = () =>
    (released ??= (async () => {
      const failures: unknown[] = [];
      for (const step of [() => blobs.close(), () => backend.close?.(), () => !opts.nc && closeNats(nc)])
        await Promise.resolve()
          .then(step)
          .catch((err: unknown) => failures.push(err));
      if (failures.length > 0) throw failures[0];
    })());
  let member: PoolMember;
  try {
    member = new PoolMember({
      nc,
      pool: opts.pool,
      backend,
      id: opts.id,
      model: opts.backend.model,
      capacity: opts.capacity,
      blobs,
      healthCheck: opts.healthCheck,
      onHealthChange: opts.onHealthChange,
      onIdShared: opts.onIdShared,
    });
    await member.start();
  } catch (err) {
    await release();
    throw err;
  }
  return {
    member,
    nc,
    async stop() {
      try {
        await member.stop(opts.drainTimeoutMs);
      } finally {
        await release();
      }
    },
  };
}
