// A router whose start failed (NATS unreachable at the time) starts again on the next call; one whose connection
// drops keeps its members through the outage.
import {
  ClosedConnectionError,
  type NatsConnection,
  NoRespondersError,
  RequestError,
} from '@nats-io/nats-core';
import { describe, expect, it } from 'vitest';
import type { BlobStore } from '../../common/blob-store.js';
import { PoolClient, PoolUnavailableError, RequestTooLargeError } from '../../inference/pool-client.js';
import type { CircuitBreaker } from '../../inference/router/breaker.js';
import { PrefixAffinityPolicy } from '../../inference/router/policies.js';
import { messagesPrefixKeys, packPrefixKeys } from '../../inference/router/prefix.js';
import { encodeWire, type MemberAnnouncementWire, subjects, WIRE_VERSION } from '../../inference/wire.js';

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

describe('PoolClient options', () => {
  it('takes a lease of 0 (none) or from 1 s to 1 h, naming the option otherwise', () => {
    const { nc } = fakeConnection();
    for (const leaseMs of [0, 1000, 3_600_000])
      expect(() => new PoolClient({ nc, pool: 'p', leaseMs })).not.toThrow();
    for (const leaseMs of [500, 3_600_001, 1.5e3 + 0.5])
      expect(() => new PoolClient({ nc, pool: 'p', leaseMs })).toThrow(
        /router leaseMs must be 0 \(no lease\) or/,
      );
  });
});

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

describe('PoolClient.generate before its first attempt', () => {
  it("ends with the caller's cancellation while the router's start still waits on NATS", async () => {
    const nc = {
      subscribe: (subject: string) => ({ getSubject: () => subject, unsubscribe() {} }),
      publish() {},
      flush: () => new Promise<void>(() => {}), // a server that never answers
    } as unknown as NatsConnection;
    const client = new PoolClient({ nc, pool: 'p', policy: 'round_robin' });
    const cancel = new AbortController();
    setTimeout(() => cancel.abort(new Error('activity cancelled')), 20);
    const params = { maxTokens: 8, temperature: 0, topLogprobs: 1 };
    await expect(
      client.generate([{ role: 'user', content: 'q' }], params, {
        deadline: Date.now() + 60_000,
        signal: cancel.signal,
      }),
    ).rejects.toThrow('activity cancelled');
    client.close();
  });

  const neverAnswers = () => new Promise<never>(() => {});
  const params = { maxTokens: 8, temperature: 0, topLogprobs: 1 };

  it('ends at its deadline, without a signal, while the router starts', async () => {
    const nc = {
      subscribe: (subject: string) => ({ getSubject: () => subject, unsubscribe() {} }),
      publish() {},
      flush: neverAnswers,
    } as unknown as NatsConnection;
    const client = new PoolClient({ nc, pool: 'p', policy: 'round_robin' });
    const started = Date.now();
    const request = client.generate([{ role: 'user', content: 'q' }], params, { deadline: started + 100 });
    await expect(request).rejects.toBeInstanceOf(PoolUnavailableError);
    await expect(request).rejects.toThrow(/deadline passed while the router started, before any attempt/);
    expect(Date.now() - started).toBeLessThan(2_000);
    client.close();
  });

  it('ends at its deadline while a large prompt is stored (a stream without a leader)', async () => {
    const { nc, state } = fakeConnection();
    state.connected = true;
    const blobs = { put: neverAnswers } as unknown as BlobStore;
    const client = new PoolClient({ nc, pool: 'p', policy: 'round_robin', blobs, inlineRequestBytes: 1024 });
    // Past the router's start (its discovery waits 250 ms for members).
    const request = client.generate([{ role: 'user', content: 'q'.repeat(4096) }], params, {
      deadline: Date.now() + 1_000,
    });
    await expect(request).rejects.toThrow(
      /deadline passed while the messages were stored, before any attempt/,
    );
    client.close();
  });
});

/**
 * A router (its TTL 3 s, its clock the test's) on a connection where the test plays the pool's members: `announce(id)`
 * delivers a member's announcement to the router's subscription. `extra` adds or replaces what the router calls on
 * its connection (status, flush, reconnect).
 */
