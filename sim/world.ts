// Synthetic knowledge base with ground truth.
//
// Every question, whatever its text, maps to one deterministic multi-hop puzzle: a start entity, a
// chain of 2-4 relations, and a synthetic web of pages (one correct page per hop plus misleading
// and irrelevant ones). The world is a pure function of the question text, so the simulated model
// (in a pool-member process) and the simulated tools (in a rollout worker) derive the same world
// without sharing state. Questions produced by sampleQuestions name their start entity and spell
// out the relation chain, and puzzleFor parses them back; any other question gets a generated
// start entity and chain from its hash.
//
// Wrong paths are real: a misleading page states a wrong fact that leads to a wrong entity, whose
// own pages continue a consistent-looking chain to a wrong final answer. The only tell is a
// back-reference: each entity's page also states the inverse of the relation that led to it
// ("Ostrava Works | builder of | Varnholt Bridge"), and the first entity of a wrong chain points
// back to someone else. Noticing that is what verification means here.

import { fnv1a32 } from '../common/hash.js';
import { parseDirectives, stripDirectives } from './directives.js';

// ---------------------------------------------------------------------------------------------
// Hashing and seeded randomness (no Math.random anywhere in the simulator).

/** Mixes integers into one well-spread 32-bit value (murmur3 finaliser over a running combine). */
export function mix32(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) {
    h ^= Math.imul((v | 0) ^ (h >>> 15), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** mulberry32: small, fast, good enough for simulation draws. */
export class SimRng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  /** Index drawn with probability proportional to weights. */
  weighted(weights: readonly number[]): number {
    let total = 0;
    for (const w of weights) total += w;
    let r = this.next() * total;
    for (let i = 0; i < weights.length; i++) {
      r -= weights[i]!;
      if (r < 0) return i;
    }
    return weights.length - 1;
  }
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = items[i]!;
      items[i] = items[j]!;
      items[j] = tmp;
    }
    return items;
  }
}

// ---------------------------------------------------------------------------------------------
// Entities and relations.

export type SimEntityType =
  | 'bridge'
  | 'ship'
  | 'novel'
  | 'company'
  | 'person'
  | 'city'
  | 'university'
  | 'river';

export interface SimEntity {
  /** Bare name as it appears in facts: "Varnholt Bridge". */
  name: string;
  type: SimEntityType;
  /** Name as used inside a sentence: "the Varnholt Bridge". */
  display: string;
}

export interface SimRelation {
  id: string;
  from: SimEntityType;
  to: SimEntityType;
  /** Forward fact label: "Varnholt Bridge | built by | Ostrava Works". */
  label: string;
  /** Back-reference label on the target's page: "Ostrava Works | builder of | Varnholt Bridge". */
  inverse: string;
  /** Question noun-phrase prefix: "the company that built " + X. */
  np: string;
  /** Page-title topic of pages that state this relation. */
  topic: string;
  /** Page-title topic of the target's own page (where the back-reference lives). */
  inverseTopic: string;
  /** Query phrasings; {X} is the subject's name. */
  queries: readonly string[];
  /** Research goal phrase; {X} is the subject's display name. */
  goal: string;
}

