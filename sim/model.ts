// The simulated policy: a deterministic stand-in for an LLM deep-research agent.
//
// It is a simulator, not a model. It reads the prompt the way a model would (task from the last
// user message and its tags, facts from observations, its own memory from earlier turns, the
// report, or the summary) and writes a turn in the agent format with top-k logprobs per token.
// It is stateless: everything derives from the messages and the sampling seed, so a replayed
// prompt gives the same turn and a branch with another seed can go another way.
//
// Uncertainty follows the pilot study of ParallelMuse (arXiv 2510.24698): exploration (tool-call)
// uncertainty is highest in the first steps and reasoning (think) uncertainty peaks a little later;
// both fall as the trajectory goes on. Decision tokens carry the real choice distribution and the
// emitted token is sampled from it, so branching at uncertain steps changes outcomes for real.

import type { ChatMessage } from '../agent/types.js';
import { fnv1a32 } from '../common/hash.js';
import type { GenerateParams, TokenLogprob } from '../inference/types.js';
import { parseDirectives, type SimDirectives } from './directives.js';
import { simTokenize } from './tokenizer.js';
import {
  factSentence,
  mix32,
  questionStructure,
  relationByLabel,
  SIM_CREDIBLE_SOURCES,
  SIM_DUBIOUS_SOURCES,
  type SimQuestionStructure,
  type SimRelation,
  SimRng,
} from './world.js';

/** A generated token plus the strings of its top-k alternatives (for HTTP logprob output). */
export interface SimTokenLogprob extends TokenLogprob {
  topTokens: string[];
}

export type SimTask = 'react' | 'iterresearch' | 'summary' | 'report' | 'integrate' | 'judge';

export interface SimGeneration {
  text: string;
  tokens: SimTokenLogprob[];
  finishReason: 'stop' | 'length';
  task: SimTask;
}

// ---------------------------------------------------------------------------------------------
// Uncertainty profile (pilot study shape; not fitted to any benchmark).

/** Exploration uncertainty at agent turn t: highest at the start, decaying. */
export function explorationUncertainty(t: number): number {
  return Math.exp(-t / 3);
}

/** Reasoning uncertainty at agent turn t: rises, peaks around turns 2-3, then decays. */
export function reasoningUncertainty(t: number): number {
  const x = (t + 1) / 3.5;
  return x * Math.exp(1 - x);
}

// ---------------------------------------------------------------------------------------------
// Token writer: emits text token by token with top-k logprobs.

type Region = 'think' | 'tool' | 'plain';

const ALT_TOKENS = [
  ' the',
  ',',
  '.',
  ' and',
  '\n',
  ' of',
  ' a',
  ' to',
  ' in',
  ' is',
  ' that',
  ' for',
  ' it',
  ' with',
  ' as',
  ' on',
  ' was',
  ' this',
  ':',
  ' by',
  ' I',
  ' be',
];

const tailCache = new Map<number, number[]>();
/** ln of a geometric tail shape over k-1 slots, normalised to sum to 1. */
function lnTail(slots: number): number[] {
  const hit = tailCache.get(slots);
  if (hit) return hit;
  const q = 0.55;
  const raw: number[] = [];
  let sum = 0;
  for (let i = 0; i < slots; i++) {
    raw.push(q ** i);
    sum += q ** i;
  }
  const out = raw.map((v) => Math.log(v / sum));
  tailCache.set(slots, out);
  return out;
}

class TurnWriter {
  readonly tokens: SimTokenLogprob[] = [];
  private readonly eps: Record<Region, number>;
  readonly betaThink: number;
  readonly betaTool: number;

  constructor(
    private readonly rng: SimRng,
    private readonly k: number,
    private readonly temperature: number,
    turn: number,
  ) {
    const ut = explorationUncertainty(turn);
    const ur = reasoningUncertainty(turn);
    this.eps = { think: 0.01 + 0.06 * ur, tool: 0.004 + 0.06 * ut, plain: 0.012 };
    this.betaThink = 1 / (0.2 + 0.8 * ur);
    this.betaTool = 1 / (0.35 + 0.65 * ut);
  }

  get text(): string {
    let s = '';
    for (const t of this.tokens) s += t.token;
    return s;
  }

  /** Near-deterministic tokens: the top-1 token carries almost all mass. */
  write(s: string, region: Region): void {
    if (s.length === 0) return;
    const base = this.eps[region];
    const tail = this.k > 1 ? lnTail(this.k - 1) : [];
    for (const tok of simTokenize(s)) {
      const eps = Math.min(0.5, base * (0.3 + 1.4 * this.rng.next()));
      const lp = Math.log1p(-eps);
      const top: number[] = [];
      const topTokens: string[] = [];
      if (this.k > 0) {
        top.push(lp);
        topTokens.push(tok);
        const lnEps = Math.log(eps);
        let a = 0;
        for (let i = 0; i < this.k - 1; i++) {
          let alt = ALT_TOKENS[a++ % ALT_TOKENS.length]!;
          if (alt === tok) alt = ALT_TOKENS[a++ % ALT_TOKENS.length]!;
          top.push(lnEps + tail[i]!);
          topTokens.push(alt);
        }
      }
      this.tokens.push({ token: tok, logprob: lp, topLogprobs: top, topTokens });
    }
  }

  /** Samples an index from the model distribution `probs` (tempered for sampling) and emits that option. */
  choose(options: readonly string[], weights: readonly number[], region: Region, beta = 1): number {
    if (options.length === 1) {
      this.write(options[0]!, region);
      return 0;
    }
    const powered = weights.map((w) => Math.max(1e-9, w) ** beta);
    const total = powered.reduce((a, b) => a + b, 0);
    const probs = powered.map((w) => w / total);
    let chosen: number;
    if (this.temperature <= 1e-6) {
      chosen = probs.indexOf(Math.max(...probs));
    } else {
      // Tempered in log space, relative to the likeliest option: p ** (1 / T) itself underflows to 0 for every option
      // at a temperature near 0 (0.4 ** 1000), and a draw over all-zero weights took the last option, not the likeliest.
      const logits = probs.map((p) => Math.log(p) / this.temperature);
      const top = Math.max(...logits);
      chosen = this.rng.weighted(logits.map((l) => Math.exp(l - top)));
    }
    this.emitChoice(options, probs, chosen, region);
    return chosen;
  }

