// Routing policies on a ParallelMuse-shaped workload: groups of branches that share a long prompt prefix, plus
// independent requests, served by four identical simulated members with a bounded prefix cache. Each policy
// runs the same seeded workload on fresh members (cold caches) and a fresh router. Prints makespan, prefix-cache
// hit rate, load spread across members and pool utilisation, and checks them against the targets.
//
// Busy time: a member is busy while it has at least one request inside its backend (prefill or decode); it is
// measured in wall time around each backend call. Ideal makespan = Σ busy time / 4 (the same work spread
// perfectly over the pool, no member ever idle); utilisation = ideal makespan / achieved makespan.
import type { NatsConnection } from '@nats-io/nats-core';
import { reactSystemPrompt } from '../agent/prompts.js';
import type { ChatMessage } from '../agent/types.js';
import { BlobStore } from '../common/blob-store.js';
import { connectNats } from '../common/nats.js';
import { PoolMember } from '../inference/member.js';
import { PoolClient } from '../inference/pool-client.js';
import type { PolicyName } from '../inference/router/policies.js';
import type { BackendRequest, GenerateParams, Generation, InferenceBackend } from '../inference/types.js';
import { SimBackend } from '../sim/backend.js';
import type { SimServingProfile } from '../sim/serving.js';
import { mix32, SimRng, sampleQuestions } from '../sim/world.js';
import { benchStack, table } from './harness.js';

const MEMBERS = 4;
const GROUPS = Number(process.env.BENCH_GROUPS ?? 24);
const BRANCHES = 8; // requests per group: the first, then the rest once it returns
const INDEPENDENT_SHARE = 0.25;
const PREFIX_TOKENS = Number(process.env.BENCH_PREFIX_TOKENS ?? 8000); // group context after the system prompt
const INDEPENDENT_TOKENS = 3000;
const CONCURRENCY = 48;
const SEED = 7;
// The default H100 profile, run in real time, with the KV cache scaled down with the prompts: 64k tokens hold
// ~7 of these 8.5k-token contexts, as the default 393k-token cache holds ~7 of the 16-64k contexts of deep research.
const PROFILE: Partial<SimServingProfile> = {
  timeScale: Number(process.env.BENCH_TIME_SCALE ?? 1),
  cacheCapacityTokens: 65_536,
};
const PARAMS: GenerateParams = { maxTokens: 64, temperature: 1, topLogprobs: 16 };
const POLICIES: PolicyName[] = ['round_robin', 'least_loaded', 'prefix_affinity'];
const TARGETS = { hitRatio: 2, maxMeanLoad: 1.3, utilisation: 0.9 };

// -- workload ---------------------------------------------------------------------------------------------------

interface Req {
  messages: ChatMessage[];
  stickyKey?: string;
}
interface Group {
  id: string;
  branches: Req[];
}

const VOCAB = Array.from({ length: 2000 }, (_, i) => {
  const r = new SimRng(mix32(SEED, i, 0x77));
  const len = 3 + r.int(6);
  let w = '';
  for (let k = 0; k < len; k++) w += String.fromCharCode(97 + r.int(26));
  return w;
});

/** About `tokens` simulated tokens of prose (one word of ≤ 8 letters with its space is one token). */
function text(rng: SimRng, tokens: number): string {
  const words: string[] = [];
  for (let i = 0; i < tokens; i++) words.push(VOCAB[rng.int(VOCAB.length)]!);
  return words.join(' ');
}

