// The simulator as an inference backend: the simulated policy for the text and logprobs, the
// serving model for timing, batching and prefix-cache accounting.

import { timerDeadline } from '../inference/retry.js';
import {
  BackendDeadlineError,
  type BackendLoad,
  type BackendRequest,
  ContextLengthError,
  type InferenceBackend,
  type RawGeneration,
} from '../inference/types.js';
import { type SimTokenLogprob, simGenerate } from './model.js';
import { SimServer, type SimServerStats, type SimServingProfile } from './serving.js';
import { renderChatPrompt, simTokenize } from './tokenizer.js';

export interface SimBackendOptions {
  profile?: Partial<SimServingProfile>;
  /** Model name reported in generations ("muse-sim" by default). */
  modelName?: string;
  /** Context length: prompt plus requested completion tokens (vLLM's max_model_len). Default 131,072. */
  maxModelLen?: number;
}

export const DEFAULT_SIM_MAX_MODEL_LEN = 131_072;

/** A RawGeneration with the simulated server's timing attached (useful to benchmarks). */
export interface SimRawGeneration extends RawGeneration {
  tokens: SimTokenLogprob[];
  timing: { queuedMs: number; serviceMs: number };
}

export class SimBackend implements InferenceBackend {
  readonly kind = 'sim';
  readonly modelName: string;
  readonly server: SimServer;
  readonly maxModelLen: number;

  constructor(options: SimBackendOptions = {}) {
    this.modelName = options.modelName ?? 'muse-sim';
    this.maxModelLen = options.maxModelLen ?? DEFAULT_SIM_MAX_MODEL_LEN;
    if (!(Number.isInteger(this.maxModelLen) && this.maxModelLen > 0))
      throw new RangeError(`maxModelLen must be a positive integer, got ${options.maxModelLen}`);
    this.server = new SimServer(options.profile);
  }

  async generate(request: BackendRequest, signal: AbortSignal): Promise<SimRawGeneration> {
    const req = { ...request, deadline: timerDeadline(request.deadline) };
    const budget = req.deadline - Date.now();
    if (budget <= 0) throw deadlineError(req, budget);
    if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('request aborted');
    const prompt = simTokenize(renderChatPrompt(req.messages));
    if (prompt.length + req.params.maxTokens > this.maxModelLen) {
      throw new ContextLengthError(
        `This model's maximum context length is ${this.maxModelLen} tokens. However, you requested ` +
          `${prompt.length + req.params.maxTokens} tokens (${prompt.length} in the messages, ${req.params.maxTokens} ` +
          'in the completion). Please reduce the length of the messages or completion.',
      );
    }
    const gen = simGenerate(req.messages, req.params);

    const controller = new AbortController();
    const onAbort = () =>
      controller.abort(signal.reason instanceof Error ? signal.reason : new Error('request aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => controller.abort(deadlineError(req, budget)), budget);
    try {
      const r = await this.server.run(
        prompt,
        gen.tokens.length,
        controller.signal,
        continuation(prompt, gen.text),
      );
      return {
        text: gen.text,
        tokens: gen.tokens,
        usage: {
          promptTokens: prompt.length,
          cachedPromptTokens: r.cachedPromptTokens,
          completionTokens: gen.tokens.length,
        },
        finishReason: gen.finishReason,
        model: this.modelName,
        timing: { queuedMs: r.queuedMs, serviceMs: r.serviceMs },
      };
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  }

  load(): BackendLoad {
    return this.server.load();
  }

  stats(): SimServerStats {
    return this.server.stats();
  }

  async close(): Promise<void> {
    this.server.close();
  }
}

/**
 * The prompt's last token and the output, cut as the next turn's prompt (this prompt, the output as the assistant
 * message, more after it) will cut them: a piece can join across the boundary (the header's newline and a leading
 * '<'), and every earlier piece of the prompt ends before it.
 */
function continuation(prompt: readonly string[], output: string): string[] {
  return simTokenize((prompt[prompt.length - 1] ?? '') + output);
}

function deadlineError(req: BackendRequest, budgetMs: number): BackendDeadlineError {
  return new BackendDeadlineError(
    `sim backend: request ${req.id} exceeded its deadline ${new Date(req.deadline).toISOString()} (budget ${Math.round(budgetMs)} ms)`,
    req.deadline,
  );
}
