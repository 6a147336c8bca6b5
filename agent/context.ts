// Context policies: what the model sees at each step of a trajectory. One object per policy, chosen by name.
// Workflow-safe: states are plain data and every transition returns a new state.

import { clipText } from './clip.js';
import {
  iterresearchSystemPrompt,
  RESUM_SUMMARY_SYSTEM_PROMPT,
  reactSystemPrompt,
  renderTrajectory,
} from './prompts.js';
import type { ChatMessage, ContextPolicyName, ParsedTurn } from './types.js';

export interface ContextStep {
  /** react/resum: the raw assistant turn, byte for byte (prefix caches depend on it). iterresearch: the action only. */
  turn: string;
  observation?: string;
}

export interface ContextState {
  question: string;
  /** react: every step; resum: the steps since the last summary; iterresearch: the last step only. */
  steps: ContextStep[];
  /** iterresearch: the evolving report M_t. */
  report?: string;
  /** resum: the latest summary. */
  summary?: string;
  /** Turns taken so far (summary turns not counted). */
  round: number;
}

export interface ContextPolicy {
  readonly name: ContextPolicyName;
  /** Whether the policy has a summary turn (resum): a full window is then a reason to summarise, not to stop. */
  readonly summarises: boolean;
  /** Whether buildMessages cuts the prompt to a budget (iterresearch's last observation); the others never do. */
  readonly cutsToFit: boolean;
  initial(question: string): ContextState;
  /**
   * The prompt of the next turn. With `maxPromptTokens`, iterresearch cuts its last observation until the prompt
   * fits (its context is meant to stay bounded at any depth: one long page must not end a 2048-step run); the other
   * policies carry their history whole.
   */
  buildMessages(state: ContextState, maxPromptTokens?: number): ChatMessage[];
  advance(
    state: ContextState,
    turn: ParsedTurn,
    rawTurn: string,
    observation: string | undefined,
  ): ContextState;
  /**
   * resum only: true when the next prompt's tokens pass the threshold (reference: 90% of the window), or when a
   * full turn would no longer fit beside it: with a large turn budget the window runs out below the threshold.
   */
  wantsSummary(promptTokens: number, contextWindow: number, maxTokensPerTurn: number): boolean;
  /**
   * resum only. With `maxPromptTokens`, the longest tool responses are cut (each to the same length, marked; the
   * earlier ones first, the latest kept whole where that fits) until the prompt fits: one large observation can take
   * the history past the window in a single step, and the summary
   * call must still fit to let the trajectory go on.
   */
  summaryMessages(state: ContextState, maxPromptTokens?: number): ChatMessage[];
  /** resum only: history replaced by question + summary. */
  applySummary(state: ContextState, summary: string): ContextState;
}

export interface ContextPolicyOptions {
  /** Appended to the system prompt as "Current date: …"; passed in because workflow code may not read clocks. */
  date?: string;
  /** resum: fraction of the context window at which a summary turn is due. Default 0.9, as in the reference. */
  summaryThreshold?: number;
}

export const DEFAULT_SUMMARY_THRESHOLD = 0.9;

/** The tokenizer-free estimate used before a call (4 characters a token); the server's count comes back in usage. */
export function estimateTokens(messages: readonly ChatMessage[]): number {
  let chars = 0;
  for (const m of messages) chars += m.content.length + 16;
  return Math.ceil(chars / CHARS_PER_ESTIMATED_TOKEN);
}

export const CHARS_PER_ESTIMATED_TOKEN = 4;

/**
 * Estimated prompt tokens a call may send beside `maxTokens` of output: the window's room converted with the
 * trajectory's learned ratio (server tokens per estimated token), less a margin, because a rendered history (the
 * summary and report prompts) tokenizes a little differently from the turns the ratio was learned on.
 */
export function promptBudgetTokens(contextWindow: number, maxTokens: number, promptTokenRatio = 1): number {
  return Math.floor((RENDERED_PROMPT_MARGIN * (contextWindow - maxTokens)) / promptTokenRatio);
}

const RENDERED_PROMPT_MARGIN = 0.9;

/**
 * Estimated prompt tokens a turn may send beside a full turn of output (`maxTokens`): the window's room converted
 * with the trajectory's learned ratio. A policy that can cut its prompt (iterresearch's last observation) cuts it to
 * this, and a prompt fits when its estimate is at most this. Compared in estimated tokens: converted back to server
 * tokens, a prompt cut to exactly the budget can round to one token over (floor(x / r) * r reads a hair above x).
 */