export const SIM_RELATIONS: readonly SimRelation[] = [
  {
    id: 'bridge_built_by',
    from: 'bridge',
    to: 'company',
    label: 'built by',
    inverse: 'builder of',
    np: 'the company that built ',
    topic: 'construction history',
    inverseTopic: 'engineering projects',
    queries: ['"{X}" builder', '{X} construction company', 'who built {X}'],
    goal: 'the company that built {X}',
  },
  {
    id: 'ship_built_by',
    from: 'ship',
    to: 'company',
    label: 'built by',
    inverse: 'builder of',
    np: 'the shipyard that built ',
    topic: 'construction history',
    inverseTopic: 'ships and projects',
    queries: ['"{X}" shipyard', '{X} ship builder', 'which shipyard built {X}'],
    goal: 'the shipyard that built {X}',
  },
  {
    id: 'company_founded_by',
    from: 'company',
    to: 'person',
    label: 'founded by',
    inverse: 'founder of',
    np: 'the founder of ',
    topic: 'founding and ownership',
    inverseTopic: 'business career',
    queries: ['"{X}" founder', '{X} founded by', 'who founded {X}'],
    goal: 'the founder of {X}',
  },
  {
    id: 'university_founded_by',
    from: 'university',
    to: 'person',
    label: 'founded by',
    inverse: 'founder of',
    np: 'the founder of ',
    topic: 'founding and charter',
    inverseTopic: 'academic foundations',
    queries: ['"{X}" founder', '{X} founded by', 'who founded {X}'],
    goal: 'the founder of {X}',
  },
  {
    id: 'born_in',
    from: 'person',
    to: 'city',
    label: 'born in',
    inverse: 'birthplace of',
    np: 'the birthplace of ',
    topic: 'early life',
    inverseTopic: 'notable natives',
    queries: ['"{X}" birthplace', '{X} born in', 'where was {X} born'],
    goal: 'the birthplace of {X}',
  },
  {
    id: 'studied_at',
    from: 'person',
    to: 'university',
    label: 'studied at',
    inverse: 'alma mater of',
    np: 'the university attended by ',
    topic: 'education',
    inverseTopic: 'notable alumni',
    queries: ['"{X}" education', '{X} studied at university', 'where did {X} study'],
    goal: 'the university attended by {X}',
  },
  {
    id: 'mentored_by',
    from: 'person',
    to: 'person',
    label: 'mentored by',
    inverse: 'mentor of',
    np: 'the mentor of ',
    topic: 'apprenticeship and mentors',
    inverseTopic: 'students and apprentices',
    queries: ['"{X}" mentor', '{X} apprenticed under', 'who mentored {X}'],
    goal: 'the mentor of {X}',
  },
  {
    id: 'headquartered_in',
    from: 'company',
    to: 'city',
    label: 'headquartered in',
    inverse: 'headquarters city of',
    np: 'the headquarters city of ',
    topic: 'headquarters and offices',
    inverseTopic: 'local industry',
    queries: ['"{X}" headquarters', '{X} head office city', 'where is {X} headquartered'],
    goal: 'the headquarters city of {X}',
  },
  {
    id: 'university_located_in',
    from: 'university',
    to: 'city',
    label: 'located in',
    inverse: 'home of',
    np: 'the city that hosts ',
    topic: 'campus and location',
    inverseTopic: 'institutions',
    queries: ['"{X}" campus location', '{X} located in city', 'where is {X}'],
    goal: 'the city that hosts {X}',
  },
  {
    id: 'city_mayor',
    from: 'city',
    to: 'person',
    label: 'led by mayor',
    inverse: 'mayor of',
    np: 'the mayor of ',
    topic: 'civic leadership',
    inverseTopic: 'public offices',
    queries: ['"{X}" mayor', '{X} city mayor', 'who is the mayor of {X}'],
    goal: 'the mayor of {X}',
  },
  {
    id: 'city_river',
    from: 'city',
    to: 'river',
    label: 'lies on',
    inverse: 'flows through',
    np: 'the river that flows through ',
    topic: 'geography and waterways',
    inverseTopic: 'course and towns',
    queries: ['"{X}" river', '{X} river flows through', 'which river flows through {X}'],
    goal: 'the river that flows through {X}',
  },
  {
    id: 'river_mouth',
    from: 'river',
    to: 'city',
    label: 'flows into the sea at',
    inverse: 'mouth of',
    np: 'the city at the mouth of ',
    topic: 'course and mouth',
    inverseTopic: 'harbour and estuary',
    queries: ['"{X}" mouth', '{X} estuary city', 'where does {X} reach the sea'],
    goal: 'the city at the mouth of {X}',
  },
  {
    id: 'novel_written_by',
    from: 'novel',
    to: 'person',
    label: 'written by',
    inverse: 'author of',
    np: 'the author of ',
    topic: 'authorship and publication',
    inverseTopic: 'bibliography',
    queries: ['"{X}" author', '{X} novel written by', 'who wrote {X}'],
    goal: 'the author of {X}',
  },
];

const RELATION_BY_LABEL = new Map<string, SimRelation>();
for (const r of SIM_RELATIONS) {
  if (!RELATION_BY_LABEL.has(r.label)) RELATION_BY_LABEL.set(r.label, r);
}

