// Token uncertainty and the functional-region scores ParallelMuse branches on.
// Workflow-safe: pure arithmetic.
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

export interface CharRange {
  start: number;
  end: number;
}

/** Content range of the first `<tag>…</tag>` at or after `from`; unclosed runs to `limit`. */
function contentRange(text: string, tag: string, from: number, limit: number): CharRange | null {
  const open = text.indexOf(`<${tag}>`, from);
  if (open < 0) return null;
  const start = open + tag.length + 2;
  const close = text.indexOf(`</${tag}>`, start);
  return { start, end: close >= 0 ? close : limit };
}

/**
 * Character ranges of the reasoning and tool-call regions of a turn.
 *
 * Reasoning: after `<think>` (or from the start when the template put `<think>` in the prompt) up to `</think>`;
 * without `</think>` it runs to the first `<tool_call>`/`<answer>`/`<report>` or the end, as in parseTurn.
 * Tool call: the first `<tool_call>` after the reasoning up to `</tool_call>` (or the end when truncated), so a
 * tag quoted inside the reasoning does not count. Exported for the simulator and tests.
 */
export function regionRanges(text: string): { think: CharRange | null; toolCall: CharRange | null } {
  const thinkOpen = text.indexOf('<think>');
  const thinkClose = text.indexOf('</think>');
  let think: CharRange | null = null;
  let thinkEnd = 0;
  if (thinkClose >= 0 && (thinkOpen < 0 || thinkOpen < thinkClose)) {
    think = { start: thinkOpen >= 0 ? thinkOpen + '<think>'.length : 0, end: thinkClose };
    thinkEnd = thinkClose + '</think>'.length;
  } else if (thinkOpen >= 0) {
    const start = thinkOpen + '<think>'.length;
    let end = text.length;
    for (const tag of ['<tool_call>', '<answer>', '<report>']) {
      const i = text.indexOf(tag, start);
      if (i >= 0 && i < end) end = i;
    }
    think = { start, end };
    thinkEnd = end;
  }
  const toolCall = contentRange(text, 'tool_call', thinkEnd, text.length);
  return { think, toolCall };
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
  return meanUncertainty(steps.reduce(addTurnUncertainty, emptyUncertaintyTally()));
}
