import { describe, expect, it } from 'vitest';
import {
  INTEGRATION_SYSTEM_PROMPT,
  ITERRESEARCH_SYSTEM_PROMPT,
  integrationMessages,
  JUDGE_SYSTEM_PROMPT,
  judgeMessages,
  REACT_SYSTEM_PROMPT,
  REPORT_SYSTEM_PROMPT,
  renderTrajectory,
  reportMessages,
} from '../../agent/prompts.js';

describe('system prompts', () => {
  it('list both tools with their parameters and the output format', () => {
    for (const p of [REACT_SYSTEM_PROMPT, ITERRESEARCH_SYSTEM_PROMPT]) {
      expect(p).toContain('"name":"search"');
      expect(p).toContain('"query":{"type":"array"');
      expect(p).toContain('"name":"visit"');
      expect(p).toContain('"required":["url","goal"]');
      expect(p).toContain('<tool_call>');
      expect(p).toContain('<answer>');
      expect(p).toContain('<think>');
    }
    expect(ITERRESEARCH_SYSTEM_PROMPT).toContain('<report>');
    // Each says where a call's result comes back as its prompt shows it: iterresearch has no <tool_response>.
    expect(REACT_SYSTEM_PROMPT).toContain('in the next message inside <tool_response></tool_response>');
    expect(ITERRESEARCH_SYSTEM_PROMPT).not.toContain('<tool_response>');
    expect(ITERRESEARCH_SYSTEM_PROMPT).toContain(
      'in the next round inside <last_observation></last_observation>',
    );
    // The tools' own limit on queries and URLs (tools/sim-web.ts) is in the schema the model reads.
    expect(REACT_SYSTEM_PROMPT.match(/"maxItems":10/g)).toHaveLength(2);
    expect(REPORT_SYSTEM_PROMPT).toContain('Final answer: X');
    expect(INTEGRATION_SYSTEM_PROMPT).toContain('not proof');
    expect(JUDGE_SYSTEM_PROMPT).toContain('<judgement>correct</judgement>');
  });
});

describe('builders', () => {
  it('reportMessages wraps question and trajectory', () => {
    const m = reportMessages('Q', 'T');
    expect(m[0]).toEqual({ role: 'system', content: REPORT_SYSTEM_PROMPT });
    expect(m[1]).toEqual({
      role: 'user',
      content: '<question>\nQ\n</question>\n<trajectory>\nT\n</trajectory>',
    });
  });

  it('integrationMessages numbers the reports from 1', () => {
    const m = integrationMessages('Q', ['r one', 'r two']);
    expect(m[1]!.content).toBe(
      '<question>\nQ\n</question>\n<reports>\n<report id=1>\nr one\n</report>\n<report id=2>\nr two\n</report>\n</reports>',
    );
  });

  it('judgeMessages tags question, gold and prediction', () => {
    expect(judgeMessages('Q', 'G', 'P')[1]!.content).toBe(
      '<question>\nQ\n</question>\n<gold>\nG\n</gold>\n<prediction>\nP\n</prediction>',
    );
  });

  it('renderTrajectory does not show an answer the token limit cut off as the answer', () => {
    const text = renderTrajectory([
      { turn: '<think>done</think><answer>The treaty was signed in 18', observation: 'Error: cut off' },
      { turn: '<think>again</think><answer>1852</answer>' },
    ]);
    expect(text).toBe(
      [
        '## Step 1\nThinking: done\nAnswer: (cut off at the token limit, not given)\nTool response:\nError: cut off',
        '## Step 2\nThinking: again\nAnswer: 1852',
      ].join('\n\n'),
    );
  });

  it('renderTrajectory shows reasoning, calls, observations and the answer', () => {
    const text = renderTrajectory(
      [
        {
          turn: '<think>search first</think><tool_call>{"name":"search","arguments":{"query":["q"]}}</tool_call>',
          observation: 'x'.repeat(50),
        },
        { turn: '<think>bad</think><tool_call>{oops</tool_call>', observation: 'Error' },
        { turn: '<think>got it</think><answer>42</answer>' },
      ],
      { maxObservationChars: 10 },
    );
    expect(text).toBe(
      [
        '## Step 1\nThinking: search first\nTool call: {"name":"search","arguments":{"query":["q"]}}\nTool response:\nxxxxxxxxxx\n[… 40 more characters omitted]',
        '## Step 2\nThinking: bad\nTool call (malformed): {oops\nTool response:\nError',
        '## Step 3\nThinking: got it\nAnswer: 42',
      ].join('\n\n'),
    );
  });

  it('renderTrajectory within maxChars keeps the first and the last steps and says how many it left out', () => {
    const step = (i: number) => ({
      turn: `<think>step ${i} ${'r'.repeat(100)}</think><report>${'m'.repeat(300)}</report><tool_call>{"name":"search","arguments":{"query":["q${i}"]}}</tool_call>`,
      observation: `page ${i}`,
    });
    const steps = [
      ...Array.from({ length: 40 }, (_, i) => step(i)),
      { turn: '<think>done</think><answer>42</answer>' },
    ];
    const full = renderTrajectory(steps);
    expect(renderTrajectory(steps, { maxChars: full.length })).toBe(full);
    const text = renderTrajectory(steps, { maxChars: 3000 });
    expect(text.length).toBeLessThanOrEqual(3000);
    expect(text.startsWith('## Step 1\nThinking: step 0 ')).toBe(true);
    expect(text.endsWith('## Step 41\nThinking: done\nAnswer: 42')).toBe(true);
    const kept = [...text.matchAll(/^## Step (\d+)$/gm)].map((m) => Number(m[1]));
    const first = kept[1]!;
    // Step 1, then a contiguous run of the latest steps; the marker names the steps in between.
    expect(kept).toEqual([1, ...Array.from({ length: 42 - first }, (_, i) => first + i)]);
    expect(first).toBeGreaterThan(2);
    expect(text).toContain(
      `[… ${first - 2} steps (steps 2 to ${first - 1}) left out to fit the length limit]`,
    );
    // Below what the first and last steps need, those two are cut in their middles, keeping their beginnings and the
    // last step's end.
    const tight = renderTrajectory(steps, { maxChars: 10 });
    expect(tight).toContain('[… 39 steps (steps 2 to 40) left out');
    expect(tight.startsWith('## Step 1\n')).toBe(true);
    expect(tight.endsWith('Answer: 42')).toBe(true);
    expect(tight.length).toBeLessThan(600);
  });

  it('renderTrajectory cuts the first and last steps in their middles when those two alone pass maxChars', () => {
    const long = (i: number, end: string) => ({
      turn: `<think>step ${i} ${'r'.repeat(20_000)}</think>${end}`,
      observation: `page ${i} ${'p'.repeat(5_000)}`,
    });
    for (const steps of [
      [
        long(0, '<tool_call>{"name":"search","arguments":{"query":["q"]}}</tool_call>'),
        long(1, '<answer>42</answer>'),
      ],
      [long(0, '<answer>42</answer>')],
    ]) {
      const text = renderTrajectory(steps, { maxChars: 3000 });
      expect(text.length).toBeLessThanOrEqual(3000);
      expect(text.length).toBeGreaterThan(2000);
      expect(text.startsWith('## Step 1\nThinking: step 0 ')).toBe(true);
      expect(text).toContain('characters omitted');
      expect(text).toContain(`## Step ${steps.length}\n`);
    }
  });
});
