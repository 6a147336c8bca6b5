import { describe, expect, it } from 'vitest';
import type { BackendRequest, GenerateParams } from '../../inference/types.js';
import { SimBackend } from '../../sim/backend.js';
import { DEFAULT_SIM_SERVING_PROFILE, promptBlockKeys, SimServer } from '../../sim/serving.js';
import { sampleQuestions } from '../../sim/world.js';

const tokens = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => ` ${prefix}${i}`);
const never = () => new AbortController().signal;

describe('SimServer prefix cache', () => {
  it('keys blocks by a hash chain over the tokens', () => {
    const a = promptBlockKeys(tokens('a', 64), 16);
    expect(a).toHaveLength(4);
    const b = promptBlockKeys([...tokens('a', 32), ...tokens('b', 40)], 16);
    expect(b.slice(0, 2)).toEqual(a.slice(0, 2));
    expect(b[2]).not.toBe(a[2]);
    // Same characters, other token boundaries: other blocks.
    expect(promptBlockKeys(['ab', 'c', ...tokens('a', 14)], 16)).not.toEqual(
      promptBlockKeys(['a', 'bc', ...tokens('a', 14)], 16),
    );
  });

  it('serves a repeated prefix from cache', async () => {
    const s = new SimServer({ blockSize: 16 });
    const first = await s.run(tokens('p', 100), 10, never());
    expect(first.cachedPromptTokens).toBe(0);
    const again = await s.run([...tokens('p', 100), ...tokens('q', 50)], 10, never());
    expect(again.cachedPromptTokens).toBe(96);
    const same = await s.run(tokens('p', 96), 10, never());
    expect(same.cachedPromptTokens).toBe(80); // the last token is always recomputed
    expect(s.stats().cachedPromptTokens).toBe(176);
  });

  it('refuses a completion count that is not a number, and keeps serving', async () => {
    const s = new SimServer({ blockSize: 16 });
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY])
      await expect(s.run(tokens('p', 20), bad, never())).rejects.toThrow(/finite number/);
    expect((await s.run(tokens('p', 20), 4, never())).cachedPromptTokens).toBe(0);
    expect(s.load().cacheUsedTokens).toBeGreaterThan(0);
  });

  it('refuses a profile whose block size or batch is not a whole number, naming it', () => {
    expect(() => new SimServer({ blockSize: 16.5 })).toThrow(
      'blockSize must be a whole number >= 1, got 16.5',
    );
    expect(() => new SimServer({ maxBatch: 1.5 })).toThrow('maxBatch must be a whole number >= 1, got 1.5');
    expect(() => new SimServer({ maxBatch: 0 })).toThrow(/maxBatch/);
    expect(new SimServer({ blockSize: 32, maxBatch: 2 }).load().cacheCapacityTokens).toBeGreaterThan(0);
  });

  it('evicts least-recently-used blocks at capacity', async () => {
    const s = new SimServer({ blockSize: 16, cacheCapacityTokens: 16 * 10 });
    await s.run(tokens('a', 64), 0, never()); // 4 blocks
    await s.run(tokens('b', 64), 0, never()); // 4 blocks: 8 in use
    await s.run(tokens('a', 65), 0, never()); // touches a
    await s.run(tokens('c', 64), 0, never()); // needs 4 with 2 free: evicts b's two tail blocks
    expect(s.load().cacheUsedTokens).toBe(160);
    expect(s.stats().evictedBlocks).toBe(2);
    // a's 65th token needs a block of its own while a runs: b gives up one more tail block.
    expect((await s.run(tokens('a', 65), 0, never())).cachedPromptTokens).toBe(64);
    // b lost its tail first, so its prefix still hits.
    expect((await s.run(tokens('b', 65), 0, never())).cachedPromptTokens).toBe(16);
    await s.run(tokens('d', 160), 0, never()); // the whole cache: everything else goes
    expect((await s.run(tokens('a', 65), 0, never())).cachedPromptTokens).toBe(0);
  });

  it("makes room for a sequence's own blocks (output, partial last block) even when its prompt is all cached", async () => {
    const s = new SimServer({ blockSize: 16, cacheCapacityTokens: 16 * 10, timeScale: 0.001 });
    await s.run(tokens('a', 160), 0, never()); // fills the cache
    // 8 prompt tokens (a partial block) + 40 output tokens: 3 blocks of its own, so 3 cached blocks must go.
    const running = s.run(tokens('b', 8), 40, never());
    expect(s.load().cacheUsedTokens).toBeLessThanOrEqual(160);
    await running;
    expect(s.stats().evictedBlocks).toBe(3);
    expect((await s.run(tokens('a', 160), 0, never())).cachedPromptTokens).toBeLessThanOrEqual(112);
  });
});

