// The checks a workflow's own input must pass (run as a local activity, or in workflow code by older runs).
import { describe, expect, it } from 'vitest';
import { BudgetError } from '../../agent/branching.js';
import { InvalidInputError, parseWorkflowInput, questionPlan } from '../../agent/input-check.js';
import { ParallelMuseSpecSchema, TrajectorySpecSchema } from '../../agent/job.js';
import { startedByMuse } from '../../workflows/input.js';

describe('parseWorkflowInput', () => {
  it('fills in the defaults of a spec written by hand', () => {
    const spec = parseWorkflowInput('trajectory', TrajectorySpecSchema, {
      spec: { question: 'q' },
      jobId: 'j',
    });
    expect(spec).toEqual(TrajectorySpecSchema.parse({ question: 'q' }));
    expect(spec.maxTurns).toBeGreaterThan(0);
  });

  it('names the workflow and the field that is wrong', () => {
    const bad = (input: unknown) => () => parseWorkflowInput('trajectory', TrajectorySpecSchema, input);
    expect(bad({ spec: { question: 'q', maxTurns: -3 }, jobId: 'j' })).toThrow(InvalidInputError);
    expect(bad({ spec: { question: 'q', maxTurns: -3 }, jobId: 'j' })).toThrow(
      /^trajectory: invalid input: spec\.maxTurns: /,
    );
    expect(bad({ spec: { question: 'q' } })).toThrow(/jobId/);
    expect(bad({ spec: { question: 'q' }, jobId: 'j', timeouts: { stepMs: '1m' } })).toThrow(
      /timeouts\.stepMs/,
    );
    expect(bad(null)).toThrow(/^trajectory: invalid input/);
  });
});

describe('questionPlan', () => {
  const spec = (over: object) => ParallelMuseSpecSchema.parse({ trajectory: { question: 'q' }, ...over });

  it("plans a question's rollouts", () => {
    expect(questionPlan(spec({ n: 4, m: 2, k: 1, t: 1, r: 1 }))).toMatchObject({
      initial: 2,
      partial: 2,
      total: 4,
    });
  });

  it('refuses a plan that cannot be made, or whose history would pass what Temporal keeps', () => {
    expect(() => questionPlan(spec({ n: 4, m: 8 }))).toThrow(BudgetError);
    const tooBig = spec({ n: 1024, trajectory: { question: 'x'.repeat(20_000) } });
    expect(() => questionPlan(tooBig)).toThrow(/^parallelMuse: this plan could grow .* about 67\.3 MB/);
  });
});

describe('startedByMuse', () => {
  it("skips the check only for Muse's own runs: a question's rollout, or a run continued as new", () => {
    const question = { workflowId: 'pm-1' };
    expect(
      startedByMuse({ workflowId: 'pm-1/initial-0', parent: question }, { spec: {}, routeKey: 'pm-1' }),
    ).toBe(true);
    // A user's workflow naming its children as questions do: checked.
    expect(startedByMuse({ workflowId: 'batch-7/q1', parent: { workflowId: 'batch-7' } }, { spec: {} })).toBe(
      false,
    );
    expect(startedByMuse({ workflowId: 'traj-1' }, { spec: {}, carried: { step: 3 } })).toBe(true);
    // Started from outside, or as a child of a workflow of the user's own: checked.
    expect(startedByMuse({ workflowId: 'traj-1' }, { spec: {} })).toBe(false);
    expect(startedByMuse({ workflowId: 'my-child', parent: { workflowId: 'my-parent' } }, { spec: {} })).toBe(
      false,
    );
    expect(
      startedByMuse({ workflowId: 'pm-10/initial-0', parent: question }, { spec: {}, routeKey: 'pm-1' }),
    ).toBe(false);
    expect(startedByMuse({ workflowId: 'traj-1' }, null)).toBe(false);
  });
});