  private emitChoice(
    options: readonly string[],
    probs: readonly number[],
    chosen: number,
    region: Region,
  ): void {
    const toks = options.map((o) => simTokenize(o));
    const mine = toks[chosen]!;
    let compat = options.map((_, i) => i);
    let pending = '';
    const flush = () => {
      if (pending) this.write(pending, region);
      pending = '';
    };
    for (let pos = 0; pos < mine.length; pos++) {
      const tok = mine[pos]!;
      const groups = new Map<string, number>();
      let mass = 0;
      for (const i of compat) {
        const t = toks[i]![pos] ?? '\u0000';
        groups.set(t, (groups.get(t) ?? 0) + probs[i]!);
        mass += probs[i]!;
      }
      if (groups.size <= 1) {
        pending += tok;
        continue;
      }
      flush();
      this.decisionToken(tok, groups, mass);
      compat = compat.filter((i) => toks[i]![pos] === tok);
    }
    flush();
  }

  /** A token whose alternatives are real options: its distribution is the choice distribution. */
  private decisionToken(tok: string, groups: Map<string, number>, mass: number): void {
    const tailMass = 0.003;
    const entries: [string, number][] = [];
    for (const [t, m] of groups) if (t !== '\u0000') entries.push([t, Math.log((m / mass) * (1 - tailMass))]);
    const own = entries.find(([t]) => t === tok)![1];
    const rest = Math.max(0, this.k - entries.length);
    if (rest > 0) {
      const tail = lnTail(rest);
      const lnT = Math.log(tailMass);
      let a = 0;
      for (let i = 0; i < rest; i++) {
        let alt = ALT_TOKENS[a++ % ALT_TOKENS.length]!;
        while (groups.has(alt)) alt = ALT_TOKENS[a++ % ALT_TOKENS.length]!;
        entries.push([alt, lnT + tail[i]!]);
      }
    }
    entries.sort((x, y) => y[1] - x[1]);
    const top = entries.slice(0, this.k);
    this.tokens.push({
      token: tok,
      logprob: own,
      topLogprobs: top.map((e) => e[1]),
      topTokens: top.map((e) => e[0]),
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Reading prompts: facts, search results, own actions.

interface Fact {
  s: string;
  r: string;
  o: string;
  url: string;
  fresh: boolean;
}

interface Lead {
  url: string;
  title: string;
}

interface VisitOutcome {
  url: string;
  facts: Fact[];
  notFound: boolean;
}

interface SearchOutcome {
  query: string;
  entity: string | null;
  count: number;
}

const factKey = (s: string, r: string, o: string) => `${s}\u0001${r}\u0001${o}`;

class Memory {
  readonly facts: Fact[] = [];
  private readonly factIndex = new Map<string, Fact>();
  readonly rejected = new Map<string, { s: string; r: string; o: string }>();
  /** Leads by lower-cased entity name, in the order seen. */
  readonly leads = new Map<string, Lead[]>();
  readonly names = new Map<string, string>();
  readonly searches = new Map<string, number>();
  readonly visited = new Set<string>();
  readonly freshVisits: VisitOutcome[] = [];
  readonly freshSearches: SearchOutcome[] = [];

  constructor(startName: string | null) {
    if (startName) this.know(startName);
  }

  know(name: string): void {
    const k = name.toLowerCase();
    if (!this.names.has(k)) this.names.set(k, name);
  }

  /** The entity a query is about: the longest known name it contains. */
  entityOf(query: string): string | null {
    const q = query.toLowerCase();
    let best: string | null = null;
    for (const k of this.names.keys())
      if (q.includes(k) && (best === null || k.length > best.length)) best = k;
    return best;
  }

  addFact(s: string, r: string, o: string, url: string, fresh: boolean): Fact {
    const key = factKey(s, r, o);
    let f = this.factIndex.get(key);
    if (!f) {
      f = { s, r, o, url, fresh };
      this.factIndex.set(key, f);
      this.facts.push(f);
    } else if (fresh) f.fresh = true;
    this.know(s);
    this.know(o);
    return f;
  }

  reject(s: string, r: string, o: string): void {
    this.rejected.set(factKey(s, r, o), { s, r, o });
  }

  isRejected(f: { s: string; r: string; o: string }): boolean {
    return this.rejected.has(factKey(f.s, f.r, f.o));
  }

  addLeads(entity: string, leads: Lead[]): void {
    const list = this.leads.get(entity) ?? [];
    for (const l of leads) if (!list.some((x) => x.url === l.url)) list.push(l);
    this.leads.set(entity, list);
  }

  noteSearch(entity: string | null): void {
    if (entity === null) return;
    this.searches.set(entity, (this.searches.get(entity) ?? 0) + 1);
  }

  unvisitedLeads(entity: string): Lead[] {
    return (this.leads.get(entity.toLowerCase()) ?? []).filter((l) => !this.visited.has(l.url));
  }
}

// The query is bounded: unbounded, a line of repeated openers took quadratic time.
const SEARCH_HEAD_RE = /A (?:Google )?search for '([^\n]{0,1000}?)' found \d+ results:/g;
const VISIT_HEAD_RE = /The useful information in (\S+) for user goal /g;
const RESULT_RE = /^\d+\. \[([^\]\n]*)\]\((sim:\/\/[^)\s]+)\)/gm;
const FACT_RE = /Fact: ([^|\n]+?) \| ([^|\n]+?) \| ([^|\n]+?)\.(?=\s|$)/g;
const REJECT_RE = /Rejected: ([^|\n]+?) \| ([^|\n]+?) \| ([^|\n]+?)\.(?=\s|$)/g;
/** Tool calls and answers as a rendered trajectory shows them ("Tool call: {...}", "Answer: X"). */
const TOOL_LINE_RE = /^Tool call: (\{.*\})[ \t]*$/gm;
const ANSWER_LINE_RE = /^Answer: (.+)$/gm;
/** How the trajectory's rendering notes an answer that was not given (cut off, empty). */
const NOT_GIVEN_RE = /^\([^)]*, not given\)$/;

/**
 * Every closed <tag>…</tag>, in order, with where it opens. With indexOf: a lazy regex rescans to the end of the
 * text after each unclosed opener (quadratic in garbage that repeats one, cubic with blanks around the body).
 */
function* closedTags(text: string, tag: string): Generator<{ at: number; body: string }> {
  const open = `<${tag}>`;
  const close = `</${tag}>`;
  for (let from = 0; ; ) {
    const at = text.indexOf(open, from);
    if (at < 0) return;
    const end = text.indexOf(close, at + open.length);
    if (end < 0) return;
    yield { at, body: text.slice(at + open.length, end) };
    from = end + close.length;
  }
}
const STEP_RE = /^## Step (\d+)/gm;
const EARLIER_SUMMARY = '## Summary of earlier work\n';

/** Reads tool observations anywhere in `text` (one or several, possibly inside a flat history). */
function readObservations(text: string, mem: Memory, fresh: boolean): void {
  const heads: { at: number; end: number; kind: 'search' | 'visit'; arg: string }[] = [];
  for (const m of text.matchAll(SEARCH_HEAD_RE))
    heads.push({ at: m.index, end: m.index + m[0].length, kind: 'search', arg: m[1]! });
  for (const m of text.matchAll(VISIT_HEAD_RE))
    heads.push({ at: m.index, end: m.index + m[0].length, kind: 'visit', arg: m[1]! });
  if (heads.length === 0) return;
  heads.sort((a, b) => a.at - b.at);
  for (let i = 0; i < heads.length; i++) {
    const h = heads[i]!;
    const seg = text.slice(h.end, i + 1 < heads.length ? heads[i + 1]!.at : text.length);
    if (h.kind === 'search') {
      const entity = mem.entityOf(h.arg);
      const leads: Lead[] = [];
      for (const m of seg.matchAll(RESULT_RE)) leads.push({ title: m[1]!, url: m[2]! });
      if (entity !== null) mem.addLeads(entity, leads);
      if (fresh) mem.freshSearches.push({ query: h.arg, entity, count: leads.length });
    } else {
      const url = h.arg;
      mem.visited.add(url);
      const facts: Fact[] = [];
      // Facts sit in the evidence part; a padded page is scanned only up to its summary.
      const cut = seg.indexOf('\n\nSummary: ');
      const evidence = cut >= 0 ? seg.slice(0, cut) : seg;
      for (const m of evidence.matchAll(FACT_RE)) facts.push(mem.addFact(m[1]!, m[2]!, m[3]!, url, fresh));
      if (fresh) mem.freshVisits.push({ url, facts, notFound: evidence.includes('Page not found:') });
    }
  }
}

interface ParsedCall {
  name: string;
  args: Record<string, unknown>;
}

function parseCall(body: string): ParsedCall | null {
  try {
    const v = JSON.parse(body.trim()) as unknown;
    if (typeof v !== 'object' || v === null) return null;
    const o = v as { name?: unknown; arguments?: unknown };
    if (typeof o.name !== 'string' || typeof o.arguments !== 'object' || o.arguments === null) return null;
    return { name: o.name, args: o.arguments as Record<string, unknown> };
  } catch {
    return null;
  }
}

function strings(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return [];
}

/** The agent's tool calls in a history: in their tags, or as a rendered trajectory lists them. */
function toolCallBodies(text: string): string[] {
  return [
    ...Array.from(closedTags(text, 'tool_call'), (t) => t.body),
    ...[...text.matchAll(TOOL_LINE_RE)].map((m) => m[1]!),
  ];
}

/** Reads the agent's own earlier text: its tool calls and the claims it rejected. */
function readOwnText(text: string, mem: Memory): void {
  for (const body of toolCallBodies(text)) {
    const call = parseCall(body);
    if (!call) continue;
    if (call.name === 'search') for (const q of strings(call.args.query)) mem.noteSearch(mem.entityOf(q));
    else if (call.name === 'visit') for (const u of strings(call.args.url)) mem.visited.add(u.trim());
  }
  for (const m of text.matchAll(REJECT_RE)) mem.reject(m[1]!, m[2]!, m[3]!);
}

// Report / summary memory format (the agent's notes; also what iterresearch carries between rounds).

function serializeMemory(
  mem: Memory,
  keep: Set<string> | null,
  counterLabel: string,
  counter: number,
): string {
  const lines: string[] = ['Facts:'];
  const kept = mem.facts.filter((f) => keep === null || keep.has(f.s.toLowerCase()));
  if (kept.length === 0) lines.push('- (none yet)');
  // In a summary, "(latest)" marks what the last step found: the agent has not reacted to it yet.
  const latest = counterLabel === 'Turns';
  for (const f of kept)
    lines.push(`- ${f.s} | ${f.r} | ${f.o} [${f.url}]${latest && f.fresh ? ' (latest)' : ''}`);
  if (mem.rejected.size > 0) {
    lines.push('Rejected:');
    for (const r of mem.rejected.values()) lines.push(`- ${r.s} | ${r.r} | ${r.o}`);
  }
  // Only unopened leads are listed; opened pages are kept as bare URLs so a repeated search does not reopen them.
  for (const [entity, leads] of mem.leads) {
    if (keep !== null && !keep.has(entity)) continue;
    lines.push(`Leads for ${mem.names.get(entity) ?? entity} (searched ${mem.searches.get(entity) ?? 1}):`);
    for (const l of leads) {
      if (!mem.visited.has(l.url)) lines.push(`- ${l.url} | ${l.title}`);
    }
  }
  const visited = [...mem.visited];
  if (visited.length > 0) lines.push(`Visited: ${visited.join(' ')}`);
  lines.push(`${counterLabel}: ${counter}`);
  return lines.join('\n');
}

function loadMemory(text: string, mem: Memory, latestIsFresh = false): number {
  let section = '';
  let leadEntity: string | null = null;
  let counter = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === 'Facts:' || line === 'Rejected:') {
      section = line;
      continue;
    }
    if (line.startsWith('#')) {
      section = '';
      continue;
    }
    const lh = /^Leads for (.+) \(searched (\d+)\):$/.exec(line);
    if (lh) {
      section = 'Leads';
      mem.know(lh[1]!);
      leadEntity = lh[1]!.toLowerCase();
      mem.searches.set(leadEntity, Number(lh[2]));
      if (!mem.leads.has(leadEntity)) mem.leads.set(leadEntity, []);
      continue;
    }
    const vm = /^Visited: (.*)$/.exec(line);
    if (vm) {
      for (const u of vm[1]!.split(/\s+/)) if (u) mem.visited.add(u);
      continue;
    }
    const cm = /^(?:Rounds|Turns): (\d+)$/.exec(line);
    if (cm) {
      counter = Number(cm[1]);
      continue;
    }
    if (section === 'Facts:') {
      const m = /^- ([^|]+?) \| ([^|]+?) \| ([^|[]+?)(?: \[(\S+)\])?( \(latest\))?$/.exec(line);
      if (m) mem.addFact(m[1]!, m[2]!, m[3]!, m[4] ?? '', latestIsFresh && m[5] !== undefined);
    } else if (section === 'Rejected:') {
      const m = /^- ([^|]+?) \| ([^|]+?) \| ([^|]+?)$/.exec(line);
      if (m) mem.reject(m[1]!, m[2]!, m[3]!);
    } else if (section === 'Leads' && leadEntity !== null) {
      const m = /^- (\S+) \| (.*)$/.exec(line);
      if (m) mem.addLeads(leadEntity, [{ url: m[1]!, title: m[2]! }]);
    }
  }
  return counter;
}

