// ParallelMuse from the command line: one question (`run --mode parallel-muse`) or a JSONL batch.
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { DEFAULT_MAX_CONCURRENT_ROLLOUTS, type TrajectorySpecInput } from '../agent/job.js';
import { BatchError, readBatchQuestions, runBatch, sharedBatchSpec } from '../client/batch.js';
import { followThroughOutages } from '../client/outages.js';
import { parallelMuseRunIdFor, parseParallelMuseSpec, startParallelMuse } from '../client/parallel-muse.js';
import { sayIfNoWorker, sayIfStepsRetry } from '../client/trajectories.js';
import { exitAsSignal } from '../common/signals.js';
import { connectClient } from '../common/temporal.js';
import type { ParallelMuseResult } from '../workflows/parallel-muse.js';
import { idArg, MAX_RUN_ID_CHARS, positiveIntArg, withSpecFlags } from './args.js';
import { cliConfig } from './context.js';
import { modelsLine, noticeOnInterrupt } from './render.js';

export interface ParallelMuseCliOptions {
  n: number;
  m: number;
  k: number;
  t: number;
  r: number;
  branchMode: string;
  aggregator: string;
  aggregatorPool?: string;
  aggregatorModel?: string;
  judge: string;
  maxConcurrentRollouts: number;
  policy: string;
  maxTurns: number;
  stepsPerRun?: number;
  seed: number;
  pool: string;
  model?: string;
  contextWindow?: number;
  maxTokensPerTurn?: number;
  date?: string;
}

/** The trajectory part of a job spec from the shared run options (`muse run`, `muse run --mode`, `muse batch`). */
export function trajectorySpecFrom(
  question: string,
  answer: string | undefined,
  o: Pick<
    ParallelMuseCliOptions,
    | 'policy'
    | 'maxTurns'
    | 'stepsPerRun'
    | 'maxTokensPerTurn'
    | 'seed'
    | 'pool'
    | 'model'
    | 'contextWindow'
    | 'date'
  >,
): TrajectorySpecInput {
  return {
    question,
    ...(answer !== undefined ? { answer } : {}),
    policy: o.policy as TrajectorySpecInput['policy'],
    maxTurns: o.maxTurns,
    ...(o.stepsPerRun !== undefined ? { stepsPerRun: o.stepsPerRun } : {}),
    seed: o.seed,
    pool: o.pool,
    ...(o.model ? { model: o.model } : {}),
    ...(o.contextWindow !== undefined ? { contextWindow: o.contextWindow } : {}),
    ...(o.maxTokensPerTurn !== undefined ? { sampling: { maxTokensPerTurn: o.maxTokensPerTurn } } : {}),
    ...(o.date !== undefined ? { date: o.date } : {}),
  };
}

export function addParallelMuseOptions(cmd: Command): Command {
  return cmd
    .option('--n <n>', 'sampling budget per question', positiveIntArg('--n'), 8)
    .option('--m <m>', 'initial rollouts', positiveIntArg('--m'), 1)
    .option('--k <k>', 'branch steps per rollout', positiveIntArg('--k'), 2)
    .option('--t <t>', 'branches per step', positiveIntArg('--t'), 3)
    .option('--r <r>', 'branching rounds', positiveIntArg('--r'), 1)
    .option('--branch-mode <mode>', 'none | all_ppl | think_ppl | tool_call_ppl | mixed_ppl', 'tool_call_ppl')
    .option(
      '--aggregator <name>',
      'compressed | majority | confidence_weighted | min_uncertainty',
      'compressed',
    )
    .option('--aggregator-pool <pool>', 'pool for report and integration calls', idArg('--aggregator-pool'))
    .option(
      '--aggregator-model <model>',
      'model for report and integration calls',
      idArg('--aggregator-model'),
    )
    .option('--judge <method>', 'exact | llm', 'exact')
    .option(
      '--max-concurrent-rollouts <n>',
      'child workflows in flight per question',
      positiveIntArg('--max-concurrent-rollouts'),
      DEFAULT_MAX_CONCURRENT_ROLLOUTS,
    );
}

export function parallelMuseSpec(question: string, answer: string | undefined, o: ParallelMuseCliOptions) {
  return {
    n: o.n,
    m: o.m,
    k: o.k,
    t: o.t,
    r: o.r,
    branchMode: o.branchMode as never,
    primaryAggregator: o.aggregator as never,
    ...(o.aggregatorPool ? { aggregatorPool: o.aggregatorPool } : {}),
    ...(o.aggregatorModel ? { aggregatorModel: o.aggregatorModel } : {}),
    judge: o.judge as never,
    maxConcurrentRollouts: o.maxConcurrentRollouts,
    trajectory: trajectorySpecFrom(question, answer, o),
  };
}

