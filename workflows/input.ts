// The check a workflow makes of its own input. Muse's clients validate a spec before they start anything, but a
// workflow started by hand (`temporal workflow start --input ...`) skips them: a field left out there failed the
// workflow task, which Temporal retries for ever, so the run hung without saying why. It now fails the workflow,
// naming the field. The check runs as a local activity, so its outcome is in the run's history: a replay under a
// later, stricter check reads back the outcome that let the run start.
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  patched,
  proxyLocalActivities,
  workflowInfo,
} from '@temporalio/workflow';
import type { z } from 'zod';
import type { MuseActivities } from '../activities/index.js';
import type { CheckedWorkflow } from '../activities/input.js';
import type { BudgetPlan } from '../agent/branching.js';
import { parseWorkflowInput } from '../agent/input-check.js';

const INPUT_ERRORS = ['InvalidInputError', 'BudgetError'];

const checks = proxyLocalActivities<MuseActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { maximumInterval: '10 seconds', nonRetryableErrorTypes: INPUT_ERRORS },
});

/**
 * Where a run's input was checked: not at all (started by Muse, or before the check existed), in workflow code (runs
 * started before the check was recorded), or by the recorded local activity. It also tells which version started a
 * run, where a change that was not patched needs to know (see parallelMuse's branch rule).
 */
export type InputCheck = 'none' | 'workflow' | 'activity';

/**
 * The input with its spec parsed (defaults filled in), and a question's budget plan; or a non-retryable failure
 * naming what is wrong. Only where a workflow is started from outside: a run continued as new, or a question's
 * rollout, carries a spec Muse already checked, and a check made stricter in a later version must not fail it
 * midway. No plan for a run whose check was made in workflow code (started before the check was recorded), nor
 * for one that was not checked: the workflow plans, as it did.
 */
export async function checkedInput<S extends z.ZodType, I extends { spec: z.output<S> }>(
  workflow: CheckedWorkflow,
  specSchema: S,
  input: I,
): Promise<{ input: I; plan?: BudgetPlan; checkedIn: InputCheck }> {
  // Histories of runs started before the check existed replay without it.
  if (startedByMuse(workflowInfo(), input) || !patched('check-input')) return { input, checkedIn: 'none' };
  if (patched('check-input-recorded')) {
    try {
      // Not cancellable: a run cancelled before its first step still ends the way it would after one (a trajectory
      // with termination 'cancelled'), not with its input check cancelled under it.
      const { spec, plan } = await CancellationScope.nonCancellable(() =>
        checks.checkWorkflowInput({ workflow, input }),
      );
      return {
        input: { ...input, spec: spec as z.output<S> },
        ...(plan ? { plan } : {}),
        checkedIn: 'activity',
      };
    } catch (err) {
      throw inputFailure(err);
    }
  }
  // Runs started before the check was recorded made it in workflow code: their replays make it there again.
  try {
    return {
      input: { ...input, spec: parseWorkflowInput(workflow, specSchema, input) },
      checkedIn: 'workflow',
    };
  } catch (err) {
    throw inputFailure(err);
  }
}

/**
 * Whether Muse itself started the run with a spec it had checked: a run continued as new, or a question's rollout
 * (a child whose id is its question's, then `/<rollout>`, routed by its question's id). A child of any other
 * workflow (a user's own, starting `trajectory` with a spec it wrote, under an id of the same shape) is checked like
 * a run started from outside. Replay-safe: a run this now checks that was not checked has no check-input marker, and
 * replays unchecked.
 */
export function startedByMuse(
  info: { workflowId: string; parent?: { workflowId: string } },
  input: unknown,
): boolean {
  const given = input as { carried?: unknown; routeKey?: unknown } | null;
  if (given?.carried !== undefined) return true;
  return (
    info.parent !== undefined &&
    info.workflowId.startsWith(`${info.parent.workflowId}/`) &&
    given?.routeKey === info.parent.workflowId
  );
}

/**
 * A failed input check (InvalidInputError, BudgetError) as the run's own failure: not retryable, its type and message
 * kept, whether it was thrown here or by the local activity (whose failure is not retryable by its retry policy
 * only, and can come unwrapped). Anything else is returned as it is.
 */
export function inputFailure(err: unknown): unknown {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  const type = cause instanceof ApplicationFailure ? cause.type : (cause as Error | undefined)?.name;
  if (!type || !INPUT_ERRORS.includes(type)) return err;
  return ApplicationFailure.create({ type, nonRetryable: true, message: (cause as Error).message });
}
