import { describe, expect, it } from 'vitest';
import { CUT_OFF_TURN_OBSERVATION } from '../../activities/index.js';
import type { ChatMessage } from '../../agent/types.js';
import type { GenerateParams, TokenLogprob } from '../../inference/types.js';
import { detectSimTask, type SimTokenLogprob, simGenerate } from '../../sim/model.js';
import { simSearch, simVisit } from '../../sim/tools.js';
import { puzzleFor, sampleQuestions } from '../../sim/world.js';

const params = (seed: number, extra: Partial<GenerateParams> = {}): GenerateParams => ({
  maxTokens: 8192,
  temperature: 1,
  topLogprobs: 16,
  seed,
  ...extra,
});

const TOOL_ERROR = 'Error: the tool call must be valid JSON with "name" and "arguments".';

/** Executes one turn's action against the synthetic tools, as the engine would. */
function observe(question: string, text: string): string {
  const m = /<tool_call>([\s\S]*?)<\/tool_call>/.exec(text);
  if (!m) return 'Error: the turn has neither a tool call nor an answer.';
  let call: { name?: unknown; arguments?: Record<string, unknown> };
  try {
    call = JSON.parse(m[1]!);
  } catch {
    return TOOL_ERROR;
  }
  if (call.name === 'search') return simSearch(question, call.arguments!.query as string[]);
  if (call.name === 'visit')
    return simVisit(question, call.arguments!.url as string[], call.arguments!.goal as string);
  return `Error: unknown tool ${String(call.name)}.`;
}

interface Episode {
  answer: string | null;
  messages: ChatMessage[];
  turns: string[];
  tokens: TokenLogprob[][];
}

function reactEpisode(question: string, seed: number, maxTurns = 60, start?: ChatMessage[]): Episode {
  const messages: ChatMessage[] = start ?? [
    { role: 'system', content: 'You are a deep-research agent.' },
    { role: 'user', content: question },
  ];
  const turns: string[] = [];
  const tokens: TokenLogprob[][] = [];
  for (let t = 0; t < maxTurns; t++) {
    const g = simGenerate(messages, params(seed));
    turns.push(g.text);
    tokens.push(g.tokens);
    messages.push({ role: 'assistant', content: g.text });
    const ans = /<answer>([\s\S]*?)<\/answer>/.exec(g.text);
    if (ans) return { answer: ans[1]!, messages, turns, tokens };
    messages.push({
      role: 'user',
      content: `<tool_response>\n${observe(question, g.text)}\n</tool_response>`,
    });
  }
  return { answer: null, messages, turns, tokens };
}

function entropy(topLogprobs: number[]): number {
  const ps = topLogprobs.map(Math.exp);
  const z = ps.reduce((a, b) => a + b, 0);
  return -ps.reduce((a, p) => a + (p / z) * Math.log(p / z), 0);
}

