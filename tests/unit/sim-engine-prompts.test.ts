// The simulator must understand the prompts the engine actually builds (agent/context.ts, agent/prompts.ts).
import { describe, expect, it } from 'vitest';
import { type ContextState, contextPolicy } from '../../agent/context.js';
import { parseAnswer, parseJudgement, parseReport, parseSummary, parseTurn } from '../../agent/format.js';
import { integrationMessages, judgeMessages, renderTrajectory, reportMessages } from '../../agent/prompts.js';
import type { ContextPolicyName } from '../../agent/types.js';
import { simGenerate } from '../../sim/model.js';
import { simSearch, simVisit } from '../../sim/tools.js';
import { sampleQuestions } from '../../sim/world.js';

const params = (seed: number) => ({ maxTokens: 8192, temperature: 1, topLogprobs: 16, seed });

function runTool(question: string, name: string, args: Record<string, unknown>): string {
  if (name === 'search') return simSearch(question, args.query as string[]);
  if (name === 'visit') return simVisit(question, args.url as string[], args.goal as string | undefined);
  return `Error: unknown tool ${name}.`;
}

interface Run {
  answer: string | null;
  steps: { turn: string; observation?: string }[];
  turns: number;
  summaries: number;
}

/** A trajectory through the engine's context policy; resum summarises every `summaryEvery` steps. */
function run(
  policyName: ContextPolicyName,
  question: string,
  seed: number,
  maxTurns = 80,
  summaryEvery = 0,
): Run {
  const policy = contextPolicy(policyName);
  let state: ContextState = policy.initial(question);
  const steps: { turn: string; observation?: string }[] = [];
  let summaries = 0;
  for (let t = 0; t < maxTurns; t++) {
    if (summaryEvery > 0 && state.steps.length >= summaryEvery) {
      const s = simGenerate(policy.summaryMessages(state), params(seed));
      const summary = parseSummary(s.text);
      expect(summary).not.toBeNull();
      state = policy.applySummary(state, summary!);
      summaries++;
    }
    const g = simGenerate(policy.buildMessages(state), params(seed * 7919 + t));
    const turn = parseTurn(g.text);
    if (turn.kind === 'answer') {
      steps.push({ turn: g.text });
      return { answer: turn.answer, steps, turns: t + 1, summaries };
    }
    let observation: string;
    if (turn.kind === 'tool_call') observation = runTool(question, turn.call.name, turn.call.arguments);
    else if (turn.kind === 'invalid_tool_call') observation = turn.error;
    else observation = 'Error: no tool call or answer found.';
    steps.push({ turn: g.text, observation });
    state = policy.advance(state, turn, g.text, observation);
  }
  return { answer: null, steps, turns: maxTurns, summaries };
}

describe('simulator behind the engine prompts', () => {
  const qs = sampleQuestions(16, 99);

  it('runs react, resum and iterresearch trajectories to the answer, about equally well', () => {
    const questions = sampleQuestions(20, 5);
    const accuracy: number[] = [];
    for (const [policy, summaryEvery] of [
      ['react', 0],
      ['iterresearch', 0],
      ['resum', 3],
    ] as const) {
      let correct = 0;
      let n = 0;
      for (const { question, answer } of questions) {
        for (let seed = 1; seed <= 3; seed++) {
          const r = run(policy, question, seed, 80, summaryEvery);
          expect(r.answer).not.toBeNull();
          if (policy === 'resum') expect(r.summaries).toBeGreaterThan(0);
          n++;
          if (r.answer === answer) correct++;
        }
      }
      accuracy.push(correct / n);
    }
    // Accuracy is a property of the simulated world and habits (55-60% on large samples), not a target;
    // what matters is that no context policy loses what the agent found.
    for (const a of accuracy) {
      expect(a).toBeGreaterThan(0.4);
      expect(a).toBeLessThan(0.8);
    }
    expect(Math.max(...accuracy) - Math.min(...accuracy)).toBeLessThan(0.2);
  });

  it('counts turns across summaries and iterresearch rounds for directives', () => {
    const { question } = qs[0]!;
    for (const policy of ['react', 'iterresearch', 'resum'] as const) {
      const r = run(
        policy,
        `${question} [sim:min-turns=15] [sim:garbage@3] [sim:malformed-tool-call@6]`,
        2,
        60,
        policy === 'resum' ? 4 : 0,
      );
      expect(r.answer).not.toBeNull();
      // At least 15 turns before the answer; a check already under way may take a few more.
      expect(r.turns).toBeGreaterThanOrEqual(16);
      expect(r.turns).toBeLessThanOrEqual(22);
      expect(parseTurn(r.steps[3]!.turn).kind).toBe('no_action');
      expect(parseTurn(r.steps[6]!.turn).kind).toBe('invalid_tool_call');
      expect(parseTurn(r.steps[7]!.turn).kind).toBe('tool_call');
    }
  });

  it('aggregates rendered trajectories through report and integration prompts', () => {
    let majority = 0;
    let integrated = 0;
    for (const { question, answer } of qs) {
      const answers: string[] = [];
      const reports: string[] = [];
      for (let seed = 1; seed <= 5; seed++) {
        const r = run('react', question, seed);
        answers.push(r.answer!);
        const g = simGenerate(reportMessages(question, renderTrajectory(r.steps)), params(1));
        const report = parseReport(g.text);
        expect(report).toContain(`Final answer: ${r.answer}`);
        expect(report).toContain('Fact: ');
        reports.push(report!);
      }
      const g = simGenerate(integrationMessages(question, reports), params(1));
      const chosen = parseAnswer(g.text);
      expect(answers).toContain(chosen);
      if (chosen === answer) integrated++;
      const counts = new Map<string, number>();
      for (const a of answers) counts.set(a, (counts.get(a) ?? 0) + 1);
      if ([...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0] === answer) majority++;
      const verdict = parseJudgement(simGenerate(judgeMessages(question, answer, chosen!), params(1)).text);
      expect(verdict).toBe(chosen === answer ? 'correct' : 'incorrect');
    }
    expect(integrated).toBeGreaterThanOrEqual(majority);
  });
});