// ---------------------------------------------------------------------------------------------
// The research chain as the agent currently believes it.

interface ChainView {
  chain: string[];
  edges: Fact[];
}

function resolveChain(mem: Memory, st: SimQuestionStructure): ChainView {
  const chain = [st.start.name];
  const edges: Fact[] = [];
  for (const rel of st.relations) {
    const cur = chain[chain.length - 1]!;
    const f = mem.facts.find(
      (x) => x.s === cur && x.r === rel.label && !mem.isRejected(x) && !chain.includes(x.o),
    );
    if (!f) break;
    edges.push(f);
    chain.push(f.o);
  }
  return { chain, edges };
}

/** Back-reference facts about `b` under `inverse`, split into those that point at `a` and the others. */
function backRefs(
  facts: readonly Fact[],
  a: string,
  b: string,
  inverse: string,
): { agree: Fact[]; disagree: Fact[] } {
  const agree: Fact[] = [];
  const disagree: Fact[] = [];
  for (const f of facts) {
    if (f.s !== b || f.r !== inverse) continue;
    (f.o === a ? agree : disagree).push(f);
  }
  return { agree, disagree };
}

function goalText(rel: SimRelation, subjectDisplay: string): string {
  return rel.goal.replace('{X}', subjectDisplay);
}

function displayName(name: string, st: SimQuestionStructure): string {
  return name === st.start.name ? st.start.display : name;
}

