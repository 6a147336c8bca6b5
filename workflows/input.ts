// The check a workflow makes of its own input. Muse's clients validate a spec before they start anything, but a
// workflow started by hand (`temporal workflow start --input ...`) skips them: a field left out there failed the
// workflow task, which Temporal retries for ever, so the run hung without saying why. It now fails the workflow,
// naming the field. Parsing is pure (zod), and a spec a client wrote parses to itself.
import { ApplicationFailure, patched, workflowInfo } from '@temporalio/workflow';
import { z } from 'zod';
import { formatZodError } from '../common/errors.js';

const durationMs = z.number().finite().nonnegative();

/** The fields every Muse workflow's input has; the rest (branch, carried state) only Muse's own workflows write. */
function inputSchema<S extends z.ZodType>(spec: S) {
  return z.looseObject({
    spec,
    jobId: z.string(),
    timeouts: z.object({ stepMs: durationMs, heartbeatMs: durationMs }).optional(),
  });
}

/**
 * The input with its spec parsed (defaults filled in), or a non-retryable failure naming what is wrong. Only where
 * a workflow is started from outside: a run continued as new, or a question's rollout, carries a spec Muse already
 * checked, and a check made stricter in a later version must not fail it midway. Histories of runs started before
 * the check existed replay without it.
 */
export function checkedInput<S extends z.ZodType, I extends { spec: z.output<S> }>(
  workflow: string,
  specSchema: S,
  input: I,
): I {
  const startedByMuse =
    workflowInfo().parent !== undefined || (input as { carried?: unknown } | null)?.carried !== undefined;
  if (startedByMuse || !patched('check-input')) return input;
  const parsed = inputSchema(specSchema).safeParse(input);
  if (!parsed.success)
    throw ApplicationFailure.create({
      type: 'InvalidInputError',
      nonRetryable: true,
      message: `${workflow}: invalid input: ${formatZodError(parsed.error)}`,
    });
  return { ...input, spec: parsed.data.spec };
}