describe('simulated react agent', () => {
  const questions = sampleQuestions(12, 21);

  it('solves most episodes and gets some wrong', () => {
    let correct = 0;
    let wrong = 0;
    const wrongAnswers = new Set<string>();
    for (const { question, answer } of questions) {
      for (let seed = 1; seed <= 4; seed++) {
        const ep = reactEpisode(question, seed);
        expect(ep.answer).not.toBeNull();
        if (ep.answer === answer) correct++;
        else {
          wrong++;
          wrongAnswers.add(ep.answer!);
        }
      }
    }
    expect(correct).toBeGreaterThan(wrong);
    expect(wrong).toBeGreaterThan(0);
    // Wrong answers come from the world's misleading chains, not from noise.
    const knownWrong = new Set(questions.flatMap((q) => puzzleFor(q.question).wrongAnswers));
    expect([...wrongAnswers].filter((a) => knownWrong.has(a)).length).toBeGreaterThan(0);
  });

  it('is deterministic per seed and diverges across seeds', () => {
    const { question } = questions[0]!;
    const a = reactEpisode(question, 5);
    const b = reactEpisode(question, 5);
    expect(b.turns).toEqual(a.turns);
    const texts = new Set<string>();
    for (const { question: q } of questions.slice(0, 6)) {
      for (let seed = 1; seed <= 6; seed++) texts.add(reactEpisode(q, seed).turns.join('\n'));
    }
    expect(texts.size).toBeGreaterThan(12);
  });

  it('emits well-formed turns with consistent top-k logprobs', () => {
    const ep = reactEpisode(questions[1]!.question, 2);
    ep.turns.forEach((text, i) => {
      const toks = ep.tokens[i]!;
      expect(toks.map((t) => t.token).join('')).toBe(text);
      expect(text).toMatch(
        /^<think>[\s\S]+<\/think>\n(<tool_call>\{[\s\S]+\}<\/tool_call>|<answer>.+<\/answer>)$/,
      );
      for (const t of toks) {
        expect(t.topLogprobs).toHaveLength(16);
        const mass = t.topLogprobs.reduce((a, lp) => a + Math.exp(lp), 0);
        expect(mass).toBeLessThanOrEqual(1 + 1e-9);
        for (let j = 1; j < t.topLogprobs.length; j++)
          expect(t.topLogprobs[j]!).toBeLessThanOrEqual(t.topLogprobs[j - 1]!);
        // The chosen token is one of the alternatives, with exactly its logprob.
        expect(t.topLogprobs.some((lp) => Math.abs(lp - t.logprob) < 1e-12)).toBe(true);
        expect(t.logprob).toBeLessThan(0);
      }
    });
    const k4 = simGenerate(ep.messages.slice(0, 2), params(2, { topLogprobs: 4 }));
    expect(k4.tokens.every((t) => t.topLogprobs.length === 4)).toBe(true);
  });

  it('puts genuine choices at decision tokens and samples from them', () => {
    // Across seeds the first visit picks different results, and each pick is a token of its own distribution.
    const { question } = questions[2]!;
    const base: ChatMessage[] = [
      { role: 'system', content: 'sys' },
      { role: 'user', content: question },
    ];
    const first = simGenerate(base, params(1));
    base.push(
      { role: 'assistant', content: first.text },
      { role: 'user', content: observe(question, first.text) },
    );
    const urls = new Set<string>();
    for (let seed = 1; seed <= 30; seed++) {
      const g = simGenerate(base, params(seed));
      urls.add(/"url":\["([^"]+)"/.exec(g.text)![1]!);
      const decision = g.tokens.filter((t) => entropy(t.topLogprobs) > 0.3);
      expect(decision.length).toBeGreaterThan(0);
    }
    expect(urls.size).toBeGreaterThan(1);
    const greedy = new Set<string>();
    for (let seed = 1; seed <= 10; seed++)
      greedy.add(simGenerate(base, params(seed, { temperature: 0 })).text);
    expect(greedy.size).toBe(1);
  });

  it('samples the likeliest choice at a temperature just above 0 ("almost greedy"), as at 0', () => {
    // Tempered weights that underflowed to 0 (0.4 ** 1000) gave every draw the last option instead.
    for (const { question } of sampleQuestions(10, 3)) {
      const first: ChatMessage[] = [
        { role: 'system', content: 'sys' },
        { role: 'user', content: question },
      ];
      const greedy = simGenerate(first, params(1, { temperature: 0 })).text;
      for (const seed of [1, 2])
        expect(simGenerate(first, params(seed, { temperature: 0.001 })).text).toBe(greedy);
    }
  });

  it('follows the pilot-study uncertainty profile', () => {
    const toolByTurn: number[][] = [];
    const thinkByTurn: number[][] = [];
    for (const { question } of sampleQuestions(10, 5)) {
      for (let seed = 1; seed <= 3; seed++) {
        const ep = reactEpisode(question, seed);
        ep.tokens.forEach((toks, turn) => {
          let text = '';
          for (const t of toks) {
            text += t.token;
            const inTool = text.lastIndexOf('<tool_call>') > text.lastIndexOf('</tool_call>');
            const inThink = text.lastIndexOf('<think>') > text.lastIndexOf('</think>');
            const rows = inTool ? toolByTurn : inThink ? thinkByTurn : null;
            if (rows) {
              rows[turn] = rows[turn] ?? [];
              rows[turn]!.push(entropy(t.topLogprobs));
            }
          }
        });
      }
    }
    const mean = (rows: number[][], from: number, to: number) => {
      const xs = rows.slice(from, to).flat();
      return xs.reduce((a, b) => a + b, 0) / xs.length;
    };
    const earlyTool = mean(toolByTurn, 0, 2);
    const lateTool = mean(toolByTurn, 4, 12);
    expect(earlyTool).toBeGreaterThan(lateTool * 1.5);
    const thinkStart = mean(thinkByTurn, 0, 1);
    const thinkPeak = mean(thinkByTurn, 2, 4);
    const thinkLate = mean(thinkByTurn, 8, 14);
    expect(thinkPeak).toBeGreaterThan(thinkStart);
    expect(thinkPeak).toBeGreaterThan(thinkLate);
  });

  it('puts more entropy on reasoning decisions than on wording and plain text', () => {
    // The brief: higher entropy at genuine decision points than elsewhere. In the think region the decisions are
    // noticing a contradiction and choosing to verify; the page's verb (" states" / " reports" / ...) is wording.
    const decisions: number[] = [];
    const wording: number[] = [];
    const plain: number[] = [];
    for (const { question } of sampleQuestions(10, 11)) {
      for (let seed = 1; seed <= 3; seed++) {
        for (const toks of reactEpisode(question, seed).tokens) {
          let text = '';
          for (const t of toks as SimTokenLogprob[]) {
            const inThink = text.lastIndexOf('<think>') > text.lastIndexOf('</think>');
            text += t.token;
            if (!inThink) continue;
            const alts = new Set(t.topTokens);
            const e = entropy(t.topLogprobs);
            if ((alts.has(' contradi') && alts.has(' does')) || (alts.has(' confiden') && alts.has(' not')))
              decisions.push(e);
            else if (alts.has(' states') && alts.has(' reports')) wording.push(e);
            else plain.push(e);
          }
        }
      }
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(decisions.length).toBeGreaterThan(20);
    expect(wording.length).toBeGreaterThan(20);
    expect(mean(decisions)).toBeGreaterThan(1.5 * mean(wording));
    expect(mean(decisions)).toBeGreaterThan(1.5 * mean(plain));
  });

  it('is fast enough for 2048-step runs', () => {
    const ep = reactEpisode(questions[3]!.question, 1);
    const prompt = ep.messages.slice(0, -1);
    const t0 = performance.now();
    for (let i = 0; i < 200; i++) simGenerate(prompt, params(i));
    // About 1 ms a turn on this machine alone; the bound leaves room for a loaded CI run and still catches work that
    // grows with the history (a prompt rescanned per token).
    expect((performance.now() - t0) / 200).toBeLessThan(15);
  });

  it('respects maxTokens and stop sequences', () => {
    const m: ChatMessage[] = [{ role: 'user', content: questions[0]!.question }];
    const short = simGenerate(m, params(1, { maxTokens: 5 }));
    expect(short.tokens).toHaveLength(5);
    expect(short.finishReason).toBe('length');
    const stopped = simGenerate(m, params(1, { stop: ['</think>'] }));
    expect(stopped.text.includes('</think>')).toBe(false);
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.tokens.map((t) => t.token).join('')).toBe(stopped.text);
    // A stop string that ends inside a token: the kept part is the token, and among its alternatives.
    const cut = simGenerate(m, params(1, { stop: ['hin'] }));
    const last = cut.tokens.at(-1)!;
    expect(cut.text.endsWith('t')).toBe(true);
    expect(last.token).toBe('t');
    expect(last.topTokens).toContain('t');
  });
});

