// ParallelMuse stage 1 planning: where to branch (functionality-specified partial rollout) and how the sampling
// budget splits between initial, partial and from-scratch rollouts. Workflow-safe: pure functions.
import { MAX_ANSWER_CHARS, utf8Length } from './clip.js';
import type { RegionScores } from './types.js';

export type BranchMode = 'none' | 'all_ppl' | 'think_ppl' | 'tool_call_ppl' | 'mixed_ppl';

/**
 * Labels of the reference's rollout records: every rollout started from the question alone (the M initial ones
 * and the scratch fill) is a `traj_level_rollout`; a branch is a `partial_rollout`.
 */
export type RolloutType = 'traj_level_rollout' | 'partial_rollout';
export type RolloutOrigin = 'initial' | 'scratch' | 'branch';

export function rolloutType(origin: RolloutOrigin): RolloutType {
  return origin === 'branch' ? 'partial_rollout' : 'traj_level_rollout';
}

export interface SelectOptions {
  /** Lowest step that may be chosen: a branch's steps before its branch point are its parent's, already explored. */
  minStep?: number;
  /** Highest step that may be chosen (inclusive). */
  maxStep?: number;
}

type ScoreKey = 'all_ppl' | 'think_ppl' | 'tool_call_ppl';

interface Candidate<K> {
  key: K;
  scores: RegionScores;
}

function scoreOf(s: RegionScores, key: ScoreKey): number | null {
  const v = s[key];
  return v === null || Number.isNaN(v) ? null : v;
}

/**
 * Where steps without a score for the mode go: 'last' after every scored one (the reference scores such a turn -1),
 * or 'skipped' (the rule before answer turns became candidates; questions that chose under it replay with it).
 */
export type UnscoredSteps = 'last' | 'skipped';

/**
 * Highest score first; equal scores keep input order (earlier first), like Python's stable sort in the reference.
 * Steps without a score for the key (no tool call, no reasoning, an answer turn) come last, in order: the reference
 * scores such a turn -1, so it is branched from only when fewer than K scored steps are left.
 */
function ranked<K>(cands: readonly Candidate<K>[], key: ScoreKey, unscored: UnscoredSteps): K[] {
  const scored: { key: K; score: number; order: number }[] = [];
  cands.forEach((c, order) => {
    const score = scoreOf(c.scores, key);
    if (score === null && unscored === 'skipped') return;
    scored.push({ key: c.key, score: score ?? Number.NEGATIVE_INFINITY, order });
  });
  scored.sort((a, b) => (b.score === a.score ? a.order - b.order : b.score - a.score));
  return scored.map((s) => s.key);
}

function pick<K>(
  cands: readonly Candidate<K>[],
  mode: Exclude<BranchMode, 'none'>,
  k: number,
  unscored: UnscoredSteps = 'last',
): K[] {
  if (mode !== 'mixed_ppl') return ranked(cands, mode, unscored).slice(0, k);
  // ceil(K/2) by tool-call uncertainty, floor(K/2) by reasoning uncertainty. The reference can pick one step
  // twice here (and so spend 2·T rollouts on it); Muse skips duplicates and tops up from the other ranking.
  const byTool = ranked(cands, 'tool_call_ppl', unscored);
  const byThink = ranked(cands, 'think_ppl', unscored);
  const chosen: K[] = [];
  const taken = new Set<K>();
  const take = (from: readonly K[], quota: number) => {
    for (const key of from) {
      if (chosen.length >= k || quota <= 0) return;
      if (taken.has(key)) continue;
      taken.add(key);
      chosen.push(key);
      quota--;
    }
  };
  take(byTool, Math.ceil(k / 2));
  take(byThink, Math.floor(k / 2));
  take(byTool, k);
  take(byThink, k);
  return chosen;
}

function checkK(k: number): void {
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`k must be a non-negative integer, got ${k}`);
}

/**
 * Steps (turn indices) to branch from, most uncertain first, at most k of them.
 *
 * - Steps whose score for the mode is null rank after every scored one (in the default tool_call_ppl mode an
 *   answer turn has no score). A trajectory with fewer steps than k gives fewer; the budget's scratch fill makes up
 *   the difference (see scratchToFill).
 * - Ties go to the earlier step, as the reference's stable sort does.
 * - Branching at step s keeps turns 0..s-1 and regenerates turn s, so step 0 (a fresh start) is allowed, as in
 *   the reference.
 * - The reference scores only turns that contain a tool call, so an answer turn is never chosen on merit there, and
 *   is chosen last. Here answer turns carry think_ppl and all_ppl; branchCandidates takes their scores away.
 * - 'none' selects nothing.
 */
export function selectBranchSteps(
  steps: readonly RegionScores[],
  mode: BranchMode,
  k: number,
  opts: SelectOptions = {},
): number[] {
  checkK(k);
  if (mode === 'none' || k === 0) return [];
  const lo = opts.minStep ?? 0;
  const hi = opts.maxStep ?? steps.length - 1;
  const cands: Candidate<number>[] = [];
  steps.forEach((scores, i) => {
    if (i >= lo && i <= hi) cands.push({ key: i, scores });
  });
  return pick(cands, mode, k);
}