export function summarizeQuestion(r: ParallelMuseResult): string {
  const a = r.accounting;
  const lines = [
    `  prediction : ${r.prediction ?? '(no answer)'}  [${r.aggregator}]`,
    ...(r.answer !== undefined
      ? [
          `  correct    : ${r.correct ?? `unscored (${r.judge?.error ?? 'no verdict'})`} (ground truth: ${r.answer})`,
        ]
      : []),
    `  rollouts   : ${r.rollouts.length} (${r.plan.initial} initial, ${r.plan.partial} partial, ${r.plan.scratch} from scratch; ${r.excluded.length} without answer)`,
    `  aggregators: ${Object.entries(r.outcomes)
      .map(([k, v]) => `${k}=${v.answer ?? '∅'}`)
      .join(', ')}`,
    `  tokens     : ${a.generatedTokens} generated, ${a.reusedTokens} reused (reuse factor ${a.reuseFactor.toFixed(2)}), ${a.toolCalls} tool calls (${a.reusedToolCalls} reused)`,
    `  model      : ${modelsLine(
      r.models,
      r.rollouts.reduce((n, ro) => n + ro.usage.llmCalls, 0) + a.aggregation.llmCalls,
    )}`,
  ];
  return lines.join('\n');
}

export async function runQuestionCommand(
  program: Command,
  question: string,
  o: ParallelMuseCliOptions & { answer?: string; id?: string; json?: boolean },
) {
  const cfg = cliConfig(program.opts());
  // Before connecting: a bad option is reported as such, not as an unreachable server.
  const spec = withSpecFlags(() => parseParallelMuseSpec(parallelMuseSpec(question, o.answer, o)));
  if (spec.judge === 'llm' && spec.trajectory.answer === undefined)
    throw new Error('--judge llm needs --answer: the judge compares the prediction with the ground truth');
  const client = await connectClient(cfg);
  try {
    const id = o.id ?? (await parallelMuseRunIdFor(client, spec));
    // On standard error with --json too: the id is how to find the run again.
    process.stderr.write(`ParallelMuse question ${id} (N=${o.n}, mode ${o.branchMode})…\n`);
    const { handle, reused } = await startParallelMuse(client, cfg, spec, { workflowId: id, jobId: id });
    if (reused)
      process.stderr.write(
        `  reusing run ${id}: it already ran (or is running) with this question and these options; change --seed for a new sample\n`,
      );
    const detach = noticeOnInterrupt('the question', id);
    const waiting = (why: string) => process.stderr.write(`  waiting: ${why}\n`);
    const quiet = sayIfNoWorker(client, cfg, waiting);
    const retries = sayIfStepsRetry(client, () => handle, waiting);
    const result = await followThroughOutages('the question', id, () => handle.result(), waiting).finally(
      () => {
        detach();
        return Promise.all([quiet(), retries()]);
      },
    );
    if (o.json) console.log(JSON.stringify({ ...result, reused }));
    else console.log(summarizeQuestion(result));
  } finally {
    await client.connection.close();
  }
}

