// SGLang's native POST /generate: the prompt is rendered here (or sent as input_ids), logprobs come back in
// meta_info as [logprob, token_id, token_text] triples, and cached_tokens says how much of the prompt hit the radix cache.
import { z } from 'zod';
import {
  type BackendLoad,
  type BackendRequest,
  CONTEXT_LENGTH_MESSAGE,
  ContextLengthError,
  type InferenceBackend,
  type RawGeneration,
  type TokenLogprob,
} from '../types.js';
import { type ChatTemplate, renderChatTemplate } from './chat-template.js';
import {
  BackendHttpError,
  BackendProtocolError,
  checkHealth,
  HttpBackendLoad,
  type HttpClientOptions,
  isRetryableStatus,
  namingServer,
  parseResponse,
  postBackendJson,
} from './http.js';
import {
  alignTokensToText,
  type LogprobsMode,
  mapFinishReason,
  serverTokenizer,
  type Tokenizer,
  toModelScale,
  topK,
  UNLIKELY_LOGPROB,
  usageOf,
} from './openai.js';

export interface SGLangBackendOptions extends HttpClientOptions {
  /** The server root, e.g. http://127.0.0.1:30000 (not the /v1 OpenAI prefix). */
  baseUrl: string;
  /** Reported as RawGeneration.model; /generate serves whatever the server loaded. */
  model?: string;
  /** How messages become the prompt. Default ChatML. */
  chatTemplate?: ChatTemplate;
  /** Send `input_ids` instead of `text`, tokenised by `tokenize` or else by the server's POST /tokenize. */
  inputIds?: boolean;
  tokenize?: Tokenizer;
  /**
   * Name of the per-request seed in sampling_params. Recent SGLang calls it `sampling_seed`; older servers reject
   * unknown sampling params, so null leaves the seed out. Default 'sampling_seed'.
   */
  seedParam?: string | null;
  /** Merged into sampling_params (e.g. top_p, top_k, skip_special_tokens). */
  extraSamplingParams?: Record<string, unknown>;
  /** Merged into the request body (e.g. lora_path, rid). */
  extraBody?: Record<string, unknown>;
  /** Reported by load(); SGLang's --max-running-requests. Default 256. */
  maxBatch?: number;
  /** Reported by load(); 0 means unknown. */
  cacheCapacityTokens?: number;
  /**
   * What the server's logprobs are (see LogprobsMode). Default `processed`: SGLang reports them after temperature
   * unless started with SGLANG_RETURN_ORIGINAL_LOGPROB=1 (then `raw`).
   */
  logprobs?: LogprobsMode;
}

/** [logprob, token_id, token_text]; the text is null unless return_text_in_logprobs was set. */
const LogprobTriple = z
  .tuple([z.number().nullable(), z.number().int(), z.string().nullish()])
  .rest(z.unknown());

/** An abort carries the HTTP status SGLang gives it (400: the request itself is wrong) in recent versions. */
const FinishReason = z
  .object({ type: z.string(), message: z.string().nullish(), status_code: z.number().int().nullish() })
  .loose()
  .nullish();

const GenerateItem = z.object({
  text: z.string(),
  meta_info: z.object({
    prompt_tokens: z.number().int().nonnegative(),
    completion_tokens: z.number().int().nonnegative(),
    cached_tokens: z.number().int().nonnegative().nullish(),
    finish_reason: FinishReason,
    output_token_logprobs: z.array(LogprobTriple).nullish(),
    output_top_logprobs: z.array(z.array(LogprobTriple).nullable()).nullish(),
  }),
});

// A request with one prompt gets one object back; some versions wrap it in a one-element list, unwrapped before the
// object is checked so a mismatch names its field (a union would say only that neither shape matched).
const GenerateResponse = z.preprocess((b) => (Array.isArray(b) && b.length === 1 ? b[0] : b), GenerateItem);

export class SGLangBackend implements InferenceBackend {
  readonly kind = 'sglang';
  private readonly base: string;
  private readonly tokenizer: Tokenizer | undefined;
  private readonly inFlight: HttpBackendLoad;