function workload(): { groups: Group[]; independent: Req[] } {
  const rng = new SimRng(mix32(SEED, 0x10));
  const system = reactSystemPrompt('2025-06-01');
  const nIndependent = Math.round((GROUPS * BRANCHES * INDEPENDENT_SHARE) / (1 - INDEPENDENT_SHARE));
  const questions = sampleQuestions(GROUPS + nIndependent, SEED);
  const groups: Group[] = questions.slice(0, GROUPS).map((q, g) => {
    // Shared by the group: system prompt, question and the trajectory so far (search results, page notes).
    const prefix = `${q.question}\n\nWork so far:\n${text(rng, PREFIX_TOKENS)}`;
    return {
      id: `g${g}`,
      branches: Array.from({ length: BRANCHES }, (_, b) => ({
        stickyKey: `g${g}`,
        messages: [
          { role: 'system', content: system },
          { role: 'user', content: `${prefix}\n\nBranch ${b}: ${text(rng, 40)}` },
        ],
      })),
    };
  });
  const independent = questions.slice(GROUPS).map((q) => ({
    messages: [
      { role: 'system', content: system },
      { role: 'user', content: `${q.question}\n\nNotes:\n${text(rng, INDEPENDENT_TOKENS)}` },
    ] as ChatMessage[],
  }));
  return { groups, independent };
}

// -- members with busy-time accounting ---------------------------------------------------------------------------

interface BenchMember {
  id: string;
  member: PoolMember;
  sim: SimBackend;
  busyMs(): number;
  stop(): Promise<void>;
}

async function startMember(
  cfg: Parameters<typeof connectNats>[0],
  pool: string,
  id: string,
): Promise<BenchMember> {
  const sim = new SimBackend({ profile: PROFILE });
  let active = 0;
  let since = 0;
  let busy = 0;
  const backend: InferenceBackend = {
    kind: sim.kind,
    load: () => sim.load(),
    async generate(req: BackendRequest, signal: AbortSignal) {
      if (active++ === 0) since = performance.now();
      try {
        return await sim.generate(req, signal);
      } finally {
        if (--active === 0) busy += performance.now() - since;
      }
    },
  };
  const nc: NatsConnection = await connectNats(cfg, `bench-routing-${id}`);
  const member = new PoolMember({ nc, pool, backend, id, blobs: new BlobStore(nc) });
  await member.start();
  return {
    id,
    member,
    sim,
    busyMs: () => busy + (active > 0 ? performance.now() - since : 0),
    async stop() {
      await member.stop();
      await sim.close();
      await nc.drain().catch(() => {});
    },
  };
}

/** FIFO semaphore: at most `n` requests in flight. */
function limiter(n: number) {
  let free = n;
  const waiting: Array<() => void> = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (free > 0) free--;
    else await new Promise<void>((r) => waiting.push(r));
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else free++;
    }
  };
}

interface PolicyResult {
  policy: PolicyName;
  makespanS: number;
  hitRate: number;
  served: number[];
  busyS: number[];
  idealS: number;
  utilisation: number;
  uncachedTokens: number;
}

async function runPolicy(cfg: Parameters<typeof connectNats>[0], policy: PolicyName): Promise<PolicyResult> {
  const pool = `routing-${policy.replace(/_/g, '-')}`;
  const members = await Promise.all(
    Array.from({ length: MEMBERS }, (_, i) => startMember(cfg, pool, `sim-${i}`)),
  );
  const nc = await connectNats(cfg, 'bench-routing-client');
  const client = new PoolClient({ nc, pool, policy });
  try {
    await client.start();
    const until = Date.now() + 10_000;
    while (client.liveMembers().length < MEMBERS && Date.now() < until)
      await new Promise((r) => setTimeout(r, 50));
    if (client.liveMembers().length < MEMBERS)
      throw new Error(`only ${client.liveMembers().length} members live`);

    const { groups, independent } = workload();
    const gens: Generation[] = [];
    const limit = limiter(CONCURRENCY);
    const send = (r: Req) =>
      limit(async () => {
        const g = await client.generate(r.messages, PARAMS, {
          deadline: Date.now() + 180_000,
          stickyKey: r.stickyKey,
        });
        gens.push(g);
      });
    // Interleave group starts with independent requests in a seeded order.
    const rng = new SimRng(mix32(SEED, 0x20));
    const starts: Array<() => Promise<void>> = [
      ...groups.map((g) => async () => {
        await send(g.branches[0]!);
        await Promise.all(g.branches.slice(1).map(send));
      }),
      ...independent.map((r) => () => send(r)),
    ];
    for (let i = starts.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [starts[i], starts[j]] = [starts[j]!, starts[i]!];
    }
    const t0 = performance.now();
    await Promise.all(starts.map((s) => s()));
    const makespanS = (performance.now() - t0) / 1000;

    const prompt = gens.reduce((n, g) => n + g.usage.promptTokens, 0);
    const cached = gens.reduce((n, g) => n + g.usage.cachedPromptTokens, 0);
    const busyS = members.map((m) => m.busyMs() / 1000);
    const idealS = busyS.reduce((a, b) => a + b, 0) / MEMBERS;
    return {
      policy,
      makespanS,
      hitRate: cached / prompt,
      served: members.map((m) => m.member.stats.served),
      busyS,
      idealS,
      utilisation: idealS / makespanS,
      uncachedTokens: members.reduce(
        (n, m) => n + m.sim.stats().promptTokens - m.sim.stats().cachedPromptTokens,
        0,
      ),
    };
  } finally {
    client.close();
    await Promise.all(members.map((m) => m.stop()));
    await nc.drain().catch(() => {});
  }
}

