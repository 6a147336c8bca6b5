// OpenAI-compatible HTTP backend (vLLM, SGLang's OpenAI server, hosted APIs) with top-k logprobs.
// Also home of what the HTTP backends share beyond HTTP itself: prompt tokenisation, and aligning the server's
// per-token strings with the generated text.
import { z } from 'zod';
import type { BackendLoad, BackendRequest, InferenceBackend, RawGeneration, TokenLogprob } from '../types.js';
import { type ChatTemplate, renderChatTemplate } from './chat-template.js';
import {
  BackendHttpError,
  BackendProtocolError,
  checkHealth,
  HttpBackendLoad,
  type HttpClientOptions,
  namingServer,
  parseResponse,
  postBackendJson,
} from './http.js';

// ---------------------------------------------------------------------------------------------------------------
// Prompt token ids

export type Tokenizer = (prompt: string, signal: AbortSignal, deadline: number) => Promise<number[]>;

const TokenizeResponse = z.object({ tokens: z.array(z.number().int()) });

/** The root of an OpenAI-style base URL: vLLM and SGLang serve /tokenize beside /v1, not under it. */
export function serverRoot(baseUrl: string): string {
  return baseUrl.replace(/\/+$/, '').replace(/\/v1$/, '');
}

/** A tokenizer backed by the server's own POST /tokenize (vLLM and SGLang share the request and answer shape). */
export function serverTokenizer(url: string, opts: { model?: string } & HttpClientOptions = {}): Tokenizer {
  return async (prompt, signal, deadline) => {
    const body = await postBackendJson(
      url,
      // The chat template already wrote every special token; letting the server add a BOS would shift the prompt.
      { ...(opts.model ? { model: opts.model } : {}), prompt, add_special_tokens: false },
      opts,
      deadline,
      signal,
    );
    return parseResponse(TokenizeResponse, body, `POST ${url} (tokenize)`).tokens;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Token/text alignment

const RESYNC_WINDOW = 16;

/** Undo the usual ways a server's per-token strings differ from the decoded text. */
function normaliseToken(t: string): string {
  // OpenAI spells undecodable partial UTF-8 tokens as "bytes:\xe2\x80"; their character lands on a later token.
  if (t.startsWith('bytes:')) return '';
  return t
    .replace(/\uFFFD/g, '')
    .replace(/\u0120/g, ' ') // byte-level BPE space (Ġ)
    .replace(/\u010A/g, '\n') // byte-level BPE newline (Ċ)
    .replace(/\u0109/g, '\t') // byte-level BPE tab (ĉ)
    .replace(/\u2581/g, ' '); // SentencePiece space (▁)
}

function alignByBytes(text: string, bytes: readonly (readonly number[])[]): string[] | undefined {
  // Decoded as a stream, token by token: each token gets the characters its bytes complete (a split code point goes
  // to the token that carries its last byte), and invalid bytes become U+FFFD exactly as in the whole text's decode.
  // A leading byte-order mark is text the server kept: not dropped as a decoder does by default.
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  const pieces = bytes.map((b, i) => {
    const piece = decoder.decode(new Uint8Array(b), { stream: true });
    return i === bytes.length - 1 ? piece + decoder.decode() : piece;
  });
  // A stop string the server trimmed from the text may still be in the token stream: a prefix match is enough.
  if (!pieces.join('').startsWith(text)) return undefined;
  let pos = 0;
  return pieces.map((piece) => {
    const end = Math.min(text.length, pos + piece.length);
    const own = text.slice(pos, end);
    pos = end;
    return own;
  });
}

function alignGreedy(text: string, raw: readonly string[]): string[] {
  const out: string[] = new Array(raw.length);
  const norm = raw.map(normaliseToken);
  let cur = 0;
  for (let i = 0; i < raw.length; i++) {
    const t = raw[i]!;
    if (t.length > 0 && text.startsWith(t, cur)) {
      out[i] = t;
      cur += t.length;
      continue;
    }
    const n = norm[i]!;
    if (n.length > 0 && text.startsWith(n, cur)) {
      out[i] = n;
      cur += n.length;
      continue;
    }
    // Unmatched: give this token the text up to where the next visible token matches, within a small window,
    // so one odd token does not shift every later token's boundary.
    let take = Math.min(n.length, text.length - cur);
    let j = i + 1;
    while (j < norm.length && norm[j]!.length === 0) j++;
    const next = j < norm.length ? norm[j]! : '';
    if (next.length > 0) {
      const window = text.slice(cur, cur + n.length + RESYNC_WINDOW + next.length);
      const at = window.indexOf(next);
      if (at >= 0) take = at;
      // Text the server left out (a think block its reasoning parser stripped, a special token): a later token
      // matches right here, so this one takes nothing rather than the text that token and those after it carry.
      else if (laterTokenMatchesAt(text, cur, norm, j + 1)) take = 0;
    }
    out[i] = text.slice(cur, cur + take);
    cur += take;
  }
  if (cur < text.length && out.length > 0) out[out.length - 1] += text.slice(cur);
  return out;
}

/** How far ahead alignGreedy looks for a token that matches where the text resumes after text the server left out. */
const LEFT_OUT_LOOKAHEAD = 32;

/**
 * Whether one of the visible tokens from `from` on (a few dozen at most) matches `text` at `at`, and the visible
 * token after it matches where it ends: two tokens in a row, so a one-character coincidence does not count.
 */
function laterTokenMatchesAt(text: string, at: number, norm: readonly string[], from: number): boolean {
  for (let j = from; j < Math.min(norm.length, from + LEFT_OUT_LOOKAHEAD); j++) {
    const t = norm[j]!;
    if (t.length === 0 || !text.startsWith(t, at)) continue;
    let k = j + 1;
    while (k < norm.length && norm[k]!.length === 0) k++;
    const end = at + t.length;
    if (k >= norm.length || end >= text.length || text.startsWith(norm[k]!, end)) return true;
  }
  return false;
}

export interface AlignedTokens {
  tokens: string[];
  /** False when the server's strings had to be reconciled approximately (boundaries may be off by a few characters). */
  exact: boolean;
}

/**
 * Make per-token strings concatenate exactly to `text`, as RawGeneration promises, keeping one entry per generated
 * token so logprobs stay index-aligned. Servers break the promise with partial UTF-8 tokens (U+FFFD or "bytes:"),
 * byte-level BPE spellings, stop strings trimmed from the text but not from the tokens, and special tokens.
 * Order of preference: the strings as sent; the OpenAI `bytes` field decoded as UTF-8; a greedy alignment that
 * resynchronises on the next matching token. Trailing tokens beyond the text become "" and leftover text goes to
 * the last token.
 */
export function alignTokensToText(
  text: string,
  raw: readonly string[],
  bytes?: readonly (readonly number[] | null | undefined)[],
): AlignedTokens {
  if (raw.join('') === text) return { tokens: [...raw], exact: true };
  if (raw.length === 0) {
    throw new BackendProtocolError('backend returned generated text but no per-token logprobs for it');
  }
  // vLLM started with --return-tokens-as-token-ids spells every token "token_id:<n>" (its bytes too): no alignment can
  // place them in the text, and regions would be scored on wrong boundaries without a word.
  if (raw.every((t) => TOKEN_ID_SPELLING.test(t)) && text.length > 0 && !TOKEN_ID_SPELLING.test(text))
    throw new BackendProtocolError(
      `backend spells its tokens as ids ('${raw[0]}'), not as text: start vLLM without --return-tokens-as-token-ids`,
    );
  if (bytes && bytes.length === raw.length && bytes.every((b) => Array.isArray(b))) {
    const byBytes = alignByBytes(text, bytes as readonly (readonly number[])[]);
    if (byBytes) return { tokens: byBytes, exact: true };
  }
  return { tokens: alignGreedy(text, raw), exact: false };
}

/**
 * `rebuilt` as `written` has it: the start of `written` up to where the last non-space character of `rebuilt` is, when
 * the two agree on every non-space character (a server rebuilt the text with whitespace trimmed); else `rebuilt`. What
 * `written` holds past that (an end-of-turn token, a stop string the server left out) stays out, as from the text.
 */
export function asWritten(rebuilt: string, written: string): string {
  let at = 0;
  for (let i = 0; i < rebuilt.length; i++) {
    if (/\s/.test(rebuilt[i]!)) continue;
    while (at < written.length && /\s/.test(written[at]!)) at++;
    if (written[at] !== rebuilt[i]) return rebuilt;
    at++;
  }
  return written.slice(0, at);
}

/** A token as vLLM spells it with --return-tokens-as-token-ids. */
const TOKEN_ID_SPELLING = /^token_id:\d+$/;

// ---------------------------------------------------------------------------------------------------------------
// Shared parsing helpers

/** The top-k logprobs, best first, at most k: servers add the chosen token or pad the list. */
export function topK(values: Iterable<number | null | undefined>, k: number): number[] {
  const out: number[] = [];
  for (const v of values) if (typeof v === 'number' && !Number.isNaN(v)) out.push(v);
  out.sort((a, b) => b - a);
  return out.length > k ? out.slice(0, k) : out;
}

/**
 * What a server's logprobs are: `raw`, the model's own distribution (vLLM's default, `--logprobs-mode raw_logprobs`),
 * or `processed`, taken after the request's temperature (SGLang's default, unless the server runs with
 * SGLANG_RETURN_ORIGINAL_LOGPROB=1; vLLM's `--logprobs-mode processed_logprobs`).
 */
export type LogprobsMode = 'raw' | 'processed';

/**
 * Puts processed top-k logprobs back on the model's scale, so a turn's entropies do not depend on which server
 * sampled it. After temperature T a server reports ℓ/T + c at each position (c: the tempered normaliser); times T that
 * is ℓ + c·T, which topKEntropy's renormalisation over the top k turns into the raw distribution's entropy exactly.
 * Greedy requests (T = 0) come back raw from either server. The sampled token's own logprob is left as reported.
 */
export function toModelScale(tokens: TokenLogprob[], temperature: unknown, mode: LogprobsMode): void {
  if (mode === 'raw' || typeof temperature !== 'number' || !(temperature > 0) || temperature === 1) return;
  for (const t of tokens) t.topLogprobs = t.topLogprobs.map((l) => l * temperature);
}

/**
 * A reply's usage, its cached tokens at most its prompt: servers have reported more (a cache hit counted in whole
 * blocks past the prompt's end), which would read as a hit rate over 100%.
 */
export function usageOf(
  promptTokens: number,
  cachedTokens: number,
  completionTokens: number,
): RawGeneration['usage'] {
  return { promptTokens, cachedPromptTokens: Math.min(cachedTokens, promptTokens), completionTokens };
}

/** The most top_logprobs the chat API takes (OpenAI's limit, vLLM's default --max-logprobs). */
const MAX_TOP_LOGPROBS = 20;

/** OpenAI's convention for "not in the top 20"; a null logprob means the same and must not become NaN downstream. */
export const UNLIKELY_LOGPROB = -9999;

// ---------------------------------------------------------------------------------------------------------------
// Response schemas

const Usage = z
  .object({
    prompt_tokens: z.number().int().nonnegative(),
    completion_tokens: z.number().int().nonnegative(),
    prompt_tokens_details: z.object({ cached_tokens: z.number().int().nonnegative().nullish() }).nullish(),
  })
  .nullish();

const ChatTokenLogprob = z.object({
  token: z.string(),
  logprob: z.number().nullable(),
  bytes: z.array(z.number().int()).nullish(),
  top_logprobs: z.array(z.object({ token: z.string().optional(), logprob: z.number().nullable() })).nullish(),
});

const ChatResponse = z.object({
  model: z.string().optional(),
  choices: z
    .array(
      z.object({
        message: z.object({
          content: z.string().nullish(),
          // vLLM/SGLang reasoning parsers move <think> out of content; both spellings are in use.
          reasoning_content: z.string().nullish(),
          reasoning: z.string().nullish(),
        }),
        logprobs: z.object({ content: z.array(ChatTokenLogprob).nullish() }).nullish(),
        finish_reason: z.string().nullish(),
      }),
    )
    .min(1),
  usage: Usage,
});

const CompletionResponse = z.object({
  model: z.string().optional(),
  choices: z
    .array(
      z.object({
        text: z.string(),
        logprobs: z
          .object({
            tokens: z.array(z.string()).nullish(),
            token_logprobs: z.array(z.number().nullable()).nullish(),
            top_logprobs: z.array(z.record(z.string(), z.number().nullable()).nullable()).nullish(),
          })
          .nullish(),
        finish_reason: z.string().nullish(),
      }),
    )
    .min(1),
  usage: Usage,
});

export function mapFinishReason(reason: string | null | undefined, backend: string): 'stop' | 'length' {
  if (reason === 'length') return 'length';
  if (reason === 'abort') {
    throw new BackendProtocolError(
      `${backend} backend: the server aborted the generation (finish_reason "abort")`,
      {
        retryable: true,
      },
    );
  }
  // vLLM's for a request its engine failed (a KV transfer lost, say): the text is not a finished turn.
  if (reason === 'error')
    throw new BackendProtocolError(
      `${backend} backend: the server failed the generation (finish_reason "error")`,
      { retryable: true },
    );
  // stop, eos, tool_calls, content_filter, or no reason at all: the model (or a filter) ended the turn.
  return 'stop';
}

// ---------------------------------------------------------------------------------------------------------------
// The backend

export interface OpenAIBackendOptions extends HttpClientOptions {
  /** e.g. http://127.0.0.1:8000/v1 */
  baseUrl: string;
  model: string;
  /** `chat` uses the server's chat template; `completions` renders the prompt here (see chatTemplate). Default chat. */
  mode?: 'chat' | 'completions';
  /** Completions mode only: how messages become a prompt. Default ChatML. */
  chatTemplate?: ChatTemplate;
  /**
   * Completions mode only: send the prompt as token ids. Uses `tokenize` when given, else the server's
   * POST /tokenize at `tokenizeUrl` (default: the base URL's root + /tokenize).
   */
  promptTokenIds?: boolean;
  tokenize?: Tokenizer;
  tokenizeUrl?: string;
  /** Merged into every request body (e.g. top_p, skip_special_tokens, chat_template_kwargs). */
  extraBody?: Record<string, unknown>;
  /** Reported by load() so the member can announce it; the server's own batch limit (vLLM max_num_seqs). Default 256. */
  maxBatch?: number;
  /** Reported by load(); 0 means unknown. */
  cacheCapacityTokens?: number;
  /** What the server's logprobs are (see LogprobsMode). Default `raw`, as vLLM reports them. */
  logprobs?: LogprobsMode;
}

/** The server has no model by the name the request gave: not retryable, no other member of the pool would have it. */
export class ModelNotServedError extends Error {
  override readonly name = 'ModelNotServedError';
  readonly retryable = false;
}

export class OpenAIBackend implements InferenceBackend {
  readonly kind = 'openai';
  private readonly base: string;
  private readonly mode: 'chat' | 'completions';
  private readonly tokenizer: Tokenizer | undefined;
  private readonly inFlight: HttpBackendLoad;
  /** The most top logprobs the server took, once it refused more (see chat): asked for from then on. */
  private topLogprobsCap = MAX_TOP_LOGPROBS;

  constructor(private readonly opts: OpenAIBackendOptions) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
    this.inFlight = new HttpBackendLoad(opts);
    this.mode = opts.mode ?? 'chat';
    if (opts.promptTokenIds && this.mode === 'completions') {
      this.tokenizer =
        opts.tokenize ?? serverTokenizer(opts.tokenizeUrl ?? `${serverRoot(this.base)}/tokenize`, opts);
    }
  }

  load(): BackendLoad {
    return this.inFlight.load();
  }

  /** vLLM's and SGLang's GET /health, at the server's root. */
  health(signal: AbortSignal): Promise<void> {
    return checkHealth(`${serverRoot(this.base)}/health`, this.opts, signal);
  }

  async generate(req: BackendRequest, signal: AbortSignal): Promise<RawGeneration> {
    return this.inFlight
      .track(() => (this.mode === 'chat' ? this.chat(req, signal) : this.completions(req, signal)))
      .catch((err: unknown) => {
        throw namingServer(err, this.base);
      });
  }

  private async post(path: string, body: Record<string, unknown>, req: BackendRequest, signal: AbortSignal) {
    try {
      return await postBackendJson(
        `${this.base}${path}`,
        { ...body, ...this.opts.extraBody },
        this.opts,
        req.deadline,
        signal,
      );
    } catch (err) {
      // A 404 that names a model the job asked for (its spec's model, not this member's) is the job's mistake: every
      // member would answer the same, so it must fail the step now, not fail over and open every member's breaker.
      // A 404 that does not name it (a wrong path on this member) is this member's trouble, failed over as before.
      if (
        err instanceof BackendHttpError &&
        err.status === 404 &&
        req.model &&
        req.model !== this.opts.model &&
        err.bodyExcerpt.includes(req.model)
      )
        throw new ModelNotServedError(
          `model '${req.model}' (the job's model) is not served at ${this.base}` +
            `${this.opts.model ? ` (this member serves '${this.opts.model}')` : ''}: ${err.message}`,
          { cause: err },
        );
      throw err;
    }
  }

  /** The temperature the server sampled with: the request's, unless extraBody sets one. */
  private sentTemperature(req: BackendRequest): unknown {
    return this.opts.extraBody?.temperature ?? req.params.temperature;
  }

  private commonParams(req: BackendRequest): Record<string, unknown> {
    const p = req.params;
    return {
      model: req.model ?? this.opts.model,
      max_tokens: p.maxTokens,
      temperature: p.temperature,
      ...(p.seed !== undefined ? { seed: p.seed } : {}),
      ...(p.stop && p.stop.length > 0 ? { stop: p.stop } : {}),
    };
  }

  private async chat(req: BackendRequest, signal: AbortSignal): Promise<RawGeneration> {
    const k = req.params.topLogprobs;
    // vLLM lists the sampled token first, then the top k less one when the sampled token is not among them: one more
    // is asked for (within the API's 20) and the best k kept, which is right whether or not the server does that.
    // Never fewer than k: a job asking for more than the server takes hears its refusal, not fewer logprobs.
    const asked = k > 0 ? Math.min(k + 1, MAX_TOP_LOGPROBS, Math.max(k, this.topLogprobsCap)) : 0;
    const chat = (topLogprobs: number) =>
      this.post(
        '/chat/completions',
        { ...this.commonParams(req), messages: req.messages, logprobs: true, top_logprobs: topLogprobs },
        req,
        signal,
      );
    // A server whose limit is exactly k (vLLM's --max-logprobs) refuses the one more: asked again for k, which it takes,
    // and asked for k from then on.
    const body = await chat(asked).catch(async (err) => {
      const refusedOneMore =
        asked > k &&
        err instanceof BackendHttpError &&
        err.status === 400 &&
        /logprob/i.test(err.bodyExcerpt);
      if (!refusedOneMore) throw err;
      const answer = await chat(k);
      this.topLogprobsCap = k;
      return answer;
    });
    const res = parseResponse(ChatResponse, body, 'openai backend (chat)');
    const choice = res.choices[0]!;
    const content = choice.logprobs?.content;
    if (!content) {
      throw new BackendProtocolError(
        'openai backend: response has no choices[0].logprobs.content; the server must support logprobs=true with top_logprobs',
      );
    }
    const rawTokens: string[] = [];
    const bytes: (number[] | null | undefined)[] = [];
    const tokens: TokenLogprob[] = [];
    let anyTop = false;
    for (let i = 0; i < content.length; i++) {
      const c = content[i]!;
      if (k > 0 && !c.top_logprobs) {
        throw new BackendProtocolError(
          `openai backend: response has no choices[0].logprobs.content[${i}].top_logprobs; the server must support top_logprobs=${k}`,
        );
      }
      const top = topK(
        (c.top_logprobs ?? []).map((t) => t.logprob),
        k,
      );
      if (top.length > 0) anyTop = true;
      rawTokens.push(c.token);
      bytes.push(c.bytes);
      tokens.push({ token: c.token, logprob: c.logprob ?? UNLIKELY_LOGPROB, topLogprobs: top });
    }
    if (k > 0 && content.length > 0 && !anyTop) {
      throw new BackendProtocolError(
        `openai backend: choices[0].logprobs.content[].top_logprobs are all empty; the server ignored top_logprobs=${k}`,
      );
    }
    toModelScale(tokens, this.sentTemperature(req), this.opts.logprobs ?? 'raw');
    const reasoning = choice.message.reasoning_content ?? choice.message.reasoning;
    let text = choice.message.content ?? '';
    // With a reasoning parser on, the server strips <think> from content while logprobs still cover it; the agent
    // parses the Tongyi format itself, so the think block is put back where the model wrote it. It is closed only
    // where the model closed it: a generation cut off mid-thought comes back as reasoning alone (content null).
    if (reasoning) {
      // The tokens' bytes, where the server gave them all, are the text as written: SGLang's parser strips the
      // whitespace around the reasoning and the content, and splits at a tool call the model opened without closing
      // its thought.
      const written =
        bytes.length > 0 && bytes.every((b) => Array.isArray(b))
          ? new TextDecoder('utf-8', { ignoreBOM: true }).decode(
              Uint8Array.from((bytes as number[][]).flat()),
            )
          : undefined;
      const closed =
        written !== undefined
          ? written.includes('</think>')
          : choice.message.content != null || rawTokens.some((t) => t.includes('</think>'));
      text = `<think>${reasoning}${closed ? '</think>' : ''}${text}`;
      if (written !== undefined) text = asWritten(text, written);
    }
    const aligned = alignTokensToText(text, rawTokens, bytes);
    for (let i = 0; i < tokens.length; i++) tokens[i]!.token = aligned.tokens[i]!;
    return {
      text,
      tokens,
      usage: usageOf(
        res.usage?.prompt_tokens ?? 0,
        res.usage?.prompt_tokens_details?.cached_tokens ?? 0,
        res.usage?.completion_tokens ?? tokens.length,
      ),
      finishReason: mapFinishReason(choice.finish_reason, 'openai'),
      model: res.model ?? req.model ?? this.opts.model,
    };
  }

  private async completions(req: BackendRequest, signal: AbortSignal): Promise<RawGeneration> {
    const k = req.params.topLogprobs;
    const rendered = renderChatTemplate(this.opts.chatTemplate ?? 'chatml', req.messages);
    const prompt = this.tokenizer ? await this.tokenizer(rendered, signal, req.deadline) : rendered;
    const body = await this.post(
      '/completions',
      { ...this.commonParams(req), prompt, logprobs: k },
      req,
      signal,
    );
    const res = parseResponse(CompletionResponse, body, 'openai backend (completions)');
    const choice = res.choices[0]!;
    const lp = choice.logprobs;
    if (!lp?.tokens) {
      throw new BackendProtocolError(
        'openai backend: response has no choices[0].logprobs.tokens; the server must support logprobs=k on /completions',
      );
    }
    if (!lp.token_logprobs || lp.token_logprobs.length !== lp.tokens.length) {
      throw new BackendProtocolError(
        'openai backend: choices[0].logprobs.token_logprobs is missing or not one per token in choices[0].logprobs.tokens',
      );
    }
    if (k > 0 && (!lp.top_logprobs || lp.top_logprobs.length !== lp.tokens.length)) {
      throw new BackendProtocolError(
        `openai backend: choices[0].logprobs.top_logprobs is missing or not one per token; the server must support logprobs=${k}`,
      );
    }
    const aligned = alignTokensToText(choice.text, lp.tokens);
    const tokens: TokenLogprob[] = lp.tokens.map((_, i) => ({
      token: aligned.tokens[i]!,
      logprob: lp.token_logprobs![i] ?? UNLIKELY_LOGPROB,
      // Keyed by token string, so two ids that decode alike (byte-fallback pieces of one character) collapse into one
      // entry, and vLLM keeps the lower-ranked one. Chat mode's lists keep every alternative: it is the exact mode.
      topLogprobs: topK(Object.values(lp.top_logprobs?.[i] ?? {}), k),
    }));
    // As in chat mode: entries all null would read as every entropy 0.
    if (k > 0 && tokens.length > 0 && tokens.every((t) => t.topLogprobs.length === 0))
      throw new BackendProtocolError(
        `openai backend: choices[0].logprobs.top_logprobs entries are all empty; the server ignored logprobs=${k}`,
      );
    toModelScale(tokens, this.sentTemperature(req), this.opts.logprobs ?? 'raw');
    return {
      text: choice.text,
      tokens,
      usage: usageOf(
        res.usage?.prompt_tokens ?? (Array.isArray(prompt) ? prompt.length : 0),
        res.usage?.prompt_tokens_details?.cached_tokens ?? 0,
        res.usage?.completion_tokens ?? tokens.length,
      ),
      finishReason: mapFinishReason(choice.finish_reason, 'openai'),
      model: res.model ?? req.model ?? this.opts.model,
    };
  }
}