export interface RoundCandidate {
  rolloutId: string;
  /**
   * Lowest step that may be chosen. For a branch, the step after its branch point: its earlier steps are its
   * parent's, and its step at the branch point was sampled from the state the previous round branched at, so
   * branching there again would only sample that state once more.
   */
  minStep: number;
  steps: RegionScores[];
  /** Highest step that may be chosen (see selectBranchSteps on answer turns). */
  maxStep?: number;
}

export interface BranchPoint {
  rolloutId: string;
  step: number;
}

/**
 * Each round: the top-k (rollout, step) pairs among the previous round's rollouts of one initial lineage (the
 * initial rollout itself in round 1), from each candidate's minStep on. Ties go to the earlier candidate, then the
 * earlier step. Each point then gets T branches, so every round adds M·K·T rollouts across the M lineages.
 */
export function selectRoundBranchPoints(
  candidates: readonly RoundCandidate[],
  mode: BranchMode,
  k: number,
  unscored: UnscoredSteps = 'last',
): BranchPoint[] {
  checkK(k);
  if (mode === 'none' || k === 0) return [];
  const cands: Candidate<BranchPoint>[] = [];
  for (const c of candidates) {
    const hi = c.maxStep ?? c.steps.length - 1;
    c.steps.forEach((scores, step) => {
      if (step < c.minStep || step > hi) return;
      const point = { rolloutId: c.rolloutId, step };
      cands.push({ key: point, scores });
    });
  }
  return pick(cands, mode, k, unscored).map((p) => ({ rolloutId: p.rolloutId, step: p.step }));
}

/** Steps whose branching facts a trajectory keeps; a longer one offers its first BRANCHABLE_STEP_LIMIT steps. */
export const BRANCHABLE_STEP_LIMIT = 512;

/**
 * Appends one step's branching facts (list index = step) until the list holds `limit`, then leaves it as it is:
 * a long trajectory keeps its first steps as branch points. `undefined` (state from a version that dropped the list
 * past the limit) stays undefined.
 */
export function appendBranchable<T>(
  list: T[] | undefined,
  step: T,
  limit = BRANCHABLE_STEP_LIMIT,
): T[] | undefined {
  if (list && list.length < limit) list.push(step);
  return list;
}

const UNSCORED: RegionScores = { think_ppl: null, tool_call_ppl: null, all_ppl: null };

/**
 * A finished trajectory's steps as branch candidates: the steps whose facts were kept (a long trajectory keeps its
 * first ones), an answer turn among them without its scores. The reference scores only turns with a tool call, so
 * its answer turn ranks last in every mode: re-answering from the same evidence is its cheapest branch, taken only
 * where fewer than K scored steps are left.
 */
export function branchCandidates(
  kept: readonly RegionScores[],
  steps: number,
  endsWithAnswer: boolean,
): RegionScores[] {
  const candidates = kept.slice(0, steps);
  if (endsWithAnswer && steps - 1 < candidates.length) candidates[steps - 1] = UNSCORED;
  return candidates;
}

/**
 * The rule before answer turns became candidates (with unscored steps 'skipped'): the highest step of a finished
 * trajectory to branch from, never its answer turn and never past the kept facts. Questions that chose under it
 * replay with it.
 */
export function lastBranchStepBeforeAnswer(kept: number, steps: number, endsWithAnswer: boolean): number {
  return Math.min(kept - 1, endsWithAnswer ? steps - 2 : steps - 1);
}

/** Turns a branch at `step` may still take: the parent's turns before the branch point count against it. */
export function branchTurnBudget(maxTurns: number, step: number): number {
  return Math.max(0, maxTurns - step);
}

export class BudgetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BudgetError';
  }
}

export interface BudgetInput {
  /** Sampling budget: rollouts per question, all kinds together. */
  n: number;
  /** Initial rollouts per question. */
  m: number;
  /** Branch steps per trajectory. */
  k: number;
  /** Branches per step. */
  t: number;
  /** Branching rounds. */
  r: number;
  mode: BranchMode;
}

export interface BudgetPlan {
  initial: number;
  /** M·K·T: partial rollouts added by each round. */
  partialPerRound: number;
  /** M·K·R·T. */
  partial: number;
  /** From-scratch rollouts that fill the rest of the budget. */
  scratch: number;
  total: number;
}

function checkPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new BudgetError(`${name} must be a positive integer, got ${v}`);
}

/**
 * N = M + M·K·R·T + scratch. Counted over the whole question, not per initial rollout as the reference does
 * (int(N/M) per lineage), so an N that M does not divide loses nothing.
 *
 * Mode 'none' is plain parallel sampling: all N rollouts start from the question at once, and like the
 * reference (which calls all of them initial-type `traj_level_rollout`s) they are counted as initial; K, T and R
 * are not used and not checked.
 */
