import { describe, expect, it } from 'vitest';
import { renderChatTemplate } from '../../inference/backends/chat-template.js';
import { BackendHttpError, BackendProtocolError } from '../../inference/backends/http.js';
import { createBackend } from '../../inference/backends/index.js';
import {
  alignTokensToText,
  ModelNotServedError,
  OpenAIBackend,
  serverRoot,
} from '../../inference/backends/openai.js';
import { replyError } from '../../inference/member.js';
import type { BackendRequest } from '../../inference/types.js';
import { fakeJsonServer } from '../helpers/fake-http.js';

/** The fake server with the OpenAI path prefix the backend is configured with. */
async function fakeServer(handler: Parameters<typeof fakeJsonServer>[0]) {
  const s = await fakeJsonServer(handler);
  return { ...s, url: `${s.url}/v1` };
}

function request(over: Partial<BackendRequest['params']> = {}): BackendRequest {
  return {
    id: 'r1',
    messages: [
      { role: 'system', content: 'You are a researcher.' },
      { role: 'user', content: 'Who?' },
    ],
    params: { maxTokens: 64, temperature: 0.7, topLogprobs: 2, seed: 7, stop: ['</answer>'], ...over },
    deadline: Date.now() + 5000,
  };
}

const signal = () => new AbortController().signal;

function chatBody(opts: { usage?: unknown; logprobs?: unknown; content?: string; finish?: string } = {}) {
  return {
    id: 'x',
    model: 'served-model',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: opts.content ?? 'Hi there' },
        logprobs:
          opts.logprobs === undefined
            ? {
                content: [
                  {
                    token: 'Hi',
                    logprob: -0.1,
                    bytes: [72, 105],
                    top_logprobs: [
                      { token: 'Hi', logprob: -0.1 },
                      { token: 'Hey', logprob: -2.5 },
                      { token: 'Hello', logprob: -3 },
                    ],
                  },
                  {
                    token: ' there',
                    logprob: -0.4,
                    top_logprobs: [
                      { token: ' friend', logprob: -1.6 },
                      { token: ' there', logprob: -0.4 },
                    ],
                  },
                ],
              }
            : opts.logprobs,
        finish_reason: opts.finish ?? 'stop',
      },
    ],
    usage:
      opts.usage === undefined
        ? {
            prompt_tokens: 40,
            completion_tokens: 2,
            total_tokens: 42,
            prompt_tokens_details: { cached_tokens: 32 },
          }
        : opts.usage,
  };
}