describe('garbage prompts', () => {
  it('reads a prompt of repeated unclosed tags in linear time (a 3 KB one froze the server for 12 s)', () => {
    const gen = (content: string, system = 'You are a deep-research agent.') =>
      simGenerate(
        [
          { role: 'system', content: system },
          { role: 'user', content },
        ],
        params(1, { maxTokens: 16 }),
      );
    // Each took minutes or more with the lazy patterns these replace; the test would time out.
    expect(gen(`<question>${' '.repeat(20_000)}`).tokens.length).toBeGreaterThan(0);
    expect(
      gen(`<question> Which city? </question>${'<tool_call>'.repeat(40_000)}`).tokens.length,
    ).toBeGreaterThan(0);
    expect(
      gen(`<trajectory>${"A search for 'x".repeat(20_000)}${'<answer>'.repeat(20_000)}</trajectory>`).tokens
        .length,
    ).toBeGreaterThan(0);
  }, 5_000);
});

describe('directives', () => {
  const { question } = sampleQuestions(1, 77)[0]!;

  it('malformed tool call at turn N, then normal turns', () => {
    const ep = reactEpisode(`${question} [sim:malformed-tool-call@1]`, 1);
    const call = /<tool_call>([\s\S]*?)<\/tool_call>/.exec(ep.turns[1]!)![1]!;
    expect(() => JSON.parse(call)).toThrow();
    expect(() => JSON.parse(/<tool_call>([\s\S]*?)<\/tool_call>/.exec(ep.turns[2]!)![1]!)).not.toThrow();
    expect(ep.answer).not.toBeNull();
  });

  it('unknown tool and garbage turns', () => {
    const ep = reactEpisode(`${question} [sim:unknown-tool@0] [sim:garbage@2]`, 1);
    expect(JSON.parse(/<tool_call>([\s\S]*?)<\/tool_call>/.exec(ep.turns[0]!)![1]!).name).toBe('teleport');
    expect(ep.turns[2]).not.toMatch(/<tool_call>|<answer>/);
    expect(ep.turns[3]).toMatch(/<tool_call>/);
    expect(ep.answer).not.toBeNull();
  });

  it('run-on: the turn goes on past its call into an imagined response, which a stop string cuts off', () => {
    const m: ChatMessage[] = [{ role: 'user', content: `${question} [sim:run-on@0]` }];
    const ranOn = simGenerate(m, params(1));
    expect(ranOn.text).toMatch(
      /<\/tool_call>\n<tool_response>\[sim\] imagined.*<answer>\[sim\] imagined answer<\/answer>$/s,
    );
    const stopped = simGenerate(m, params(1, { stop: ['\n<tool_response>', '<tool_response>'] }));
    expect(stopped.text).toMatch(/sim-run-on.*<\/tool_call>$/s);
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.tokens.length).toBeLessThan(ranOn.tokens.length);
  });

  it('min-turns keeps the agent researching', () => {
    const ep = reactEpisode(`${question} [sim:min-turns=25]`, 1, 80);
    expect(ep.answer).not.toBeNull();
    expect(ep.turns.length).toBe(26);
  });
});

