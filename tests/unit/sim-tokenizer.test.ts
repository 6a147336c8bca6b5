import { describe, expect, it } from 'vitest';
import { fnv1a32 } from '../../common/hash.js';
import {
  countSimTokens,
  parseChatPrompt,
  renderChatPrompt,
  simDetokenize,
  simEncode,
  simTokenize,
} from '../../sim/tokenizer.js';

const SAMPLES = [
  '',
  'hello',
  '  leading and trailing  ',
  'The Varnholt Bridge was built by Ostrava Works in 1887.',
  '<tool_call>{"name":"visit","arguments":{"url":["sim://kb/varnholt-bridge-3fa9c1"]}}</tool_call>',
  'supercalifragilisticexpialidocious antidisestablishmentarianism',
  'tabs\tand\nnewlines\n\n\n\n\n\n\n\n\n\nmany',
  'unicode: café, naïve, 日本語のテキスト, emoji 🚀🔥 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  `${'x'.repeat(100)} ${' '.repeat(30)}end`,
];

describe('simTokenize', () => {
  it('round-trips every string exactly', () => {
    for (const s of SAMPLES) {
      const toks = simTokenize(s);
      expect(toks.join('')).toBe(s);
      expect(countSimTokens(s)).toBe(toks.length);
      for (const t of toks) expect(t.length).toBeGreaterThan(0);
    }
  });

  it('keeps tokens short and never splits a surrogate pair', () => {
    for (const s of SAMPLES) {
      for (const t of simTokenize(s)) {
        expect(t.trimStart().length).toBeLessThanOrEqual(10);
        const last = t.charCodeAt(t.length - 1);
        expect(last >= 0xd800 && last <= 0xdbff).toBe(false);
      }
    }
  });

  it('gives a realistic characters-per-token ratio on prose', () => {
    const prose =
      'The company that built the bridge was founded by an engineer who was born in a small harbour town. '.repeat(
        20,
      );
    const ratio = prose.length / countSimTokens(prose);
    expect(ratio).toBeGreaterThan(3);
    expect(ratio).toBeLessThan(6);
  });

  it('is fast on multi-megabyte prompts', () => {
    const big = 'Archive note: the following passage reproduces catalogue text, 1887-1901. '.repeat(60_000);
    const t0 = performance.now();
    const toks = simTokenize(big);
    const ms = performance.now() - t0;
    expect(toks.join('').length).toBe(big.length);
    expect(ms).toBeLessThan(2000);
  });
});

describe('chat template', () => {
  const messages = [
    { role: 'system' as const, content: 'sys' },
    { role: 'user' as const, content: 'What?\nline two' },
    { role: 'assistant' as const, content: '<think>x</think>' },
  ];

  it('renders a prefix of any continuation', () => {
    const a = renderChatPrompt(messages.slice(0, 2));
    const b = renderChatPrompt(messages);
    expect(b.startsWith(a)).toBe(true);
    expect(b.endsWith('<|im_start|>assistant\n')).toBe(true);
  });

  it('parses back what it renders, and wraps other text as one user message', () => {
    expect(parseChatPrompt(renderChatPrompt(messages))).toEqual(messages);
    expect(parseChatPrompt('plain prompt')).toEqual([{ role: 'user', content: 'plain prompt' }]);
  });
});

describe('token ids', () => {
  it('encodes and decodes', () => {
    const s = 'The SS Marwick was built by Orm Shipwrights.';
    const ids = simEncode(s);
    expect(ids.every((i) => Number.isInteger(i) && i >= 0)).toBe(true);
    expect(simDetokenize(ids)).toBe(s);
    expect(simEncode(s)).toEqual(ids);
  });

  it('gives colliding tokens different ids, so any text round-trips through ids', () => {
    // These two hash to the same id in a Qwen-sized vocabulary.
    expect(fnv1a32(" '") % 151_936).toBe(fnv1a32(' Ashford') % 151_936);
    const text = "The Ashford ' bridge and 'quoted' Ashford";
    expect(simDetokenize(simEncode(text))).toBe(text);
    // Thousands of distinct words: many hash collisions, no loss.
    const words = Array.from({ length: 20_000 }, (_, i) => `w${(i * 7919).toString(36)}`);
    const many = words.join(' ');
    expect(simDetokenize(simEncode(many))).toBe(many);
    expect(new Set(simEncode(many)).size).toBe(new Set(simTokenize(many)).size);
  });

  it('names an unknown id', () => {
    expect(() => simDetokenize([2 ** 40])).toThrow(/unknown simulated token id/);
  });
});
