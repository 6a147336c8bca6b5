// The rollout worker: runs trajectory and ParallelMuse workflows and their activities, reaching inference
// pools over NATS. Any number can run against one task queue; a killed one loses nothing.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/nats-core';
import { ExportResultCode } from '@opentelemetry/core';
import { SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import {
  makeWorkflowExporter,
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
} from '@temporalio/interceptors-opentelemetry';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { attemptInterceptor, type WaitingDetails } from '../activities/heartbeat.js';
import { type ActivityDeps, createActivities } from '../activities/index.js';
import { BlobStore } from '../common/blob-store.js';
import type { MuseConfig } from '../common/config.js';
import { replaceFileSync } from '../common/files.js';
import { closeNats, connectNats, trackDowntime } from '../common/nats.js';
import { initTelemetry, telemetryResource } from '../common/telemetry.js';
import {
  otelWorkflowInterceptorsPath,
  payloadConverterPath,
  temporalConnectionOptions,
} from '../common/temporal.js';
import type { PoolClient } from '../inference/pool-client.js';
import { createToolRegistry, type ToolRegistry } from '../tools/registry.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const workflowsPath = join(root, 'workflows', 'index.ts');

/**
 * Workflow code is bundled once per version and cached: worker start-up stays fast. The version is the bundled
 * sources plus the lockfile, which pins the SDK and every other package the bundle takes in.
 */
export async function workflowBundle(cacheDir: string): Promise<{ code: string }> {
  const hash = createHash('sha256');
  for (const dir of ['workflows', 'agent', 'common']) {
    for (const f of readdirSync(join(root, dir)).sort()) {
      const p = join(root, dir, f);
      if (statSync(p).isFile()) hash.update(f).update(readFileSync(p));
    }
  }
  const lockfile = join(root, 'package-lock.json');
  if (existsSync(lockfile)) hash.update('package-lock.json').update(readFileSync(lockfile));
  // The bundle options below (interceptor modules, payload converter) are part of the version too.
  hash.update('rollout-worker.ts').update(readFileSync(fileURLToPath(import.meta.url)));
  const file = join(cacheDir, `workflow-bundle-${hash.digest('hex').slice(0, 16)}.js`);
  if (existsSync(file)) return { code: readFileSync(file, 'utf8') };
  const { code } = await bundleWorkflowCode({
    workflowsPath,
    payloadConverterPath,
    workflowInterceptorModules: [otelWorkflowInterceptorsPath],
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error },
  });
  // Written aside and renamed: a worker starting beside this one reads the whole bundle or none.
  try {
    mkdirSync(cacheDir, { recursive: true });
    replaceFileSync(file, code);
  } catch (err) {
    // The cache only saves the next start a bundling; this worker has its code.
    console.warn(`muse worker: cannot cache the workflow bundle in ${cacheDir}: ${(err as Error).message}`);
  }
  return { code };
}

/** How long the worker's NATS connection is down before its steps' heartbeats say so: a blip is not worth telling. */
const NATS_DOWN_TOLD_MS = 5_000;

const noopExporter: SpanExporter = {
  export: (_spans, done) => done({ code: ExportResultCode.SUCCESS }),
  shutdown: async () => {},
};

export interface RolloutWorkerOptions {
  config: MuseConfig;
  /** Concurrent activity executions (model calls mostly wait on the pool). */
  maxConcurrentActivities?: number;
  maxConcurrentWorkflowTasks?: number;
  identity?: string;
  onModelCall?: ActivityDeps['onModelCall'];
  onToolCall?: ActivityDeps['onToolCall'];
  /** The tools trajectories may call (default: the simulated web's search and fetch). */
  tools?: ToolRegistry;
  nc?: NatsConnection;
}

export interface RolloutWorker {
  worker: Worker;
  nc: NatsConnection;
  run(): Promise<void>;
  shutdown(): Promise<void>;
}

let runtimeInstalled = false;

const SDK_LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'] as const;

/** MUSE_LOG_LEVEL: the Temporal SDK's log level (default WARN), in either case; anything else is an error. */
export function sdkLogLevel(value: string | undefined): (typeof SDK_LOG_LEVELS)[number] {
  if (value === undefined || value === '') return 'WARN';
  const level = value.toUpperCase() as (typeof SDK_LOG_LEVELS)[number];
  if (!SDK_LOG_LEVELS.includes(level))
    throw new Error(`MUSE_LOG_LEVEL must be one of ${SDK_LOG_LEVELS.join(', ')}, got '${value}'`);
  return level;
}

