import { describe, expect, it } from 'vitest';
import {
  appendBranchable,
  BRANCHABLE_STEP_LIMIT,
  BudgetError,
  branchCandidates,
  branchTurnBudget,
  lastBranchStepBeforeAnswer,
  planBudget,
  rolloutType,
  scratchToFill,
  selectBranchSteps,
  selectRoundBranchPoints,
} from '../../agent/branching.js';
import { type Lineage, reuseTotals } from '../../agent/trajectory.js';
import type { RegionScores } from '../../agent/types.js';

const s = (think: number | null, tool: number | null, all: number | null): RegionScores => ({
  think_ppl: think,
  tool_call_ppl: tool,
  all_ppl: all,
});

// step:          0               1              2              3              4 (answer turn)
const STEPS = [s(1.5, 1.2, 1.3), s(1.1, 2.0, 1.6), s(2.5, 1.4, 1.9), s(1.2, 1.8, 1.2), s(3.0, null, 2.2)];

describe('selectBranchSteps', () => {
  it('tool_call_ppl: highest first, a step without the score (answer turn) last', () => {
    expect(selectBranchSteps(STEPS, 'tool_call_ppl', 2)).toEqual([1, 3]);
    expect(selectBranchSteps(STEPS, 'tool_call_ppl', 10)).toEqual([1, 3, 2, 0, 4]);
  });

  it('think_ppl and all_ppl', () => {
    expect(selectBranchSteps(STEPS, 'think_ppl', 2)).toEqual([4, 2]);
    expect(selectBranchSteps(STEPS, 'all_ppl', 3)).toEqual([4, 2, 1]);
  });

  it('maxStep keeps the answer turn out, minStep the reused prefix', () => {
    expect(selectBranchSteps(STEPS, 'think_ppl', 2, { maxStep: 3 })).toEqual([2, 0]);
    expect(selectBranchSteps(STEPS, 'tool_call_ppl', 2, { minStep: 2 })).toEqual([3, 2]);
  });

  it('ties go to the earlier step', () => {
    const tied = [s(1, 1.5, 1), s(1, 1.7, 1), s(1, 1.5, 1), s(1, 1.7, 1)];
    expect(selectBranchSteps(tied, 'tool_call_ppl', 3)).toEqual([1, 3, 0]);
    expect(selectBranchSteps(tied, 'all_ppl', 2)).toEqual([0, 1]);
  });

  it('gives fewer steps than K for a short trajectory', () => {
    expect(selectBranchSteps([s(1.3, 1.4, 1.2)], 'tool_call_ppl', 2)).toEqual([0]);
    expect(selectBranchSteps([], 'mixed_ppl', 2)).toEqual([]);
    // Unscored steps are still steps: ranked last, in order, as the reference's -1 scores are.
    expect(selectBranchSteps([s(null, null, null)], 'all_ppl', 2)).toEqual([0]);
    expect(selectBranchSteps([s(null, null, null), s(null, null, null)], 'all_ppl', 1)).toEqual([0]);
  });

  it('mixed_ppl: ceil(K/2) by tool call, floor(K/2) by think', () => {
    // tool ranking 1,3,2,0; think ranking 4,2,0,3,1
    expect(selectBranchSteps(STEPS, 'mixed_ppl', 2)).toEqual([1, 4]);
    expect(selectBranchSteps(STEPS, 'mixed_ppl', 3)).toEqual([1, 3, 4]);
    expect(selectBranchSteps(STEPS, 'mixed_ppl', 4)).toEqual([1, 3, 4, 2]);
  });

  it('mixed_ppl skips a step both rankings want and takes the next one', () => {
    // step 0 tops both rankings; think's quota goes to its second choice, step 2
    const steps = [s(3, 3, 1), s(1, 2, 1), s(2, 1, 1)];
    expect(selectBranchSteps(steps, 'mixed_ppl', 2)).toEqual([0, 2]);
  });

  it('mixed_ppl fills from the other ranking when one runs out', () => {
    // only step 0 has a tool-call score: the rest comes from think
    const steps = [s(1, 2, 1), s(3, null, 1), s(2, null, 1)];
    expect(selectBranchSteps(steps, 'mixed_ppl', 3)).toEqual([0, 1, 2]);
    // no think scores: think's quota goes to the first step not taken, as the reference's stable sort of -1s does
    const noThink = [s(null, 1, 1), s(null, 3, 1), s(null, 2, 1)];
    expect(selectBranchSteps(noThink, 'mixed_ppl', 2)).toEqual([1, 0]);
  });

  it("'none' and K=0 select nothing; bad K throws", () => {
    expect(selectBranchSteps(STEPS, 'none', 2)).toEqual([]);
    expect(selectBranchSteps(STEPS, 'all_ppl', 0)).toEqual([]);
    expect(() => selectBranchSteps(STEPS, 'all_ppl', 1.5)).toThrow(RangeError);
  });
});