describe('simulated iterresearch agent', () => {
  function iterPrompt(
    q: string,
    report: string,
    lastAction: string | null,
    lastObs: string | null,
  ): ChatMessage[] {
    let u = `<question>\n${q}\n</question>\n<report>\n${report}\n</report>`;
    if (lastAction !== null)
      u += `\n<last_action>\n${lastAction}\n</last_action>\n<last_observation>\n${lastObs}\n</last_observation>`;
    return [
      { role: 'system', content: 'You are a deep-research agent that keeps an evolving report.' },
      { role: 'user', content: u },
    ];
  }

  function iterEpisode(q: string, seed: number, maxRounds: number) {
    let report = '';
    let action: string | null = null;
    let obs: string | null = null;
    const reports: string[] = [];
    for (let r = 0; r < maxRounds; r++) {
      const messages = iterPrompt(q, report, action, obs);
      expect(detectSimTask(messages)).toBe('iterresearch');
      const g = simGenerate(messages, params(seed));
      const rep = /<report>\n?([\s\S]*?)\n?<\/report>/.exec(g.text);
      expect(rep).not.toBeNull();
      report = rep![1]!;
      reports.push(report);
      const ans = /<answer>([\s\S]*?)<\/answer>/.exec(g.text);
      if (ans) return { answer: ans[1]!, rounds: r + 1, reports };
      action = /<tool_call>[\s\S]*?<\/tool_call>/.exec(g.text)?.[0] ?? g.text;
      obs = observe(q, g.text);
    }
    return { answer: null, rounds: maxRounds, reports };
  }

  it('answers from its report alone', () => {
    const qs = sampleQuestions(8, 31);
    let correct = 0;
    for (const { question, answer } of qs) {
      const ep = iterEpisode(question, 1, 80);
      expect(ep.answer).not.toBeNull();
      if (ep.answer === answer) correct++;
    }
    expect(correct).toBeGreaterThan(qs.length / 2);
  });

  it('keeps the report bounded over 500 rounds', () => {
    const { question } = sampleQuestions(1, 8)[0]!;
    const ep = iterEpisode(`${question} [sim:min-turns=500]`, 1, 600);
    expect(ep.answer).not.toBeNull();
    expect(ep.rounds).toBe(501);
    expect(ep.reports[ep.reports.length - 1]).toMatch(/Rounds: 501$/);
    const sizes = ep.reports.map((r) => r.length);
    expect(Math.max(...sizes)).toBeLessThan(4000);
    expect(Math.max(...sizes.slice(400))).toBeLessThanOrEqual(Math.max(...sizes.slice(50, 100)) + 200);
  });

  it('honours directives by its round counter', () => {
    const { question } = sampleQuestions(1, 8)[0]!;
    const q = `${question} [sim:malformed-tool-call@2]`;
    let report = '';
    let action: string | null = null;
    let obs: string | null = null;
    for (let r = 0; r < 4; r++) {
      const g = simGenerate(iterPrompt(q, report, action, obs), params(1));
      report = /<report>\n?([\s\S]*?)\n?<\/report>/.exec(g.text)![1]!;
      const body = /<tool_call>([\s\S]*?)<\/tool_call>/.exec(g.text)![1]!;
      if (r === 2) expect(() => JSON.parse(body)).toThrow();
      else expect(() => JSON.parse(body)).not.toThrow();
      action = `<tool_call>${body}</tool_call>`;
      obs = observe(q, g.text);
    }
  });
});

