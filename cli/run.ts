// Commands that run work: a single trajectory, its status, and the end-to-end demo.
import type { Client, WorkflowHandle } from '@temporalio/client';
import { type Command, InvalidArgumentError } from 'commander';
import { exactMatch } from '../agent/aggregate.js';
import { followThroughOutages } from '../client/outages.js';
import {
  failureMessage,
  followTrajectory,
  parseTrajectorySpec,
  queryProgressWithin,
  sayIfStepsRetry,
  startTrajectory,
  stepsInRetry,
} from '../client/trajectories.js';
import type { MuseConfig } from '../common/config.js';
import { exitAsSignal } from '../common/signals.js';
import { initTelemetry, shutdownTelemetry } from '../common/telemetry.js';
import { connectClient, withCallSignal } from '../common/temporal.js';
import { down, namespaceRetentionMs, up } from '../infra/services.js';
import { sampleQuestions } from '../sim/world.js';
import { startPoolMember } from '../workers/pool-member.js';
import { createRolloutWorker } from '../workers/rollout-worker.js';
import { idArg, intArg, MAX_RUN_ID_CHARS, portArg, positiveIntArg, withSpecFlags } from './args.js';
import {
  addParallelMuseOptions,
  type ParallelMuseCliOptions,
  registerBatchCommand,
  runQuestionCommand,
  trajectorySpecFrom,
} from './batch.js';
import { cliConfig } from './context.js';
import {
  noticeOnInterrupt,
  progressBar,
  statusResult,
  summarizeTrajectory,
  trajectoryJson,
} from './render.js';

/** How long `muse status` waits for a worker to answer the progress query. */
const STATUS_QUERY_MS = 5_000;

/**
 * What `muse status` and `muse cancel` print: a running workflow's progress (a trajectory's) and steps in retry (a
 * question's rollouts included), or an ended one's result or why it has none (failed, terminated, cancelled).
 */
async function workflowStatus(client: Client, handle: WorkflowHandle): Promise<Record<string, unknown>> {
  const desc = await handle.describe();
  const base = { id: handle.workflowId, type: desc.type, status: desc.status.name, runId: desc.runId };
  if (desc.status.name === 'RUNNING') {
    const retrying = await stepsInRetry(client, desc);
    // Only a trajectory answers the progress query; a question shows its rollouts' steps in retry.
    const progress =
      desc.type === 'trajectory' ? await queryProgressWithin(handle, STATUS_QUERY_MS) : undefined;
    return {
      ...base,
      ...(progress && 'unanswered' in progress
        ? { progress: null, unanswered: `${progress.unanswered} (task queue ${desc.taskQueue})` }
        : { progress: progress?.progress }),
      ...(retrying.length > 0 ? { retrying } : {}),
    };
  }
  const ended = await handle.result().then(
    (r) => ({ result: statusResult(desc.type, r, handle.workflowId) }),
    (err: Error) => ({ error: failureMessage(err) }),
  );
  return { ...base, ...ended };
}

interface RunOptions {
  policy: string;
  maxTurns: number;
  stepsPerRun?: number;
  maxTokensPerTurn?: number;
  seed: number;
  pool: string;
  model?: string;
  answer?: string;
  id?: string;
  json?: boolean;
  contextWindow?: number;
}

async function runOne(cfg: MuseConfig, question: string, o: RunOptions): Promise<void> {
  // Before connecting: a bad option is reported as such, not as an unreachable server.
  const spec = withSpecFlags(() => parseTrajectorySpec(trajectorySpecFrom(question, o.answer, o)));
  const client = await connectClient(cfg);
  // Closed on every way out: a failed start or follow would otherwise leave its channel open until exit.
  try {
    const handle = await startTrajectory(client, cfg, spec, { workflowId: o.id });
    // On standard error with --json too: the id is how to find the run again.
    process.stderr.write(`trajectory ${handle.workflowId} started (policy ${spec.policy ?? 'react'})\n`);
    const bar = o.json ? undefined : progressBar(o.maxTurns);
    const detach = noticeOnInterrupt('the trajectory', handle.workflowId);
    // Below the bar's line on a terminal.
    const waiting = (why: string) =>
      process.stderr.write(`${bar && process.stderr.isTTY ? '\n' : ''}  waiting: ${why}\n`);
    const retries = sayIfStepsRetry(client, () => handle, waiting);
    // Told once for the whole run, however often an outage has it followed again.
    const told = { noWorker: false, failing: false };
    const result = await followThroughOutages(
      'the trajectory',
      handle.workflowId,
      () => followTrajectory(handle, (p) => bar?.update(p), { onUnanswered: waiting, told }),
      waiting,
    ).finally(() => {
      bar?.stop();
      detach();
      return retries();
    });
    const correct = o.answer !== undefined ? exactMatch(result.prediction, o.answer) : undefined;
    if (o.json) {
      console.log(
        JSON.stringify({
          ...trajectoryJson({ ...result, ...(o.answer !== undefined ? { answer: o.answer, correct } : {}) }),
        }),
      );
    } else {
      console.log(summarizeTrajectory(result));
      if (o.answer !== undefined) console.log(`  correct    : ${correct} (ground truth: ${o.answer})`);
    }
    // A trajectory that ended in error (the server refusing the model, a bad request) or was cancelled is not a
    // success to scripts.
    if (result.termination === 'error' || result.termination === 'cancelled') process.exitCode = 1;
  } finally {
    await client.connection.close();
  }
}