/** The relation whose forward label is `label` (labels are shared by relations of the same meaning). */
export function relationByLabel(label: string): SimRelation | undefined {
  return RELATION_BY_LABEL.get(label);
}

/** A fact as an English clause ("X was built by Y"), for prose around facts. */
export function factSentence(subject: string, relation: string, object: string): string {
  if (relation.endsWith(' of')) return `${subject} is the ${relation} ${object}`;
  if (relation.endsWith(' by') || relation === 'born in') return `${subject} was ${relation} ${object}`;
  if (relation === 'headquartered in' || relation === 'located in')
    return `${subject} is ${relation} ${object}`;
  return `${subject} ${relation} ${object}`;
}

/** Page sources; the simulated model trusts the first kind more, as a real model trusts an archive over a forum. */
export const SIM_CREDIBLE_SOURCES: readonly string[] = [
  'Municipal Archive',
  'National Register',
  'Encyclopedia Entry',
  'University Library',
  'Historical Society',
];
export const SIM_DUBIOUS_SOURCES: readonly string[] = [
  'Travel Forum',
  'Fan Wiki',
  'Trivia Blog',
  'Social Post',
  'Anonymous Wiki',
];

export const TYPE_NOUN: Record<SimEntityType, string> = {
  bridge: 'bridge',
  ship: 'ship',
  novel: 'novel',
  company: 'company',
  person: 'person',
  city: 'city',
  university: 'university',
  river: 'river',
};

const PRE = [
  'Varn',
  'Ost',
  'Bril',
  'Cas',
  'Dun',
  'Eld',
  'Fen',
  'Gal',
  'Hal',
  'Ivr',
  'Kel',
  'Lor',
  'Mar',
  'Nor',
  'Orm',
  'Pel',
  'Quen',
  'Rav',
  'Sel',
  'Tor',
  'Ul',
  'Vel',
  'Wyn',
  'Yar',
  'Zel',
  'Ash',
  'Brom',
  'Cor',
  'Dral',
  'Esk',
];
const MID = ['', '', 'a', 'e', 'i', 'o', 'en', 'er', 'an', 'el', 'or'];
const SUF = [
  'holt',
  'mere',
  'wick',
  'ford',
  'stead',
  'moor',
  'haven',
  'bury',
  'dale',
  'gate',
  'ton',
  'ley',
  'mouth',
  'crest',
  'field',
  'brook',
  'wood',
  'vale',
];
const FIRST = [
  'Ada',
  'Bertil',
  'Clara',
  'Desmond',
  'Elena',
  'Felix',
  'Greta',
  'Hugo',
  'Ines',
  'Jonas',
  'Katrin',
  'Leon',
  'Mira',
  'Nils',
  'Olga',
  'Pavel',
  'Rosa',
  'Stefan',
  'Tilda',
  'Viktor',
  'Wilma',
  'Yusuf',
  'Zora',
  'Anselm',
  'Britta',
  'Cyril',
  'Dagny',
  'Emil',
  'Frida',
  'Gustav',
];
const COMPANY_SUFFIX = [
  'Works',
  'Industries',
  'Engineering',
  'Foundry',
  'Company',
  'Holdings',
  'Ironworks',
  'Shipwrights',
];
const NOVEL_ADJ = [
  'Glass',
  'Silent',
  'Iron',
  'Hollow',
  'Amber',
  'Northern',
  'Last',
  'Winter',
  'Crimson',
  'Distant',
];
const NOVEL_NOUN = [
  'Harbour',
  'Orchard',
  'Lantern',
  'Meridian',
  'Archive',
  'Tide',
  'Garden',
  'Signal',
  'Cartographer',
  'Lighthouse',
];
const IRRELEVANT_SUFFIX = ['Museum', 'Festival', 'Station', 'Park', 'Society', 'Tunnel', 'Gallery', 'Market'];

function core(rng: SimRng): string {
  return rng.pick(PRE) + rng.pick(MID) + rng.pick(SUF);
}

function displayOf(name: string, type: SimEntityType): string {
  switch (type) {
    case 'bridge':
    case 'ship':
    case 'river':
      return `the ${name}`;
    case 'novel':
      return `the novel ${name}`;
    default:
      return name;
  }
}

