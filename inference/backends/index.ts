// Backend selection for a pool member: the simulator, any OpenAI-compatible server, or SGLang's native API.
import { z } from 'zod';
import { formatZodError } from '../../common/errors.js';
import { SimBackend } from '../../sim/backend.js';
import type { InferenceBackend } from '../types.js';
import { OpenAIBackend } from './openai.js';
import { SGLangBackend } from './sglang.js';

/** A chat template given as data (a function template is for code only); 'chatml' is the default. */
const ChatTemplateSpec = z.union([
  z.literal('chatml'),
  z
    .object({
      prefix: z.string().optional(),
      // Without {content} (a typo: "{ content }", "{Content}") every message would be dropped from the prompt, and
      // with token ids nothing downstream could notice.
      message: z
        .string()
        .min(1)
        .refine(
          (m) => m.includes('{content}'),
          'chatTemplate.message must contain {content}, where each message goes',
        ),
      generationPrompt: z.string(),
    })
    .strict(),
]);

/** What every HTTP backend takes besides its own options. */
const httpFields = {
  baseUrl: z.string().url(),
  apiKey: z.string().optional(),
  /** The server's batch limit (vLLM max_num_seqs, SGLang --max-running-requests), announced to routers. */
  maxBatch: z.number().int().positive().optional(),
  /**
   * The server's KV cache in tokens, announced to routers: prefix_affinity sizes its record of what the member holds
   * by it (unknown, the router falls back to its default).
   */
  cacheCapacityTokens: z.number().int().positive().optional(),
  /** Merged into every request body. */
  extraBody: z.record(z.string(), z.unknown()).optional(),
  /**
   * What the server's logprobs are: `raw` (the model's distribution) or `processed` (after temperature). Default: raw
   * for `openai` (vLLM's default), processed for `sglang` (SGLang's default).
   */
  logprobs: z.enum(['raw', 'processed']).optional(),
};

// Strict: a misspelled option would otherwise be dropped and the backend run without it.
export const BackendSpecSchema = z.discriminatedUnion('backend', [
  z
    .object({
      backend: z.literal('sim'),
      model: z.string().default('muse-sim'),
      /** Serving-time multiplier: 1 = the H100 profile in real time, 0 = no waiting (CI, step-overhead bench). */
      timeScale: z.number().min(0).default(0),
      maxBatch: z.number().int().positive().optional(),
      cacheCapacityTokens: z.number().int().positive().optional(),
      /** Context length (prompt + completion) past which the simulated server refuses a request, as vLLM does. */
      maxModelLen: z.number().int().positive().optional(),
    })
    .strict(),
  z
    .object({
      backend: z.literal('openai'),
      ...httpFields,
      model: z.string().min(1),
      mode: z.enum(['chat', 'completions']).default('chat'),
      /** Completions mode: how messages become the prompt. */
      chatTemplate: ChatTemplateSpec.optional(),
      /** Completions mode: send the prompt as token ids, from the server's POST /tokenize (or `tokenizeUrl`). */
      promptTokenIds: z.boolean().optional(),
      tokenizeUrl: z.string().url().optional(),
    })
    .strict()
    .refine((s) => s.mode === 'completions' || (s.promptTokenIds !== true && s.chatTemplate === undefined), {
      message:
        'promptTokenIds and chatTemplate apply to mode completions (chat mode uses the server template)',
      path: ['mode'],
    }),
  z
    .object({
      backend: z.literal('sglang'),
      ...httpFields,
      model: z.string().optional(),
      chatTemplate: ChatTemplateSpec.optional(),
      /** Send input_ids (from the server's POST /tokenize) instead of text. */
      inputIds: z.boolean().optional(),
      /** The per-request seed's name in sampling_params; null leaves it out (servers that reject unknown params). */
      seedParam: z.string().min(1).nullable().optional(),
      /** Merged into sampling_params. */
      extraSamplingParams: z.record(z.string(), z.unknown()).optional(),
    })
    .strict()
    .refine(
      (s) => {
        const sp = s.extraBody?.sampling_params;
        return sp === undefined || (typeof sp === 'object' && sp !== null && !Array.isArray(sp));
      },
      {
        message:
          'extraBody.sampling_params must be an object: it is merged into the request’s sampling_params',
        path: ['extraBody'],
      },
    ),
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
    case 'openai': {
      const { backend: _b, ...opts } = spec;
      return new OpenAIBackend(opts);
    }
    case 'sglang': {
      const { backend: _b, ...opts } = spec;
      return new SGLangBackend(opts);
    }
  }
}
