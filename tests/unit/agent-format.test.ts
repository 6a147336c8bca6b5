import { describe, expect, it } from 'vitest';
import {
  clipMiddle,
  clipText,
  clipToShare,
  MAX_ANSWER_CHARS,
  utf8Length,
  wellFormed,
} from '../../agent/clip.js';
import {
  extractTag,
  outputComplete,
  parseAnswer,
  parseJudgement,
  parseReport,
  parseSummary,
  parseTurn,
  TOOL_CALL_FORMAT_ERROR,
  toolCallProblem,
  turnSpans,
} from '../../agent/format.js';
import { regionRanges } from '../../agent/regions.js';
import { packValue, unpackValue } from '../../common/msgpack.js';

describe('parseTurn', () => {
  it('parses a well-formed tool call', () => {
    const t = parseTurn(
      '<think>\nI should search.\n</think>\n<tool_call>\n{"name": "search", "arguments": {"query": ["a b"]}}\n</tool_call>',
    );
    expect(t).toEqual({
      kind: 'tool_call',
      think: 'I should search.',
      call: { name: 'search', arguments: { query: ['a b'] } },
    });
  });

  it('parses an answer', () => {
    const t = parseTurn('<think>done</think>\n\n<answer>  Paris </answer>');
    expect(t).toEqual({ kind: 'answer', think: 'done', answer: 'Paris' });
  });

  it('an answer re-opened to redraft is its last draft, as parseAnswer reads one', () => {
    const t = parseTurn('<think>x</think>\n<answer>Paris. Hmm, wait, reconsider.\n<answer>Lyon</answer>');
    expect(t).toEqual({ kind: 'answer', think: 'x', answer: 'Lyon' });
    expect(parseTurn('<answer>\n<answer> Lyon </answer>')).toMatchObject({ kind: 'answer', answer: 'Lyon' });
    expect(parseAnswer('<answer>Paris. Hmm.\n<answer>Lyon</answer>')).toBe('Lyon');
    // A redraft left empty is no answer.
    expect(parseTurn('<answer>Paris\n<answer> </answer>')).toMatchObject({
      kind: 'no_action',
      emptyAnswer: true,
    });
  });

  it('turns invalid JSON into invalid_tool_call with the reference observation', () => {
    const t = parseTurn('<think>x</think><tool_call>{"name": "search", "arguments": {query: }</tool_call>');
    expect(t.kind).toBe('invalid_tool_call');
    if (t.kind !== 'invalid_tool_call') throw new Error('unreachable');
    expect(t.error).toBe(TOOL_CALL_FORMAT_ERROR);
    expect(t.error).toBe(
      'Error: Tool call is not a valid JSON. Tool call must contain a valid "name" and "arguments" field.',
    );
    expect(t.raw).toBe('{"name": "search", "arguments": {query: }');
    expect(toolCallProblem(t.raw)).toBe('tool call is not valid JSON');
  });

  it('refuses two calls in one block rather than run the first and drop the second', () => {
    const two =
      '{"name": "search", "arguments": {"query": ["a"]}}\n{"name": "visit", "arguments": {"url": ["u"], "goal": "g"}}';
    const t = parseTurn(`<think>x</think><tool_call>${two}</tool_call>`);
    expect(t.kind).toBe('invalid_tool_call');
    if (t.kind !== 'invalid_tool_call') throw new Error('unreachable');
    expect(t.error).toBe(TOOL_CALL_FORMAT_ERROR);
    expect(toolCallProblem(two)).toBe('tool call block holds more than one call (one call per <tool_call>)');
    // Text after the one call (an imagined response, an example object with a name) is still tolerated.
    expect(
      parseTurn(
        '<tool_call>{"name": "search", "arguments": {"query": ["a"]}} e.g. {"title": "t", "name": "n"}</tool_call>',
      ),
    ).toMatchObject({ kind: 'tool_call', call: { name: 'search' } });
    expect(
      parseTurn(
        '<tool_call>{"name": "search", "arguments": {"query": ["a"]}} <tool_response>{"hits": 3}</tool_call>',
      ),
    ).toMatchObject({ kind: 'tool_call', call: { name: 'search' } });
  });

  it('rejects a call without a string name', () => {
    const t = parseTurn('<think>x</think><tool_call>{"arguments": {"query": ["q"]}}</tool_call>');
    expect(t.kind).toBe('invalid_tool_call');
    expect(toolCallProblem('{"arguments": {"query": ["q"]}}')).toBe('tool call has no string "name"');
    expect(toolCallProblem('{"name": 3, "arguments": {}}')).toBe('tool call has no string "name"');
  });

  it('rejects arguments that are not an object', () => {
    expect(parseTurn('<tool_call>{"name": "visit", "arguments": ["u"]}</tool_call>').kind).toBe(
      'invalid_tool_call',
    );
    expect(toolCallProblem('{"name": "visit"}')).toBe('tool call has no object "arguments"');
    expect(toolCallProblem('[1, 2]')).toBe('tool call is not a JSON object');
  });

  it('accepts arguments given as a JSON string', () => {
    const t = parseTurn(
      '<think>x</think><tool_call>{"name": "search", "arguments": "{\\"query\\": [\\"q\\"]}"}</tool_call>',
    );
    expect(t).toMatchObject({ kind: 'tool_call', call: { name: 'search', arguments: { query: ['q'] } } });
  });

  it('strips a code fence inside the tool call', () => {
    const t = parseTurn(
      '<think>x</think>\n<tool_call>\n```json\n{"name": "visit", "arguments": {"url": ["u"], "goal": "g"}}\n```\n</tool_call>',
    );
    expect(t).toMatchObject({
      kind: 'tool_call',
      call: { name: 'visit', arguments: { url: ['u'], goal: 'g' } },
    });
  });

  it('parses a fenced call in linear time, also an unclosed fence over long runs of blanks (garbage output)', () => {
    const call = '{"name": "search", "arguments": {"query": ["q"]}}';
    const fenced = parseTurn(`<think>x</think><tool_call>\`\`\`json${call}\`\`\`</tool_call>`);
    expect(fenced).toMatchObject({ kind: 'tool_call', call: { name: 'search' } });
    for (const blank of [' ', '\n']) {
      // 20k blanks: the fence pattern this replaces took minutes on 5k (cubic), so the test would time out.
      const t = parseTurn(
        `<think>x</think><tool_call>\`\`\`json\n${blank.repeat(20_000)}${call}</tool_call>`,
      );
      expect(t).toMatchObject({ kind: 'tool_call', call: { name: 'search' } });
    }
  }, 5_000);

  it('an <answer> cut off at the token limit is no answer; one the model ended itself, or closed, is', () => {
    const cut = '<think>Checked the record.</think>\n<answer>The treaty was signed in 18';
    expect(parseTurn(cut, 'length')).toEqual({
      kind: 'no_action',
      think: 'Checked the record.',
      cutOffAnswer: true,
    });
    expect(parseTurn(cut, 'stop')).toMatchObject({ kind: 'answer', answer: 'The treaty was signed in 18' });
    expect(parseTurn(cut)).toMatchObject({ kind: 'answer' });
    expect(parseTurn(`${cut}52</answer> and then the limit`, 'length')).toMatchObject({
      kind: 'answer',
      answer: 'The treaty was signed in 1852',
    });
  });

  it('an empty <answer> (blank, punctuation only) is no answer: the model is asked again', () => {
    for (const answer of ['', '   ', '\n', '?', '. . .', '——']) {
      expect(parseTurn(`<think>Done.</think><answer>${answer}</answer>`, 'stop')).toEqual({
        kind: 'no_action',
        think: 'Done.',
        emptyAnswer: true,
      });
    }
    // An article alone, a digit, a sign, a symbol are answers.
    for (const answer of ['A', '0', '−3', '½', '€', '°C'])
      expect(parseTurn(`<answer>${answer}</answer>`, 'stop')).toMatchObject({ kind: 'answer', answer });
  });

  it('bounds what a degenerate turn can put into history: an absurd tool name is invalid, a huge answer is clipped', () => {
    const name = 'x'.repeat(16_000);
    expect(parseTurn(`<tool_call>{"name": "${name}", "arguments": {}}</tool_call>`)).toMatchObject({
      kind: 'invalid_tool_call',
    });
    expect(toolCallProblem(`{"name": "${name}", "arguments": {}}`)).toBe(
      'tool call "name" is longer than 128 characters',
    );
    const t = parseTurn(`<answer>${'y'.repeat(20_000)}</answer>`);
    expect(t.kind).toBe('answer');
    const answer = (t as { answer: string }).answer;
    expect(answer.startsWith('y'.repeat(MAX_ANSWER_CHARS))).toBe(true);
    expect(answer.slice(MAX_ANSWER_CHARS)).toBe(`\n[… ${20_000 - MAX_ANSWER_CHARS} more characters omitted]`);
  });

  it('tolerates text around the JSON object and after the call', () => {
    const t = parseTurn(
      '<think>x</think><tool_call>call: {"name": "search", "arguments": {"query": ["q"]}} ok</tool_call>\nmore text <answer>no</answer>',
    );
    expect(t).toMatchObject({ kind: 'tool_call', call: { name: 'search' } });
  });

  it('handles a missing </think>: reasoning runs to the action', () => {
    const t = parseTurn('<think>thinking hard\n<answer>42</answer>');
    expect(t).toEqual({ kind: 'answer', think: 'thinking hard', answer: '42' });
  });

  it('handles a missing <think> (opened by the chat template)', () => {
    const t = parseTurn('reasoning here</think>\n<answer>42</answer>');
    expect(t).toEqual({ kind: 'answer', think: 'reasoning here', answer: '42' });
  });

  it('ignores tags quoted inside the reasoning', () => {
    const t = parseTurn(
      '<think>I could write <answer>x</answer> but no</think><tool_call>{"name":"search","arguments":{"query":["q"]}}</tool_call>',
    );
    expect(t.kind).toBe('tool_call');
    expect(t.think).toBe('I could write <answer>x</answer> but no');
  });

  it('reads a truncated but complete tool call without its closing tag', () => {
    const t = parseTurn(
      '<think>x</think><tool_call>\n{"name": "search", "arguments": {"query": ["q"]}}\n<tool_response>',
    );
    expect(t).toMatchObject({ kind: 'tool_call', call: { name: 'search' } });
  });

  it('reads an unclosed answer to the end', () => {
    expect(parseTurn('<think>x</think><answer>Lyon')).toMatchObject({ kind: 'answer', answer: 'Lyon' });
  });

  it('gives no_action for garbage and for reasoning alone', () => {
    expect(parseTurn('lorem ipsum')).toEqual({ kind: 'no_action', think: 'lorem ipsum' });
    expect(parseTurn('')).toEqual({ kind: 'no_action', think: '' });
    expect(parseTurn('<think>only thinking</think>\n')).toEqual({
      kind: 'no_action',
      think: 'only thinking',
    });
  });

  it('tells a finished ReSum summary from one cut off at the token limit', () => {
    expect(
      outputComplete('<think>Let me go through the history. Step 1 searched for', 'length', 'summary'),
    ).toBe(false);
    expect(outputComplete('<think>a</think><summary>Found A; next B', 'length', 'summary')).toBe(false);
    expect(outputComplete('<think>a</think><summary>Found A.</summary> and more', 'length', 'summary')).toBe(
      true,
    );
    expect(outputComplete('<think>a</think>Found A, untagged.', 'stop', 'summary')).toBe(true);
    expect(outputComplete('<think>never closed', 'stop', 'summary')).toBe(false);
  });

  it('returns the iterresearch report', () => {
    const t = parseTurn(
      '<think>t</think>\n<report>\n# Findings\n- A\n</report>\n<tool_call>{"name":"search","arguments":{"query":["q"]}}</tool_call>',
    );
    expect(t).toMatchObject({ kind: 'tool_call', report: '# Findings\n- A' });
    const a = parseTurn('<think>t</think><report>R</report><answer>X</answer>');
    expect(a).toEqual({ kind: 'answer', think: 't', answer: 'X', report: 'R' });
    expect('report' in parseTurn('<think>t</think><answer>X</answer>')).toBe(false);
    // Written after the action instead of before it: still the report, not lost.
    const call = '<tool_call>{"name":"search","arguments":{"query":["q"]}}</tool_call>';
    expect(parseTurn(`<think>t</think>${call}\n<report>new facts: A=1</report>`)).toMatchObject({
      kind: 'tool_call',
      report: 'new facts: A=1',
    });
    // Not one past a response or next round the model imagined (the prompt's own layout echoed), nor one cut off.
    for (const imagined of [
      `<last_observation>imagined result</last_observation>\n<report>IMAGINED</report>`,
      `\n<question>Q</question>\n<report>old</report>`,
    ])
      expect('report' in parseTurn(`<think>t</think>${call}${imagined}`), imagined).toBe(false);
    expect(
      'report' in parseTurn(`<think>t</think>${call}<tool_response>x</tool_response><report>R</report>`),
    ).toBe(false);
    expect('report' in parseTurn(`<think>t</think>${call}\n<report>new facts: A`)).toBe(false);
    // Cut off inside the report, no action after it: no report (an unclosed one ended by an action still counts).
    expect('report' in parseTurn('<think>t</think><report>R1. R2 is par')).toBe(false);
    expect(parseTurn('<think>t</think><report>R<answer>X</answer>')).toMatchObject({
      report: 'R',
      answer: 'X',
    });
  });

  it('keeps the action of a turn the model wrote past, into an imagined next turn', () => {
    const t = parseTurn(
      'reason</think>\n<tool_call>{"name":"search","arguments":{"query":["q"]}}</tool_call>\n<tool_response>x</tool_response>\n<think>next',
    );
    expect(t).toMatchObject({ kind: 'tool_call', think: 'reason', call: { name: 'search' } });
    // With no think tags of its own, the imagined turn's <think>…</think> is not taken for this turn's reasoning,
    // nor its answer (drawn from a response the model made up) for this turn's action.
    const call = '<tool_call>{"name":"search","arguments":{"query":["capital of X"]}}</tool_call>';
    const ranOn = parseTurn(
      `I should look this up.\n${call}\n<tool_response>X's capital is Foo.</tool_response>\n<think>The search says Foo.</think>\n<answer>Foo</answer>`,
    );
    expect(ranOn).toMatchObject({
      kind: 'tool_call',
      think: 'I should look this up.',
      call: { name: 'search' },
    });
    expect(
      turnSpans(`I should look this up.\n${call}\n<think>The search says Foo.</think>`).thinkTagged,
    ).toBe(false);
    expect(parseTurn(`I should look this up.\n${call}\n<think>next`)).toMatchObject({ kind: 'tool_call' });
    // The same when the action follows a report (iterresearch's format) or a tag the reasoning mentions: the run-on
    // turn's answer is not taken, and the scored tool call is the real one, at its own offsets.
    expect(
      parseTurn(
        'Plan.\n<report>M1</report>\n<answer>Paris</answer>\n<think>Hmm.</think><answer>Lyon</answer>',
      ),
    ).toEqual({ kind: 'answer', think: 'Plan.', answer: 'Paris', report: 'M1' });
    const afterReport = `Plan.\n<report>M1</report>\n${call}\n<think>next`;
    expect(parseTurn(afterReport)).toMatchObject({ kind: 'tool_call', think: 'Plan.', report: 'M1' });
    const callStart = afterReport.indexOf('<tool_call>') + '<tool_call>'.length;
    expect(regionRanges(afterReport).toolCall).toEqual({
      start: callStart,
      end: afterReport.indexOf('</tool_call>'),
    });
    const afterMention = `I won't write <answer> yet.\n${call}\n<think>next`;
    expect(parseTurn(afterMention)).toMatchObject({
      kind: 'tool_call',
      think: "I won't write <answer> yet.",
      call: { name: 'search' },
    });
    expect(regionRanges(afterMention).toolCall).toEqual({
      start: afterMention.indexOf('<tool_call>') + '<tool_call>'.length,
      end: afterMention.indexOf('</tool_call>'),
    });
    // And as the server returns such a turn, ended at the <tool_response> stop string with nothing after the call:
    // the mentioned <answer>, unclosed, is not an answer made of the words up to the call.
    for (const asServed of [
      `I won't write <answer> yet.\n${call}`,
      `<think>ok</think>\nNo <answer> yet.\n${call}`,
    ])
      expect(parseTurn(asServed, 'stop')).toMatchObject({ kind: 'tool_call', call: { name: 'search' } });
    expect(parseTurn(`<think>ok</think>\n<answer>Paris</answer>\n${call}`)).toMatchObject({ kind: 'answer' });
    // A <think> mentioned inside the reasoning does not cut off what comes before it.
    const thinkMention = `<think>I should use the <think> tag format, then search.</think>\n${call}`;
    expect(parseTurn(thinkMention)).toMatchObject({
      kind: 'tool_call',
      think: 'I should use the <think> tag format, then search.',
    });
    expect(regionRanges(thinkMention).think).toEqual({
      start: '<think>'.length,
      end: thinkMention.indexOf('</think>'),
    });
    // The other way round: a <tool_call> mentioned, unclosed and no call, before a whole answer.
    for (const mentioned of [
      '<think>hmm</think>I will not use <tool_call> now.\n<answer>Paris</answer>',
      'No <tool_call> needed: <answer>Paris</answer>',
    ])
      expect(parseTurn(mentioned, 'stop')).toMatchObject({ kind: 'answer', answer: 'Paris' });
    // An unclosed call that does read as one is still the action, answer after it or not.
    expect(
      parseTurn('<think>ok</think><tool_call>{"name":"search","arguments":{}}\n<answer>Paris</answer>'),
    ).toMatchObject({ kind: 'tool_call', call: { name: 'search' } });
    // Tags only mentioned in reasoning the chat template opened are not an action before the <think> they mention.
    expect(
      parseTurn(
        `I should not give an <answer> yet; the instructions say write <think> first.</think>\n${call}`,
      ),
    ).toMatchObject({ kind: 'tool_call', call: { name: 'search' } });
    expect(
      parseTurn('Hmm, <report> must summarise; <think> is closed now.</think><answer>Paris</answer>'),
    ).toMatchObject({ kind: 'answer', answer: 'Paris' });
    // Nor are whole tags quoted in it, an example call or an empty answer, followed by more reasoning.
    const example = '<tool_call>{"name":"visit","arguments":{"url":["u"]}}</tool_call>';
    for (const reasoning of [
      `The format is ${example}, and every turn starts with <think>. So I search.`,
      'No <answer></answer> yet; write <think> first.',
      "I won't write <answer> until the <tool_response> confirms it; <think> first.",
    ])
      expect(parseTurn(`${reasoning}</think>\n${call}`), reasoning).toMatchObject({
        kind: 'tool_call',
        call: { name: 'search' },
      });
    expect(parseTurn(`Example: ${example}. The next turn starts with <think> and I will`).kind).toBe(
      'no_action',
    );
    expect(
      parseTurn(`Per instructions <report>...</report> then <think>? ok.</think><report>R</report>\n${call}`),
    ).toMatchObject({ kind: 'tool_call', report: 'R' });
  });

  it('does not take a tool call or answer quoted in the report for the action', () => {
    const rerun = parseTurn(
      '<think>t</think><report>Last I did <tool_call>{"name":"search","arguments":{"query":["old"]}}</tool_call> and found X.</report>' +
        '<tool_call>{"name":"search","arguments":{"query":["new"]}}</tool_call>',
    );
    expect(rerun).toMatchObject({ kind: 'tool_call', call: { arguments: { query: ['new'] } } });
    expect(rerun.report).toContain('Last I did');
    const draft = parseTurn(
      '<think>t</think><report>The final will be <answer>Paris</answer>; I need to check.</report>' +
        '<tool_call>{"name":"visit","arguments":{"url":["u"],"goal":"g"}}</tool_call>',
    );
    expect(draft).toMatchObject({ kind: 'tool_call', call: { name: 'visit' } });
  });

  it('reads a tool call followed by a stray brace', () => {
    const t = parseTurn(
      '<think>x</think><tool_call>{"name":"search","arguments":{"query":["a}"]}}\n}</tool_call>',
    );
    expect(t).toMatchObject({ kind: 'tool_call', call: { name: 'search', arguments: { query: ['a}'] } } });
  });

  it('takes the first action when both appear', () => {
    expect(
      parseTurn('<think>t</think><answer>A</answer><tool_call>{"name":"s","arguments":{}}</tool_call>').kind,
    ).toBe('answer');
  });
});

