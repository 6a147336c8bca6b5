// The sampling settings a step carries, and the generation parameters every model call is made with.
import type { GenerateParams } from '../inference/types.js';

export interface SamplingInput {
  temperature: number;
  topLogprobs: number;
  maxTokensPerTurn: number;
}

/** One turn's generation parameters: the spec's sampling settings plus the step's seed. */
export function generateParams(sampling: SamplingInput, seed: number): GenerateParams {
  return {
    maxTokens: sampling.maxTokensPerTurn,
    temperature: sampling.temperature,
    topLogprobs: sampling.topLogprobs,
    seed,
  };
}