function makeEntity(type: SimEntityType, rng: SimRng): SimEntity {
  let name: string;
  switch (type) {
    case 'bridge':
      name = `${core(rng)} Bridge`;
      break;
    case 'ship':
      name = `SS ${core(rng)}`;
      break;
    case 'novel':
      name = `The ${rng.pick(NOVEL_ADJ)} ${rng.pick(NOVEL_NOUN)}`;
      break;
    case 'company':
      name = `${core(rng)} ${rng.pick(COMPANY_SUFFIX)}`;
      break;
    case 'person':
      name = `${rng.pick(FIRST)} ${core(rng)}`;
      break;
    case 'city':
      name = core(rng);
      break;
    case 'university':
      name = rng.next() < 0.5 ? `University of ${core(rng)}` : `${core(rng)} College`;
      break;
    case 'river':
      name = `${core(rng)} River`;
      break;
  }
  return { name, type, display: displayOf(name, type) };
}

/** Entity from its display form in a question, or null when the form is not one the world generates. */
function parseEntityDisplay(display: string): SimEntity | null {
  const w = '[A-Z][a-z]+';
  const tries: [RegExp, SimEntityType][] = [
    [new RegExp(`^the novel (The ${w} ${w})$`), 'novel'],
    [new RegExp(`^the (SS ${w})$`), 'ship'],
    [new RegExp(`^the (${w} Bridge)$`), 'bridge'],
    [new RegExp(`^the (${w} River)$`), 'river'],
    [new RegExp(`^(University of ${w}|${w} College)$`), 'university'],
    [new RegExp(`^(${w} (?:${COMPANY_SUFFIX.join('|')}))$`), 'company'],
    [new RegExp(`^(${w} ${w})$`), 'person'],
    [new RegExp(`^(${w})$`), 'city'],
  ];
  for (const [re, type] of tries) {
    const m = re.exec(display);
    if (m) return { name: m[1]!, type, display: displayOf(m[1]!, type) };
  }
  return null;
}

const START_TYPES: readonly SimEntityType[] = [
  'bridge',
  'ship',
  'novel',
  'company',
  'person',
  'city',
  'university',
];

function relationsFrom(type: SimEntityType): SimRelation[] {
  return SIM_RELATIONS.filter((r) => r.from === type);
}

function walkRelations(start: SimEntityType, hops: number, rng: SimRng): SimRelation[] {
  const out: SimRelation[] = [];
  let type = start;
  for (let i = 0; i < hops; i++) {
    const options = relationsFrom(type);
    const r = rng.pick(options);
    out.push(r);
    type = r.to;
  }
  return out;
}

function questionText(start: SimEntity, relations: readonly SimRelation[]): string {
  let np = start.display;
  for (const r of relations) np = r.np + np;
  const last = relations[relations.length - 1]!;
  return last.to === 'person' ? `Who is ${np}?` : `Which ${TYPE_NOUN[last.to]} is ${np}?`;
}

/** Start entity and relation chain spelled out by a question in the sampleQuestions grammar. */
function parseQuestion(q: string): { start: SimEntity; relations: SimRelation[] } | null {
  const m = /^(?:Who is|Which ([a-z]+) is) (.+)\?$/.exec(q);
  if (!m) return null;
  let rest = m[2]!;
  const prefixes: string[] = [];
  const nps = [...new Set(SIM_RELATIONS.map((r) => r.np))].sort((a, b) => b.length - a.length);
  for (;;) {
    const p = nps.find((np) => rest.startsWith(np));
    if (p === undefined) break;
    prefixes.push(p);
    rest = rest.slice(p.length);
  }
  if (prefixes.length < 1 || prefixes.length > 6) return null;
  const start = parseEntityDisplay(rest);
  if (!start) return null;
  const relations: SimRelation[] = [];
  let type = start.type;
  for (let i = prefixes.length - 1; i >= 0; i--) {
    const r = SIM_RELATIONS.find((x) => x.np === prefixes[i] && x.from === type);
    if (!r) return null;
    relations.push(r);
    type = r.to;
  }
  const noun = m[1];
  if (noun === undefined ? type !== 'person' : TYPE_NOUN[type] !== noun) return null;
  return { start, relations };
}

// ---------------------------------------------------------------------------------------------
// Pages and puzzles.

