// The simulator behind the HTTP APIs real inference servers speak (OpenAI-compatible as served by
// vLLM/SGLang, plus SGLang's native /generate), so the real HTTP backend, its retries, timeouts
// and logprob parsing can be exercised end to end without a GPU.

import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import type { ChatMessage, Role } from '../agent/types.js';
import {
  BackendDeadlineError,
  type BackendRequest,
  ContextLengthError,
  type GenerateParams,
  type InferenceBackend,
  type RawGeneration,
  type TokenLogprob,
} from '../inference/types.js';
import { DEFAULT_SIM_MAX_MODEL_LEN, SimBackend, type SimServing, stopAtString } from './backend.js';
import {
  parseChatPrompt,
  renderChatPrompt,
  simDetokenize,
  simEncode,
  simTokenId,
  simTokensOf,
} from './tokenizer.js';

export interface SimHttpServerOptions {
  backend?: InferenceBackend;
  /** 0 (default) picks an ephemeral port. */
  port?: number;
  host?: string;
  /** Model name listed by /v1/models when the backend does not report one. */
  modelName?: string;
}

export interface SimHttpServer {
  url: string;
  close(): Promise<void>;
}

/**
 * The largest body read (256 MiB), under V8's longest string (just below 512 MiB: a body near that would fail as a
 * 500 when decoded, not a 413) and as much as a member reads of an answer.
 */
const MAX_BODY_BYTES = 256 * 1024 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** Sent as the whole body, as text, instead of the JSON error object (what a crashed handler answers). */
    readonly plainText = false,
  ) {
    super(message);
  }
}

// -- request schemas --------------------------------------------------------------------------

const ContentPart = z.object({ type: z.string(), text: z.string().optional() });
const ChatMessageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z.union([z.string(), z.array(ContentPart), z.null()]).optional(),
});
const Stop = z.union([z.string(), z.array(z.string())]).optional();
/** A prompt of nothing: vLLM refuses it, and a client sending one would otherwise go untested against that. */
const EMPTY_PROMPT = { error: 'the prompt cannot be empty' };
// Settings the simulated model cannot follow are refused by name, not ignored: a client would get other output than
// it asked for and not know why.
const NoLogitBias = z
  .record(z.string(), z.number())
  .refine(
    (b) => Object.keys(b).length === 0,
    'logit_bias is not simulated: the simulated model has no token ids to bias',
  )
  .nullish();
const TopK = z.number().int().min(0).max(20);

const ChatBody = z
  .object({
    model: z.string().optional(),
    messages: z.array(ChatMessageSchema).min(1),
    max_tokens: z.number().int().min(1).nullish(),
    max_completion_tokens: z.number().int().min(1).nullish(),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().min(0).max(1).nullish(),
    seed: z.number().int().nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: TopK.nullish(),
    stop: Stop.nullable(),
    n: z.literal(1).nullish(),
    stream: z.literal(false, { error: 'streaming is not simulated; set stream to false' }).nullish(),
    logit_bias: NoLogitBias,
    tools: z
      .array(z.unknown())
      .max(0, { error: 'tools are not simulated: the simulated model writes its tool calls as text' })
      .nullish(),
    response_format: z
      .object({
        type: z.literal('text', {
          error: 'response_format is not simulated: only {"type": "text"} is taken',
        }),
      })
      .nullish(),
  })
  .refine((b) => !b.top_logprobs || b.logprobs === true, {
    // As OpenAI and vLLM answer: asked for alternatives without logprobs, a client would get none and not know why.
    message: 'top_logprobs requires logprobs to be true',
    path: ['top_logprobs'],
  });