export function turnBudgetTokens(contextWindow: number, maxTokens: number, promptTokenRatio = 1): number {
  return Math.floor((contextWindow - maxTokens) / promptTokenRatio);
}

/**
 * The text less every closed <think>…</think> block, in one pass: a regex for it rescans to the end from each
 * unclosed <think>, and a degenerate turn of tens of thousands of them would hold the worker for seconds.
 */
function withoutClosedThinks(text: string): string {
  let out = '';
  let from = 0;
  for (;;) {
    const open = text.indexOf('<think>', from);
    const close = open < 0 ? -1 : text.indexOf('</think>', open + '<think>'.length);
    // No close after this open means none after any later open either: the rest stays as it is.
    if (close < 0) return out + text.slice(from);
    out += text.slice(from, open);
    from = close + '</think>'.length;
  }
}

export function formatToolResponse(observation: string): string {
  return `<tool_response>\n${observation}\n</tool_response>`;
}

/**
 * The action part of a turn as iterresearch shows it back to the model: the tool call re-serialised (so
 * whitespace and fences the model added do not accumulate), a malformed call as written, the answer, or for a
 * turn without action its text minus reasoning and report.
 */
export function actionText(turn: ParsedTurn, rawTurn: string): string {
  switch (turn.kind) {
    case 'tool_call':
      return `<tool_call>\n${JSON.stringify({ name: turn.call.name, arguments: turn.call.arguments })}\n</tool_call>`;
    case 'invalid_tool_call':
      return `<tool_call>\n${turn.raw}\n</tool_call>`;
    case 'answer':
      return `<answer>${turn.answer}</answer>`;
    case 'no_action': {
      // Cut off with no </think>: reasoning whose <think> the chat template opened in the prompt, not an action.
      if (turn.cutOff && !rawTurn.includes('</think>')) return '(no action)';
      const rest = withoutClosedThinks(rawTurn)
        .replace(/^[\s\S]*?<\/think>/, '')
        // A turn cut off inside its reasoning: the unfinished thought is not an action to show again.
        .replace(/<think>[\s\S]*$/, '')
        .replace(/<report>[\s\S]*?(<\/report>|$)/g, '')
        .trim();
      return rest.length > 0 ? rest : '(no action)';
    }
  }
}

function historyMessages(steps: readonly ContextStep[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const s of steps) {
    out.push({ role: 'assistant', content: s.turn });
    if (s.observation !== undefined) out.push({ role: 'user', content: formatToolResponse(s.observation) });
  }
  return out;
}

function notSummarising(name: ContextPolicyName): Error {
  return new Error(`context policy '${name}' has no summary turn`);
}

function appendStep(state: ContextState, rawTurn: string, observation: string | undefined): ContextState {
  const step: ContextStep = observation !== undefined ? { turn: rawTurn, observation } : { turn: rawTurn };
  return { ...state, steps: [...state.steps, step], round: state.round + 1 };
}

function reactPolicy(opts: ContextPolicyOptions): ContextPolicy {
  const system = reactSystemPrompt(opts.date);
  return {
    name: 'react',
    summarises: false,
    cutsToFit: false,
    initial: (question) => ({ question, steps: [], round: 0 }),
    buildMessages: (state) => [
      { role: 'system', content: system },
      { role: 'user', content: state.question },
      ...historyMessages(state.steps),
    ],
    advance: (state, _turn, rawTurn, observation) => appendStep(state, rawTurn, observation),
    wantsSummary: () => false,
    summaryMessages: () => {
      throw notSummarising('react');
    },
    applySummary: () => {
      throw notSummarising('react');
    },
  };
}