describe('simulated iterresearch agent cut off in its reasoning', () => {
  it('overthinks once: told it was cut off, it acts in the same round instead of overthinking again', () => {
    const { question } = sampleQuestions(1, 8)[0]!;
    const q = `${question} [sim:cut-think@1]`;
    const prompt = (report: string, lastAction: string | null, lastObs: string | null): ChatMessage[] => {
      let u = `<question>\n${q}\n</question>\n<report>\n${report}\n</report>`;
      if (lastAction !== null)
        u += `\n<last_action>\n${lastAction}\n</last_action>\n<last_observation>\n${lastObs}\n</last_observation>`;
      return [{ role: 'user', content: u }];
    };
    const first = simGenerate(prompt('', null, null), params(1));
    const report = /<report>\n?([\s\S]*?)\n?<\/report>/.exec(first.text)![1]!;
    const call = /<tool_call>[\s\S]*?<\/tool_call>/.exec(first.text)![0];
    const cut = simGenerate(prompt(report, call, observe(q, first.text)), params(1, { maxTokens: 600 }));
    expect(cut.text).toMatch(/^<think>\[sim\] overthinking/);
    expect(cut.finishReason).toBe('length');
    // The engine keeps the report (none was written) and tells the model it was cut off.
    const after = simGenerate(
      prompt(report, '(no action)', CUT_OFF_TURN_OBSERVATION),
      params(1, { maxTokens: 600 }),
    );
    expect(after.text).not.toContain('[sim] overthinking');
    expect(after.text).toMatch(/<\/think>/);
  });
});

