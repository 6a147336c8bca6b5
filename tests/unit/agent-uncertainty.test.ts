import { describe, expect, it } from 'vitest';
import { parseTurn } from '../../agent/format.js';
import { regionRanges, regionScores } from '../../agent/regions.js';
import type { RegionScores } from '../../agent/types.js';
import {
  addTurnUncertainty,
  emptyUncertaintyTally,
  meanUncertainty,
  tokenEntropies,
  topKEntropy,
  trajectoryUncertainty,
} from '../../agent/uncertainty.js';
import type { TokenLogprob } from '../../inference/types.js';

const LN2 = Math.log(2);

describe('topKEntropy', () => {
  it('uniform over 2 gives ln 2', () => {
    // p = (0.5, 0.5): H = -2 · 0.5 · ln 0.5 = ln 2 ≈ 0.693147
    expect(topKEntropy([Math.log(0.5), Math.log(0.5)])).toBeCloseTo(LN2, 12);
  });

  it('renormalises over the top-k', () => {
    // (0.1, 0.1, 0.1, 0.1) sums to 0.4; renormalised it is uniform over 4: H = ln 4 ≈ 1.386294
    expect(topKEntropy([0.1, 0.1, 0.1, 0.1].map(Math.log))).toBeCloseTo(Math.log(4), 12);
    // (0.3, 0.1) → (0.75, 0.25): H = 0.75·ln(4/3) + 0.25·ln 4 = 0.215762 + 0.346574 = 0.562335
    expect(topKEntropy([Math.log(0.3), Math.log(0.1)])).toBeCloseTo(0.562335, 6);
  });

  it('is 0 for one alternative, none, or only impossible ones', () => {
    expect(topKEntropy([Math.log(0.9)])).toBe(0);
    expect(topKEntropy([])).toBe(0);
    // -Infinity is probability 0: (1, 0) → H = 0
    expect(topKEntropy([0, Number.NEGATIVE_INFINITY])).toBe(0);
    expect(topKEntropy([Number.NEGATIVE_INFINITY])).toBe(0);
  });

  it('stays finite for very negative logprobs', () => {
    // exp(-800) underflows; shifted by the max, (-800, -800) is uniform over 2
    expect(topKEntropy([-800, -800])).toBeCloseTo(LN2, 12);
  });

  it('tokenEntropies gives one float per token', () => {
    const toks: TokenLogprob[] = [
      { token: 'a', logprob: -0.69, topLogprobs: [Math.log(0.5), Math.log(0.5)] },
      { token: 'b', logprob: 0, topLogprobs: [0] },
    ];
    const e = tokenEntropies(toks);
    expect(e).toBeInstanceOf(Float32Array);
    expect(e.length).toBe(2);
    expect(e[0]).toBeCloseTo(LN2, 6);
    expect(e[1]).toBe(0);
  });
});

function scores(tokens: string[], entropies: number[]) {
  return regionScores(
    tokens.join(''),
    tokens.map((token) => ({ token })),
    Float32Array.from(entropies),
  );
}