describe('turnSpans', () => {
  const at = (text: string, s: { start: number; end: number } | null) =>
    s ? text.slice(s.start, s.end) : null;

  it('gives the untrimmed content ranges parseTurn reads', () => {
    const text = '<think> t </think><report> R </report><tool_call> {"name":"s","arguments":{}} </tool_call>';
    const s = turnSpans(text);
    expect(at(text, s.think)).toBe(' t ');
    expect(at(text, s.report)).toBe(' R ');
    expect(s.action?.kind).toBe('tool_call');
    expect(at(text, s.action)).toBe(' {"name":"s","arguments":{}} ');
    expect(s.thinkTagged).toBe(true);
  });

  it('stops an unclosed tool call at a response or answer tag', () => {
    for (const stop of ['<tool_response>', '</tool_response>', '<answer>']) {
      const text = `<think>x</think><tool_call>{"name":"s","arguments":{}}${stop}rest`;
      expect(at(text, turnSpans(text).action)).toBe('{"name":"s","arguments":{}}');
    }
    expect(at('<tool_call>{"n', turnSpans('<tool_call>{"n').action)).toBe('{"n');
  });

  it('tells an action the token limit cut off from one the model closed and got wrong', () => {
    const cut = '<think>t</think><tool_call>{"name":"search","arguments":{"query":["a';
    const closedBad = '<think>t</think><tool_call>{"name":"search" "arguments":{}}</tool_call> and so on';
    expect(parseTurn(cut, 'length')).toMatchObject({ kind: 'invalid_tool_call', cutOff: true });
    expect(parseTurn(closedBad, 'length')).toMatchObject({ kind: 'invalid_tool_call' });
    expect('cutOff' in parseTurn(closedBad, 'length')).toBe(false);
    // Ended by the model (a stop string), an unclosed call is the model's.
    expect('cutOff' in parseTurn(cut, 'stop')).toBe(false);
  });

  it('takes the first action, and a whole report before it or right after it', () => {
    const text = '<think>t</think><answer>A</answer><tool_call>{}</tool_call>';
    expect(turnSpans(text).action).toMatchObject({ kind: 'answer' });
    expect(at(text, turnSpans(text).action)).toBe('A');
    const after = '<think>t</think><answer>A</answer><report>R</report>';
    expect(at(after, turnSpans(after).report)).toBe('R');
    // One in a next turn the model went on to imagine is not this turn's.
    expect(
      turnSpans('<think>t</think><answer>A</answer><think>u</think><report>R</report>').report,
    ).toBeNull();
  });

  it('marks reasoning that no think tag delimits', () => {
    const text = 'plan<tool_call>{}</tool_call>';
    expect(turnSpans(text)).toMatchObject({ thinkTagged: false, think: { start: 0, end: 4 } });
    expect(turnSpans('</think>x').thinkTagged).toBe(true);
    expect(turnSpans('')).toEqual({
      think: { start: 0, end: 0 },
      thinkTagged: false,
      report: null,
      action: null,
    });
  });
});