function credibility(title: string): number {
  if (SIM_CREDIBLE_SOURCES.some((s) => title.endsWith(`- ${s}`))) return 1;
  if (SIM_DUBIOUS_SOURCES.some((s) => title.endsWith(`- ${s}`))) return 0.4;
  return 0.7;
}

/** How promising a result looks for learning `topic` about `entity`, from its title alone. */
function leadWeight(lead: Lead, entity: string, topic: string | null, position: number): number {
  const aboutIt = lead.title.startsWith(`${entity}:`);
  let rel = 0.25;
  if (aboutIt) rel = topic === null || lead.title.includes(topic) ? 1 : 0.5;
  return rel * credibility(lead.title) * 0.85 ** position;
}

function toolCall(name: string, args: Record<string, unknown>): string {
  return `<tool_call>${JSON.stringify({ name, arguments: args })}</tool_call>`;
}

function queryOptions(rel: SimRelation, name: string): string[] {
  return rel.queries.map((q) => q.replace('{X}', name));
}

// ---------------------------------------------------------------------------------------------
// Agent turns (react and iterresearch share one policy; only memory and output framing differ).

interface AgentInput {
  policy: 'react' | 'iterresearch';
  directives: SimDirectives;
  st: SimQuestionStructure;
  mem: Memory;
  /** 0-based index of the turn being generated. */
  turn: number;
  /** Text of the previous action (iterresearch), to avoid re-firing a directive that already fired. */
  lastAction: string;
}

/** The agent's habits; fixed traits of the simulated policy, not fitted to any benchmark. */
const NOTICE_CONTRADICTION = 0.7;
/** A synonym choice: about 0.43 nats before tempering, against 0.61 for noticing a contradiction. */
const WORDING_WEIGHTS = [0.9, 0.04, 0.03, 0.03];
const VERIFY_BASE = 0.35;
const MAX_SEARCHES_PER_ENTITY = 3;