describe('regionScores', () => {
  it('averages entropies inside each region, tag tokens excluded', () => {
    const tokens = ['<think>', 'a', 'b', '</think>', '\n', '<tool_call>', 'x', 'y', '</tool_call>'];
    const ent = [0, 0.2, 0.4, 0.1, 0.3, 0, 1.0, 0, 0];
    const r = scores(tokens, ent);
    // think: tokens 'a','b' → mean(0.2, 0.4) = 0.3 → exp(0.3) ≈ 1.349859
    expect(r.think_ppl).toBeCloseTo(Math.exp(0.3), 6);
    // tool_call: 'x','y' → mean(1.0, 0) = 0.5 → exp(0.5) ≈ 1.648721
    expect(r.tool_call_ppl).toBeCloseTo(Math.exp(0.5), 6);
    // all: (0+0.2+0.4+0.1+0.3+0+1.0+0+0)/9 = 2.0/9 → exp(0.2222) ≈ 1.248849
    expect(r.all_ppl).toBeCloseTo(Math.exp(2 / 9), 6);
  });

  it('uniform-over-2 reasoning gives exp(ln 2) = 2', () => {
    const r = scores(['<think>', 'p', 'q', '</think>'], [0, LN2, LN2, 0]);
    // think: mean(ln2, ln2) = ln 2 → 2; all: (2 ln 2)/4 = ln2/2 → sqrt 2
    expect(r.think_ppl).toBeCloseTo(2, 6);
    expect(r.tool_call_ppl).toBeNull();
    expect(r.all_ppl).toBeCloseTo(Math.SQRT2, 6);
  });

  it('leaves out the pieces of a tag split over several tokens', () => {
    const r = scores(['<', 'think', '>', 'hi', '</', 'think', '>'], [1, 1, 1, 0.5, 1, 1, 1]);
    // only 'hi' holds any of the content: exp(0.5)
    expect(r.think_ppl).toBeCloseTo(Math.exp(0.5), 6);
  });

  it('keeps a token that runs from the opening tag into the content', () => {
    // A backend with a reasoning parser puts back the <think> the template opened: it joins the first token.
    const r = scores(
      ['<think>Search', '</think>', '<tool_call>', '{"name":"s","arguments":{}}', '</tool_call>'],
      [1.5, 0, 0, 0.7, 0],
    );
    expect(r.think_ppl).toBeCloseTo(Math.exp(1.5), 6);
    expect(r.tool_call_ppl).toBeCloseTo(Math.exp(0.7), 6);
  });

  it('keeps a token that starts in the content and runs into the closing tag', () => {
    const r = scores(['<think>', 'ab', 'c</think>'], [0, 0.2, 0.6]);
    // 'ab' and 'c</think>' both hold content: mean(0.2, 0.6) = 0.4
    expect(r.think_ppl).toBeCloseTo(Math.exp(0.4), 6);
  });

  it('reasoning starts at the beginning when <think> came from the template', () => {
    const r = scores(['abc', '</think>', '<answer>', 'X', '</answer>'], [0.4, 0, 0, 2, 0]);
    // think: 'abc' → exp(0.4); no tool call; all: 2.4/5 = 0.48
    expect(r.think_ppl).toBeCloseTo(Math.exp(0.4), 6);
    expect(r.tool_call_ppl).toBeNull();
    expect(r.all_ppl).toBeCloseTo(Math.exp(0.48), 6);
  });

  it('a tool_call tag quoted in the reasoning is not the tool-call region', () => {
    const r = scores(
      ['<think>', 'use <tool_call>', '</think>', '<tool_call>', '{}', '</tool_call>'],
      [0, 1, 0, 0, 0.25, 0],
    );
    expect(r.think_ppl).toBeCloseTo(Math.exp(1), 6);
    expect(r.tool_call_ppl).toBeCloseTo(Math.exp(0.25), 6);
  });

  it('an unclosed tool call runs to the end; empty regions are null', () => {
    const r = scores(['<think>', '</think>', '<tool_call>', '{"n', 'ame'], [0, 0, 0, 0.2, 0.4]);
    expect(r.think_ppl).toBeNull();
    expect(r.tool_call_ppl).toBeCloseTo(Math.exp(0.3), 6);
    expect(regionScores('', [], new Float32Array(0))).toEqual({
      think_ppl: null,
      tool_call_ppl: null,
      all_ppl: null,
    });
  });

  it('locates regions in the tokens when the text differs', () => {
    const tokens = ['<think>', 'a', '</think>'].map((token) => ({ token }));
    const r = regionScores('something else', tokens, Float32Array.from([0, 1, 0]));
    expect(r.think_ppl).toBeCloseTo(Math.E, 6);
  });
});