const CompletionBody = z.object({
  model: z.string().optional(),
  // A string, or token ids from /tokenize (vLLM accepts both; one prompt per request here).
  prompt: z.union([
    z.string().min(1, EMPTY_PROMPT),
    z.array(z.string().min(1, EMPTY_PROMPT)).length(1),
    z.array(z.number().int().min(0)).min(1),
    z.array(z.array(z.number().int().min(0)).min(1)).length(1),
  ]),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  logprobs: TopK.nullish(),
  stop: Stop.nullable(),
  n: z.literal(1).nullish(),
  stream: z.literal(false, { error: 'streaming is not simulated; set stream to false' }).nullish(),
  echo: z.literal(false, { error: 'echo is not simulated: the reply holds the completion only' }).nullish(),
  suffix: z
    .null({ error: 'suffix is not simulated: the simulated model does not fill in the middle' })
    .optional(),
  logit_bias: NoLogitBias,
});

/** A setting of SGLang's SamplingParams the simulator does not simulate: absent or null only. */
const notSimulated = (name: string, what: string) =>
  z.null({ error: `${name} is not simulated: the simulator has no ${what}` }).optional();

const GenerateBody = z
  .object({
    text: z
      .union([z.string().min(1, EMPTY_PROMPT), z.array(z.string().min(1, EMPTY_PROMPT)).length(1)])
      .optional(),
    input_ids: z.array(z.number().int().min(0)).min(1, EMPTY_PROMPT).optional(),
    // SGLang's SamplingParams takes only its own fields (`seed` is not one: it is `sampling_seed`): any other raises a
    // TypeError its /generate handler does not catch, answered as a plain-text 500. The simulator answers the same, so
    // a backend that sends a wrong name (or a seed an older server does not know) is tested as a real server fails.
    sampling_params: z
      .object({
        max_new_tokens: z.number().int().min(0).nullish(),
        temperature: z.number().min(0).nullish(),
        top_p: z.number().nullish(),
        top_k: z.number().int().nullish(),
        min_p: z.number().nullish(),
        stop: Stop.nullable(),
        stop_token_ids: z
          .array(z.number().int())
          .max(0, {
            error: 'stop_token_ids is not simulated: the simulated model has no token ids to stop at',
          })
          .nullish(),
        sampling_seed: z.number().int().nullish(),
        frequency_penalty: z.number().nullish(),
        presence_penalty: z.number().nullish(),
        repetition_penalty: z.number().nullish(),
        ignore_eos: z
          .literal(false, { error: 'ignore_eos is not simulated: the simulated model ends its turns itself' })
          .nullish(),
        skip_special_tokens: z.boolean().nullish(),
        spaces_between_special_tokens: z.boolean().nullish(),
        no_stop_trim: z
          .literal(false, { error: 'no_stop_trim is not simulated: the text ends before its stop string' })
          .nullish(),
        n: z.literal(1).nullish(),
        // SGLang's own fields the simulated model cannot follow: refused by name, as a setting it does not simulate,
        // not taken for a wrong name (a plain 500, which a router counts against the member).
        min_new_tokens: z
          .literal(0, { error: 'min_new_tokens is not simulated: the simulated model ends its turns itself' })
          .nullish(),
        json_schema: notSimulated('json_schema', 'constrained decoding'),
        regex: notSimulated('regex', 'constrained decoding'),
        ebnf: notSimulated('ebnf', 'constrained decoding'),
        structural_tag: notSimulated('structural_tag', 'constrained decoding'),
        stop_regex: notSimulated('stop_regex', 'stopping at a pattern'),
        logit_bias: z
          .record(z.string(), z.number())
          .refine((bias) => Object.keys(bias).length === 0, {
            error: 'logit_bias is not simulated: the simulated model has no token ids to bias',
          })
          .nullish(),
        // Accepted and of no effect here: how often a stream is sent (no streaming), custom logit processors' input.
        stream_interval: z.number().int().nullish(),
        custom_params: z.record(z.string(), z.unknown()).nullish(),
      })
      .strict()
      .optional(),
    return_logprob: z.boolean().optional(),
    /** Without it SGLang sends each logprob's token text as null. */
    return_text_in_logprobs: z.boolean().optional(),
    // The simulated model has 20 distinct alternatives at most (as the OpenAI endpoints' top_logprobs).
    top_logprobs_num: z
      .number()
      .int()
      .min(0)
      .max(20, { error: 'top_logprobs_num is at most 20 here: the simulated model has no more alternatives' })
      .optional(),
    stream: z.literal(false, { error: 'streaming is not simulated; set stream to false' }).optional(),
    rid: z.string().optional(),
  })
  .refine((b) => (b.text === undefined) !== (b.input_ids === undefined), {
    message: 'exactly one of "text" and "input_ids" is required',
  });