function agentTurn(w: TurnWriter, a: AgentInput): void {
  const { mem, st, turn, directives: d } = a;
  const h = st.relations.length;
  // The first directive for this turn that has not fired yet (its mark is not in the last action), if any.
  const directives = [
    ['malformed', d.malformedToolCallAt, 'sim-malformed'],
    ['unknown', d.unknownToolAt, 'teleport'],
    ['garbage', d.garbageAt, '[sim] garbage'],
    ['cut-answer', d.cutAnswerAt, '[sim] rambling'],
    ['empty-answer', d.emptyAnswerAt, '[sim] empty answer'],
    ['cut-think', d.cutThinkAt, '[sim] overthinking'],
    ['run-on', d.runOnAt, 'sim-run-on'],
  ] as const;
  const forced =
    directives.find(([, turns, mark]) => turns.has(turn) && !a.lastAction.includes(mark))?.[0] ?? null;

  let view = resolveChain(mem, st);
  const report = () => {
    if (a.policy !== 'iterresearch') return;
    const keep = new Set(view.chain.map((c) => c.toLowerCase()));
    w.write(`<report>\n${serializeMemory(mem, keep, 'Rounds', turn + 1)}\n</report>\n`, 'plain');
  };

  if (forced !== null) {
    const cur = view.chain[view.chain.length - 1]!;
    // As many tokens as cut-answer's: the server cuts the turn off before </think>.
    if (forced === 'cut-think') {
      w.write(`<think>[sim] overthinking about ${cur}${' and so on'.repeat(22_000)}`, 'think');
      return;
    }
    w.write('<think>I will continue the research on ', 'think');
    if (forced === 'empty-answer') {
      w.write(`${cur}. [sim] empty answer</think>\n`, 'think');
      report();
      w.write('<answer>?</answer>', 'plain');
      return;
    }
    w.write(`${cur}.</think>\n`, 'think');
    report();
    if (forced === 'malformed')
      w.write(
        `<tool_call>{"name": "search", "arguments": {"query": ["sim-malformed ${cur}"]</tool_call>`,
        'tool',
      );
    else if (forced === 'unknown') w.write(toolCall('teleport', { destination: cur }), 'tool');
    // More tokens than any turn may have (65,536 at most): the server cuts the turn off inside the answer.
    else if (forced === 'cut-answer')
      w.write(`<answer>[sim] rambling about ${cur}${' and so on'.repeat(22_000)}`, 'plain');
    else if (forced === 'run-on') {
      // What a server without stop strings lets through: the turn goes on to imagine the search's response.
      w.write(toolCall('search', { query: [`sim-run-on ${cur}`] }), 'tool');
      w.write(
        `\n<tool_response>[sim] imagined results for ${cur}</tool_response>\n<think>[sim] imagined.</think>\n<answer>[sim] imagined answer</answer>`,
        'plain',
      );
    } else w.write('Let me reconsider the sources before acting. [sim] garbage turn', 'plain');
    return;
  }

  w.write('<think>', 'think');
  let opened = false;
  const say = (text: string) => {
    w.write(opened ? text : text.replace(/^ /, ''), 'think');
    opened = true;
  };
  const fresh = mem.freshVisits[0];
  const freshSearch = mem.freshSearches[0];
  if (turn === 0 || (mem.facts.length === 0 && mem.leads.size === 0)) {
    const labels = st.relations.map((r) => r.label).join(', then ');
    say(`The question starts from ${st.start.display} and needs ${h} links: ${labels}.`);
  }
  if (freshSearch) {
    const who =
      freshSearch.entity !== null ? (mem.names.get(freshSearch.entity) ?? freshSearch.entity) : 'the query';
    say(` The search returned ${freshSearch.count} results for ${who}.`);
  }
  if (fresh) {
    const edge = fresh.facts.find((f) => view.edges.includes(f));
    if (fresh.notFound) say(` The page ${fresh.url} could not be found.`);
    else if (edge) {
      say(' The page');
      // Wording that changes nothing: about as spread as plain text, well below the entropy of a real
      // decision (the brief's "higher entropy at genuine decision points than elsewhere"), so think_ppl ranks
      // steps by their reasoning choices rather than by their synonyms.
      w.choose([' states', ' reports', ' indicates', ' says'], WORDING_WEIGHTS, 'think', w.betaThink);
      say(` that ${factSentence(edge.s, edge.r, edge.o)}.`);
    } else {
      const onChain = fresh.facts.find((f) => view.chain.includes(f.s));
      if (!onChain) {
        const about = fresh.facts[0]?.s ?? 'something else';
        say(` That page is about ${about}, which is not what I am looking for.`);
      }
    }
  }

  // A fresh back-reference can contradict a link already taken: the reasoning decision of this turn.
  for (let j = 0; j < view.edges.length; j++) {
    const e = view.edges[j]!;
    const rel = st.relations[j]!;
    const { agree, disagree } = backRefs(mem.facts, e.s, e.o, rel.inverse);
    const freshAgree = agree.find((f) => f.fresh);
    const freshDisagree = disagree.find((f) => f.fresh);
    if (freshDisagree) {
      say(` The page says ${factSentence(e.o, rel.inverse, freshDisagree.o)}, not of ${e.s}; this`);
      const notice =
        w.choose(
          [' contradicts', ' does not change'],
          [NOTICE_CONTRADICTION, 1 - NOTICE_CONTRADICTION],
          'think',
        ) === 0;
      say(` the claim that ${factSentence(e.s, e.r, e.o)}.`);
      if (notice) {
        say(` Rejected: ${e.s} | ${e.r} | ${e.o}.`);
        mem.reject(e.s, e.r, e.o);
        view = resolveChain(mem, st);
      }
      break;
    }
    if (freshAgree) say(` It also says ${factSentence(e.o, rel.inverse, e.s)}, which fits.`);
  }

  const k = view.edges.length;
  if (k < h) {
    const cur = view.chain[k]!;
    const rel = st.relations[k]!;
    say(` Next I need ${goalText(rel, displayName(cur, st))}.`);
    const leads = mem.unvisitedLeads(cur);
    const searched = mem.searches.get(cur.toLowerCase()) ?? 0;
    if (leads.length > 0) {
      say(
        ` There ${leads.length === 1 ? 'is 1 unopened result' : `are ${leads.length} unopened results`} for ${cur}; I will open the most promising one.</think>\n`,
      );
      report();
      visit(w, leads, cur, rel.topic, `Find ${goalText(rel, displayName(cur, st))}`);
      return;
    }
    if (searched >= MAX_SEARCHES_PER_ENTITY) {
      say(' Searching again is unlikely to help, so I will give my best guess.</think>\n');
      report();
      w.write(`<answer>${cur}</answer>`, 'plain');
      return;
    }
    say(` I will search for ${displayName(cur, st)}.</think>\n`);
    report();
    search(w, queryOptions(rel, cur));
    return;
  }

  const answer = view.chain[h]!;
  const lastRel = st.relations[h - 1]!;
  const prev = view.chain[h - 1]!;
  say(` So the chain is ${view.chain.join(' -> ')}.`);
  const verified = backRefs(mem.facts, prev, answer, lastRel.inverse).agree.length > 0;
  const answerLeads = mem.leads.get(answer.toLowerCase());
  const verifyLeads = mem.unvisitedLeads(answer);
  const verifyGoal = `Check how ${answer} relates to ${prev}`;

  if (turn < d.minTurns) {
    say(
      ` I have a candidate answer, but I will keep checking the sources (turn ${turn + 1} of at least ${d.minTurns}).</think>\n`,
    );
    report();
    if (verifyLeads.length > 0) {
      visit(w, verifyLeads, answer, null, verifyGoal);
      return;
    }
    const j = turn % (h + 1);
    const edge = view.edges[j];
    if (edge?.url) {
      w.write(
        toolCall('visit', {
          url: [edge.url],
          goal: `Re-check ${goalText(st.relations[j]!, displayName(edge.s, st))}`,
        }),
        'tool',
      );
    } else {
      search(w, [`"${answer}" ${lastRel.inverseTopic}`, `${answer} ${lastRel.inverse}`]);
    }
    return;
  }
  if (verified) {
    say(` ${answer}'s own page confirms the last link, so the answer is ${answer}.</think>\n`);
    report();
    w.write(`<answer>${answer}</answer>`, 'plain');
    return;
  }
  if (answerLeads !== undefined) {
    if (verifyLeads.length > 0) {
      say(` I am still checking ${answer}.</think>\n`);
      report();
      visit(w, verifyLeads, answer, null, verifyGoal);
      return;
    }
    say(` The check found nothing against ${answer}.</think>\n`);
    report();
    w.write(`<answer>${answer}</answer>`, 'plain');
    return;
  }
  const justCompleted = view.edges[h - 1]!.fresh;
  if (justCompleted) {
    const pVerify = Math.min(0.8, VERIFY_BASE + 0.1 * (h - 2));
    say(' I am');
    const check =
      w.choose(
        [' confident enough to answer.', ` not yet certain, so I will check ${answer} directly.`],
        [1 - pVerify, pVerify],
        'think',
      ) === 1;
    say('</think>\n');
    report();
    if (check) search(w, [`"${answer}" ${lastRel.inverseTopic}`, `${answer} ${lastRel.inverse}`]);
    else w.write(`<answer>${answer}</answer>`, 'plain');
    return;
  }
  say(' That answers the question.</think>\n');
  report();
  w.write(`<answer>${answer}</answer>`, 'plain');

  function visit(
    writer: TurnWriter,
    leads: Lead[],
    entity: string,
    topic: string | null,
    goal: string,
  ): void {
    const options = leads.map((l) => toolCall('visit', { url: [l.url], goal }));
    const all = mem.leads.get(entity.toLowerCase()) ?? leads;
    const weights = leads.map((l) => leadWeight(l, entity, topic, all.indexOf(l)));
    writer.choose(options, weights, 'tool', writer.betaTool);
  }
  function search(writer: TurnWriter, queries: string[]): void {
    const options = queries.map((q) => toolCall('search', { query: [q] }));
    const weights = queries.map((_, i) => 1 - 0.2 * i);
    writer.choose(options, weights, 'tool', writer.betaTool);
  }
}