export interface SimFact {
  subject: string;
  relation: string;
  object: string;
}

/**
 * correct: states the true fact of a hop; misleading: states a wrong fact at a hop of the true chain;
 * wrong-chain: a page of an entity reached only through a misleading page; answer: the final
 * entity's own page (back-reference only); irrelevant: about a similarly named entity.
 */
export type SimPageKind = 'correct' | 'misleading' | 'wrong-chain' | 'answer' | 'irrelevant';

export interface SimPage {
  url: string;
  title: string;
  snippet: string;
  kind: SimPageKind;
  /** Entity the page is about. */
  subject: string;
  source: string;
  facts: SimFact[];
  /** Prose around the facts. */
  prose: string[];
}

export interface SimHop {
  index: number;
  from: SimEntity;
  relation: SimRelation;
  to: SimEntity;
  /** The search pool for `from`: the correct page plus 2-3 distractors (misleading and irrelevant). */
  results: SimPage[];
}

export interface SimPuzzle {
  /** The question without directives: the text the world was derived from. */
  question: string;
  key: number;
  /** True when the start entity and chain were read from the question (sampleQuestions grammar). */
  parsed: boolean;
  start: SimEntity;
  relations: SimRelation[];
  hops: SimHop[];
  answer: string;
  /** Final answers of the wrong chains that misleading pages lead to. */
  wrongAnswers: string[];
  difficulty: number;
  pages: Map<string, SimPage>;
  /** Search pools keyed by lower-cased entity name. */
  pools: Map<string, SimPage[]>;
  /** Names with a search pool, longest first (for matching queries). */
  searchable: string[];
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 32)
    .replace(/-$/, '');
}

const YEARS = (rng: SimRng) => 1820 + rng.int(180);

class WorldBuilder {
  readonly pages = new Map<string, SimPage>();
  readonly pools = new Map<string, SimPage[]>();
  private readonly used = new Set<string>();
  constructor(
    readonly key: number,
    readonly rng: SimRng,
  ) {}

  reserve(name: string): void {
    this.used.add(name.toLowerCase());
  }

  entity(type: SimEntityType, rng: SimRng = this.rng): SimEntity {
    for (let i = 0; i < 64; i++) {
      const e = makeEntity(type, rng);
      const k = e.name.toLowerCase();
      if (this.used.has(k)) continue;
      // A name that contains another (or is contained) would make query matching ambiguous.
      let clash = false;
      for (const u of this.used) {
        if (u.includes(k) || k.includes(u)) {
          clash = true;
          break;
        }
      }
      if (clash) continue;
      this.used.add(k);
      return e;
    }
    const e = makeEntity(type, rng);
    const name = `${e.name} ${this.used.size}`;
    this.used.add(name.toLowerCase());
    return { ...e, name, display: displayOf(name, type) };
  }

  page(p: Omit<SimPage, 'url'>): SimPage {
    const url = `sim://kb/${slug(p.title)}-${(mix32(this.key, fnv1a32(p.title), this.pages.size) & 0xffffff).toString(16).padStart(6, '0')}`;
    const page: SimPage = { ...p, url };
    this.pages.set(url, page);
    return page;
  }

  addToPool(entity: string, pages: SimPage[]): void {
    const k = entity.toLowerCase();
    const pool = this.pools.get(k) ?? [];
    pool.push(...pages);
    this.pools.set(k, pool);
  }

  source(credible: boolean): string {
    return this.rng.pick(credible ? SIM_CREDIBLE_SOURCES : SIM_DUBIOUS_SOURCES);
  }

