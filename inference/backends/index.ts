// Backend selection for a pool member: the simulator, any OpenAI-compatible server, or SGLang's native API.
import { z } from 'zod';
import { formatZodError } from '../../common/config.js';
import { SimBackend } from '../../sim/backend.js';
import type { InferenceBackend } from '../types.js';
import { OpenAIBackend } from './openai.js';
import { SGLangBackend } from './sglang.js';

export const BackendSpecSchema = z.discriminatedUnion('backend', [
  z.object({
    backend: z.literal('sim'),
    model: z.string().default('muse-sim'),
    /** Serving-time multiplier: 1 = the H100 profile in real time, 0 = no waiting (CI, step-overhead bench). */
    timeScale: z.number().min(0).default(0),
    maxBatch: z.number().int().positive().optional(),
    cacheCapacityTokens: z.number().int().positive().optional(),
    /** Context length (prompt + completion) past which the simulated server refuses a request, as vLLM does. */
    maxModelLen: z.number().int().positive().optional(),
  }),
  z.object({
    backend: z.literal('openai'),
    baseUrl: z.string().url(),
    apiKey: z.string().optional(),
    model: z.string().min(1),
    mode: z.enum(['chat', 'completions']).default('chat'),
    maxBatch: z.number().int().positive().optional(),
  }),
  z.object({
    backend: z.literal('sglang'),
    baseUrl: z.string().url(),
    apiKey: z.string().optional(),
    model: z.string().optional(),
    maxBatch: z.number().int().positive().optional(),
  }),
]);
export type BackendSpec = z.input<typeof BackendSpecSchema>;

export function createBackend(input: BackendSpec): InferenceBackend {
  const parsed = BackendSpecSchema.safeParse(input);
  // Named fields, not zod's raw issue array.
  if (!parsed.success) throw new Error(`invalid backend spec: ${formatZodError(parsed.error)}`);
  const spec = parsed.data;
  switch (spec.backend) {
    case 'sim':
      return new SimBackend({
        modelName: spec.model,
        ...(spec.maxModelLen ? { maxModelLen: spec.maxModelLen } : {}),
        profile: {
          timeScale: spec.timeScale,
          ...(spec.maxBatch ? { maxBatch: spec.maxBatch } : {}),
          ...(spec.cacheCapacityTokens ? { cacheCapacityTokens: spec.cacheCapacityTokens } : {}),
        },
      });
    case 'openai':
      return new OpenAIBackend({
        baseUrl: spec.baseUrl,
        apiKey: spec.apiKey,
        model: spec.model,
        mode: spec.mode,
        maxBatch: spec.maxBatch,
      });
    case 'sglang':
      return new SGLangBackend({
        baseUrl: spec.baseUrl,
        apiKey: spec.apiKey,
        model: spec.model,
        maxBatch: spec.maxBatch,
      });
  }
}
