// Token uncertainty and the functional-region scores ParallelMuse branches on.
// Workflow-safe: pure arithmetic; the regions come from the turn format's pure string handling.
import type { TokenLogprob } from '../inference/types.js';
import { type TextSpan, turnSpans } from './format.js';
import type { RegionScores } from './types.js';

/**
 * Shannon entropy (nats) of the top-k alternatives of one token after renormalising their probabilities to sum
 * to 1: H = -Σ p̂ᵢ ln p̂ᵢ with p̂ᵢ = exp(lᵢ) / Σⱼ exp(lⱼ).
 *
 * The reference computes -Σ p̂ᵢ lᵢ with the *unnormalised* log-probabilities, which equals H - ln Σⱼ exp(lⱼ):
 * it adds the mass missing from the top-k to the entropy. Muse uses the entropy proper; both grow with the
 * spread of the alternatives, and the proper one is bounded by ln k, so scores are comparable across servers
 * that truncate differently.
 *
 * Entries of -Infinity (probability 0) count as absent; NaN entries are ignored. Fewer than two usable
 * alternatives give 0.
 */
export function topKEntropy(topLogprobs: readonly number[]): number {
  let max = Number.NEGATIVE_INFINITY;
  for (const l of topLogprobs) if (Number.isFinite(l) && l > max) max = l;
  if (!Number.isFinite(max)) return 0;
  // Log-sum-exp shifted by the maximum: raw exp() of very negative logprobs underflows to 0 otherwise.
  let z = 0;
  for (const l of topLogprobs) if (Number.isFinite(l)) z += Math.exp(l - max);
  const logZ = Math.log(z);
  let h = 0;
  for (const l of topLogprobs) {
    if (!Number.isFinite(l)) continue;
    const logP = l - max - logZ;
    h -= Math.exp(logP) * logP;
  }
  // Rounding can leave -1e-17 for a single alternative.
  return Math.max(h, 0);
}

/** One top-k entropy per generated token. */
export function tokenEntropies(tokens: readonly TokenLogprob[]): Float32Array<ArrayBuffer> {
  const out = new Float32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) out[i] = topKEntropy(tokens[i]!.topLogprobs);
  return out;
}

/**
 * Character ranges of the reasoning and tool-call regions of a turn, exactly as parseTurn reads them (see
 * turnSpans): a tool call counts only when it is the turn's action (not one quoted in the reasoning or one after
 * an <answer>), and an unclosed one stops where parseTurn stops it. Exported for tests.
 */
export function regionRanges(text: string): { think: TextSpan | null; toolCall: TextSpan | null } {
  const { think, thinkTagged, action } = turnSpans(text);
  return {
    // Without <think> or </think>, parseTurn keeps the text before the action as think only so nothing is lost;
    // nothing marks it as reasoning (the reference scores between the think tags), so it has no think_ppl.
    think: thinkTagged ? { start: think.start, end: think.end } : null,
    toolCall: action?.kind === 'tool_call' ? { start: action.start, end: action.end } : null,
  };
}

function ppl(sum: number, count: number): number | null {
  return count > 0 ? Math.exp(sum / count) : null;
}

/**
 * exp(mean entropy) over the tokens of each region of one turn.
 *
 * A token belongs to a region when its first character lies inside the region's content, so the tag tokens
 * themselves are left out, as in the reference (which averages entropies[open+1 : close] between the single
 * tag tokens); when a tokenizer splits a tag into pieces, the pieces that start inside the tag are left out too,
 * and a token that starts in the content but runs into the closing tag is kept.
 *
 * Unlike the reference, which gives every turn without a tool call -1 for all three scores, an answer turn keeps
 * its think_ppl and all_ppl (tool_call_ppl is null): trajectory-level uncertainty wants the final turn too.
 * Branch selection leaves answer turns out by other means (see selectBranchSteps).
 *
 * Offsets come from the tokens themselves; when they do not concatenate to `text` (a server that post-processes
 * its text), the regions are looked up in the concatenated tokens.
 */
export function regionScores(
  text: string,
  tokens: readonly { token: string }[],
  entropies: Float32Array,
): RegionScores {
  const n = Math.min(tokens.length, entropies.length);
  let joined = '';
  for (let i = 0; i < n; i++) joined += tokens[i]!.token;
  const source = joined === text ? text : joined;
  const { think, toolCall } = regionRanges(source);

  let allSum = 0;
  let thinkSum = 0;
  let thinkCount = 0;
  let toolSum = 0;
  let toolCount = 0;
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const e = entropies[i]!;
    allSum += e;
    if (think && offset >= think.start && offset < think.end) {
      thinkSum += e;
      thinkCount++;
    } else if (toolCall && offset >= toolCall.start && offset < toolCall.end) {
      toolSum += e;
      toolCount++;
    }
    offset += tokens[i]!.token.length;
  }
  return {
    think_ppl: ppl(thinkSum, thinkCount),
    tool_call_ppl: ppl(toolSum, toolCount),
    all_ppl: ppl(allSum, n),
  };
}

/**
 * The running form of trajectoryUncertainty: the sum and count of the turns' finite all_ppl scores. A workflow
 * adds each turn as it is taken, so the uncertainty covers every turn however long the trajectory (the per-step
 * list it keeps for branching stops at a cap). Both fields stay finite, so the tally survives JSON.
 */
export interface UncertaintyTally {
  allPplSum: number;
  scoredTurns: number;
}

export const emptyUncertaintyTally = (): UncertaintyTally => ({ allPplSum: 0, scoredTurns: 0 });

/** The tally with one more turn; a turn without a finite all_ppl leaves it unchanged. */
export function addTurnUncertainty(tally: UncertaintyTally, scores: RegionScores): UncertaintyTally {
  const p = scores.all_ppl;
  if (p === null || !Number.isFinite(p)) return tally;
  return { allPplSum: tally.allPplSum + p, scoredTurns: tally.scoredTurns + 1 };
}

/** Mean all_ppl of a tally; Infinity when no turn has a score, so unscored trajectories rank last. */
export function meanUncertainty(tally: UncertaintyTally): number {
  return tally.scoredTurns > 0 ? tally.allPplSum / tally.scoredTurns : Number.POSITIVE_INFINITY;
}

/**
 * Mean all_ppl over the turns that have one: the trajectory-level uncertainty the min_uncertainty and
 * confidence_weighted aggregators rank by. Infinity when no turn has a score.
 */
export function trajectoryUncertainty(steps: readonly RegionScores[]): number {
  return meanUncertainty(tallyTurns(steps));
}

/** The tally of a list of turns' scores (a branch's reused prefix, say). */
export function tallyTurns(steps: readonly RegionScores[]): UncertaintyTally {
  return steps.reduce(addTurnUncertainty, emptyUncertaintyTally());
}
