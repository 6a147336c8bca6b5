// The pool router against real NATS: members joining at run time get work, a member whose replies cannot be
// decoded is failed over rather than crashing the caller, and oversized requests are refused up front.
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type ServerResponse } from 'node:http';
import { type AddressInfo, connect as connectTcp, createServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/nats-core';
import { describe, expect, it } from 'vitest';
import { reactSystemPrompt } from '../../agent/prompts.js';
import type { ChatMessage } from '../../agent/types.js';
import { BlobStore } from '../../common/blob-store.js';
import { connectNats } from '../../common/nats.js';
import {
  BackendHttpError,
  BackendProtocolError,
  HealthCheckUnsupportedError,
} from '../../inference/backends/http.js';
import { createBackend } from '../../inference/backends/index.js';
import type { HealthCheckOptions } from '../../inference/health.js';
import { PoolMember } from '../../inference/member.js';
import { BackendRejectedError, PoolClient, RequestTooLargeError } from '../../inference/pool-client.js';
import {
  PrefixAffinityPolicy,
  type RoutingPolicy,
  rendezvousScore,
} from '../../inference/router/policies.js';
import { messagesPrefixKeys } from '../../inference/router/prefix.js';
import { BackendDeadlineError, ContextLengthError } from '../../inference/types.js';
import {
  decodeWire,
  encodeWire,
  GenerateRequestWire,
  HeldWire,
  HoldsWire,
  MemberAnnouncementWire,
  subjects,
  WIRE_VERSION,
} from '../../inference/wire.js';
import { SimBackend } from '../../sim/backend.js';
import { startSimHttpServer } from '../../sim/http.js';
import { sampleQuestions } from '../../sim/world.js';
import { inProcessMember, useSuite, waitUntil, withMaxPayload } from '../helpers/stack.js';

const suite = useSuite();
const { cfg, cleanups } = suite;

const questions = sampleQuestions(32, 5);
function messages(i: number): ChatMessage[] {
  return [
    { role: 'system', content: reactSystemPrompt('2025-06-01') },
    { role: 'user', content: questions[i % questions.length]!.question },
  ];
}
const params = { maxTokens: 32, temperature: 1, topLogprobs: 16 };
const deadline = () => Date.now() + 20_000;

/** A generate request as a router sends it, for tests that speak to a member's subject themselves. */
const wireRequest = (pool: string) =>
  encodeWire({
    v: WIRE_VERSION,
    id: randomUUID(),
    pool,
    messages: messages(2),
    params: { maxTokens: 8, temperature: 1, topLogprobs: 1 },
    deadline: Date.now() + 60_000,
  });

function client(pool: string, extra: Partial<ConstructorParameters<typeof PoolClient>[0]> = {}): PoolClient {
  const c = new PoolClient({ nc: suite.nc, pool, memberTtlMs: cfg.router.memberTtlMs, ...extra });
  cleanups.push(() => c.close());
  return c;
}

async function member(pool: string, id: string) {
  const m = await inProcessMember(cfg, { backend: 'sim', timeScale: 0.05 }, { pool, id });
  cleanups.push(() => m.stop());
  return m;
}

/** Sticky keys the rendezvous hash gives to `id` over `other` (the first `n` of 256), so requests go to `id` first. */
function keysFor(id: string, other: string, n: number): string[] {
  const keys = Array.from({ length: 256 }, (_, i) => `k${i}`)
    .filter((k) => rendezvousScore(k, id) > rendezvousScore(k, other))
    .slice(0, n);
  if (keys.length < n) throw new Error(`only ${keys.length} of 256 keys prefer ${id} over ${other}`);
  return keys;
}
const keyFor = (id: string, other: string) => keysFor(id, other, 1)[0]!;

/**
 * A started member of `pool` serving the simulator, whose first generation waits for `release()`: a request the test
 * knows to be in the member's hands.
 */
async function gatedMember(pool: string, id: string, nc: NatsConnection = suite.nc) {
  const sim = new SimBackend({ profile: { timeScale: 0 } });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let calls = 0;
  const m = new PoolMember({
    nc,
    pool,
    id,
    backend: {
      kind: 'gated-sim',
      async generate(req, signal) {
        if (++calls === 1) await gate;
        return sim.generate(req, signal);
      },
    },
  });
  await m.start();
  cleanups.push(() => m.stop(100));
  return { member: m, release, calls: () => calls };
}

describe('pool routing', () => {
  it('a member added at run time starts receiving work', async () => {
    const pool = `join-${randomUUID().slice(0, 8)}`;
    const first = await member(pool, 'first');
    const c = client(pool, { policy: 'least_loaded' });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'first member live');
    for (let i = 0; i < 4; i++) {
      const g = await c.generate(messages(i), params, { deadline: deadline() });
      expect(g.memberId).toBe('first');
    }

    const second = await member(pool, 'second');
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'second member live');
    const gens = await Promise.all(
      Array.from({ length: 16 }, (_, i) => c.generate(messages(i), params, { deadline: deadline() })),
    );
    expect(gens.every((g) => g.text.length > 0)).toBe(true);
    expect(second.member.stats.served).toBeGreaterThan(0);
    expect(first.member.stats.served).toBeGreaterThan(4);
    expect(gens.filter((g) => g.memberId === 'second').length).toBe(second.member.stats.served);
  });

  it('an undecodable reply counts as that member failing, and the request is served by another', async () => {
    const pool = `bogus-${randomUUID().slice(0, 8)}`;
    let bogusCalls = 0;
    const sub = suite.nc.subscribe(subjects.member(pool, 'bogus'), {
      callback: (err, msg) => {
        if (err) return;
        bogusCalls++;
        msg.respond(new Uint8Array([0xc1, 0xff, 0x00, 0x13, 0x37])); // 0xc1 is never valid msgpack
      },
    });
    cleanups.push(() => sub.unsubscribe());
    const announcement: MemberAnnouncementWire = {
      v: WIRE_VERSION,
      id: 'bogus',
      pool,
      model: 'muse-sim',
      backend: 'sim',
      capacity: 64,
      inFlight: 0,
      queued: 0,
      cacheCapacityTokens: 0,
      cacheUsedTokens: 0,
      servedRequests: 0,
    };
    const announce = () => suite.nc.publish(subjects.announce(pool), encodeWire(announcement));
    const timer = setInterval(announce, 300);
    cleanups.push(() => clearInterval(timer));

    const real = await member(pool, 'real');
    const c = client(pool, { policy: 'round_robin' });
    await c.start();
    announce();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');

    const gens: { memberId: string }[] = [];
    for (let i = 0; i < 6; i++) gens.push(await c.generate(messages(i), params, { deadline: deadline() }));
    expect(bogusCalls).toBeGreaterThan(0);
    expect(gens.every((g) => g.memberId === 'real')).toBe(true);
    expect(real.member.stats.served).toBe(6);
  });

  it('a request over the size limit is rejected with RequestTooLargeError naming the limit', async () => {
    const pool = `large-${randomUUID().slice(0, 8)}`;
    const m = await member(pool, 'only');
    const c = client(pool, { maxRequestBytes: 1000 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    const big: ChatMessage[] = [
      { role: 'system', content: 'x'.repeat(2000) },
      { role: 'user', content: questions[0]!.question },
    ];
    const err = await c.generate(big, params, { deadline: deadline() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RequestTooLargeError);
    expect((err as Error).message).toMatch(/1000 bytes/);
    expect(m.member.stats.served).toBe(0);
    // A request under the limit still goes through.
    const ok = await c.generate([{ role: 'user', content: questions[1]!.question }], params, {
      deadline: deadline(),
    });
    expect(ok.memberId).toBe('only');
  });

  it("a request too large to send inline goes by reference, stored in its job's namespace", async () => {
    const pool = `byref-${randomUUID().slice(0, 8)}`;
    const m = await member(pool, 'only');
    const blobs = new BlobStore(suite.nc);
    const c = client(pool, { inlineRequestBytes: 1000, blobs });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    const namespace = `job-byref-${randomUUID().slice(0, 8)}`;
    const big: ChatMessage[] = [
      { role: 'system', content: reactSystemPrompt('2025-06-01') },
      { role: 'user', content: `${questions[2]!.question} ${'context '.repeat(300)}` },
    ];
    const g = await c.generate(big, params, { deadline: deadline(), blobNamespace: namespace });
    expect(g.memberId).toBe('only');
    expect(g.usage.promptTokens).toBeGreaterThan(300);
    expect(m.member.stats.served).toBe(1);
    // Deleting the job deletes the body: it was not left in a namespace nothing deletes.
    expect((await blobs.deleteNamespace(namespace)).deleted.length).toBeGreaterThan(0);
  });

  it("a request larger than the server's max_payload goes by reference whatever inlineRequestBytes says", async () => {
    const pool = `maxpayload-${randomUUID().slice(0, 8)}`;
    const m = await member(pool, 'only');
    // A server that takes 17 KiB per message (less 16 KiB for headers: 1 KiB inline), seen through the client's
    // connection only; the inline limit configured is far above it.
    const smallServer = withMaxPayload(suite.nc, 17 * 1024);
    const blobs = new BlobStore(suite.nc);
    const c = client(pool, { nc: smallServer, inlineRequestBytes: 4 * 1024 * 1024, blobs });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    const namespace = `job-maxpayload-${randomUUID().slice(0, 8)}`;
    const big: ChatMessage[] = [
      { role: 'user', content: `${questions[2]!.question} ${'context '.repeat(300)}` },
    ];
    const g = await c.generate(big, params, { deadline: deadline(), blobNamespace: namespace });
    expect(g.memberId).toBe('only');
    expect(m.member.stats.served).toBe(1);
    // The body was stored for the member to read, not sent inline.
    expect((await blobs.deleteNamespace(namespace)).deleted.length).toBeGreaterThan(0);
    blobs.close();
  });

  it('routers share placements: a prefix served through one router is followed by the others', async () => {
    const pool = `share-${randomUUID().slice(0, 8)}`;
    await Promise.all(['a', 'b', 'c'].map((id) => member(pool, id)));
    // A sticky key whose rendezvous member is not 'a', where a router that knows nothing sends a cold request
    // without a sticky key (least loaded, ties by id).
    const top = (k: string) =>
      ['a', 'b', 'c'].sort((x, y) => rendezvousScore(k, y) - rendezvousScore(k, x))[0];
    const stickyKey = Array.from({ length: 64 }, (_, i) => `q${i}`).find((k) => top(k) === 'b')!;
    const long: ChatMessage[] = [...messages(0), { role: 'assistant', content: 'notes '.repeat(800) }];
    const next: ChatMessage[] = [...long, { role: 'user', content: 'and the next turn' }];

    const first = client(pool);
    const peer = new PrefixAffinityPolicy();
    const second = client(pool, { policy: peer });
    const isolated = client(pool, { sharePlacements: false });
    await Promise.all([first, second, isolated].map((c) => c.start()));
    await waitUntil(
      () => [first, second, isolated].every((c) => c.liveMembers().length === 3),
      10_000,
      'three members live for every router',
    );
    // Garbage on the placement subject is ignored.
    suite.nc.publish(subjects.placed(pool), new Uint8Array([0xc1, 0xff, 0x00]));
    suite.nc.publish(
      subjects.placed(pool),
      encodeWire({ v: WIRE_VERSION, router: 'x', member: 'a', keys: 'nope' }),
    );

    const g = await first.generate(long, params, { deadline: deadline(), stickyKey });
    expect(g.memberId).toBe('b');
    const keys = messagesPrefixKeys(next);
    await waitUntil(
      () => peer.index.matchLength('b', keys) > 0,
      5_000,
      'the placement to reach the second router',
    );
    expect(peer.index.matchLength('a', keys)).toBe(0);

    expect((await second.generate(next, params, { deadline: deadline() })).memberId).toBe('b');
    expect(peer.lastDecision).toBe('affinity');
    // A router that does not share placements has no idea where the prefix is.
    expect((await isolated.generate(next, params, { deadline: deadline() })).memberId).toBe('a');
  });

  it('a request a member had not yet read when it stopped is answered shutting_down and fails over at once', async () => {
    const pool = `stopread-${randomUUID().slice(0, 8)}`;
    const own = await connectNats(cfg, 'stopping-member');
    cleanups.push(() => own.close());
    const a = new PoolMember({
      nc: own,
      pool,
      id: 'a',
      backend: new SimBackend({ profile: { timeScale: 0 } }),
    });
    await a.start();
    cleanups.push(() => a.stop(100));
    await member(pool, 'b');
    const c = client(pool, { policy: 'round_robin' });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');
    // Member a's inbound bytes wait in its socket (one network hop's delay) while the request goes to it.
    const socket = (
      own as unknown as { protocol: { transport: { socket: { pause(): void; resume(): void } } } }
    ).protocol.transport.socket;
    socket.pause();
    const attempts: (string | undefined)[] = [];
    const started = Date.now();
    const reply = c.generate(messages(3), params, {
      deadline: deadline(),
      onAttempt: (m) => attempts.push(m),
    });
    await waitUntil(() => attempts.length === 1, 5_000, 'first attempt sent');
    await suite.nc.flush();
    await new Promise((r) => setTimeout(r, 50));
    const stopping = a.stop(5_000);
    socket.resume();
    const g = await reply;
    await stopping;
    // Sent to a first (round_robin's first choice here); not waited out for the 15 s a leaving member's requests
    // get: answered shutting_down, tried on b.
    expect(attempts).toEqual(['a', 'b']);
    expect(g.memberId).toBe('b');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('a member whose connection is already closed stops without throwing', async () => {
    const own = await connectNats(cfg, 'closed-member');
    const m = new PoolMember({
      nc: own,
      pool: `closed-${randomUUID().slice(0, 8)}`,
      id: 'gone',
      backend: new SimBackend({ profile: { timeScale: 0 } }),
    });
    await m.start();
    await own.close();
    await expect(m.stop(1_000)).resolves.toBeUndefined();
  });

  it("a leave from a member's earlier process does not take its replacement out of rotation", async () => {
    const pool = `oldleave-${randomUUID().slice(0, 8)}`;
    const backend = () => new SimBackend({ profile: { timeScale: 0 } });
    // No heartbeats during the test, from either process: the old one's would take the router back to it before the
    // leave, and the replacement's would put gpu0 back in rotation however the leave was taken. The router keeps
    // members it does not hear from for the whole test.
    const old = new PoolMember({
      nc: suite.nc,
      pool,
      id: 'gpu0',
      backend: backend(),
      announceIntervalMs: 60_000,
    });
    await old.start();
    cleanups.push(() => old.stop(100));
    const c = client(pool, { memberTtlMs: 60_000 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'old process live');
    // The replacement under the same id announces while the old process still runs (a blue/green deploy).
    const replacement = new PoolMember({
      nc: suite.nc,
      pool,
      id: 'gpu0',
      backend: backend(),
      announceIntervalMs: 60_000,
    });
    await replacement.start();
    cleanups.push(() => replacement.stop(100));
    const instanceOf = () =>
      (c as unknown as { members: Map<string, { info: { instance?: string } }> }).members.get('gpu0')?.info
        .instance;
    const newInstance = (replacement as unknown as { instance: string }).instance;
    await waitUntil(() => instanceOf() === newInstance, 10_000, 'replacement known');
    await old.stop(100);
    // The leave went out on this connection, where the router listens: read by the time the flush returns.
    await suite.nc.flush();
    expect(c.liveMembers().map((m) => m.id)).toEqual(['gpu0']);
    expect((await c.generate(messages(4), params, { deadline: deadline() })).memberId).toBe('gpu0');
  });

  it('two live processes under one id are each told of the other, once, naming it', async () => {
    const pool = `twins-${randomUUID().slice(0, 8)}`;
    const told: string[][] = [[], []];
    const twins = [0, 1].map(
      (i) =>
        new PoolMember({
          nc: suite.nc,
          pool,
          id: 'twin',
          backend: new SimBackend({ profile: { timeScale: 0 } }),
          onIdShared: (other) => told[i]!.push(other),
        }),
    );
    for (const t of twins) {
      await t.start();
      cleanups.push(() => t.stop(100));
    }
    const instances = twins.map((t) => (t as unknown as { instance: string }).instance);
    await waitUntil(() => told[0]!.length > 0 && told[1]!.length > 0, 5_000, 'each twin told of the other');
    // Told once each, naming the other process, however many announcements it hears.
    await new Promise((r) => setTimeout(r, 1_200));
    expect(told).toEqual([[instances[1]], [instances[0]]]);
  });

  it("a reply over the server's max_payload is refused for good, naming the limit, not generated again on every member", async () => {
    const pool = `bigreply-${randomUUID().slice(0, 8)}`;
    const own = await connectNats(cfg, 'small-payload-member');
    cleanups.push(() => own.close());
    // The member sees a server that takes 64 KiB per message; its replies here are larger.
    const small = withMaxPayload(own, 64 * 1024);
    let generations = 0;
    const sim = new SimBackend({ profile: { timeScale: 0 } });
    const m = new PoolMember({
      nc: small,
      pool,
      id: 'big',
      backend: {
        kind: 'scripted',
        generate: async (req, signal) => {
          generations++;
          const g = await sim.generate(req, signal);
          const text = 'x'.repeat(100_000);
          return { ...g, text, tokens: [{ token: text, logprob: -0.1, topLogprobs: [-0.1] }] };
        },
      },
    });
    await m.start();
    cleanups.push(() => m.stop(100));
    const c = client(pool);
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    const err = await c.generate(messages(5), params, { deadline: deadline() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendRejectedError);
    expect((err as Error).message).toMatch(/exceeds the NATS server's max_payload of 65536 bytes/);
    expect(generations).toBe(1);
  });

  it('a member announces a change of load at once, not at its next heartbeat', async () => {
    const pool = `prompt-${randomUUID().slice(0, 8)}`;
    // A one-minute heartbeat: any announcement after start-up is the load-change path.
    const m = new PoolMember({
      nc: suite.nc,
      pool,
      id: 'slow',
      backend: new SimBackend({ profile: { timeScale: 2 } }),
      announceIntervalMs: 60_000,
    });
    const seen: { inFlight: number; at: number }[] = [];
    const sub = suite.nc.subscribe(subjects.announce(pool), {
      callback: (err, msg) => {
        if (!err)
          seen.push({
            inFlight: decodeWire(MemberAnnouncementWire, msg.data, 'announcement').inFlight,
            at: Date.now(),
          });
      },
    });
    cleanups.push(() => sub.unsubscribe());
    await m.start();
    cleanups.push(() => m.stop());
    const c = client(pool);
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    const sent = Date.now();
    const done = c.generate(messages(1), params, { deadline: deadline() });
    // Bounds far below the 60 s heartbeat, with room for a busy machine.
    await waitUntil(
      () => seen.some((a) => a.inFlight === 1),
      20_000,
      'an announcement of the request in flight',
    );
    expect(seen.find((a) => a.inFlight === 1)!.at - sent).toBeLessThan(15_000);
    await done;
    const finished = Date.now();
    await waitUntil(() => seen.at(-1)?.inFlight === 0, 20_000, 'an announcement of the member idle again');
    expect(seen.at(-1)!.at - finished).toBeLessThan(15_000);
  });

  it("a request a member's server rejects fails at once with that error, without failover or a tripped breaker", async () => {
    const pool = `reject-${randomUUID().slice(0, 8)}`;
    let rejected = 0;
    const picky = new PoolMember({
      nc: suite.nc,
      pool,
      id: 'picky',
      backend: {
        kind: 'picky',
        async generate() {
          rejected++;
          throw new BackendProtocolError('server returned no logprobs (choices[0].logprobs missing)');
        },
      },
    });
    await picky.start();
    cleanups.push(() => picky.stop());
    const other = await member(pool, 'other');
    const c = client(pool);
    await c.start();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');
    // A sticky key whose rendezvous member is 'picky': an idle pool sends the request there first.
    const stickyKey = keyFor('picky', 'other');
    const err = await c.generate(messages(3), params, { deadline: deadline(), stickyKey }).catch((e) => e);
    expect(err).toBeInstanceOf(BackendRejectedError);
    expect(String(err.message)).toContain('no logprobs');
    expect(rejected).toBe(1);
    expect(other.member.stats.served).toBe(0);
    // The member itself is healthy: five more rejections would trip a breaker that counted them.
    expect(c.liveMembers().find((m) => m.id === 'picky')?.healthy).toBe(true);
  });
});

/** A policy ranking the members in rotation in one fixed order, so a test knows which is asked first. */
function fixedOrder(order: (a: string, b: string) => number): RoutingPolicy {
  return {
    name: 'round_robin',
    usesPrefixKeys: false,
    rank: (_req, members) =>
      members
        .filter((m) => m.healthy)
        .map((m) => m.id)
        .sort(order),
    onMemberGone: () => {},
  };
}

describe('deadlines', () => {
  it('a deadline with a fraction of a millisecond is sent whole, not refused as a bad request', async () => {
    const pool = `fraction-${randomUUID().slice(0, 8)}`;
    await member(pool, 'm1');
    const c = client(pool);
    await c.start();
    const g = await c.generate(messages(3), params, { deadline: deadline() + 0.5 });
    expect(g.memberId).toBe('m1');
  });
});

describe('a member that turns a request away', () => {
  it('is asked again only when no other member is left: the one that failed once serves the retry', async () => {
    const pool = `turned-away-${randomUUID().slice(0, 8)}`;
    // No blob store: it turns away every prompt sent by reference (code unhealthy), however often asked.
    const noStore = new PoolMember({ nc: suite.nc, pool, id: 'a-nostore', backend: new SimBackend() });
    await noStore.start();
    cleanups.push(() => noStore.stop());
    // Fails its first generation with an HTTP 500, then serves.
    const sim = new SimBackend();
    let failures = 0;
    const blobs = new BlobStore(suite.nc);
    cleanups.push(() => blobs.close());
    const flaky = new PoolMember({
      nc: suite.nc,
      pool,
      id: 'b-flaky',
      blobs,
      backend: {
        kind: 'flaky',
        generate: (req, signal) => {
          if (failures++ === 0)
            return Promise.reject(new BackendHttpError('http://gpu/v1/chat/completions', 500, 'boom', 1));
          return sim.generate(req, signal);
        },
      },
    });
    await flaky.start();
    cleanups.push(() => flaky.stop());
    // a-nostore first whenever it is in rotation.
    const c = client(pool, {
      inlineRequestBytes: 1000,
      blobs,
      maxAttempts: 3,
      policy: fixedOrder((a, b) => a.localeCompare(b)),
    });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');
    const namespace = `job-turned-away-${randomUUID().slice(0, 8)}`;
    const big: ChatMessage[] = [
      { role: 'user', content: `${questions[2]!.question} ${'context '.repeat(300)}` },
    ];
    const tried: (string | undefined)[] = [];
    const g = await c.generate(big, params, {
      deadline: deadline(),
      blobNamespace: namespace,
      onAttempt: (memberId) => tried.push(memberId),
    });
    expect(g.memberId).toBe('b-flaky');
    expect(tried).toEqual(['a-nostore', 'b-flaky', 'b-flaky']);
    await blobs.deleteNamespace(namespace);
  });
});

describe('a request too large for one member', () => {
  /** A started member of `pool` whose server sits behind a proxy that refuses every request's size (HTTP 413). */
  async function behindAProxy(pool: string, id: string) {
    const counts = { refused: 0 };
    const m = new PoolMember({
      nc: suite.nc,
      pool,
      id,
      backend: {
        kind: 'behind-a-proxy',
        generate: () => {
          counts.refused++;
          return Promise.reject(
            new BackendHttpError('http://proxy/v1/chat/completions', 413, 'Request Entity Too Large', 1),
          );
        },
      },
    });
    await m.start();
    cleanups.push(() => m.stop());
    return counts;
  }

  it("is served by another without opening the refusing member's breaker (HTTP 413: a proxy limit); refused by all, it is too long", async () => {
    const pool = `size-${randomUUID().slice(0, 8)}`;
    const proxied = await behindAProxy(pool, 'proxied');
    const other = await member(pool, 'other');
    // 'proxied' first whenever it is in rotation: an open breaker would show as it being left out.
    const c = client(pool, {
      policy: fixedOrder((a, b) => b.localeCompare(a)),
    });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');
    // More than the five failures that open a breaker.
    for (let i = 0; i < 6; i++) {
      const tried: (string | undefined)[] = [];
      const g = await c.generate(messages(i), params, {
        deadline: deadline(),
        onAttempt: (memberId) => tried.push(memberId),
      });
      expect(g.memberId).toBe('other');
      expect(tried).toEqual(['proxied', 'other']);
    }
    expect(proxied.refused).toBe(6);
    expect(other.member.stats.served).toBe(6);
    expect(c.liveMembers().find((m) => m.id === 'proxied')?.healthy).toBe(true);
    // The only member left refuses the size: asked once, the request fails as one over the context length does (the
    // step cuts or summarises its prompt, or ends with max_context), not retried until the pool is called unavailable.
    await other.stop();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'only proxied left');
    const err = await c.generate(messages(7), params, { deadline: deadline() }).catch((e) => e);
    expect(err).toBeInstanceOf(ContextLengthError);
    expect(String(err.message)).toMatch(/every member's server refused the request's size \(HTTP 413\)/);
    expect(proxied.refused).toBe(7);
  });

  it('refused by every member within the attempts allowed, it fails as too long, not as a pool unavailable', async () => {
    const pool = `size-all-${randomUUID().slice(0, 8)}`;
    const [a, b] = [await behindAProxy(pool, 'a'), await behindAProxy(pool, 'b')];
    // As many attempts as members: the last refusal is the last attempt.
    const c = client(pool, { maxAttempts: 2 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');
    const err = await c.generate(messages(8), params, { deadline: deadline() }).catch((e) => e);
    expect(err).toBeInstanceOf(ContextLengthError);
    expect([a.refused, b.refused]).toEqual([1, 1]);
  });
});

describe('a stopping member', () => {
  it('says it is leaving again at each heartbeat while it finishes, for routers that missed the first', async () => {
    const pool = `leaving-${randomUUID().slice(0, 8)}`;
    const gpu = await gatedMember(pool, 'gpu');
    const c = client(pool);
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'gpu live');
    const held = c.generate(messages(11), params, { deadline: deadline() });
    await waitUntil(() => gpu.calls() === 1, 5_000, 'the request reached gpu');
    const stopped = gpu.member.stop(10_000);
    await sleep(100);
    // A router that comes to listen after the first leave went out (its connection was down then) still hears it.
    const leaves: string[] = [];
    const sub = suite.nc.subscribe(subjects.leave(pool), {
      callback: (_err, msg) => {
        leaves.push(decodeWire(MemberAnnouncementWire, msg.data, 'leave').id);
      },
    });
    cleanups.push(() => sub.unsubscribe());
    await waitUntil(() => leaves.length > 0, 3_000, 'a leave heard after the first');
    expect(leaves[0]).toBe('gpu');
    gpu.release();
    expect((await held).memberId).toBe('gpu');
    await stopped;
  });
});

describe('abandoned attempts and stopping members', () => {
  /** A backend that never answers on its own: it resolves only when aborted, recording when and why. */
  function stalling(kind: string) {
    const aborts: Array<{ at: number; reason: string }> = [];
    const held = new Set<(err: Error) => void>();
    let started = 0;
    const backend = {
      kind,
      generate(_req: unknown, signal: AbortSignal) {
        started++;
        return new Promise<never>((_, reject) => {
          held.add(reject);
          signal.addEventListener('abort', () => {
            aborts.push({ at: Date.now(), reason: String((signal.reason as Error)?.name) });
            held.delete(reject);
            reject(signal.reason);
          });
        });
      },
    };
    /** Fails whatever it still holds: for a member that can no longer hear a cancel, so that its stop can end. */
    const releaseAll = () => {
      for (const reject of held) reject(new Error('released by the test'));
      held.clear();
    };
    return { backend, aborts, started: () => started, releaseAll };
  }

  async function start(
    pool: string,
    id: string,
    backend: ConstructorParameters<typeof PoolMember>[0]['backend'],
  ) {
    const m = new PoolMember({ nc: suite.nc, pool, id, backend });
    await m.start();
    cleanups.push(() => m.stop(100));
    return m;
  }

  it('a member stops work on an attempt its router gave up on, long before the request deadline', async () => {
    const pool = `abandon-${randomUUID().slice(0, 8)}`;
    const stall = stalling('stall');
    await start(pool, 'stall', stall.backend);
    const other = await member(pool, 'other');
    const c = client(pool, { attemptTimeoutMs: 400 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');
    const stickyKey = keyFor('stall', 'other');
    // The member would also stop by itself at the attempt limit the header carries: the router's cancel is
    // checked on the wire.
    let cancels = 0;
    const sub = suite.nc.subscribe(subjects.cancel(pool, 'stall'), {
      callback: () => {
        cancels++;
      },
    });
    cleanups.push(async () => sub.unsubscribe());
    const t0 = Date.now();
    const g = await c.generate(messages(4), params, { deadline: Date.now() + 60_000, stickyKey });
    expect(g.memberId).toBe('other');
    expect(other.member.stats.served).toBe(1);
    await waitUntil(() => cancels === 1, 5_000, "the router's cancel for the abandoned attempt");
    await waitUntil(() => stall.aborts.length === 1, 5_000, 'the stalled attempt aborted');
    // Stopped when the router failed over (~400 ms), not at the 60 s deadline.
    expect(stall.aborts[0]!.at - t0).toBeLessThan(5_000);
  });

  it("a member that answers its attempt ran out (its deadline is the attempt's) is failed over, as a timeout is", async () => {
    const pool = `late-${randomUUID().slice(0, 8)}`;
    // What a member's own attempt timer does when it fires a moment before the router's.
    await start(pool, 'late', {
      kind: 'late',
      generate: () => Promise.reject(new BackendDeadlineError('request passed its deadline', Date.now())),
    });
    await member(pool, 'other');
    const c = client(pool);
    await c.start();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');
    const stickyKey = keyFor('late', 'other');
    const g = await c.generate(messages(4), params, { deadline: deadline(), stickyKey });
    expect(g.memberId).toBe('other');
  });

  it("cancelling the caller's request stops the member's work at once", async () => {
    const pool = `cancel-${randomUUID().slice(0, 8)}`;
    const stall = stalling('stall');
    await start(pool, 'stall', stall.backend);
    const c = client(pool);
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    const ctl = new AbortController();
    const pending = c.generate(messages(5), params, { deadline: Date.now() + 60_000, signal: ctl.signal });
    await waitUntil(() => stall.started() === 1, 5_000, 'request reached the backend');
    ctl.abort(new Error('activity cancelled'));
    await expect(pending).rejects.toThrow(/activity cancelled/);
    await waitUntil(() => stall.aborts.length === 1, 5_000, 'member aborted the request');
    expect(stall.aborts[0]!.reason).toBe('RequestCancelledError');
  });

  it('a member that stops gracefully finishes what it is serving: no failover, no repeated work', async () => {
    const pool = `leave-${randomUUID().slice(0, 8)}`;
    let release: (() => void) | undefined;
    const served: string[] = [];
    const sim = new SimBackend({ profile: { timeScale: 0 } });
    const slow = await start(pool, 'slow', {
      kind: 'slow',
      async generate(req, signal) {
        await new Promise<void>((r) => {
          release = r;
        });
        served.push('slow');
        return sim.generate(req, signal);
      },
    });
    const other = await member(pool, 'other');
    const c = client(pool);
    await c.start();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');
    const stickyKey = keyFor('slow', 'other');
    const pending = c.generate(messages(6), params, { deadline: Date.now() + 60_000, stickyKey });
    await waitUntil(() => release !== undefined, 5_000, 'request reached the slow member');
    const stopping = slow.stop(10_000);
    // A second stop (SIGTERM, then SIGINT) waits for the first: its caller closes the backend and connection next.
    let againDone = false;
    const again = slow.stop(10_000).then(() => {
      againDone = true;
    });
    await waitUntil(
      () => !c.liveMembers().some((m) => m.id === 'slow'),
      5_000,
      'the stopping member is out of rotation',
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(againDone).toBe(false);
    release!();
    const g = await pending;
    await stopping;
    await again;
    expect(g.memberId).toBe('slow');
    expect(served).toEqual(['slow']);
    expect(other.member.stats.served).toBe(0);
  });
  it('a request published with no reply subject is not generated: nobody could hear the answer', async () => {
    const pool = `noreply-${randomUUID().slice(0, 8)}`;
    const stall = stalling('stall');
    await start(pool, 'stall', stall.backend);
    const request = wireRequest(pool);
    suite.nc.publish(subjects.member(pool, 'stall'), request);
    await suite.nc.flush();
    await new Promise((r) => setTimeout(r, 300));
    expect(stall.started()).toBe(0);
    // The same request asked for properly is taken.
    void suite.nc.request(subjects.member(pool, 'stall'), request, { timeout: 5_000 }).catch(() => {});
    await waitUntil(() => stall.started() === 1, 5_000, 'the request with a reply subject started');
    stall.releaseAll();
  });

  it('a stopping member hands back at once what it has not started, and what outlasts its wait when the wait ends', async () => {
    const pool = `leave-queued-${randomUUID().slice(0, 8)}`;
    const stall = stalling('stall');
    // One batch slot: the first request runs (and never finishes by itself), the second waits in the member's queue.
    const m = new PoolMember({ nc: suite.nc, pool, id: 'stall', backend: stall.backend, capacity: 1 });
    await m.start();
    cleanups.push(() => m.stop(100));
    const c = client(pool);
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'the member live');
    const tried: Record<string, (string | undefined)[]> = { running: [], queued: [] };
    const send = (which: string, i: number) =>
      c.generate(messages(i), params, {
        deadline: Date.now() + 60_000,
        onAttempt: (id) => tried[which]!.push(id),
      });
    // The only member: the second request waits in its queue.
    const running = send('running', 3);
    await waitUntil(() => stall.started() === 1, 5_000, 'the first request running on the member');
    const queued = send('queued', 4);
    await waitUntil(() => m.stats.queued === 1, 5_000, 'the second request queued on the member');
    const other = await member(pool, 'other');
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'the other member live');
    let stopped = false;
    const stopping = m.stop(3_000).then(() => {
      stopped = true;
    });
    // Handed back before the member's wait ends: served elsewhere, never having reached this member's server.
    const q = await queued;
    expect(stopped).toBe(false);
    expect(q.memberId).toBe('other');
    expect(tried.queued).toEqual(['stall', 'other']);
    expect(stall.started()).toBe(1);
    // The running one, once the wait ran out: stopped on the server and answered, so it fails over now.
    const r = await running;
    await stopping;
    expect(r.memberId).toBe('other');
    expect(tried.running).toEqual(['stall', 'other']);
    expect(stall.aborts.map((a) => a.reason)).toEqual(['MemberStoppingError']);
    expect(other.member.stats.served).toBe(2);
  });

  it('a request sent through the queue group (no member known to the router) is cancelled there too', async () => {
    const pool = `queue-cancel-${randomUUID().slice(0, 8)}`;
    const stall = stalling('stall');
    // Announces once at start, then not for a minute: the router below forgets it after its TTL.
    const m = new PoolMember({
      nc: suite.nc,
      pool,
      id: 'quiet',
      backend: stall.backend,
      announceIntervalMs: 60_000,
    });
    await m.start();
    cleanups.push(() => m.stop(100));
    const c = client(pool, { memberTtlMs: 200, attemptTimeoutMs: 30_000 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 0, 5_000, 'the router to forget the quiet member');
    const ctl = new AbortController();
    const pending = c.generate(messages(14), params, { deadline: Date.now() + 60_000, signal: ctl.signal });
    await waitUntil(
      () => stall.started() === 1,
      5_000,
      'the request to reach the member through the queue group',
    );
    ctl.abort(new Error('activity cancelled'));
    await expect(pending).rejects.toThrow(/activity cancelled/);
    await waitUntil(() => stall.aborts.length === 1, 5_000, 'the member to drop the request');
    expect(stall.aborts.map((a) => a.reason)).toEqual(['RequestCancelledError']);
  });

  /**
   * The suite's connection as a router sees it when what it sends is lost: `drop` says which subjects' messages never
   * arrive (requests included). Replies still reach it.
   */
  function losing(drop: (subject: string) => boolean): NatsConnection {
    return new Proxy(suite.nc, {
      get(target, key) {
        if (key === 'publish')
          return (...args: Parameters<typeof target.publish>) =>
            drop(args[0]) ? undefined : target.publish(...args);
        if (key === 'request')
          return (...args: Parameters<typeof target.request>) =>
            drop(args[0]) ? Promise.reject(new Error('lost (test)')) : target.request(...args);
        const value = Reflect.get(target, key);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  it("a member stops a dead router's work (no cancel, no more renewals) when its lease runs out, not at the deadline", async () => {
    const pool = `lease-${randomUUID().slice(0, 8)}`;
    const stall = stalling('stall');
    await start(pool, 'stall', stall.backend);
    // From `killed` on, nothing the router sends arrives: a worker killed with the request in flight.
    let killed = false;
    const c = client(pool, { nc: losing(() => killed), leaseMs: 1000 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    const pending = c.generate(messages(6), params, { deadline: Date.now() + 60_000 }).catch((e) => e);
    await waitUntil(() => stall.started() === 1, 5_000, 'request reached the backend');
    // Held past its first lease: the renewals keep it.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(stall.aborts).toEqual([]);
    killed = true;
    const killedAt = Date.now();
    await waitUntil(() => stall.aborts.length === 1, 5_000, "the dead router's request stopped");
    expect(stall.aborts[0]!.reason).toBe('RouterLeaseExpiredError');
    // The lease (1 s), and at most a check or two more.
    expect(stall.aborts[0]!.at - killedAt).toBeLessThan(3_000);
    expect(stall.started()).toBe(1);
    await pending;
  });

  it('a router whose renewals did not arrive gets its request back as lease_expired and sends it again, to the same member', async () => {
    const pool = `relet-${randomUUID().slice(0, 8)}`;
    const stall = stalling('stall');
    const sim = new SimBackend({ profile: { timeScale: 0 } });
    const solo = await start(pool, 'solo', {
      kind: 'stall-once',
      generate: (req, signal) =>
        stall.started() === 0 ? stall.backend.generate(req, signal) : sim.generate(req, signal),
    });
    const other = await member(pool, 'other');
    // What a router sees whose renewals are lost (its process stalled, its connection cut for a while): it is still
    // there to take the answer.
    const c = client(pool, { nc: losing((subject) => subject.endsWith('.lease')), leaseMs: 1000 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');
    const tried: (string | undefined)[] = [];
    const t0 = Date.now();
    const g = await c.generate(messages(7), params, {
      deadline: Date.now() + 60_000,
      stickyKey: keyFor('solo', 'other'),
      onAttempt: (memberId) => tried.push(memberId),
    });
    expect(stall.aborts.map((a) => a.reason)).toEqual(['RouterLeaseExpiredError']);
    // Sent again as a lost attempt is: to the member that may hold its prompt, not on to the next one.
    expect(tried).toEqual(['solo', 'solo']);
    expect(g.memberId).toBe('solo');
    expect(solo.stats.served).toBe(1);
    expect(other.member.stats.served).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('a stopping member still takes cancels while it finishes: a router that gives up frees its slot at once', async () => {
    const pool = `leave-cancel-${randomUUID().slice(0, 8)}`;
    const stall = stalling('stall');
    const m = await start(pool, 'stall', stall.backend);
    const c = client(pool);
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    const ctl = new AbortController();
    const pending = c.generate(messages(10), params, { deadline: Date.now() + 60_000, signal: ctl.signal });
    await waitUntil(() => stall.started() === 1, 5_000, 'request reached the backend');
    const stopping = m.stop(10_000);
    await waitUntil(() => c.liveMembers().length === 0, 5_000, 'the stopping member is out of rotation');
    ctl.abort(new Error('activity cancelled'));
    await expect(pending).rejects.toThrow(/activity cancelled/);
    await stopping;
    // Aborted by the router's cancel, not left running until the member's drain limit.
    expect(stall.aborts.map((a) => a.reason)).toEqual(['RequestCancelledError']);
  });

  it('a request still queued near the end of its attempt is answered overloaded: a busy member keeps its breaker closed', async () => {
    const pool = `queued-${randomUUID().slice(0, 8)}`;
    const stall = stalling('stall');
    const m = new PoolMember({ nc: suite.nc, pool, id: 'busy', backend: stall.backend, capacity: 1 });
    await m.start();
    cleanups.push(() => m.stop(100));
    const c = client(pool, { policy: 'round_robin', attemptTimeoutMs: 2000, maxAttempts: 1 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    // The batch slot is held through another router, whose attempts are long.
    const holder = client(pool, { policy: 'round_robin' });
    await holder.start();
    await waitUntil(() => holder.liveMembers().length === 1, 10_000, 'member live for the holder');
    const ctl = new AbortController();
    const holding = holder.generate(messages(12), params, {
      deadline: Date.now() + 60_000,
      signal: ctl.signal,
    });
    holding.catch(() => {});
    await waitUntil(() => stall.started() === 1, 5_000, 'the batch slot taken');
    // More than the breaker's failure threshold: timeouts counted against the member would open it.
    for (let i = 0; i < 6; i++) {
      const err = await c.generate(messages(13), params, { deadline: deadline() }).catch((e) => e);
      expect(String(err.message)).toMatch(
        /overloaded: member busy could not start the request within its attempt/,
      );
    }
    expect(c.liveMembers()[0]?.healthy).toBe(true);
    expect(stall.started()).toBe(1);
    ctl.abort(new Error('done'));
  });

  it('a member restarted under the same id while the old process was leaving: what it held fails over after the grace', async () => {
    const pool = `restart-leaving-${randomUUID().slice(0, 8)}`;
    const stall = stalling('stall');
    const nc = await connectNats(cfg, 'restart-leaving-old-process');
    const old = new PoolMember({ nc, pool, id: 'gpu0', backend: stall.backend });
    await old.start();
    // A long attempt limit: it may not be what frees the request.
    const c = client(pool, { attemptTimeoutMs: 110_000 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    const t0 = Date.now();
    const pending = c.generate(messages(14), params, { deadline: Date.now() + 110_000 });
    await waitUntil(() => stall.started() === 1, 5_000, 'request reached the first process');
    // SIGTERM: it says it is leaving and waits for its work; a new process takes the id; then the old one is killed.
    const leaving = old.stop(60_000).catch(() => {});
    // The old process can no longer hear a cancel once its connection is closed: what it holds is let go after the
    // file, so its stop ends rather than polling out its 60 s.
    cleanups.push(async () => {
      stall.releaseAll();
      await leaving;
    });
    await waitUntil(() => c.liveMembers().length === 0, 5_000, 'the leaving member out of rotation');
    const fresh = await member(pool, 'gpu0');
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'the new process live');
    await nc.close();
    const g = await pending;
    expect(g.memberId).toBe('gpu0');
    expect(fresh.member.stats.served).toBe(1);
    // The leave grace (15 s), not the 110 s attempt limit.
    expect(Date.now() - t0).toBeLessThan(25_000);
  }, 40_000);

  it('a member restarted under the same id: what the dead process held fails over at once', async () => {
    const pool = `restart-${randomUUID().slice(0, 8)}`;
    const stall = stalling('stall');
    const nc = await connectNats(cfg, 'restart-old-process');
    const old = new PoolMember({ nc, pool, id: 'gpu0', backend: stall.backend });
    await old.start();
    // Its timers end after the file (the leave it tries to publish fails on the closed connection).
    cleanups.push(async () => {
      stall.releaseAll();
      await old.stop(100).catch(() => {});
    });
    // Long TTL and attempt limit: neither may be what frees the request.
    const c = client(pool, { memberTtlMs: 60_000, attemptTimeoutMs: 110_000 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    const pending = c.generate(messages(11), params, { deadline: Date.now() + 110_000 });
    await waitUntil(() => stall.started() === 1, 5_000, 'request reached the first process');
    await nc.close(); // the process dies: no leave, no reply
    const died = Date.now();
    const fresh = await member(pool, 'gpu0');
    const g = await pending;
    expect(g.memberId).toBe('gpu0');
    expect(fresh.member.stats.served).toBe(1);
    // Seen as a new process when it announced itself: not after the 60 s TTL or the 110 s attempt limit.
    expect(Date.now() - died).toBeLessThan(10_000);
  });
});

describe('connections that come back', () => {
  /** A member's announcement as a process with `instance` publishes it after `reconnects` reconnects. */
  function announcement(pool: string, id: string, instance: string, reconnects: number): Uint8Array {
    const a: MemberAnnouncementWire = {
      v: WIRE_VERSION,
      id,
      pool,
      model: 'scripted',
      backend: 'scripted',
      capacity: 4,
      inFlight: 0,
      queued: 0,
      cacheCapacityTokens: 0,
      cacheUsedTokens: 0,
      servedRequests: 0,
      instance,
      reconnects,
    };
    return encodeWire(a);
  }

  it.each([
    { unanswered: 0, what: 'answers the first question' },
    { unanswered: 1, what: 'answers only the second question (stalled, or not back yet, at the first)' },
  ])(
    "a request lost on a member's connection is sent again once the member says it came back, not at the attempt limit: it $what",
    async ({ unanswered }) => {
      const pool = `lost-${randomUUID().slice(0, 8)}`;
      // A member whose first reply never arrives (sent into a server that went down): after its "reconnect" it holds
      // nothing, and serves what it is sent from then on (through a simulated member of a pool of its own).
      const backing = await inProcessMember(
        cfg,
        { backend: 'sim', timeScale: 0 },
        { pool: `${pool}-backing`, id: 'backing' },
      );
      cleanups.push(() => backing.stop());
      const taken: string[] = [];
      const asked: Array<{ ids: string[]; instance?: string }> = [];
      const subs = [
        suite.nc.subscribe(subjects.member(pool, 'lossy'), {
          callback: (_e, m) => {
            taken.push(decodeWire(GenerateRequestWire, m.data, 'request').id);
            if (taken.length === 1) return;
            suite.nc
              .request(subjects.member(`${pool}-backing`, 'backing'), m.data, {
                timeout: 10_000,
                headers: m.headers,
              })
              .then((reply) => m.respond(reply.data))
              .catch(() => {});
          },
        }),
        suite.nc.subscribe(subjects.holds(pool, 'lossy'), {
          callback: (_e, m) => {
            asked.push(decodeWire(HoldsWire, m.data, 'holds'));
            if (asked.length > unanswered) m.respond(encodeWire({ v: WIRE_VERSION, held: [] }));
          },
        }),
      ];
      cleanups.push(async () => {
        for (const sub of subs) sub.unsubscribe();
      });
      const instance = randomUUID();
      let reconnects = 0;
      const heartbeat = setInterval(
        () => suite.nc.publish(subjects.announce(pool), announcement(pool, 'lossy', instance, reconnects)),
        200,
      );
      cleanups.push(async () => clearInterval(heartbeat));
      const other = await member(pool, 'other');
      // The attempt limit and TTL are long: neither may be what frees the request.
      const c = client(pool, { memberTtlMs: 60_000, attemptTimeoutMs: 60_000 });
      await c.start();
      await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');
      const t0 = Date.now();
      const pending = c.generate(messages(6), params, {
        deadline: Date.now() + 90_000,
        stickyKey: keyFor('lossy', 'other'),
      });
      await waitUntil(() => taken.length === 1, 5_000, 'the request reached the lossy member');
      reconnects = 1;
      const g = await pending;
      // Asked of the process it was sent to, until it answered; then sent again to the same member, as if never sent.
      expect(asked).toEqual(Array(unanswered + 1).fill({ v: WIRE_VERSION, ids: [taken[0]], instance }));
      expect(taken).toEqual([taken[0], taken[0]]);
      expect(g.memberId).toBe('backing');
      expect(other.member.stats.served).toBe(0);
      expect(Date.now() - t0).toBeLessThan(10_000);
    },
  );

  it('a member answers what it holds for its own process only: not for another process under its id', async () => {
    const pool = `instance-${randomUUID().slice(0, 8)}`;
    await member(pool, 'gpu');
    const own = await new Promise<string>((resolve) => {
      const sub = suite.nc.subscribe(subjects.announce(pool), {
        callback: (_e, msg) => {
          sub.unsubscribe();
          resolve(decodeWire(MemberAnnouncementWire, msg.data, 'announcement').instance!);
        },
      });
    });
    const ask = (instance?: string) =>
      suite.nc.request(
        subjects.holds(pool, 'gpu'),
        encodeWire({ v: WIRE_VERSION, ids: ['r1'], ...(instance ? { instance } : {}) }),
        { timeout: 1_000 },
      );
    expect(decodeWire(HeldWire, (await ask(own)).data, 'held')).toEqual({ v: WIRE_VERSION, held: [] });
    expect(decodeWire(HeldWire, (await ask()).data, 'held')).toEqual({ v: WIRE_VERSION, held: [] });
    // Another process's question: no answer at all (the request times out), not an empty one.
    await expect(ask(randomUUID())).rejects.toThrow(/timeout/i);
  });

  it('a request the member still holds after its connection came back is left to finish there', async () => {
    const pool = `held-${randomUUID().slice(0, 8)}`;
    // Held back until the test has had the router ask what gpu holds.
    const gpu = await gatedMember(pool, 'gpu');
    const other = await member(pool, 'other');
    // Listens beside gpu: sees the question, leaves the answer to gpu.
    const asked: string[][] = [];
    const sub = suite.nc.subscribe(subjects.holds(pool, 'gpu'), {
      callback: (_e, m) => {
        asked.push(decodeWire(HoldsWire, m.data, 'holds').ids);
      },
    });
    cleanups.push(async () => sub.unsubscribe());
    const c = client(pool, { memberTtlMs: 60_000, attemptTimeoutMs: 60_000 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');
    const pending = c.generate(messages(7), params, {
      deadline: Date.now() + 90_000,
      stickyKey: keyFor('gpu', 'other'),
    });
    await waitUntil(() => gpu.calls() === 1, 5_000, 'the request reached gpu');
    // What gpu would announce after its connection came back, as the same process.
    const latest = await new Promise<MemberAnnouncementWire>((resolve) => {
      const sub = suite.nc.subscribe(subjects.announce(pool), {
        callback: (_e, m) => {
          const a = decodeWire(MemberAnnouncementWire, m.data, 'announcement');
          if (a.id !== 'gpu') return;
          sub.unsubscribe();
          resolve(a);
        },
      });
    });
    suite.nc.publish(
      subjects.announce(pool),
      encodeWire({ ...latest, reconnects: (latest.reconnects ?? 0) + 1 }),
    );
    await waitUntil(() => asked.length === 1, 5_000, 'the router asking gpu what it holds');
    // Time for a failover, had gpu's answer been taken for "lost".
    await new Promise((r) => setTimeout(r, 500));
    gpu.release();
    const g = await pending;
    expect(g.memberId).toBe('gpu');
    expect(gpu.member.stats.served).toBe(1);
    expect(other.member.stats.served).toBe(0);
  });
});

/**
 * A TCP relay to the NATS server whose open connections can be made to carry nothing from then on, in either
 * direction, without being closed: a NATS node lost, a network partition. Connections made after still relay. Or
 * they can be cut, with new ones refused until `refuse(false)`: a NATS node restarting.
 */
async function freezableRelay(natsUrl: string) {
  const target = new URL(natsUrl);
  const pairs = new Set<{ client: Socket; upstream: Socket; frozen: boolean }>();
  let refusing = false;
  const server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = connectTcp(Number(target.port), target.hostname);
    const pair = { client, upstream, frozen: false };
    pairs.add(pair);
    client.on('data', (d) => pair.frozen || upstream.write(d));
    upstream.on('data', (d) => pair.frozen || client.write(d));
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) socket.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `nats://127.0.0.1:${port}`,
    freeze: () => {
      for (const pair of pairs) pair.frozen = true;
    },
    cut: () => {
      refusing = true;
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
    },
    refuse: (on: boolean) => {
      refusing = on;
    },
    close: async () => {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      await new Promise((r) => server.close(r));
    },
  };
}

describe('a connection that dies unnoticed', () => {
  it("a router whose connection went silent has it redone and sends again what was lost, instead of dropping the pool's members", async () => {
    const pool = `silent-${randomUUID().slice(0, 8)}`;
    const relay = await freezableRelay(cfg.nats.url);
    cleanups.push(() => relay.close());
    const routerNc = await connectNats({ ...cfg, nats: { ...cfg.nats, url: relay.url } }, 'silent-router');
    cleanups.push(() => routerNc.close());
    // The member's first generation waits for the test, so its reply is sent into the dead connection.
    const gpu = await gatedMember(pool, 'gpu');
    // A short TTL, a long attempt limit: only the connection check and the question after it can free the request
    // in time (the pings would notice the dead connection after ~30 s, and the attempt end after 60 s).
    const c = new PoolClient({ nc: routerNc, pool, memberTtlMs: 1500, attemptTimeoutMs: 60_000 });
    cleanups.push(() => c.close());
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'gpu live');
    const pending = c.generate(messages(8), params, { deadline: Date.now() + 90_000 });
    await waitUntil(() => gpu.calls() === 1, 5_000, 'the request reached gpu');
    relay.freeze();
    const frozenAt = Date.now();
    gpu.release();
    const g = await pending;
    expect(g.memberId).toBe('gpu');
    // The first reply went into the dead connection; the request was sent again, to gpu, and answered.
    expect(gpu.member.stats.served).toBe(2);
    expect(Date.now() - frozenAt).toBeLessThan(15_000);
  });
});

describe('a member whose connection is redone', () => {
  it('is out of rotation while nobody listens on its subject, but what it holds is left to finish there', async () => {
    const pool = `redone-${randomUUID().slice(0, 8)}`;
    const relay = await freezableRelay(cfg.nats.url);
    cleanups.push(() => relay.close());
    const gpuNc = await connectNats({ ...cfg, nats: { ...cfg.nats, url: relay.url } }, 'redone-member');
    cleanups.push(() => gpuNc.close());
    const gpu = await gatedMember(pool, 'gpu', gpuNc);
    const other = await member(pool, 'other');
    // A TTL longer than the connection's gap: only "no responders" tells the router anything meanwhile.
    const c = client(pool, { memberTtlMs: 15_000, attemptTimeoutMs: 60_000 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members live');
    const stickyKey = keyFor('gpu', 'other');
    const held = c.generate(messages(8), params, { deadline: Date.now() + 90_000, stickyKey });
    await waitUntil(() => gpu.calls() === 1, 5_000, 'the request reached gpu');
    // gpu's NATS node goes away for a while: the server drops its subscriptions, the generation goes on.
    relay.cut();
    await sleep(200);
    const tried: (string | undefined)[] = [];
    const meanwhile = await c.generate(messages(9), params, {
      deadline: Date.now() + 30_000,
      stickyKey,
      onAttempt: (memberId) => tried.push(memberId),
    });
    expect(tried).toEqual(['gpu', 'other']);
    expect(meanwhile.memberId).toBe('other');
    expect(c.liveMembers().find((m) => m.id === 'gpu')?.healthy).toBe(false);
    // Back: it announces itself (a reconnect), the router asks what it holds, and its generation ends there.
    relay.refuse(false);
    await waitUntil(() => c.liveMembers().find((m) => m.id === 'gpu')?.healthy === true, 10_000, 'gpu back');
    gpu.release();
    const g = await held;
    expect(g.memberId).toBe('gpu');
    expect(gpu.member.stats.served).toBe(1);
    expect(other.member.stats.served).toBe(1);
  });
});

describe('a member whose connection is redone, alone in its pool', () => {
  it('a request finding no responders waits for its announcement instead of failing at once', async () => {
    const pool = `redone-alone-${randomUUID().slice(0, 8)}`;
    const relay = await freezableRelay(cfg.nats.url);
    cleanups.push(() => relay.close());
    const gpuNc = await connectNats({ ...cfg, nats: { ...cfg.nats, url: relay.url } }, 'redone-alone');
    cleanups.push(() => gpuNc.close());
    const gpu = new PoolMember({ nc: gpuNc, pool, id: 'gpu', backend: new SimBackend() });
    await gpu.start();
    cleanups.push(() => gpu.stop(100));
    // A TTL longer than the connection's gap: only "no responders" tells the router anything meanwhile.
    const c = client(pool, { memberTtlMs: 15_000 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'gpu live');
    relay.cut();
    await sleep(200);
    const tried: (string | undefined)[] = [];
    const meanwhile = c.generate(messages(10), params, {
      deadline: Date.now() + 30_000,
      onAttempt: (memberId) => tried.push(memberId),
    });
    // Its node back 1.5 s later: the member reconnects and announces itself. Without the wait the router would have
    // spent its four attempts in well under a second.
    await sleep(1_500);
    relay.refuse(false);
    const g = await meanwhile;
    expect(g.memberId).toBe('gpu');
    expect(tried).toEqual(['gpu', 'gpu']);
  });
});

describe('a member whose server hangs', () => {
  /**
   * The simulator's HTTP server behind a relay that can hang: from then on it answers nothing, /health included; or,
   * with hangHealth, nothing on /health while it serves generations (a server slow on /health under load).
   */
  async function hangingServer() {
    const sim = await startSimHttpServer({ port: 0 });
    let hung = false;
    let healthHung = false;
    const held: ServerResponse[] = [];
    /** Generation requests that came while it hung. */
    let heldGenerations = 0;
    const server = createHttpServer(async (req, res) => {
      if (hung || (healthHung && req.method === 'GET' && req.url === '/health')) {
        if (req.method === 'POST') heldGenerations++;
        held.push(res);
        return;
      }
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const r = await fetch(`${sim.url}${req.url}`, {
        method: req.method,
        headers: { 'content-type': 'application/json' },
        ...(req.method === 'GET' ? {} : { body: Buffer.concat(chunks) }),
      });
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
      res.end(Buffer.from(await r.arrayBuffer()));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      heldGenerations: () => heldGenerations,
      hang: (on: boolean) => {
        hung = on;
        if (!on) for (const res of held.splice(0)) res.destroy();
      },
      hangHealth: (on: boolean) => {
        healthHung = on;
      },
      close: async () => {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
        await sim.close();
      },
    };
  }

  /**
   * Pool `prefix-…` with member `gpu` (the openai backend, its server behind a relay that can hang, checked as
   * `healthCheck` says) and a simulated member `other`, and a router on it with a long attempt limit: only the health
   * checks can take gpu's work elsewhere in time.
   */
  async function poolWithHangingServer(
    prefix: string,
    opts: { hungFromStart: boolean; healthCheck: HealthCheckOptions },
  ) {
    const pool = `${prefix}-${randomUUID().slice(0, 8)}`;
    const server = await hangingServer();
    cleanups.push(() => server.close());
    server.hang(opts.hungFromStart);
    const changes: Array<{ healthy: boolean; why: string }> = [];
    const gpu = new PoolMember({
      nc: suite.nc,
      pool,
      id: 'gpu',
      backend: createBackend({ backend: 'openai', baseUrl: `${server.url}/v1`, model: 'muse-sim' }),
      healthCheck: opts.healthCheck,
      onHealthChange: (healthy, why) => changes.push({ healthy, why }),
    });
    await gpu.start();
    cleanups.push(() => gpu.stop(100));
    const other = await member(pool, 'other');
    const c = client(pool, { attemptTimeoutMs: 60_000 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 2, 10_000, 'both members announced');
    const healthyById = () => Object.fromEntries(c.liveMembers().map((m) => [m.id, m.healthy]));
    return { server, changes, other, c, healthyById };
  }

  it('leaves rotation once the server fails its health checks, and what it held goes elsewhere now, not at the attempt limit', async () => {
    const { server, changes, other, c, healthyById } = await poolWithHangingServer('hung', {
      hungFromStart: false,
      healthCheck: { intervalMs: 200, timeoutMs: 1_000, failures: 2 },
    });
    // Checks pass while the server answers.
    await waitUntil(() => healthyById().gpu === true, 10_000, 'gpu in rotation');
    expect(healthyById()).toEqual({ gpu: true, other: true });
    server.hang(true);
    const t0 = Date.now();
    // More than the breaker's threshold (5), all on gpu: none of their failures may count against it.
    const stickyKeys = keysFor('gpu', 'other', 6);
    const served = await Promise.all(
      stickyKeys.map((stickyKey, i) =>
        c.generate(messages(9 + i), params, { deadline: Date.now() + 90_000, stickyKey }),
      ),
    );
    expect(server.heldGenerations(), 'the requests reached the hung server').toBe(6);
    expect(served.map((g) => g.memberId)).toEqual(Array(6).fill('other'));
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(other.member.stats.served).toBe(6);
    expect(healthyById()).toEqual({ gpu: false, other: true });
    // The server answers again: the next check passing puts the member back, its breaker closed.
    server.hang(false);
    await waitUntil(() => healthyById().gpu === true, 5_000, 'gpu back in rotation');
    const breaker = (c as unknown as { members: Map<string, { breaker: { state: string } }> }).members.get(
      'gpu',
    )!.breaker;
    expect(breaker.state).toBe('closed');
    expect(changes.map((ch) => ch.healthy)).toEqual([true, false, true]);
    expect(changes[1]!.why).toMatch(
      /^member gpu's server failed 2 health checks in a row: GET .*\/health: no answer in time$/,
    );
  });

  it('stays in rotation while its server answers generations but not /health in time, and leaves once those stop', async () => {
    const { server, changes, other, c, healthyById } = await poolWithHangingServer('busy', {
      hungFromStart: false,
      healthCheck: { intervalMs: 100, timeoutMs: 400, failures: 2 },
    });
    await waitUntil(() => healthyById().gpu === true, 10_000, 'gpu in rotation');
    server.hangHealth(true);
    // Requests one after the other on gpu for several check rounds: each check waits out its timeout, while
    // generations keep finishing.
    const stickyKey = keyFor('gpu', 'other');
    const servedBy: string[] = [];
    const until = Date.now() + 2_500;
    for (let i = 0; Date.now() < until; i++) {
      const g = await c.generate(messages(20 + (i % 5)), params, {
        deadline: Date.now() + 30_000,
        stickyKey,
      });
      servedBy.push(g.memberId);
      await sleep(50);
    }
    expect(servedBy.length).toBeGreaterThan(5);
    expect(new Set(servedBy)).toEqual(new Set(['gpu']));
    expect(other.member.stats.served).toBe(0);
    expect(changes.map((ch) => ch.healthy)).toEqual([true]);
    expect(healthyById()).toEqual({ gpu: true, other: true });
    // No more generations: the checks' silence now counts, and gpu leaves after two.
    await waitUntil(() => healthyById().gpu === false, 5_000, 'gpu out of rotation');
    expect(changes.map((ch) => ch.healthy)).toEqual([true, false]);
    expect(changes[1]!.why).toMatch(
      /^member gpu's server failed 2 health checks in a row: GET .*\/health: no answer in time$/,
    );
  });

  it('a member whose server is not up yet (a model still loading) is sent nothing until a check passes', async () => {
    const { server, changes, c, healthyById } = await poolWithHangingServer('loading', {
      hungFromStart: true,
      healthCheck: { intervalMs: 200, timeoutMs: 500, failures: 2 },
    });
    expect(healthyById()).toEqual({ gpu: false, other: true });
    const tried: Array<string | undefined> = [];
    const g = await c.generate(messages(12), params, {
      deadline: Date.now() + 90_000,
      stickyKey: keyFor('gpu', 'other'),
      onAttempt: (memberId) => tried.push(memberId),
    });
    expect(g.memberId).toBe('other');
    expect(tried).toEqual(['other']);
    expect(server.heldGenerations()).toBe(0);
    server.hang(false);
    await waitUntil(() => healthyById().gpu === true, 5_000, 'gpu in rotation once its server answers');
    expect(changes.map((ch) => ch.healthy)).toEqual([true]);
  });

  it('a server without a health endpoint is asked once, then served without checks', async () => {
    const pool = `nohealth-${randomUUID().slice(0, 8)}`;
    let checks = 0;
    const sim = new SimBackend({ profile: { timeScale: 0 } });
    const m = new PoolMember({
      nc: suite.nc,
      pool,
      id: 'plain',
      backend: {
        kind: 'no-health',
        generate: (req, signal) => sim.generate(req, signal),
        async health() {
          checks++;
          throw new HealthCheckUnsupportedError('GET /health: HTTP 404');
        },
      },
      healthCheck: { intervalMs: 50, timeoutMs: 50, failures: 1 },
    });
    await m.start();
    cleanups.push(() => m.stop(100));
    const c = client(pool);
    await c.start();
    await waitUntil(() => c.liveMembers().some((v) => v.healthy), 10_000, 'the member in rotation');
    // Ten check intervals more: none is made.
    await new Promise((r) => setTimeout(r, 500));
    expect(checks).toBe(1);
    expect(c.liveMembers().map((v) => v.healthy)).toEqual([true]);
    expect((await c.generate(messages(10), params, { deadline: deadline() })).memberId).toBe('plain');
  });
});

describe('real backends over HTTP, against the simulator serving the OpenAI and SGLang APIs', () => {
  it('openai (chat, completions) and sglang members serve through the pool with logprobs and cached tokens', async () => {
    const http = await startSimHttpServer({ port: 0 });
    cleanups.push(() => http.close());
    const specs = {
      chat: { backend: 'openai', baseUrl: `${http.url}/v1`, model: 'muse-sim', mode: 'chat' },
      completions: { backend: 'openai', baseUrl: `${http.url}/v1`, model: 'muse-sim', mode: 'completions' },
      sglang: { backend: 'sglang', baseUrl: http.url, model: 'muse-sim' },
    } as const;
    const entropies = new Map<string, number[]>();
    const warm = { ...params, temperature: 0.7, seed: 11 };
    for (const [name, spec] of Object.entries(specs)) {
      const pool = `http-${name}-${randomUUID().slice(0, 8)}`;
      const m = await inProcessMember(cfg, spec, { pool, id: name });
      cleanups.push(() => m.stop());
      const c = client(pool);
      await c.start();
      // In rotation once its server passed a health check.
      await waitUntil(() => c.liveMembers()[0]?.healthy === true, 10_000, `${name} member live`);
      const first = await c.generate(messages(20), warm, { deadline: deadline() });
      expect(first.memberId, name).toBe(name);
      expect(first.text.length, name).toBeGreaterThan(0);
      expect(first.usage.promptTokens, name).toBeGreaterThan(100);
      // Entropies come from the server's top logprobs, one per generated token.
      expect(first.entropies.length, name).toBe(first.usage.completionTokens);
      expect(Math.max(...first.entropies), name).toBeGreaterThan(0);
      entropies.set(name, [...first.entropies]);
      // The same prompt again: the server's prefix cache, as its usage reports it.
      const again = await c.generate(messages(20), params, { deadline: deadline() });
      expect(again.usage.cachedPromptTokens, name).toBeGreaterThan(0);
    }
    // One seeded sample, so one set of entropies whichever API served it: SGLang's logprobs come after temperature
    // (as the simulator's /generate reports them too), and the sglang backend puts them back on the model's scale.
    const chat = entropies.get('chat')!;
    expect(entropies.get('sglang')!.length).toBe(chat.length);
    for (const [i, h] of entropies.get('sglang')!.entries()) expect(h).toBeCloseTo(chat[i]!, 4);
  });

  it("a job naming a model the server does not have fails at once, naming it, without tripping the member's breaker", async () => {
    const http = await startSimHttpServer({ port: 0 });
    cleanups.push(() => http.close());
    const pool = `http-model-${randomUUID().slice(0, 8)}`;
    const spec = { backend: 'openai', baseUrl: `${http.url}/v1`, model: 'muse-sim' } as const;
    const m = await inProcessMember(cfg, spec, { pool, id: 'gpu0' });
    cleanups.push(() => m.stop());
    const c = client(pool);
    await c.start();
    await waitUntil(() => c.liveMembers()[0]?.healthy === true, 10_000, 'member in rotation');
    const err = await c
      .generate(messages(21), params, { deadline: deadline(), model: 'qwen3-30b' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendRejectedError);
    expect((err as Error).message).toMatch(/model 'qwen3-30b' \(the job's model\) is not served/);
    expect(c.liveMembers()[0]?.healthy).toBe(true);
    // The member's own model still serves.
    expect((await c.generate(messages(21), params, { deadline: deadline() })).memberId).toBe('gpu0');
  });
});

describe('a saturated member', () => {
  /**
   * Pool `prefix` with one member of `capacity` slots whose generations take `ms`, except those whose prompt holds
   * "stall", which hang until given up on; and two routers, each attempt given 1 s, once.
   */
  async function slowMember(prefix: string, capacity: number, ms: number) {
    const pool = `${prefix}-${randomUUID().slice(0, 8)}`;
    const m = new PoolMember({
      nc: suite.nc,
      pool,
      id: 'busy',
      capacity,
      backend: {
        kind: 'slow',
        generate: (req, signal) =>
          new Promise((resolve, reject) => {
            const stalls = req.messages.some((msg) => msg.content.includes('stall'));
            const reply = {
              text: 'ok',
              tokens: [],
              usage: { promptTokens: 10, cachedPromptTokens: 0, completionTokens: 1 },
              finishReason: 'stop' as const,
              model: 'slow',
            };
            const t = stalls ? undefined : setTimeout(() => resolve(reply), ms);
            const stop = () => {
              clearTimeout(t);
              reject(signal.reason);
            };
            signal.addEventListener('abort', stop, { once: true });
          }),
      },
    });
    await m.start();
    cleanups.push(() => m.stop(100));
    const other = client(pool, { attemptTimeoutMs: 1000, maxAttempts: 1 });
    const c = client(pool, { attemptTimeoutMs: 1000, maxAttempts: 1 });
    await Promise.all([other.start(), c.start()]);
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    return { other, c };
  }
  const quick = { ...params, maxTokens: 8 };
  const stall: ChatMessage[] = [{ role: 'user', content: 'stall' }];

  it('keeps its circuit closed when requests run out of time after waiting in its queue, and not when it hangs', async () => {
    // One batch slot; every generation takes 700 ms, well inside the 1000 ms attempt limit.
    const { other, c } = await slowMember('saturated', 1, 700);
    // Another worker's request holds the slot; ours, sent when the member says it is full, waits 500 ms in its queue
    // and cannot end within its attempt. More of them than the breaker's 5 failures in a row.
    for (let i = 0; i < 6; i++) {
      const first = other.generate(messages(i), quick, { deadline: deadline() });
      await new Promise((r) => setTimeout(r, 200));
      await expect(c.generate(messages(i + 1), quick, { deadline: deadline() })).rejects.toThrow(
        /unavailable/,
      );
      await first;
    }
    expect(c.liveMembers()[0]?.healthy).toBe(true);
    // A member that finishes nothing while a request runs out of time is failing it: the breaker counts that.
    for (let i = 0; i < 8 && c.liveMembers()[0]?.healthy; i++)
      await expect(c.generate(stall, quick, { deadline: deadline() })).rejects.toThrow(/unavailable/);
    expect(c.liveMembers()[0]?.healthy).toBe(false);
  });

  it('counts a request that ran out of time on a member with room, though it finished others meanwhile', async () => {
    // Two slots: ours is never queued, and the other worker's requests end while ours hangs (a stalled generation).
    const { other, c } = await slowMember('stalling', 2, 200);
    for (let i = 0; i < 8 && c.liveMembers()[0]?.healthy; i++) {
      const theirs = (async () => {
        for (let j = 0; j < 3; j++) await other.generate(messages(j), quick, { deadline: deadline() });
      })();
      await expect(c.generate(stall, quick, { deadline: deadline() })).rejects.toThrow(/unavailable/);
      await theirs;
    }
    expect(c.liveMembers()[0]?.healthy).toBe(false);
  });
});

describe('open circuits', () => {
  it('sends nothing to a member whose circuit is open, not even through the queue group', async () => {
    const pool = `open-${randomUUID().slice(0, 8)}`;
    let calls = 0;
    const broken = new PoolMember({
      nc: suite.nc,
      pool,
      id: 'broken',
      backend: {
        kind: 'broken',
        async generate() {
          calls++;
          throw Object.assign(new Error('HTTP 503 from the server'), { retryable: true });
        },
      },
    });
    await broken.start();
    cleanups.push(() => broken.stop(100));
    const c = client(pool, { maxAttempts: 3 });
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    // The breaker opens after 5 failures in a row: a few requests of 3 attempts each, bounded in case it never does.
    for (let i = 0; i < 10 && c.liveMembers()[0]?.healthy; i++) {
      await expect(c.generate(messages(7), params, { deadline: deadline() })).rejects.toThrow(/unavailable/);
    }
    expect(c.liveMembers()[0]?.healthy).toBe(false);
    const before = calls;
    const err = await c.generate(messages(8), params, { deadline: deadline() }).catch((e) => e);
    // The error says why the member is out of rotation, not only that its circuit is open.
    expect(String(err.message)).toMatch(
      /after 0 request\(s\) sent: no member in rotation \(1 known; broken: circuit open after backend_error: HTTP 503 from the server\) \(3 times\)$/,
    );
    expect(calls).toBe(before);
  });
});

describe('long generations', () => {
  it('get an attempt limit that follows maxTokens, not a fixed one that would cut them off', async () => {
    const pool = `long-${randomUUID().slice(0, 8)}`;
    const sim = new SimBackend({ profile: { timeScale: 0 } });
    const seen: number[] = [];
    const m = new PoolMember({
      nc: suite.nc,
      pool,
      id: 'm',
      backend: {
        kind: 'recording',
        generate(req, signal) {
          seen.push(req.deadline - Date.now());
          return sim.generate(req, signal);
        },
      },
    });
    await m.start();
    cleanups.push(() => m.stop(100));
    const c = client(pool);
    await c.start();
    await waitUntil(() => c.liveMembers().length === 1, 10_000, 'member live');
    // 4096 tokens at 20 tok/s + 2 min: the member may work on this attempt for ~325 s (the request allows 600 s).
    await c.generate(messages(9), { ...params, maxTokens: 4096 }, { deadline: Date.now() + 600_000 });
    expect(seen).toHaveLength(1);
    expect(seen[0]!).toBeGreaterThan(315_000);
    expect(seen[0]!).toBeLessThanOrEqual(325_000);
  });
});