function routerOnFakeConnection(
  extra: Record<string, unknown> = {},
  options: Partial<ConstructorParameters<typeof PoolClient>[0]> = {},
) {
  const callbacks = new Map<string, (err: Error | null, msg: { data: Uint8Array }) => void>();
  const nc = {
    subscribe(subject: string, opts?: { callback?: (err: Error | null, msg: { data: Uint8Array }) => void }) {
      if (opts?.callback) callbacks.set(subject, opts.callback);
      return { getSubject: () => subject, unsubscribe() {} };
    },
    publish() {},
    flush: () => Promise.resolve(),
    ...extra,
  } as unknown as NatsConnection;
  const announce = (id: string, more: Partial<MemberAnnouncementWire> = {}) => {
    const announcement: MemberAnnouncementWire = {
      v: WIRE_VERSION,
      id,
      pool: 'p',
      model: 'm',
      backend: 'sim',
      capacity: 8,
      inFlight: 1,
      queued: 0,
      cacheCapacityTokens: 0,
      cacheUsedTokens: 0,
      servedRequests: 0,
      ...more,
    };
    callbacks.get(subjects.announce('p'))!(null, { data: encodeWire(announcement) });
  };

  const clock = { now: 0 };
  const client = new PoolClient({
    nc,
    pool: 'p',
    policy: 'round_robin',
    memberTtlMs: 3000,
    now: () => clock.now,
    ...options,
  });
  /** The members the router knows. */
  const known = () => [...(client as unknown as { members: Map<string, unknown> }).members.keys()];
  /** A message on `subject` as the connection would hand it to the router's subscription. */
  const deliver = (subject: string, data: Uint8Array) => callbacks.get(subject)!(null, { data });
  return { client, clock, announce, known, deliver };
}

/** A connection whose status events the test emits (disconnect, reconnect). */
function statusEvents() {
  const events: { type: string }[] = [];
  let wake: (() => void) | undefined;
  return {
    async *status() {
      for (;;) {
        while (events.length > 0) yield events.shift()!;
        await new Promise<void>((r) => {
          wake = r;
        });
      }
    },
    emit: async (type: string) => {
      events.push({ type });
      wake?.();
      await new Promise((r) => setTimeout(r, 0));
    },
  };
}

/** Runs `clock` forward by `stepMs` every `everyMs` of real time, until the returned stop is called. */
function ticking(clock: { now: number }, stepMs: number, everyMs: number): () => void {
  const timer = setInterval(() => {
    clock.now += stepMs;
  }, everyMs);
  return () => clearInterval(timer);
}

/**
 * The router, started, with member gpu-0 last heard 4 s ago (past the 3 s TTL): its own connection down since, and
 * back 200 ms ago when `reconnected`.
 */
async function silentAfterOutage(
  router: ReturnType<typeof routerOnFakeConnection>,
  emit: (type: string) => Promise<void>,
  reconnected: boolean,
) {
  await router.client.start();
  router.announce('gpu-0');
  await emit('disconnect');
  router.clock.now += 4_000;
  if (!reconnected) return;
  await emit('reconnect');
  router.clock.now += 200; // members announce every second: not yet heard again
}

/**
 * Sweeps `client` every 500 ms of its clock up to `until`, as its timer would (a longer gap reads as a stalled
 * process); the check of its own connection that a sweep may start (a flush) completes between sweeps.
 */
async function sweepUntil(client: PoolClient, clock: { now: number }, until: number): Promise<void> {
  while (clock.now < until) {
    clock.now += 500;
    client.liveMembers();
    await new Promise((r) => setTimeout(r, 0));
  }
}

/** The router started with one member, `a`, whose circuit five failures opened and the cooldown made half-open. */
async function halfOpenMember(router: ReturnType<typeof routerOnFakeConnection>) {
  const { client, clock, announce } = router;
  await client.start();
  announce('a');
  const breaker = (client as unknown as { members: Map<string, { breaker: CircuitBreaker }> }).members.get(
    'a',
  )!.breaker;
  for (let i = 0; i < 5; i++) breaker.onFailure();
  expect(breaker.state).toBe('open');
  clock.now += 5_000;
  announce('a');
  expect(breaker.state).toBe('half_open');
  return { client, clock, breaker };
}

