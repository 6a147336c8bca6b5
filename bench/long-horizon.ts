// One 2048-step iterresearch trajectory (simulator, zero serving latency): per-step time early versus late,
// Temporal history bytes per step per run (should be flat), the bench process's peak RSS, and beside it the history a naive
// design would have written (every model call's prompt as its activity input, turns and observations inline).
//
// Early and late are the first 100 steps of the first and of the last full workflow run (continue-as-new every 200
// steps), after a warm-up trajectory of one whole run under the same job, so both windows sit at the same place in
// their run and neither pays for connections, the job's content buckets, the workflow bundle or the JIT. Within a
// run, the last full run's second 100 steps are set against its first 100 too: growth that continue-as-new bounds
// would show there. Step times are medians: one GC pause or server stall moves a mean of 100 by several percent.
import { ContextStore } from '../activities/content.js';
import { contextPolicy } from '../agent/context.js';
import { historyChain } from '../client/history.js';
import { startTrajectory } from '../client/trajectories.js';
import { BlobStore } from '../common/blob-store.js';
import { connectNats } from '../common/nats.js';
import { readStepLog } from '../common/step-log.js';
import { sampleQuestions } from '../sim/world.js';
import { benchEngine, envNumber, table } from './harness.js';

const STEPS = envNumber('BENCH_STEPS', 2048);
const STEPS_PER_RUN = 200;
const WINDOW = 100;
// Early and late windows in different workflow runs, each whole: with fewer steps the late window would be the
// early one and the ratio 1 whatever happened.
if (STEPS < 2 * STEPS_PER_RUN)
  throw new Error(`BENCH_STEPS must be at least ${2 * STEPS_PER_RUN} (two workflow runs), got ${STEPS}`);

/** Step time late in the run over step time at its start: history that grows with the run would push it up. */
const MAX_LATE_EARLY = 1.2;

