import { describe, expect, it } from 'vitest';
import {
  createAggregationActivities,
  type IntegrateInput,
  type ReportInput,
  reportTrajectoryChars,
} from '../../activities/aggregation.js';
import type { ContextStore } from '../../activities/content.js';
import type { CallModel } from '../../activities/index.js';
import { MAX_ANSWER_CHARS } from '../../agent/clip.js';
import { estimateTokens } from '../../agent/context.js';
import { reportMessages } from '../../agent/prompts.js';
import type { ChatMessage } from '../../agent/types.js';
import type { BlobStore } from '../../common/blob-store.js';
import { ContextLengthError, type Generation } from '../../inference/types.js';

const input = (over: Partial<ReportInput> = {}): ReportInput => ({
  jobId: 'j',
  rolloutId: 'q/initial-0',
  question: 'Which city hosts the archive?',
  segments: [],
  pool: 'default',
  sampling: { temperature: 0.85, topLogprobs: 16, maxTokensPerTurn: 4096 },
  seed: 1,
  contextWindow: 32_768,
  ...over,
});

describe('report prompt budget', () => {
  it('leaves room for the report within the window, calibrated by the learned ratio', () => {
    for (const ratio of [undefined, 0.8, 1.3]) {
      const i = input(ratio === undefined ? {} : { promptTokenRatio: ratio });
      const chars = reportTrajectoryChars(i)!;
      expect(chars).toBeGreaterThan(0);
      const prompt = estimateTokens(reportMessages(i.question, 'x'.repeat(chars))) * (ratio ?? 1);
      expect(prompt + 4096).toBeLessThanOrEqual(32_768);
    }
    expect(reportTrajectoryChars(input({ promptTokenRatio: 1.3 }))!).toBeLessThan(
      reportTrajectoryChars(input())!,
    );
  });

  it('is unbounded for inputs without a window, and zero when the output alone fills it', () => {
    expect(reportTrajectoryChars(input({ contextWindow: undefined }))).toBeUndefined();
    expect(reportTrajectoryChars(input({ contextWindow: 4000 }))).toBe(0);
  });
});