describe('SimServer keeps finished sequences cached', () => {
  it("caches a finished sequence's output blocks, so a continuation hits past the prompt", async () => {
    const s = new SimServer({ blockSize: 16 });
    const prompt = tokens('p', 40);
    const sequence = [...prompt, ...tokens('o', 30)]; // 70 tokens: 4 full blocks
    await s.run(prompt, 30, never(), sequence.slice(prompt.length - 1)); // the last prompt token, then the output
    const next = await s.run([...sequence, ...tokens('n', 20)], 5, never());
    expect(next.cachedPromptTokens).toBe(64);
    // Without the sequence only the prompt's 2 full blocks were kept.
    const plain = new SimServer({ blockSize: 16 });
    await plain.run(prompt, 30, never());
    expect((await plain.run([...sequence, ...tokens('n', 20)], 5, never())).cachedPromptTokens).toBe(32);
  });

  it('keeps nothing of an aborted sequence past its prompt', async () => {
    const s = new SimServer({ blockSize: 16, timeScale: 0.001 });
    const prompt = tokens('p', 40);
    const sequence = [...prompt, ...tokens('o', 30)];
    const ac = new AbortController();
    const running = s.run(prompt, 1000, ac.signal, sequence.slice(prompt.length - 1));
    ac.abort(new Error('stop'));
    await expect(running).rejects.toThrow('stop');
    // Stopped before it decoded anything: none of its 1000 planned tokens were generated.
    expect(s.stats().completionTokens).toBe(0);
    expect((await s.run([...sequence, ...tokens('n', 20)], 0, never())).cachedPromptTokens).toBe(32);
  });

  it('close() fails what is queued without running it first', async () => {
    const s = new SimServer({ timeScale: 0.1, maxBatch: 1 });
    const runs = ['a', 'b', 'c'].map((p) => s.run(tokens(p, 6000), 100, never()));
    await new Promise((r) => setImmediate(r));
    s.close();
    for (const r of runs) await expect(r).rejects.toThrow(/closed/);
    expect(s.stats().promptTokens).toBe(6000);
  });

  it('keeps only the computed part of a prompt given up mid-prefill, as vLLM caches only computed blocks', async () => {
    // 40,000 tokens at 20,000 tok/s: 2 simulated s, 1 real s at this scale (20 tokens per simulated ms); given up
    // once at least 100 simulated ms (2,000 tokens) have passed on the clock the server reads, so a timer that
    // fires early cannot cut it short, and a busy machine has most of a second of slack before the prefill ends.
    const timeScale = 0.5;
    const s = new SimServer({ timeScale });
    const prompt = tokens('p', 40_000);
    const ac = new AbortController();
    const beforeRun = performance.now();
    const running = s.run(prompt, 10, ac.signal);
    const admitted = performance.now(); // admitted (an idle server) before run returns
    while (performance.now() - admitted < 100 * timeScale) await new Promise((r) => setTimeout(r, 5));
    const beforeAbort = performance.now();
    ac.abort(new Error('router gave up'));
    const afterAbort = performance.now();
    await expect(running).rejects.toThrow('router gave up');
    const again = await s.run(prompt, 0, never());
    expect(again.cachedPromptTokens).toBeGreaterThan(1000);
    expect(again.cachedPromptTokens).toBeLessThan(35_000);
    // What was prefilled between admission and the abort, in whole blocks (a block's slack for rounding).
    const tokensIn = (realMs: number) => (realMs / timeScale) * 20;
    expect(again.cachedPromptTokens).toBeGreaterThanOrEqual(tokensIn(beforeAbort - admitted) - 16);
    expect(again.cachedPromptTokens).toBeLessThanOrEqual(tokensIn(afterAbort - beforeRun) + 1);
  });

  it('a request given up mid-prefill leaves the blocks that were cached before it came', async () => {
    const s = new SimServer({ timeScale: 1 });
    const turn = tokens('t', 64); // 4 full blocks, all cached below; the last is recomputed for its logits
    await s.run(turn, 0, never());
    // A long prefill ahead (200 real ms), so the repeat waits in the prefill line (its own one-block prefill not yet
    // done) when it is given up: at once, with no timer that a loaded machine could fire late.
    const ahead = s.run(tokens('x', 4000), 0, never());
    const ac = new AbortController();
    const repeat = s.run(turn, 10, ac.signal);
    ac.abort(new Error('router gave up'));
    await expect(repeat).rejects.toThrow('router gave up');
    await ahead;
    expect((await s.run([...turn, ...tokens('n', 40)], 0, never())).cachedPromptTokens).toBe(64);
  });

  it('lists output blocks for eviction before the prompt they extend', async () => {
    // Room for 8 blocks. The sequence holds 2 prompt blocks and 2 output blocks; 5 new blocks force 1 out.
    const s = new SimServer({ blockSize: 16, cacheCapacityTokens: 16 * 8 });
    const prompt = tokens('p', 32);
    await s.run(prompt, 32, never(), [prompt[31]!, ...tokens('o', 32)]);
    expect(s.load().cacheUsedTokens).toBe(64);
    await s.run(tokens('x', 80), 0, never());
    expect(s.stats().evictedBlocks).toBe(1);
    // The deepest output block went; the prompt and the first output block still hit.
    expect((await s.run([...prompt, ...tokens('o', 32), ' z'], 0, never())).cachedPromptTokens).toBe(48);
  });
});