describe('selectRoundBranchPoints', () => {
  it('ranks (rollout, step) pairs from each minStep on', () => {
    const points = selectRoundBranchPoints(
      [
        // minStep 2: steps 0 and 1 are ignored despite their high scores
        { rolloutId: 'b1', minStep: 2, steps: [s(1, 9, 1), s(1, 9, 1), s(1, 1.5, 1), s(1, 1.1, 1)] },
        { rolloutId: 'b2', minStep: 1, steps: [s(1, 9, 1), s(1, 1.5, 1), s(1, 1.8, 1), s(3, null, 1)] },
      ],
      'tool_call_ppl',
      3,
    );
    // candidates: b1@2 1.5, b1@3 1.1, b2@1 1.5, b2@2 1.8 → 1.8, then the 1.5 tie to the earlier candidate
    expect(points).toEqual([
      { rolloutId: 'b2', step: 2 },
      { rolloutId: 'b1', step: 2 },
      { rolloutId: 'b2', step: 1 },
    ]);
  });

  it('supports mixed mode and maxStep', () => {
    const points = selectRoundBranchPoints(
      [{ rolloutId: 'x', minStep: 0, steps: [s(1, 2, 1), s(5, 1, 1), s(9, null, 1)], maxStep: 1 }],
      'mixed_ppl',
      2,
    );
    expect(points).toEqual([
      { rolloutId: 'x', step: 0 },
      { rolloutId: 'x', step: 1 },
    ]);
  });
});

describe('planBudget', () => {
  it('reference default: N=8, M=1, K=2, T=3, R=1', () => {
    expect(planBudget({ n: 8, m: 1, k: 2, t: 3, r: 1, mode: 'tool_call_ppl' })).toEqual({
      initial: 1,
      partialPerRound: 6,
      partial: 6,
      scratch: 1,
      total: 8,
    });
  });

  it('R=2 needs N ≥ 1 + 1·2·2·3 = 13', () => {
    expect(() => planBudget({ n: 12, m: 1, k: 2, t: 3, r: 2, mode: 'tool_call_ppl' })).toThrow(BudgetError);
    expect(() => planBudget({ n: 12, m: 1, k: 2, t: 3, r: 2, mode: 'tool_call_ppl' })).toThrow(
      'sampling budget N=12 cannot fit the branching plan: M + M·K·R·T = 1 + 1·2·2·3 = 13',
    );
    expect(planBudget({ n: 13, m: 1, k: 2, t: 3, r: 2, mode: 'mixed_ppl' }).scratch).toBe(0);
  });

  it('N=16, R=2 leaves 3 from scratch', () => {
    expect(planBudget({ n: 16, m: 1, k: 2, t: 3, r: 2, mode: 'think_ppl' })).toEqual({
      initial: 1,
      partialPerRound: 6,
      partial: 12,
      scratch: 3,
      total: 16,
    });
  });

  it('counts over the question, not per initial rollout', () => {
    // M=2: 2 + 2·2·1·3 = 14 of 15, scratch 1 (per-lineage int(15/2)=7 would have lost one)
    expect(planBudget({ n: 15, m: 2, k: 2, t: 3, r: 1, mode: 'all_ppl' }).scratch).toBe(1);
  });

  it("mode 'none': all N start from the question", () => {
    expect(planBudget({ n: 8, m: 1, k: 0, t: 0, r: 0, mode: 'none' })).toEqual({
      initial: 8,
      partialPerRound: 0,
      partial: 0,
      scratch: 0,
      total: 8,
    });
  });

  it('rejects non-positive or fractional numbers', () => {
    expect(() => planBudget({ n: 8, m: 0, k: 2, t: 3, r: 1, mode: 'all_ppl' })).toThrow(
      /M must be a positive integer/,
    );
    expect(() => planBudget({ n: 8, m: 1, k: 2.5, t: 3, r: 1, mode: 'all_ppl' })).toThrow(BudgetError);
    expect(() => planBudget({ n: -1, m: 1, k: 2, t: 3, r: 1, mode: 'none' })).toThrow(/N must be/);
  });

  it('scratch fill makes up for branch points that could not be found', () => {
    const plan = planBudget({ n: 8, m: 1, k: 2, t: 3, r: 1, mode: 'tool_call_ppl' });
    expect(scratchToFill(plan, 6)).toBe(1);
    // only one branch step found: 3 partial rollouts, 4 from scratch
    expect(scratchToFill(plan, 3)).toBe(4);
  });
});

