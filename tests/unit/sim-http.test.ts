import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatMessage } from '../../agent/types.js';
import { BackendHttpError } from '../../inference/backends/http.js';
import { OpenAIBackend } from '../../inference/backends/openai.js';
import { SGLangBackend } from '../../inference/backends/sglang.js';
import { SimBackend } from '../../sim/backend.js';
import { type SimHttpServer, startSimHttpServer } from '../../sim/http.js';
import { renderChatPrompt } from '../../sim/tokenizer.js';
import { sampleQuestions } from '../../sim/world.js';

let server: SimHttpServer;
const { question } = sampleQuestions(1, 5)[0]!;
const messages: ChatMessage[] = [
  { role: 'system', content: 'You are a deep-research agent.' },
  { role: 'user', content: question },
];

async function post(path: string, body: unknown, raw?: string) {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: raw ?? JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: response bodies are probed field by field
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}

beforeAll(async () => {
  server = await startSimHttpServer({ port: 0 });
});
afterAll(async () => {
  await server.close();
});

describe('sim HTTP server', () => {
  it('serves OpenAI chat completions with top logprobs and cache usage', async () => {
    const body = {
      model: 'muse-sim',
      messages,
      logprobs: true,
      top_logprobs: 5,
      max_tokens: 2048,
      seed: 7,
      temperature: 1,
    };
    const { status, json } = await post('/v1/chat/completions', body);
    expect(status).toBe(200);
    expect(json.object).toBe('chat.completion');
    const choice = json.choices[0];
    expect(choice.message.role).toBe('assistant');
    expect(choice.message.content).toMatch(/^<think>[\s\S]+<\/think>\n<tool_call>/);
    expect(choice.finish_reason).toBe('stop');
    const content = choice.logprobs.content as {
      token: string;
      logprob: number;
      bytes: number[];
      top_logprobs: { token: string; logprob: number }[];
    }[];
    expect(content.map((c) => c.token).join('')).toBe(choice.message.content);
    for (const c of content) {
      expect(c.top_logprobs).toHaveLength(5);
      expect(Buffer.from(c.bytes).toString('utf8')).toBe(c.token);
      expect(c.top_logprobs.some((t) => t.token === c.token && t.logprob === c.logprob)).toBe(true);
    }
    expect(json.usage.total_tokens).toBe(json.usage.prompt_tokens + json.usage.completion_tokens);
    const again = await post('/v1/chat/completions', body);
    expect(again.json.choices[0].message.content).toBe(choice.message.content);
    expect(again.json.usage.prompt_tokens_details.cached_tokens).toBeGreaterThan(0);
  });

  it('honours max_tokens and omits logprobs unless asked', async () => {
    const { json } = await post('/v1/chat/completions', { messages, max_tokens: 4, seed: 1 });
    expect(json.choices[0].finish_reason).toBe('length');
    expect(json.usage.completion_tokens).toBe(4);
    expect(json.choices[0].logprobs).toBeNull();
  });

  it('serves legacy completions on a rendered prompt', async () => {
    const prompt = renderChatPrompt(messages as never);
    const { status, json } = await post('/v1/completions', { prompt, max_tokens: 64, logprobs: 3, seed: 7 });
    expect(status).toBe(200);
    expect(json.choices[0].text).toMatch(/^<think>/);
    expect(json.choices[0].logprobs.tokens.join('')).toBe(json.choices[0].text);
    // The top 3 and the sampled token, as OpenAI documents and vLLM sends it: 3 or 4 entries, the sampled one always.
    const lp = json.choices[0].logprobs as {
      tokens: string[];
      token_logprobs: number[];
      top_logprobs: Record<string, number>[];
    };
    lp.top_logprobs.forEach((top, i) => {
      expect(Object.keys(top).length).toBeGreaterThanOrEqual(3);
      expect(Object.keys(top).length).toBeLessThanOrEqual(4);
      expect(top[lp.tokens[i]!]).toBe(lp.token_logprobs[i]);
    });
    const sampledOnly = await post('/v1/completions', { prompt, max_tokens: 8, logprobs: 0, seed: 7 });
    for (const [i, top] of (
      sampledOnly.json.choices[0].logprobs.top_logprobs as Record<string, number>[]
    ).entries())
      expect(Object.keys(top)).toEqual([sampledOnly.json.choices[0].logprobs.tokens[i]]);
    const ids = (await post('/tokenize', { prompt, add_special_tokens: false })).json.tokens as number[];
    const byIds = await post('/v1/completions', { prompt: ids, max_tokens: 64, logprobs: 3, seed: 7 });
    expect(byIds.status).toBe(200);
    expect(byIds.json.choices[0].text).toBe(json.choices[0].text);
  });

  it('serves SGLang /generate from text and from input_ids', async () => {
    const text = renderChatPrompt(messages as never);
    const a = await post('/generate', {
      text,
      sampling_params: { max_new_tokens: 512, temperature: 1, sampling_seed: 3 },
      return_logprob: true,
      top_logprobs_num: 4,
      return_text_in_logprobs: true,
    });
    expect(a.status).toBe(200);
    const meta = a.json.meta_info;
    expect(meta.completion_tokens).toBe(meta.output_token_logprobs.length);
    expect(meta.output_token_logprobs.map((x: [number, number, string]) => x[2]).join('')).toBe(a.json.text);
    expect(meta.output_top_logprobs[0]).toHaveLength(4);
    expect(typeof meta.output_token_logprobs[0][1]).toBe('number');
    expect(meta.finish_reason.type).toBe('stop');
    expect(typeof meta.cached_tokens).toBe('number');
    const ids = (await post('/tokenize', { prompt: text })).json.tokens as number[];
    const b = await post('/generate', {
      input_ids: ids,
      sampling_params: { max_new_tokens: 512, sampling_seed: 3 },
    });
    expect(b.status).toBe(200);
    expect(b.json.text).toBe(a.json.text);
    expect(b.json.meta_info.cached_tokens).toBeGreaterThan(0);
    // As SGLang: the token text in logprobs only when asked for.
    const textless = await post('/generate', {
      input_ids: ids,
      sampling_params: { max_new_tokens: 8, sampling_seed: 3 },
      return_logprob: true,
    });
    expect(textless.json.meta_info.output_token_logprobs[0][2]).toBeNull();
    const detok = await post('/detokenize', { tokens: ids });
    expect(detok.json.prompt).toBe(text);
    // Text given as a list is a batch: answered with a list, as SGLang answers it.
    const batch = await post('/generate', {
      text: [text],
      sampling_params: { max_new_tokens: 512, sampling_seed: 3 },
    });
    expect(batch.json).toHaveLength(1);
    expect(batch.json[0].text).toBe(a.json.text);
  });

  it('ends at a stop string as a server does: the text before it, the tokens that wrote it kept', async () => {
    const full = await post('/v1/chat/completions', { messages, logprobs: true, top_logprobs: 2, seed: 5 });
    const text: string = full.json.choices[0].message.content;
    const stop = text.slice(text.indexOf(' ') + 1, text.indexOf(' ') + 4); // three characters from the second word
    const cut = await post('/v1/chat/completions', {
      messages,
      logprobs: true,
      top_logprobs: 2,
      seed: 5,
      stop: [stop],
    });
    const choice = cut.json.choices[0];
    expect(choice.message.content).toBe(text.slice(0, text.indexOf(stop)));
    expect(choice.finish_reason).toBe('stop');
    const tokens = (choice.logprobs.content as { token: string }[]).map((t) => t.token).join('');
    expect(tokens.startsWith(`${choice.message.content}${stop}`)).toBe(true);
    expect(cut.json.usage.completion_tokens).toBe(choice.logprobs.content.length);
    // The openai backend gives the text back with tokens that spell it, one per generated token.
    const backend = new OpenAIBackend({ baseUrl: `${server.url}/v1`, model: 'muse-sim' });
    const g = await backend.generate(
      {
        id: 'stop',
        messages: messages as never,
        params: { maxTokens: 4096, temperature: 1, topLogprobs: 2, seed: 5, stop: [stop] },
        deadline: Date.now() + 30_000,
      },
      new AbortController().signal,
    );
    expect(g.text).toBe(choice.message.content);
    expect(g.tokens.map((t) => t.token).join('')).toBe(g.text);
    expect(g.tokens).toHaveLength(choice.logprobs.content.length);
    // SGLang names the stop string it ended at; none when the model ended by itself.
    const prompt = renderChatPrompt(messages as never);
    const sampling = { max_new_tokens: 4096, sampling_seed: 5 };
    const sglang = await post('/generate', {
      text: prompt,
      sampling_params: { ...sampling, stop: ['zzz', stop] },
    });
    expect(sglang.json.meta_info.finish_reason).toEqual({ type: 'stop', matched: stop });
    const natural = await post('/generate', { text: prompt, sampling_params: sampling });
    expect(natural.json.meta_info.finish_reason).toEqual({ type: 'stop', matched: null });
  });

  it('rejects bad requests with 400 and a message naming the problem', async () => {
    const bad = await post('/v1/chat/completions', null, '{"messages": [');
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/invalid JSON/);
    const schema = await post('/v1/chat/completions', { messages: [{ role: 'robot', content: 'x' }] });
    expect(schema.status).toBe(400);
    expect(schema.json.error.message).toMatch(/messages\.0\.role/);
    const both = await post('/generate', { text: 'a', input_ids: [1] });
    expect(both.status).toBe(400);
    expect(both.json.error.message).toMatch(/exactly one of "text" and "input_ids"/);
    const stream = await post('/v1/chat/completions', { messages, stream: true });
    expect(stream.status).toBe(400);
    expect(stream.json.error.message).toMatch(/streaming/);
    const noLogprobs = await post('/v1/chat/completions', { messages, top_logprobs: 5 });
    expect(noLogprobs.status).toBe(400);
    expect(noLogprobs.json.error.message).toMatch(/top_logprobs requires logprobs to be true/);
    const manyAlternatives = await post('/generate', {
      text: 'a',
      return_logprob: true,
      top_logprobs_num: 24,
    });
    expect(manyAlternatives.status).toBe(400);
    expect(manyAlternatives.json.error.message).toMatch(/top_logprobs_num is at most 20/);
    const unknownIds = await post('/generate', { input_ids: [151_999] });
    expect(unknownIds.status).toBe(400);
    // As vLLM answers: a request for no tokens at all.
    const none = await post('/v1/chat/completions', { messages, max_tokens: 0 });
    expect(none.status).toBe(400);
    expect(none.json.error.message).toMatch(/max_tokens/);
    expect((await post('/v1/completions', { prompt: 'x', max_tokens: 0 })).status).toBe(400);
    // Settings the simulated model cannot follow are refused by name, not ignored.
    for (const [setting, value] of [
      ['ignore_eos', true],
      ['no_stop_trim', true],
      ['stop_token_ids', [151_645]],
      // SGLang's own settings: a 400 naming them, not the 500 of a name SGLang does not know.
      ['min_new_tokens', 8],
      ['json_schema', '{"type": "object"}'],
      ['regex', '[0-9]+'],
      ['ebnf', 'root ::= "a"'],
      ['structural_tag', '{}'],
      ['stop_regex', '\\n\\n'],
      ['logit_bias', { '151645': -100 }],
    ] as const) {
      const refused = await post('/generate', { text: 'a', sampling_params: { [setting]: value } });
      expect(refused.status).toBe(400);
      expect(refused.json.error.message).toMatch(new RegExp(`${setting} is not simulated`));
    }
    const followed = await post('/generate', {
      text: 'a',
      sampling_params: {
        max_new_tokens: 4,
        ignore_eos: false,
        no_stop_trim: false,
        stop_token_ids: [],
        min_new_tokens: 0,
        json_schema: null,
        logit_bias: {},
        stream_interval: 1,
        custom_params: { any: 'thing' },
      },
    });
    expect(followed.status).toBe(200);
    for (const [path, body, named] of [
      ['/v1/completions', { prompt: 'x', echo: true }, 'echo'],
      ['/v1/completions', { prompt: 'x', suffix: 'y' }, 'suffix'],
      ['/v1/completions', { prompt: 'x', logit_bias: { '50256': -100 } }, 'logit_bias'],
      ['/v1/chat/completions', { messages, tools: [{ type: 'function' }] }, 'tools'],
      ['/v1/chat/completions', { messages, response_format: { type: 'json_object' } }, 'response_format'],
    ] as const) {
      const refused = await post(path, body);
      expect(refused.status).toBe(400);
      expect(refused.json.error.message).toMatch(new RegExp(`${named} (is|are) not simulated`));
    }
    const defaults = {
      echo: false,
      suffix: null,
      logit_bias: {},
      tools: [],
      response_format: { type: 'text' },
    };
    const { tools: _t, response_format: _r, ...completionDefaults } = defaults;
    const { echo: _e, suffix: _s, ...chatDefaults } = defaults;
    expect(
      (await post('/v1/completions', { prompt: 'x', max_tokens: 4, ...completionDefaults })).status,
    ).toBe(200);
    expect((await post('/v1/chat/completions', { messages, max_tokens: 4, ...chatDefaults })).status).toBe(
      200,
    );
    // An empty prompt, as vLLM answers it.
    for (const [path, body] of [
      ['/v1/completions', { prompt: '' }],
      ['/v1/completions', { prompt: [''] }],
      ['/generate', { text: '' }],
      ['/generate', { input_ids: [] }],
    ] as const) {
      const empty = await post(path, body);
      expect(empty.status).toBe(400);
      expect(empty.json.error.message).toMatch(/the prompt cannot be empty/);
    }
  });

  it('answers a sampling parameter SGLang does not know as SGLang does: a plain-text 500, which the sglang backend explains', async () => {
    // SGLang's sampling params have no `seed` (it is `sampling_seed`), nor any other name it does not know.
    const res = await fetch(`${server.url}/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'a', sampling_params: { seed: 3 } }),
    });
    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toBe('Internal Server Error');
    // A server older than `sampling_seed` stands in here as one that does not know `seed`.
    const old = new SGLangBackend({ baseUrl: server.url, seedParam: 'seed', retries: 0 });
    const params = { maxTokens: 8, temperature: 1, topLogprobs: 2, seed: 3 };
    const err = await old
      .generate({ id: 'seed', messages, params, deadline: Date.now() + 10_000 }, new AbortController().signal)
      .catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(BackendHttpError);
    expect((err as Error).message).toMatch(
      /HTTP 500 .*Internal Server Error; SGLang answers so to a sampling parameter it does not know \(sent: max_new_tokens, temperature, seed\): if every request fails, a server without 'seed' needs the member started with --seed-param none$/,
    );
    const g = await new SGLangBackend({ baseUrl: server.url, retries: 0 }).generate(
      { id: 'seed', messages, params, deadline: Date.now() + 10_000 },
      new AbortController().signal,
    );
    expect(g.usage.completionTokens).toBeGreaterThan(0);
  });

  it('lists the model and answers health checks', async () => {
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data[0]!.id).toBe('muse-sim');
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    const missing = await fetch(`${server.url}/nope`);
    expect(missing.status).toBe(404);
  });

  it('turns a passed deadline into 504', async () => {
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-deadline': String(Date.now() - 1000) },
      body: JSON.stringify({ messages }),
    });
    expect(res.status).toBe(504);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/deadline/);
  });
});

describe('sim HTTP server before another backend', () => {
  it('runs a request without a deadline header unbounded, as vLLM does, and answers to the name it lists', async () => {
    const sim = new SimBackend({ profile: { timeScale: 0 } });
    const deadlines: number[] = [];
    const wrapped = await startSimHttpServer({
      port: 0,
      modelName: 'alias',
      backend: {
        kind: 'recording',
        generate: (req, signal) => {
          deadlines.push(req.deadline);
          return sim.generate(req, signal);
        },
      },
    });
    try {
      const ask = (headers: Record<string, string>, model = 'alias') =>
        fetch(`${wrapped.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body: JSON.stringify({ model, messages, max_tokens: 8 }),
        });
      const models = (await (await fetch(`${wrapped.url}/v1/models`)).json()) as { data: { id: string }[] };
      expect(models.data.map((m) => m.id)).toEqual(['alias']);
      expect((await ask({})).status).toBe(200);
      const until = Date.now() + 60_000;
      expect((await ask({ 'x-request-deadline': String(until) })).status).toBe(200);
      expect(deadlines).toEqual([Number.POSITIVE_INFINITY, until]);
      expect((await ask({}, 'muse-sim')).status).toBe(404);
    } finally {
      await wrapped.close();
    }
  });
});

