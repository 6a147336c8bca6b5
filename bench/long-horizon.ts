// One 2048-step iterresearch trajectory (simulator, zero serving latency): per-step time early versus late,
// Temporal history bytes per step per run (should be flat), worker peak RSS, and beside it the history a naive
// design would have written (the full conversation as every model call's activity input, outputs inline).
import { exportTrajectory } from '../client/content.js';
import { historyChain } from '../client/history.js';
import { startTrajectory } from '../client/trajectories.js';
import { connectNats } from '../common/nats.js';
import { sampleQuestions } from '../sim/world.js';
import { benchEngine, table } from './harness.js';

const STEPS = Number(process.env.BENCH_STEPS ?? 2048);

async function main() {
  const stepStart = new Map<number, number>();
  const { cfg, client, stop } = await benchEngine('long', {
    onModelCall: (e) => stepStart.set(e.step, performance.now()),
  });
  const nc = await connectNats(cfg, 'bench');
  try {
    const [q] = sampleQuestions(1, 2048);
    const t0 = performance.now();
    const handle = await startTrajectory(client, cfg, {
      question: `${q!.question} [sim:min-turns=100000]`,
      policy: 'iterresearch',
      maxTurns: STEPS,
    });
    const result = await handle.result();
    const totalMs = performance.now() - t0;
    const stepMs = (from: number, to: number) => {
      const xs: number[] = [];
      for (let s = from; s < to; s++) {
        const a = stepStart.get(s);
        const b = stepStart.get(s + 1);
        if (a !== undefined && b !== undefined) xs.push(b - a);
      }
      return xs.reduce((n, x) => n + x, 0) / Math.max(1, xs.length);
    };
    const early = stepMs(0, Math.min(100, STEPS - 1));
    const late = stepMs(Math.max(0, STEPS - 101), STEPS - 1);

    const runs = await historyChain(client, handle.workflowId, handle.firstExecutionRunId);
    const totalHistory = runs.reduce((n, r) => n + r.bytes, 0);
    // Naive design: each model call's input is the whole conversation so far; each output (turn) and each
    // tool result is inline in history too.
    let naive = 0;
    let conversation = 0;
    for await (const step of exportTrajectory(client, nc, handle.workflowId)) {
      const turn = Buffer.byteLength(step.turn);
      const obs = Buffer.byteLength(step.observation ?? '');
      naive += conversation + turn + obs;
      conversation += turn + obs;
    }
    const perRun = runs.map((r, i) => ({
      run: i + 1,
      events: r.events,
      'history KiB': r.bytes / 1024,
      'bytes/step':
        r.bytes / Math.max(1, i === runs.length - 1 ? result.steps - (runs.length - 1) * 200 : 200),
    }));
    console.log(
      `long horizon: ${result.steps} steps (${result.termination}), ${result.runs} workflow runs, ${(totalMs / 1000).toFixed(1)} s\n`,
    );
    console.log(
      table([
        perRun[0]!,
        ...(perRun.length > 2 ? [perRun[Math.floor(perRun.length / 2)]!] : []),
        perRun.at(-1)!,
      ]),
    );
    console.log(
      `\n${table([
        { figure: 'mean step time, steps 1-100 (ms)', value: early },
        { figure: `mean step time, steps ${STEPS - 99}-${STEPS} (ms)`, value: late },
        { figure: 'late / early ratio (target <= 1.2)', value: late / early },
        { figure: 'Muse history, all runs (MiB)', value: totalHistory / 2 ** 20 },
        { figure: 'Muse history bytes per step', value: totalHistory / result.steps },
        { figure: 'naive design history (MiB)', value: naive / 2 ** 20 },
        { figure: 'naive / Muse history ratio', value: naive / totalHistory },
        { figure: 'worker+member process peak RSS (MiB)', value: process.resourceUsage().maxRSS / 1024 },
      ])}`,
    );
  } finally {
    await nc.drain();
    await stop();
  }
}

await main();
process.exit(0);