describe('PoolClient.generate whose onAttempt throws', () => {
  it("gives a half-open member's probe back: nothing was sent to it", async () => {
    const { client, clock, breaker } = await halfOpenMember(routerOnFakeConnection());
    const params = { maxTokens: 8, temperature: 0, topLogprobs: 1 };
    await expect(
      client.generate([{ role: 'user', content: 'q' }], params, {
        deadline: clock.now + 60_000,
        onAttempt: () => {
          throw new Error('hook failed');
        },
      }),
    ).rejects.toThrow('hook failed');
    expect(breaker.isAvailable()).toBe(true);
    client.close();
  });

  it("holds a half-open member's probe past the attempt's timeout, until that attempt's own timer has fired", async () => {
    const { client, clock, breaker } = await halfOpenMember(
      routerOnFakeConnection({ request: () => new Promise(() => {}) }),
    );
    const attemptTimeoutMs = 20_000;
    void client
      .generate([{ role: 'user', content: 'q' }], PARAMS, { deadline: clock.now + attemptTimeoutMs })
      .catch(() => {});
    await new Promise((r) => setTimeout(r, 10));
    expect(breaker.isAvailable()).toBe(false);
    // When that attempt's own timer fires (a moment after the probe was taken), no second probe may have gone out.
    clock.now += attemptTimeoutMs;
    expect(breaker.isAvailable()).toBe(false);
    client.close();
  });
});

describe('PoolClient.generate cancelled by its onAttempt hook', () => {
  it('sends nothing', async () => {
    let sent = 0;
    const { client, announce } = routerOnFakeConnection({
      request: () => {
        sent++;
        return new Promise(() => {});
      },
    });
    await client.start();
    announce('a');
    const cancel = new AbortController();
    await expect(
      client.generate([{ role: 'user', content: 'q' }], PARAMS, {
        deadline: Date.now() + 60_000,
        signal: cancel.signal,
        onAttempt: () => cancel.abort(new Error('cancelled in the hook')),
      }),
    ).rejects.toThrow('cancelled in the hook');
    expect(sent).toBe(0);
    client.close();
  });
});

describe('PoolClient across a NATS outage', () => {
  it('keeps members it cannot hear while its connection is down, and gives them a TTL to announce once it is back', async () => {
    const { status, emit } = statusEvents();
    const { client, clock, announce, known } = routerOnFakeConnection({ status });
    await client.start();
    announce('gpu-0');
    await emit('disconnect');
    await sweepUntil(client, clock, 20_000);
    expect(known(), 'dropped while the connection was down').toEqual(['gpu-0']);
    await emit('reconnect');
    await sweepUntil(client, clock, 22_000);
    expect(known(), 'dropped before it could announce again').toEqual(['gpu-0']);
    await sweepUntil(client, clock, 24_000);
    expect(known(), 'kept past a TTL after the reconnect without a word from it').toEqual([]);
    client.close();
  });
});

describe('PoolClient hearing no member at all', () => {
  it('checks its own connection before dropping them: redone when a flush goes unanswered, dropped once one is answered', async () => {
    let flushAnswers = true;
    let reconnects = 0;
    const { client, clock, announce, known } = routerOnFakeConnection({
      // A connection that died unnoticed: what is written goes nowhere, and no PONG comes back.
      flush: () => (flushAnswers ? Promise.resolve() : new Promise<void>(() => {})),
      reconnect: async () => {
        reconnects++;
      },
    });
    await client.start();
    announce('gpu-0');
    announce('gpu-1');
    flushAnswers = false;
    await sweepUntil(client, clock, 10_000);
    expect(known(), 'dropped while its own connection was in doubt').toEqual(['gpu-0', 'gpu-1']);
    // The check gives the flush 2 s of real time, then has the connection redone.
    await new Promise((r) => setTimeout(r, 2_300));
    expect(reconnects).toBe(1);
    expect(known()).toEqual(['gpu-0', 'gpu-1']);
    // The connection answers: the members' silence is their own, and they go.
    flushAnswers = true;
    await sweepUntil(client, clock, 11_000);
    expect(known()).toEqual([]);
    client.close();
  });
});

const PARAMS = { maxTokens: 8, temperature: 0, topLogprobs: 1 };