describe('sim HTTP server completions logprobs', () => {
  it('keys alternatives by their text as vLLM does: of two that decode alike, the lower-ranked one is kept', async () => {
    const backend = {
      kind: 'fixed',
      async generate() {
        const token = {
          token: 'a',
          logprob: -0.5,
          topLogprobs: [-0.5, -1, -3],
          topTokens: ['a', '\ufffd', '\ufffd'],
        };
        return {
          text: 'a',
          tokens: [token],
          usage: { promptTokens: 1, cachedPromptTokens: 0, completionTokens: 1 },
          finishReason: 'stop' as const,
          model: 'fixed',
        };
      },
    };
    const fixed = await startSimHttpServer({ port: 0, backend });
    try {
      const res = await fetch(`${fixed.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'x', max_tokens: 1, logprobs: 3 }),
      });
      const json = (await res.json()) as {
        choices: { logprobs: { top_logprobs: Record<string, number>[] } }[];
      };
      expect(json.choices[0]!.logprobs.top_logprobs[0]).toEqual({ a: -0.5, '\ufffd': -3 });
    } finally {
      await fixed.close();
    }
  });
});

describe('sim HTTP server: what it counts and charges is what it was sent and what it decoded', () => {
  it('counts a raw prompt as sent, not re-rendered as chat: prompt tokens are the ids given', async () => {
    const plain = 'Hello world, this is a plain prompt.';
    const ids = (await post('/tokenize', { prompt: plain, add_special_tokens: false })).json
      .tokens as number[];
    const first = await post('/generate', { input_ids: ids, sampling_params: { max_new_tokens: 8 } });
    expect(first.status).toBe(200);
    expect(first.json.meta_info.prompt_tokens).toBe(ids.length);
    const again = await post('/generate', { input_ids: ids, sampling_params: { max_new_tokens: 8 } });
    expect(again.json.meta_info.cached_tokens).toBeLessThanOrEqual(ids.length);
    // A chat prompt that ends inside the assistant's turn: all of it counted, the partial turn included.
    const partial = `${renderChatPrompt(messages as never)}<think>partial reasoning`;
    const count = ((await post('/tokenize', { prompt: partial })).json.tokens as number[]).length;
    const completion = await post('/v1/completions', { prompt: partial, max_tokens: 8 });
    expect(completion.json.usage.prompt_tokens).toBe(count);
    // Ids that would retokenize into fewer tokens ("abc" + "def" as two tokens each time): one per id, as sent.
    const [abc] = (await post('/tokenize', { prompt: 'abc' })).json.tokens as number[];
    const [def] = (await post('/tokenize', { prompt: 'def' })).json.tokens as number[];
    const split = [abc!, def!, abc!, def!];
    expect(
      ((await post('/tokenize', { prompt: 'abcdefabcdef' })).json.tokens as number[]).length,
    ).toBeLessThan(4);
    const sglang = await post('/generate', { input_ids: split, sampling_params: { max_new_tokens: 4 } });
    expect(sglang.json.meta_info.prompt_tokens).toBe(4);
    const openai = await post('/v1/completions', { prompt: split, max_tokens: 4 });
    expect(openai.json.usage.prompt_tokens).toBe(4);
  });

  it('decodes (times and caches) only up to a stop string, as it reports', async () => {
    const backend = new SimBackend();
    const own = await startSimHttpServer({ port: 0, backend });
    try {
      const ask = async (stop?: string[]) => {
        const before = backend.stats().completionTokens;
        const res = await fetch(`${own.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ messages, seed: 5, max_tokens: 4096, ...(stop ? { stop } : {}) }),
        });
        const json = (await res.json()) as {
          choices: { message: { content: string } }[];
          usage: { completion_tokens: number };
        };
        return { json, decoded: backend.stats().completionTokens - before };
      };
      const full = await ask();
      const text = full.json.choices[0]!.message.content;
      const stop = text.slice(text.indexOf(' ') + 1, text.indexOf(' ') + 4);
      const cut = await ask([stop]);
      expect(cut.json.usage.completion_tokens).toBeLessThan(full.json.usage.completion_tokens);
      expect(cut.decoded).toBe(cut.json.usage.completion_tokens);
      expect(full.decoded).toBe(full.json.usage.completion_tokens);
    } finally {
      await own.close();
    }
  });

  it('gives legacy completions text offsets from the start of the completion, as vLLM does', async () => {
    const { json } = await post('/v1/completions', { prompt: 'Say something.', max_tokens: 8, logprobs: 1 });
    const { tokens, text_offset } = json.choices[0].logprobs as { tokens: string[]; text_offset: number[] };
    expect(text_offset[0]).toBe(0);
    expect(text_offset[1]).toBe(tokens[0]!.length);
  });
});

