import { describe, expect, it } from 'vitest';
import {
  createPolicy,
  LeastLoadedPolicy,
  type MemberView,
  PrefixAffinityPolicy,
  type RouteRequest,
  type RoutingPolicy,
  rendezvousScore,
} from '../../inference/router/policies.js';
import { prefixBlockHashes } from '../../inference/router/prefix.js';

function member(id: string, over: Partial<MemberView> = {}): MemberView {
  return {
    id,
    capacity: 32,
    inFlight: 0,
    queued: 0,
    cacheCapacityTokens: 0,
    cacheUsedTokens: 0,
    healthy: true,
    ...over,
  };
}

function req(text: string, stickyKey?: string): RouteRequest {
  return {
    prefixKeys: prefixBlockHashes(text),
    ...(stickyKey ? { stickyKey } : {}),
  };
}

/** Route like the pool client does: take the first ranked member, count the request in flight there. */
function route(policy: RoutingPolicy, members: MemberView[], r: RouteRequest): string {
  const ranked = policy.rank(r, members);
  const id = ranked[0]!;
  policy.onRouted?.(id, r);
  members.find((m) => m.id === id)!.inFlight++;
  return id;
}

const question = (q: number) =>
  `${'S'.repeat(1000)} question ${q} ${'q'.repeat(900)}${String(q).repeat(600)}`;
const branch = (q: number, b: number) => `${question(q)}${'t'.repeat(3000)} branch ${b} ${'x'.repeat(300)}`;

