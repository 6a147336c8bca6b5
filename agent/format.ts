// Parsing of model output in the Tongyi DeepResearch turn format:
//   <think>…</think> [<report>…</report>] then <tool_call>{"name": …, "arguments": {…}}</tool_call> or <answer>…</answer>
// Workflow-safe: pure string handling; zod only validates the tool-call JSON the model produced.
import { z } from 'zod';
import { clipText, MAX_ANSWER_CHARS } from './clip.js';
import type { ParsedTurn, ToolCall } from './types.js';

/**
 * The observation a trajectory receives when its <tool_call> block cannot be used. The wording is the one
 * the reference rollout script feeds back, so trajectories stay comparable with those it produced.
 */
export const TOOL_CALL_FORMAT_ERROR =
  'Error: Tool call is not a valid JSON. Tool call must contain a valid "name" and "arguments" field.';

/**
 * Model-written text that travels in Temporal history is bounded (see MAX_ANSWER_CHARS): no real tool name comes
 * near this.
 */
const MAX_TOOL_NAME_CHARS = 128;

const ToolCallSchema = z.object({
  name: z.string().min(1).max(MAX_TOOL_NAME_CHARS),
  arguments: z.record(z.string(), z.unknown()),
});

interface TagSpan {
  /** Offset of the opening tag. */
  open: number;
  /** Content bounds (exclusive end). */
  start: number;
  end: number;
  /** Offset just past the closing tag, or the end of the searched range when the tag is unclosed. */
  after: number;
  closed: boolean;
}

function findTag(text: string, tag: string, from = 0, stopAt: readonly string[] = []): TagSpan | null {
  const openTag = `<${tag}>`;
  const closeTag = `</${tag}>`;
  const open = text.indexOf(openTag, from);
  if (open < 0) return null;
  const start = open + openTag.length;
  const close = text.indexOf(closeTag, start);
  if (close >= 0) return { open, start, end: close, after: close + closeTag.length, closed: true };
  // Unclosed (truncated output): the content runs to the next tag that cannot belong to it, or to the end.
  let end = text.length;
  for (const s of stopAt) {
    const i = text.indexOf(s, start);
    if (i >= 0 && i < end) end = i;
  }
  return { open, start, end, after: end, closed: false };
}

/** Trimmed content of the first `<tag>…</tag>` in `text`; an unclosed tag runs to the end. Null when absent. */
export function extractTag(text: string, tag: string): string | null {
  const span = findTag(text, tag);
  return span ? text.slice(span.start, span.end).trim() : null;
}

/**
 * The last closed `<tag>…</tag>`: the last `</tag>` with a `<tag>` between it and the `</tag>` before it (a `</tag>`
 * mentioned after the real one, "close it with </answer>", has none). Within it, `innermost` takes the last `<tag>`
 * (an answer redrafted: "<answer>Paris … reconsider. <answer>Lyon</answer>"), otherwise the first (a summary that
 * mentions its own tag: "<summary>… the earlier <summary> said C.</summary>", whose facts must all be kept). Null
 * without a closed one.
 */
function lastClosedTag(text: string, tag: string, innermost: boolean): { start: number; end: number } | null {
  const openTag = `<${tag}>`;
  const closeTag = `</${tag}>`;
  let end = text.lastIndexOf(closeTag);
  if (end < 0) return null;
  // The last <tag> before the last </tag> is also the last before every earlier one it precedes (tags cannot
  // overlap): looked up once, so a run of stray closing tags costs one pass, not one pass each.
  const lastOpen = end >= openTag.length ? text.lastIndexOf(openTag, end - openTag.length) : -1;
  while (end >= 0) {
    const previous = end > 0 ? text.lastIndexOf(closeTag, end - 1) : -1;
    const from = previous < 0 ? 0 : previous + closeTag.length;
    if (lastOpen >= from) {
      const open = innermost ? lastOpen : text.indexOf(openTag, from);
      return { start: open + openTag.length, end };
    }
    end = previous;
  }
  return null;
}

/**
 * Content of the last closed `<tag>…</tag>` (the model's final version wins when it drafted more than one; see
 * lastClosedTag for `innermost`); without one, the last `<tag>` runs to the end.
 */
function extractLastTag(text: string, tag: string, innermost: boolean): string | null {
  const closed = lastClosedTag(text, tag, innermost);
  if (closed) return text.slice(closed.start, closed.end).trim();
  const openTag = `<${tag}>`;
  const open = text.lastIndexOf(openTag);
  return open < 0 ? null : text.slice(open + openTag.length).trim();
}

