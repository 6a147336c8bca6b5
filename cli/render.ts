// Human-readable output for trajectories and progress.
import cliProgress from 'cli-progress';
import type { TrajectoryProgress, TrajectoryResult } from '../agent/trajectory.js';
import { exitAsSignal } from '../common/signals.js';
import type { ParallelMuseResult } from '../workflows/parallel-muse.js';

/** What a Ctrl-C stops before its notice is written (a progress bar holding the terminal's cursor). */
const onInterrupt = new Set<() => void>();

export function progressBar(total: number): { update(p: TrajectoryProgress): void; stop(): void } {
  if (!process.stderr.isTTY) {
    let last = -1;
    return {
      update(p) {
        if (p.step === last) return;
        last = p.step;
        process.stderr.write(`  step ${p.step}/${total}  ${oneLine(p.lastAction)}\n`);
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
  // Ctrl-C stops the bar first, so the terminal gets its cursor back (noticeOnInterrupt, which owns the exit).
  const stopBar = () => bar.stop();
  onInterrupt.add(stopBar);
  bar.start(total, 0, { action: 'starting' });
  return {
    update: (p) => bar.update(p.step, { action: oneLine(p.lastAction).slice(0, 70) }),
    stop: () => {
      onInterrupt.delete(stopBar);
      bar.stop();
    },
  };
}

/**
 * While a command follows a run: Ctrl-C (or SIGTERM) leaves the run going, and the user is told so, with its id,
 * whatever the output (a bar, a log, --json); the process then exits as the signal would have made it. A progress bar
 * is stopped first. A handler set before this one (the demo's, which stops its servers) owns the exit, even once it
 * has fired and left the listener list. Returns what takes it off.
 */
export function noticeOnInterrupt(what: string, id: string): () => void {
  const handledElsewhere = {
    SIGINT: process.listenerCount('SIGINT') > 0,
    SIGTERM: process.listenerCount('SIGTERM') > 0,
  };
  const interrupted = (signal: NodeJS.Signals) => {
    for (const stop of onInterrupt) stop();
    if (handledElsewhere[signal as keyof typeof handledElsewhere] || process.listenerCount(signal) > 0)
      return;
    process.stderr.write(
      `\nmuse: interrupted; ${what} ${id} goes on (muse status ${id} shows where it is)\n`,
    );
    exitAsSignal(signal);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  return () => {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  };
}

/** A run's last action on one line of a log: what a model wrote can hold newlines and terminal escapes. */
export function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced
  return text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ');
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

/** `muse status` of an ended workflow (`workflowId`): the prediction and how it ended, by workflow type. */
export function statusResult(type: string, result: unknown, workflowId: string) {
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
    // Each rollout's own workflow id, as `muse export` and `muse status` take it.
    rolloutIds: r.rollouts.map((ro) => `${workflowId}/${ro.rolloutId}`),
    terminations,
    plan: r.plan,
    ...(r.models ? { models: r.models } : {}),
  };
}