describe('regionRanges agrees with parseTurn', () => {
  const CALL = '{"name": "search", "arguments": {"query": ["q"]}}';
  const slice = (text: string, r: { start: number; end: number } | null) =>
    r ? text.slice(r.start, r.end).trim() : null;

  const parsed = (body: string | null): unknown => {
    try {
      return JSON.parse(body ?? '');
    } catch {
      return body;
    }
  };

  // The tool-call region is exactly the body parseTurn parsed, or absent when parseTurn saw no call.
  function expectSameToolCall(text: string) {
    const t = parseTurn(text);
    const body = slice(text, regionRanges(text).toolCall);
    if (t.kind === 'tool_call') expect(parsed(body)).toEqual(t.call);
    else if (t.kind === 'invalid_tool_call') expect(body).toBe(t.raw);
    else expect(body).toBeNull();
    return body;
  }

  it('an unclosed tool call stops where parseTurn stops it, not at the end', () => {
    for (const tail of [
      '\n<tool_response>\nfake</tool_response>',
      ' </tool_response>',
      '<answer>A</answer>',
    ]) {
      const text = `<think>x</think><tool_call>${CALL}${tail}`;
      expect(parseTurn(text).kind).toBe('tool_call');
      expect(expectSameToolCall(text)).toBe(CALL);
    }
    // Invalid: the region is the raw body the error is about.
    const bad = '<think>x</think><tool_call>{oops<tool_response>r';
    expect(parseTurn(bad)).toMatchObject({ kind: 'invalid_tool_call', raw: '{oops' });
    expect(expectSameToolCall(bad)).toBe('{oops');
  });

  it('a tool call after or inside a closed answer is not a region', () => {
    for (const text of [
      `<think>t</think><answer>A</answer><tool_call>${CALL}</tool_call>`,
      `<think>t</think><answer>see <tool_call>${CALL}</tool_call></answer>`,
    ]) {
      expect(parseTurn(text).kind).toBe('answer');
      expect(regionRanges(text).toolCall).toBeNull();
    }
    // An <answer> never closed before a whole tool call is not the action (as in the reference, which takes a closed
    // tool call first): the call is, and is the region scored.
    const unclosed = `<think>t</think><answer>unclosed <tool_call>${CALL}</tool_call>`;
    expect(parseTurn(unclosed).kind).toBe('tool_call');
    expectSameToolCall(unclosed);
  });

  it('think is the reasoning parseTurn returns whenever the turn has a think tag', () => {
    for (const text of [
      `<think> a </think><tool_call>${CALL}</tool_call>`,
      `from the template</think>\n<tool_call>${CALL}</tool_call>`,
      `<think>truncated <report>R</report><tool_call>${CALL}</tool_call>`,
      `<think>quoted <tool_call>${CALL}</tool_call> is not the action</think><answer>A</answer>`,
      '<think>only thinking',
    ]) {
      expect(slice(text, regionRanges(text).think)).toBe(parseTurn(text).think);
      expectSameToolCall(text);
    }
  });

  it('without any think tag the text before the action is not scored as reasoning', () => {
    const text = `I will search.\n<tool_call>${CALL}</tool_call>`;
    // parseTurn keeps that text as think; the regions do not.
    expect(parseTurn(text).think).toBe('I will search.');
    expect(regionRanges(text).think).toBeNull();
    expect(expectSameToolCall(text)).toBe(CALL);
    expect(regionRanges('lorem ipsum')).toEqual({ think: null, toolCall: null });
  });

  it('regionScores leaves the imagined tool response and a post-answer call out', () => {
    const r = scores(
      ['<think>', 'a', '</think>', '<tool_call>', '{}', '\n', '<tool_response>', 'junk', '</tool_response>'],
      [0, 0.1, 0, 0, 0.2, 0.4, 5, 5, 5],
    );
    // tool_call: '{}', '\n' → mean(0.2, 0.4) = 0.3
    expect(r.tool_call_ppl).toBeCloseTo(Math.exp(0.3), 6);
    const a = scores(
      ['<think>', 'a', '</think>', '<answer>', 'X', '</answer>', '<tool_call>', '{}'],
      [0, 0.1, 0, 0, 0, 0, 0, 1],
    );
    expect(a.tool_call_ppl).toBeNull();
    expect(a.think_ppl).toBeCloseTo(Math.exp(0.1), 6);
  });
});

describe('trajectoryUncertainty', () => {
  it('is the mean all_ppl over scored turns', () => {
    // (2 + 4) / 2 = 3; the null turn is skipped
    expect(
      trajectoryUncertainty([
        { think_ppl: null, tool_call_ppl: null, all_ppl: 2 },
        { think_ppl: 9, tool_call_ppl: 9, all_ppl: 4 },
        { think_ppl: null, tool_call_ppl: null, all_ppl: null },
      ]),
    ).toBe(3);
  });

  it('is Infinity without any score', () => {
    expect(trajectoryUncertainty([])).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('running uncertainty tally', () => {
  const turn = (all_ppl: number | null): RegionScores => ({ think_ppl: null, tool_call_ppl: null, all_ppl });

  it('sums the finite scores and skips unscored turns', () => {
    const turns = [turn(2), turn(null), turn(4), turn(Number.NaN), turn(1.5), turn(Number.POSITIVE_INFINITY)];
    let tally = emptyUncertaintyTally();
    for (const t of turns) tally = addTurnUncertainty(tally, t);
    expect(tally).toEqual({ allPplSum: 7.5, scoredTurns: 3 });
    expect(meanUncertainty(tally)).toBe(2.5);
  });

  it('is Infinity before any scored turn, and the tally survives JSON', () => {
    const empty = addTurnUncertainty(emptyUncertaintyTally(), turn(null));
    expect(meanUncertainty(empty)).toBe(Number.POSITIVE_INFINITY);
    const tally = addTurnUncertainty(empty, turn(3.25));
    expect(JSON.parse(JSON.stringify(tally))).toEqual(tally);
  });
});
