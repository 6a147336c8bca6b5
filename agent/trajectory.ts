// The compact, reference-based record of a trajectory that workflows keep and return. Content lives in the
// blob store; these records carry references and small metadata only. Types only: workflow-safe.
import type { RegionScores, Termination, TokenUsage } from './types.js';
import type { UncertaintyTally } from './uncertainty.js';

export type StepKind = 'tool_call' | 'answer' | 'invalid_tool_call' | 'no_action';

export interface StepRecord {
  step: number;
  kind: StepKind;
  /** The context the turn was generated from: a branch at this step starts from it. */
  contextBefore: string;
  turnRef: string;
  tool?: string;
  /** Short, for progress display. */
  actionPreview: string;
  observationRef?: string;
  toolError?: string;
  answer?: string;
  regions: RegionScores;
  usage: TokenUsage;
  memberId: string;
  /** What generated the turn (servedBy's label: a simulator says so); absent in records written before it was kept. */
  model?: string;
  /** resum: set when a summary turn ran before this step. */
  summarized?: boolean;
  /**
   * The turn's tool step failed or was cancelled, ending the run (toolError says how): the turn has no observation,
   * and is not one of the result's `steps`. Kept because its usage is counted and it is the turn to look at.
   */
  unfinished?: true;
}

export interface UsageTotals extends TokenUsage {
  toolCalls: number;
  llmCalls: number;
}

export const emptyUsage = (): UsageTotals => ({
  promptTokens: 0,
  cachedPromptTokens: 0,
  completionTokens: 0,
  toolCalls: 0,
  llmCalls: 0,
});

export function addUsage(total: UsageTotals, u: Partial<UsageTotals>): UsageTotals {
  return {
    promptTokens: total.promptTokens + (u.promptTokens ?? 0),
    cachedPromptTokens: total.cachedPromptTokens + (u.cachedPromptTokens ?? 0),
    completionTokens: total.completionTokens + (u.completionTokens ?? 0),
    toolCalls: total.toolCalls + (u.toolCalls ?? 0),
    llmCalls: total.llmCalls + (u.llmCalls ?? 0),
  };
}

/** More than this many distinct labels is a misconfigured pool, not information: the list stops growing. */
const MAX_MODEL_LABELS = 8;

/** `models` with `label` added when it is new (see TrajectoryResult.models); `models` itself when nothing changes. */
export function noteModel(models: string[], label: string | undefined): string[] {
  if (label === undefined || models.includes(label) || models.length >= MAX_MODEL_LABELS) return models;
  return [...models, label];
}

/** A segment of a trajectory's step log: the records of `ref` with step < untilStep (a branch's reused prefix). */
export interface StepLogSegment {
  ref: string;
  untilStep?: number;
}

/** Per-step facts a ParallelMuse parent needs to branch. */
export interface BranchableStep {
  regions: RegionScores;
  contextBefore: string;
  completionTokens: number;
  toolCalled: boolean;
  /**
   * The prompt-token ratio this step's window checks used (null: none learned yet), so a branch from it renders the
   * step's prompt as it was; absent in records from before it was kept, where a branch takes the parent's last.
   */
  promptTokenRatio?: number | null;
}

/** Where a partial rollout came from. */
export interface Lineage {
  rolloutType: 'initial' | 'partial' | 'scratch';
  parentRolloutId?: string;
  branchStep?: number;
  round: number;
  mode?: string;
  /** Steps taken over from the parent unchanged (no model or tool call made for them). */
  reusedSteps: number;
  /** Completion tokens of the reused steps (generated once, by the parent). */
  reusedCompletionTokens: number;
  reusedToolCalls: number;
}

/**
 * What a question's rollouts took over from their parents instead of generating again. Only rollouts with a result
 * count (one that ran holds at least the steps it took over): a branch that failed to start reused nothing, though
 * its lineage says what it would have, and one that failed outright has no result, so no steps and no usage either.
 */
export function reuseTotals(rollouts: readonly { steps: number; lineage: Lineage }[]): {
  tokens: number;
  toolCalls: number;
} {
  const ran = rollouts.filter((r) => r.steps > 0);
  return {
    tokens: ran.reduce((n, r) => n + r.lineage.reusedCompletionTokens, 0),
    toolCalls: ran.reduce((n, r) => n + r.lineage.reusedToolCalls, 0),
  };
}

export interface TrajectoryResult {
  trajectoryId: string;
  prediction: string | null;
  termination: Termination;
  /** Steps in the trajectory, the reused prefix of a branch included. */
  steps: number;
  /** Usage of the steps this trajectory generated itself (a branch's reused prefix excluded). */
  usage: UsageTotals;
  /** all_ppl over every turn, a branch's reused prefix included: meanUncertainty gives the trajectory's uncertainty. */
  uncertainty: UncertaintyTally;
  error?: string;
  /** Why a trajectory that did not fail ended short of an answer, where its termination alone does not say (a
   * summary that could not be made: cut off at maxTokensPerTurn, refused as too long). */
  reason?: string;
  /** Where the step records are: one segment per workflow run, a branch's reused prefix first. */
  log: StepLogSegment[];
  /** Per-step facts for branching (index = step), of the first BRANCHABLE_STEP_LIMIT steps only. */
  branchable?: BranchableStep[];
  lineage?: Lineage;
  /** Server prompt tokens per estimated token at the last turn; a branch starts its window checks from it. */
  promptTokenRatio?: number;
  runs: number;
  /**
   * What generated this trajectory's own turns and summaries (servedBy's labels, in order of first use): a
   * simulator's text is labelled as such wherever results are shown.
   */
  models?: string[];
}

export interface TrajectoryProgress {
  status: 'running' | 'finished';
  step: number;
  run: number;
  lastAction: string;
  usage: UsageTotals;
  termination?: Termination;
  prediction?: string | null;
}

/**
 * The slowest per-sequence decode a busy server is expected to keep up (tokens/s). Timeouts that must not cut off a
 * healthy generation allow for maxTokens at this speed: an H100 batch of 64 decodes ~57 tok/s per sequence
 * (docs/simulator.md), and long prompts, larger batches or slower GPUs bring that down.
 */
const SLOWEST_DECODE_TOKENS_PER_SEC = 20;

/**
 * How long a healthy server may take to answer a request for `maxTokens`: two minutes for queueing behind a busy
 * batch and prefill, plus the decode at the slowest expected speed.
 */
export function generationAllowanceMs(maxTokens: number): number {
  return 120_000 + (1000 * maxTokens) / SLOWEST_DECODE_TOKENS_PER_SEC;
}
