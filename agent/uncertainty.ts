// Token uncertainty and its tally over a trajectory's turns (the region scores themselves are in regions.ts).
// Workflow-safe: pure arithmetic, and no import of the turn parser (and so of zod) into the workflow bundle.
import type { TokenLogprob } from '../inference/types.js';
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