function resumPolicy(opts: ContextPolicyOptions): ContextPolicy {
  const system = reactSystemPrompt(opts.date);
  const threshold = opts.summaryThreshold ?? DEFAULT_SUMMARY_THRESHOLD;
  if (!(threshold > 0 && threshold <= 1))
    throw new RangeError(`summaryThreshold must be in (0, 1], got ${threshold}`);
  return {
    name: 'resum',
    summarises: true,
    cutsToFit: false,
    initial: (question) => ({ question, steps: [], round: 0 }),
    buildMessages: (state) => [
      { role: 'system', content: system },
      {
        role: 'user',
        content:
          state.summary !== undefined
            ? `${state.question}\n\n<summary>\n${state.summary}\n</summary>`
            : state.question,
      },
      ...historyMessages(state.steps),
    ],
    advance: (state, _turn, rawTurn, observation) => appendStep(state, rawTurn, observation),
    wantsSummary: (promptTokens, contextWindow, maxTokensPerTurn) =>
      promptTokens >= threshold * contextWindow || promptTokens + maxTokensPerTurn > contextWindow,
    summaryMessages: (state, maxPromptTokens) => {
      // An earlier summary is the start of the history, so each summary builds on the previous one.
      const earlier = state.summary !== undefined ? `## Summary of earlier work\n${state.summary}\n\n` : '';
      const messages = (
        maxObservationChars?: number,
        maxChars?: number,
        keepLatestObservation = false,
      ): ChatMessage[] => [
        { role: 'system', content: RESUM_SUMMARY_SYSTEM_PROMPT },
        {
          role: 'user',
          content: `<question>\n${state.question}\n</question>\n<history>\n${earlier}${renderTrajectory(state.steps, { maxObservationChars, maxChars, keepLatestObservation })}\n</history>`,
        },
      ];
      const full = messages();
      if (maxPromptTokens === undefined || estimateTokens(full) <= maxPromptTokens) return full;
      const fits = (m: ChatMessage[]) => estimateTokens(m) <= maxPromptTokens;
      const longest = Math.max(0, ...state.steps.map((st) => st.observation?.length ?? 0));
      // The earlier tool responses are cut first: the latest is the one no turn has read yet (often the page that
      // took the history past the threshold), and the summary replaces the history, so what it loses is lost.
      const sparing = (cap: number) => fits(messages(cap, undefined, true));
      if (sparing(0)) return messages(largestFitting(longest, sparing), undefined, true);
      // The longest cap on every tool response that fits; when none does, every response is cut to its marker.
      const cut = messages(largestFitting(longest, (cap) => fits(messages(cap))));
      if (fits(cut)) return cut;
      // Even with every response cut, the turns alone are too long (long reasoning): the middle steps go as well,
      // the first (the plan) and the latest kept, as the report prompt does.
      const whole = renderTrajectory(state.steps, { maxObservationChars: 0 }).length;
      return messages(
        0,
        largestFitting(whole, (chars) => fits(messages(0, chars))),
      );
    },
    applySummary: (state, summary) => ({ ...state, steps: [], summary }),
  };
}

/** The largest n in [0, hi] for which `fits(n)` holds, fits being monotone; 0 when none does. */
function largestFitting(hi: number, fits: (n: number) => boolean): number {
  let lo = 0;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function iterresearchPolicy(opts: ContextPolicyOptions): ContextPolicy {
  const system = iterresearchSystemPrompt(opts.date);
  return {
    name: 'iterresearch',
    summarises: false,
    cutsToFit: true,
    initial: (question) => ({ question, steps: [], report: '', round: 0 }),
    buildMessages: (state, maxPromptTokens) => {
      const last = state.steps[state.steps.length - 1];
      const messages = (observation: string): ChatMessage[] => {
        let content = `<question>\n${state.question}\n</question>\n<report>\n${state.report ?? ''}\n</report>`;
        if (last) {
          content += `\n<last_action>\n${last.turn}\n</last_action>\n<last_observation>\n${observation}\n</last_observation>`;
        }
        return [
          { role: 'system', content: system },
          { role: 'user', content },
        ];
      };
      const observation = last?.observation ?? '';
      const fits = (m: ChatMessage[]) =>
        maxPromptTokens === undefined || estimateTokens(m) <= maxPromptTokens;
      const whole = messages(observation);
      if (fits(whole)) return whole;
      const cut = (chars: number) => messages(clipText(observation, chars));
      return cut(largestFitting(observation.length, (chars) => fits(cut(chars))));
    },
    // The state never grows: one step and one report, whatever the depth.
    advance: (state, turn, rawTurn, observation) => {
      const action = actionText(turn, rawTurn);
      const step: ContextStep = observation !== undefined ? { turn: action, observation } : { turn: action };
      return {
        question: state.question,
        steps: [step],
        // An empty <report> is not the model clearing what it established: the report it had stays.
        report: turn.report?.trim() ? turn.report : (state.report ?? ''),
        round: state.round + 1,
      };
    },
    wantsSummary: () => false,
    summaryMessages: () => {
      throw notSummarising('iterresearch');
    },
    applySummary: () => {
      throw notSummarising('iterresearch');
    },
  };
}

export function contextPolicy(name: ContextPolicyName, opts: ContextPolicyOptions = {}): ContextPolicy {
  switch (name) {
    case 'react':
      return reactPolicy(opts);
    case 'resum':
      return resumPolicy(opts);
    case 'iterresearch':
      return iterresearchPolicy(opts);
    default:
      throw new Error(`unknown context policy '${String(name)}'`);
  }
}