function addRunOptions(cmd: Command): Command {
  return cmd
    .option('--policy <policy>', 'context policy: react | iterresearch | resum', 'react')
    .option('--max-turns <n>', 'turn budget', positiveIntArg('--max-turns'), 64)
    .option(
      '--steps-per-run <n>',
      'steps per Temporal workflow run before it continues as new (default 200; fewer keep each history smaller)',
      positiveIntArg('--steps-per-run'),
    )
    .option(
      '--context-window <tokens>',
      'model context window (default 131072, at least 512)',
      positiveIntArg('--context-window'),
    )
    .option(
      '--max-tokens-per-turn <n>',
      'tokens one model turn may generate (default 4096; must be below --context-window)',
      positiveIntArg('--max-tokens-per-turn'),
    )
    .option('--seed <n>', 'sampling seed', intArg('--seed'), 0)
    .option('--date <YYYY-MM-DD>', 'the date the model is told is today (default: none in the prompt)')
    .option('--pool <name>', 'inference pool', idArg('--pool'), 'default')
    .option('--model <name>', 'model name sent to the pool', idArg('--model'));
}

export function registerRunCommands(program: Command): void {
  addRunOptions(program.command('run').argument('<question>', 'the question to research'))
    .description('run one trajectory durably, show live progress, print the answer')
    .option('--answer <text>', 'ground truth, to score the prediction')
    .option(
      '--id <workflowId>',
      'workflow id (default: random; parallel-muse: derived from the question and options, so the same command reuses its run)',
      idArg('--id', MAX_RUN_ID_CHARS),
    )
    .option('--json', 'print one JSON object (prediction, termination, steps, usage)')
    .option('--mode <mode>', 'trajectory | parallel-muse', 'trajectory');
  const run = program.commands.find((c) => c.name() === 'run')!;
  const trajectoryOptions = new Set(run.options.map((opt) => opt.attributeName()));
  addParallelMuseOptions(run).action(
    async (question: string, o: RunOptions & ParallelMuseCliOptions & { mode: string }) => {
      if (o.mode === 'parallel-muse') return runQuestionCommand(program, question, o);
      if (o.mode !== 'trajectory')
        throw new Error(`unknown --mode '${o.mode}' (expected trajectory or parallel-muse)`);
      // A ParallelMuse option given for one trajectory would be ignored without a word.
      const ignored = run.options
        .filter((opt) => !trajectoryOptions.has(opt.attributeName()))
        .filter((opt) => run.getOptionValueSource(opt.attributeName()) === 'cli')
        .map((opt) => opt.long);
      if (ignored.length > 0)
        throw new Error(
          `${ignored.join(', ')} only ${ignored.length === 1 ? 'applies' : 'apply'} with --mode parallel-muse`,
        );
      await runOne(cliConfig(program.opts()), question, o);
    },
  );
  registerBatchCommand(program, addRunOptions);

  program
    .command('status')
    .argument('<id>', 'workflow id', idArg('<id>'))
    .description(
      "show a running trajectory's progress and any workflow's steps in retry (a question's rollouts included), or the result once it has ended",
    )
    .action(async (id: string) => {
      const client = await connectClient(cliConfig(program.opts()));
      try {
        console.log(JSON.stringify(await workflowStatus(client, client.workflow.getHandle(id)), null, 2));
      } finally {
        await client.connection.close();
      }
    });

  program
    .command('cancel')
    .argument('<id>', 'workflow id of a trajectory or a ParallelMuse question', idArg('<id>'))
    .option(
      '--wait <seconds>',
      'how long to wait for it to end before printing its status (0: do not wait; at most 3600)',
      (v: string) => {
        const n = intArg('--wait')(v);
        if (n < 0 || n > 3600) throw new InvalidArgumentError(`--wait must be 0 to 3600 seconds, got '${v}'`);
        return n;
      },
      30,
    )
    .description(
      'cancel a running trajectory or question: a trajectory ends with what it has, a question ends cancelled once its rollouts have (each keeping its steps); its status is printed',
    )
    .action(async (id: string, o: { wait: number }) => {
      const client = await connectClient(cliConfig(program.opts()));
      try {
        const handle = client.workflow.getHandle(id);
        const { type, status } = await handle.describe();
        // Ended before the request reached it, or between describe and cancel: nothing was cancelled.
        const requested =
          status.name === 'RUNNING' &&
          (await handle.cancel().then(
            () => true,
            async (err: unknown) => {
              if ((await handle.describe()).status.name !== 'RUNNING') return false;
              throw err;
            },
          ));
        if (!requested) {
          process.stderr.write(`${type} ${id} has already ended; nothing to cancel\n`);
        } else {
          process.stderr.write(`cancellation of ${type} ${id} requested\n`);
          // A worker carries the cancellation out; with none running, the workflow waits for one. The wait's long
          // poll is aborted when it is over, so it does not hold the process open.
          const waiting = new AbortController();
          const timer = setTimeout(() => waiting.abort(), o.wait * 1000);
          await withCallSignal(client, waiting.signal, () => handle.result())
            .catch(() => undefined)
            .finally(() => clearTimeout(timer));
        }
        const shown = await workflowStatus(client, handle);
        if (requested && o.wait > 0 && shown.status === 'RUNNING')
          process.stderr.write(
            `${id} has not ended within ${o.wait} s: a worker ends it at its next step (is one running?)\n`,
          );
        console.log(JSON.stringify(shown, null, 2));
      } finally {
        await client.connection.close();
      }
    });

  program
    .command('demo')
    .description(
      'start the embedded default (Temporal + NATS + simulated pool + worker) and run one sample question',
    )
    .option('--policy <policy>', 'context policy', 'react')
    .option('--keep-running', 'leave the local Temporal and NATS servers running afterwards')
    .option(
      '--temporal-port <port>',
      'Temporal frontend port (when 7233 is taken)',
      portArg('--temporal-port'),
    )
    .option('--nats-port <port>', 'NATS client port (when 4222 is taken)', portArg('--nats-port'))
    .action(
      async (o: { policy: string; keepRunning?: boolean; temporalPort?: number; natsPort?: number }) => {
        const cfg = cliConfig(program.opts());
        console.log('Muse demo: one deep-research trajectory on the embedded default.');
        console.log(
          'The inference pool here is the built-in SIMULATOR (synthetic model + synthetic web), not a real model.\n',
        );
        const stack = await up({
          dataDir: cfg.dataDir,
          temporalPort: o.temporalPort,
          natsPort: o.natsPort,
          namespace: cfg.temporal.namespace,
          retentionMs: namespaceRetentionMs(cfg.store.ttlMs),
          // Its own to stop when done, unless told to keep them.
          temporary: !o.keepRunning,
          onWaiting: (m) => console.log(`  ${m}`),
        });
        for (const m of stack.messages) console.log(`  ${m}`);
        // The servers run detached, so Ctrl-C does not reach them: stopping them is this command's job, on every
        // way out (an answer, a failure while starting the pool or worker, an interrupt).
        const stopServers = async () => {
          if (o.keepRunning || stack.alreadyRunning) return;
          // Only what it started (marked as its own): a server that was already running, or one another session has
          // taken over since, stays up.
          const d = await down({ dataDir: cfg.dataDir, temporaryFor: process.pid });
          for (const m of d.messages) console.log(`  ${m}`);
        };
        const interrupted = (signal: NodeJS.Signals) => {
          process.stderr.write(`\nmuse demo: interrupted (${signal}); stopping the servers it started\n`);
          void stopServers().finally(() => exitAsSignal(signal));
        };
        process.once('SIGINT', interrupted);
        process.once('SIGTERM', interrupted);
        try {
          const live = cliConfig(program.opts());
          // One process plays every part here: its spans are the demo's, not the first component's to start.
          initTelemetry(live, 'demo');
          const member = await startPoolMember({
            config: live,
            pool: 'default',
            backend: { backend: 'sim', timeScale: 0.02 },
          });
          try {
            const worker = await createRolloutWorker({ config: live });
            const running = worker.run();
            // A worker that fails (its server connection lost past the SDK's retries) ends the demo with its error,
            // and the servers are stopped: not an unhandled rejection, nor a question waiting for no worker.
            const workerEnded = running.then(() => {
              throw new Error('the rollout worker stopped before the question finished');
            });
            workerEnded.catch(() => {});
            const [sample] = sampleQuestions(1, 7);
            console.log(`\nQuestion: ${sample!.question}\n`);
            try {
              await Promise.race([
                runOne(live, sample!.question, {
                  policy: o.policy,
                  maxTurns: 32,
                  seed: 0,
                  pool: 'default',
                  answer: sample!.answer,
                }),
                workerEnded,
              ]);
            } finally {
              await worker.shutdown();
              await running;
            }
          } finally {
            await member.stop();
            await shutdownTelemetry();
          }
        } finally {
          process.off('SIGINT', interrupted);
          process.off('SIGTERM', interrupted);
          await stopServers();
        }
        console.log(
          '\nNext: `muse up`, `muse pool serve --backend sim`, `muse worker`, `muse run "<question>"` (see README).',
        );
      },
    );
}
