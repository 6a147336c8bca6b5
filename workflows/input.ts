// The check a workflow makes of its own input. Muse's clients validate a spec before they start anything, but a
// workflow started by hand (`temporal workflow start --input ...`) skips them: a field left out there failed the
// workflow task, which Temporal retries for ever, so the run hung without saying why. It now fails the workflow,
// naming the field. Parsing is pure (zod), so replay parses the same spec the same way; a spec a client wrote parses
// to itself.
import { ApplicationFailure } from '@temporalio/workflow';
import { z } from 'zod';
import { formatZodError } from '../common/errors.js';

const positiveMs = z.number().int().positive();

/** The fields every Muse workflow's input has; the rest (branch, carried state) only Muse's own workflows write. */
function inputSchema<S extends z.ZodType>(spec: S) {
  return z.looseObject({
    spec,
    jobId: z.string(),
    timeouts: z.object({ stepMs: positiveMs, heartbeatMs: positiveMs }).optional(),
  });
}

/** The input with its spec parsed (defaults filled in), or a non-retryable failure naming what is wrong. */
export function checkedInput<S extends z.ZodType, I extends { spec: z.output<S> }>(
  workflow: string,
  specSchema: S,
  input: I,
): I {
  const parsed = inputSchema(specSchema).safeParse(input);
  if (!parsed.success)
    throw ApplicationFailure.create({
      type: 'InvalidInputError',
      nonRetryable: true,
      message: `${workflow}: invalid input: ${formatZodError(parsed.error)}`,
    });
  return { ...input, spec: parsed.data.spec };
}
