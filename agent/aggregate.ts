// Answer normalisation, exact match, and the vote baselines offered beside ParallelMuse's report integration.
// Workflow-safe: pure functions.
import { clipToShare } from './clip.js';

/** The articles SQuAD drops, as whole words in any script: the 'A' of 'A型血' or the 'a' ending 'Peña' stays. */
const ARTICLES = /(?<![\p{L}\p{N}])(a|an|the)(?![\p{L}\p{N}])/gu;

const words = (s: string) =>
  s
    .split(/\s+/u)
    .filter((w) => w.length > 0)
    .join(' ');

/**
 * SQuAD-style normalisation: lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace.
 * NFKC first and Unicode punctuation/symbol classes instead of ASCII string.punctuation, so full-width forms and
 * CJK punctuation (BrowseComp-zh) normalise the same way. Mathematical symbols are kept: they carry the answer
 * ('x ≥ 3' is not 'x ≤ 3', 'x > 3' is not 'x < 3', and 'x ≥ 3' is 'x >= 3'); a minus sign or dash is read as the
 * hyphen, which goes with the punctuation. An answer that is one number is compared as a number, as GAIA's scorer
 * does: '-5' is not '5', '3.5' is not '35', and '1,000', '$1000' and '1000.0' are one answer; a number within a
 * longer answer keeps its sign, decimal point and fraction slash (see partOfNumber) and loses its thousands commas.
 * An answer that is nothing but an article is kept as that word: 'A' is a multiple-choice answer, not an empty one.
 */
export function normalizeAnswer(s: string): string {
  const number = numberIn(s);
  if (number !== undefined) return number;
  const bare = canonical(s)
    .replace(THOUSANDS_COMMA, '')
    .replace(/[≥≤]/gu, (c) => (c === '≥' ? '>=' : '<='))
    .replace(/[\p{P}\p{S}]/gu, (c, at: number, text: string) =>
      /\p{Sm}/u.test(c) || partOfNumber(c, text[at - 1], text[at + 1]) ? c : '',
    );
  return words(bare.replace(ARTICLES, ' ')) || words(bare);
}

/** A comma between thousands groups ('1,000 km' is '1000 km'). */
const THOUSANDS_COMMA = /(?<=\d),(?=\d{3}(?!\d))/gu;
const DIGIT = /\p{Nd}/u;
const LETTER_OR_DIGIT = /[\p{L}\p{N}]/u;

/**
 * Punctuation that makes a number within a longer answer what it is, so it is kept: a decimal point, decimal comma or
 * fraction slash between digits ('3.5 km' is not '35 km', '1/2' not '12'), and a sign before a number that does not
 * follow a word or another number ('-5 °C' is not '5 °C'; the hyphen of 'COVID-19' or '2024-05-01' still goes).
 */
function partOfNumber(c: string, before: string | undefined, after: string | undefined): boolean {
  if (after === undefined || !DIGIT.test(after)) return false;
  if (c === '.' || c === ',' || c === '/') return before !== undefined && DIGIT.test(before);
  return c === '-' && (before === undefined || !LETTER_OR_DIGIT.test(before));
}

/** NFKC, lowercase, every minus sign or dash as the hyphen-minus, and the fraction slash (NFKC's ½) as '/'. */
function canonical(s: string): string {
  return s
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[\u2010-\u2015\u2212\ufe58\ufe63\uff0d]/gu, '-')
    .replace(/\u2044/gu, '/');
}

/**
 * Whether an answer says anything: a letter, a digit or another character beyond punctuation, symbols and spaces.
 * An answer of symbols alone ('—', '∞') counts as none in the votes, as it always has.
 */
export function hasAnswerText(s: string): boolean {
  return words(canonical(s).replace(/[\p{P}\p{S}]/gu, '')) !== '';
}

/**
 * The canonical form of an answer that is one number (a sign, thousands commas, a currency sign or a percent sign
 * allowed), else undefined. Numbers of more than 15 significant digits (an ISBN, a phone number) stay text: as
 * doubles two of them could compare equal.
 */
function numberIn(s: string): string | undefined {
  const m = NUMBER.exec(canonical(s).trim());
  if (!m || (m[1] && m[2]) || (m[3] === undefined && m[4] === undefined)) return undefined;
  const digits = `${m[3] ?? ''}${m[4] ?? ''}`.replace(/[,.]/gu, '').replace(/^0+|0+$/gu, '');
  if (digits.length > 15) return undefined;
  const n = Number(`${m[1] || m[2]}${(m[3] ?? '0').replace(/,/gu, '')}${m[4] ?? ''}`);
  return String(n === 0 ? 0 : n);
}
/**
 * A sign (before or after a currency sign), the integer part (thousands commas in threes after a non-zero lead, or
 * none), the fraction, a percent sign, a full stop.
 */
const NUMBER = /^([-+]?)[$€£¥]?([-+]?)([1-9]\d{0,2}(?:,\d{3})+|\d+)?(\.\d+)?%?\.?$/u;

export function exactMatch(pred: string | null | undefined, gold: string): boolean {
  if (pred === null || pred === undefined) return false;
  // Two answers of symbols alone normalise alike whatever they were ('∞' and '∅'): compare what was written.
  if (!hasAnswerText(pred) || !hasAnswerText(gold)) return words(canonical(pred)) === words(canonical(gold));
  return normalizeAnswer(pred) === normalizeAnswer(gold);
}

export type AggregatorName = 'majority' | 'confidence_weighted' | 'min_uncertainty';

