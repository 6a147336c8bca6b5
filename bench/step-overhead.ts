// Engine overhead per step: the same simulated trajectories (zero serving latency) run once through Muse
// (Temporal workflow + activities + NATS pool + JetStream content) and once through a plain in-process loop
// over the same simulator, context policy and tools. Prints steps/s for both and their ratio, one trajectory at a
// time (a step's added latency) and several at a time (throughput).

import { NO_ACTION_OBSERVATION } from '../activities/index.js';
import { contextPolicy } from '../agent/context.js';
import { parseTurn } from '../agent/format.js';
import { startTrajectory } from '../client/trajectories.js';
import { SimBackend } from '../sim/backend.js';
import { sampleQuestions } from '../sim/world.js';
import { createToolRegistry } from '../tools/registry.js';
import { stepSeed } from '../workflows/trajectory.js';
import { benchEngine, envNumber, mapPooled, sum, table } from './harness.js';

const QUESTIONS = envNumber('BENCH_QUESTIONS', 12);
const CONCURRENCY = envNumber('BENCH_CONCURRENCY', 4);
const LATENCY_QUESTIONS = 3;
const LATENCY_PAUSE_MS = 1000;
const MAX_TURNS = 40;
const questions = sampleQuestions(QUESTIONS, 2024).map((q) => `${q.question} [sim:min-turns=12]`);

// Made once, outside the timed loops, as Muse's member and tools already exist when its runs start.
const plainBackend = new SimBackend({ profile: { timeScale: 0 } });
const plainTools = createToolRegistry('sim');

/** The baseline: the same agent loop with no durability, no network, no content store. */
async function plainLoop(question: string, seed: number): Promise<number> {
  const backend = plainBackend;
  const tools = plainTools;
  const policy = contextPolicy('react');
  let state = policy.initial(question);
  for (let step = 0; step < MAX_TURNS; step++) {
    const g = await backend.generate(
      {
        id: `${seed}-${step}`,
        messages: policy.buildMessages(state),
        params: { maxTokens: 4096, temperature: 0.85, topLogprobs: 16, seed: stepSeed(seed, step) },
        deadline: Date.now() + 60_000,
      },
      new AbortController().signal,
    );
    const turn = parseTurn(g.text);
    if (turn.kind === 'answer') return step + 1;
    const obs =
      turn.kind === 'tool_call'
        ? (await tools.run(turn.call, { question })).observation
        : turn.kind === 'invalid_tool_call'
          ? turn.error
          : NO_ACTION_OBSERVATION;
    state = policy.advance(state, turn, g.text, obs);
  }
  return MAX_TURNS;
}

function row(engine: string, run: string, trajectories: number, steps: number, ms: number) {
  return {
    engine,
    run,
    trajectories,
    steps,
    seconds: ms / 1000,
    'steps/s': (steps * 1000) / ms,
    'ms/step': ms / steps,
  };
}

async function main() {
  const { cfg, client, stop } = await benchEngine('overhead');
  try {
    // Warm-up: bundle load, connections, JetStream buckets.
    await (await startTrajectory(client, cfg, { question: questions[0]!, maxTurns: 3 })).result();
    await plainLoop(questions[0]!, 1);

    // One trajectory at a time gives a step's latency through each engine; CONCURRENCY at a time, its throughput.
    // The latency runs twice: back to back, and with a pause before each trajectory (not timed). The two differ when
    // the server's dispatch slows under sustained load and recovers while idle, as it did before the dev server's
    // history queue readers had their read rate raised (see startTemporal).
    const latencyQuestions = questions.slice(0, LATENCY_QUESTIONS);
    const runs = [
      { label: '1 at a time, back to back', qs: latencyQuestions, concurrency: 1, pauseMs: 0 },
      {
        label: `1 at a time, ${LATENCY_PAUSE_MS} ms apart`,
        qs: latencyQuestions,
        concurrency: 1,
        pauseMs: LATENCY_PAUSE_MS,
      },
      { label: `${CONCURRENCY} at a time`, qs: questions, concurrency: CONCURRENCY, pauseMs: 0 },
    ];
    const rows: Record<string, string | number>[] = [];
    const overheads: string[] = [];
    // The plain loop has no dispatch to wait on, so a paused run would only repeat it: it runs once per shape.
    const plainRuns = new Map<string, { steps: number; ms: number; perQuestion: number[] }>();
    // The comparison holds only if both engines ran the same trajectories: same steps per question, none failed.
    const differing: string[] = [];
    for (const { label, qs, concurrency, pauseMs } of runs) {
      const shape = `${qs.length}x${concurrency}`;
      let plain = plainRuns.get(shape);
      let t0 = performance.now();
      if (!plain) {
        const perQuestion = await mapPooled(qs, concurrency, (q, i) => plainLoop(q, i));
        const steps = sum(perQuestion);
        plain = { steps, ms: performance.now() - t0, perQuestion };
        plainRuns.set(shape, plain);
        rows.push(row('plain in-process loop', label, qs.length, steps, plain.ms));
      }
      const { steps: plainSteps, ms: plainMs } = plain;
      t0 = performance.now();
      const muse = await mapPooled(qs, concurrency, async (q, i) => {
        // Timed, not assumed: a timer fires late under load, and that lateness is not Muse's.
        const paused = performance.now();
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
        const pausedMs = performance.now() - paused;
        const h = await startTrajectory(client, cfg, { question: q, maxTurns: MAX_TURNS, seed: i });
        const { steps, termination } = await h.result();
        return { steps, termination, pausedMs };
      });
      const museSteps = sum(muse.map((m) => m.steps));
      muse.forEach((m, i) => {
        if (m.termination === 'error' || m.steps !== plain.perQuestion[i])
          differing.push(
            `${label}, question ${i}: Muse ${m.steps} steps (${m.termination}), plain loop ${plain.perQuestion[i]}`,
          );
      });
      // Pauses only run one at a time (concurrency 1), so their sum is what the wall time holds of them.
      const museMs = performance.now() - t0 - sum(muse.map((m) => m.pausedMs));
      rows.push(row('Muse (Temporal + NATS)', label, qs.length, museSteps, museMs));
      overheads.push(
        `${label}: plain/Muse steps/s ${((plainSteps / plainMs) * (museMs / museSteps)).toFixed(1)}x, ` +
          `Muse overhead per step ≈ ${(museMs / museSteps - plainMs / plainSteps).toFixed(1)} ms of wall time` +
          (concurrency === 1 ? " (a step's added latency)" : ' (throughput)'),
      );
    }
    console.log(`step overhead: simulator at zero latency, trajectories of at least 12 steps\n`);
    console.log(table(rows));
    console.log(`\n${overheads.join('\n')}`);
    if (differing.length > 0) {
      console.log(
        `\nthe engines did not run the same trajectories, so the comparison does not hold:\n${differing.join('\n')}`,
      );
      process.exitCode = 1;
    }
  } finally {
    await stop();
  }
}

await main();
process.exit(process.exitCode ?? 0);
