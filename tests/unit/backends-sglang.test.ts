import { describe, expect, it } from 'vitest';
import { topKEntropy } from '../../agent/uncertainty.js';
import { type BackendHttpError, BackendProtocolError } from '../../inference/backends/http.js';
import { createBackend } from '../../inference/backends/index.js';
import { SGLangBackend } from '../../inference/backends/sglang.js';
import { replyError } from '../../inference/member.js';
import { type BackendRequest, ContextLengthError } from '../../inference/types.js';
import { fakeJsonServer } from '../helpers/fake-http.js';

const request: BackendRequest = {
  id: 'r1',
  messages: [{ role: 'user', content: 'Q?' }],
  params: { maxTokens: 32, temperature: 1, topLogprobs: 2, seed: 3, stop: ['</tool_call>'] },
  deadline: Date.now() + 60_000,
};
const signal = () => new AbortController().signal;

function generateBody(meta: Record<string, unknown> = {}) {
  return {
    text: '<think>ok',
    meta_info: {
      id: 'abc',
      prompt_tokens: 12,
      completion_tokens: 4,
      cached_tokens: 8,
      finish_reason: { type: 'stop', matched: 151645 },
      output_token_logprobs: [
        [-0.5, 13708, '<think>'],
        [-0.1, 562, 'ok'],
        [-0.01, 151645, '<|im_end|>'],
      ],
      output_top_logprobs: [
        [
          [-0.5, 13708, '<think>'],
          [-1.2, 40, 'I'],
          [-3, 41, 'J'],
        ],
        [
          [-0.1, 562, 'ok'],
          [-2.4, 563, 'no'],
        ],
        [[-0.01, 151645, '<|im_end|>']],
      ],
      ...meta,
    },
  };
}

