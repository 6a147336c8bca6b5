// The synthetic web: search and visit over the puzzle a question maps to.
//
// Output formats follow the Tongyi DeepResearch tools (search: "A Google search for '<q>' found N
// results" with numbered markdown links and snippets, several queries joined by "\n=======\n";
// visit: "The useful information in <url> for user goal <goal> as follows" with evidence and
// summary), so the engine's prompts, truncation and parsing see realistic observations.
// Pages state facts on lines of the form `Fact: <A> | <relation> | <B>.` that a reader can quote.

import { fnv1a32 } from '../common/hash.js';
import { parseDirectives } from './directives.js';
import {
  entityForQuery,
  factSentence,
  mix32,
  puzzleFor,
  type SimPage,
  type SimPuzzle,
  SimRng,
} from './world.js';

const JOIN = '\n=======\n';

function asList(v: string | readonly string[]): string[] {
  return typeof v === 'string' ? [v] : [...v];
}

/** Results for queries that name no entity of the puzzle: generic pages that never help. */
function miscResults(puzzle: SimPuzzle, query: string): { title: string; url: string; snippet: string }[] {
  const rng = new SimRng(mix32(puzzle.key, fnv1a32(query), 7));
  const topics = [
    'A general overview',
    'Frequently asked questions',
    'A list of regional landmarks',
    'An archive index',
  ];
  const n = 2 + rng.int(2);
  const out: { title: string; url: string; snippet: string }[] = [];
  for (let i = 0; i < n; i++) {
    const id = mix32(puzzle.key, fnv1a32(query), i) & 0xffffff;
    const topic = rng.pick(topics);
    out.push({
      title: `${topic} - Directory`,
      url: `sim://kb/misc/${id.toString(16).padStart(6, '0')}`,
      snippet: `${topic}; it does not name the subject of the query.`,
    });
  }
  return out;
}

function searchOne(puzzle: SimPuzzle, query: string): string {
  const q = query.trim();
  if (q.length === 0) return `No results found for '${query}'. Try with a more general query.`;
  const entity = entityForQuery(puzzle, q);
  let results: { title: string; url: string; snippet: string }[];
  if (entity !== null) {
    const pool = [...(puzzle.pools.get(entity) ?? [])];
    // The ranking depends on the wording of the query, as with a real engine: rephrasing reorders.
    new SimRng(mix32(puzzle.key, fnv1a32(q.toLowerCase()))).shuffle(pool);
    results = pool.map((p) => ({ title: p.title, url: p.url, snippet: p.snippet }));
  } else {
    results = miscResults(puzzle, q);
  }
  const lines = results.map((r, i) => `${i + 1}. [${r.title}](${r.url})\n${r.snippet}`);
  return `A Google search for '${q}' found ${results.length} results:\n\n## Web Results\n${lines.join('\n\n')}`;
}

/** Tongyi-style search over the question's synthetic web; one block per query. */
export function simSearch(question: string, query: string | readonly string[]): string {
  const puzzle = puzzleFor(question);
  const queries = asList(query);
  if (queries.length === 0) return '[Search] Invalid request format: the query list is empty';
  return queries.map((q) => searchOne(puzzle, q)).join(JOIN);
}

const FILLER =
  'Archive note: the following passage reproduces catalogue text kept for completeness; it repeats ' +
  'descriptions of boxes, folders and shelf marks and carries no information about the question. ';

function pad(text: string, bytes: number): string {
  const have = Buffer.byteLength(text, 'utf8');
  if (bytes <= have) return text;
  const need = bytes - have;
  const filler = FILLER.repeat(Math.ceil(need / FILLER.length)).slice(0, need);
  return text + filler;
}

function pageBody(page: SimPage): string {
  const lines = [page.title, page.prose.slice(0, -1).join(' ')];
  for (const f of page.facts) lines.push(`Fact: ${f.subject} | ${f.relation} | ${f.object}.`);
  lines.push(page.prose[page.prose.length - 1] ?? '');
  return lines.filter((l) => l.length > 0).join('\n');
}

function pageSummary(page: SimPage): string {
  if (page.facts.length === 0) return 'The page contains no specific facts.';
  return page.facts
    .map((f) => `The page states that ${factSentence(f.subject, f.relation, f.object)}.`)
    .join(' ');
}

function visitOne(puzzle: SimPuzzle, url: string, goal: string, obsBytes: number): string {
  const u = url.trim();
  const head = `The useful information in ${u} for user goal ${goal} as follows: \n\n`;
  let evidence: string;
  let summary: string;
  const page = puzzle.pages.get(u);
  if (page) {
    evidence = pageBody(page);
    summary = pageSummary(page);
  } else if (u.startsWith('sim://kb/misc/')) {
    evidence = 'A directory page listing unrelated entries. It does not address the goal.';
    summary = 'The page contains no information relevant to the goal.';
  } else {
    evidence = `Page not found: ${u} does not exist in the simulated knowledge base. Please check the URL.`;
    summary = 'The webpage content could not be accessed, and therefore, no information is available.';
  }
  const tail = `\n\nSummary: \n${summary}\n\n`;
  const body = `${head}Evidence in page: \n${evidence}`;
  if (obsBytes <= 0) return body + tail;
  // Padding goes after the evidence so truncating a long page keeps its facts.
  const paddedBody = pad(`${body}\n`, obsBytes - Buffer.byteLength(tail, 'utf8'));
  return paddedBody + tail;
}

/** The most `[sim:obs-bytes=N]` pads a visit's pages to, together: a question cannot make every visit allocate 100s of MB. */
export const MAX_OBS_BYTES = 1024 * 1024;

/**
 * Tongyi-style visit: page text with its facts, or a "Page not found" text for unknown URLs.
 * `[sim:obs-bytes=N]` in the question pads each page's block to N bytes, the visit's pages together to MAX_OBS_BYTES
 * at most: each page then keeps its facts, where cutting the joined text would drop the last pages whole.
 */
export function simVisit(question: string, url: string | readonly string[], goal?: string): string {
  const puzzle = puzzleFor(question);
  const urls = asList(url);
  if (urls.length === 0) return '[Visit] Invalid request format: the url list is empty';
  const g = goal !== undefined && goal.trim().length > 0 ? goal.trim() : 'general information';
  const obsBytes = Math.min(parseDirectives(question).obsBytes, Math.floor(MAX_OBS_BYTES / urls.length));
  return urls.map((u) => visitOne(puzzle, u, g, obsBytes)).join(JOIN);
}