describe('sim HTTP server with a short context', () => {
  it('generates up to the end of the window when a chat request names no max_tokens, as vLLM does', async () => {
    const short = await startSimHttpServer({ port: 0, backend: new SimBackend({ maxModelLen: 300 }) });
    try {
      const res = await fetch(`${short.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'muse-sim', messages }),
      });
      expect(res.status).toBe(200);
      const { usage } = (await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
      expect(usage.prompt_tokens + usage.completion_tokens).toBeLessThanOrEqual(300);
    } finally {
      await short.close();
    }
  });

  it('refuses prompt + max_tokens past max_model_len with a 400 naming both, as vLLM does', async () => {
    const short = await startSimHttpServer({ port: 0, backend: new SimBackend({ maxModelLen: 300 }) });
    try {
      const ask = (max_tokens: number) =>
        fetch(`${short.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'muse-sim', messages, max_tokens }),
        });
      const tokenized = await fetch(`${short.url}/tokenize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'muse-sim', messages }),
      });
      const { count, max_model_len } = (await tokenized.json()) as { count: number; max_model_len: number };
      expect(max_model_len).toBe(300);
      expect((await ask(300 - count)).status).toBe(200);
      const refused = await ask(300 - count + 1);
      expect(refused.status).toBe(400);
      const body = (await refused.json()) as { error: { message: string } };
      expect(body.error.message).toMatch(/maximum context length is 300 tokens/);
      expect(body.error.message).toContain(`${count} in the messages`);
    } finally {
      await short.close();
    }
  });
});
