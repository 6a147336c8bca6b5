// Process commands: the local stack (up/down), rollout workers and pool members.
import type { NatsConnection } from '@nats-io/nats-core';
import type { Command } from 'commander';
import type { z } from 'zod';
import { type MuseConfig, readNamedFile } from '../common/config.js';
import { causeChainMessage } from '../common/errors.js';
import { trackDowntime } from '../common/nats.js';
import { BackendSpecSchema } from '../inference/backends/index.js';
import { MAX_DRAIN_MS } from '../inference/wire.js';
import { down, namespaceRetentionMs, stackStatus, up } from '../infra/services.js';
import { startPoolMember } from '../workers/pool-member.js';
import { createRolloutWorker } from '../workers/rollout-worker.js';
import { numberArg, portArg, positiveIntArg, secondsArg } from './args.js';
import { cliConfig } from './context.js';

// The pool member's backend fields by the flags that set them, so errors name what the user typed.
const BACKEND_FLAGS: Record<string, string> = {
  baseUrl: '--base-url',
  model: '--model',
  apiKey: '--api-key',
  mode: '--mode',
  maxBatch: '--max-batch',
  timeScale: '--time-scale',
  cacheCapacityTokens: '--cache-tokens',
  maxModelLen: '--max-model-len',
  promptTokenIds: '--token-ids',
  inputIds: '--token-ids',
  tokenizeUrl: '--tokenize-url',
  chatTemplate: '--chat-template',
  seedParam: '--seed-param',
  extraBody: '--extra-body',
  logprobs: '--logprobs',
};

