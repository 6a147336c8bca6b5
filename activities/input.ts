// The check of a workflow's own input, run as a local activity so that its outcome (the spec parsed, defaults
// filled in, and a question's budget plan) is recorded in the run's history and a replay reads it back. Checked in
// workflow code, a check made stricter by a later deploy failed the replay of a run it had let start: a
// non-determinism error that stalls the run until the old code is back.
import type { BudgetPlan } from '../agent/branching.js';
import { InvalidInputError, parseWorkflowInput, questionPlan } from '../agent/input-check.js';
import {
  ParallelMuseSpecSchema,
  startedAtOnce,
  TrajectorySpecSchema,
  trajectorySpecProblem,
} from '../agent/job.js';

export type CheckedWorkflow = 'trajectory' | 'parallelMuse';

export const inputActivities = {
  /** Throws InvalidInputError or BudgetError (not retryable). */
  async checkWorkflowInput(req: {
    workflow: CheckedWorkflow;
    input: unknown;
  }): Promise<{ spec: unknown; plan?: BudgetPlan }> {
    if (req.workflow === 'trajectory') {
      const spec = parseWorkflowInput('trajectory', TrajectorySpecSchema, req.input);
      const p = trajectorySpecProblem(spec);
      if (p) throw new InvalidInputError(`trajectory: invalid input: spec.${p.field}: ${p.problem}`);
      return { spec };
    }
    const spec = parseWorkflowInput('parallelMuse', ParallelMuseSpecSchema, req.input);
    const p = trajectorySpecProblem(spec.trajectory, startedAtOnce(spec));
    if (p)
      throw new InvalidInputError(`parallelMuse: invalid input: spec.trajectory.${p.field}: ${p.problem}`);
    return { spec, plan: questionPlan(spec) };
  },
};