describe('PoolClient.generate refused by its own connection', () => {
  it('names the inline limit when a request is still too large with its messages stored by reference', async () => {
    const sent: string[] = [];
    const { client } = routerOnFakeConnection({
      info: { max_payload: 64 * 1024 },
      request: (subject: string) => {
        sent.push(subject);
        return Promise.reject(new Error('max_payload exceeded'));
      },
    });
    const stored: unknown[] = [];
    (client as unknown as { opts: { blobs: BlobStore } }).opts.blobs = {
      put: async (_namespace: string, value: unknown) => {
        stored.push(value);
        return `obj:requests:${'0'.repeat(64)}`;
      },
    } as unknown as BlobStore;
    const stop = ['x'.repeat(100 * 1024)];
    const generate = client.generate(
      [{ role: 'user', content: 'q'.repeat(100 * 1024) }],
      { ...PARAMS, stop },
      {
        deadline: Date.now() + 60_000,
      },
    );
    await expect(generate).rejects.toBeInstanceOf(RequestTooLargeError);
    await expect(generate).rejects.toThrow(
      /without its messages .* still exceeds the inline limit of \d+ bytes/,
    );
    expect(sent).toEqual([]);
    // Refused before its messages were stored: nothing is left in the store that no request refers to.
    expect(stored).toEqual([]);
    client.close();
  });

  it('fails at once on a closed connection, counting it against no member', async () => {
    let attempts = 0;
    const { client, announce, known } = routerOnFakeConnection({
      request: () => {
        attempts++;
        return Promise.reject(new ClosedConnectionError());
      },
    });
    await client.start();
    announce('gpu-0');
    const generate = client.generate([{ role: 'user', content: 'q' }], PARAMS, {
      deadline: Date.now() + 60_000,
    });
    await expect(generate).rejects.toBeInstanceOf(PoolUnavailableError);
    await expect(generate).rejects.toThrow(
      /pool 'p': this router's NATS connection refused the request .*closed/i,
    );
    expect(attempts).toBe(1);
    expect(known()).toEqual(['gpu-0']);
    const breaker = (
      client as unknown as { members: Map<string, { breaker: { consecutiveFailures: number } }> }
    ).members.get('gpu-0')!.breaker;
    expect(breaker.consecutiveFailures).toBe(0);
    client.close();
  });
});

describe('PoolClient hearing no responders', () => {
  const noResponders = (subject: string) =>
    Promise.reject(new RequestError('no responders', { cause: new NoRespondersError(subject) }));

  it('takes a member whose subject nobody listens on out of rotation until it announces itself again', async () => {
    // The real clock, for the wait below to end at the request's deadline (a TTL the test does not reach).
    const { client, announce, known } = routerOnFakeConnection(
      { request: noResponders },
      { now: Date.now, memberTtlMs: 60_000 },
    );
    await client.start();
    announce('gpu-0');
    announce('gpu-1');
    // With both out of rotation the request waits for their announcements, within its deadline (short here).
    const failure = client.generate([{ role: 'user', content: 'q' }], PARAMS, {
      deadline: Date.now() + 600,
    });
    await expect(failure).rejects.toThrow(
      /waited for members' announcements \(no responders on their subjects, as while their connections are redone\)/,
    );
    await expect(failure).rejects.toBeInstanceOf(PoolUnavailableError);
    // Known still (what it holds stays with it), but not sent anything.
    expect(known()).toEqual(['gpu-0', 'gpu-1']);
    const healthy = () => Object.fromEntries(client.liveMembers().map((m) => [m.id, m.healthy]));
    expect(healthy()).toEqual({ 'gpu-0': false, 'gpu-1': false });
    announce('gpu-1');
    expect(healthy()).toEqual({ 'gpu-0': false, 'gpu-1': true });
    // Past the breaker's five failures, each member back at its announcement: none of them counted.
    for (let round = 0; round < 4; round++) {
      announce('gpu-0');
      announce('gpu-1');
      await expect(
        client.generate([{ role: 'user', content: 'q' }], PARAMS, { deadline: Date.now() + 600 }),
      ).rejects.toBeInstanceOf(PoolUnavailableError);
    }
    announce('gpu-0');
    announce('gpu-1');
    expect(healthy()).toEqual({ 'gpu-0': true, 'gpu-1': true });
    client.close();
  });

  it('keeps its members just after its own reconnect, before they could subscribe again', async () => {
    const { status, emit } = statusEvents();
    const { client, announce, known } = routerOnFakeConnection({ request: noResponders, status });
    await client.start();
    announce('gpu-0');
    announce('gpu-1');
    for (const type of ['disconnect', 'reconnect']) await emit(type);
    await expect(
      client.generate([{ role: 'user', content: 'q' }], PARAMS, { deadline: Date.now() + 60_000 }),
    ).rejects.toBeInstanceOf(PoolUnavailableError);
    expect(known()).toEqual(['gpu-0', 'gpu-1']);
    client.close();
  });
});

