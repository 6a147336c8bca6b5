// Routing policies on a ParallelMuse-shaped workload (rollouts of a question and their branches, which share long
// prompt prefixes, plus independent requests), served by four identical simulated members (BENCH_MEMBERS) with a
// bounded prefix cache. Each policy runs the same seeded workload on fresh members (cold caches) and fresh routers
// (one per simulated rollout worker, BENCH_ROUTERS, default 1). Prints makespan, prefix-cache hit rate (overall and
// by request kind), load spread across members and pool utilisation, checks them against the targets, and prints the
// workload's hit-rate ceiling (one server whose cache never evicts): how much of the reachable hit rate each policy
// got, and the most any policy could reach over round_robin on this workload.
//
// Load: a member's load is its request-seconds, the time integral of the requests inside its backend (queued for a
// batch slot or KV blocks, prefilling or decoding), measured in wall time around each backend call. A member that is
// sent more requests, longer ones, or ones that miss its cache and queue behind prefill carries more; max/mean across
// the members is the imbalance figure. Requests served and GPU token work (uncached prompt + completion tokens)
// per member are printed beside it.
// Utilisation: a member is busy while it has at least one request inside its backend. Ideal makespan = Σ busy time / members
// (the same busy time spread perfectly over the pool, no member ever idle); utilisation = ideal / achieved makespan.
// It falls when a policy leaves members idle while others hold work.
import type { NatsConnection } from '@nats-io/nats-core';
import { reactSystemPrompt } from '../agent/prompts.js';
import type { ChatMessage } from '../agent/types.js';
import { BlobStore } from '../common/blob-store.js';
import { fnv1a32 } from '../common/hash.js';
import { createLimiter } from '../common/limiter.js';
import { connectNats } from '../common/nats.js';
import { PoolMember } from '../inference/member.js';
import { PoolClient } from '../inference/pool-client.js';
import {
  type AffinityDecision,
  createPolicy,
  type PolicyName,
  PrefixAffinityPolicy,
} from '../inference/router/policies.js';
import type { BackendRequest, GenerateParams, Generation, InferenceBackend } from '../inference/types.js';
import { SimBackend } from '../sim/backend.js';
import type { SimServingProfile } from '../sim/serving.js';
import { mix32, SimRng, sampleQuestions } from '../sim/world.js';
import { benchStack, envNumber, envNumberList, sum, table } from './harness.js';

// The issue's pool is 4 members; BENCH_MEMBERS scales it out, with the work in flight scaled alike (12 requests
// and 3 questions at a time per member), so per-member load stays what it is at 4.
const MEMBERS = envNumber('BENCH_MEMBERS', 4);
const CONCURRENCY = 12 * MEMBERS;
// Rollout workers, each with its own router; a request goes to one of them at random (BENCH_ROUTERS).
const ROUTERS = envNumber('BENCH_ROUTERS', 1);
const SEED = 7;
// The default H100 profile, run in real time, with the KV cache scaled down with the prompts: 64k tokens hold
// ~7 of these 5-10k-token contexts, as the default 393k-token cache holds ~7 of the 16-64k contexts of deep research.
const PROFILE: Partial<SimServingProfile> = {
  timeScale: envNumber('BENCH_TIME_SCALE', 1, { real: true }),
  cacheCapacityTokens: envNumber('BENCH_CACHE_TOKENS', 65_536),
};
// Tokens per model turn (BENCH_MAX_TOKENS): short, so a run takes a minute or two; 400 (run at BENCH_TIME_SCALE=0.25)
// gave the same ratio, 1.62x (measured before the simulator's prefill shared the engine steps with decoding).
const PARAMS: GenerateParams = {
  maxTokens: envNumber('BENCH_MAX_TOKENS', 64),
  temperature: 1,
  topLogprobs: 16,
};
const POLICY_NAMES: readonly PolicyName[] = ['round_robin', 'least_loaded', 'prefix_affinity'];
// Checked before anything runs: a misspelled name would otherwise stop the run after minutes of the others.
const POLICIES = (process.env.BENCH_POLICIES ?? POLICY_NAMES.join(',')).split(',').map((p): PolicyName => {
  const name = p.trim() as PolicyName;
  if (!POLICY_NAMES.includes(name))
    throw new Error(`BENCH_POLICIES: unknown policy '${name}' (one of ${POLICY_NAMES.join(', ')})`);
  return name;
});
const TARGETS = { hitRatio: 2, maxMeanLoad: 1.3, utilisation: 0.9 };