  /** A page stating `subject`'s forward fact (if any) and its back-reference (if any). */
  factPage(
    kind: SimPageKind,
    subject: SimEntity,
    forward: { relation: SimRelation; object: SimEntity } | null,
    back: { relation: SimRelation; object: SimEntity } | null,
    credible: boolean,
  ): SimPage {
    const facts: SimFact[] = [];
    const prose: string[] = [];
    const year = YEARS(this.rng);
    const topic = forward ? forward.relation.topic : back ? back.relation.inverseTopic : 'overview';
    const source = this.source(credible);
    if (forward) {
      facts.push({ subject: subject.name, relation: forward.relation.label, object: forward.object.name });
      prose.push(
        this.rng.pick([
          `Records from ${year} describe ${subject.display} in some detail.`,
          `This entry summarises what is known about ${subject.display}.`,
          `${capitalise(subject.display)} is documented in several collections.`,
        ]),
      );
    }
    if (back) {
      facts.push({ subject: subject.name, relation: back.relation.inverse, object: back.object.name });
      prose.push(
        this.rng.pick([
          `${capitalise(subject.display)} is mentioned in connection with ${back.object.display}.`,
          `Later sources link ${subject.display} to ${back.object.display}.`,
        ]),
      );
    }
    if (!forward && !back) prose.push(`Little is recorded about ${subject.display}.`);
    prose.push(
      this.rng.pick([
        `The entry was last revised in ${year + 1 + this.rng.int(120)}.`,
        `Further material is held in private collections.`,
        `Some details remain disputed among local historians.`,
        `Photographs from the period survive in the archive.`,
      ]),
    );
    const title = `${subject.name}: ${topic} - ${source}`;
    const snippet = forward
      ? `${capitalise(subject.display)}: ${forward.relation.topic}, with notes on the people and organisations involved.`
      : `${capitalise(subject.display)}: ${topic} and related records.`;
    return this.page({ title, snippet, kind, subject: subject.name, source, facts, prose });
  }

  irrelevantPage(near: SimEntity): SimPage {
    const base = near.name;
    const other = `${base} ${this.rng.pick(IRRELEVANT_SUFFIX)}`;
    const place = this.entity('city');
    const source = this.source(this.rng.next() < 0.5);
    const title = `${other}: ${this.rng.pick(['visitor information', 'events and exhibitions', 'opening hours', 'history'])} - ${source}`;
    const facts: SimFact[] = [{ subject: other, relation: 'located in', object: place.name }];
    const prose = [
      `The ${other} is a separate place that shares its name with ${near.display}.`,
      `It is not otherwise connected to ${near.display}.`,
    ];
    const snippet = `${other}: events, visitor information and local news.`;
    return this.page({ title, snippet, kind: 'irrelevant', subject: other, source, facts, prose });
  }
}

function capitalise(s: string): string {
  return s.length === 0 ? s : s[0]!.toUpperCase() + s.slice(1);
}

function buildPuzzle(question: string): SimPuzzle {
  const directives = parseDirectives(question);
  const clean = stripDirectives(question);
  const key = fnv1a32(clean);
  const parsed = parseQuestion(clean);
  // Independent streams: the true chain's names never depend on difficulty or distractor draws.
  const chainRng = new SimRng(mix32(key, 1));
  const worldRng = new SimRng(mix32(key, 2));
  const b = new WorldBuilder(key, worldRng);

  let start: SimEntity;
  let relations: SimRelation[];
  if (parsed) {
    start = parsed.start;
    relations = parsed.relations;
    b.reserve(start.name);
  } else {
    start = b.entity(chainRng.pick(START_TYPES), chainRng);
    relations = walkRelations(start.type, 2 + chainRng.int(3), chainRng);
  }
  const chain: SimEntity[] = [start];
  for (const r of relations) chain.push(b.entity(r.to, chainRng));

  const difficulty =
    directives.difficulty ?? Math.min(1, Math.max(0, (worldRng.next() + worldRng.next()) / 2));
  const h = relations.length;
  const hops: SimHop[] = [];
  const wrongAnswers: string[] = [];

  for (let k = 0; k < h; k++) {
    const from = chain[k]!;
    const rel = relations[k]!;
    const back = k > 0 ? { relation: relations[k - 1]!, object: chain[k - 1]! } : null;
    const results: SimPage[] = [];
    results.push(
      b.factPage(
        'correct',
        from,
        { relation: rel, object: chain[k + 1]! },
        back,
        worldRng.next() > 0.3 * difficulty,
      ),
    );
    const distractors = 2 + worldRng.int(2);
    const misleading = Math.min(distractors - 1, 1 + (worldRng.next() < 0.5 * difficulty ? 1 : 0));
    for (let j = 0; j < misleading; j++) {
      const wrong = b.entity(rel.to);
      results.push(
        b.factPage('misleading', from, { relation: rel, object: wrong }, back, worldRng.next() < difficulty),
      );
      wrongAnswers.push(buildWrongChain(b, wrong, k + 1, relations, from));
    }
    for (let j = misleading; j < distractors; j++) results.push(b.irrelevantPage(from));
    b.addToPool(from.name, results);
    hops.push({ index: k, from, relation: rel, to: chain[k + 1]!, results });
  }
  const answerEntity = chain[h]!;
  b.addToPool(answerEntity.name, [
    b.factPage('answer', answerEntity, null, { relation: relations[h - 1]!, object: chain[h - 1]! }, true),
    b.irrelevantPage(answerEntity),
  ]);

  const searchable = [...b.pools.keys()].sort((x, y) => y.length - x.length);
  return {
    question: clean,
    key,
    parsed: parsed !== null,
    start,
    relations,
    hops,
    answer: answerEntity.name,
    wrongAnswers,
    difficulty,
    pages: b.pages,
    pools: b.pools,
    searchable,
  };
}