export interface AggregateCandidate {
  rolloutId: string;
  answer: string | null;
  /** Trajectory uncertainty (trajectoryUncertainty: mean all_ppl, ≥ 1); lower is more confident. */
  uncertainty: number;
}

export interface AggregateResult {
  /** The chosen answer as the first rollout that gave it wrote it (trimmed). */
  answer: string | null;
  /** Answered rollouts whose answer normalises to the chosen one. */
  support: number;
  /** Rollouts without a usable answer, in input order. */
  excluded: string[];
  reason?: string;
}

interface Group {
  answer: string;
  first: number;
  count: number;
  weight: number;
  /** Over the votes whose uncertainty is known: one unknown does not make the whole group the least confident. */
  uncertaintySum: number;
  scored: number;
}

/** Unknown uncertainty (NaN, ±Infinity, negative) ranks as the least confident. */
function rankable(u: number): number {
  return Number.isFinite(u) && u >= 0 ? u : Number.POSITIVE_INFINITY;
}

/**
 * Weight of one vote: 1/uncertainty. With uncertainty = exp(mean entropy) this is exp(-mean entropy), the
 * geometric-mean probability mass of the model's choices, in (0, 1]. Unknown uncertainty weighs 0, and 0
 * (impossible for a perplexity) is clamped so one vote cannot weigh infinitely.
 */
export function confidenceWeight(uncertainty: number): number {
  const u = rankable(uncertainty);
  if (u === Number.POSITIVE_INFINITY) return 0;
  return 1 / Math.max(u, 1e-9);
}

/** Mean of the group's known uncertainties; unknown (ranked least confident) when none is known. */
function meanUncertainty(g: Group): number {
  return g.scored > 0 ? g.uncertaintySum / g.scored : Number.POSITIVE_INFINITY;
}

/**
 * Pick one answer among a question's rollouts.
 * - majority: most votes; ties to the lower mean uncertainty, then to the answer given first.
 * - confidence_weighted: largest sum of confidenceWeight; ties to more votes, lower mean uncertainty, first given.
 * - min_uncertainty: the answer of the single least uncertain rollout; ties to the earlier rollout.
 * Rollouts whose answer is null or says nothing (hasAnswerText) are excluded and listed.
 */
export function aggregate(name: AggregatorName, candidates: readonly AggregateCandidate[]): AggregateResult {
  const excluded: string[] = [];
  const groups = new Map<string, Group>();
  let best: { u: number; key: string } | null = null;

  for (let index = 0; index < candidates.length; index++) {
    const c = candidates[index]!;
    if (c.answer === null || !hasAnswerText(c.answer)) {
      excluded.push(c.rolloutId);
      continue;
    }
    const key = normalizeAnswer(c.answer);
    const u = rankable(c.uncertainty);
    let g = groups.get(key);
    if (!g) {
      g = { answer: c.answer.trim(), first: index, count: 0, weight: 0, uncertaintySum: 0, scored: 0 };
      groups.set(key, g);
    }
    g.count++;
    g.weight += confidenceWeight(c.uncertainty);
    if (u !== Number.POSITIVE_INFINITY) {
      g.uncertaintySum += u;
      g.scored++;
    }
    if (best === null || u < best.u) best = { u, key };
  }

  if (best === null) return { answer: null, support: 0, excluded, reason: 'no answered trajectory' };

  let winner: Group;
  if (name === 'min_uncertainty') {
    winner = groups.get(best.key)!;
  } else {
    const order = [...groups.values()];
    const cmp =
      name === 'majority'
        ? (a: Group, b: Group) =>
            b.count - a.count || meanUncertainty(a) - meanUncertainty(b) || a.first - b.first
        : (a: Group, b: Group) =>
            b.weight - a.weight ||
            b.count - a.count ||
            meanUncertainty(a) - meanUncertainty(b) ||
            a.first - b.first;
    // Infinity - Infinity (two groups of unknown uncertainty) is NaN, which || passes over like a tie.
    order.sort(cmp);
    winner = order[0]!;
  }
  return { answer: winner.answer, support: winner.count, excluded };
}

/**
 * Characters the rollout records' predictions, and apart from them their errors, may take in the question's result
 * together. The result is one payload, which Temporal refuses past 2 MB (the question would end with its work
 * lost): N answers of up to MAX_ANSWER_CHARS (clip.ts; three bytes a character in CJK) could pass that from N of
 * about 90. Each rollout's own result keeps its whole answer; the votes and the integration read the whole answers.
 */
const RESULT_PREDICTION_CHARS = 200_000;
const RESULT_ERROR_CHARS = 100_000;
/** Kept of each clipped text, however many rollouts share the limit. */
const RESULT_MIN_CHARS = 100;

/**
 * A question's rollout records with their predictions and errors clipped to share the result's limits (short ones
 * stay whole).
 */
export function withinResultLimit<R extends { prediction: string | null; error?: string }>(
  rollouts: R[],
): R[] {
  const predictions = clipToShare(
    rollouts.map((r) => r.prediction ?? ''),
    RESULT_PREDICTION_CHARS,
    RESULT_MIN_CHARS,
  );
  const errors = withinErrorLimit(rollouts.map((r) => r.error ?? ''));
  return rollouts.map((r, i) => ({
    ...r,
    prediction: r.prediction === null ? null : predictions[i]!,
    ...(r.error !== undefined ? { error: errors[i]! } : {}),
  }));
}

/** Error texts of one question's result (its rollouts', its failed report calls') clipped to share a limit. */
export function withinErrorLimit(errors: string[]): string[] {
  return clipToShare(errors, RESULT_ERROR_CHARS, RESULT_MIN_CHARS);
}