/** Text after the reasoning block; the whole text when there is no `</think>`. */
function afterThink(text: string): string {
  const i = text.lastIndexOf('</think>');
  return i >= 0 ? text.slice(i + '</think>'.length) : text;
}

const ACTION_TAGS = ['<tool_call>', '<answer>', '<report>'] as const;

/** Character range of a tag's content, end exclusive, untrimmed. */
export interface TextSpan {
  start: number;
  end: number;
}

interface ThinkSplit {
  think: TextSpan;
  tagged: boolean;
  /** Offset where the part that may hold report and action starts. */
  rest: number;
}

function splitThink(text: string): ThinkSplit {
  const close = text.indexOf('</think>');
  // The last opening tag before this close: a model that writes past its action may open the next turn's.
  const last = close >= 0 ? text.lastIndexOf('<think>', close) : text.indexOf('<think>');
  // An action ahead of that <think> that the model ran on past was this turn's, its reasoning untagged: the <think>
  // opens a turn the model went on to imagine, whose action must not be taken for this one's. A tag merely mentioned
  // or quoted in untagged reasoning ("no <answer> yet", an example call) is not such an action.
  // The action may follow a report (iterresearch's format) or a mention.
  const ranOn = last >= 0 ? ranOnActionBefore(text, last) : undefined;
  if (ranOn !== undefined) {
    const end = reportJustBefore(text, ranOn) ?? ranOn;
    return { think: { start: 0, end }, tagged: false, rest: end };
  }
  // Otherwise the reasoning opens at the first <think>: a later one before its close is a mention of the tag ("I
  // should use the <think> format"), which must not cut off the reasoning before it.
  const open = last >= 0 ? text.indexOf('<think>') : -1;
  // A missing <think> is common: chat templates often put the opening tag in the prompt.
  const start = open >= 0 ? open + '<think>'.length : 0;
  const tagged = open >= 0 || close >= 0;
  if (close >= 0 && (open < 0 || open < close)) {
    return { think: { start, end: close }, tagged, rest: close + '</think>'.length };
  }
  // No closing tag: reasoning runs to the first action tag, so a truncated or sloppy turn keeps its action.
  const end = firstActionTag(text, start);
  return { think: { start, end }, tagged, rest: end };
}

/**
 * Where the action opens that the turn ran on past into the <think> at `open`: a <tool_call> or <answer> closed by
 * its own closing tag with nothing after it up to `open` but blanks and a <tool_response> the model imagined (a turn
 * written whole, then the next one imagined); undefined when there is none. The earliest opening tag of that kind
 * since the previous closing tag counts, as the first one after a report or a mention in the reasoning does.
 *
 * Only closing tags that end the text before `open`, or stand right before one of its <tool_response>s, can qualify,
 * so this takes one pass: a degenerate turn of thousands of tags must not take seconds.
 */
function ranOnActionBefore(text: string, open: number): number | undefined {
  const headEnd = trimmedEnd(text, open);
  const candidates: number[] = [headEnd];
  // An imagined response after the action: the action's close stands right before one of them.
  if (text.startsWith('</tool_response>', headEnd - '</tool_response>'.length)) {
    for (
      let r = text.indexOf('<tool_response>');
      r >= 0 && r < headEnd;
      r = text.indexOf('<tool_response>', r + 1)
    )
      candidates.push(trimmedEnd(text, r));
  }
  let first: number | undefined;
  for (const kind of ['tool_call', 'answer']) {
    const closeTag = `</${kind}>`;
    // The earliest close of this kind that qualifies gives its earliest action.
    const end = candidates
      .filter((c) => c >= closeTag.length && text.startsWith(closeTag, c - closeTag.length))
      .reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY);
    if (end === Number.POSITIVE_INFINITY) continue;
    const close = end - closeTag.length;
    const previous = text.lastIndexOf(closeTag, close - 1);
    const at = text.indexOf(`<${kind}>`, previous >= 0 ? previous + closeTag.length : 0);
    if (at >= 0 && at < close && (first === undefined || at < first)) first = at;
  }
  return first;
}

/** The offset just past the last non-blank character before `end`. */
function trimmedEnd(text: string, end: number): number {
  let i = end;
  while (i > 0 && /\s/.test(text[i - 1]!)) i--;
  return i;
}