export async function createRolloutWorker(opts: RolloutWorkerOptions): Promise<RolloutWorker> {
  const { config } = opts;
  if (!runtimeInstalled) {
    const level = sdkLogLevel(process.env.MUSE_LOG_LEVEL);
    runtimeInstalled = true;
    try {
      // The SDK's state-change chatter would drown the CLI's own progress output.
      Runtime.install({ logger: new DefaultLogger(level) });
    } catch {
      // Already installed by the embedding process.
    }
  }
  const exporter = initTelemetry(config, 'worker') ?? noopExporter;
  // Read first: a wrong certificate path is reported before anything is connected.
  const connectionOptions = temporalConnectionOptions(config);
  const nc = opts.nc ?? (await connectNats(config, 'muse-rollout-worker'));
  const blobs = new BlobStore(nc, { ttlMs: config.store.ttlMs, replicas: config.store.replicas });
  try {
    await blobs.checkSettings();
  } catch (err) {
    blobs.close();
    if (!opts.nc) await nc.close();
    throw err;
  }
  const pools = new Map<string, PoolClient>();
  // Told in the steps' heartbeats once the connection has been down a while: a step then waits, alive, for nothing
  // else to show (see attemptInterceptor).
  const natsDown = trackDowntime(nc);
  const natsWaiting = (): WaitingDetails | undefined => {
    const since = natsDown.since();
    if (since === undefined || Date.now() - since < NATS_DOWN_TOLD_MS) return undefined;
    return {
      waiting: `the worker's NATS connection to ${config.nats.url} is down (its model calls and content wait for it)`,
      since,
    };
  };
  const activities = createActivities({
    nc,
    blobs,
    tools: opts.tools ?? createToolRegistry('sim'),
    config,
    onModelCall: opts.onModelCall,
    onToolCall: opts.onToolCall,
    pools,
  });
  let connection: NativeConnection;
  try {
    connection = await NativeConnection.connect(connectionOptions);
  } catch (err) {
    natsDown.stop();
    blobs.close();
    if (!opts.nc) await nc.close();
    throw new Error(
      `cannot reach the Temporal server at ${config.temporal.address} (${(err as Error).message}); start it with \`muse up\``,
    );
  }
  const ownsNc = !opts.nc;
  const closeConnections = async () => {
    // On a connection the worker was given, its routers' and content store's subscriptions would outlive it.
    for (const p of pools.values()) p.close();
    pools.clear();
    natsDown.stop();
    blobs.close();
    await connection.close().catch(() => {});
    if (ownsNc) await closeNats(nc);
  };
  const createWorker = async () =>
    Worker.create({
      connection,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      workflowBundle: await workflowBundle(join(config.dataDir, 'cache')),
      activities,
      dataConverter: { payloadConverterPath },
      ...(opts.identity ? { identity: opts.identity } : {}),
      maxConcurrentActivityTaskExecutions: opts.maxConcurrentActivities ?? 256,
      maxConcurrentWorkflowTaskExecutions: opts.maxConcurrentWorkflowTasks ?? 64,
      maxCachedWorkflows: 1024,
      shutdownGraceTime: '5s',
      interceptors: {
        activity: [
          (ctx) => ({
            inbound: new OpenTelemetryActivityInboundInterceptor(ctx),
            outbound: new OpenTelemetryActivityOutboundInterceptor(ctx),
          }),
          attemptInterceptor(natsWaiting),
        ],
      },
      sinks: { exporter: makeWorkflowExporter(new SimpleSpanProcessor(exporter), telemetryResource()!) },
    });
  let worker: Worker;
  try {
    worker = await createWorker();
  } catch (err) {
    // Not left open: NATS would reconnect forever and keep a library caller's process alive.
    await closeConnections();
    throw err;
  }
  let running: Promise<void> | undefined;
  return {
    worker,
    nc,
    run() {
      running ??= worker.run().finally(closeConnections);
      return running;
    },
    async shutdown() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      // Never run: the worker still holds its connection (and workflow threads) until it has run to a stop.
      running ??= worker.runUntil(Promise.resolve()).finally(closeConnections);
      await running;
    },
  };
}