// -- workload ---------------------------------------------------------------------------------------------------
//
// Two shapes, chosen with BENCH_WORKLOAD:
// - 'rollouts' (default): what a ParallelMuse job sends. Per question, an initial rollout and a from-scratch rollout
//   run turn by turn (each turn's prompt is the previous one plus the model's output and a tool observation); when
//   the initial rollout ends (the from-scratch one running on), T branches start from each of K of its steps and
//   continue turn by turn to the end.
//   Every request of a question carries the question as its sticky key, as the parallelMuse workflow does.
//   Independent single requests (other jobs sharing the pool) run alongside.
// - 'burst': groups of single requests sharing one long prefix (the first, then the rest at once) plus independent
//   requests; the sharing of branches only, with none of the turn-to-turn sharing.
// Both are seeded: every policy sees the same prompts in the same order of dependencies.

type Shape = 'rollouts' | 'burst';
const SHAPE = (process.env.BENCH_WORKLOAD ?? 'rollouts') as Shape;
if (SHAPE !== 'rollouts' && SHAPE !== 'burst')
  throw new Error(`BENCH_WORKLOAD must be 'rollouts' or 'burst', got '${SHAPE}'`);

const QUESTIONS = envNumber('BENCH_QUESTIONS', 40);
// Questions run as `muse batch` runs them: at most this many at once, the next starting when one finishes. A
// single wave of questions would measure the critical path of one question's turns, not the pool.
// A comma-separated list runs the workload once per value and ends with a table of the hit-rate ratio, the ceiling
// and the makespans across them: how the gap between the policies moves with the load on the pool's caches.
const QUESTION_CONCURRENCY = envNumberList('BENCH_QUESTION_CONCURRENCY', [3 * MEMBERS]);
const BRANCH_POINTS = 2; // K, the parallelMuse default
const BRANCHES_PER_POINT = 3; // T, the parallelMuse default
const MIN_TURNS = envNumber('BENCH_MIN_TURNS', 6);
const MAX_TURNS = envNumber('BENCH_MAX_TURNS', 12);
if (MAX_TURNS < MIN_TURNS)
  throw new Error(`BENCH_MAX_TURNS (${MAX_TURNS}) is below BENCH_MIN_TURNS (${MIN_TURNS})`);
const OBSERVATION_TOKENS = [400, 1000] as const; // a search result page or a fetched page's excerpt
// Between a turn's reply and the next turn's request, in simulated time. Short against real search and page fetches
// (seconds): at 2000 the ratio barely moved (1.56x against 1.62x) while the pool idled a third of the time (measured
// before the simulator's prefill shared the engine steps with decoding).
const TOOL_LATENCY_MS = envNumber('BENCH_TOOL_LATENCY_MS', 300);

const GROUPS = envNumber('BENCH_GROUPS', 24);
const BRANCHES = 8; // 'burst': requests per group, the first, then the rest once it returns
const PREFIX_TOKENS = envNumber('BENCH_PREFIX_TOKENS', 8000); // 'burst': group context after the system prompt

const INDEPENDENT_SHARE = 0.25; // of all requests
const INDEPENDENT_TOKENS = 3000;
const INDEPENDENT_LOOPS = 8; // 'rollouts': independent requests come one after another from this many sources

type Kind = 'first turn' | 'later turn' | 'branch first turn' | 'branch later turn' | 'independent';
/**
 * Sends one request; resolves with the reply's text, which a rollout appends to its context as the model's turn.
 * `seed` is the sampling seed: each rollout turn has its own, as the parallelMuse workflow gives each rollout its own,
 * so a branch re-generating a step does not copy the original step's reply.
 */
type Send = (messages: ChatMessage[], kind: Kind, stickyKey?: string, seed?: number) => Promise<string>;

