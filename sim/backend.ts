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
import { firstStop, type SimTokenLogprob, simGenerate } from './model.js';
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

/**
 * How the simulator's HTTP server asks for a generation, as a real server would serve it (sim/http.ts). Pool members
 * and benchmarks call the backend without it.
 */
export interface SimServing {
  /**
   * The prompt exactly as a raw-prompt endpoint (`/v1/completions`, `/generate`) was sent it: counted, cached and
   * checked against the window as sent, as a real server counts what it is given. The request's messages (parsed
   * from it) still drive the simulated model.
   */
  promptText?: string;
  /** The prompt's tokens, when it was sent as token ids: counted and cached one per id, as a server counts ids. */
  promptTokens?: readonly string[];
  /**
   * Stop strings, applied as a server applies them: the generation ends where the first appears, and only the
   * tokens through it are decoded (timed and cached); the text ends before it (stopAtString).
   */
  stopStrings?: readonly string[];
  /** No max_tokens was given: generate up to the end of the window at most (vLLM's default). */
  capToWindow?: boolean;
}

/** A RawGeneration with the simulated server's timing attached (useful to benchmarks). */
export interface SimRawGeneration extends RawGeneration {
  tokens: SimTokenLogprob[];
  /** The stop string the generation ended at (stopAtString). */
  stopMatched?: string;
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

  async generate(
    request: BackendRequest,
    signal: AbortSignal,
    serving: SimServing = {},
  ): Promise<SimRawGeneration> {
    const req = { ...request, deadline: timerDeadline(request.deadline) };
    const budget = req.deadline - Date.now();
    if (budget <= 0) throw deadlineError(req, budget);
    if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('request aborted');
    const prompt = serving.promptTokens ?? simTokenize(serving.promptText ?? renderChatPrompt(req.messages));
    const maxTokens = serving.capToWindow
      ? Math.min(req.params.maxTokens, Math.max(1, this.maxModelLen - prompt.length))
      : req.params.maxTokens;
    if (prompt.length + maxTokens > this.maxModelLen) {
      throw new ContextLengthError(
        `This model's maximum context length is ${this.maxModelLen} tokens. However, you requested ` +
          `${prompt.length + maxTokens} tokens (${prompt.length} in the messages, ${maxTokens} ` +
          'in the completion). Please reduce the length of the messages or completion.',
      );
    }
    const gen = stopAtString(simGenerate(req.messages, { ...req.params, maxTokens }), serving.stopStrings);

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
        // What was decoded: through a stop string, which the text leaves out.
        continuation(prompt, gen.tokens.map((t) => t.token).join('')),
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
        ...(gen.stopMatched !== undefined ? { stopMatched: gen.stopMatched } : {}),
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

/**
 * A generation ended where a stop string first appears, as a server ends it: the text stops before the string, while
 * the tokens that wrote it (through the one that completes it) stay in the logprobs and the completion count, so
 * the tokens no longer spell the text exactly; `stopMatched` names the string. Unchanged when no stop string appears.
 */
export function stopAtString<
  G extends Pick<RawGeneration, 'text' | 'finishReason'> & {
    tokens: readonly { token: string }[];
    usage?: RawGeneration['usage'];
  },
>(g: G, stop: readonly string[] | undefined): G & { stopMatched?: string } {
  const found = firstStop(g.text, stop ?? []);
  if (!found) return g;
  let kept = 0;
  for (let pos = 0; kept < g.tokens.length && pos < found.end; kept++) pos += g.tokens[kept]!.token.length;
  return {
    ...g,
    text: g.text.slice(0, found.at),
    tokens: g.tokens.slice(0, kept),
    finishReason: 'stop',
    stopMatched: g.text.slice(found.at, found.end),
    ...(g.usage ? { usage: { ...g.usage, completionTokens: kept } } : {}),
  };
}