/** A JSON option's value, or an error naming the option. */
function jsonOption(flag: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${flag} is not valid JSON: ${(err as Error).message}`);
  }
}

function backendOptionsError(kind: string, given: object, err: z.ZodError): string {
  const problems = err.issues.map((i) => {
    const field = String(i.path[0] ?? '');
    const flag = BACKEND_FLAGS[field] ?? field;
    return (given as Record<string, unknown>)[field] === undefined
      ? `${flag} is required`
      : `${flag}: ${i.message}`;
  });
  return `pool serve --backend ${kind}: ${problems.join('; ')}`;
}

/** The checks of a real server's GET /health (the simulator has none). */
const HEALTH_OPTIONS = ['healthInterval', 'healthTimeout', 'healthFailures'] as const;

/** How long `pool serve`, told to stop while it starts, waits for the start to end before it exits anyway. */
const STOP_WHILE_STARTING_MS = 5000;

/** The `pool serve` options each backend takes beyond the common ones (--backend, --pool, --id, --capacity). */
const BACKEND_OPTIONS: Record<string, readonly string[]> = {
  sim: ['model', 'timeScale', 'maxBatch', 'cacheTokens', 'maxModelLen'],
  openai: [
    'model',
    'baseUrl',
    'apiKey',
    'mode',
    'maxBatch',
    'cacheTokens',
    'tokenIds',
    'tokenizeUrl',
    'chatTemplate',
    'extraBody',
    'logprobs',
    ...HEALTH_OPTIONS,
  ],
  sglang: [
    'model',
    'baseUrl',
    'apiKey',
    'maxBatch',
    'cacheTokens',
    'tokenIds',
    'chatTemplate',
    'seedParam',
    'extraBody',
    'logprobs',
    ...HEALTH_OPTIONS,
  ],
};
const COMMON_OPTIONS = ['backend', 'pool', 'id', 'capacity', 'drainTimeout'];

/** An option given on the command line that the chosen backend would not use is an error, not silently dropped. */
function refuseInapplicableOptions(cmd: Command, backend: string): void {
  const takes = BACKEND_OPTIONS[backend];
  if (!takes) return; // an unknown backend is reported by name below
  const unused = cmd.options
    .map((opt) => ({ flag: opt.long!, key: opt.attributeName() }))
    .filter(
      ({ key }) =>
        cmd.getOptionValueSource(key) === 'cli' && !COMMON_OPTIONS.includes(key) && !takes.includes(key),
    )
    .map(({ flag }) => flag);
  if (unused.length)
    throw new Error(
      `pool serve --backend ${backend}: ${unused.join(', ')} ${unused.length === 1 ? 'does' : 'do'} not apply to this backend`,
    );
}

/**
 * Where the configuration names other servers than those `muse up` runs: later commands would connect there, and
 * fail as if the stack were down.
 */
export function elsewhere(
  cfg: Pick<MuseConfig, 'temporal' | 'nats'>,
  stack: { temporalAddress: string; natsUrl: string },
): string[] {
  const notes: string[] = [];
  if (cfg.temporal.address !== stack.temporalAddress)
    notes.push(
      `the configuration (config file or MUSE_TEMPORAL_ADDRESS) names Temporal at ${cfg.temporal.address}, not ` +
        `${stack.temporalAddress} where this stack runs; later commands connect to ${cfg.temporal.address}`,
    );
  if (cfg.nats.url !== stack.natsUrl)
    notes.push(
      `the configuration (config file or MUSE_NATS_URL) names NATS at ${cfg.nats.url}, not ${stack.natsUrl} ` +
        `where this stack runs; later commands connect to ${cfg.nats.url}`,
    );
  return notes;
}

/**
 * Says on standard error when a long-running process loses its NATS connection and when it has it back: otherwise an
 * outage of NATS leaves every log silent while the work waits.
 */
export function tellNatsConnection(nc: NatsConnection, url: string, meanwhile: string): void {
  trackDowntime(nc, (down, downForMs) =>
    console.error(
      down
        ? `NATS connection to ${url} lost; reconnecting (${meanwhile})`
        : `NATS connection to ${url} back after ${(downForMs / 1000).toFixed(1)} s`,
    ),
  );
}

export function registerServiceCommands(program: Command): void {
  program
    .command('up')
    .description(
      'start a local Temporal dev server and nats-server (JetStream) in the background; idempotent',
    )
    .option('--temporal-port <port>', 'Temporal frontend port', portArg('--temporal-port'))
    .option('--nats-port <port>', 'NATS client port', portArg('--nats-port'))
    .action(async (o) => {
      const cfg = cliConfig(program.opts());
      const r = await up({
        dataDir: cfg.dataDir,
        temporalPort: o.temporalPort,
        natsPort: o.natsPort,
        namespace: cfg.temporal.namespace,
        retentionMs: namespaceRetentionMs(cfg.store.ttlMs),
        onWaiting: (m) => console.error(m),
      });
      for (const m of r.messages) console.log(m);
      // What later commands will connect to: a config file or MUSE_* variable beats the stack's addresses.
      for (const m of elsewhere(cliConfig(program.opts()), r)) console.error(`muse up: ${m}`);
    });

  program
    .command('down')
    .description('stop the local Temporal and NATS servers started by `muse up`; idempotent')
    .action(async () => {
      const cfg = cliConfig(program.opts());
      const r = await down({ dataDir: cfg.dataDir, onWaiting: (m) => console.error(m) });
      for (const m of r.messages) console.log(m);
    });

  program
    .command('stack')
    .description('show whether the local stack is running')
    .action(async () => {
      const cfg = cliConfig(program.opts());
      console.log(JSON.stringify(await stackStatus({ dataDir: cfg.dataDir }), null, 2));
    });

  program
    .command('worker')
    .description('run a rollout worker (trajectory and ParallelMuse workflows and their activities)')
    .option('--concurrency <n>', 'concurrent activity executions', positiveIntArg('--concurrency'), 256)
    .action(async (o) => {
      const cfg = cliConfig(program.opts());
      const w = await createRolloutWorker({ config: cfg, maxConcurrentActivities: o.concurrency });
      console.error(
        `rollout worker on task queue '${cfg.temporal.taskQueue}' (Temporal ${cfg.temporal.address}, NATS ${cfg.nats.url})`,
      );
      tellNatsConnection(w.nc, cfg.nats.url, 'model calls wait for it, their steps still running');
      // A shutdown that fails (a connection that will not close) fails the run it waits on: reported once, where
      // run() ends, not again here as an unhandled rejection's stack trace.
      const stop = () => void w.shutdown().catch(() => {});
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      await w.run();
    });

  const pool = program.command('pool').description('inference pools');
  pool
    .command('serve')
    .description('serve one inference backend as a member of a pool over NATS')
    .requiredOption('--backend <kind>', 'sim | openai | sglang')
    .option('--pool <name>', 'pool name', 'default')
    .option('--id <id>', 'member id (default: random)')
    .option('--model <name>', 'model name (openai: required)')
    .option('--base-url <url>', 'server URL (openai: …/v1; sglang: server root)')
    .option('--api-key <key>', 'API key (also MUSE_API_KEY)')
    .option('--mode <mode>', 'openai: chat | completions', 'chat')
    .option(
      '--capacity <n>',
      'concurrent requests before queueing (default: the batch limit)',
      positiveIntArg('--capacity'),
    )
    .option(
      '--time-scale <x>',
      'sim: serving-time multiplier (0 = no waiting, 1 = real time)',
      numberArg('--time-scale'),
      0,
    )
    .option(
      '--max-batch <n>',
      'sim/openai/sglang: the server batch limit (default 64 for sim, 256 otherwise)',
      positiveIntArg('--max-batch'),
    )
    .option(
      '--cache-tokens <n>',
      "the server's KV cache in tokens, announced so routers know how much of a prompt it can hold",
      positiveIntArg('--cache-tokens'),
    )
    .option(
      '--max-model-len <n>',
      'sim: context length (prompt + completion) past which the simulated server refuses a request (default 131072)',
      positiveIntArg('--max-model-len'),
    )
    .option(
      '--token-ids',
      "openai (completions) / sglang: send the prompt as token ids from the server's /tokenize",
    )
    .option('--tokenize-url <url>', 'openai: where /tokenize is (default: beside /v1)')
    .option(
      '--chat-template <file>',
      'openai (completions) / sglang: JSON file {"prefix"?, "message": "…{role}…{content}…", "generationPrompt"} (default ChatML)',
    )
    .option(
      '--seed-param <name>',
      "sglang: the seed's name in sampling_params (default sampling_seed), or 'none' to leave it out",
    )
    .option('--extra-body <json>', 'openai / sglang: JSON object merged into every request body')
    .option(
      '--logprobs <kind>',
      "openai / sglang: the server's logprobs are raw (the model's: vLLM's default) or processed (after temperature: SGLang's default); default raw for openai, processed for sglang",
    )
    .option(
      '--drain-timeout <s>',
      'on SIGTERM/SIGINT: seconds to wait for requests in hand before giving the rest up (routers wait as long)',
      secondsArg('--drain-timeout', { zeroAllowed: true, max: MAX_DRAIN_MS / 1000 }),
      10,
    )
    .option(
      '--health-interval <s>',
      "openai / sglang: seconds between checks of the server's GET /health (0: no checks)",
      secondsArg('--health-interval', { zeroAllowed: true }),
      5,
    )
    .option(
      '--health-timeout <s>',
      'openai / sglang: seconds each check may take',
      secondsArg('--health-timeout'),
      5,
    )
    .option(
      '--health-failures <n>',
      'openai / sglang: failed checks in a row that take the member out of rotation until one passes',
      positiveIntArg('--health-failures'),
      3,
    )
    .action(async (o, cmd: Command) => {
      const cfg = cliConfig(program.opts());
      refuseInapplicableOptions(cmd, o.backend);
      const apiKey = o.apiKey ?? process.env.MUSE_API_KEY;
      const http = {
        baseUrl: o.baseUrl,
        apiKey,
        maxBatch: o.maxBatch,
        ...(o.cacheTokens !== undefined ? { cacheCapacityTokens: o.cacheTokens } : {}),
        ...(o.extraBody !== undefined ? { extraBody: jsonOption('--extra-body', o.extraBody) } : {}),
        ...(o.logprobs !== undefined ? { logprobs: o.logprobs } : {}),
      };
      const chatTemplate =
        o.chatTemplate === undefined
          ? {}
          : {
              chatTemplate: jsonOption(
                '--chat-template',
                readNamedFile('--chat-template', o.chatTemplate).toString('utf8'),
              ),
            };
      const backend =
        o.backend === 'sim'
          ? {
              backend: 'sim' as const,
              timeScale: o.timeScale,
              ...(o.model ? { model: o.model } : {}),
              ...(o.maxBatch ? { maxBatch: o.maxBatch } : {}),
              ...(o.cacheTokens !== undefined ? { cacheCapacityTokens: o.cacheTokens } : {}),
              ...(o.maxModelLen !== undefined ? { maxModelLen: o.maxModelLen } : {}),
            }
          : o.backend === 'openai'
            ? {
                backend: 'openai' as const,
                ...http,
                model: o.model,
                mode: o.mode,
                ...chatTemplate,
                ...(o.tokenIds ? { promptTokenIds: true } : {}),
                ...(o.tokenizeUrl !== undefined ? { tokenizeUrl: o.tokenizeUrl } : {}),
              }
            : o.backend === 'sglang'
              ? {
                  backend: 'sglang' as const,
                  ...http,
                  model: o.model,
                  ...chatTemplate,
                  ...(o.tokenIds ? { inputIds: true } : {}),
                  ...(o.seedParam !== undefined
                    ? { seedParam: o.seedParam === 'none' ? null : o.seedParam }
                    : {}),
                }
              : undefined;
      if (!backend) throw new Error(`unknown backend '${o.backend}' (expected sim, openai or sglang)`);
      const checked = BackendSpecSchema.safeParse(backend);
      if (!checked.success) throw new Error(backendOptionsError(o.backend, backend, checked.error));
      // Handled from before the member starts: as a container's first process, node ignores a signal it has no
      // handler for, and a member told to stop while connecting would join the pool and serve until it is killed.
      let m: Awaited<ReturnType<typeof startPoolMember>> | undefined;
      let stopWhenStarted: NodeJS.Timeout | undefined;
      const stoppedWhileStarting = () => {
        console.error('muse pool serve: stopped before the member started serving');
        process.exit(0);
      };
      const stop = async () => {
        if (!m) {
          // Stopped once started (its queue-group subscription may be taking requests already), or at once if the
          // start does not end soon (a server that cannot be reached).
          stopWhenStarted ??= setTimeout(stoppedWhileStarting, STOP_WHILE_STARTING_MS);
          return;
        }
        try {
          await m.stop();
          process.exit(0);
        } catch (err) {
          console.error(`muse pool serve: stopping: ${causeChainMessage(err)}`);
          process.exit(1);
        }
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      const starting = startPoolMember({
        config: cfg,
        pool: o.pool,
        backend: checked.data,
        id: o.id,
        capacity: o.capacity,
        drainTimeoutMs: o.drainTimeout * 1000,
        healthCheck: {
          intervalMs: o.healthInterval * 1000,
          timeoutMs: o.healthTimeout * 1000,
          failures: o.healthFailures,
        },
        onHealthChange: (healthy, why) =>
          console.error(healthy ? why : `${why}; out of rotation until a check passes`),
        onIdShared: (other) =>
          console.error(
            `warning: another live process (instance ${other}) serves member id '${m?.member.id ?? o.id}' in pool ` +
              `'${o.pool}': both run every request sent to it, and routers fail its work over each time they hear the other; ` +
              'fine while a replacement takes over, otherwise give each member its own --id',
          ),
      });
      try {
        m = await starting;
      } catch (err) {
        // A start that failed after it was told to stop (the connection given up): stopped, as asked.
        if (stopWhenStarted) stoppedWhileStarting();
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        throw err;
      }
      if (stopWhenStarted) {
        clearTimeout(stopWhenStarted);
        return stop();
      }
      console.error(
        `pool member ${m.member.id} serving pool '${o.pool}' with backend ${o.backend} on ${cfg.nats.url}`,
      );
      tellNatsConnection(m.nc, cfg.nats.url, 'routers cannot reach this member meanwhile');
    });
}