export function registerBatchCommand(program: Command, addRunOptions: (c: Command) => Command): void {
  addParallelMuseOptions(addRunOptions(program.command('batch')))
    .argument(
      '<questions>',
      'JSONL file, one {"question", "answer"} per line (answers score the predictions)',
    )
    .requiredOption(
      '--out <file>',
      'JSONL results, one line per question (appended; re-runs with the same options skip finished questions)',
      idArg('--out'),
    )
    .option('--concurrency <n>', 'questions in flight', positiveIntArg('--concurrency'), 4)
    .option(
      '--job <id>',
      'job id (default: the one --out records, else derived from its path, so a re-run resumes the same job)',
      idArg('--job', MAX_RUN_ID_CHARS),
    )
    .description('run every question of a JSONL file through ParallelMuse; safe to re-run after a crash')
    .action(
      async (
        file: string,
        o: ParallelMuseCliOptions & { out: string; concurrency: number; job?: string },
      ) => {
        const cfg = cliConfig(program.opts());
        const { trajectory, ...rest } = parallelMuseSpec('', undefined, o);
        const { question: _q, ...trajectoryRest } = trajectory;
        const spec = { ...rest, trajectory: trajectoryRest };
        // A bad option or questions file fails here, before connecting: not reported as an unreachable server.
        withSpecFlags(() => sharedBatchSpec(spec));
        const questions = readBatchQuestions(file, o.out);
        if (questions.items.length === 0) {
          for (const b of questions.errors) process.stderr.write(`  bad input: ${b.error}\n`);
          throw new BatchError(`${file} holds no question to run`);
        }
        // Said now, not only at a normal end: an interrupted or failed batch would never mention them.
        for (const b of questions.errors) process.stderr.write(`  skipped bad input: ${b.error}\n`);
        const client = await connectClient(cfg);
        const bar = process.stderr.isTTY
          ? new cliProgress.SingleBar(
              {
                format: '  {bar} {value}/{total} questions, {running} running | {last}',
                stream: process.stderr,
              },
              cliProgress.Presets.shades_classic,
            )
          : undefined;
        let started = false;
        let jobId: string | undefined;
        let running = 0;
        // Under the bar, failures are told once the bar is gone: when the batch ends, however it ends.
        const failures: { line: number; error: string }[] = [];
        const tellFailures = () => {
          bar?.stop();
          for (const f of failures.splice(0))
            process.stderr.write(`  question on line ${f.line} failed: ${f.error}\n`);
        };
        // Ctrl-C: exit through process.exit, so the results file's lock is removed ('exit' handler).
        const interrupted = (signal: NodeJS.Signals) => {
          tellFailures();
          // The questions are workflows: they go on in Temporal whether or not this process waits for them.
          const inFlight =
            running > 0
              ? `; its ${running} questions under way go on in Temporal (job ${jobId}), and a re-run collects their results and continues`
              : '; re-run to continue';
          process.stderr.write(`muse: batch interrupted (${signal})${inFlight}\n`);
          exitAsSignal(signal);
        };
        process.once('SIGINT', interrupted);
        process.once('SIGTERM', interrupted);
        const waiting = (why: string) => process.stderr.write(`\n  waiting: ${why}\n`);
        const quiet = sayIfNoWorker(client, cfg, waiting);
        // The questions under way, oldest first: the oldest is watched for steps in retry (a pool nobody serves
        // holds every question alike).
        const underWay = new Set<string>();
        const retries = sayIfStepsRetry(
          client,
          () => {
            const oldest = underWay.values().next().value;
            return oldest === undefined ? undefined : client.workflow.getHandle(oldest);
          },
          waiting,
        );
        try {
          const summary = await runBatch(client, cfg, {
            input: file,
            output: o.out,
            ...(o.job !== undefined ? { jobId: o.job } : {}),
            concurrency: o.concurrency,
            spec,
            onStart: (e) => {
              jobId = e.jobId;
              process.stderr.write(`job ${e.jobId}: ${e.total} questions, results to ${o.out}\n`);
            },
            onOutage: (why) => process.stderr.write(`${bar ? '\n' : ''}  waiting: ${why}\n`),
            onProgress: (e) => {
              running = e.running;
              if (e.workflowId !== undefined) {
                if (e.event === 'started') underWay.add(e.workflowId);
                else underWay.delete(e.workflowId);
              }
              // Without a terminal, as it happens: a log read during a long batch (or one cut short) has the reasons.
              if (e.failure) {
                failures.push(e.failure);
                if (!bar) tellFailures();
              }
              if (bar && !started) {
                bar.start(e.total, 0, { last: '', running: 0 });
                started = true;
              }
              if (bar)
                bar.update(e.done, {
                  running: e.running,
                  ...(e.event === 'started' ? {} : { last: (e.last ?? '').slice(0, 40) }),
                });
              // Without a terminal, a line per question that ends (starts would double the log; a re-run's finished
              // questions, found one after another, are counted in the next line instead of a line each).
              else if (e.event === 'completed' || e.event === 'failed')
                process.stderr.write(
                  `  ${e.done}/${e.total} questions${e.skipped ? ` (${e.skipped} already done)` : ''}${e.failed ? ` (${e.failed} failed)` : ''}\n`,
                );
            },
          });
          tellFailures();
          console.log(
            `job ${summary.jobId}: ${summary.completed} completed, ${summary.skipped} already done, ${summary.failed.length} failed, ${summary.badLines.length} bad lines` +
              (summary.scored
                ? `; accuracy ${summary.correct}/${summary.scored}${summary.failed.length ? ' (failed questions are not in it)' : ''}`
                : '') +
              (summary.unscored
                ? ` (${summary.unscored} unscored: the judge gave no verdict, or the aggregator's calls failed; each result's judge.error says which)`
                : ''),
          );
          if (summary.models.length) console.log(`  generated by: ${summary.models.join(', ')}`);
          for (const c of summary.answerChanged)
            process.stderr.write(
              `  question on line ${c.line} ${c.judgedAgainst === null ? 'ran without an answer' : `was judged against the answer ${JSON.stringify(c.judgedAgainst)}`}, ` +
                `not ${JSON.stringify(c.now)}: left out of the accuracy (a new --out, and a new --job if you pass one, runs it again)\n`,
            );
          if (summary.badLines.length)
            process.stderr.write(
              `  ${summary.badLines.length} bad line(s) in ${file} did not run: fix them and re-run (finished questions are not redone)\n`,
            );
          if (summary.failed.length || summary.badLines.length) process.exitCode = 1;
        } finally {
          await Promise.all([quiet(), retries()]);
          // Cut short (the outage limit, a results file it cannot write): the reasons are still told.
          tellFailures();
          process.off('SIGINT', interrupted);
          process.off('SIGTERM', interrupted);
          await client.connection.close();
        }
      },
    );
}