// ---------------------------------------------------------------------------------------------
// Task detection and prompt parsing.

/** The question inside the first closed <question>…</question>, trimmed. */
function questionTag(text: string): string | null {
  return closedTags(text, 'question').next().value?.body.trim() ?? null;
}

function lastUser(messages: readonly ChatMessage[]): { index: number; content: string } {
  for (let i = messages.length - 1; i >= 0; i--)
    if (messages[i]!.role === 'user') return { index: i, content: messages[i]!.content };
  return { index: -1, content: '' };
}

/** A task's section opens a line: a question that mentions a tag ('what does <history> do?') is still a question. */
const SECTION_OPENS = {
  gold: /^<gold>/m,
  prediction: /^<prediction>/m,
  reports: /^<reports>/m,
  trajectory: /^<trajectory>/m,
  history: /^<history>/m,
};

/** Which task the prompt asks for, judged from the last user message as a model would. */
export function detectSimTask(messages: readonly ChatMessage[]): SimTask {
  const u = lastUser(messages).content;
  const opens = (tag: keyof typeof SECTION_OPENS) => SECTION_OPENS[tag].test(u);
  if (opens('gold') && opens('prediction')) return 'judge';
  if (opens('reports')) return 'integrate';
  if (opens('trajectory')) return 'report';
  if (opens('history')) return 'summary';
  if (/^\s*<question>[\s\S]*?<\/question>\s*<report>/.test(u)) return 'iterresearch';
  return 'react';
}

function reactQuestion(messages: readonly ChatMessage[]): { question: string; firstUser: number } {
  const firstUser = messages.findIndex((m) => m.role === 'user');
  if (firstUser < 0) return { question: '', firstUser };
  const content = messages[firstUser]!.content;
  const tagged = questionTag(content);
  if (tagged !== null) return { question: tagged, firstUser };
  const cut = content.indexOf('\n\n<summary>');
  return { question: (cut >= 0 ? content.slice(0, cut) : content).trim(), firstUser };
}

function section(text: string, tag: string): string | null {
  const open = `<${tag}>`;
  const close = `</${tag}>`;
  const a = text.indexOf(open);
  if (a < 0) return null;
  const b = text.indexOf(close, a + open.length);
  return text.slice(a + open.length, b < 0 ? text.length : b);
}

function react(messages: readonly ChatMessage[], w: (turn: number) => TurnWriter): TurnWriter {
  const { question, firstUser } = reactQuestion(messages);
  const st = questionStructure(question);
  const mem = new Memory(st.start.name);
  let turn = 0;
  if (firstUser >= 0) {
    const summary = section(messages[firstUser]!.content, 'summary');
    const reacted = messages.slice(firstUser + 1).some((m) => m.role === 'assistant');
    if (summary !== null) turn = loadMemory(summary, mem, !reacted);
  }
  const last = messages.length - 1;
  for (let i = firstUser + 1; i < messages.length; i++) {
    const m = messages[i]!;
    if (m.role === 'assistant') {
      turn++;
      readOwnText(m.content, mem);
    } else if (m.role === 'user') {
      readObservations(m.content, mem, i === last && messages[i - 1]?.role === 'assistant');
    }
  }
  const writer = w(turn);
  agentTurn(writer, {
    policy: 'react',
    directives: parseDirectives(question),
    st,
    mem,
    turn,
    lastAction: '',
  });
  return writer;
}

function iterresearch(messages: readonly ChatMessage[], w: (turn: number) => TurnWriter): TurnWriter {
  const u = lastUser(messages).content;
  const question = questionTag(u) ?? '';
  const st = questionStructure(question);
  const mem = new Memory(st.start.name);
  const turn = loadMemory(section(u, 'report') ?? '', mem);
  const lastAction = section(u, 'last_action') ?? '';
  const lastObservation = section(u, 'last_observation') ?? '';
  readOwnText(lastAction, mem);
  readObservations(lastObservation, mem, true);
  // A turn cut off in its reasoning wrote no report, so the report's round count did not move on: told it was cut
  // off, the model knows its overthinking has happened (a [sim:cut-think] fires once, not every round after).
  const cutOff = /cut off at the token limit before it gave/.test(lastObservation);
  const writer = w(turn);
  agentTurn(writer, {
    policy: 'iterresearch',
    directives: parseDirectives(question),
    st,
    mem,
    turn,
    lastAction: cutOff ? `${lastAction}\n[sim] overthinking` : lastAction,
  });
  return writer;
}

/** The question of a prompt whose last user message is an instruction (summary, report, integrate). */
function anyQuestion(messages: readonly ChatMessage[]): string | null {
  for (const m of messages) {
    if (m.role !== 'user') continue;
    const tagged = questionTag(m.content);
    if (tagged !== null) return tagged;
  }
  return null;
}

/** Entities of the chain if the question is known and its start entity occurs in the text. */
function chainKeep(
  question: string | null,
  text: string,
  mem: Memory,
): { st: SimQuestionStructure | null; keep: Set<string> | null } {
  if (question === null) return { st: null, keep: null };
  const st = questionStructure(question);
  if (!text.includes(st.start.name)) return { st: null, keep: null };
  mem.know(st.start.name);
  const view = resolveChain(mem, st);
  return { st, keep: new Set(view.chain.map((c) => c.toLowerCase())) };
}

function summaryTask(messages: readonly ChatMessage[], w: TurnWriter): void {
  const u = lastUser(messages).content;
  const history = section(u, 'history') ?? u;
  const question = anyQuestion(messages) ?? reactQuestion(messages).question;
  const mem = new Memory(question ? questionStructure(question).start.name : null);
  let turns = 0;
  // An earlier summary opens the history, tagged or under the heading the resum policy gives it.
  let prior = section(history, 'summary');
  const at = history.indexOf(EARLIER_SUMMARY);
  if (prior === null && at >= 0) {
    const from = at + EARLIER_SUMMARY.length;
    const end = history.search(STEP_RE);
    prior = history.slice(from, end > from ? end : history.length);
  }
  if (prior !== null) turns = loadMemory(prior, mem);
  // Observations first: they teach the entity names that attribute the agent's own searches.
  readObservations(history, mem, false);
  readOwnText(history, mem);
  const steps = [...history.matchAll(STEP_RE)];
  const lastStep =
    steps.length > 0 ? history.slice(steps[steps.length - 1]!.index) : lastToolResponse(history);
  if (lastStep) readObservations(lastStep, mem, true);
  // The last step's number, not the count of headings: a history cut to fit leaves the steps between out.
  const lastNumber = Number(steps.at(-1)?.[1] ?? 0);
  const taken = Math.max(lastNumber, history.split('</think>').length - 1);
  const { keep } = chainKeep(question, history, mem);
  w.write(`<summary>\n${serializeMemory(mem, keep, 'Turns', turns + taken)}\n</summary>`, 'plain');
}