async function main(): Promise<boolean> {
  const stepStart = new Map<number, number>();
  const { cfg, client, stop } = await benchEngine('long', {
    onModelCall: (e) => stepStart.set(e.step, performance.now()),
  });
  let nc: Awaited<ReturnType<typeof connectNats>> | undefined;
  try {
    nc = await connectNats(cfg, 'bench');
    const [q, warmup] = sampleQuestions(2, 2048);
    const jobId = `bench-long-${Date.now()}`;
    await (
      await startTrajectory(
        client,
        cfg,
        {
          question: `${warmup!.question} [sim:min-turns=100000]`,
          policy: 'iterresearch',
          maxTurns: STEPS_PER_RUN,
          stepsPerRun: STEPS_PER_RUN,
        },
        { jobId },
      )
    ).result();
    stepStart.clear();
    const t0 = performance.now();
    const handle = await startTrajectory(
      client,
      cfg,
      {
        question: `${q!.question} [sim:min-turns=100000]`,
        policy: 'iterresearch',
        maxTurns: STEPS,
        stepsPerRun: STEPS_PER_RUN,
      },
      { jobId },
    );
    const result = await handle.result();
    // The run's own peak, before the analysis below reads back every step.
    const peakRssMiB = process.resourceUsage().maxRSS / 1024;
    if (result.steps !== STEPS)
      throw new Error(`the trajectory ended after ${result.steps} of ${STEPS} steps`);
    // The windows assume runs of exactly STEPS_PER_RUN steps: one continued as new early (Temporal suggesting it)
    // would put them at other places in their runs.
    if (result.runs !== Math.ceil(STEPS / STEPS_PER_RUN))
      throw new Error(
        `the trajectory took ${result.runs} workflow runs, not ${Math.ceil(STEPS / STEPS_PER_RUN)}`,
      );
    const totalMs = performance.now() - t0;
    const stepMs = (from: number, to: number) => {
      const xs: number[] = [];
      for (let s = from; s < to; s++) {
        const a = stepStart.get(s);
        const b = stepStart.get(s + 1);
        if (a !== undefined && b !== undefined) xs.push(b - a);
      }
      xs.sort((x, y) => x - y);
      return xs.length === 0 ? Number.NaN : (xs[(xs.length - 1) >> 1]! + xs[xs.length >> 1]!) / 2;
    };
    const lastFullRun = Math.max(0, (Math.floor(STEPS / STEPS_PER_RUN) - 1) * STEPS_PER_RUN);
    const early = stepMs(0, WINDOW);
    const late = stepMs(lastFullRun, lastFullRun + WINDOW);
    const lateInRun = stepMs(lastFullRun + WINDOW, lastFullRun + STEPS_PER_RUN - 1);

    const runs = await historyChain(client, handle.workflowId, handle.firstExecutionRunId);
    const totalHistory = runs.reduce((n, r) => n + r.bytes, 0);
    // Naive design: each model call's input is the prompt it was sent (for iterresearch: question, report, last
    // action and observation), and each output (turn) and tool result is inline in history too.
    const blobs = new BlobStore(nc);
    const content = new ContextStore(blobs);
    const policy = contextPolicy('iterresearch');
    const bytes = (text: string) => Buffer.byteLength(text);
    let naive = 0;
    for (const step of await readStepLog(blobs, result.log)) {
      const { state } = await content.getContext(step.contextBefore);
      naive += policy.buildMessages(state).reduce((n, m) => n + bytes(m.content), 0);
      naive += bytes(await blobs.getText(step.turnRef));
      if (step.observationRef) naive += bytes(await blobs.getText(step.observationRef));
    }
    const perRun = runs.map((r, i) => ({
      run: i + 1,
      steps: i === runs.length - 1 ? result.steps - (runs.length - 1) * STEPS_PER_RUN : STEPS_PER_RUN,
      events: r.events,
      'history KiB': r.bytes / 1024,
    }));
    const rows = perRun.map((r, i) => ({ ...r, 'bytes/step': runs[i]!.bytes / Math.max(1, r.steps) }));
    // The last run may be short (2048 = 10 x 200 + 48): its fixed bytes (start, final state) over fewer steps
    // would read as growth, so the last full run is shown beside the first and the middle one.
    const lastFull = rows.map((r) => r.steps).lastIndexOf(STEPS_PER_RUN);
    const shown = [...new Set([0, Math.floor(rows.length / 2), Math.max(0, lastFull), rows.length - 1])];
    console.log(
      `long horizon: ${result.steps} steps (${result.termination}), ${result.runs} workflow runs, ${(totalMs / 1000).toFixed(1)} s\n`,
    );
    console.log(table(shown.sort((x, y) => x - y).map((i) => rows[i]!)));
    console.log(
      `\n${table([
        { figure: `median step time, steps 1-${WINDOW}, run 1 (ms)`, value: early },
        {
          figure: `median step time, steps ${lastFullRun + 1}-${lastFullRun + WINDOW}, run ${lastFullRun / STEPS_PER_RUN + 1} (ms)`,
          value: late,
        },
        {
          figure: `median step time, steps ${lastFullRun + WINDOW + 1}-${lastFullRun + STEPS_PER_RUN}, run ${lastFullRun / STEPS_PER_RUN + 1} (ms)`,
          value: lateInRun,
        },
        { figure: `late / early ratio (target <= ${MAX_LATE_EARLY})`, value: late / early },
        {
          figure: `within the run: second / first ${WINDOW} steps (target <= ${MAX_LATE_EARLY})`,
          value: lateInRun / late,
        },
        { figure: 'Muse history, all runs (MiB)', value: totalHistory / 2 ** 20 },
        { figure: 'Muse history bytes per step', value: totalHistory / result.steps },
        { figure: 'naive design history (MiB)', value: naive / 2 ** 20 },
        { figure: 'naive / Muse history ratio', value: naive / totalHistory },
        {
          figure: 'bench process peak RSS, worker and member included (MiB)',
          value: peakRssMiB,
        },
      ])}`,
    );
    const missed = [
      ...(late / early <= MAX_LATE_EARLY ? [] : [`late / early step time ${(late / early).toFixed(2)}`]),
      ...(lateInRun / late <= MAX_LATE_EARLY ? [] : [`within the run ${(lateInRun / late).toFixed(2)}`]),
    ];
    if (missed.length > 0) console.log(`\ntarget NOT met (<= ${MAX_LATE_EARLY}): ${missed.join('; ')}`);
    return missed.length === 0;
  } finally {
    try {
      await nc?.drain();
    } finally {
      await stop();
    }
  }
}

// A missed target fails the run, as the routing and ParallelMuse benchmarks do.
process.exit((await main()) ? 0 : 1);