describe('context management and aggregation prompts', () => {
  const { question, answer } = sampleQuestions(1, 13)[0]!;

  it('summarises a react history and continues from the summary (resum)', () => {
    const full = reactEpisode(question, 3);
    const history = full.messages
      .slice(2, 8)
      .map((m) => `${m.role}: ${m.content}`)
      .join('\n');
    const summaryPrompt: ChatMessage[] = [
      { role: 'system', content: 'Summarise.' },
      { role: 'user', content: `<question>${question}</question>\n<history>\n${history}\n</history>` },
    ];
    expect(detectSimTask(summaryPrompt)).toBe('summary');
    const s = simGenerate(summaryPrompt, params(1));
    expect(s.text).toMatch(/^<summary>\n[\s\S]*Facts:[\s\S]*Turns: 3\n<\/summary>$/);
    expect(s.text).toContain(' | ');
    const resumed = reactEpisode(question, 3, 60, [
      { role: 'system', content: 'You are a deep-research agent.' },
      { role: 'user', content: `${question}\n\n${s.text}` },
    ]);
    expect(resumed.answer).not.toBeNull();
    // The summary carries the progress: the continuation does not start over with the opening search.
    expect(resumed.turns[0]).not.toContain('The question starts from');
  });

  it('counts the turns of a history cut to fit by its last step, not by the steps shown', () => {
    const summaryPrompt: ChatMessage[] = [
      {
        role: 'user',
        content: `<question>${question}</question>\n<history>\n## Step 1\nThinking: start\n\n[… 7 steps (steps 2 to 8) left out to fit the length limit]\n\n## Step 9\nThinking: on\n\n## Step 10\nThinking: on\n</history>`,
      },
    ];
    expect(simGenerate(summaryPrompt, params(1)).text).toMatch(/Turns: 10\n<\/summary>$/);
  });

  it('a report does not take the note for an answer that was not given as the final answer', () => {
    const report = (answerLine: string) =>
      simGenerate(
        [
          {
            role: 'user',
            content: `<question>${question}</question>\n<trajectory>\n## Step 1\nThinking: nothing found\n${answerLine}\n</trajectory>`,
          },
        ],
        params(1),
      ).text;
    expect(report('Answer: (empty, not given)')).not.toContain('Final answer: (empty, not given)');
    expect(report('Answer: (cut off at the token limit, not given)')).not.toContain('not given)');
    expect(report('Answer: Castelmoor')).toContain('Final answer: Castelmoor');
  });

  it('a question that mentions a task tag is still a question', () => {
    for (const tag of ['history', 'reports', 'trajectory'])
      expect(detectSimTask([{ role: 'user', content: `What does the <${tag}> tag do in HTML?` }])).toBe(
        'react',
      );
    expect(
      detectSimTask([{ role: 'user', content: 'Is <gold> better than <prediction> in this markup?' }]),
    ).toBe('react');
  });

  it('distils a trajectory into a report with the facts and final answer', () => {
    const ep = reactEpisode(question, 1);
    const traj = ep.messages
      .slice(1)
      .map((m) => `${m.role}: ${m.content}`)
      .join('\n');
    const g = simGenerate(
      [
        {
          role: 'user',
          content: `<question>${question}</question>\nReport on this trajectory.\n<trajectory>\n${traj}\n</trajectory>`,
        },
      ],
      params(1),
    );
    expect(g.text).toMatch(
      /^<report>\nSolution planning: [\s\S]*Solution methods:[\s\S]*Final reasoning: [\s\S]*Final answer: .+\n<\/report>$/,
    );
    expect(g.text).toContain(`Final answer: ${ep.answer}`);
    expect(g.text).toContain('Fact: ');
    expect(g.text.length).toBeLessThan(traj.length / 3);
  });

  it('integrates reports by support, not by head count', () => {
    const p = puzzleFor(question);
    const chainFacts = p.hops.map((h) => `Fact: ${h.from.name} | ${h.relation.label} | ${h.to.name}.`);
    const backRefs = p.hops.map((h) => `Fact: ${h.to.name} | ${h.relation.inverse} | ${h.from.name}.`);
    const good = `Solution methods:\n${[...chainFacts, ...backRefs].join('\n')}\nFinal answer: ${answer}`;
    const last = p.hops[p.hops.length - 1]!;
    const wrong = 'Wrongton';
    const badFacts = [
      ...chainFacts.slice(0, -1),
      `Fact: ${last.from.name} | ${last.relation.label} | ${wrong}.`,
      `Fact: ${wrong} | ${last.relation.inverse} | Someone Else.`,
    ];
    const bad = `Solution methods:\n${badFacts.join('\n')}\nFinal answer: ${wrong}`;
    const reports = [bad, good, bad].map((r, i) => `<report id=${i + 1}>\n${r}\n</report>`).join('\n');
    const g = simGenerate(
      [{ role: 'user', content: `<question>${question}</question>\n<reports>\n${reports}\n</reports>` }],
      params(1),
    );
    expect(detectSimTask([{ role: 'user', content: `<reports>${reports}</reports>` }])).toBe('integrate');
    expect(g.text).toMatch(/^<think>[\s\S]+<\/think>\n<answer>.+<\/answer>$/);
    expect(/<answer>(.+)<\/answer>/.exec(g.text)![1]).toBe(answer);
    // With equally supported reports, agreement decides.
    const tie = [good, good.replace(`Final answer: ${answer}`, 'Final answer: Other Place'), good]
      .map((r, i) => `<report id=${i + 1}>\n${r}\n</report>`)
      .join('\n');
    const g2 = simGenerate([{ role: 'user', content: `<reports>\n${tie}\n</reports>` }], params(1));
    expect(/<answer>(.+)<\/answer>/.exec(g2.text)![1]).toBe(answer);
    // No report with an answer (each cut before its end): no answer invented.
    const cut = `<report id=1>\n${good.slice(0, 40)}\n</report>`;
    const g3 = simGenerate([{ role: 'user', content: `<reports>\n${cut}\n</reports>` }], params(1));
    expect(g3.text).toMatch(/<answer><\/answer>$/);
  });

  it('judges with normalised comparison', () => {
    const judge = (gold: string, pred: string) =>
      simGenerate(
        [{ role: 'user', content: `<gold>${gold}</gold>\n<prediction>${pred}</prediction>` }],
        params(1),
      ).text;
    expect(judge('University of Kelmere', 'the university of kelmere.')).toBe(
      '<judgement>correct</judgement>',
    );
    expect(judge('Castelmoor', 'The answer is Castelmoor')).toBe('<judgement>correct</judgement>');
    expect(judge('Castelmoor', 'Brindlewick')).toBe('<judgement>incorrect</judgement>');
    // As its prompt says: several candidates, or the answer denied, are wrong.
    expect(judge('Corelholt', 'Either Varnholt or Corelholt')).toBe('<judgement>incorrect</judgement>');
    expect(judge('Corelholt', 'not Corelholt')).toBe('<judgement>incorrect</judgement>');
    expect(judge('Corelholt', "It isn't Corelholt")).toBe('<judgement>incorrect</judgement>');
    expect(judge('Corelholt', 'No, Corelholt')).toBe('<judgement>incorrect</judgement>');
    // A qualification is not a second candidate.
    expect(judge('Castelmoor', 'Castelmoor, not Brindlewick')).toBe('<judgement>correct</judgement>');
    expect(judge('Castelmoor', 'Castelmoor (the town, not the castle)')).toBe(
      '<judgement>correct</judgement>',
    );
    for (const pred of ['a', 'A.', '(A)', 'Option A'])
      expect(judge('A', pred), pred).toBe('<judgement>correct</judgement>');
    expect(judge('A', 'B')).toBe('<judgement>incorrect</judgement>');
  });
});