interface Workload {
  describe: string;
  /** Issues every request through `send`, respecting the workload's dependencies; resolves when all are done. */
  run(send: Send, sleep: (simMs: number) => Promise<void>): Promise<void>;
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

function shuffle<T>(xs: T[], rng: SimRng): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

const system = reactSystemPrompt('2025-06-01');

function independentRequests(n: number, questions: { question: string }[]): ChatMessage[][] {
  const rng = new SimRng(mix32(SEED, 0x30));
  return questions.slice(0, n).map((q) => [
    { role: 'system', content: system },
    { role: 'user', content: `${q.question}\n\nNotes:\n${text(rng, INDEPENDENT_TOKENS)}` },
  ]);
}

interface RolloutPlan {
  id: string;
  turns: number;
}

function rolloutsWorkload(questionConcurrency: number): Workload {
  const questions = sampleQuestions(QUESTIONS, SEED);
  const turnsOf = (id: string) =>
    MIN_TURNS + new SimRng(mix32(SEED, fnv1a32(id))).int(MAX_TURNS - MIN_TURNS + 1);
  const requestsPerQuestion = (qi: number) => {
    const initial = turnsOf(`q${qi}/initial`);
    let n = initial + turnsOf(`q${qi}/scratch`);
    for (const step of branchSteps(qi, initial)) n += BRANCHES_PER_POINT * (initial - step);
    return n;
  };
  const rolloutRequests = questions.reduce((n, _, qi) => n + requestsPerQuestion(qi), 0);
  const nIndependent = Math.round((rolloutRequests * INDEPENDENT_SHARE) / (1 - INDEPENDENT_SHARE));
  const independent = independentRequests(nIndependent, sampleQuestions(QUESTIONS + nIndependent, SEED + 1));

  /** Runs one rollout from `context` for `turns` turns; returns the context before each of its turns. */
  async function rollout(
    send: Send,
    sleep: (ms: number) => Promise<void>,
    plan: RolloutPlan,
    context: ChatMessage[],
    stickyKey: string,
    firstKind: Kind,
  ): Promise<ChatMessage[][]> {
    const rng = new SimRng(mix32(SEED, fnv1a32(plan.id)));
    const before: ChatMessage[][] = [];
    let messages = context;
    for (let t = 0; t < plan.turns; t++) {
      before.push(messages);
      const later: Kind = firstKind === 'branch first turn' ? 'branch later turn' : 'later turn';
      const reply = await send(
        messages,
        t === 0 ? firstKind : later,
        stickyKey,
        mix32(SEED, fnv1a32(plan.id), t),
      );
      if (t === plan.turns - 1) break;
      await sleep(TOOL_LATENCY_MS);
      const [lo, hi] = OBSERVATION_TOKENS;
      messages = [
        ...messages,
        { role: 'assistant', content: reply },
        { role: 'user', content: `<tool_response>${text(rng, lo + rng.int(hi - lo + 1))}</tool_response>` },
      ];
    }
    return before;
  }

  return {
    describe:
      `${QUESTIONS} questions, ${questionConcurrency} at a time, each: an initial and a from-scratch rollout of ${MIN_TURNS}-${MAX_TURNS} turns, then ` +
      `${BRANCH_POINTS} branch points x ${BRANCHES_PER_POINT} branches continuing to the end ` +
      `(observations ${OBSERVATION_TOKENS.join('-')} tokens, tool latency ${TOOL_LATENCY_MS} ms); ` +
      `${rolloutRequests} rollout requests + ${independent.length} independent requests (~${INDEPENDENT_TOKENS + 550} tokens)`,
    async run(send, sleep) {
      const runQuestion = async (q: { question: string }, qi: number) => {
        const stickyKey = `q${qi}`;
        const start: ChatMessage[] = [
          { role: 'system', content: system },
          { role: 'user', content: q.question },
        ];
        const initial = { id: `q${qi}/initial`, turns: turnsOf(`q${qi}/initial`) };
        const scratch = { id: `q${qi}/scratch`, turns: turnsOf(`q${qi}/scratch`) };
        // As the parallelMuse workflow: branches start once the initial rollout ends, the from-scratch one running on.
        const scratchDone = rollout(send, sleep, scratch, start, stickyKey, 'first turn');
        // Awaited below; should the initial rollout fail first, its failure is the one the run reports.
        scratchDone.catch(() => {});
        const contexts = await rollout(send, sleep, initial, start, stickyKey, 'first turn');
        await Promise.all([
          scratchDone,
          ...branchSteps(qi, initial.turns).flatMap((step) =>
            Array.from({ length: BRANCHES_PER_POINT }, (_, b) =>
              rollout(
                send,
                sleep,
                { id: `q${qi}/branch${step}.${b}`, turns: initial.turns - step },
                contexts[step]!,
                stickyKey,
                'branch first turn',
              ),
            ),
          ),
        ]);
      };
      let nextQuestion = 0;
      const questionRuns = Array.from(
        { length: Math.min(questionConcurrency, questions.length) },
        async () => {
          while (nextQuestion < questions.length) {
            const qi = nextQuestion++;
            await runQuestion(questions[qi]!, qi);
          }
        },
      );
      const perLoop = Math.ceil(independent.length / INDEPENDENT_LOOPS);
      const independentRuns = Array.from({ length: INDEPENDENT_LOOPS }, async (_, l) => {
        for (const messages of independent.slice(l * perLoop, (l + 1) * perLoop))
          await send(messages, 'independent');
      });
      await Promise.all([...questionRuns, ...independentRuns]);
    },
  };
}

/** The K steps a branch starts from (re-generating that step): distinct, after the first turn, seeded. */
function branchSteps(qi: number, turns: number): number[] {
  const rng = new SimRng(mix32(SEED, qi, 0x42));
  return shuffle(
    Array.from({ length: turns - 1 }, (_, i) => i + 1),
    rng,
  )
    .slice(0, BRANCH_POINTS)
    .sort((a, b) => a - b);
}

function burstWorkload(): Workload {
  const rng = new SimRng(mix32(SEED, 0x10));
  const nIndependent = Math.round((GROUPS * BRANCHES * INDEPENDENT_SHARE) / (1 - INDEPENDENT_SHARE));
  const questions = sampleQuestions(GROUPS + nIndependent, SEED);
  const groups = questions.slice(0, GROUPS).map((q) => {
    // Shared by the group: system prompt, question and the trajectory so far (search results, page notes).
    const prefix = `${q.question}\n\nWork so far:\n${text(rng, PREFIX_TOKENS)}`;
    return Array.from({ length: BRANCHES }, (_, b): ChatMessage[] => [
      { role: 'system', content: system },
      { role: 'user', content: `${prefix}\n\nBranch ${b}: ${text(rng, 40)}` },
    ]);
  });
  const independent = independentRequests(nIndependent, questions.slice(GROUPS));
  return {
    describe:
      `${GROUPS} groups x ${BRANCHES} requests (shared ~${PREFIX_TOKENS + 550}-token prefix, short distinct suffix) + ` +
      `${independent.length} independent requests (~${INDEPENDENT_TOKENS + 550} tokens)`,
    async run(send) {
      // Group starts and independent requests interleaved in a seeded order.
      const starts: Array<() => Promise<unknown>> = [
        ...groups.map((branches, g) => async () => {
          await send(branches[0]!, 'first turn', `g${g}`);
          await Promise.all(branches.slice(1).map((m) => send(m, 'branch first turn', `g${g}`)));
        }),
        ...independent.map((m) => () => send(m, 'independent')),
      ];
      await Promise.all(shuffle(starts, new SimRng(mix32(SEED, 0x20))).map((s) => s()));
    },
  };
}

const workload = (questionConcurrency: number): Workload =>
  SHAPE === 'rollouts' ? rolloutsWorkload(questionConcurrency) : burstWorkload();

// -- members with load and busy-time accounting-----------------------------------------------------------------------

interface BenchMember {
  id: string;
  member: PoolMember;
  sim: SimBackend;
  busyMs(): number;
  requestMs(): number;
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
  let requestMs = 0;
  const backend: InferenceBackend = {
    kind: sim.kind,
    load: () => sim.load(),
    async generate(req: BackendRequest, signal: AbortSignal) {
      const start = performance.now();
      if (active++ === 0) since = start;
      try {
        return await sim.generate(req, signal);
      } finally {
        const end = performance.now();
        requestMs += end - start;
        if (--active === 0) busy += end - since;
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
    requestMs: () => requestMs,
    async stop() {
      await member.stop();
      await sim.close();
      await nc.drain().catch(() => {});
    },
  };
}

interface PolicyResult {
  policy: PolicyName;
  makespanS: number;
  hitRate: number;
  served: number[];
  /** Request-seconds per member: the load figure. */
  loadS: number[];
  /** Uncached prompt + completion tokens per member. */
  workTokens: number[];
  busyS: number[];
  idealS: number;
  utilisation: number;
  uncachedTokens: number;
  evictedBlocks: number;
  decisions: Map<AffinityDecision, number>;
  hitRateByKind: Map<Kind, number>;
  /**
   * Over every turn of the partial rollouts (branches), printed beside the overall hit rate (cached prompt tokens /
   * prompt tokens over every request), which is the one the target is checked on.
   */
  branchHitRate: number;
  /** 'burst': branch requests that missed their group's prefix, by where they ran. */
  branchMisses: BranchMisses;
}

/**
 * Where the branch misses of 'burst' come from. A group's branches are sent once its first request has returned, so
 * its prefix was cached on that request's member: a branch that misses there found it evicted before it was admitted
 * (it waited for KV behind other requests in the member's queue, or behind the bench's in-flight limit before it was
 * sent); one that misses elsewhere was sent away from the prefix (the imbalance
 * guard, or a policy that does not follow prefixes). A miss is under half the prompt cached: the prefix is ~99% of it.
 */
interface BranchMisses {
  branches: number;
  elsewhere: number;
  evicted: number;
}

function countBranchMiss(m: BranchMisses, g: Generation, prefixMember: string | undefined): void {
  m.branches++;
  if (g.usage.cachedPromptTokens >= 0.5 * g.usage.promptTokens) return;
  if (g.memberId === prefixMember) m.evicted++;
  else m.elsewhere++;
}

async function runPolicy(
  cfg: Parameters<typeof connectNats>[0],
  policy: PolicyName,
  questionConcurrency: number,
): Promise<PolicyResult> {
  const pool = `routing-${policy.replace(/_/g, '-')}-q${questionConcurrency}`;
  const members = await Promise.all(
    Array.from({ length: MEMBERS }, (_, i) => startMember(cfg, pool, `sim-${i}`)),
  );
  const nc = await connectNats(cfg, 'bench-routing-client');
  const decisions = new Map<AffinityDecision, number>();
  // One router per rollout worker, each with its own view of the pool: Temporal hands a step's activity to any
  // worker, so each router sees only its share of a question's requests.
  const clients = Array.from({ length: ROUTERS }, () => {
    const router = createPolicy(policy);
    if (router instanceof PrefixAffinityPolicy) {
      const rank = router.rank.bind(router);
      router.rank = (req, ms) => {
        const ranked = rank(req, ms);
        if (router.lastDecision)
          decisions.set(router.lastDecision, (decisions.get(router.lastDecision) ?? 0) + 1);
        return ranked;
      };
    }
    return new PoolClient({ nc, pool, policy: router });
  });
  const pickRouter = new SimRng(mix32(SEED, 0x50));
  try {
    await startRouters(clients);

    const gens: Generation[] = [];
    const byKind = new Map<Kind, { prompt: number; cached: number }>();
    const firstMember = new Map<string, string>();
    const branchMisses: BranchMisses = { branches: 0, elsewhere: 0, evicted: 0 };
    const limit = createLimiter(CONCURRENCY);
    const send: Send = (messages, kind, stickyKey, seed) =>
      limit(async () => {
        const client = clients[pickRouter.int(clients.length)]!;
        const g = await client.generate(
          messages,
          { ...PARAMS, seed },
          { deadline: Date.now() + 180_000, stickyKey },
        );
        gens.push(g);
        const k = byKind.get(kind) ?? { prompt: 0, cached: 0 };
        k.prompt += g.usage.promptTokens;
        k.cached += g.usage.cachedPromptTokens;
        byKind.set(kind, k);
        if (SHAPE === 'burst' && stickyKey !== undefined) {
          if (kind === 'first turn') firstMember.set(stickyKey, g.memberId);
          else if (kind === 'branch first turn') countBranchMiss(branchMisses, g, firstMember.get(stickyKey));
        }
        return g.text;
      });
    const timeScale = PROFILE.timeScale ?? 1;
    const sleep = (simMs: number) => new Promise<void>((r) => setTimeout(r, simMs * timeScale));
    // Made before the clock starts: building the prompts is not the pool's time.
    const work = workload(questionConcurrency);
    const t0 = performance.now();
    await work.run(send, sleep);
    const makespanS = (performance.now() - t0) / 1000;

    const prompt = sum(gens.map((g) => g.usage.promptTokens));
    const cached = sum(gens.map((g) => g.usage.cachedPromptTokens));
    const busyS = members.map((m) => m.busyMs() / 1000);
    const idealS = sum(busyS) / MEMBERS;
    return {
      policy,
      makespanS,
      hitRate: cached / prompt,
      served: members.map((m) => m.member.stats.served),
      loadS: members.map((m) => m.requestMs() / 1000),
      workTokens: members.map((m) => {
        const st = m.sim.stats();
        return st.promptTokens - st.cachedPromptTokens + st.completionTokens;
      }),
      busyS,
      idealS,
      utilisation: idealS / makespanS,
      evictedBlocks: members.reduce((n, m) => n + m.sim.stats().evictedBlocks, 0),
      decisions,
      branchMisses,
      hitRateByKind: new Map([...byKind].map(([k, v]) => [k, v.cached / v.prompt])),
      branchHitRate: (() => {
        const kinds = (['branch first turn', 'branch later turn'] as const).map((k) => byKind.get(k));
        const prompt = sum(kinds.map((k) => k?.prompt ?? 0));
        return prompt > 0 ? sum(kinds.map((k) => k?.cached ?? 0)) / prompt : Number.NaN;
      })(),
      uncachedTokens: members.reduce(
        (n, m) => n + m.sim.stats().promptTokens - m.sim.stats().cachedPromptTokens,
        0,
      ),
    };
  } finally {
    for (const c of clients) c.close();
    await Promise.all(members.map((m) => m.stop()));
    await nc.drain().catch(() => {});
  }
}

/** Starts the routers and waits until each sees every member. */
async function startRouters(clients: readonly PoolClient[]): Promise<void> {
  await Promise.all(clients.map((c) => c.start()));
  const until = Date.now() + 10_000;
  const live = () => Math.min(...clients.map((c) => c.liveMembers().length));
  while (live() < MEMBERS && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  if (live() < MEMBERS) throw new Error(`only ${live()} members live`);
}

/**
 * Runs the timed path (routers of every policy, the wire, members, the simulated server's batching) once, untimed,
 * through a pool of its own: the policy measured first would otherwise pay for compiling it, in its makespan and in
 * the evictions that depend on timing.
 */
async function warmUp(cfg: Parameters<typeof connectNats>[0]): Promise<void> {
  const pool = 'routing-warm-up';
  const members = await Promise.all(
    Array.from({ length: MEMBERS }, (_, i) => startMember(cfg, pool, `warm-${i}`)),
  );
  const nc = await connectNats(cfg, 'bench-routing-warm-up');
  const clients = POLICIES.map((policy) => new PoolClient({ nc, pool, policy: createPolicy(policy) }));
  try {
    await startRouters(clients);
    await Promise.all(
      Array.from({ length: 16 * clients.length }, (_, i) =>
        clients[i % clients.length]!.generate(
          [
            { role: 'system', content: 'A warm-up request.' },
            { role: 'user', content: `Warm-up request ${i}: ${'context '.repeat(200 + 50 * (i % 8))}` },
          ],
          { ...PARAMS, seed: i },
          { deadline: Date.now() + 120_000, stickyKey: `warm-up-${i % 8}` },
        ),
      ),
    );
  } finally {
    for (const c of clients) c.close();
    await Promise.all(members.map((m) => m.stop()));
    await nc.drain().catch(() => {});
  }
}

/**
 * The workload's hit-rate ceiling: every request served by one server whose cache never evicts, so a request
 * misses only what no earlier request sent. No routing policy can do much better (the order of requests differs a
 * little from the policies' runs: no in-flight limit or tool latency here); the gap to it is what routing lost.
 */
async function ceilingHitRate(questionConcurrency: number): Promise<number> {
  const server = new SimBackend({ profile: { timeScale: 0, cacheCapacityTokens: 2 ** 40 } });
  let prompt = 0;
  let cached = 0;
  let n = 0;
  await workload(questionConcurrency).run(
    async (messages, _kind, _stickyKey, seed) => {
      const g = await server.generate(
        { id: `ceiling-${n++}`, messages, params: { ...PARAMS, seed }, deadline: Date.now() + 60_000 },
        new AbortController().signal,
      );
      prompt += g.usage.promptTokens;
      cached += g.usage.cachedPromptTokens;
      return g.text;
    },
    async () => {},
  );
  await server.close();
  return cached / prompt;
}

const maxMean = (xs: number[]) => Math.max(...xs) / (sum(xs) / xs.length);

interface SweepPoint {
  questionConcurrency: number;
  ceiling: number;
  rr?: PolicyResult;
  pa?: PolicyResult;
  /** The issue's targets this workload missed, named. */
  missed: string[];
}

/** a / b, or NaN where there is no b to compare with (a cache too small for any hit): not measurable, not met. */
const over = (a: number, b: number) => (b > 0 ? a / b : Number.NaN);

/** Runs every policy on the workload with this many questions at a time and prints its report. */
async function runWorkload(
  cfg: Parameters<typeof connectNats>[0],
  questionConcurrency: number,
): Promise<SweepPoint> {
  const results: PolicyResult[] = [];
  const ceiling = await ceilingHitRate(questionConcurrency);
  console.log(
    `\nworkload '${SHAPE}': ${workload(questionConcurrency).describe}; ${CONCURRENCY} in flight through ${ROUTERS} router(s); ` +
      `${MEMBERS} sim members, timeScale ${PROFILE.timeScale}, cache ${PROFILE.cacheCapacityTokens} tokens each; maxTokens ${PARAMS.maxTokens}`,
  );
  for (const policy of POLICIES) {
    const r = await runPolicy(cfg, policy, questionConcurrency);
    results.push(r);
    console.log(
      `${policy}: done in ${r.makespanS.toFixed(1)} s (served per member ${r.served.join('/')}, request-s ${r.loadS.map((b) => b.toFixed(0)).join('/')}, busy s ${r.busyS.map((b) => b.toFixed(1)).join('/')}, evicted blocks ${r.evictedBlocks}` +
        `${r.decisions.size ? `, decisions (one per attempt) ${[...r.decisions].map(([d, n]) => `${d} ${n}`).join(', ')}` : ''})`,
    );
  }
  console.log(
    '\nload = request-seconds per member (time integral of requests in its backend); also by requests served and by token work (uncached prompt + completion tokens)',
  );
  // A policy that misses the cache keeps its members busy with prefill the others skip: its own ideal makespan grows
  // with that waste, so its utilisation says only how evenly it kept the pool busy. Measured against the least busy
  // time any policy needed for the same workload, waste counts as lost capacity too.
  const leastIdealS = Math.min(...results.map((r) => r.idealS));
  console.log(
    `ideal makespan = Σ member busy time (>= 1 request in its backend) / ${MEMBERS}; utilisation = ideal / achieved makespan; ` +
      `of least work: the least ideal makespan of any policy (${leastIdealS.toFixed(1)} s) / achieved makespan\n`,
  );
  console.log(
    table(
      results.map((r) => ({
        policy: r.policy,
        'makespan s': r.makespanS,
        'cache hit rate': r.hitRate,
        'uncached prompt tokens': r.uncachedTokens,
        'max/mean load': maxMean(r.loadS),
        'max/mean served': maxMean(r.served),
        'max/mean token work': maxMean(r.workTokens),
        'ideal makespan s': r.idealS,
        utilisation: r.utilisation,
        'utilisation of least work': leastIdealS / r.makespanS,
      })),
    ),
  );
  const kinds = [...new Set(results.flatMap((r) => [...r.hitRateByKind.keys()]))];
  console.log('\ncache hit rate by request kind\n');
  console.log(
    table(
      results.map((r) => ({
        policy: r.policy,
        ...Object.fromEntries(kinds.map((k) => [k, r.hitRateByKind.get(k) ?? ''])),
      })),
    ),
  );
  if (SHAPE === 'burst') {
    for (const r of results) {
      const m = r.branchMisses;
      console.log(
        `${r.policy}: ${m.elsewhere + m.evicted} of ${m.branches} branch requests missed their group's prefix: ` +
          `${m.elsewhere} sent to a member without it, ${m.evicted} on its member after it was evicted before they ran`,
      );
    }
  }
  const rr = results.find((r) => r.policy === 'round_robin');
  const pa = results.find((r) => r.policy === 'prefix_affinity');
  if (!rr || !pa) {
    // Nothing passed: the run says so rather than exit as if the targets held.
    const unchecked =
      'targets not checked: they compare prefix_affinity with round_robin, and BENCH_POLICIES left one out';
    console.log(`\n${unchecked}`);
    return { questionConcurrency, ceiling, rr, pa, missed: [unchecked] };
  }
  const ratio = over(pa.hitRate, rr.hitRate);
  console.log(
    `\nceiling (one server, cache never evicts): hit rate ${ceiling.toFixed(3)}, ${over(ceiling, rr.hitRate).toFixed(2)}x round_robin; ` +
      `prefix_affinity reaches ${((100 * pa.hitRate) / ceiling).toFixed(0)}% of it, round_robin ${((100 * rr.hitRate) / ceiling).toFixed(0)}%`,
  );
  console.log(
    `branch requests (every turn of the partial rollouts): prefix_affinity ${pa.branchHitRate.toFixed(3)} vs round_robin ${rr.branchHitRate.toFixed(3)}, ${over(pa.branchHitRate, rr.branchHitRate).toFixed(2)}x`,
  );
  const missed: string[] = [];
  const mark = (ok: boolean, target: string) => {
    if (!ok) missed.push(`${target} (${questionConcurrency} questions at a time)`);
    return ok ? 'met' : 'NOT met';
  };
  // Three digits where a target is checked: two would print 1.996 as "2.00x ... NOT met".
  console.log(
    `\nprefix_affinity / round_robin hit rate (over every request): ${ratio.toFixed(3)}x (target >= ${TARGETS.hitRatio}x: ${mark(ratio >= TARGETS.hitRatio, 'hit rate ratio')})`,
  );
  console.log(
    `prefix_affinity max/mean load (request-seconds): ${maxMean(pa.loadS).toFixed(3)} (target <= ${TARGETS.maxMeanLoad}: ${mark(maxMean(pa.loadS) <= TARGETS.maxMeanLoad, 'max/mean load')}); ` +
      `by requests served: ${maxMean(pa.served).toFixed(2)}; by token work: ${maxMean(pa.workTokens).toFixed(2)}`,
  );
  // Checked on utilisation of least work, never above the busy-time one (the least ideal makespan is at most
  // prefix_affinity's own): busy time alone would count a member's wasted prefill as use of the pool.
  const utilisation = leastIdealS / pa.makespanS;
  console.log(
    `prefix_affinity utilisation: ${pa.utilisation.toFixed(3)}, of least work ${utilisation.toFixed(3)} (target >= ${TARGETS.utilisation} for both: ${mark(utilisation >= TARGETS.utilisation, 'utilisation')})`,
  );
  return { questionConcurrency, ceiling, rr, pa, missed };
}

async function main() {
  if (SHAPE === 'burst' && QUESTION_CONCURRENCY.length > 1)
    throw new Error("BENCH_QUESTION_CONCURRENCY lists apply to the 'rollouts' workload only");
  const stack = await benchStack('routing', { temporal: false });
  const points: SweepPoint[] = [];
  try {
    await warmUp(stack.cfg);
    for (const qc of QUESTION_CONCURRENCY) points.push(await runWorkload(stack.cfg, qc));
  } finally {
    await stack.stop();
  }
  if (points.length > 1) {
    console.log(
      `\nacross question concurrency (makespan: the same ${QUESTIONS} questions, so lower is more throughput)\n`,
    );
    console.log(
      table(
        points.map(({ questionConcurrency, ceiling, rr, pa }) => ({
          'questions at a time': questionConcurrency,
          'round_robin hit rate': rr?.hitRate ?? '',
          'prefix_affinity hit rate': pa?.hitRate ?? '',
          ratio: rr && pa ? over(pa.hitRate, rr.hitRate) : '',
          'ceiling / round_robin': rr ? over(ceiling, rr.hitRate) : '',
          'prefix_affinity share of ceiling': pa ? pa.hitRate / ceiling : '',
          'round_robin makespan s': rr?.makespanS ?? '',
          'prefix_affinity makespan s': pa?.makespanS ?? '',
          'prefix_affinity max/mean load': pa ? maxMean(pa.loadS) : '',
          'prefix_affinity utilisation': pa?.utilisation ?? '',
        })),
      ),
    );
  }
  // A missed target fails the run, so a script or CI job running the benchmark sees it without reading the table.
  const missed = points.flatMap((p) => p.missed);
  if (missed.length > 0) console.log(`\ntargets NOT met: ${missed.join('; ')}`);
  process.exit(missed.length > 0 ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