describe('tag helpers', () => {
  it('extractTag takes the first occurrence, trimmed, unclosed to the end', () => {
    expect(extractTag('a <x> 1 </x> <x>2</x>', 'x')).toBe('1');
    expect(extractTag('<x>open', 'x')).toBe('open');
    expect(extractTag('none', 'x')).toBeNull();
  });

  it('parseSummary and parseReport skip reasoning and fall back to the whole response', () => {
    expect(parseSummary('<think><summary>draft</summary></think><summary>\nfinal\n</summary>')).toBe('final');
    expect(parseSummary('<think>x</think>\nplain summary')).toBe('plain summary');
    expect(parseSummary('<think>x</think>  ')).toBeNull();
    expect(parseReport('<think>x</think><report>## Plan\nFinal answer: 7</report>')).toBe(
      '## Plan\nFinal answer: 7',
    );
  });

  // The time limit catches a search from each tag to the end, which took 6 s on the first of these; one pass, milliseconds.
  it('reads degenerate turns of thousands of tags ahead of an imagined <think> in one pass', {
    timeout: 2000,
  }, () => {
    expect(parseTurn(`${'reasoning <answer> '.repeat(20_000)}x <think> y`)).toEqual({
      kind: 'no_action',
      think: 'y',
    });
    const call = '<tool_call>{"name":"search","arguments":{"query":["x"]}}</tool_call>';
    expect(parseTurn(`${`${call} hmm `.repeat(5000)}${call}\n<think> y`).kind).toBe('tool_call');
    expect(parseTurn(`${'<tool_response>x</tool_response>'.repeat(20_000)}<think>y`).kind).toBe('no_action');
  });

  it('clipToShare keeps short texts whole and gives the longer ones equal shares of the rest', () => {
    const texts = ['a'.repeat(10), 'b'.repeat(1000), 'c'.repeat(1000), 'd'.repeat(200)];
    const out = clipToShare(texts, 610);
    expect(out[0]).toBe(texts[0]);
    expect(out[3]).toBe(texts[3]);
    // 610 - 10 - 200 = 400 left for the two long ones.
    expect(out[1]!.startsWith('b'.repeat(200))).toBe(true);
    expect(out[1]!.startsWith('b'.repeat(201))).toBe(false);
    expect(out[2]!.startsWith('c'.repeat(200))).toBe(true);
    expect(out[1]).toMatch(/800 more characters omitted/);
    // Texts that fit are unchanged; a floor keeps each one's start however many share the room.
    expect(clipToShare(texts, 10_000)).toEqual(texts);
    expect(clipToShare(texts, 0, 5).map((t) => t.slice(0, 5))).toEqual(['aaaaa', 'bbbbb', 'ccccc', 'ddddd']);
  });

  it('clipMiddle keeps the start and the end, and never cuts an emoji in half', () => {
    const text = `${'a'.repeat(500)}${'b'.repeat(500)}Final answer: X`;
    const out = clipMiddle(text, 300);
    expect(out.startsWith('a'.repeat(200))).toBe(true);
    expect(out.endsWith(`${'b'.repeat(85)}Final answer: X`)).toBe(true);
    expect(out).toContain(`[… ${text.length - 300} characters omitted …]`);
    expect(clipMiddle(text, text.length)).toBe(text);
    const emoji = `${'x'.repeat(10)}${'🙂'.repeat(10)}`;
    for (let max = 1; max < emoji.length; max++) {
      const [head, tail] = clipMiddle(emoji, max).split(/\n\[… \d+ characters omitted …\]\n/);
      expect(wellFormed(head!)).toBe(head);
      expect(wellFormed(tail!)).toBe(tail);
      expect(emoji.endsWith(tail!)).toBe(true);
    }
  });

  it('wellFormed replaces half a surrogate pair in place, so the text reads back from msgpack as it was used', () => {
    const text = 'a\ud83db 🙂 \udc00';
    expect(wellFormed(text)).toBe('a\ufffdb 🙂 \ufffd');
    expect(wellFormed(text).length).toBe(text.length);
    expect(unpackValue(packValue(wellFormed(text)))).toBe(wellFormed(text));
    expect(unpackValue(packValue(text))).not.toBe(text);
  });

  it('clipText leaves a text it clipped as it is, so a retried step records what its first attempt did', () => {
    const once = clipText('e'.repeat(5_000), 1_000);
    expect(once).toMatch(/\[… 4000 more characters omitted\]$/);
    expect(clipText(once, 1_000)).toBe(once);
    // A page that only ends like a clipped text, its count absurd, is clipped like any other.
    const fake = `${'x'.repeat(50)}\n[… ${'9'.repeat(1_000)} more characters omitted]`;
    expect(clipText(fake, 60).length).toBeLessThan(120);
    // Clipped to more than is allowed now: clipped again.
    expect(clipText(once, 500)).toMatch(/^e{500}\n\[… \d+ more characters omitted\]$/);
  });

  it('a limit below zero keeps nothing of the text, as zero does', () => {
    expect(clipText('abcdefghij', -3)).toBe('\n[… 10 more characters omitted]');
    expect(clipMiddle('abcdefghij', -3)).toBe('\n[… 10 characters omitted …]\n');
  });

  it('clipText never cuts an emoji in half: what is stored reads back as the step used it', () => {
    const text = `${'a'.repeat(9)}🙂 and more`; // the emoji is units 9 and 10
    const clipped = clipText(text, 10);
    expect(clipped.startsWith(`${'a'.repeat(9)}\n`)).toBe(true);
    expect(clipped).toMatch(/\[… 11 more characters omitted\]$/);
    expect(unpackValue(packValue(clipped))).toBe(clipped);
    expect(clipText(text, 11).startsWith(`${'a'.repeat(9)}🙂\n`)).toBe(true);
  });

  it('tells a finished answer, report or verdict from one cut off in its reasoning or its tag', () => {
    expect(outputComplete('<think>a <answer>Paris</answer>, but', 'length', 'answer')).toBe(false);
    expect(
      outputComplete('<think>ok</think><answer>The Treaty of Nanking, signed in 18', 'length', 'answer'),
    ).toBe(false);
    expect(outputComplete('<think>ok</think><answer>Lyon</answer> then', 'length', 'answer')).toBe(true);
    expect(outputComplete('<think>ok</think><answer>Lyon', 'stop', 'answer')).toBe(true);
    expect(outputComplete('<think>Let me plan the report', 'length', 'report')).toBe(false);
    // A <think> inside the closed tag is its content, not reasoning left open.
    expect(
      outputComplete('<summary>The agent wrote <think> tags; fact A (src)</summary>', 'stop', 'summary'),
    ).toBe(true);
    expect(outputComplete('<think>plan <summary>draft', 'length', 'summary')).toBe(false);
  });

  it('parseAnswer reads the answer after the reasoning', () => {
    expect(parseAnswer('<think><answer>no</answer></think><answer>yes</answer>')).toBe('yes');
    expect(parseAnswer('nothing')).toBeNull();
  });

  it('a mention of the tag inside or after the last closed one is text, not a new draft', () => {
    const answered = '<think>x</think><answer>Paris</answer>';
    expect(parseAnswer(`${answered}\nNote: I wrapped it in the <answer> tag as asked.`)).toBe('Paris');
    expect(parseAnswer(`${answered}\n<answer>`)).toBe('Paris');
    expect(parseAnswer('<answer>Lyon</answer> on reflection <answer>Paris</answer>')).toBe('Paris');
    expect(
      parseSummary('<think>x</think><summary>Facts: A (src1). The earlier <summary> said C.</summary>'),
    ).toBe('Facts: A (src1). The earlier <summary> said C.');
    expect(
      parseReport(
        '<think>x</think><report>Final answer: Paris</report>\nThe report is inside <report> tags.',
      ),
    ).toBe('Final answer: Paris');
    expect(
      parseJudgement(
        '<think>x</think><judgement>correct</judgement>\n(The verdict is in the <judgement> tag.)',
      ),
    ).toBe('correct');
    expect(outputComplete(`${answered}\n<answer>`, 'length', 'answer')).toBe(true);
    // Without a closed one, the last opened runs to the end.
    expect(parseAnswer('<answer>draft <answer>Paris')).toBe('Paris');
  });

  it('an answer redrafted takes the last draft; a closing tag mentioned after the real one is text', () => {
    expect(parseAnswer('Draft: <answer>Paris\nHmm, let me reconsider. <answer>Lyon</answer>')).toBe('Lyon');
    expect(parseAnswer('<answer>Lyon</answer> (close the answer with </answer> as asked)')).toBe('Lyon');
    expect(parseSummary('<summary>S1</summary> note: wrap it in </summary>')).toBe('S1');
    expect(parseJudgement('<judgement>incorrect <judgement>correct</judgement>')).toBe('correct');
    expect(outputComplete('<answer>Lyon</answer> (close it with </answer>', 'length', 'answer')).toBe(true);
    expect(outputComplete('x </answer> <answer>Lyon', 'length', 'answer')).toBe(false);
  });

  it('parseJudgement reads a judge that repeats its verdict thousands of times in linear time', () => {
    // Each verdict word read its clause by a search over all the text before it: 64k characters took seconds.
    const started = performance.now();
    expect(parseJudgement(`<judgement>${'correct. '.repeat(8_000)}</judgement>`)).toBe('correct');
    expect(parseJudgement(`<judgement>${'not correct; '.repeat(4_000)}</judgement>`)).toBe('incorrect');
    // One clause of them all, past the window: unreadable, as a verdict whose negation is out of sight is.
    expect(parseJudgement(`<judgement>${'correct '.repeat(8_000)}</judgement>`)).toBeNull();
    // About 0.3 s here; the quadratic reading took 8 s on the first alone.
    expect(performance.now() - started).toBeLessThan(3_000);
    // A negation at the start of a clause longer than the window may be about the verdict: no verdict is read.
    expect(parseJudgement(`The prediction is not ${'x '.repeat(300)}correct`)).toBeNull();
    expect(parseJudgement(`it is ${'quite '.repeat(20)}not correct`)).toBe('incorrect');
    // Past the window, but a new statement begins within it: no negation before it reaches the verdict.
    expect(parseJudgement(`<judgement>${'x '.repeat(220)}so it is correct</judgement>`)).toBe('correct');
    expect(parseJudgement(`${'x '.repeat(220)}and therefore the prediction is not correct`)).toBe(
      'incorrect',
    );
  });

  it('reads output that repeats a closing tag tens of thousands of times in linear time', () => {
    // Each stray </answer> searched the whole text for its opening tag: 20k of them took 2 s a call.
    const started = performance.now();
    expect(parseAnswer('</answer>'.repeat(20_000))).toBeNull();
    expect(parseAnswer(`<answer>x</answer>${' word'.repeat(20_000)}${'</answer>'.repeat(20_000)}`)).toBe('x');
    expect(parseSummary(`<summary>s</summary>${'</summary>'.repeat(20_000)}`)).toBe('s');
    expect(parseJudgement(`<judgement>correct</judgement>${'</judgement>'.repeat(20_000)}`)).toBe('correct');
    expect(outputComplete('</answer>'.repeat(20_000), 'length', 'answer')).toBe(false);
    // A few milliseconds here; the search from each closing tag took seconds.
    expect(performance.now() - started).toBeLessThan(1_500);
  });

  it('refuses a tool call nested deeper than it could be written back, as an invalid one', () => {
    const deep = `${'['.repeat(5000)}"x"${']'.repeat(5000)}`;
    const turn = parseTurn(`<tool_call>{"name":"search","arguments":{"query":${deep}}}</tool_call>`);
    expect(turn.kind).toBe('invalid_tool_call');
    expect(toolCallProblem(`{"name":"search","arguments":{"query":${deep}}}`)).toMatch(
      /nested more than 64 levels/,
    );
    const fine = `{"name":"search","arguments":{"query":${'['.repeat(10)}"x"${']'.repeat(10)}}}`;
    expect(toolCallProblem(fine)).toBeNull();
  });

  it('parseJudgement reads the verdict', () => {
    expect(parseJudgement('<think>is it correct?</think><judgement>incorrect</judgement>')).toBe('incorrect');
    expect(parseJudgement('<judgement> Correct </judgement>')).toBe('correct');
    expect(parseJudgement('<think>hmm</think>The prediction is correct.')).toBe('correct');
    expect(parseJudgement('<think>hmm</think>The prediction is not correct.')).toBe('incorrect');
    expect(parseJudgement('The prediction is not incorrect, just terse.')).toBe('correct');
    expect(parseJudgement('<judgement>not correct</judgement>')).toBe('incorrect');
    expect(parseJudgement('<judgement>correct or incorrect</judgement>')).toBeNull();
    expect(parseJudgement('no idea')).toBeNull();
    // A contraction negates as "not" does.
    expect(parseJudgement("The prediction isn't correct.")).toBe('incorrect');
    expect(parseJudgement('It wasn’t incorrect, only terse.')).toBe('correct');
    expect(parseJudgement('Cannot be faulted: correct.')).toBe('correct');
    // Without the tag, "the correct answer" names the gold answer; it is not a verdict of correct.
    expect(
      parseJudgement(
        "<think>compare</think>The prediction 'Lyon' is incorrect; the correct answer is Paris.",
      ),
    ).toBe('incorrect');
    expect(parseJudgement('Incorrect. The correct answer is Paris, not Lyon.')).toBe('incorrect');
    // The verdict after the question the judge asked itself.
    expect(parseJudgement('Is the prediction correct? No, it is incorrect.')).toBe('incorrect');
    // Verdicts that disagree give none.
    expect(parseJudgement('Correct at first sight, but incorrect on the date.')).toBeNull();
    // A negation a hedge away still negates; one that is not plainly about the verdict leaves none to read.
    for (const hedged of [
      'The prediction is not entirely correct.',
      "The prediction isn't fully correct.",
      'The prediction cannot be correct.',
      'Nothing here is correct',
      '<judgement>not entirely correct</judgement>',
    ])
      expect(parseJudgement(hedged), hedged).toBe('incorrect');
    expect(parseJudgement('Nothing wrong with it.')).toBe('correct');
    expect(parseJudgement('Not a single part but the date is correct.')).toBeNull();
    expect(parseJudgement('The prediction is **not** correct.')).toBe('incorrect');
    expect(parseJudgement('There is no way this is correct')).toBeNull();
    // A negation in an earlier statement of the sentence is not about the verdict.
    expect(
      parseJudgement('The predicted answer does not match the gold answer and is therefore incorrect.'),
    ).toBe('incorrect');
    expect(parseJudgement("The prediction doesn't mention the year and is incorrect")).toBe('incorrect');
    // "wrong" is a verdict of incorrect, and "the correct answer" still is not one of correct.
    expect(parseJudgement('The prediction is wrong. The correct answer is Paris.')).toBe('incorrect');
  });
});

describe('utf8Length', () => {
  it('counts the bytes msgpack stores: 1-4 per character, a lone surrogate as U+FFFD', () => {
    for (const text of ['', 'ascii', 'é', '上游服务', '😀 emoji', 'a\ud800b', '\udc00', 'x\ud83d']) {
      expect(utf8Length(text), JSON.stringify(text)).toBe(Buffer.byteLength(wellFormed(text)));
      // fixstr: a one-byte header, then the bytes.
      expect(packValue(text).length, JSON.stringify(text)).toBe(utf8Length(text) + 1);
    }
    expect(utf8Length('上游服务错误'.repeat(100))).toBe(1800);
  });
});