/** Where a closed <report> opens that ends right before `at` (only blanks between); undefined when none does. */
function reportJustBefore(text: string, at: number): number | undefined {
  const close = text.lastIndexOf('</report>', at);
  if (close < 0 || text.slice(close + '</report>'.length, at).trim() !== '') return undefined;
  const open = text.lastIndexOf('<report>', close);
  return open >= 0 ? open : undefined;
}

/** Where the first action tag at or after `from` opens; the text's length when none does. */
function firstActionTag(text: string, from: number): number {
  let first = text.length;
  for (const tag of ACTION_TAGS) {
    const i = text.indexOf(tag, from);
    if (i >= 0 && i < first) first = i;
  }
  return first;
}

/**
 * A body wrapped in a code fence (```json ... ```), unwrapped. No regular expression spans the body: one with
 * whitespace runs around a lazy body took cubic time on an unclosed fence over a run of blanks (garbage output a
 * model does produce), freezing the worker for minutes to hours.
 */
function stripCodeFence(s: string): string {
  const t = s.trim();
  if (t.length < 6 || !t.startsWith('```') || !t.endsWith('```')) return t;
  const opening = /^```[a-zA-Z0-9_-]*/.exec(t)![0].length;
  return t.slice(opening, t.length - 3).trim();
}

/** The JSON object opening at `from`, up to its matching brace (strings and escapes skipped); null if unbalanced. */
function balancedObject(s: string, from: number): string | null {
  let depth = 0;
  let inString = false;
  for (let i = from; i < s.length; i++) {
    const ch = s[i];
    if (inString) {
      if (ch === '\\') i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === '{') depth++;
    else if (ch === '}' && --depth === 0) return s.slice(from, i + 1);
  }
  return null;
}

/** Whether `text` holds a call: a JSON object with a string "name" and "arguments" (among its first few objects). */
function namesACall(text: string): boolean {
  let from = text.indexOf('{');
  for (let n = 0; from >= 0 && n < 4; n++) {
    const object = balancedObject(text, from);
    if (object === null) return false;
    const value = tryJson(object) as { name?: unknown; arguments?: unknown } | undefined;
    if (value && typeof value === 'object' && typeof value.name === 'string' && 'arguments' in value)
      return true;
    from = text.indexOf('{', from + object.length);
  }
  return false;
}

function tryJson(s: string): unknown {
  try {
    return JSON.parse(s) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Why a tool-call body cannot be used, as a fixed phrase (engine error texts vary across Node versions,
 * and this may run in replayed workflow code), or null when it is fine.
 */
export function toolCallProblem(body: string): string | null {
  const r = parseToolCallBody(body);
  return 'problem' in r ? r.problem : null;
}

function parseToolCallBody(body: string): { call: ToolCall } | { problem: string } {
  const cleaned = stripCodeFence(body);
  let value = tryJson(cleaned);
  if (value === undefined) {
    // Text around the object (a stray word, a trailing <tool_response> the model imagined) is tolerated.
    const first = cleaned.indexOf('{');
    const object = first >= 0 ? balancedObject(cleaned, first) : null;
    if (object !== null) value = tryJson(object);
    // Two calls in one block: running the first would drop the second without a word (the reference's parser
    // refuses the block as invalid JSON, and the model is told so).
    if (value !== undefined && object !== null && namesACall(cleaned.slice(first + object.length)))
      return { problem: 'tool call block holds more than one call (one call per <tool_call>)' };
    const last = cleaned.lastIndexOf('}');
    if (value === undefined && first >= 0 && last > first) value = tryJson(cleaned.slice(first, last + 1));
  }
  if (value === undefined) return { problem: 'tool call is not valid JSON' };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { problem: 'tool call is not a JSON object' };
  }
  const obj = value as Record<string, unknown>;
  // OpenAI-style calls carry the arguments as a JSON string; accept them when that string is an object.
  if (typeof obj.arguments === 'string') {
    const inner = tryJson(obj.arguments);
    if (inner !== undefined) value = { ...obj, arguments: inner };
  }
  // Nesting JSON.parse takes but JSON.stringify cannot write back (it recurses): every step that records the call
  // would throw, and its retry regenerate the same turn.
  if (nestingDepth(value) > MAX_TOOL_CALL_DEPTH)
    return { problem: `tool call is nested more than ${MAX_TOOL_CALL_DEPTH} levels deep` };
  const parsed = ToolCallSchema.safeParse(value);
  if (parsed.success) return { call: { name: parsed.data.name, arguments: parsed.data.arguments } };
  if (typeof obj.name !== 'string' || obj.name.length === 0)
    return { problem: 'tool call has no string "name"' };
  if (obj.name.length > MAX_TOOL_NAME_CHARS)
    return { problem: `tool call "name" is longer than ${MAX_TOOL_NAME_CHARS} characters` };
  return { problem: 'tool call has no object "arguments"' };
}

/** Deeper than any tool's arguments need, far below what JSON.stringify's recursion can write (thousands). */
const MAX_TOOL_CALL_DEPTH = 64;

/** How deep arrays and objects nest in a parsed JSON value, counted without recursion. */
function nestingDepth(value: unknown): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > MAX_TOOL_CALL_DEPTH) return deepest;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return deepest;
}

export interface TurnSpans {
  /** The reasoning; without `</think>` it runs to the first action tag (or the end). */
  think: TextSpan;
  /** False when the turn has neither `<think>` nor `</think>`: `think` is then just whatever precedes the action. */
  thinkTagged: boolean;
  /** A `<report>` that comes before the action: closed, or ended by the action's tag. */
  report: TextSpan | null;
  /** The first `<tool_call>` or `<answer>` after the reasoning; an unclosed one stops at a tag that cannot be in it. */
  action: (TextSpan & { kind: 'tool_call' | 'answer'; closed: boolean }) | null;
}

/**
 * Where the parts of one generated turn lie. parseTurn reads the turn through this, and the uncertainty regions
 * come from it, so what is scored as the tool call is what was parsed as one.
 */
export function turnSpans(text: string): TurnSpans {
  const { think, tagged, rest } = splitThink(text);
  // A closed <report> ahead of any action is read first: what it quotes (the last action, a draft answer) is not
  // the action, which comes after it.
  const r = findTag(text, 'report', rest, ['<tool_call>', '<answer>']);
  const actionTagAt = (tag: string) => {
    const i = text.indexOf(tag, rest);
    return i < 0 ? Number.POSITIVE_INFINITY : i;
  };
  const reportFirst = r?.closed && r.open < Math.min(actionTagAt('<tool_call>'), actionTagAt('<answer>'));
  const from = reportFirst ? r.after : rest;
  const call = findTag(text, 'tool_call', from, ['<tool_response>', '</tool_response>', '<answer>']);
  const answer = findTag(text, 'answer', from, ['<tool_call>', '<tool_response>']);
  // The action is whichever comes first, so a <tool_call> after an <answer> is not one; but an <answer> left
  // unclosed before a whole tool call is a mention of the tag ("I won't write <answer> yet"), not an answer that
  // would end the trajectory with the words between them.
  const answerMentioned = answer?.closed === false && call?.closed === true;
  // The same the other way: an unclosed <tool_call> whose words are no call ("I will not use <tool_call> now.")
  // before a whole answer does not hide the answer.
  const callMentioned =
    call?.closed === false &&
    answer?.closed === true &&
    !('call' in parseToolCallBody(text.slice(call.start, call.end).trim()));
  const isCall =
    call !== null && (answer === null || ((call.open < answer.open || answerMentioned) && !callMentioned));
  const first = isCall ? call : answer;
  const action = first
    ? {
        kind: isCall ? ('tool_call' as const) : ('answer' as const),
        start: first.start,
        end: first.end,
        closed: first.closed,
      }
    : null;
  // An unclosed <report> with no action after it is a turn cut off mid-report: not a report, or an iterresearch
  // trajectory would replace its whole report with the fragment. A whole one written right after a whole action (the
  // order swapped, nothing but blanks between them) is still the report; one after anything else may belong to a
  // response or a next round the model went on to imagine.
  const reportAfter =
    r?.closed === true &&
    first?.closed === true &&
    r.open >= first.after &&
    text.slice(first.after, r.open).trim() === '';
  const report =
    r && (reportFirst || reportAfter || (first ? r.open < first.open : r.closed))
      ? { start: r.start, end: r.end }
      : null;
  return { think, thinkTagged: tagged, report, action };
}

/**
 * Parse one generated turn. The action is the first <tool_call> or <answer> after the reasoning; text after it
 * is ignored. `invalid_tool_call.error` is TOOL_CALL_FORMAT_ERROR, i.e. exactly the observation to feed back;
 * `toolCallProblem(raw)` says what was wrong, for the step's record. With `finishReason` 'length' (the turn hit its token limit),
 * an <answer> without its `</answer>` is a cut-off fragment, not an answer: `no_action` with `cutOffAnswer`. One the
 * model ended itself is its answer, unless it is empty (isEmptyAnswer): `no_action` with `emptyAnswer`. An invalid
 * <tool_call> without its end is then marked `cutOff`.
 */
export function parseTurn(text: string, finishReason?: 'stop' | 'length'): ParsedTurn {
  const spans = turnSpans(text);
  const slice = (s: TextSpan) => text.slice(s.start, s.end).trim();
  const think = slice(spans.think);
  const report = spans.report ? slice(spans.report) : undefined;
  const withReport = <T extends object>(t: T): T & { report?: string } =>
    report !== undefined ? { ...t, report } : t;

  const { action } = spans;
  if (action?.kind === 'tool_call') {
    const raw = slice(action);
    const r = parseToolCallBody(raw);
    if ('call' in r) return withReport({ kind: 'tool_call' as const, think, call: r.call });
    const cutOff = !action.closed && finishReason === 'length' ? { cutOff: true as const } : {};
    return withReport({
      kind: 'invalid_tool_call' as const,
      think,
      error: TOOL_CALL_FORMAT_ERROR,
      raw,
      ...cutOff,
    });
  }
  if (action?.kind === 'answer' && !action.closed && finishReason === 'length')
    return withReport({ kind: 'no_action' as const, think, cutOffAnswer: true as const });
  if (action?.kind === 'answer') {
    // An answer re-opened to redraft ('<answer>Paris. Wait…\n<answer>Lyon</answer>'): the last draft is the answer, as
    // parseAnswer reads an integration's. The span (and the regions scored over it) stays the whole of it.
    const whole = slice(action);
    const redraft = whole.lastIndexOf('<answer>');
    const answer = redraft < 0 ? whole : whole.slice(redraft + '<answer>'.length).trim();
    if (isEmptyAnswer(answer))
      return withReport({ kind: 'no_action' as const, think, emptyAnswer: true as const });
    return withReport({ kind: 'answer' as const, think, answer: clipText(answer, MAX_ANSWER_CHARS) });
  }
  // Cut off before it acted: with a chat template that opens <think> in the prompt, all of it may be reasoning.
  const cutOff = finishReason === 'length' ? { cutOff: true as const } : {};
  return withReport({ kind: 'no_action' as const, think, ...cutOff });
}

/**
 * An answer with nothing in it: blank, or punctuation only ('?', '…', '—'). A symbol ('€', '°') can be an answer and
 * is kept, though the votes' normalisation drops it.
 */
export function isEmptyAnswer(answer: string): boolean {
  return /^[\s\p{P}]*$/u.test(answer.normalize('NFKC'));
}

/** The <answer> of a free-form response (e.g. the integration call), reasoning skipped; null when absent. */
export function parseAnswer(text: string): string | null {
  return extractLastTag(afterThink(text), 'answer', true);
}

/**
 * The <summary> of a ReSum summary turn. Like the reference's report extraction, a response that forgot the tags
 * is taken whole (after its reasoning); null only when nothing is left.
 */
export function parseSummary(text: string): string | null {
  return tagOrWhole(text, 'summary');
}

/**
 * Whether a free-form response (a ReSum summary, an aggregation report, the integration's answer, a verdict)
 * finished: not cut off inside its reasoning, and either a closed <tag> or a generation that stopped by itself.
 * Parsing a cut-off one would take a fragment, or reasoning still under way, for the result: a summary that replaces
 * the whole history, an answer the integration had not settled on.
 */
export function outputComplete(text: string, finishReason: 'stop' | 'length', tag: string): boolean {
  // Reasoning opened and never closed, before any <tag>: cut off in it. A <think> inside the tag (a summary of a run
  // that talks about reasoning tags) is the tag's content.
  const think = text.indexOf('<think>');
  if (think >= 0 && !text.includes('</think>')) {
    const tagOpen = text.indexOf(`<${tag}>`);
    if (tagOpen < 0 || think < tagOpen) return false;
  }
  if (lastClosedTag(afterThink(text), tag, false)) return true;
  return finishReason !== 'length';
}

/** The <report> of an aggregation report call; same fallback as parseSummary. */
export function parseReport(text: string): string | null {
  return tagOrWhole(text, 'report');
}

function tagOrWhole(text: string, tag: string): string | null {
  const body = afterThink(text);
  const tagged = extractLastTag(body, tag, false);
  const out = tagged ?? body.trim();
  return out.length > 0 ? out : null;
}

export type Judgement = 'correct' | 'incorrect';

/** Words that negate a verdict word they precede ("not", "isn't", "cannot", "nothing … is"). */
const NEGATION = /^(?:not|no|never|cannot|nothing|neither|nor|hardly|\w*n['’]t)$/;
/** Words after which a new statement begins: "does not match the gold answer and is therefore incorrect". */
const CLAUSE_START = /^(?:and|so|therefore|thus|hence|because)$/;
/** Words that may stand between a negation and the verdict it negates ("not entirely correct", "cannot be correct"). */
const HEDGE =
  /^(?:entirely|fully|completely|quite|exactly|totally|wholly|strictly|necessarily|really|actually|technically|be|been|is|here|considered|deemed|judged)$/;

/**
 * The verdict a verdict word gives, read with the words of its clause before it: negated ("not correct", "not
 * entirely correct") it flips; a negation further off that is not plainly about it ("nothing but the date is
 * correct") makes it unreadable (undefined).
 */
function verdictOf(word: string, before: string): Judgement | undefined {
  const verdict: Judgement = word === 'correct' ? 'correct' : 'incorrect';
  const { clause, cut } = clauseBefore(before);
  // Markdown and quotes off each word ("**not** correct").
  const all = clause.length > 0 ? clause.split(/\s+/).map((w) => w.replace(/[^a-z'’]/g, '')) : [];
  const start = all.map((w) => CLAUSE_START.test(w)).lastIndexOf(true);
  // Cut by the window with no new statement in sight: a negation at its start, out of sight, may be about this word.
  if (cut && start < 0) return undefined;
  const words = all.slice(start + 1);
  const negation = words.map((w) => NEGATION.test(w)).lastIndexOf(true);
  if (negation < 0) return verdict;
  if (!words.slice(negation + 1).every((w) => HEDGE.test(w))) return undefined;
  return verdict === 'correct' ? 'incorrect' : 'correct';
}

/** How far back a verdict word's clause is read: a negation further off is not plainly about it. */
const CLAUSE_WINDOW_CHARS = 400;

/**
 * The clause a verdict word ends: back to the last punctuation mark, or `cut` where that is further back than
 * CLAUSE_WINDOW_CHARS (the window's text, less the word it cuts). Scanned from the end, so a judge that repeats its
 * verdict thousands of times costs each repeat the window, not the text before it.
 */
function clauseBefore(before: string): { clause: string; cut: boolean } {
  const from = Math.max(0, before.length - CLAUSE_WINDOW_CHARS);
  let i = before.length - 1;
  while (i >= from && !'.,;:!?'.includes(before[i]!)) i--;
  if (i >= from || from === 0) return { clause: before.slice(i + 1).trim(), cut: false };
  return { clause: before.slice(from).replace(/^\S*/, '').trim(), cut: true };
}

/**
 * The verdict of the LLM judge: `<judgement>correct|incorrect</judgement>`; without the tag, the standalone
 * "correct"/"incorrect"/"wrong" after the reasoning and its last question. Null when no verdict can be read, or
 * verdicts disagree: the question is then left unscored rather than scored on a guess.
 */
export function parseJudgement(text: string): Judgement | null {
  const body = afterThink(text);
  const tagged = extractLastTag(body, 'judgement', true) ?? extractLastTag(body, 'judgment', true);
  // Without the tag, the verdict follows the last question the judge asked itself ("Is it correct? No, incorrect.").
  const source = (tagged ?? body.slice(body.lastIndexOf('?') + 1)).toLowerCase();
  // "The correct answer is Paris" names the gold answer, not a verdict.
  const verdicts = [...source.matchAll(/(?<!\bthe\s+)\b(?:incorrect|correct|wrong)\b/g)].map((m) =>
    verdictOf(m[0], source.slice(0, m.index)),
  );
  // One verdict only, inside the tag or in the text without one: words that disagree, or one unreadable, give none.
  const first = verdicts[0];
  return first !== undefined && verdicts.every((v) => v === first) ? first : null;
}
