// Human-readable output for trajectories and progress.
import cliProgress from 'cli-progress';
import type { TrajectoryProgress, TrajectoryResult } from '../agent/trajectory.js';
import { exitAsSignal } from '../common/signals.js';
import type { ParallelMuseResult } from '../workflows/parallel-muse.js';

export function progressBar(total: number): { update(p: TrajectoryProgress): void; stop(): void } {
  if (!process.stderr.isTTY) {
    let last = -1;
    return {
      update(p) {
        if (p.step === last) return;
        last = p.step;
        process.stderr.write(`  step ${p.step}/${total}  ${p.lastAction}\n`);
      },
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: '  {bar} step {value}/{total} | {action}',
      hideCursor: true,
      stream: process.stderr,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  // Ctrl-C stops the bar first, so the terminal gets its cursor back. With nobody else listening the process then
  // exits as the signal would have made it; the trajectory goes on regardless. A handler set before the bar (the
  // demo's, which stops its servers) owns the exit even once it has fired and left the listener list.
  const handledElsewhere = {
    SIGINT: process.listenerCount('SIGINT') > 0,
    SIGTERM: process.listenerCount('SIGTERM') > 0,
  };
  const interrupted = (signal: NodeJS.Signals) => {
    bar.stop();
    if (handledElsewhere[signal as keyof typeof handledElsewhere] || process.listenerCount(signal) > 0)
      return;
    process.stderr.write(
      '\nmuse: interrupted; the trajectory goes on (muse status <its id, above> shows where it is)\n',
    );
    exitAsSignal(signal);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  bar.start(total, 0, { action: 'starting' });
  return {
    update: (p) => bar.update(p.step, { action: p.lastAction.slice(0, 70) }),
    stop: () => {
      process.off('SIGINT', interrupted);
      process.off('SIGTERM', interrupted);
      bar.stop();
    },
  };
}

export function summarizeTrajectory(r: TrajectoryResult): string {
  const u = r.usage;
  const cacheRate = u.promptTokens ? ((100 * u.cachedPromptTokens) / u.promptTokens).toFixed(1) : '0.0';
  return [
    `  prediction : ${r.prediction ?? '(none)'}`,
    `  termination: ${r.termination}${(r.error ?? r.reason) ? ` (${r.error ?? r.reason})` : ''}`,
    `  steps      : ${r.steps} (${u.toolCalls} tool calls, ${u.llmCalls} model calls, ${r.runs} workflow run${r.runs > 1 ? 's' : ''})`,
    `  tokens     : ${u.promptTokens} prompt (${u.cachedPromptTokens} from prefix cache, ${cacheRate}%), ${u.completionTokens} completion`,
    `  model      : ${modelsLine(r.models, u.llmCalls)}`,
    `  workflow   : ${r.trajectoryId}`,
  ].join('\n');
}

/** What generated a result, for people: results recorded before models were kept say so rather than "none". */
export function modelsLine(models: readonly string[] | undefined, modelCalls: number): string {
  if (models?.length) return models.join(', ');
  return modelCalls > 0 ? '(not recorded)' : '(no model call)';
}

/** The `--json` shape of a single trajectory. */
export function trajectoryJson(r: TrajectoryResult & { answer?: string; correct?: boolean }) {
  return {
    id: r.trajectoryId,
    prediction: r.prediction,
    termination: r.termination,
    steps: r.steps,
    usage: r.usage,
    runs: r.runs,
    ...(r.models ? { models: r.models } : {}),
    ...(r.error ? { error: r.error } : {}),
    ...(r.reason ? { reason: r.reason } : {}),
    ...(r.answer !== undefined ? { answer: r.answer, correct: r.correct } : {}),
  };
}

/** `muse status` of an ended workflow: the prediction and how it ended, by workflow type. */
export function statusResult(type: string, result: unknown) {
  if (type === 'trajectory') return trajectoryJson(result as TrajectoryResult);
  if (type !== 'parallelMuse') return result;
  const r = result as ParallelMuseResult;
  const terminations: Record<string, number> = {};
  for (const ro of r.rollouts) terminations[ro.termination] = (terminations[ro.termination] ?? 0) + 1;
  return {
    prediction: r.prediction,
    aggregator: r.aggregator,
    ...(r.answer !== undefined ? { answer: r.answer, correct: r.correct } : {}),
    rollouts: r.rollouts.length,
    // What `muse export <question>/<rollout id>` takes.
    rolloutIds: r.rollouts.map((ro) => ro.rolloutId),
    terminations,
    plan: r.plan,
    ...(r.models ? { models: r.models } : {}),
  };
}