describe('SimServer batching and timing', () => {
  const profile = {
    maxBatch: 2,
    decodeTokensPerSec: 1000,
    decodeBatchExponent: 0,
    prefillTokensPerSec: 1e9,
    timeScale: 0.02,
  };

  it('refuses a profile that would hang or grow without bound, and keeps defaults an explicit undefined leaves', async () => {
    expect(() => new SimServer({ decodeBatchExponent: Number.NaN })).toThrow(
      /decodeBatchExponent must be in \[0, 1\)/,
    );
    expect(() => new SimServer({ decodeBatchExponent: -0.5 })).toThrow(/decodeBatchExponent/);
    expect(() => new SimServer({ cacheCapacityTokens: Number.NaN })).toThrow(/cacheCapacityTokens must be/);
    expect(() => new SimServer({ cacheCapacityTokens: 8, blockSize: 16 })).toThrow(
      /at least one block \(16\)/,
    );
    const s = new SimServer({
      decodeBatchExponent: undefined,
      cacheCapacityTokens: undefined,
      timeScale: 0.001,
    });
    expect(s.load().cacheCapacityTokens).toBeGreaterThan(0);
    await s.run(tokens('a', 32), 8, never());
    expect(s.stats().completionTokens).toBe(8);
  });

  it('queues beyond maxBatch', async () => {
    const s = new SimServer(profile);
    const runs = [0, 1, 2, 3].map((i) => s.run(tokens(`r${i}`, 20), 500, never()));
    // Admission happens as requests arrive: no wait (a late timer would find the first two done).
    expect(s.load()).toMatchObject({ running: 2, queued: 2, maxBatch: 2 });
    const results = await Promise.all(runs);
    expect(results[0]!.queuedMs).toBeLessThan(100);
    expect(results[2]!.queuedMs).toBeGreaterThan(300);
    for (const r of results) expect(r.serviceMs).toBeGreaterThan(400);
    expect(s.load()).toMatchObject({ running: 0, queued: 0 });
  });

  it('slows each sequence down as the batch grows, with sublinear aggregate gains', () => {
    const s = new SimServer();
    expect(s.decodeRate(1)).toBe(DEFAULT_SIM_SERVING_PROFILE.decodeTokensPerSec);
    expect(s.decodeRate(32)).toBeLessThan(s.decodeRate(1));
    expect(32 * s.decodeRate(32)).toBeGreaterThan(s.decodeRate(1));
    expect(64 * s.decodeRate(64)).toBeLessThan(2 * 32 * s.decodeRate(32));
  });

  it('admits a request, and gives it KV blocks, only when the prefill ahead of it fits in one step', async () => {
    // 1000 uncached tokens at 1000 tok/s take 1000 simulated ms (1 real s); one step prefills 500 tokens.
    const s = new SimServer({
      ...profile,
      prefillTokensPerSec: 1000,
      maxBatchedTokens: 500,
      cacheCapacityTokens: 1 << 20,
      timeScale: 1,
    });
    const long = s.run(tokens('a', 1000), 1, never());
    const short = s.run(tokens('b', 48), 1, never());
    // Waiting behind the long prefill: queued, holding none of its blocks (the long one holds 62 full + 1 partial).
    expect(s.load()).toMatchObject({ running: 1, queued: 1 });
    const longBlocks = s.load().cacheUsedTokens;
    const [, b] = await Promise.all([long, short]);
    expect(longBlocks).toBe(63 * 16);
    // Admitted when 500 tokens of the long prefill were left: ~500 simulated ms after it arrived, not on arrival and
    // not once the long prefill was over (1000); the upper bound leaves a late timer 450 real ms.
    expect(b.queuedMs).toBeGreaterThan(400);
    expect(b.queuedMs).toBeLessThan(950);
  });

  it('a prefill slows the sequences decoding beside it: chunked prefill shares the engine steps with them', async () => {
    // One step: 1 token per decoding sequence (10 ms at 100 tok/s) plus up to 99 prompt tokens (99 ms at 1000 tok/s).
    // Half speed (0.5 s and 1.5 s real): a late timer counts double, not fifty times, in simulated ms.
    const mixed = {
      ...profile,
      maxBatch: 4,
      decodeTokensPerSec: 100,
      prefillTokensPerSec: 1000,
      maxBatchedTokens: 100,
      timeScale: 0.5,
    };
    const alone = await new SimServer(mixed).run(tokens('a', 16), 100, never());
    // 16 ms of prefill, then 100 tokens at 100 tok/s (~1 s); at the rate a prefill leaves (9 tok/s) it would be ~11 s.
    expect(alone.serviceMs).toBeGreaterThan(1000);
    expect(alone.serviceMs).toBeLessThan(2000);
    const s = new SimServer(mixed);
    const a = s.run(tokens('a', 16), 100, never());
    await new Promise((r) => setTimeout(r, 20)); // A is decoding (its prefill took 8 real ms)
    const b = s.run(tokens('b', 2000), 1, never());
    const [withPrefill] = await Promise.all([a, b]);
    // While B's 2000 tokens prefill (~2.2 s at 99 tokens per 109 ms step) A gets a token per step (~20 in all),
    // then the rest at full speed: ~3 s (whenever B came, as long as A had 20 tokens to go), three times as long as
    // alone. At the mixed rate throughout it would be ~11 s.
    expect(s.mixedDecodeRate(1)).toBeCloseTo(1 / (0.01 + 0.099), 5);
    expect(withPrefill.serviceMs).toBeGreaterThan(2600);
    expect(withPrefill.serviceMs).toBeLessThan(4500);
  });

  /**
   * A server with slow prefill (1000 tokens a second, 100 a step), kept busy by a long decode throughout, so that its
   * queue's head waits for prefill, not for an idle server.
   */
  function busyPrefillServer() {
    const s = new SimServer({
      ...profile,
      maxBatch: 4,
      prefillTokensPerSec: 1000,
      maxBatchedTokens: 100,
      cacheCapacityTokens: 1 << 20,
      timeScale: 1,
    });
    const decoding = new AbortController();
    const busy = s.run(tokens('c', 16), 100_000, decoding.signal);
    return {
      s,
      async stop() {
        decoding.abort();
        await expect(busy).rejects.toThrow();
      },
    };
  }

  it('a prefill given up no longer holds up the requests behind it', async () => {
    const { s, stop } = busyPrefillServer();
    const ctl = new AbortController();
    const beforeRuns = performance.now();
    const long = s.run(tokens('a', 1000), 1, ctl.signal);
    const short = s.run(tokens('b', 48), 1, never());
    expect(s.load()).toMatchObject({ running: 2, queued: 1 });
    await new Promise((r) => setTimeout(r, 20));
    ctl.abort(new Error('router gave up'));
    const afterAbort = performance.now();
    await expect(long).rejects.toThrow('router gave up');
    // Admitted when the long one was aborted (~20 simulated ms in), not when its prefill would have ended (~900):
    // no later than the abort by the server's own clock, and well before 900 unless the timer above fired ~600 ms late.
    const { queuedMs } = await short;
    expect(queuedMs).toBeLessThanOrEqual(afterAbort - beforeRuns);
    expect(queuedMs).toBeLessThan(600);
    await stop();
  });

  it('a prefill given up brings forward the wake-up of the requests still waiting', async () => {
    const { s, stop } = busyPrefillServer();
    const ctl = new AbortController();
    const long = s.run(tokens('a', 5000), 1, ctl.signal);
    // Both wait for the long prefill (~5000 simulated ms); the wake-up is set for when it is a step from done.
    const second = new AbortController();
    const next = s.run(tokens('b', 300), 100_000, second.signal);
    const last = s.run(tokens('d', 16), 1, never());
    expect(s.load()).toMatchObject({ running: 2, queued: 2 });
    await new Promise((r) => setTimeout(r, 20));
    ctl.abort(new Error('router gave up'));
    await expect(long).rejects.toThrow('router gave up');
    // The next one is admitted at once and prefills for ~300 ms; the last one waits for that (~220 ms in all), not
    // for the wake-up the given-up prefill had set (~4900 ms) or the next one's long decode. (Bounded at 2000: room
    // for late timers on a loaded machine.)
    const { queuedMs } = await last;
    expect(queuedMs).toBeGreaterThan(150);
    expect(queuedMs).toBeLessThan(2000);
    second.abort();
    await expect(next).rejects.toThrow();
    await stop();
  });

  /** Slow prefill (1000 tokens a second), every request admitted at once: a line of prefills, each after the last. */
  const wideOpenPrefillServer = () =>
    new SimServer({
      ...profile,
      maxBatch: 4,
      prefillTokensPerSec: 1000,
      maxBatchedTokens: 100_000,
      cacheCapacityTokens: 1 << 20,
      timeScale: 1,
    });

  it('prefills given up in the order they came leave no phantom prefill behind them', async () => {
    const s = wideOpenPrefillServer();
    // Both admitted at once: the first prefills until ~1000 simulated ms, the second after it until ~2000.
    const first = new AbortController();
    const second = new AbortController();
    const a = s.run(tokens('a', 1000), 1, first.signal);
    const b = s.run(tokens('b', 1000), 1, second.signal);
    expect(s.load()).toMatchObject({ running: 2, queued: 0 });
    await new Promise((r) => setTimeout(r, 20));
    first.abort(new Error('router gave up'));
    second.abort(new Error('router gave up'));
    await expect(a).rejects.toThrow();
    await expect(b).rejects.toThrow();
    // The server is idle: a short request is prefilled at once, not after the first one's abandoned ~1000 ms.
    const { serviceMs } = await s.run(tokens('c', 16), 1, never());
    expect(serviceMs).toBeLessThan(500);
  });

  it('a prefill given up in the middle of the line lets the prefills behind it move up', async () => {
    const s = wideOpenPrefillServer();
    // All admitted at once: A prefills until ~1000 simulated ms, B after it until ~2000, C after that.
    const second = new AbortController();
    const a = s.run(tokens('a', 1000), 1, never());
    const b = s.run(tokens('b', 1000), 1, second.signal);
    const c = s.run(tokens('c', 16), 1, never());
    expect(s.load()).toMatchObject({ running: 3, queued: 0 });
    await new Promise((r) => setTimeout(r, 20));
    second.abort(new Error('router gave up'));
    await expect(b).rejects.toThrow('router gave up');
    // C prefills right after A (~1016 ms), not after B's abandoned window (~2016 ms); A keeps its time.
    const [ra, rc] = await Promise.all([a, c]);
    expect(ra.serviceMs).toBeGreaterThan(950);
    expect(rc.serviceMs).toBeGreaterThan(950);
    expect(rc.serviceMs).toBeLessThan(1700);
  });

  it('rejects promptly on abort, queued or running', async () => {
    const s = new SimServer({ ...profile, maxBatch: 1, timeScale: 1 });
    const c1 = new AbortController();
    const c2 = new AbortController();
    const running = s.run(tokens('x', 20), 100_000, c1.signal);
    const queued = s.run(tokens('y', 20), 100_000, c2.signal);
    await new Promise((r) => setTimeout(r, 10));
    expect(s.load()).toMatchObject({ running: 1, queued: 1 });
    const t0 = performance.now();
    c2.abort(new Error('deadline passed'));
    await expect(queued).rejects.toThrow('deadline passed');
    c1.abort();
    await expect(running).rejects.toThrow();
    // Promptly: the running one had 100 s of decoding left, the queued one all of that and its own.
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(s.load()).toMatchObject({ running: 0, queued: 0 });
    // Both were received; only the one that ran counts its tokens as served work, and of its completion only what it
    // decoded in the moments it ran (~200 tok/s), not the 100,000 it was asked for.
    expect(s.stats()).toMatchObject({ aborted: 2, requests: 2, promptTokens: 20 });
    expect(s.stats().completionTokens).toBeLessThan(10_000);
  });
});