  constructor(private readonly opts: SGLangBackendOptions) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
    this.inFlight = new HttpBackendLoad(opts);
    if (opts.inputIds) {
      this.tokenizer = opts.tokenize ?? serverTokenizer(`${this.base}/tokenize`, opts);
    }
  }

  load(): BackendLoad {
    return this.inFlight.load();
  }

  /** SGLang's GET /health. */
  health(signal: AbortSignal): Promise<void> {
    return checkHealth(`${this.base}/health`, this.opts, signal);
  }

  async generate(req: BackendRequest, signal: AbortSignal): Promise<RawGeneration> {
    return this.inFlight
      .track(() => this.generateOnce(req, signal))
      .catch((err: unknown) => {
        throw namingServer(err, this.base);
      });
  }

  private async generateOnce(req: BackendRequest, signal: AbortSignal): Promise<RawGeneration> {
    const p = req.params;
    const k = p.topLogprobs;
    const rendered = renderChatTemplate(this.opts.chatTemplate ?? 'chatml', req.messages);
    const prompt = this.tokenizer
      ? { input_ids: await this.tokenizer(rendered, signal, req.deadline) }
      : { text: rendered };
    const seedParam = this.opts.seedParam === undefined ? 'sampling_seed' : this.opts.seedParam;
    // Sampling parameters given in extraBody (`--extra-body '{"sampling_params": {...}}'`) join the request's rather
    // than replace them: the server would otherwise sample with its own temperature and no token limit.
    const { sampling_params: extraSampling, ...extraBody } = this.opts.extraBody ?? {};
    const sampling: Record<string, unknown> = {
      max_new_tokens: p.maxTokens,
      temperature: p.temperature,
      ...(p.stop && p.stop.length > 0 ? { stop: p.stop } : {}),
      ...(seedParam && p.seed !== undefined ? { [seedParam]: p.seed } : {}),
      ...this.opts.extraSamplingParams,
      ...(extraSampling as Record<string, unknown> | undefined),
    };
    const body = await postBackendJson(
      `${this.base}/generate`,
      {
        ...prompt,
        sampling_params: sampling,
        return_logprob: true,
        top_logprobs_num: k,
        return_text_in_logprobs: true,
        stream: false,
        ...extraBody,
      },
      this.opts,
      req.deadline,
      signal,
    ).catch((err: unknown) => {
      // SGLang answers a sampling parameter it does not know with a bare 500: without a word on what it might be, a
      // server older than `sampling_seed` (or a misspelt extra parameter) reads as an outage of every member.
      if (
        err instanceof BackendHttpError &&
        err.status === 500 &&
        err.bodyExcerpt.trim() === 'Internal Server Error'
      )
        err.message += `; SGLang answers so to a sampling parameter it does not know (sent: ${Object.keys(sampling).join(', ')})${
          seedParam && p.seed !== undefined
            ? `: if every request fails, a server without '${seedParam}' needs the member started with --seed-param none`
            : ''
        }`;
      throw err;
    });
    const item = parseResponse(GenerateResponse, body, 'sglang backend (/generate)');
    const meta = item.meta_info;
    if (meta.finish_reason?.type === 'abort') {
      // Some SGLang versions refuse an over-long prompt this way rather than with a 400: no member would take it.
      if (CONTEXT_LENGTH_MESSAGE.test(meta.finish_reason.message ?? ''))
        throw new ContextLengthError(
          `sglang backend: the server refused the prompt: ${meta.finish_reason.message}`,
        );
      // A request the server refused as invalid (status 4xx: a bad parameter, token ids out of range) fails alike on
      // every member; a server that gave up on its own (shutting down, out of memory, no status) may not.
      const status = meta.finish_reason.status_code;
      const refused =
        typeof status === 'number' && status >= 400 && status < 500 && !isRetryableStatus(status);
      // The status goes with it: a full request queue (429, or 503 "queue is full") is the member being busy, not
      // failing (see the member's replyError).
      throw new BackendProtocolError(
        `sglang backend: the server aborted the generation${status ? ` (status ${status})` : ''}${meta.finish_reason.message ? `: ${meta.finish_reason.message}` : ''}`,
        { retryable: !refused, ...(typeof status === 'number' ? { relayedStatus: status } : {}) },
      );
    }
    const out = meta.output_token_logprobs;
    if (!out) {
      throw new BackendProtocolError(
        'sglang backend: response has no meta_info.output_token_logprobs; the request must set return_logprob=true',
      );
    }
    const top = meta.output_top_logprobs;
    if (k > 0 && (!top || top.length !== out.length)) {
      throw new BackendProtocolError(
        `sglang backend: response has no meta_info.output_top_logprobs with one entry per output token; top_logprobs_num=${k} was ignored`,
      );
    }
    const rawTokens = out.map((t, i) => {
      const s = t[2];
      if (typeof s !== 'string') {
        throw new BackendProtocolError(
          `sglang backend: meta_info.output_token_logprobs[${i}] has no token text; the server must honour return_text_in_logprobs=true`,
        );
      }
      return s;
    });
    const aligned = alignTokensToText(item.text, rawTokens);
    const tokens: TokenLogprob[] = out.map((t, i) => ({
      token: aligned.tokens[i]!,
      logprob: t[0] ?? UNLIKELY_LOGPROB,
      topLogprobs: topK(
        (top?.[i] ?? []).map((x) => x[0]),
        k,
      ),
    }));
    // SGLang writes null for a position it has no top logprobs for: every position so, and every entropy would read
    // 0 (every turn perfectly certain), which would silently steer the branching.
    if (k > 0 && tokens.length > 0 && tokens.every((t) => t.topLogprobs.length === 0))
      throw new BackendProtocolError(
        `sglang backend: meta_info.output_top_logprobs entries are all empty; the server ignored top_logprobs_num=${k}`,
      );
    toModelScale(tokens, sampling.temperature, this.opts.logprobs ?? 'processed');
    return {
      text: item.text,
      tokens,
      usage: usageOf(meta.prompt_tokens, meta.cached_tokens ?? 0, meta.completion_tokens),
      finishReason: mapFinishReason(meta.finish_reason?.type, 'sglang'),
      model: this.opts.model ?? 'sglang',
    };
  }
}
