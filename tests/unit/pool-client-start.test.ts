// A router whose start failed (NATS unreachable at the time) starts again on the next call.
import type { NatsConnection } from '@nats-io/nats-core';
import { describe, expect, it } from 'vitest';
import { PoolClient } from '../../inference/pool-client.js';

/** Just enough of a connection for start(): subscriptions it counts, and a flush that fails while "disconnected". */
function fakeConnection() {
  const state = { connected: false, open: new Set<string>() };
  let n = 0;
  const nc = {
    subscribe(subject: string) {
      const id = `${subject}#${n++}`;
      state.open.add(id);
      return { getSubject: () => subject, unsubscribe: () => state.open.delete(id) };
    },
    publish() {},
    flush: () => (state.connected ? Promise.resolve() : Promise.reject(new Error('connection disconnected'))),
  };
  return { nc: nc as unknown as NatsConnection, state };
}

describe('PoolClient.start', () => {
  it('does not remember a failed start: its subscriptions are undone and the next call starts afresh', async () => {
    const { nc, state } = fakeConnection();
    const client = new PoolClient({ nc, pool: 'p', policy: 'round_robin' });
    await expect(client.start()).rejects.toThrow('connection disconnected');
    expect(state.open.size).toBe(0);
    state.connected = true;
    await client.start();
    // announce and leave (round_robin shares no placements); discover's inbox is gone again
    expect([...state.open].map((s) => s.split('#')[0])).toEqual([
      'muse.pool.p.announce',
      'muse.pool.p.leave',
    ]);
    client.close();
    expect(state.open.size).toBe(0);
  });
});
