// Model calls made to fit the server's limits: a prompt cut down when the server still refuses it as too long, and
// an output that ran out of tokens named as such.
import { ContextLengthError } from '../inference/types.js';
import type { SamplingInput } from './sampling.js';

/**
 * `call` with the prompt cut to `budget` (its unit is the caller's). A server that counts the prompt as still too
 * long gets it cut to half, twice at most; then, or at once without a budget (nothing to cut), its refusal is thrown.
 */
export async function callCuttingOnRefusal<T>(
  budget: number | undefined,
  call: (budget: number | undefined) => Promise<T>,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call(budget);
    } catch (err) {
      if (!(err instanceof ContextLengthError) || budget === undefined || attempt >= 2) throw err;
      budget = Math.floor(budget / 2);
    }
  }
}

/** Why an output is not used: it ran out of tokens before it was finished. */
export function cutOffReason(what: string, sampling: SamplingInput): string {
  return `${what} was cut off at ${sampling.maxTokensPerTurn} tokens (maxTokensPerTurn) before it was finished`;
}