const TokenizeBody = z
  .object({
    prompt: z.string().optional(),
    messages: z.array(ChatMessageSchema).optional(),
  })
  .refine((b) => (b.prompt === undefined) !== (b.messages === undefined), {
    message: 'exactly one of "prompt" and "messages" is required',
  });

const DetokenizeBody = z.object({ tokens: z.array(z.number().int().min(0)) });

/** The body as `schema` reads it, else a 400 naming the first problem, or a bare 500 where the server would crash. */
function parseBody<T>(
  schema: z.ZodType<T>,
  body: unknown,
  crashesOn: (issue: z.core.$ZodIssue) => boolean = () => false,
): T {
  const r = schema.safeParse(body);
  if (!r.success) {
    if (r.error.issues.some(crashesOn)) throw new HttpError(500, 'Internal Server Error', true);
    const issue = r.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at "${issue.path.join('.')}"` : '';
    throw new HttpError(
      400,
      `invalid request body${where}: ${issue?.message ?? 'does not match the schema'}`,
    );
  }
  return r.data;
}

// -- helpers ----------------------------------------------------------------------------------

function toChatMessages(msgs: z.infer<typeof ChatMessageSchema>[]): ChatMessage[] {
  return msgs.map((m) => {
    const role: Role = m.role === 'developer' ? 'system' : m.role === 'tool' ? 'user' : m.role;
    const c = m.content;
    const content = c == null ? '' : typeof c === 'string' ? c : c.map((p) => p.text ?? '').join('');
    return { role, content };
  });
}

function stopList(stop: string | string[] | null | undefined): string[] | undefined {
  if (stop == null) return undefined;
  return typeof stop === 'string' ? [stop] : stop;
}

function bytesOf(s: string): number[] {
  return [...Buffer.from(s, 'utf8')];
}

/**
 * A token's logprobs as SGLang's /generate reports them: after the request's temperature (SGLang's default, unless the
 * server runs with SGLANG_RETURN_ORIGINAL_LOGPROB=1), so the sglang backend's undoing of it is tested end to end. The
 * simulator knows only the top alternatives, so they stand for the vocabulary in the tempered normaliser.
 */
function afterTemperature(t: TokenLogprob, temperature: number): { logprob: number; topLogprobs: number[] } {
  if (!(temperature > 0) || temperature === 1 || t.topLogprobs.length === 0) return t;
  const scaled = t.topLogprobs.map((l) => l / temperature);
  const max = Math.max(...scaled);
  const logZ = max + Math.log(scaled.reduce((z, l) => z + Math.exp(l - max), 0));
  return { logprob: t.logprob / temperature - logZ, topLogprobs: scaled.map((l) => l - logZ) };
}

/** Strings of the top-k alternatives: the simulator provides them; other backends get placeholders. */
function topTokenStrings(t: TokenLogprob): string[] {
  const given = (t as { topTokens?: unknown }).topTokens;
  if (Array.isArray(given) && given.length === t.topLogprobs.length) return given as string[];
  return t.topLogprobs.map((_, i) => (i === 0 ? t.token : `<alt_${i}>`));
}

/** A raw prompt as sent: its text, and its tokens when it was sent as token ids (SimServing). */
function rawPrompt(p: string | string[] | number[] | number[][]): {
  promptText: string;
  promptTokens?: string[];
} {
  const first = typeof p === 'string' ? p : p[0]!;
  if (typeof first === 'string') return { promptText: first };
  const ids = (typeof first === 'number' ? p : first) as number[];
  try {
    const promptTokens = simTokensOf(ids);
    return { promptText: promptTokens.join(''), promptTokens };
  } catch (e) {
    throw new HttpError(400, (e as Error).message);
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body exceeds ${MAX_BODY_BYTES} bytes`);
    chunks.push(b);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim().length === 0) throw new HttpError(400, 'invalid JSON body: the body is empty');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new HttpError(400, `invalid JSON body: ${(e as Error).message}`);
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, message: string): void {
  const type = status >= 500 ? 'internal_error' : 'invalid_request_error';
  send(res, status, { object: 'error', error: { message, type, code: status }, message, type, code: status });
}