const maxMean = (xs: number[]) => Math.max(...xs) / (xs.reduce((a, b) => a + b, 0) / xs.length);

async function main() {
  const stack = await benchStack('routing');
  const results: PolicyResult[] = [];
  try {
    const { groups, independent } = workload();
    console.log(
      `workload: ${groups.length} groups x ${BRANCHES} requests (shared ~${PREFIX_TOKENS + 550}-token prefix, short distinct suffix) + ` +
        `${independent.length} independent requests (~${INDEPENDENT_TOKENS + 550} tokens); ${CONCURRENCY} in flight; ` +
        `${MEMBERS} sim members, timeScale ${PROFILE.timeScale}, cache ${PROFILE.cacheCapacityTokens} tokens each; maxTokens ${PARAMS.maxTokens}`,
    );
    for (const policy of POLICIES) {
      const r = await runPolicy(stack.cfg, policy);
      results.push(r);
      console.log(
        `${policy}: done in ${r.makespanS.toFixed(1)} s (served per member ${r.served.join('/')}, busy s ${r.busyS.map((b) => b.toFixed(1)).join('/')})`,
      );
    }
  } finally {
    await stack.stop();
  }

  console.log(
    '\nload = busy time per member (wall time with >= 1 request in its backend); requests served per member also shown',
  );
  console.log('ideal makespan = Σ member busy time / 4; utilisation = ideal / achieved makespan\n');
  console.log(
    table(
      results.map((r) => ({
        policy: r.policy,
        'makespan s': r.makespanS,
        'cache hit rate': r.hitRate,
        'uncached prompt tokens': r.uncachedTokens,
        'max/mean busy': maxMean(r.busyS),
        'max/mean served': maxMean(r.served),
        'ideal makespan s': r.idealS,
        utilisation: r.utilisation,
      })),
    ),
  );
  const rr = results.find((r) => r.policy === 'round_robin')!;
  const pa = results.find((r) => r.policy === 'prefix_affinity')!;
  const ratio = pa.hitRate / rr.hitRate;
  const mark = (ok: boolean) => (ok ? 'met' : 'NOT met');
  console.log(
    `\nprefix_affinity / round_robin hit rate: ${ratio.toFixed(2)}x (target >= ${TARGETS.hitRatio}x: ${mark(ratio >= TARGETS.hitRatio)})`,
  );
  console.log(
    `prefix_affinity max/mean load (busy): ${maxMean(pa.busyS).toFixed(2)} (target <= ${TARGETS.maxMeanLoad}: ${mark(maxMean(pa.busyS) <= TARGETS.maxMeanLoad)}); ` +
      `by requests served: ${maxMean(pa.served).toFixed(2)} (${mark(maxMean(pa.served) <= TARGETS.maxMeanLoad)})`,
  );
  console.log(
    `prefix_affinity utilisation: ${pa.utilisation.toFixed(2)} (target >= ${TARGETS.utilisation}: ${mark(pa.utilisation >= TARGETS.utilisation)})`,
  );
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
