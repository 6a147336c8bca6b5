// Core agent vocabulary shared by workflows, activities, the simulator and the CLI.
// Workflow-safe: types only, no runtime imports.

export type Role = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: Role;
  content: string;
}

/** exp(mean top-k entropy) over a functional region of one generated turn; null when the region is empty. */
export interface RegionScores {
  think_ppl: number | null;
  tool_call_ppl: number | null;
  all_ppl: number | null;
}

export interface TokenUsage {
  promptTokens: number;
  /** Prompt tokens the server served from its prefix (KV) cache, when it reports them. */
  cachedPromptTokens: number;
  completionTokens: number;
}

export interface ToolCall {
  name: string;
  arguments: Record<string, unknown>;
}

/** One model turn after parsing. `report` is set by policies whose turns carry an evolving report (iterresearch). */
export type ParsedTurn =
  | { kind: 'tool_call'; think: string; call: ToolCall; report?: string }
  | { kind: 'answer'; think: string; answer: string; report?: string }
  /**
   * A <tool_call> block that is not valid JSON with "name" and "arguments": the trajectory goes on with an error
   * observation. `cutOff`: the token limit ended it before </tool_call>, as opposed to a call the model got wrong.
   */
  | { kind: 'invalid_tool_call'; think: string; error: string; raw: string; report?: string; cutOff?: true }
  /**
   * Neither a tool call nor an answer (garbage or truncated output). `cutOffAnswer`: an <answer> the token limit cut
   * off before its end, a fragment that must not end the trajectory as its prediction. `emptyAnswer`: an <answer>
   * with nothing in it (blank, or punctuation only), which would spend the rollout on no prediction.
   */
  | {
      kind: 'no_action';
      think: string;
      report?: string;
      cutOffAnswer?: true;
      emptyAnswer?: true;
      /** The token limit ended the turn before any action. */
      cutOff?: true;
    };

export type Termination = 'answer' | 'max_turns' | 'max_context' | 'error' | 'cancelled';

export type ContextPolicyName = 'react' | 'iterresearch' | 'resum';