// -- server -----------------------------------------------------------------------------------

export async function startSimHttpServer(options: SimHttpServerOptions = {}): Promise<SimHttpServer> {
  const backend = options.backend ?? new SimBackend();
  const ownsBackend = options.backend === undefined;
  // One name for /v1/models, the 404 for another model and the answers' `model`: the simulator's own where it is one.
  const modelName = backend instanceof SimBackend ? backend.modelName : (options.modelName ?? 'muse-sim');
  const maxModelLen = backend instanceof SimBackend ? backend.maxModelLen : DEFAULT_SIM_MAX_MODEL_LEN;
  const host = options.host ?? '127.0.0.1';
  // Without a seed a real server samples afresh each call; a counter keeps that behaviour deterministic.
  let nextSeed = 1;
  let nextId = 1;

  async function generate(
    req: IncomingMessage,
    res: ServerResponse,
    messages: ChatMessage[],
    params: GenerateParams,
    model: string | undefined,
    serving: SimServing = {},
  ): Promise<(RawGeneration & { stopMatched?: string }) | null> {
    // As vLLM's OpenAI server: a model it does not serve is a 404 naming it (SGLang's /generate passes none).
    if (model !== undefined && model !== modelName)
      throw new HttpError(404, `The model \`${model}\` does not exist.`);
    const controller = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) controller.abort(new Error('client disconnected'));
    };
    res.on('close', onClose);
    // Without the header, none: vLLM and SGLang run a request until it ends or its client goes away.
    const header = req.headers['x-request-deadline'];
    const deadlineHeader = Number(Array.isArray(header) ? header[0] : header);
    const deadline =
      Number.isFinite(deadlineHeader) && deadlineHeader > 0 ? deadlineHeader : Number.POSITIVE_INFINITY;
    // As vLLM and SGLang: the generation runs until a stop string appears (stopAtString), so the stop is applied
    // as a server applies it rather than by the simulated model, which would drop the tokens that wrote it. The
    // simulator's backend cuts it there and decodes (times and caches) only that far; another backend is cut here.
    const { stop, ...untilStop } = params;
    const request: BackendRequest = { id: `sim-http-${nextId++}`, messages, params: untilStop, deadline };
    if (model !== undefined) request.model = model;
    try {
      if (backend instanceof SimBackend)
        return await backend.generate(request, controller.signal, {
          ...serving,
          ...(stop ? { stopStrings: stop } : {}),
        });
      return stopAtString(await backend.generate(request, controller.signal), stop);
    } catch (e) {
      if (controller.signal.aborted && res.destroyed) return null;
      const msg = (e as Error).message ?? String(e);
      const status = e instanceof BackendDeadlineError ? 504 : e instanceof ContextLengthError ? 400 : 500;
      throw new HttpError(status, msg);
    } finally {
      res.off('close', onClose);
    }
  }

  async function chatCompletions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = parseBody(ChatBody, await readJson(req));
    const k = body.logprobs ? (body.top_logprobs ?? 0) : 0;
    const params: GenerateParams = {
      // Neither given: up to the end of the window, as vLLM does (capToWindow).
      maxTokens: body.max_completion_tokens ?? body.max_tokens ?? maxModelLen,
      temperature: body.temperature ?? 1,
      topLogprobs: k,
      seed: body.seed ?? nextSeed++,
    };
    const stop = stopList(body.stop);
    if (stop) params.stop = stop;
    const capToWindow = body.max_completion_tokens == null && body.max_tokens == null;
    const gen = await generate(req, res, toChatMessages(body.messages), params, body.model, { capToWindow });
    if (!gen) return;
    const logprobs = body.logprobs
      ? {
          content: gen.tokens.map((t) => {
            const alts = topTokenStrings(t);
            return {
              token: t.token,
              logprob: t.logprob,
              bytes: bytesOf(t.token),
              top_logprobs: t.topLogprobs.slice(0, k).map((lp, i) => ({
                token: alts[i]!,
                logprob: lp,
                bytes: bytesOf(alts[i]!),
              })),
            };
          }),
        }
      : null;
    send(res, 200, {
      id: `chatcmpl-${randomUUID()}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: gen.model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: gen.text },
          logprobs,
          finish_reason: gen.finishReason,
        },
      ],
      usage: usageOf(gen),
    });
  }

  async function completions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = parseBody(CompletionBody, await readJson(req));
    const sent = rawPrompt(body.prompt);
    const k = body.logprobs ?? 0;
    const params: GenerateParams = {
      maxTokens: body.max_tokens ?? 16,
      temperature: body.temperature ?? 1,
      topLogprobs: k,
      seed: body.seed ?? nextSeed++,
    };
    const stop = stopList(body.stop);
    if (stop) params.stop = stop;
    const gen = await generate(req, res, parseChatPrompt(sent.promptText), params, body.model, sent);
    if (!gen) return;
    // From the start of the completion, as vLLM gives it without echo.
    let offset = 0;
    const logprobs =
      body.logprobs != null
        ? {
            tokens: gen.tokens.map((t) => t.token),
            token_logprobs: gen.tokens.map((t) => t.logprob),
            top_logprobs: gen.tokens.map((t) => {
              const alts = topTokenStrings(t);
              const o: Record<string, number> = Object.create(null); // a token may be "__proto__"
              // As vLLM builds it: in rank order, so of two alternatives that decode alike the lower one is kept.
              t.topLogprobs.slice(0, k).forEach((lp, i) => {
                o[alts[i]!] = lp;
              });
              // The sampled token always has its entry, as OpenAI documents it (up to k+1) and vLLM sends it: with
              // `logprobs: 0`, it is the only one.
              if (!Object.hasOwn(o, t.token)) o[t.token] = t.logprob;
              return o;
            }),
            text_offset: gen.tokens.map((t) => {
              const at = offset;
              offset += t.token.length;
              return at;
            }),
          }
        : null;
    send(res, 200, {
      id: `cmpl-${randomUUID()}`,
      object: 'text_completion',
      created: Math.floor(Date.now() / 1000),
      model: gen.model,
      choices: [{ index: 0, text: gen.text, logprobs, finish_reason: gen.finishReason }],
      usage: usageOf(gen),
    });
  }

  async function sglangGenerate(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = parseBody(
      GenerateBody,
      await readJson(req),
      (i) => i.code === 'unrecognized_keys' && i.path.join('.') === 'sampling_params',
    );
    const sent = rawPrompt(body.input_ids ?? body.text!);
    const sp = body.sampling_params ?? {};
    const k = body.return_logprob ? (body.top_logprobs_num ?? 0) : 0;
    const params: GenerateParams = {
      maxTokens: sp.max_new_tokens ?? 128,
      temperature: sp.temperature ?? 1,
      topLogprobs: k,
      seed: sp.sampling_seed ?? nextSeed++,
    };
    const stop = stopList(sp.stop);
    if (stop) params.stop = stop;
    const started = performance.now();
    const gen = await generate(req, res, parseChatPrompt(sent.promptText), params, undefined, sent);
    if (!gen) return;
    const meta: Record<string, unknown> = {
      id: body.rid ?? randomUUID().replace(/-/g, ''),
      prompt_tokens: gen.usage.promptTokens,
      completion_tokens: gen.usage.completionTokens,
      cached_tokens: gen.usage.cachedPromptTokens,
      finish_reason:
        gen.finishReason === 'length'
          ? { type: 'length', length: gen.usage.completionTokens }
          : { type: 'stop', matched: gen.stopMatched ?? null },
      e2e_latency: (performance.now() - started) / 1000,
    };
    if (body.return_logprob) {
      const withText = body.return_text_in_logprobs === true;
      const tempered = gen.tokens.map((t) => afterTemperature(t, params.temperature));
      meta.output_token_logprobs = gen.tokens.map((t, i) => [
        tempered[i]!.logprob,
        simTokenId(t.token),
        withText ? t.token : null,
      ]);
      meta.output_top_logprobs = gen.tokens.map((t, i) => {
        const alts = topTokenStrings(t);
        return tempered[i]!.topLogprobs.slice(0, k).map((lp, j) => [
          lp,
          simTokenId(alts[j]!),
          withText ? alts[j]! : null,
        ]);
      });
    }
    const reply = { text: gen.text, meta_info: meta };
    // As SGLang answers: text given as a list is a batch (of one here), answered with a list.
    send(res, 200, Array.isArray(body.text) ? [reply] : reply);
  }

  async function tokenize(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = parseBody(TokenizeBody, await readJson(req));
    const text = body.prompt ?? renderChatPrompt(toChatMessages(body.messages ?? []));
    const tokens = simEncode(text);
    send(res, 200, { tokens, count: tokens.length, max_model_len: maxModelLen });
  }

  async function detokenize(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = parseBody(DetokenizeBody, await readJson(req));
    try {
      send(res, 200, { prompt: simDetokenize(body.tokens) });
    } catch (e) {
      throw new HttpError(400, (e as Error).message);
    }
  }

  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void> | void> = {
    'POST /v1/chat/completions': chatCompletions,
    'POST /v1/completions': completions,
    'POST /generate': sglangGenerate,
    'POST /tokenize': tokenize,
    'POST /detokenize': detokenize,
    'GET /v1/models': (_req, res) =>
      send(res, 200, {
        object: 'list',
        data: [
          {
            id: modelName,
            object: 'model',
            created: 0,
            owned_by: 'muse-simulator',
            max_model_len: maxModelLen,
          },
        ],
      }),
    'GET /health': (_req, res) => send(res, 200, { status: 'ok', simulator: true }),
    'GET /load': (_req, res) => send(res, 200, backend.load?.() ?? {}),
  };

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const route = routes[`${req.method} ${path}`];
    if (!route) {
      const known = Object.keys(routes).some((r) => r.endsWith(` ${path}`));
      sendError(
        res,
        known ? 405 : 404,
        known ? `method ${req.method} not allowed on ${path}` : `no route for ${path}`,
      );
      return;
    }
    Promise.resolve()
      .then(() => route(req, res))
      .catch((e: unknown) => {
        if (e instanceof HttpError && e.plainText)
          res.writeHead(e.status, { 'content-type': 'text/plain; charset=utf-8' }).end(e.message);
        else if (e instanceof HttpError) sendError(res, e.status, e.message);
        else sendError(res, 500, (e as Error)?.message ?? String(e));
      });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${addr.port}`,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      if (ownsBackend) await backend.close?.();
    },
  };
}

function usageOf(gen: RawGeneration) {
  return {
    prompt_tokens: gen.usage.promptTokens,
    completion_tokens: gen.usage.completionTokens,
    total_tokens: gen.usage.promptTokens + gen.usage.completionTokens,
    prompt_tokens_details: { cached_tokens: gen.usage.cachedPromptTokens },
  };
}