describe('prefix_affinity', () => {
  it('is the default policy', () => {
    expect(createPolicy().name).toBe('prefix_affinity');
  });

  it('sends requests that share a prefix to the member that holds it', () => {
    const p = new PrefixAffinityPolicy();
    const members = ['a', 'b', 'c', 'd'].map((id) => member(id));
    const first = route(p, members, req(`${question(1)}${'t'.repeat(3000)}`));
    // Four more on one member of an idle pool: within the guard's slack of 6 requests over the mean.
    for (let b = 0; b < 4; b++) {
      expect(route(p, members, req(branch(1, b)))).toBe(first);
      expect(p.lastDecision).toBe('affinity');
    }
  });

  it('takes back what it recorded on a member that turned the request away, and only that', () => {
    const p = new PrefixAffinityPolicy();
    const members = ['a', 'b', 'c', 'd'].map((id) => member(id));
    const turn = (n: number) => req(`${question(1)}${'t'.repeat(1000 * n)}`, 'q1');
    const first = route(p, members, turn(1));
    // Turn 2 goes to the same member, which answers overloaded; another member serves it.
    const undo = p.onRouted(first, turn(2));
    undo!();
    const other = members.find((m) => m.id !== first)!.id;
    p.onRouted(other, turn(2));
    // Turn 3 follows the member that served turn 2, not the one that held turn 1 and the sticky key...
    expect(p.rank(turn(3), members)[0]).toBe(other);
    expect(p.lastDecision).toBe('affinity');
    // ...and the member that turned turn 2 away still holds turn 1, which it did serve.
    const onFirst = p.rank(
      turn(1),
      members.filter((m) => m.id !== other),
    )[0];
    expect(onFirst).toBe(first);
    expect(p.lastDecision).toBe('affinity');
  });

  it('spreads different prefixes across members', () => {
    const p = new PrefixAffinityPolicy();
    const members = ['a', 'b', 'c', 'd'].map((id) => member(id));
    const used = new Set<string>();
    for (let q = 0; q < 8; q++) used.add(route(p, members, req(`${q}`.repeat(5) + 'Z'.repeat(3000 + q))));
    expect(used.size).toBe(4);
    expect(Math.max(...members.map((m) => m.inFlight))).toBe(2);
  });

  it('uses rendezvous hashing on the sticky key for cold prefixes, so one question converges', () => {
    const p = new PrefixAffinityPolicy();
    const members = ['a', 'b', 'c', 'd'].map((id) => member(id));
    const expected = members.reduce((x, y) =>
      rendezvousScore('q42', y.id) > rendezvousScore('q42', x.id) ? y : x,
    ).id;
    expect(p.rank(req(question(42), 'q42'), members)[0]).toBe(expected);
    expect(p.lastDecision).toBe('cold_rendezvous');
  });

  it('leaves an overloaded affinity member for the next member in preference order', () => {
    const p = new PrefixAffinityPolicy({ balanceAbsThreshold: 8, balanceRelThreshold: 1.5 });
    const members = [member('a'), member('b'), member('c')];
    const r0 = req(branch(1, 0));
    p.onRouted('a', r0);
    members[0]!.inFlight = 20;
    members[1]!.inFlight = 3;
    members[2]!.inFlight = 5;
    // mean 9.33: a is 10.7 over it (> 8) and 2.1x it (> 1.5x)
    const ranked = p.rank(req(branch(1, 1)), members);
    expect(p.lastDecision).toBe('imbalanced');
    // b, then c, with room; the overloaded prefix holder a last
    expect(ranked).toEqual(['b', 'c', 'a']);
  });

  it('keeps the guard when the request fails over: the retry goes to a member with room, not the overloaded holder', () => {
    const p = new PrefixAffinityPolicy({ balanceAbsThreshold: 8, balanceRelThreshold: 1.5 });
    const members = [member('a', { inFlight: 30 }), member('b'), member('c'), member('d')];
    p.onRouted('a', req(branch(1, 0)));
    const r = req(branch(1, 1));
    // As the pool client does: the first member not yet tried in a fresh ranking, the failed one recorded as routed.
    const tried = new Set<string>();
    for (let attempt = 0; attempt < 3; attempt++) {
      const next = p.rank(r, members).find((m) => !tried.has(m))!;
      expect(next).not.toBe('a');
      tried.add(next);
      p.onRouted(next, r);
    }
    expect([...tried].sort()).toEqual(['b', 'c', 'd']);
    // Only once every member with room has been tried does the request go to the overloaded one.
    expect(p.rank(r, members).find((m) => !tried.has(m))).toBe('a');
  });

  it('sends the overflow of a sticky key to the same second member every time', () => {
    const members = ['a', 'b', 'c', 'd'].map((id) => member(id));
    const byScore = [...members].sort((x, y) => rendezvousScore('q7', y.id) - rendezvousScore('q7', x.id));
    const [top, second] = [byScore[0]!.id, byScore[1]!.id];
    const overflow = new Set<string>();
    for (let trial = 0; trial < 3; trial++) {
      const p = new PrefixAffinityPolicy();
      const view = members.map((m) => ({ ...m, inFlight: m.id === top ? 12 : 2 }));
      p.onRouted(top, req(question(7), 'q7'));
      overflow.add(p.rank(req(branch(7, trial), 'q7'), view)[0]!);
      expect(p.lastDecision).toBe('imbalanced');
    }
    expect([...overflow]).toEqual([second]);
  });

  it('places a cold sticky key on the less loaded of its two rendezvous choices', () => {
    const p = new PrefixAffinityPolicy();
    const members = ['a', 'b', 'c', 'd'].map((id) => member(id));
    const byScore = [...members].sort((x, y) => rendezvousScore('q9', y.id) - rendezvousScore('q9', x.id));
    byScore[0]!.inFlight = 3;
    byScore[1]!.inFlight = 1;
    expect(p.rank(req(question(9), 'q9'), members)[0]).toBe(byScore[1]!.id);
    expect(p.lastDecision).toBe('cold_rendezvous');
    byScore[1]!.inFlight = 5;
    expect(p.rank(req(question(9), 'q9'), members)[0]).toBe(byScore[0]!.id);
  });

  it('stays with the affinity member unless both thresholds are passed', () => {
    const p = new PrefixAffinityPolicy({ balanceAbsThreshold: 8, balanceRelThreshold: 1.5 });
    p.onRouted('a', req(branch(1, 0)));
    // 1.67x the mean of 12, but only 8 above it: not overloaded.
    expect(p.rank(req(branch(1, 1)), [member('a', { inFlight: 20 }), member('b', { inFlight: 4 })])[0]).toBe(
      'a',
    );
    expect(p.lastDecision).toBe('affinity');
    // 10 above the mean of 90, but only 1.11x it: not overloaded.
    const big = { capacity: 200 };
    expect(
      p.rank(req(branch(1, 1)), [
        member('a', { ...big, inFlight: 100 }),
        member('b', { ...big, inFlight: 80 }),
      ])[0],
    ).toBe('a');
    expect(p.lastDecision).toBe('affinity');
  });

  it('leaves the affinity member when it is at capacity', () => {
    const p = new PrefixAffinityPolicy();
    const members = [member('a', { capacity: 4, inFlight: 4 }), member('b', { capacity: 4, inFlight: 1 })];
    p.onRouted('a', req(branch(1, 0)));
    expect(p.rank(req(branch(1, 1)), members)).toEqual(['b', 'a']);
    expect(p.lastDecision).toBe('affinity_full');
  });

  it('stays with the affinity member when every member is full, unless it is overloaded against the rest', () => {
    const p = new PrefixAffinityPolicy();
    p.onRouted('a', req(branch(1, 0)));
    const full = (id: string, queued: number) => member(id, { capacity: 8, inFlight: 8, queued });
    // A pool at its throughput: each member queues what it is sent, the holder one request more than the others.
    expect(p.rank(req(branch(1, 1)), [full('a', 1), full('b', 0), full('c', 0), full('d', 0)])[0]).toBe('a');
    expect(p.lastDecision).toBe('affinity');
    // Its queue far past the others' (more than 6 above the mean and 1.25x it): the guard still moves the request.
    const ranked = p.rank(req(branch(1, 1)), [full('a', 12), full('b', 0), full('c', 0), full('d', 0)]);
    expect(ranked[0]).not.toBe('a');
    expect(ranked.at(-1)).toBe('a');
    expect(p.lastDecision).toBe('imbalanced');
  });

  it('treats a small shared prefix below the cache threshold as cold', () => {
    const p = new PrefixAffinityPolicy({ cacheThreshold: 0.5 });
    const members = [member('a', { inFlight: 2 }), member('b')];
    const shared = 'S'.repeat(512);
    p.onRouted('a', req(`${shared}${'1'.repeat(2048)}`));
    expect(p.rank(req(`${shared}${'2'.repeat(2048)}`), members)[0]).toBe('b');
    expect(p.lastDecision).toBe('cold_least_loaded');
  });

  it('skips unhealthy members and forgets gone ones', () => {
    const p = new PrefixAffinityPolicy();
    const members = [member('a', { healthy: false }), member('b'), member('c')];
    const r = req(branch(1, 0));
    p.onRouted('a', r);
    const ranked = p.rank(r, members);
    expect(ranked).not.toContain('a');
    expect(ranked.sort()).toEqual(['b', 'c']);
    p.onMemberGone('a');
    expect(p.index.matchLength('a', r.prefixKeys)).toBe(0);
    expect(p.rank(r, [member('x', { healthy: false })])).toEqual([]);
  });

  it('ranks every healthy member, prefix holders first for failover', () => {
    const p = new PrefixAffinityPolicy();
    const members = ['a', 'b', 'c', 'd', 'e'].map((id) => member(id));
    const r = req(branch(3, 0));
    p.onRouted('c', r);
    p.onRouted('e', { ...r, prefixKeys: r.prefixKeys.slice(0, 4) });
    const ranked = p.rank(r, members);
    expect(ranked).toHaveLength(5);
    expect(ranked.slice(0, 2)).toEqual(['c', 'e']);
  });

  it('sizes the per-member index from the announced cache', () => {
    const p = new PrefixAffinityPolicy({ blockChars: 256, charsPerToken: 4 });
    p.rank(req('x'), [member('a', { cacheCapacityTokens: 64 * 100 })]);
    expect(p.index.capacity('a')).toBe(100);
  });

  it('learns characters per token from the prompt tokens members report, and sizes the index with it', () => {
    const p = new PrefixAffinityPolicy({ blockChars: 256, charsPerToken: 4 });
    const members = [member('a', { cacheCapacityTokens: 64_000 })];
    const r = { ...req('y'.repeat(256 * 40)), prefixChars: 256 * 40 }; // 10,240 characters
    // Below 10,000 served tokens the configured ratio holds.
    p.onServed('a', r, 1_600);
    expect(p.charsPerToken()).toBe(4);
    // A tokenizer at 6.4 characters per token: 10,240 characters are 1,600 tokens.
    for (let i = 0; i < 9; i++) p.onServed('a', r, 1_600);
    expect(p.charsPerToken()).toBeCloseTo(6.4, 6);
    p.rank(req('x'), members);
    expect(p.index.capacity('a')).toBe(1600); // 64,000 tokens x 6.4 / 256
    // Nonsense reports are ignored.
    p.onServed('a', r, 0);
    p.onServed('a', r, Number.NaN);
    p.onServed('a', { ...r, prefixChars: 0 }, 1_000);
    expect(p.charsPerToken()).toBeCloseTo(6.4, 6);
  });

  it('follows prefixes other routers report as served (placement events)', () => {
    const p = new PrefixAffinityPolicy();
    const members = ['a', 'b', 'c', 'd'].map((id) => member(id));
    const r = req(branch(5, 0));
    p.onPeerServed('c', r.prefixKeys);
    expect(p.rank(req(branch(5, 1)), members)[0]).toBe('c');
    expect(p.lastDecision).toBe('affinity');
  });

  it('still places a new sticky key by two choices when every member holds the shared system prompt', () => {
    const p = new PrefixAffinityPolicy();
    const members = ['a', 'b', 'c', 'd'].map((id) => member(id));
    const system = 'S'.repeat(1800);
    for (const m of members)
      p.onRouted(m.id, req(`${system}earlier question on ${m.id} ${'e'.repeat(4000)}`));
    const byScore = [...members].sort((x, y) => rendezvousScore('q8', y.id) - rendezvousScore('q8', x.id));
    byScore[0]!.inFlight = 5;
    expect(p.rank(req(`${system}question eight ${'n'.repeat(8000)}`, 'q8'), members)[0]).toBe(byScore[1]!.id);
    expect(p.lastDecision).toBe('cold_rendezvous');
  });

  it('keeps a sticky request with the member holding part of its prefix, below the cache threshold', () => {
    const p = new PrefixAffinityPolicy({ cacheThreshold: 0.9 });
    const members = ['a', 'b', 'c', 'd'].map((id) => member(id));
    const byScore = [...members].sort((x, y) => rendezvousScore('q7', y.id) - rendezvousScore('q7', x.id));
    const holder = byScore[3]!; // the key's last rendezvous choice: only the prefix can put it first
    p.onRouted(holder.id, req(question(7), 'q7'));
    holder.inFlight = 2;
    // Shares the question's blocks but under 90% of its own: not warm, yet it stays where that prefix is.
    expect(p.rank(req(branch(7, 0), 'q7'), members)[0]).toBe(holder.id);
    expect(p.lastDecision).toBe('cold_rendezvous');
  });
});

describe('round_robin', () => {
  it('rotates through healthy members and includes them all', () => {
    const p = createPolicy('round_robin');
    const members = [member('c'), member('a'), member('b'), member('x', { healthy: false })];
    const r = req('anything');
    expect(p.rank(r, members)).toEqual(['a', 'b', 'c']);
    expect(p.rank(r, members)).toEqual(['b', 'c', 'a']);
    expect(p.rank(r, members)).toEqual(['c', 'a', 'b']);
    expect(p.rank(r, members)).toEqual(['a', 'b', 'c']);
  });
});

describe('least_loaded', () => {
  it('picks the lowest utilisation, ties by id', () => {
    const p = new LeastLoadedPolicy();
    const members = [
      member('a', { inFlight: 10, capacity: 32 }),
      member('b', { inFlight: 10, queued: 2, capacity: 64 }),
      member('c', { inFlight: 3, capacity: 8 }),
      member('d', { inFlight: 0, healthy: false }),
      member('e', { inFlight: 6, capacity: 32 }),
    ];
    // b 0.1875, e 0.1875, a 0.3125, c 0.375
    expect(p.rank(req('x'), members)).toEqual(['b', 'e', 'a', 'c']);
  });
});