/**
 * The chain a misleading page at hop depth-1 leads into: `first` is the wrong entity, reached at
 * `depth`. Its own page points back to a stranger (the inconsistency), later pages are consistent.
 * Returns the wrong final answer.
 */
function buildWrongChain(
  b: WorldBuilder,
  first: SimEntity,
  depth: number,
  relations: readonly SimRelation[],
  claimedPredecessor: SimEntity,
): string {
  const h = relations.length;
  let prev: SimEntity | null = null;
  let cur = first;
  for (let k = depth; k <= h; k++) {
    const incoming = relations[k - 1]!;
    const backObject = prev ?? b.entity(claimedPredecessor.type);
    const back = { relation: incoming, object: backObject };
    if (k === h) {
      b.addToPool(cur.name, [
        b.factPage('wrong-chain', cur, null, back, b.rng.next() < 0.7),
        b.irrelevantPage(cur),
      ]);
      return cur.name;
    }
    const rel = relations[k]!;
    const next = b.entity(rel.to);
    const pages = [b.factPage('wrong-chain', cur, { relation: rel, object: next }, back, b.rng.next() < 0.7)];
    pages.push(b.irrelevantPage(cur));
    b.addToPool(cur.name, pages);
    prev = cur;
    cur = next;
  }
  return cur.name;
}

const CACHE_LIMIT = 512;
const cache = new Map<string, SimPuzzle>();

/** The deterministic puzzle behind a question (directives in the text are ignored, except [sim:difficulty=x]). */
export function puzzleFor(question: string): SimPuzzle {
  const hit = cache.get(question);
  if (hit) {
    cache.delete(question);
    cache.set(question, hit);
    return hit;
  }
  const p = buildPuzzle(question);
  if (cache.size >= CACHE_LIMIT) {
    const oldest = cache.keys().next().value;
    if (oldest !== undefined) cache.delete(oldest);
  }
  cache.set(question, p);
  return p;
}

/**
 * What a reader of the question can know without searching: the start entity and the relation
 * chain. The simulated model uses only this from the world; facts must come from observations.
 */
export interface SimQuestionStructure {
  start: SimEntity;
  relations: readonly SimRelation[];
}

export function questionStructure(question: string): SimQuestionStructure {
  const p = puzzleFor(question);
  return { start: p.start, relations: p.relations };
}

/** Natural-looking questions with their ground-truth answers; puzzleFor(question).answer === answer. */
export function sampleQuestions(n: number, seed: number): { question: string; answer: string }[] {
  const rng = new SimRng(mix32(0x5eed, seed));
  const out: { question: string; answer: string }[] = [];
  const seen = new Set<string>();
  let guard = 0;
  while (out.length < n && guard < n * 20 + 100) {
    guard++;
    const start = makeEntity(rng.pick(START_TYPES), rng);
    const relations = walkRelations(start.type, 2 + rng.int(3), rng);
    const question = questionText(start, relations);
    if (seen.has(question)) continue;
    seen.add(question);
    out.push({ question, answer: puzzleFor(question).answer });
  }
  return out;
}

/** The entity whose search pool a query is about: the longest known name it contains. */
export function entityForQuery(puzzle: SimPuzzle, query: string): string | null {
  const q = query.toLowerCase();
  for (const name of puzzle.searchable) if (q.includes(name)) return name;
  return null;
}