/** The text after the last <tool_response> of a raw history, if any. */
function lastToolResponse(history: string): string | null {
  const at = history.lastIndexOf('<tool_response>');
  return at >= 0 ? history.slice(at) : null;
}

// Aggregation stage 1: distil one trajectory into a report.

interface Claim {
  s: string;
  r: string;
  o: string;
}

/** The forward-fact chain that ends at `answer`, walking backwards through non-rejected facts. */
function chainTo(answer: string, facts: readonly Claim[], rejected: (c: Claim) => boolean): Claim[] {
  const out: Claim[] = [];
  let cur = answer;
  const seen = new Set<string>([cur]);
  for (;;) {
    const f = facts.find(
      (x) => x.o === cur && relationByLabel(x.r) !== undefined && !rejected(x) && !seen.has(x.s),
    );
    if (!f) break;
    out.unshift(f);
    seen.add(f.s);
    cur = f.s;
  }
  return out;
}

function analyseChain(
  chain: readonly Claim[],
  facts: readonly Claim[],
): { corroborated: number; contradicted: Claim[] } {
  let corroborated = 0;
  const contradicted: Claim[] = [];
  for (const e of chain) {
    const inv = relationByLabel(e.r)?.inverse;
    if (!inv) continue;
    const refs = facts.filter((f) => f.s === e.o && f.r === inv);
    if (refs.some((f) => f.o === e.s)) corroborated++;
    if (refs.some((f) => f.o !== e.s)) contradicted.push(e);
  }
  return { corroborated, contradicted };
}

function reportTask(messages: readonly ChatMessage[], w: TurnWriter): void {
  const u = lastUser(messages).content;
  const traj = section(u, 'trajectory') ?? u;
  const question = anyQuestion(messages) ?? questionTag(traj);
  const mem = new Memory(null);
  readObservations(traj, mem, false);
  readOwnText(traj, mem);
  const answers = [
    ...closedTags(traj, 'answer'),
    ...[...traj.matchAll(ANSWER_LINE_RE)]
      // The rendering's note for an answer cut off or left empty is not one.
      .filter((m) => !NOT_GIVEN_RE.test(m[1]!))
      .map((m) => ({ at: m.index, body: m[1]! })),
  ].sort((a, b) => a.at - b.at);
  const answer = answers.at(-1)?.body.trim() || null;
  const rejected = (c: Claim) => mem.isRejected(c);
  const facts: Claim[] = mem.facts;
  const chain = answer ? chainTo(answer, facts, rejected) : [];
  const { corroborated, contradicted } = analyseChain(chain, facts);
  const chainEntities = new Set(chain.flatMap((c) => [c.s, c.o]));
  const queries: string[] = [];
  for (const body of toolCallBodies(traj)) {
    const c = parseCall(body);
    if (c?.name === 'search') queries.push(...strings(c.args.query));
  }

  const lines: string[] = ['<report>'];
  if (question) {
    const st = questionStructure(question);
    lines.push(
      `Solution planning: start from ${st.start.display} and follow ${st.relations.length} links (${st.relations.map((r) => r.label).join(', ')}) to the final entity.`,
    );
  } else {
    lines.push(
      'Solution planning: follow the chain of relations named in the question from its start entity.',
    );
  }
  lines.push('Solution methods:');
  if (queries.length > 0)
    lines.push(
      `- ${queries.length} searches, e.g. ${queries
        .slice(0, 3)
        .map((q) => JSON.stringify(q))
        .join(', ')}.`,
    );
  const byUrl = new Map<string, Fact[]>();
  for (const f of mem.facts) {
    if (!chainEntities.has(f.s)) continue;
    const list = byUrl.get(f.url) ?? [];
    list.push(f);
    byUrl.set(f.url, list);
  }
  for (const [url, fs] of byUrl) {
    lines.push(`- visit ${url}:`);
    for (const f of fs) lines.push(`  Fact: ${f.s} | ${f.r} | ${f.o}.`);
  }
  for (const r of mem.rejected.values()) lines.push(`- Rejected: ${r.s} | ${r.r} | ${r.o}.`);
  if (chain.length > 0) {
    const path = [chain[0]!.s, ...chain.map((c) => `(${c.r}) ${c.o}`)].join(' -> ');
    lines.push(
      `Final reasoning: ${path}. ${corroborated} of ${chain.length} links corroborated by the target's own page.` +
        (contradicted.length > 0
          ? ` Contradicted: ${contradicted.map((c) => `${c.s} | ${c.r} | ${c.o}`).join('; ')}.`
          : ''),
    );
  } else {
    lines.push('Final reasoning: the trajectory does not show a fact chain leading to its answer.');
  }
  lines.push(`Final answer: ${answer ?? 'none'}`);
  lines.push('</report>');
  w.write(lines.join('\n'), 'plain');
}

// Aggregation stage 2: choose the best-supported answer among reports.

interface ReportView {
  id: string;
  answer: string | null;
  quality: number;
  note: string;
}

function readReport(id: string, body: string, st: SimQuestionStructure | null): ReportView {
  const answer = /Final answer:\s*(.+)/.exec(body)?.[1]?.trim() ?? null;
  const facts: Claim[] = [];
  for (const m of body.matchAll(FACT_RE)) facts.push({ s: m[1]!, r: m[2]!, o: m[3]! });
  const rejected = new Set<string>();
  for (const m of body.matchAll(REJECT_RE)) rejected.add(factKey(m[1]!, m[2]!, m[3]!));
  if (answer === null || /^none$/i.test(answer)) return { id, answer: null, quality: 0, note: 'no answer' };
  const chain = chainTo(answer, facts, (c) => rejected.has(factKey(c.s, c.r, c.o)));
  const { corroborated, contradicted } = analyseChain(chain, facts);
  let complete = chain.length > 0;
  if (st) {
    complete =
      chain.length === st.relations.length &&
      chain[0]!.s === st.start.name &&
      chain.every((c, i) => c.r === st.relations[i]!.label);
  }
  let quality = 1;
  quality += complete ? 1 : -0.5;
  if (chain.length > 0) quality += corroborated / chain.length;
  if (contradicted.length > 0) quality -= 1.5;
  const note = `${complete ? 'complete' : 'incomplete'} chain of ${chain.length} links, ${corroborated} corroborated${
    contradicted.length > 0 ? `, ${contradicted.length} contradicted` : ''
  }`;
  return { id, answer, quality, note };
}