describe('OpenAIBackend: a model the server does not have', () => {
  const notFound = { status: 404, body: { error: { message: 'The model `qwen3-30b` does not exist.' } } };

  it('fails at once, naming the model, when the job named it: no other member would have it', async () => {
    const s = await fakeServer(() => notFound);
    const b = new OpenAIBackend({ baseUrl: s.url, model: 'Qwen/Qwen3-30B-A3B' });
    const err = await b.generate({ ...request(), model: 'qwen3-30b' }, signal()).catch((e) => e);
    expect(err).toBeInstanceOf(ModelNotServedError);
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(
      /model 'qwen3-30b' \(the job's model\) is not served at .* \(this member serves 'Qwen\/Qwen3-30B-A3B'\)/,
    );
    expect(replyError(err)).toMatchObject({ code: 'backend_error', retryable: false });
    await s.close();
  });

  it("is this member's setup error when the 404 does not name the job's model (a wrong path on this member)", async () => {
    const s = await fakeServer(() => ({ status: 404, body: { detail: 'Not Found' } }));
    const b = new OpenAIBackend({ baseUrl: s.url, model: 'Qwen/Qwen3-30B-A3B' });
    const err = await b.generate({ ...request(), model: 'qwen3-30b' }, signal()).catch((e) => e);
    expect(err).toBeInstanceOf(BackendHttpError);
    expect(err.retryable).toBe(true);
    await s.close();
  });

  it("is this member's setup error (failed over, counted) when the model is the member's own", async () => {
    const s = await fakeServer(() => notFound);
    const b = new OpenAIBackend({ baseUrl: s.url, model: 'Qwen/Qwen3-30B-A3B' });
    for (const model of [undefined, 'Qwen/Qwen3-30B-A3B']) {
      const err = await b.generate({ ...request(), ...(model ? { model } : {}) }, signal()).catch((e) => e);
      expect(err).toBeInstanceOf(BackendHttpError);
      expect(err.retryable).toBe(true);
    }
    await s.close();
  });
});

describe('OpenAIBackend (chat)', () => {
  it('sends logprobs=true with top_logprobs and parses tokens, top-k, usage and cached tokens', async () => {
    const s = await fakeServer(() => ({ body: chatBody() }));
    const b = new OpenAIBackend({ baseUrl: s.url, model: 'm', apiKey: 'sk' });
    const g = await b.generate(request(), signal());
    expect(s.seen[0]!.path).toBe('/v1/chat/completions');
    expect(s.seen[0]!.headers.authorization).toBe('Bearer sk');
    expect(s.seen[0]!.body).toMatchObject({
      model: 'm',
      logprobs: true,
      // One more than k: a server that lists the sampled token first still gives the true top k.
      top_logprobs: 3,
      max_tokens: 64,
      temperature: 0.7,
      seed: 7,
      stop: ['</answer>'],
      messages: request().messages,
    });
    expect(g.text).toBe('Hi there');
    expect(g.tokens.map((t) => t.token)).toEqual(['Hi', ' there']);
    expect(g.tokens[0]!.logprob).toBeCloseTo(-0.1);
    // best first, cut to k
    expect(g.tokens[0]!.topLogprobs).toEqual([-0.1, -2.5]);
    expect(g.tokens[1]!.topLogprobs).toEqual([-0.4, -1.6]);
    expect(g.usage).toEqual({ promptTokens: 40, cachedPromptTokens: 32, completionTokens: 2 });
    expect(g.finishReason).toBe('stop');
    expect(g.model).toBe('served-model');
    expect(b.load().running).toBe(0);
  });

  it('keeps logprobs as reported by default (vLLM: raw), and scales processed ones by the temperature sent', async () => {
    const s = await fakeServer(() => ({ body: chatBody() }));
    const asIs = await new OpenAIBackend({ baseUrl: s.url, model: 'm' }).generate(request(), signal());
    expect(asIs.tokens[0]!.topLogprobs).toEqual([-0.1, -2.5]);
    // An SGLang server behind its OpenAI API, or vLLM with --logprobs-mode processed_logprobs.
    const processed = createBackend({ backend: 'openai', baseUrl: s.url, model: 'm', logprobs: 'processed' });
    const g = await processed.generate(request(), signal());
    expect(g.tokens[0]!.topLogprobs[0]).toBeCloseTo(-0.1 * 0.7, 12);
    expect(g.tokens[0]!.topLogprobs[1]).toBeCloseTo(-2.5 * 0.7, 12);
    // The temperature the server sampled with is the one sent, which extraBody may set.
    const overridden = createBackend({
      backend: 'openai',
      baseUrl: s.url,
      model: 'm',
      logprobs: 'processed',
      extraBody: { temperature: 0.5 },
    });
    const o = await overridden.generate(request(), signal());
    expect(s.seen.at(-1)!.body.temperature).toBe(0.5);
    expect(o.tokens[1]!.topLogprobs[1]).toBeCloseTo(-1.6 * 0.5, 12);
  });

  it('keeps the true top k when the server lists a sampled token from outside them first', async () => {
    // vLLM's order when it sampled 'zebra' (-6), which is not among the two most likely: the sampled token first,
    // then the most likely, as many in all as asked for.
    const vllmOrder = [
      { token: 'zebra', logprob: -6 },
      { token: 'the', logprob: -0.1 },
      { token: 'a', logprob: -2.5 },
      { token: 'an', logprob: -3 },
    ];
    const s = await fakeServer((req) => {
      const asked = (req.body as { top_logprobs: number }).top_logprobs;
      const content = [{ token: 'zebra', logprob: -6, top_logprobs: vllmOrder.slice(0, asked) }];
      return { body: chatBody({ content: 'zebra', logprobs: { content } }) };
    });
    const g = await new OpenAIBackend({ baseUrl: s.url, model: 'm' }).generate(request(), signal());
    expect(g.tokens[0]!.topLogprobs).toEqual([-0.1, -2.5]);
  });

  it('reads cached tokens as 0 when the server does not report them', async () => {
    const s = await fakeServer(() => ({
      body: chatBody({ usage: { prompt_tokens: 40, completion_tokens: 2, prompt_tokens_details: null } }),
    }));
    const g = await new OpenAIBackend({ baseUrl: s.url, model: 'm' }).generate(request(), signal());
    expect(g.usage.cachedPromptTokens).toBe(0);
  });

  it('fails with a message naming the missing field when logprobs are absent', async () => {
    const s = await fakeServer(() => ({ body: chatBody({ logprobs: null }) }));
    const err = await new OpenAIBackend({ baseUrl: s.url, model: 'm' })
      .generate(request(), signal())
      .catch((e) => e);
    expect(err).toBeInstanceOf(BackendProtocolError);
    expect((err as Error).message).toContain('choices[0].logprobs.content');
    expect((err as Error).message).toContain('logprobs=true');
    // Which of the pool's servers answered so.
    expect((err as Error).message).toContain(`(server ${s.url})`);
  });

  it('fails when top_logprobs are missing on a token', async () => {
    const s = await fakeServer(() => ({
      body: chatBody({ content: 'Hi', logprobs: { content: [{ token: 'Hi', logprob: -0.1 }] } }),
    }));
    const err = await new OpenAIBackend({ baseUrl: s.url, model: 'm' })
      .generate(request(), signal())
      .catch((e) => e);
    expect((err as Error).message).toContain('choices[0].logprobs.content[0].top_logprobs');
  });

  it('retries a 429 and then succeeds', async () => {
    const s = await fakeServer((_, n) =>
      n === 1
        ? { status: 429, body: { error: 'rate' }, headers: { 'retry-after': '0' } }
        : { body: chatBody() },
    );
    const b = new OpenAIBackend({ baseUrl: s.url, model: 'm', backoff: { baseMs: 1, maxMs: 2 } });
    const g = await b.generate(request(), signal());
    expect(g.text).toBe('Hi there');
    expect(s.seen).toHaveLength(2);
  });

  it('asks for k top logprobs when the server refuses one more (its --max-logprobs is k), and keeps them', async () => {
    const s = await fakeServer((_, n) =>
      n === 1
        ? { status: 400, body: { error: { message: 'Requested top logprobs of 3 exceeds maximum of 2' } } }
        : { body: chatBody() },
    );
    const b = new OpenAIBackend({ baseUrl: s.url, model: 'm' });
    const g = await b.generate(request(), signal());
    expect(s.seen.map((r) => r.body.top_logprobs)).toEqual([3, 2]);
    expect(g.tokens[0]!.topLogprobs).toEqual([-0.1, -2.5]);
    // Asked for k from then on: not refused on every generation.
    await b.generate(request(), signal());
    expect(s.seen.map((r) => r.body.top_logprobs)).toEqual([3, 2, 2]);
    // A request for more than that is asked for what it wants, for the server to say it cannot.
    const more = request();
    await b.generate({ ...more, params: { ...more.params, topLogprobs: 4 } }, signal());
    expect(s.seen.at(-1)!.body.top_logprobs).toBe(4);
  });

  it('does not retry a 400', async () => {
    const s = await fakeServer(() => ({ status: 400, body: { error: { message: 'bad temperature' } } }));
    const err = await new OpenAIBackend({ baseUrl: s.url, model: 'm' })
      .generate(request(), signal())
      .catch((e) => e);
    expect(err).toBeInstanceOf(BackendHttpError);
    expect((err as BackendHttpError).status).toBe(400);
    expect(s.seen).toHaveLength(1);
  });

  it('maps finish_reason length, and reports an aborted or failed generation (vLLM\'s "error") as retryable', async () => {
    const finishes = ['length', 'abort', 'error'];
    const s = await fakeServer((_, n) => ({ body: chatBody({ finish: finishes[n - 1] }) }));
    const b = new OpenAIBackend({ baseUrl: s.url, model: 'm' });
    expect((await b.generate(request(), signal())).finishReason).toBe('length');
    for (const finish of ['abort', 'error']) {
      const err = await b.generate(request(), signal()).catch((e) => e);
      expect(err).toBeInstanceOf(BackendProtocolError);
      expect((err as BackendProtocolError).retryable).toBe(true);
      expect((err as Error).message).toContain(`finish_reason "${finish}"`);
    }
  });

  it("puts a reasoning parser's think block back into the text", async () => {
    const body = chatBody({
      content: 'Done',
      logprobs: {
        content: ['<think>', 'hmm', '</think>', 'Done'].map((token) => ({
          token,
          logprob: -1,
          top_logprobs: [{ token, logprob: -1 }],
        })),
      },
    });
    (body.choices[0]!.message as Record<string, unknown>).reasoning_content = 'hmm';
    const s = await fakeServer(() => ({ body }));
    const g = await new OpenAIBackend({ baseUrl: s.url, model: 'm' }).generate(request(), signal());
    expect(g.text).toBe('<think>hmm</think>Done');
    expect(g.tokens.map((t) => t.token).join('')).toBe(g.text);
  });

  it("keeps the whitespace a reasoning parser trimmed (SGLang's), and adds no </think> the model did not write", async () => {
    const reply = (tokens: string[], message: Record<string, unknown>) => {
      const body = chatBody({
        logprobs: {
          content: tokens.map((token) => ({
            token,
            logprob: -1,
            bytes: [...new TextEncoder().encode(token)],
            top_logprobs: [{ token, logprob: -1 }],
          })),
        },
      });
      Object.assign(body.choices[0]!.message, message);
      return body;
    };
    // SGLang strips the reasoning and the content: the model wrote "<think>\nplan\n</think>\n\nanswer".
    const trimmed = reply(['<think>', '\n', 'plan', '\n', '</think>', '\n\n', 'answer', '<|im_end|>'], {
      content: 'answer',
      reasoning_content: 'plan',
    });
    let s = await fakeServer(() => ({ body: trimmed }));
    let g = await new OpenAIBackend({ baseUrl: s.url, model: 'm' }).generate(request(), signal());
    expect(g.text).toBe('<think>\nplan\n</think>\n\nanswer');
    expect(g.tokens.map((t) => t.token)).toEqual([
      '<think>',
      '\n',
      'plan',
      '\n',
      '</think>',
      '\n\n',
      'answer',
      '',
    ]);
    // Split at a tool call the model opened without closing its thought.
    const split = reply(['<think>', 'look', ' up', '\n', '<tool_call>', '{}', '</tool_call>'], {
      content: '<tool_call>{}</tool_call>',
      reasoning_content: 'look up',
    });
    s = await fakeServer(() => ({ body: split }));
    g = await new OpenAIBackend({ baseUrl: s.url, model: 'm' }).generate(request(), signal());
    expect(g.text).toBe('<think>look up\n<tool_call>{}</tool_call>');
  });

  it('leaves a think block open when the generation was cut off inside it', async () => {
    const body = chatBody({
      logprobs: {
        content: ['<think>', 'still ', 'thinking'].map((token) => ({
          token,
          logprob: -1,
          top_logprobs: [{ token, logprob: -1 }],
        })),
      },
    });
    Object.assign(body.choices[0]!.message, { content: null, reasoning_content: 'still thinking' });
    const s = await fakeServer(() => ({ body }));
    const g = await new OpenAIBackend({ baseUrl: s.url, model: 'm' }).generate(request(), signal());
    expect(g.text).toBe('<think>still thinking');
    expect(g.tokens.map((t) => t.token).join('')).toBe(g.text);
  });
});

describe('OpenAIBackend (completions)', () => {
  const completion = {
    model: 'm',
    choices: [
      {
        index: 0,
        text: 'Hi there',
        logprobs: {
          text_offset: [0, 2],
          tokens: ['Hi', ' there'],
          token_logprobs: [-0.2, -0.3],
          top_logprobs: [
            { Hi: -0.2, Hey: -1.9, Yo: -4 },
            { ' there': -0.3, ' you': -1.5 },
          ],
        },
        finish_reason: 'length',
      },
    ],
    usage: { prompt_tokens: 30, completion_tokens: 2, total_tokens: 32 },
  };

  it('caps cached tokens at the prompt tokens, in chat and in completions mode (servers have reported more)', async () => {
    const usage = { prompt_tokens: 126, completion_tokens: 2, prompt_tokens_details: { cached_tokens: 128 } };
    const s = await fakeServer((req) => ({
      body: req.path.endsWith('/chat/completions') ? chatBody({ usage }) : { ...completion, usage },
    }));
    for (const mode of ['chat', 'completions'] as const) {
      const g = await new OpenAIBackend({ baseUrl: s.url, model: 'm', mode }).generate(request(), signal());
      expect(g.usage).toMatchObject({ promptTokens: 126, cachedPromptTokens: 126 });
    }
  });

  it('renders the chat template, sends logprobs=k and parses the vLLM shape', async () => {
    const s = await fakeServer(() => ({ body: completion }));
    const b = new OpenAIBackend({ baseUrl: s.url, model: 'm', mode: 'completions' });
    const g = await b.generate(request(), signal());
    expect(s.seen[0]!.path).toBe('/v1/completions');
    expect(s.seen[0]!.body).toMatchObject({
      model: 'm',
      logprobs: 2,
      max_tokens: 64,
      temperature: 0.7,
      seed: 7,
    });
    expect(s.seen[0]!.body.prompt).toBe(
      '<|im_start|>system\nYou are a researcher.<|im_end|>\n<|im_start|>user\nWho?<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(g.tokens.map((t) => t.token)).toEqual(['Hi', ' there']);
    expect(g.tokens[0]!.topLogprobs).toEqual([-0.2, -1.9]);
    expect(g.tokens[1]!.logprob).toBeCloseTo(-0.3);
    expect(g.finishReason).toBe('length');
    expect(g.usage).toEqual({ promptTokens: 30, cachedPromptTokens: 0, completionTokens: 2 });
  });

  it('names the missing field when the completions answer has no logprobs', async () => {
    const s = await fakeServer(() => ({
      body: { ...completion, choices: [{ ...completion.choices[0], logprobs: null }] },
    }));
    const err = await new OpenAIBackend({ baseUrl: s.url, model: 'm', mode: 'completions' })
      .generate(request(), signal())
      .catch((e) => e);
    expect((err as Error).message).toContain('choices[0].logprobs.tokens');
  });

  it('refuses completions top logprobs that are null at every position (every entropy would read 0)', async () => {
    const lp = completion.choices[0]!.logprobs;
    const s = await fakeServer(() => ({
      body: {
        ...completion,
        choices: [{ ...completion.choices[0], logprobs: { ...lp, top_logprobs: [null, null] } }],
      },
    }));
    const err = await new OpenAIBackend({ baseUrl: s.url, model: 'm', mode: 'completions' })
      .generate(request(), signal())
      .catch((e) => e);
    expect((err as Error).message).toMatch(
      /choices\[0\]\.logprobs\.top_logprobs entries are all empty; the server ignored logprobs=\d+/,
    );
  });

  it('sends token ids from the server tokenizer when promptTokenIds is set', async () => {
    const s = await fakeServer((req) =>
      req.path === '/tokenize' ? { body: { tokens: [1, 2, 3], count: 3 } } : { body: completion },
    );
    const b = new OpenAIBackend({ baseUrl: s.url, model: 'm', mode: 'completions', promptTokenIds: true });
    await b.generate(request(), signal());
    expect(s.seen[0]!.path).toBe('/tokenize');
    expect(s.seen[0]!.body).toMatchObject({ model: 'm', add_special_tokens: false });
    expect(s.seen[1]!.body.prompt).toEqual([1, 2, 3]);
  });

  it('gets token ids and a template from a pool member spec (createBackend), as a deployment sets them', async () => {
    const s = await fakeServer((req) =>
      req.path === '/tokenize' ? { body: { tokens: [7, 8], count: 2 } } : { body: completion },
    );
    const b = createBackend({
      backend: 'openai',
      baseUrl: s.url,
      model: 'm',
      mode: 'completions',
      promptTokenIds: true,
      chatTemplate: { message: '[{role}] {content}\n', generationPrompt: '[assistant] ' },
      extraBody: { top_p: 0.95 },
    });
    await b.generate(request(), signal());
    expect(s.seen[0]!.path).toBe('/tokenize');
    expect(s.seen[0]!.body.prompt).toBe('[system] You are a researcher.\n[user] Who?\n[assistant] ');
    expect(s.seen[1]!.body).toMatchObject({ prompt: [7, 8], top_p: 0.95 });
  });

  it('accepts a custom template and tokenizer', async () => {
    const s = await fakeServer(() => ({ body: completion }));
    const b = new OpenAIBackend({
      baseUrl: s.url,
      model: 'm',
      mode: 'completions',
      chatTemplate: { prefix: '<s>', message: '[{role}] {content}\n', generationPrompt: '[assistant] ' },
      promptTokenIds: true,
      tokenize: async (p) => [p.length],
    });
    await b.generate(request(), signal());
    const expected = '<s>[system] You are a researcher.\n[user] Who?\n[assistant] ';
    expect(s.seen[0]!.body.prompt).toEqual([expected.length]);
  });
});

describe('chat templates and token alignment', () => {
  it('substitutes placeholders once, leaving message text verbatim', () => {
    const out = renderChatTemplate(
      { message: '<{role}>{content}</{role}>', generationPrompt: '<assistant>' },
      [{ role: 'user', content: 'literal {role} and $& stay' }],
    );
    expect(out).toBe('<user>literal {role} and $& stay</user><assistant>');
  });

  it('finds the server root beside /v1', () => {
    expect(serverRoot('http://h:8000/v1/')).toBe('http://h:8000');
    expect(serverRoot('http://h:8000')).toBe('http://h:8000');
  });

  it("refuses tokens spelled as ids (vLLM's --return-tokens-as-token-ids), which cannot be placed in the text", () => {
    expect(() =>
      alignTokensToText('Search for <tool_call>', ['token_id:1001', 'token_id:369', 'token_id:151657']),
    ).toThrow(
      /spells its tokens as ids \('token_id:1001'\), not as text: start vLLM without --return-tokens-as-token-ids/,
    );
    // A model that writes such a string as its text is another matter.
    expect(alignTokensToText('token_id:7', ['token_id:7']).tokens).toEqual(['token_id:7']);
  });

  it('keeps exact tokens as they are', () => {
    expect(alignTokensToText('ab', ['a', 'b'])).toEqual({ tokens: ['a', 'b'], exact: true });
  });

  it('uses the bytes field for a character split across tokens', () => {
    const emoji = '😀'; // f0 9f 98 80
    const r = alignTokensToText(
      `a${emoji}b`,
      ['a', 'bytes:\\xf0\\x9f', 'bytes:\\x98\\x80', 'b'],
      [[97], [0xf0, 0x9f], [0x98, 0x80], [98]],
    );
    expect(r).toEqual({ tokens: ['a', '', emoji, 'b'], exact: true });
  });

  it('gives an invalid byte its one replacement character, so later tokens keep their own text', () => {
    // 0xff decodes to one U+FFFD (3 bytes in UTF-8, but one byte of the token stream).
    const text = 'a\uFFFDb<think>x</think>';
    const bytes = ['a', null, 'b<thin', 'k', '>x</thin', 'k>'].map((t) =>
      t === null ? [0xff] : [...Buffer.from(t)],
    );
    const r = alignTokensToText(text, ['a', 'bytes:\\xff', 'b<thin', 'k', '>x</thin', 'k>'], bytes);
    expect(r).toEqual({ tokens: ['a', '\uFFFD', 'b<thin', 'k', '>x</thin', 'k>'], exact: true });
    expect(r.tokens.join('')).toBe(text);
    // A leading byte-order mark is the server's text too: kept, not dropped by the decoder.
    const bom = alignTokensToText(
      '\uFEFFab',
      ['bytes:\\xef\\xbb\\xbf', 'a', 'b'],
      [[0xef, 0xbb, 0xbf], [0x61], [0x62]],
    );
    expect(bom).toEqual({ tokens: ['\uFEFF', 'a', 'b'], exact: true });
  });

  it('reconciles replacement characters, BPE spellings and a trailing stop token, keeping one entry per token', () => {
    const text = 'x é y';
    const r = alignTokensToText(text, ['x', '\u0120\uFFFD', '\uFFFD', '\u0120y', '<|im_end|>']);
    expect(r.exact).toBe(false);
    expect(r.tokens).toHaveLength(5);
    expect(r.tokens.join('')).toBe(text);
    expect(r.tokens[3]).toBe(' y');
    expect(r.tokens[4]).toBe('');
  });

  it('gives no text to tokens the server left out of it (an empty think block its reasoning parser stripped)', () => {
    // SGLang strips the reasoning parser's output: content 'Answer is 42.', tokens still with the think block.
    const raw = ['<think>', '\n\n', '</think>', '\n\n', 'Answer', ' is', ' ', '4', '2', '.', '<|im_end|>'];
    const r = alignTokensToText('Answer is 42.', raw);
    expect(r.tokens).toEqual(['', '', '', '', 'Answer', ' is', ' ', '4', '2', '.', '']);
    // A single character that happens to match does not count: the odd token keeps its own length of text.
    expect(alignTokensToText('ab cd', ['xy', 'zz', 'a', 'q', ' cd']).tokens[0]).toBe('ab');
  });
});