/** A member's answer as it comes back over NATS. */
function replyFrom(memberId: string, outcome: { error: { code: string; message: string } } | 'ok') {
  return {
    data: encodeWire(
      outcome === 'ok'
        ? {
            v: WIRE_VERSION,
            ok: true,
            id: 'r',
            generation: {
              text: 'done',
              entropies: new Float32Array(0),
              regions: { think_ppl: null, tool_call_ppl: null, all_ppl: null },
              usage: { promptTokens: 1, cachedPromptTokens: 0, completionTokens: 1 },
              finishReason: 'stop',
              model: 'm',
              memberId,
            },
          }
        : { v: WIRE_VERSION, ok: false, id: 'r', error: { ...outcome.error, retryable: true } },
    ),
  };
}

describe('PoolClient.generate while its members are silent for its own reconnect', () => {
  it('waits for their announcements instead of spending its attempts, then sends', async () => {
    const sent: string[] = [];
    const { status, emit } = statusEvents();
    const router = routerOnFakeConnection({
      status,
      request: (subject: string) => {
        sent.push(subject);
        return Promise.resolve(replyFrom('gpu-0', 'ok'));
      },
    });
    const { client, announce } = router;
    await silentAfterOutage(router, emit, true);
    const started = Date.now();
    const generate = client.generate([{ role: 'user', content: 'q' }], PARAMS, {
      deadline: Date.now() + 60_000,
    });
    // Before the fix the request failed here, 0 sent, in about 250 ms: "no member in rotation (gpu-0: circuit closed)".
    setTimeout(() => announce('gpu-0'), 600);
    const g = await generate;
    expect(g.memberId).toBe('gpu-0');
    expect(sent).toHaveLength(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
    client.close();
  });

  it('names the silence and the deadline when none is heard before it passes', async () => {
    const { status, emit } = statusEvents();
    const router = routerOnFakeConnection({ status, request: () => new Promise(() => {}) });
    const { client, clock } = router;
    await silentAfterOutage(router, emit, true);
    // The router's clock is the test's: it runs 100 ms per 20 ms here, the hold (3 s from the reconnect) outlasting
    // the request's deadline.
    const generate = client.generate([{ role: 'user', content: 'q' }], PARAMS, {
      deadline: clock.now + 400,
    });
    const stop = ticking(clock, 100, 20);
    await expect(generate).rejects.toBeInstanceOf(PoolUnavailableError).finally(stop);
    await expect(generate).rejects.toThrow(
      /after 0 request\(s\) sent, when the request's deadline passed: waited for members' announcements/,
    );
    client.close();
  });
});

describe('PoolClient.generate while its connection stays down', () => {
  it('waits two TTLs for members it cannot hear, then fails for Temporal to retry, naming their silence', async () => {
    const { status, emit } = statusEvents();
    let sent = 0;
    const router = routerOnFakeConnection({
      status,
      request: () => {
        sent++;
        return new Promise(() => {});
      },
    });
    const { client, clock } = router;
    await silentAfterOutage(router, emit, false);
    const generate = client.generate([{ role: 'user', content: 'q' }], PARAMS, {
      deadline: clock.now + 600_000,
    });
    const stop = ticking(clock, 200, 5);
    await expect(generate)
      .rejects.toThrow(
        /after 0 request\(s\) sent: waited for members' announcements .*; no member in rotation \(1 known; gpu-0: not heard from for \d+ ms\)/,
      )
      .finally(stop);
    // Failed within the two TTLs (6 s of its clock) and the attempts' backoff, not at the deadline 10 minutes off.
    expect(clock.now).toBeLessThan(4_000 + 60_000);
    expect(sent).toBe(0);
    client.close();
  });
});

describe('PoolClient.generate whose request is lost on the way', () => {
  it('sends it again at once without spending an attempt: a loss after three overloaded answers still succeeds', async () => {
    const answers = [
      { error: { code: 'overloaded', message: 'queue full' } },
      { error: { code: 'overloaded', message: 'queue full' } },
      { error: { code: 'overloaded', message: 'queue full' } },
      { error: { code: 'lease_expired', message: 'router not heard from for 10000 ms' } },
      'ok' as const,
    ];
    let n = 0;
    const { client, announce } = routerOnFakeConnection({
      request: () => Promise.resolve(replyFrom('gpu-0', answers[n++]!)),
    });
    await client.start();
    announce('gpu-0');
    const g = await client.generate([{ role: 'user', content: 'q' }], PARAMS, {
      deadline: Date.now() + 60_000,
    });
    expect(g.memberId).toBe('gpu-0');
    expect(n).toBe(5);
    client.close();
  });

  it('counts losses past the first two as attempts, so a member that keeps losing them still ends the request', async () => {
    let n = 0;
    const { client, announce } = routerOnFakeConnection({
      request: () => {
        n++;
        return Promise.resolve(replyFrom('gpu-0', { error: { code: 'lease_expired', message: 'lost' } }));
      },
    });
    await client.start();
    announce('gpu-0');
    const generate = client.generate([{ role: 'user', content: 'q' }], PARAMS, {
      deadline: Date.now() + 60_000,
    });
    await expect(generate).rejects.toThrow(
      /after 6 request\(s\) sent: gpu-0: gpu-0 stopped the request: lost/,
    );
    expect(n).toBe(6); // two free resends, then the four attempts
    client.close();
  });
});

describe('PoolClient placements', () => {
  it("shares none for a request served by a process since replaced under the member's id", async () => {
    const placed: string[] = [];
    let answer: ((m: { data: Uint8Array }) => void) | undefined;
    const { client, announce } = routerOnFakeConnection(
      {
        publish: (subject: string) => {
          if (subject === subjects.placed('p')) placed.push(subject);
        },
        request: () =>
          new Promise((r) => {
            answer = r;
          }),
      },
      { policy: 'prefix_affinity' },
    );
    await client.start();
    announce('gpu-0', { instance: 'first' });
    const generate = client.generate([{ role: 'user', content: 'q'.repeat(4_000) }], PARAMS, {
      deadline: Date.now() + 60_000,
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(answer).toBeDefined();
    // A rolling update under a fixed id: the old process leaves (finishing what it holds), its replacement announces.
    announce('gpu-0', { instance: 'first', leaving: true });
    announce('gpu-0', { instance: 'second' });
    answer!(replyFrom('gpu-0', 'ok'));
    expect((await generate).memberId).toBe('gpu-0');
    // The replacement's cache is cold: other routers must not be told it holds the prompt.
    expect(placed).toEqual([]);
    client.close();
  });
});

describe("PoolClient hearing other routers' placements", () => {
  it('records one only for the process it knows under the id, not for one since replaced there', async () => {
    const policy = new PrefixAffinityPolicy();
    const { client, announce, deliver } = routerOnFakeConnection({}, { policy });
    await client.start();
    announce('gpu-0', { instance: 'second' });
    announce('gpu-1', { instance: 'other' });
    const messages = [{ role: 'user' as const, content: 'q'.repeat(4_000) }];
    const keys = messagesPrefixKeys(messages);
    const placement = (instance?: string) =>
      deliver(
        subjects.placed('p'),
        encodeWire({
          v: WIRE_VERSION,
          router: 'peer',
          member: 'gpu-0',
          keys: packPrefixKeys(keys),
          ...(instance ? { instance } : {}),
        }),
      );
    const decision = () => {
      policy.rank({ prefixKeys: keys }, client.liveMembers());
      return policy.lastDecision;
    };
    // Served by the process gpu-0 ran before 'second' (the peer had not heard of the restart): cold.
    placement('first');
    expect(decision()).toBe('cold_least_loaded');
    // Served by the process it knows, or by a peer too old to say which: recorded.
    placement('second');
    expect(decision()).toBe('affinity');
    client.close();
  });
});

describe('PoolClient and a member that is leaving', () => {
  async function leavingWithWorkInHand() {
    const harness = routerOnFakeConnection({ request: () => new Promise(() => {}) });
    await harness.client.start();
    harness.announce('gpu-0', { instance: 'one' });
    void harness.client
      .generate([{ role: 'user', content: 'q' }], PARAMS, { deadline: Date.now() + 600_000 })
      .catch(() => {});
    await new Promise((r) => setTimeout(r, 10));
    return harness;
  }

  it('awaits what it finishes for as long as it says it drains, while it says so, and not once it falls silent', async () => {
    const { client, clock, announce, known } = await leavingWithWorkInHand();
    const leave = () => announce('gpu-0', { instance: 'one', leaving: true, drainMs: 60_000 });
    leave();
    // Past the 15 s a member that does not say gets, saying it again every second: still awaited.
    for (let s = 0; s < 30; s++) {
      clock.now += 1_000;
      leave();
      client.liveMembers();
    }
    expect(known()).toEqual(['gpu-0']);
    // Silent for a TTL (3 s): it died while finishing, and what it held fails over now, not at 65 s. (Swept every
    // half second: a longer gap between sweeps reads as this router having stalled, which holds drops a moment. The
    // only member silent, the router first checks its own connection: answered at once here.)
    for (let ms = 0; ms < 4_000; ms += 500) {
      clock.now += 500;
      client.liveMembers();
      await new Promise((r) => setTimeout(r, 0));
    }
    expect(known()).toEqual([]);
    client.close();
  });

  it("keeps it while its silence may be this router's connection (a check of the connection unanswered)", async () => {
    // The connection answers until the member has said it leaves, then no check of it is answered.
    let answering = true;
    const harness = routerOnFakeConnection({
      request: () => new Promise(() => {}),
      flush: () => (answering ? Promise.resolve() : new Promise(() => {})),
    });
    const { client, clock, announce, known } = harness;
    await client.start();
    announce('gpu-0', { instance: 'one' });
    void client
      .generate([{ role: 'user', content: 'q' }], PARAMS, { deadline: Date.now() + 600_000 })
      .catch(() => {});
    await new Promise((r) => setTimeout(r, 10));
    announce('gpu-0', { instance: 'one', leaving: true, drainMs: 60_000 });
    answering = false;
    for (let ms = 0; ms < 6_000; ms += 500) {
      clock.now += 500;
      client.liveMembers();
      await new Promise((r) => setTimeout(r, 0));
    }
    expect(known()).toEqual(['gpu-0']);
    client.close();
  });

  it('gives a member that does not say how long it drains (an older one, saying it once) 15 s', async () => {
    const { client, clock, announce, known } = await leavingWithWorkInHand();
    announce('gpu-0', { instance: 'one', leaving: true });
    const sweepFor = (ms: number) => {
      for (let t = 0; t < ms; t += 500) {
        clock.now += 500;
        client.liveMembers();
      }
    };
    // Not dropped at its TTL although it says nothing more: it never says it again.
    sweepFor(14_000);
    expect(known()).toEqual(['gpu-0']);
    sweepFor(1_500);
    expect(known()).toEqual([]);
    client.close();
  });
});

describe('PoolClient.generate that runs into its own deadline', () => {
  it('keeps what it routed recorded: the member read the prompt and may hold it, unlike one it turned away', async () => {
    const policy = new PrefixAffinityPolicy();
    const messages = [{ role: 'user' as const, content: 'q'.repeat(4_000) }];
    const keys = messagesPrefixKeys(messages);
    for (const [code, kept] of [
      ['deadline_exceeded', true],
      ['overloaded', false],
    ] as const) {
      const { client, clock, announce } = routerOnFakeConnection(
        { request: () => Promise.resolve(replyFrom('gpu-0', { error: { code, message: 'no' } })) },
        { policy },
      );
      await client.start();
      announce('gpu-0');
      // The request's deadline, 1 s off, is shorter than the attempt limit: its attempt ends with it.
      const generate = client.generate(messages, PARAMS, { deadline: clock.now + 1_000 });
      const stop = ticking(clock, 200, 5);
      await expect(generate).rejects.toBeInstanceOf(PoolUnavailableError).finally(stop);
      expect(policy.index.matchLength('gpu-0', keys) > 0, code).toBe(kept);
      client.close();
      policy.onMemberGone('gpu-0');
    }
  });
});
