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
 * CJK punctuation (BrowseComp-zh) normalise the same way. An answer that is nothing but an article is kept as that
 * word: 'A' is a multiple-choice answer, not an empty one.
 */
export function normalizeAnswer(s: string): string {
  const bare = s
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[\p{P}\p{S}]/gu, '');
  return words(bare.replace(ARTICLES, ' ')) || words(bare);
}

export function exactMatch(pred: string | null | undefined, gold: string): boolean {
  if (pred === null || pred === undefined) return false;
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
  uncertaintySum: number;
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

function meanUncertainty(g: Group): number {
  return g.uncertaintySum / g.count;
}

/**
 * Pick one answer among a question's rollouts.
 * - majority: most votes; ties to the lower mean uncertainty, then to the answer given first.
 * - confidence_weighted: largest sum of confidenceWeight; ties to more votes, lower mean uncertainty, first given.
 * - min_uncertainty: the answer of the single least uncertain rollout; ties to the earlier rollout.
 * Rollouts whose answer is null or normalises to nothing are excluded and listed.
 */
export function aggregate(name: AggregatorName, candidates: readonly AggregateCandidate[]): AggregateResult {
  const excluded: string[] = [];
  const groups = new Map<string, Group>();
  let best: { u: number; key: string } | null = null;

  for (let index = 0; index < candidates.length; index++) {
    const c = candidates[index]!;
    const key = c.answer === null ? '' : normalizeAnswer(c.answer);
    if (c.answer === null || key === '') {
      excluded.push(c.rolloutId);
      continue;
    }
    const u = rankable(c.uncertainty);
    let g = groups.get(key);
    if (!g) {
      g = { answer: c.answer.trim(), first: index, count: 0, weight: 0, uncertaintySum: 0 };
      groups.set(key, g);
    }
    g.count++;
    g.weight += confidenceWeight(c.uncertainty);
    g.uncertaintySum += u;
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
