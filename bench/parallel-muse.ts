// Partial rollout versus from-scratch sampling at equal budget (N=8 per question) over a fixed set of
// simulator questions. Prints generated tokens, tool calls, reuse factor, failed rollouts and per-aggregator
// accuracy, and checks that a branch regenerates none of its reused prefix: the worker counts the model calls each
// rollout's activities actually make, and a rollout must make one per step it generates and none for the steps it
// reuses. "tokens vs scratch" compares different samples (only the initial rollout is shared), so it is the saving
// of this seed set, not the reused prefix exactly.
import { runParallelMuse } from '../client/parallel-muse.js';
import { sampleQuestions } from '../sim/world.js';
import type { ParallelMuseResult } from '../workflows/parallel-muse.js';
import { benchEngine, envNumber, mapPooled, sum, table } from './harness.js';

const QUESTIONS = envNumber('BENCH_QUESTIONS', 16);
/** Rollouts per question, every configuration alike: the equal budget. */
const N = 8;
const CONCURRENCY = envNumber('BENCH_CONCURRENCY', 4);
const questions = sampleQuestions(QUESTIONS, 99);
const configs = [
  { name: 'from scratch', branchMode: 'none' as const },
  { name: 'partial tool_call_ppl', branchMode: 'tool_call_ppl' as const },
  { name: 'partial mixed_ppl', branchMode: 'mixed_ppl' as const },
];
const aggregators = ['compressed', 'majority', 'confidence_weighted', 'min_uncertainty'] as const;

async function main() {
  // Steps each trajectory called the model for: a retried activity calls again for the same step, which is no reuse
  // failure, so steps are counted once.
  const modelSteps = new Map<string, Set<number>>();
  const { cfg, client, stop } = await benchEngine('pm', {
    members: 2,
    onModelCall: (e) => {
      if (e.kind !== 'turn') return;
      const steps = modelSteps.get(e.trajectoryId) ?? new Set<number>();
      modelSteps.set(e.trajectoryId, steps.add(e.step));
    },
  });
  const rows: Record<string, string | number>[] = [];
  let base: { tokens: number; tools: number } | undefined;
  const violations: string[] = [];
  try {
    for (const c of configs) {
      const results = await mapPooled(questions, CONCURRENCY, async (q, i) => {
        const { result } = await runParallelMuse(
          client,
          cfg,
          {
            n: N,
            m: 1,
            k: 2,
            t: 3,
            r: 1,
            branchMode: c.branchMode,
            trajectory: { question: q.question, answer: q.answer, maxTurns: 40, seed: i },
          },
          { workflowId: `bench-${c.branchMode}-${i}`, jobId: `bench-${c.branchMode}` },
        );
        return result;
      });
      const total = (f: (r: ParallelMuseResult) => number) => sum(results.map(f));
      const tokens = total((r) => r.accounting.generatedTokens);
      const tools = total((r) => r.accounting.toolCalls);
      const reused = total((r) => r.accounting.reusedTokens);
      const reusedTools = total((r) => r.accounting.reusedToolCalls);
      for (const r of results) {
        for (const ro of r.rollouts) {
          const generatedSteps = ro.steps - ro.lineage.reusedSteps;
          const steps = [...(modelSteps.get(`${r.questionId}/${ro.rolloutId}`) ?? [])];
          // One model-called step per generated step, none before the branch point (no reused step regenerated).
          const regenerated = steps.filter((s) => s < ro.lineage.reusedSteps).length;
          if (ro.termination !== 'error' && (steps.length !== generatedSteps || regenerated > 0)) {
            violations.push(
              `${r.questionId}/${ro.rolloutId}: model called for ${steps.length} steps (${regenerated} reused) for ${generatedSteps} generated steps`,
            );
          }
        }
      }
      const failed = results.flatMap((r) =>
        r.rollouts
          .filter((ro) => ro.termination === 'error' || ro.termination === 'cancelled')
          .map((ro) => `${r.questionId}/${ro.rolloutId} (${ro.termination})`),
      );
      // A failed or cancelled rollout generated less than it would have: the ratios would count that as a saving.
      if (failed.length > 0)
        violations.push(
          `${c.name}: ${failed.length} rollouts failed or were cancelled (${failed.slice(0, 3).join(', ')})`,
        );
      // Equal budget: every configuration runs N rollouts per question. One short of it would read as a saving.
      const rolloutCount = results.reduce((n, r) => n + r.rollouts.length, 0);
      if (rolloutCount !== N * results.length)
        violations.push(
          `${c.name}: ${rolloutCount} rollouts, not N=${N} for each of ${results.length} questions`,
        );
      base ??= { tokens, tools };
      const row: Record<string, string | number> = {
        config: c.name,
        rollouts: rolloutCount,
        'failed rollouts': failed.length,
        'gen tokens': tokens,
        'tool calls': tools,
        'reused tokens': reused,
        'reused calls': reusedTools,
        'reuse factor': tokens ? 1 + reused / tokens : 1,
        'tokens vs scratch': tokens / base.tokens,
        'tools vs scratch': tools / base.tools,
      };
      // Of the questions the aggregator's outcome was scored on, as the README counts accuracy: one left unscored (no
      // verdict from the judge, a failed integration) is neither right nor wrong.
      for (const a of aggregators) {
        const scored = results.filter((r) => typeof r.outcomes[a]?.correct === 'boolean');
        const acc = scored.filter((r) => r.outcomes[a]!.correct).length / Math.max(1, scored.length);
        const unscored = results.length - scored.length;
        row[`acc ${a}`] =
          unscored === 0 ? acc : `${scored.length ? acc.toFixed(3) : '-'} (${unscored} unscored)`;
      }
      rows.push(row);
    }
    console.log(
      `ParallelMuse at equal budget N=${N} (M=1, K=2, T=3, R=1) over ${QUESTIONS} simulator questions\n`,
    );
    console.log(table(rows));
    console.log(
      violations.length
        ? `\nCHECK FAILED (the ratios above do not measure reuse alone):\n${violations.slice(0, 10).join('\n')}`
        : '\nchecks: no rollout failed, and each called the model for every step it generated and for none of its reused prefix',
    );
    return violations.length === 0;
  } finally {
    await stop();
  }
}

// A failed check fails the run: the saving it reports would not be the reused prefix alone.
process.exit((await main()) ? 0 : 1);