describe('aggregation calls', () => {
  const sampling = { temperature: 0.85, topLogprobs: 16, maxTokensPerTurn: 4096 };
  /** The activities over in-memory content and a scripted model; `prompts` collects every prompt sent. */
  function activities(reply: (call: number) => Partial<Generation> | Error, blobs = {} as BlobStore) {
    const texts = new Map<string, string>();
    const prompts: ChatMessage[][] = [];
    const content = {
      getText: async (ref: string) => texts.get(ref)!,
      putText: async (_ns: string, text: string) => {
        const ref = `kv:${texts.size}`;
        texts.set(ref, text);
        return ref;
      },
    } as unknown as ContextStore;
    const callModel: CallModel = async (_pool, messages) => {
      prompts.push(messages);
      const r = reply(prompts.length);
      if (r instanceof Error) throw r;
      return {
        text: '',
        entropies: new Float32Array(0),
        regions: { think_ppl: null, tool_call_ppl: null, all_ppl: null },
        usage: { promptTokens: 10, cachedPromptTokens: 0, completionTokens: 5 },
        finishReason: 'stop',
        model: 'muse-sim',
        backend: 'sim',
        memberId: 'm',
        ...r,
      };
    };
    const acts = createAggregationActivities({ blobs, content, callModel });
    return { acts, texts, prompts, content };
  }
  const integrate = (refs: string[], over: Partial<IntegrateInput> = {}): IntegrateInput => ({
    jobId: 'j',
    questionId: 'q',
    question: 'Which city hosts the archive?',
    reportRefs: refs,
    pool: 'default',
    sampling,
    seed: 3,
    contextWindow: 32_768,
    ...over,
  });
  const promptChars = (m: ChatMessage[]) => m.reduce((n, x) => n + x.content.length, 0);

  it('fits many long reports into the window: short ones whole, long ones clipped to an equal share', async () => {
    const { acts, content, prompts } = activities(() => ({ text: '<answer>Lyon</answer>' }));
    const refs = [await content.putText('j', 'SHORT REPORT')];
    for (let i = 0; i < 64; i++) refs.push(await content.putText('j', `report ${i} `.repeat(1500)));
    const out = await acts.integrateStep(integrate(refs));
    expect(out.answer).toBe('Lyon');
    const prompt = prompts[0]!;
    // Within the window beside the answer's tokens, as estimated.
    expect(estimateTokens(prompt) + sampling.maxTokensPerTurn).toBeLessThanOrEqual(32_768);
    const body = prompt[1]!.content;
    expect(body).toContain('SHORT REPORT\n</report>');
    for (let i = 0; i < 64; i++) expect(body).toContain(`report ${i} report ${i}`);
    expect(body).toContain('characters omitted …]');
    // The long ones (13,500 and 15,000 characters) get one share each: clipped to lengths within a few characters
    // (the omission marker's count), whatever their own length.
    const shown = [...body.matchAll(/<report id=\d+>\n([\s\S]*?)\n<\/report>/g)].map((m) => m[1]!.length);
    expect(shown).toHaveLength(65);
    const long = shown.slice(1);
    expect(Math.max(...long) - Math.min(...long)).toBeLessThan(20);
    expect(Math.max(...long)).toBeLessThan(13_500);
  });

  it("keeps each clipped report's end, where its final answer is", async () => {
    const { acts, content, prompts } = activities(() => ({ text: '<answer>Lyon</answer>' }));
    const refs: string[] = [];
    for (let i = 0; i < 16; i++)
      refs.push(
        await content.putText('j', `Planning ${i}. ${'Method step. '.repeat(300)}\nFinal answer: City ${i}`),
      );
    await acts.integrateStep(integrate(refs, { contextWindow: 12_288 }));
    const body = prompts[0]![1]!.content;
    expect(body).toContain('characters omitted');
    for (let i = 0; i < 16; i++) {
      expect(body).toContain(`Planning ${i}.`);
      expect(body).toContain(`Final answer: City ${i}\n</report>`);
    }
  });

  it('shrinks the prompt on a refusal even when many reports are at their floor', async () => {
    const refused = new ContextLengthError("This model's maximum context length is 12288 tokens");
    const { acts, content, prompts } = activities((n) =>
      n <= 2 ? refused : { text: '<answer>Lyon</answer>' },
    );
    const refs: string[] = [];
    for (let i = 0; i < 40; i++) refs.push(await content.putText('j', `report ${i} `.repeat(200)));
    expect((await acts.integrateStep(integrate(refs, { contextWindow: 12_288 }))).answer).toBe('Lyon');
    const sizes = prompts.map(promptChars);
    expect(sizes).toHaveLength(3);
    expect(sizes[1]!).toBeLessThan(0.75 * sizes[0]!);
    expect(sizes[2]!).toBeLessThan(0.75 * sizes[1]!);
    // No room by the estimate at all (the answer's tokens fill the window): the retry still sends less.
    const full = activities((n) => (n <= 1 ? refused : { text: '<answer>Lyon</answer>' }));
    const fullRefs: string[] = [];
    for (let i = 0; i < 40; i++) fullRefs.push(await full.content.putText('j', `report ${i} `.repeat(200)));
    expect((await full.acts.integrateStep(integrate(fullRefs, { contextWindow: 4096 }))).answer).toBe('Lyon');
    const fullSizes = full.prompts.map(promptChars);
    expect(fullSizes).toHaveLength(2);
    expect(fullSizes[1]!).toBeLessThan(0.5 * fullSizes[0]!);
  });

  it('halves the reports when the server still finds the prompt too long, and gives up after two tries', async () => {
    const refused = new ContextLengthError("This model's maximum context length is 32768 tokens");
    const twice = activities((n) => (n <= 2 ? refused : { text: '<answer>Lyon</answer>' }));
    const refs = [await twice.content.putText('j', 'x'.repeat(200_000))];
    expect((await twice.acts.integrateStep(integrate(refs))).answer).toBe('Lyon');
    const sizes = twice.prompts.map(promptChars);
    expect(sizes[1]!).toBeLessThan(0.6 * sizes[0]!);
    expect(sizes[2]!).toBeLessThan(0.6 * sizes[1]!);
    const always = activities(() => refused);
    const ref = await always.content.putText('j', 'x'.repeat(200_000));
    await expect(always.acts.integrateStep(integrate([ref]))).rejects.toBeInstanceOf(ContextLengthError);
    expect(always.prompts).toHaveLength(3);
  });

  it('takes no answer from an integration cut off at the token limit, and says so', async () => {
    for (const text of [
      '<think>Report 1 says <answer>Paris</answer>, but report 2 argues Lyon because',
      '<think>ok</think><answer>The Treaty of Nanking, signed in 18',
    ]) {
      const { acts, content } = activities(() => ({ text, finishReason: 'length' }));
      const out = await acts.integrateStep(integrate([await content.putText('j', 'r')]));
      expect(out.answer).toBeNull();
      expect(out.reason).toMatch(/cut off at 4096 tokens/);
    }
    // A closed answer is kept even when the text after it was cut off.
    const { acts, content } = activities(() => ({
      text: '<think>ok</think><answer>Lyon</answer> and then',
      finishReason: 'length',
    }));
    expect((await acts.integrateStep(integrate([await content.putText('j', 'r')]))).answer).toBe('Lyon');
  });

  it('takes no answer from an integration whose <answer> is empty, and says so', async () => {
    for (const text of ['<think>ok</think><answer></answer>', '<answer> ? </answer>']) {
      const { acts, content } = activities(() => ({ text }));
      const out = await acts.integrateStep(integrate([await content.putText('j', 'r')]));
      expect(out.answer).toBeNull();
      expect(out.reason).toBe('the integration gave an empty answer');
    }
  });

  it('clips an overlong integration answer as a turn answer is clipped', async () => {
    const { acts, content } = activities(() => ({ text: `<answer>${'a'.repeat(300_000)}</answer>` }));
    const out = await acts.integrateStep(integrate([await content.putText('j', 'r')]));
    expect(out.answer!.length).toBeLessThan(MAX_ANSWER_CHARS + 100);
  });

  it('writes no report for a call cut off before it was finished, names the rollout and the limit, and counts it', async () => {
    const { acts, texts } = activities(() => ({
      text: '<think>Let me plan the report',
      finishReason: 'length',
    }));
    const r = await acts.reportStep(input({ sampling }));
    expect(r.reportRef).toBeNull();
    expect(r.reason).toMatch(/report of q\/initial-0 was cut off at 4096 tokens/);
    expect(r.usage.completionTokens).toBe(5);
    expect(texts.size).toBe(0);
  });

  it("cuts the trajectory to half when the server still finds the report's prompt too long, twice at most", async () => {
    const refused = new ContextLengthError("This model's maximum context length is 32768 tokens");
    // A trajectory of 40 long turns, from a step log in the store.
    const records = Array.from({ length: 40 }, (_, step) => ({ step, turnRef: `kv:${step}` }));
    const blobs = { get: async () => ({ kind: 'muse.steplog', records }) } as unknown as BlobStore;
    const segments = [{ ref: 'log' }];
    const run = async (reply: (call: number) => Partial<Generation> | Error) => {
      const a = activities(reply, blobs);
      for (const r of records) await a.content.putText('j', `turn ${r.step} `.repeat(1000));
      return { ...a, report: a.acts.reportStep(input({ segments })) };
    };
    const twice = await run((n) => (n <= 2 ? refused : { text: '<report>the archive is in Lyon</report>' }));
    const r = await twice.report;
    expect(twice.texts.get(r.reportRef!)).toBe('the archive is in Lyon');
    const sizes = twice.prompts.map(promptChars);
    expect(sizes).toHaveLength(3);
    expect(sizes[1]!).toBeLessThan(0.6 * sizes[0]!);
    expect(sizes[2]!).toBeLessThan(0.6 * sizes[1]!);
    const always = await run(() => refused);
    await expect(always.report).rejects.toBeInstanceOf(ContextLengthError);
    expect(always.prompts).toHaveLength(3);
  });

  it("reads a long run's steps a few at a time, and shows each observation clipped but counts it whole", async () => {
    const records = Array.from({ length: 64 }, (_, step) => ({
      step,
      turnRef: `kv:${2 * step}`,
      observationRef: `kv:${2 * step + 1}`,
    }));
    const blobs = { get: async () => ({ kind: 'muse.steplog', records }) } as unknown as BlobStore;
    const a = activities(() => ({ text: '<report>the archive is in Lyon</report>' }), blobs);
    for (const r of records) {
      await a.content.putText('j', `turn ${r.step}`);
      await a.content.putText('j', `page ${r.step} `.repeat(2000));
    }
    let reading = 0;
    let most = 0;
    const getText = a.content.getText.bind(a.content);
    a.content.getText = async (ref: string) => {
      most = Math.max(most, ++reading);
      await new Promise((r) => setTimeout(r, 1));
      reading--;
      return getText(ref);
    };
    const r = await a.acts.reportStep(input({ segments: [{ ref: 'log' }], contextWindow: undefined }));
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(16);
    const page = 'page 5 '.repeat(2000);
    expect(r.trajectoryChars).toBe(
      records.reduce((n, s) => n + `turn ${s.step}`.length + `page ${s.step} `.repeat(2000).length, 0),
    );
    expect(promptChars(a.prompts[0]!)).toBeLessThan(64 * 4200);
    expect(a.prompts[0]![1]!.content).toContain(
      `${page.slice(0, 4000)}\n[… ${page.length - 4000} more characters omitted]`,
    );
  });

  it('writes no report for a call that answered with reasoning alone or an empty report', async () => {
    for (const text of [
      '<think>I read the trajectory.</think>',
      '<think>r</think><report>\n</report>',
      '  ',
    ]) {
      const { acts, texts } = activities(() => ({ text }));
      const r = await acts.reportStep(input({ sampling }));
      expect(r.reportRef).toBeNull();
      expect(r.reason).toMatch(/report call for q\/initial-0 wrote no report/);
      expect(texts.size).toBe(0);
    }
  });

  it('gives no verdict, and says why, for a judge cut off in its reasoning or one that answered without one', async () => {
    const replies: Array<[Partial<Generation>, RegExp]> = [
      [{ text: '<think>Gold is Paris; is Lyon correct', finishReason: 'length' }, /judge was cut off/],
      [{ text: 'Both answers name a city.', finishReason: 'stop' }, /the judge gave no verdict/],
    ];
    for (const [reply, reason] of replies) {
      const { acts } = activities(() => reply);
      const j = await acts.judgeStep({
        question: 'q',
        gold: 'Paris',
        prediction: 'Lyon',
        pool: 'default',
        sampling,
      });
      expect(j.correct).toBeNull();
      expect(j.reason).toMatch(reason);
    }
  });
});