describe('SimBackend', () => {
  const { question } = sampleQuestions(1, 4)[0]!;
  const params: GenerateParams = { maxTokens: 4096, temperature: 1, topLogprobs: 16, seed: 1 };
  const request = (over: Partial<BackendRequest> = {}): BackendRequest => ({
    id: 'r1',
    messages: [
      { role: 'system', content: 'sys' },
      { role: 'user', content: question },
    ],
    params,
    deadline: Date.now() + 10_000,
    ...over,
  });

  it('generates with usage, cache accounting and load', async () => {
    const b = new SimBackend();
    expect(b.kind).toBe('sim');
    const g = await b.generate(request(), never());
    expect(g.model).toBe('muse-sim');
    expect(g.finishReason).toBe('stop');
    expect(g.tokens.map((t) => t.token).join('')).toBe(g.text);
    expect(g.usage.completionTokens).toBe(g.tokens.length);
    expect(g.usage.promptTokens).toBeGreaterThan(10);
    const next = request({
      messages: [
        ...request().messages,
        { role: 'assistant', content: g.text },
        { role: 'user', content: 'observation' },
      ],
    });
    const g2 = await b.generate(next, never());
    // The reply stays cached with the prompt: the next turn hits through it, up to the last full block.
    expect(g2.usage.cachedPromptTokens).toBeGreaterThan(g.usage.promptTokens);
    expect(g2.usage.cachedPromptTokens).toBeGreaterThanOrEqual(
      g.usage.promptTokens + g.usage.completionTokens - 2 * DEFAULT_SIM_SERVING_PROFILE.blockSize,
    );
    expect(b.load()).toMatchObject({ running: 0, queued: 0, maxBatch: 64 });
    await b.close();
  });

  it('truncates at maxTokens', async () => {
    const b = new SimBackend({ modelName: 'sim-x' });
    const g = await b.generate(request({ params: { ...params, maxTokens: 3 } }), never());
    expect(g.finishReason).toBe('length');
    expect(g.usage.completionTokens).toBe(3);
    expect(g.model).toBe('sim-x');
  });

  it('gives up at the deadline with an error naming it', async () => {
    const b = new SimBackend();
    await expect(b.generate(request({ deadline: Date.now() - 1 }), never())).rejects.toThrow(/deadline/);
    const slow = new SimBackend({ profile: { timeScale: 1, decodeTokensPerSec: 1 } });
    const t0 = performance.now();
    await expect(slow.generate(request({ deadline: Date.now() + 30 }), never())).rejects.toThrow(/deadline/);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(slow.load().running).toBe(0);
  });
});
