// The inference contract between rollout workers, pool members and backends.
import type { ChatMessage, RegionScores, TokenUsage } from '../agent/types.js';

export interface GenerateParams {
  maxTokens: number;
  temperature: number;
  /** k for top-k logprobs; the reference uses 16. */
  topLogprobs: number;
  /** Sampling seed; different seeds give different samples of the same prompt. */
  seed?: number;
  stop?: string[];
}

/** What a backend is asked to do: one chat completion with top-k logprobs. */
export interface BackendRequest {
  id: string;
  model?: string;
  messages: ChatMessage[];
  params: GenerateParams;
  /** Absolute deadline, epoch milliseconds; the backend must give up after it. */
  deadline: number;
}

/** One generated token with the logprobs of its top-k alternatives (the chosen token may or may not be among them). */
export interface TokenLogprob {
  token: string;
  logprob: number;
  topLogprobs: number[];
}

export interface RawGeneration {
  text: string;
  /** Generated tokens in order; their `token` strings concatenate to `text`. */
  tokens: TokenLogprob[];
  usage: TokenUsage;
  finishReason: 'stop' | 'length';
  model: string;
}

/** Load a backend reports so a member can announce it (queue depth, prefix-cache occupancy). */
export interface BackendLoad {
  running: number;
  queued: number;
  maxBatch: number;
  cacheCapacityTokens: number;
  cacheUsedTokens: number;
}

export interface InferenceBackend {
  readonly kind: string;
  generate(req: BackendRequest, signal: AbortSignal): Promise<RawGeneration>;
  load?(): BackendLoad;
  /**
   * Resolves when the server answers its health check and rejects when it does not (down, not answering, failing);
   * rejects with HealthCheckUnsupportedError when the server has no health endpoint. Absent when there is nothing to
   * check (the simulator).
   */
  health?(signal: AbortSignal): Promise<void>;
  close?(): Promise<void>;
}

/** What a pool member returns: the text plus uncertainty computed where the logprobs are. */
export interface Generation {
  text: string;
  /** One entropy (nats, top-k renormalised) per generated token. */
  entropies: Float32Array<ArrayBuffer>;
  regions: RegionScores;
  usage: TokenUsage;
  finishReason: 'stop' | 'length';
  model: string;
  /** The member's backend kind ('sim', 'openai', 'sglang'); absent from members that predate it. */
  backend?: string;
  memberId: string;
}

/**
 * What produced a generation, as results show it: the model name and the backend serving it. The simulator's text is
 * no model's, so its label says it was simulated whatever model name the simulator was given.
 */
export function servedBy(g: Pick<Generation, 'model' | 'backend'>): string {
  if (g.backend === 'sim') return `${g.model} (simulator, not a language model)`;
  return g.backend ? `${g.model} (${g.backend} backend)` : g.model;
}

/**
 * The server refused the prompt as longer than its context (vLLM, SGLang and OpenAI all answer HTTP 400 with a
 * message saying so). No member serving the same model would take it, and retrying cannot help; the trajectory
 * must end or shrink its context instead, so it is told apart from other rejections.
 */
export class ContextLengthError extends Error {
  override readonly name = 'ContextLengthError';
  readonly retryable = false;
}

/**
 * Error texts of servers refusing a prompt over the context length: vLLM and OpenAI ("maximum context length"; vLLM's
 * input processor for token-id prompts: "The decoder prompt (length N) is longer than the maximum model length"),
 * SGLang's scheduler ("Input length (N tokens) exceeds the maximum allowed length"), TGI ("input is too long").
 */
export const CONTEXT_LENGTH_MESSAGE =
  /context[ _]length|maximum context|context window|input is too long|exceeds the maximum allowed length|longer than the maximum model length/i;

/**
 * A backend's request passed its deadline before a usable answer came back. Any backend throws it (and a member
 * aborts its backend with it), so the member can report `deadline_exceeded`. Not retryable: the deadline is the
 * request's, the same on every member, or its attempt's, which the router gives up on at the same moment.
 *
 * Other backend errors may carry a `retryable` flag of their own: whether another member could do better.
 */
export class BackendDeadlineError extends Error {
  override readonly name = 'BackendDeadlineError';
  readonly retryable = false;
  constructor(
    message: string,
    readonly deadline: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