describe('SGLangBackend', () => {
  it('posts the native /generate shape and parses meta_info', async () => {
    const s = await fakeJsonServer(() => ({ body: generateBody() }));
    const b = new SGLangBackend({ baseUrl: `${s.url}/`, model: 'qwen' });
    const g = await b.generate(request, signal());
    expect(s.seen[0]!.path).toBe('/generate');
    expect(s.seen[0]!.body).toMatchObject({
      text: '<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n',
      sampling_params: { max_new_tokens: 32, temperature: 1, stop: ['</tool_call>'], sampling_seed: 3 },
      return_logprob: true,
      top_logprobs_num: 2,
      return_text_in_logprobs: true,
    });
    expect(g.text).toBe('<think>ok');
    // the EOS token the text leaves out stays, as an empty string, so logprobs keep their positions
    expect(g.tokens.map((t) => t.token)).toEqual(['<think>', 'ok', '']);
    expect(g.tokens[0]!.topLogprobs).toEqual([-0.5, -1.2]);
    expect(g.tokens[1]!.logprob).toBeCloseTo(-0.1);
    expect(g.usage).toEqual({ promptTokens: 12, cachedPromptTokens: 8, completionTokens: 4 });
    expect(g.finishReason).toBe('stop');
    expect(g.model).toBe('qwen');
  });

  it('sends input_ids when asked, and can leave the seed out', async () => {
    const s = await fakeJsonServer(() => ({
      body: generateBody({ finish_reason: { type: 'length', length: 32 } }),
    }));
    const b = new SGLangBackend({
      baseUrl: s.url,
      inputIds: true,
      tokenize: async () => [5, 6],
      seedParam: null,
    });
    const g = await b.generate(request, signal());
    expect(s.seen[0]!.body.input_ids).toEqual([5, 6]);
    expect(s.seen[0]!.body.text).toBeUndefined();
    expect((s.seen[0]!.body.sampling_params as Record<string, unknown>).sampling_seed).toBeUndefined();
    expect(g.finishReason).toBe('length');
  });

  it('leaves the seed out and adds sampling params when a pool member spec (createBackend) says so', async () => {
    const s = await fakeJsonServer(() => ({ body: generateBody() }));
    const b = createBackend({
      backend: 'sglang',
      baseUrl: s.url,
      seedParam: null,
      extraSamplingParams: { top_k: 20 },
    });
    await b.generate(request, signal());
    const sampling = s.seen[0]!.body.sampling_params as Record<string, unknown>;
    expect(sampling.sampling_seed).toBeUndefined();
    expect(sampling.top_k).toBe(20);
  });

  it('puts logprobs SGLang reports after temperature back on the model scale, so entropies match a raw server', async () => {
    // The model's own top logprobs at two positions, and what SGLang reports for them at temperature 0.5: ℓ/T less
    // the tempered normaliser.
    const raw = [
      [-0.3, -1.5, -2.2],
      [-0.05, -3.1, -4.0],
    ];
    const tempered = (top: number[]) => {
      const scaled = top.map((l) => l / 0.5);
      const logZ = Math.log(scaled.reduce((z, l) => z + Math.exp(l), 0));
      return scaled.map((l) => l - logZ);
    };
    const body = () =>
      generateBody({
        output_token_logprobs: [
          [-0.3, 1, 'ok'],
          [-0.05, 2, '!'],
        ],
        output_top_logprobs: raw.map((top, i) => tempered(top).map((l, j) => [l, 10 * i + j, `t${j}`])),
      });
    const s = await fakeJsonServer(() => ({ body: { ...body(), text: 'ok!' } }));
    const hot = { ...request, params: { ...request.params, temperature: 0.5, topLogprobs: 3 } };
    const entropies = (g: { tokens: { topLogprobs: number[] }[] }) =>
      g.tokens.map((t) => topKEntropy(t.topLogprobs));

    const byDefault = await new SGLangBackend({ baseUrl: s.url }).generate(hot, signal());
    for (const [i, h] of entropies(byDefault).entries()) expect(h).toBeCloseTo(topKEntropy(raw[i]!), 9);
    // The tempered figures themselves are sharper: what the member would have reported without the scaling.
    expect(topKEntropy(tempered(raw[0]!))).toBeLessThan(topKEntropy(raw[0]!) - 0.1);

    // A server started with SGLANG_RETURN_ORIGINAL_LOGPROB=1 reports raw ones: the member is told so and keeps them.
    const asReported = await createBackend({ backend: 'sglang', baseUrl: s.url, logprobs: 'raw' }).generate(
      hot,
      signal(),
    );
    expect(asReported.tokens[0]!.topLogprobs).toEqual(tempered(raw[0]!));
    // Greedy requests come back raw from SGLang: nothing to undo.
    const greedy = await new SGLangBackend({ baseUrl: s.url }).generate(
      { ...hot, params: { ...hot.params, temperature: 0 } },
      signal(),
    );
    expect(greedy.tokens[0]!.topLogprobs).toEqual(tempered(raw[0]!));
  });

  it("merges sampling_params given in extraBody into the request's, and scales logprobs by the temperature sent", async () => {
    const s = await fakeJsonServer(() => ({ body: generateBody() }));
    const hot = { ...request, params: { ...request.params, temperature: 0.5 } };
    const b = createBackend({
      backend: 'sglang',
      baseUrl: s.url,
      extraBody: { sampling_params: { top_p: 0.95 }, lora_path: 'a' },
    });
    const g = await b.generate(hot, signal());
    expect(s.seen[0]!.body).toMatchObject({
      lora_path: 'a',
      sampling_params: { max_new_tokens: 32, temperature: 0.5, top_p: 0.95, sampling_seed: 3 },
    });
    expect(g.tokens[0]!.topLogprobs[0]).toBeCloseTo(-0.5 * 0.5, 12);
    // A temperature given there is the one the server samples with, and the one its logprobs are scaled back by.
    const own = createBackend({
      backend: 'sglang',
      baseUrl: s.url,
      extraBody: { sampling_params: { temperature: 0.25 } },
    });
    const o = await own.generate(hot, signal());
    expect((s.seen.at(-1)!.body.sampling_params as Record<string, unknown>).temperature).toBe(0.25);
    expect(o.tokens[0]!.topLogprobs[0]).toBeCloseTo(-0.5 * 0.25, 12);
    expect(() =>
      createBackend({ backend: 'sglang', baseUrl: s.url, extraBody: { sampling_params: 'top_p=0.9' } }),
    ).toThrow(/extraBody: extraBody\.sampling_params must be an object/);
  });

  it("tells SGLang's context-length refusal apart, as a 400 or as an aborted generation", async () => {
    const refusal = 'Input length (140000 tokens) exceeds the maximum allowed length (131072 tokens).';
    const as400 = await fakeJsonServer(() => ({ status: 400, body: { error: { message: refusal } } }));
    await expect(
      new SGLangBackend({ baseUrl: as400.url }).generate(request, signal()),
    ).rejects.toBeInstanceOf(ContextLengthError);
    const asAbort = await fakeJsonServer(() => ({
      body: generateBody({ finish_reason: { type: 'abort', message: refusal } }),
    }));
    await expect(
      new SGLangBackend({ baseUrl: asAbort.url }).generate(request, signal()),
    ).rejects.toBeInstanceOf(ContextLengthError);
  });

  it('names the missing field when logprobs are absent', async () => {
    const s = await fakeJsonServer(() => ({ body: generateBody({ output_token_logprobs: undefined }) }));
    const err = await new SGLangBackend({ baseUrl: s.url }).generate(request, signal()).catch((e) => e);
    expect(err).toBeInstanceOf(BackendProtocolError);
    expect((err as Error).message).toContain('meta_info.output_token_logprobs');
  });

  it('names the field that does not match when the answer has the wrong shape, alone or in a one-element list', async () => {
    const { completion_tokens: _, ...noCount } = generateBody().meta_info;
    const cases: [unknown, RegExp][] = [
      [{ meta_info: noCount, text: 'x' }, /meta_info\.completion_tokens/],
      [[{ meta_info: generateBody().meta_info }], /(^|[\s;:(])text\b/],
    ];
    for (const [body, field] of cases) {
      const s = await fakeJsonServer(() => ({ body }));
      const err = await new SGLangBackend({ baseUrl: s.url }).generate(request, signal()).catch((e) => e);
      expect(err).toBeInstanceOf(BackendProtocolError);
      expect((err as Error).message).toMatch(field);
      expect((err as Error).message).not.toMatch(/\(root\): Invalid input/);
    }
    // A one-element list of a good answer is read as the answer.
    const listed = await fakeJsonServer(() => ({ body: [generateBody()] }));
    expect(
      (await new SGLangBackend({ baseUrl: listed.url }).generate(request, signal())).usage,
    ).toMatchObject({
      promptTokens: 12,
      completionTokens: 4,
    });
  });

  it('names the missing field when top logprobs are absent', async () => {
    const s = await fakeJsonServer(() => ({ body: generateBody({ output_top_logprobs: null }) }));
    const err = await new SGLangBackend({ baseUrl: s.url }).generate(request, signal()).catch((e) => e);
    expect((err as Error).message).toContain('meta_info.output_top_logprobs');
  });

  it('refuses top logprobs that are null at every position, which would read as every entropy 0', async () => {
    const s = await fakeJsonServer(() => ({
      body: generateBody({ output_top_logprobs: [null, null, null] }),
    }));
    const err = await new SGLangBackend({ baseUrl: s.url }).generate(request, signal()).catch((e) => e);
    expect((err as Error).message).toMatch(
      /meta_info\.output_top_logprobs entries are all empty; the server ignored top_logprobs_num=\d+/,
    );
    // One position without them (SGLang writes null there) is not the server ignoring the setting.
    const top = generateBody().meta_info.output_top_logprobs;
    const partial = await fakeJsonServer(() => ({
      body: generateBody({ output_top_logprobs: [top[0], null, top[2]] }),
    }));
    const g = await new SGLangBackend({ baseUrl: partial.url }).generate(request, signal());
    expect(g.tokens.map((t) => t.topLogprobs.length > 0)).toEqual([true, false, true]);
  });

  it('caps cached tokens at the prompt tokens (SGLang has reported 128 cached of 126)', async () => {
    const s = await fakeJsonServer(() => ({
      body: generateBody({ prompt_tokens: 126, cached_tokens: 128 }),
    }));
    const g = await new SGLangBackend({ baseUrl: s.url }).generate(request, signal());
    expect(g.usage).toMatchObject({ promptTokens: 126, cachedPromptTokens: 126 });
  });

  it('reports cached tokens as 0 when absent, and an abort as retryable', async () => {
    const s = await fakeJsonServer((_, n) =>
      n === 1
        ? { body: generateBody({ cached_tokens: undefined }) }
        : { body: generateBody({ finish_reason: { type: 'abort', message: 'server shutting down' } }) },
    );
    const b = new SGLangBackend({ baseUrl: s.url });
    expect((await b.generate(request, signal())).usage.cachedPromptTokens).toBe(0);
    const err = await b.generate(request, signal()).catch((e) => e);
    expect((err as BackendProtocolError).retryable).toBe(true);
    expect((err as Error).message).toContain('server shutting down');
  });

  it('does not send an abort with a 4xx status (the request itself refused) to another member', async () => {
    const s = await fakeJsonServer(() => ({
      body: generateBody({
        finish_reason: {
          type: 'abort',
          message: 'Invalid regex',
          status_code: 400,
          err_type: 'BadRequestError',
        },
      }),
    }));
    const err = await new SGLangBackend({ baseUrl: s.url }).generate(request, signal()).catch((e) => e);
    expect(err).toBeInstanceOf(BackendProtocolError);
    expect((err as BackendProtocolError).retryable).toBe(false);
    expect((err as Error).message).toContain('(status 400): Invalid regex');
    // A server that gave up on its own (a 5xx, or a 429 for a full queue) may not be the last word.
    for (const status_code of [500, 503, 429]) {
      const busy = await fakeJsonServer(() => ({
        body: generateBody({ finish_reason: { type: 'abort', message: 'busy', status_code } }),
      }));
      const e = await new SGLangBackend({ baseUrl: busy.url }).generate(request, signal()).catch((x) => x);
      expect((e as BackendProtocolError).retryable).toBe(true);
      expect((e as BackendProtocolError).relayedStatus).toBe(status_code);
    }
    // A full request queue (SGLang's --max-queued-requests) is the member being busy: answered overloaded, which no
    // circuit breaker counts, not backend_error.
    const full = await fakeJsonServer(() => ({
      body: generateBody({
        finish_reason: { type: 'abort', message: 'The request queue is full.', status_code: 503 },
      }),
    }));
    const e = await new SGLangBackend({ baseUrl: full.url }).generate(request, signal()).catch((x) => x);
    expect(replyError(e).code).toBe('overloaded');
  });

  it('retries a 503 and does not retry a 400', async () => {
    const s = await fakeJsonServer((_, n) =>
      n === 1
        ? { status: 503 }
        : n === 2
          ? { body: generateBody() }
          : { status: 400, body: { error: 'bad' } },
    );
    const b = new SGLangBackend({ baseUrl: s.url, backoff: { baseMs: 1, maxMs: 2 } });
    await b.generate(request, signal());
    expect(s.seen).toHaveLength(2);
    const err = await b.generate(request, signal()).catch((e) => e);
    expect((err as BackendHttpError).status).toBe(400);
    expect(s.seen).toHaveLength(3);
  });
});