export function planBudget(input: BudgetInput): BudgetPlan {
  const { n, m, k, t, r, mode } = input;
  checkPositiveInt('N', n);
  if (mode === 'none') return { initial: n, partialPerRound: 0, partial: 0, scratch: 0, total: n };
  checkPositiveInt('M', m);
  checkPositiveInt('K', k);
  checkPositiveInt('T', t);
  checkPositiveInt('R', r);
  const partialPerRound = m * k * t;
  const partial = partialPerRound * r;
  const needed = m + partial;
  if (n < needed) {
    throw new BudgetError(
      `sampling budget N=${n} cannot fit the branching plan: M + M·K·R·T = ${m} + ${m}·${k}·${r}·${t} = ${needed}`,
    );
  }
  return { initial: m, partialPerRound, partial, scratch: n - needed, total: n };
}

/**
 * From-scratch rollouts to launch once branching is done: the planned scratch plus whatever the branch
 * selection could not use (trajectories with fewer than K scored steps), so every question still gets N
 * rollouts, as in the reference.
 */
export function scratchToFill(plan: BudgetPlan, partialLaunched: number): number {
  return Math.max(0, plan.total - plan.initial - partialLaunched);
}

/**
 * What one question's workflow history may hold: Temporal ends a workflow whose history passes 50 MB
 * (limit.historySize.error), losing the whole question's work, so a plan that could reach it is refused before it
 * starts. 40 MB leaves room for the estimate's misses.
 */
export const QUESTION_HISTORY_BUDGET_BYTES = 40 * 1024 * 1024;
/**
 * Per rollout, beside its question: ids, references, usage, lineage, and its answer, which its result carries whole
 * (up to MAX_ANSWER_CHARS, three bytes a character in CJK).
 */
const ROLLOUT_OVERHEAD_BYTES = 4096 + 3 * MAX_ANSWER_CHARS;
/**
 * Per step of a rollout later rounds branch from: its branching facts, in its result and again in its branches'
 * inputs. Packed (msgpack, measured): 208 B, 234 B since each carries its prompt-token ratio, 263 B with a job id of
 * 48 characters; the budget's 10 MB margin takes the difference past 256, and a changed estimate would change which
 * questions started by hand are refused.
 */
const BRANCHABLE_STEP_BYTES = 2 * 256;
/** One step-log segment (a content reference and the step it ends at, ~110 B packed). */
const LOG_SEGMENT_BYTES = 128;
/**
 * The most steps one workflow run of a rollout holds: its stepsPerRun, or fewer once Temporal suggests continuing as
 * new (at ~4k events; a step is ~12), or once its step records reach 512 KiB (~140 steps of long CJK tool errors:
 * more runs, so more log segments, than this counts; the margin takes them too).
 */
const MAX_STEPS_PER_RUN_SEEN = 300;

/**
 * An upper estimate of a ParallelMuse question's history in bytes: each rollout's start carries the question, and so
 * does its report step; rollouts that later rounds branch from return (and pass on) a record per step (of the first
 * BRANCHABLE_STEP_LIMIT); each rollout's step log (a segment per workflow run) rides in its result and its report
 * step, and a branch's, which begins with its parent's, in its start too.
 */
export function questionHistoryBytes(
  plan: BudgetPlan,
  opts: { rounds: number; questionBytes: number; maxTurns: number; stepsPerRun: number; branching: boolean },
): number {
  const keepers = opts.branching ? plan.initial + plan.partialPerRound * Math.max(0, opts.rounds - 1) : 0;
  const runs = Math.ceil(opts.maxTurns / Math.min(opts.stepsPerRun, MAX_STEPS_PER_RUN_SEEN));
  const branches = opts.branching ? plan.partial : 0;
  const logSegments = runs * (2 * (plan.total - branches) + 3 * (opts.rounds + 1) * branches);
  return (
    plan.total * (2 * opts.questionBytes + ROLLOUT_OVERHEAD_BYTES) +
    logSegments * LOG_SEGMENT_BYTES +
    keepers * Math.min(opts.maxTurns, BRANCHABLE_STEP_LIMIT) * BRANCHABLE_STEP_BYTES
  );
}

/**
 * Why a question's plan could not fit its history budget (QUESTION_HISTORY_BUDGET_BYTES), with the estimate and what to
 * change; undefined when it fits. Checked by the clients before they start a question, and by the question itself
 * (one started by hand skips the clients).
 */
export function historyBudgetProblem(
  plan: BudgetPlan,
  spec: {
    r: number;
    branchMode: string;
    trajectory: { question: string; maxTurns: number; stepsPerRun: number };
  },
): string | undefined {
  const questionBytes = utf8Length(spec.trajectory.question);
  const history = questionHistoryBytes(plan, {
    rounds: spec.r,
    questionBytes,
    maxTurns: spec.trajectory.maxTurns,
    stepsPerRun: spec.trajectory.stepsPerRun,
    branching: spec.branchMode !== 'none',
  });
  if (history <= QUESTION_HISTORY_BUDGET_BYTES) return undefined;
  const mb = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MB`;
  return (
    `this plan could grow the question's Temporal history to about ${mb(history)}, past the ` +
    `${mb(QUESTION_HISTORY_BUDGET_BYTES)} a question may use (Temporal ends a workflow at 50 MB): lower N, R or ` +
    `maxTurns, raise stepsPerRun, or shorten the question (${questionBytes} bytes)`
  );
}