describe('labels and turn budget', () => {
  it('uses the reference rollout types', () => {
    expect(rolloutType('initial')).toBe('traj_level_rollout');
    expect(rolloutType('scratch')).toBe('traj_level_rollout');
    expect(rolloutType('branch')).toBe('partial_rollout');
  });

  it('a branch at step s has maxTurns - s turns left', () => {
    expect(branchTurnBudget(100, 3)).toBe(97);
    expect(branchTurnBudget(2, 5)).toBe(0);
  });
});

describe('branchable steps of a long trajectory', () => {
  it('keeps the first BRANCHABLE_STEP_LIMIT steps as branch points, not none', () => {
    let list: number[] | undefined = [];
    for (let step = 0; step < BRANCHABLE_STEP_LIMIT + 100; step++) list = appendBranchable(list, step);
    expect(list).toHaveLength(BRANCHABLE_STEP_LIMIT);
    expect(list![0]).toBe(0);
    expect(list![BRANCHABLE_STEP_LIMIT - 1]).toBe(BRANCHABLE_STEP_LIMIT - 1);
    // State carried from a version that dropped the list stays without one.
    expect(appendBranchable<number>(undefined, 1)).toBeUndefined();
  });

  it('a branch prefix keeps its place and the list still stops at the limit', () => {
    let list: number[] | undefined = [0, 1, 2];
    for (let step = 3; step < 10; step++) list = appendBranchable(list, step, 5);
    expect(list).toEqual([0, 1, 2, 3, 4]);
  });

  it('branchCandidates: the answer turn ranks last in every mode, past steps kept only as far as they were', () => {
    // Step 4 is the answer turn: high think and all scores, chosen only once every scored step is taken.
    const candidates = branchCandidates(STEPS, 5, true);
    expect(selectBranchSteps(candidates, 'think_ppl', 2)).toEqual([2, 0]);
    expect(selectBranchSteps(candidates, 'all_ppl', 5)).toEqual([2, 1, 0, 3, 4]);
    // One search, then the answer, K = 2: the answer turn is the second branch point (the reference's -1 score).
    const short = branchCandidates([s(1.2, 1.5, 1.3), s(2, null, 2)], 2, true);
    expect(selectBranchSteps(short, 'tool_call_ppl', 2)).toEqual([0, 1]);
    // Without an answer (max_turns) the last step keeps its scores.
    expect(selectBranchSteps(branchCandidates(STEPS, 5, false), 'think_ppl', 1)).toEqual([4]);
    // 600 steps, facts of the first 512 kept: the answer turn is not among them, and step 511 keeps its score.
    const steps = Array.from({ length: 512 }, (_, i) => s(1, i === 511 ? 9 : 1 + i / 1000, 1));
    expect(selectBranchSteps(branchCandidates(steps, 600, true), 'tool_call_ppl', 1)).toEqual([511]);
    expect(STEPS[4]!.think_ppl).toBe(3.0); // the caller's scores are left as they were
  });

  it("a question that chose before answer turns were candidates replays its rule: unscored steps 'skipped', answer turn out", () => {
    const steps = [s(1.2, 1.5, 1.3), s(1.1, null, 1.2), s(2, null, 2)];
    const candidate = (unscored: 'last' | 'skipped') =>
      unscored === 'last'
        ? { rolloutId: 'initial-0', minStep: 0, steps: branchCandidates(steps, 3, true) }
        : { rolloutId: 'initial-0', minStep: 0, steps, maxStep: lastBranchStepBeforeAnswer(3, 3, true) };
    const chosen = (unscored: 'last' | 'skipped') =>
      selectRoundBranchPoints([candidate(unscored)], 'tool_call_ppl', 3, unscored).map((p) => p.step);
    expect(chosen('skipped')).toEqual([0]);
    expect(chosen('last')).toEqual([0, 1, 2]);
    // think_ppl: the answer turn stays out under the old rule however high its score.
    expect(
      selectRoundBranchPoints([candidate('skipped')], 'think_ppl', 3, 'skipped').map((p) => p.step),
    ).toEqual([0, 1]);
  });
});

describe('reuse accounting', () => {
  it('counts what branches that ran took over, not what a branch that never started would have', () => {
    const branch = (reusedCompletionTokens: number, reusedToolCalls: number): Lineage => ({
      rolloutType: 'partial',
      parentRolloutId: 'initial-0',
      branchStep: 3,
      round: 1,
      reusedSteps: 3,
      reusedCompletionTokens,
      reusedToolCalls,
    });
    const initial: Lineage = {
      rolloutType: 'initial',
      round: 0,
      reusedSteps: 0,
      reusedCompletionTokens: 0,
      reusedToolCalls: 0,
    };
    expect(
      reuseTotals([
        { steps: 9, lineage: initial },
        { steps: 7, lineage: branch(300, 2) },
        // Failed to start: no steps, though its lineage names the prefix it was to take over.
        { steps: 0, lineage: branch(300, 2) },
      ]),
    ).toEqual({ tokens: 300, toolCalls: 2 });
  });
});