function normalise(s: string, keepArticles = false): string {
  const words = s.toLowerCase().replace(/[^\p{L}\p{N}\s]/gu, ' ');
  return (keepArticles ? words : words.replace(/\b(the|a|an)\b/g, ' ')).replace(/\s+/g, ' ').trim();
}

function integrateTask(messages: readonly ChatMessage[], w: TurnWriter): void {
  const u = lastUser(messages).content;
  const block = section(u, 'reports') ?? u;
  const question = anyQuestion(messages);
  const st = question ? questionStructure(question) : null;
  const reports: ReportView[] = [];
  const re = /<report(?:\s+id\s*=\s*["']?([^"'>\s]+)["']?)?\s*>([\s\S]*?)<\/report>/g;
  let n = 0;
  for (const m of block.matchAll(re)) reports.push(readReport(m[1] ?? String(++n), m[2]!, st));
  const byAnswer = new Map<string, { answer: string; best: number; count: number; ids: string[] }>();
  for (const r of reports) {
    if (r.answer === null) continue;
    const key = normalise(r.answer);
    const e = byAnswer.get(key) ?? { answer: r.answer, best: -Infinity, count: 0, ids: [] };
    e.best = Math.max(e.best, r.quality);
    e.count++;
    e.ids.push(r.id);
    byAnswer.set(key, e);
  }
  // The strongest single line of evidence decides; agreement adds weight but cannot outvote it.
  const ranked = [...byAnswer.values()].sort(
    (a, b) => b.best + 0.35 * (b.count - 1) - (a.best + 0.35 * (a.count - 1)) || b.count - a.count,
  );
  const parts: string[] = ['<think>'];
  for (const r of reports) parts.push(`Report ${r.id} answers ${r.answer ?? 'nothing'} (${r.note}). `);
  const best = ranked[0];
  if (best) {
    parts.push(
      `${best.answer} is best supported (reports ${best.ids.join(', ')}); agreement counts as evidence, but a verified, consistent chain matters more.`,
    );
  } else parts.push('No report gives an answer.');
  parts.push('</think>\n');
  w.write(parts.join(''), 'think');
  // With no report's answer to pick, the simulator invents none: an empty answer, which the integration takes for none.
  w.write(`<answer>${best ? best.answer : ''}</answer>`, 'plain');
}

function judgeTask(messages: readonly ChatMessage[], w: TurnWriter): void {
  const u = lastUser(messages).content;
  const goldText = section(u, 'gold') ?? '';
  const predText = section(u, 'prediction') ?? '';
  // An answer of an article alone ("A") normalises to nothing: its articles are kept.
  const keepArticles = normalise(goldText) === '';
  const gold = normalise(goldText, keepArticles);
  const pred = normalise(predText, keepArticles);
  const at = ` ${pred} `.indexOf(` ${gold} `);
  // As the judge prompt says: the answer among other candidates ("X or Y"), or the answer denied ("not X", "it isn't
  // X"; normalised, "isn't" reads "isn t"), is wrong. A qualification ("X, not Y") is not.
  const before = at < 0 ? '' : pred.slice(0, at);
  const rest = at < 0 ? '' : `${before} ${pred.slice(at + gold.length)}`;
  const denied = /\b(not|no|never|\w+n t)( \w+)?$/.test(before.trim());
  const several = /\b(or|either|neither|nor)\b/.test(rest);
  const correct = gold.length > 0 && at >= 0 && !denied && !several;
  w.write(`<judgement>${correct ? 'correct' : 'incorrect'}</judgement>`, 'plain');
}

// ---------------------------------------------------------------------------------------------
// Entry point.

function promptHash(messages: readonly ChatMessage[]): number {
  let h = 0x811c9dc5;
  for (const m of messages) {
    h = fnv1a32(m.role, h);
    h = fnv1a32(m.content, h);
  }
  return h;
}

/** Where the earliest of the stop strings first appears in `text`, and where it ends; undefined when none does. */
export function firstStop(text: string, stop: readonly string[]): { at: number; end: number } | undefined {
  let found: { at: number; end: number } | undefined;
  for (const s of stop) {
    const at = s ? text.indexOf(s) : -1;
    if (at >= 0 && (!found || at < found.at)) found = { at, end: at + s.length };
  }
  return found;
}

function truncate(
  tokens: SimTokenLogprob[],
  params: GenerateParams,
): { tokens: SimTokenLogprob[]; finishReason: 'stop' | 'length' } {
  let out = tokens;
  let finishReason: 'stop' | 'length' = 'stop';
  if (params.stop && params.stop.length > 0) {
    const cut = firstStop(out.map((t) => t.token).join(''), params.stop)?.at;
    if (cut !== undefined) {
      const kept: SimTokenLogprob[] = [];
      let pos = 0;
      for (const t of out) {
        if (pos >= cut) break;
        if (pos + t.token.length <= cut) kept.push(t);
        else {
          // The token cut by the stop string is reported as its kept part, among its alternatives too.
          const token = t.token.slice(0, cut - pos);
          kept.push({ ...t, token, topTokens: t.topTokens.map((a) => (a === t.token ? token : a)) });
        }
        pos += t.token.length;
      }
      out = kept;
    }
  }
  if (params.maxTokens >= 0 && out.length > params.maxTokens) {
    out = out.slice(0, params.maxTokens);
    finishReason = 'length';
  }
  return { tokens: out, finishReason };
}

/**
 * One simulated completion of `messages`: deterministic for the same (messages, seed); another
 * seed samples other choices at decision points. No seed means seed 0.
 */
export function simGenerate(messages: readonly ChatMessage[], params: GenerateParams): SimGeneration {
  const task = detectSimTask(messages);
  const seed = params.seed ?? 0;
  const rng = new SimRng(mix32(seed, promptHash(messages), 0x51)); // 0x51: the policy's own stream
  const k = Math.max(0, Math.floor(params.topLogprobs ?? 16));
  const temperature = Number.isFinite(params.temperature) ? Math.max(0, params.temperature) : 1;
  const make = (turn: number) => new TurnWriter(rng, k, temperature, turn);
  let w: TurnWriter;
  switch (task) {
    case 'react':
      w = react(messages, make);
      break;
    case 'iterresearch':
      w = iterresearch(messages, make);
      break;
    case 'summary':
      w = make(0);
      summaryTask(messages, w);
      break;
    case 'report':
      w = make(0);
      reportTask(messages, w);
      break;
    case 'integrate':
      w = make(0);
      integrateTask(messages, w);
      break;
    case 'judge':
      w = make(0);
      judgeTask(messages, w);
      break;
  }
  const { tokens, finishReason } = truncate(w.tokens, params);
  let text = '';
  for (const t of tokens) text += t.token;
  return { text, tokens, finishReason, task };
}
