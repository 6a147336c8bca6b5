// The checks a workflow's own input must pass. Muse's clients check a spec before they start anything, but a
// workflow started by hand (`temporal workflow start --input ...`) skips them. Pure (workflow-safe): run as a local
// activity, whose outcome the run's history records, and in the workflow itself by runs started before that.
import { z } from 'zod';
import { formatZodError } from '../common/errors.js';
import { BudgetError, type BudgetPlan, historyBudgetProblem, planBudget } from './branching.js';
import type { ParallelMuseSpecSchema } from './job.js';

/** A workflow input that does not parse; its message names the field. */
export class InvalidInputError extends Error {
  override name = 'InvalidInputError';
}

const durationMs = z.number().finite().nonnegative();

/** The fields every Muse workflow's input has; the rest (branch, carried state) only Muse's own workflows write. */
function inputSchema<S extends z.ZodType>(spec: S) {
  return z.looseObject({
    spec,
    jobId: z.string(),
    timeouts: z.object({ stepMs: durationMs, heartbeatMs: durationMs }).optional(),
  });
}

/** The input's spec parsed (defaults filled in), or an InvalidInputError naming what is wrong. */
export function parseWorkflowInput<S extends z.ZodType>(
  workflow: string,
  specSchema: S,
  input: unknown,
): z.output<S> {
  const parsed = inputSchema(specSchema).safeParse(input);
  if (!parsed.success)
    throw new InvalidInputError(`${workflow}: invalid input: ${formatZodError(parsed.error)}`);
  return parsed.data.spec as z.output<S>;
}

/**
 * A question's budget plan, or a BudgetError: for a plan that cannot be made, or whose history would pass Temporal's
 * limits (past 50 MB Temporal would end the question, every rollout's work with it).
 */
export function questionPlan(spec: z.output<typeof ParallelMuseSpecSchema>): BudgetPlan {
  const plan = planBudget({ n: spec.n, m: spec.m, k: spec.k, t: spec.t, r: spec.r, mode: spec.branchMode });
  const problem = historyBudgetProblem(plan, spec);
  if (problem) throw new BudgetError(`parallelMuse: ${problem}`);
  return plan;
}
