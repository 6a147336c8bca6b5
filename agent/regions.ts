// The functional regions of a turn (reasoning, tool call) and their uncertainty scores, think_ppl, tool_call_ppl and
// all_ppl, which ParallelMuse branches on. Computed where the logprobs are (the pool member); the regions are the
// turn parser's, so this module is kept out of the workflows (the parser validates tool calls with zod).
import { type TextSpan, turnSpans } from './format.js';
import type { RegionScores } from './types.js';

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
 * A token belongs to a region when it holds any of the region's content, so the tag tokens themselves are left
 * out, as in the reference (which averages entropies[open+1 : close] between the single tag tokens); when a
 * tokenizer splits a tag into pieces, the pieces are left out too, and a token that runs from a tag into the
 * content (the first reasoning token with the <think> a backend put back before it) or from the content into the
 * closing tag is kept.
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
    const start = offset;
    // An empty token is placed where it stands.
    const end = Math.max(start + 1, offset + tokens[i]!.token.length);
    const holds = (r: TextSpan | null) => r !== null && start < r.end && end > r.start;
    allSum += e;
    if (holds(think)) {
      thinkSum += e;
      thinkCount++;
    } else if (holds(toolCall)) {
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
