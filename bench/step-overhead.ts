// Engine overhead per step: the same simulated trajectories (zero serving latency) run once through Muse
// (Temporal workflow + activities + NATS pool + JetStream content) and once through a plain in-process loop
// over the same simulator, context policy and tools. Prints steps/s for both and their ratio.

import { NO_ACTION_OBSERVATION } from '../activities/index.js';
import { contextPolicy } from '../agent/context.js';
import { parseTurn } from '../agent/format.js';
import { startTrajectory } from '../client/trajectories.js';
import { SimBackend } from '../sim/backend.js';
import { sampleQuestions } from '../sim/world.js';
import { createToolRegistry } from '../tools/registry.js';
import { stepSeed } from '../workflows/trajectory.js';
import { benchEngine, mapPooled, sum, table } from './harness.js';

const QUESTIONS = Number(process.env.BENCH_QUESTIONS ?? 12);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
const MAX_TURNS = 40;
const questions = sampleQuestions(QUESTIONS, 2024).map((q) => `${q.question} [sim:min-turns=12]`);

/** The baseline: the same agent loop with no durability, no network, no content store. */
async function plainLoop(question: string, seed: number): Promise<number> {
  const backend = new SimBackend({ profile: { timeScale: 0 } });
  const tools = createToolRegistry('sim');
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

async function main() {
  const { cfg, client, stop } = await benchEngine('overhead');
  try {
    // Warm-up: bundle load, connections, JetStream buckets.
    await (await startTrajectory(client, cfg, { question: questions[0]!, maxTurns: 3 })).result();
    await plainLoop(questions[0]!, 1);

    let t0 = performance.now();
    const plainSteps = sum(await mapPooled(questions, CONCURRENCY, (q, i) => plainLoop(q, i)));
    const plainMs = performance.now() - t0;

    t0 = performance.now();
    const museSteps = sum(
      await mapPooled(questions, CONCURRENCY, async (q, i) => {
        const h = await startTrajectory(client, cfg, { question: q, maxTurns: MAX_TURNS, seed: i });
        return (await h.result()).steps;
      }),
    );
    const museMs = performance.now() - t0;

    const plainRate = (plainSteps * 1000) / plainMs;
    const museRate = (museSteps * 1000) / museMs;
    console.log(
      `step overhead: ${QUESTIONS} trajectories, ${CONCURRENCY} at a time, simulator at zero latency\n`,
    );
    console.log(
      table([
        {
          engine: 'plain in-process loop',
          steps: plainSteps,
          seconds: plainMs / 1000,
          'steps/s': plainRate,
          'ms/step': plainMs / plainSteps,
        },
        {
          engine: 'Muse (Temporal + NATS)',
          steps: museSteps,
          seconds: museMs / 1000,
          'steps/s': museRate,
          'ms/step': museMs / museSteps,
        },
      ]),
    );
    console.log(
      `\nratio plain/Muse steps/s: ${(plainRate / museRate).toFixed(1)}x  (Muse overhead per step ≈ ${(museMs / museSteps - plainMs / plainSteps).toFixed(1)} ms of wall time at concurrency ${CONCURRENCY})`,
    );
  } finally {
    await stop();
  }
}

await main();
process.exit(0);
