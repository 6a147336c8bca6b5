import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { hostname } from 'node:os';
import { basename, join, resolve, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import { Connection } from '@temporalio/client';
import { causeChainMessage } from '../common/errors.js';
import { replaceFileSync } from '../common/files.js';
import { exitAsSignal } from '../common/signals.js';
import { resolveBinary } from './binaries.js';
import { type LockHolder, tryLock } from './file-lock.js';
import { isProcessAlive, listensOn, processCommandLine, processStartTime } from './processes.js';

export type ServiceName = 'temporal' | 'nats';

export interface ServiceHandle {
  readonly name: ServiceName;
  /** host:port (for Temporal this is the gRPC address clients connect to). */
  readonly address: string;
  /** Temporal: same as `address`; NATS: `nats://host:port`. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  readonly logFile: string;
  /** Absolute path of the executable that was started. */
  readonly binary: string;
  readonly detached: boolean;
  /** Every port the process was told to bind, by purpose. */
  readonly ports: Readonly<Record<string, number>>;
  /** SIGTERM, wait up to `timeoutMs`, then SIGKILL. Resolves once the process is gone; idempotent. */
  stop(opts?: { timeoutMs?: number }): Promise<void>;
}

export interface TemporalHandle extends ServiceHandle {
  readonly name: 'temporal';
  readonly namespace: string;
  /** Why the namespace keeps the server's own retention (see StartTemporalOptions.retentionMs), when it does. */
  readonly retentionWarning?: string;
}

export interface NatsHandle extends ServiceHandle {
  readonly name: 'nats';
  readonly maxPayload: number;
}

export class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
  readonly port: number;
  readonly host: string;
  /** The CLI option that changes this port. */
  readonly flag: string;

  constructor(port: number, host: string, flag: string) {
    super(`port ${port} on ${host} is already in use; pass ${flag} or stop the other process`);
    this.port = port;
    this.host = host;
    this.flag = flag;
  }
}

export class ServiceStartError extends Error {
  override readonly name = 'ServiceStartError';
  readonly service: ServiceName;
  readonly logTail: string;
  /** The log's line saying a port was taken, wherever it is in this run's output (a crash's trace can bury it). */
  readonly portTakenLine: string | undefined;

  /** `log`: what the server wrote this run. */
  constructor(service: ServiceName, message: string, log: string) {
    const lines = log.split('\n').filter(Boolean);
    const portTakenLine = lines.find((l) => /address already in use/i.test(l));
    const logTail = lines.slice(-40).join('\n');
    const cause = portTakenLine && !logTail.includes(portTakenLine) ? `\n${portTakenLine.trim()}` : '';
    super(logTail ? `${message}${cause}\n--- last lines of the log ---\n${logTail}` : `${message}${cause}`);
    this.service = service;
    this.logTail = logTail;
    this.portTakenLine = portTakenLine;
  }
}

/**
 * The server lost a port (one of `ports`, where given) to another process between the free-port check and its own
 * bind (two stacks starting at once on one machine): starting again on fresh ports will do.
 */
export function isPortRace(err: unknown, ports?: readonly number[]): boolean {
  const line = err instanceof ServiceStartError ? err.portTakenLine : undefined;
  if (line === undefined) return false;
  return ports === undefined || ports.some((p) => new RegExp(`:${p}\\b`).test(line));
}

/** Starts of a server on fresh ports, in all, after ports found free were taken before it could bind them. */
export const PORT_RACE_TRIES = 3;

const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_HEALTH_TIMEOUT_MS = 60_000;
const DEFAULT_STOP_TIMEOUT_MS = 15_000;
export const DEFAULT_TEMPORAL_PORT = 7233;
export const DEFAULT_NATS_PORT = 4222;
/** NATS defaults to 1 MB; prompts and reports can be larger, so the embedded server takes 8 MiB. */
export const DEFAULT_NATS_MAX_PAYLOAD = 8 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// ports

/** A port that was free on 127.0.0.1 a moment ago (the OS picks it; another process may still race us). */
export async function freePort(host = DEFAULT_HOST): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      server.close(() => (port ? resolvePort(port) : reject(new Error('could not allocate a free port'))));
    });
  });
}

function canConnect(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ host, port });
    const finish = (ok: boolean) => {
      socket.removeAllListeners();
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

/**
 * True when something accepts connections on host:port or the port cannot be bound. Both checks are
 * needed: a listener on 0.0.0.0 or [::] blocks the bind without necessarily answering on 127.0.0.1 first.
 */
export async function isPortInUse(port: number, host = DEFAULT_HOST): Promise<boolean> {
  if (await canConnect(host, port)) return true;
  return new Promise((done, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') done(true);
      else reject(new Error(`cannot bind port ${port} on ${host}: ${err.message}`));
    });
    server.listen({ port, host, exclusive: true }, () => server.close(() => done(false)));
  });
}

async function assertPortFree(port: number, host: string, flag: string): Promise<void> {
  if (await isPortInUse(port, host)) throw new PortInUseError(port, host, flag);
}

// ---------------------------------------------------------------------------------------------
// processes

/**
 * Whether a recorded server of the data directory `dataDir` still runs. Guards against pid reuse after a reboot or
 * crash, where stack.json names a pid that now belongs to something unrelated, or to another checkout's (or a test
 * run's) server, which we must not signal: the process must have the recorded start time, and run the recorded binary on the data directory it was
 * started with (its arguments name paths inside it). That directory is the one recorded with the server, not the
 * one this call was given: a data directory reached through a symlink, or renamed since, is the same directory to
 * the stack file but not to the server's command line.
 */
function recordRuns(record: ServiceRecord, dataDir: string, stackDataDir = dataDir): boolean {
  if (!isProcessAlive(record.pid)) return false;
  // A copy of the data directory (a backup, a CI cache) holds the same records: its servers are not the copy's.
  if (record.dataDirId !== undefined && record.dataDirId !== directoryId(dataDir)) return false;
  if (record.processStart !== undefined) {
    const start = processStartTime(record.pid);
    if (start !== undefined && start !== record.processStart) return false;
  }
  const cmdline = processCommandLine(record.pid);
  // Unreadable (procfs hidden, no ps): alive (with the right start time, where that can be told) is all there is.
  if (cmdline === undefined) return true;
  // With the separator: `.muse` is not `.muse-2`.
  // Older records name no directory: the stack file's, as they were written with.
  const dir = `${record.dataDir ?? stackDataDir}${sep}`;
  return cmdline.includes(basename(record.binary)) && cmdline.includes(dir);
}

const owned = new Set<ChildProcess>();
const signalNames = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let hooksInstalled = false;

function killOwned(): void {
  for (const child of owned) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGTERM');
      } catch {
        // already gone
      }
    }
  }
}

function onExit(): void {
  killOwned();
}

function onSignal(signal: NodeJS.Signals): void {
  killOwned();
  // Listening for a signal disables Node's default "terminate"; when nobody else handles it, restore
  // that behaviour instead of leaving the process running with its servers gone.
  if (process.listenerCount(signal) === 1) {
    uninstallHooks();
    process.kill(process.pid, signal);
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', onExit);
  for (const s of signalNames) process.on(s, onSignal);
}

function uninstallHooks(): void {
  if (!hooksInstalled) return;
  hooksInstalled = false;
  process.removeListener('exit', onExit);
  for (const s of signalNames) process.removeListener(s, onSignal);
}

function adopt(child: ChildProcess): void {
  owned.add(child);
  installHooks();
  child.once('exit', () => {
    owned.delete(child);
    if (owned.size === 0) uninstallHooks();
  });
}

function hasExited(child: ChildProcess | undefined, pid: number): boolean {
  if (child) return child.exitCode !== null || child.signalCode !== null;
  return !isProcessAlive(pid);
}

/** Polls `done` every 50 ms for up to `timeoutMs`; whether it came true. */
async function waitFor(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (done()) return true;
    await sleep(50);
  }
  return done();
}

/**
 * Signals the process group `pid` leads (a server started detached leads its own: a wrapper script given as
 * MUSE_TEMPORAL_BIN that does not exec would otherwise die alone, its server left running), else the process alone.
 * A pid is not reused while a group of that id exists, so a group `pid` is this process's own.
 */
function signalServer(pid: number, signal: NodeJS.Signals): void {
  // -1 would be every process this user may signal; 0 this process's own group.
  if (pid <= 1) throw new Error(`refusing to signal process ${pid}`);
  try {
    process.kill(-pid, signal);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ESRCH' && code !== 'EPERM') throw err;
  }
  process.kill(pid, signal);
}

/** Whether the process group `pid` led has members left (a server forked by a wrapper that has exited, say). */
function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * SIGTERM, then SIGKILL after `timeoutMs`. Works for pids this process did not spawn (stack.json). For a server
 * leading its own group, the whole group: a wrapper that exits at once must not leave what it forked running.
 */
export async function stopProcess(
  pid: number,
  opts: { timeoutMs?: number; child?: ChildProcess } = {},
): Promise<void> {
  const { child } = opts;
  const gone = () => hasExited(child, pid) && !groupAlive(pid);
  if (gone()) return;
  try {
    signalServer(pid, 'SIGTERM');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
    throw err;
  }
  if (await waitFor(gone, opts.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS)) return;
  try {
    signalServer(pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
    throw err;
  }
  // What is left of the group after SIGKILL can only be zombies no parent has reaped yet: the leader must be gone.
  if (!(await waitFor(gone, 5_000)) && !hasExited(child, pid))
    throw new Error(`process ${pid} survived SIGKILL`);
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** What was written to `path` after byte `from` (this run's output: logs are appended), its first `maxBytes` at most. */
function logSince(path: string, from: number, maxBytes = 1024 * 1024): string {
  try {
    const size = Math.min(fileSize(path), from + maxBytes);
    if (size <= from) return '';
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(size - from);
      readSync(fd, buf, 0, buf.length, from);
      return buf.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}

interface Spawned {
  child: ChildProcess;
  pid: number;
  logOffset: number;
}

async function spawnService(
  binary: string,
  args: string[],
  logFile: string,
  detached: boolean,
): Promise<Spawned> {
  mkdirSync(resolve(logFile, '..'), { recursive: true });
  const logOffset = fileSize(logFile);
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(binary, args, {
      // A detached server gets its own session so it outlives this process and a terminal's Ctrl-C.
      detached,
      stdio: ['ignore', fd, fd],
      env: process.env,
    });
  } finally {
    closeSync(fd);
  }
  await new Promise<void>((ok, fail) => {
    child.once('spawn', () => ok());
    child.once('error', (err) => fail(new Error(`could not start ${binary}: ${err.message}`)));
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${binary}: no pid`);
  if (detached) child.unref();
  else adopt(child);
  return { child, pid, logOffset };
}

async function waitHealthy(
  service: ServiceName,
  spawned: Spawned,
  logFile: string,
  timeoutMs: number,
  host: string,
  port: number,
  check: () => Promise<void>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    if (hasExited(spawned.child, spawned.pid)) {
      const { exitCode, signalCode } = spawned.child;
      throw new ServiceStartError(
        service,
        `${service} exited during startup (${signalCode ? `signal ${signalCode}` : `code ${exitCode}`}); log: ${logFile}`,
        logSince(logFile, spawned.logOffset),
      );
    }
    if (await canConnect(host, port)) {
      try {
        await check();
        // Another process can take the port between the check that it was free and the server's bind (another
        // data directory's server starting at that moment). It answers the check, while ours exits on the bind.
        const holdsPort = listensOn(spawned.pid, port);
        // Ours may have exited on its bind while the other answered (a slow start under load): whose port it is
        // cannot be read from the descriptors of a process that is gone, and the next turn reports the exit.
        if (!isProcessAlive(spawned.pid))
          lastError = `${service} (pid ${spawned.pid}) exited while something answered on ${host}:${port}`;
        else if (holdsPort !== false) return;
        else lastError = `another process (not pid ${spawned.pid}) listens on ${host}:${port}`;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
      }
    } else {
      lastError = `nothing accepts connections on ${host}:${port} yet`;
    }
    await sleep(150);
  }
  await stopProcess(spawned.pid, { child: spawned.child, timeoutMs: 5_000 }).catch(() => undefined);
  throw new ServiceStartError(
    service,
    `${service} did not become healthy within ${Math.round(timeoutMs / 1000)} s on ${host}:${port} (last check: ${lastError}); log: ${logFile}`,
    logSince(logFile, spawned.logOffset),
  );
}

function makeHandle<T extends ServiceHandle>(fields: Omit<T, 'stop'>, child: ChildProcess | undefined): T {
  let stopping: Promise<void> | undefined;
  return {
    ...fields,
    stop(opts?: { timeoutMs?: number }) {
      stopping ??= stopProcess(fields.pid, { child, timeoutMs: opts?.timeoutMs });
      return stopping;
    },
  } as T;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// health checks

/** One real round trip: the frontend answers and the namespace exists (it is created during startup). */
export async function checkTemporal(
  address: string,
  namespace = 'default',
  timeoutMs = 5_000,
): Promise<void> {
  const connection = await withTimeout(
    Connection.connect({ address, connectTimeout: timeoutMs }),
    timeoutMs + 1_000,
    `connecting to Temporal at ${address}`,
  );
  try {
    await withTimeout(
      connection.withDeadline(Date.now() + timeoutMs, () =>
        connection.workflowService.describeNamespace({ namespace }),
      ),
      timeoutMs + 1_000,
      `describing namespace ${namespace}`,
    );
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/**
 * How long the embedded server keeps a namespace's ended runs: as long as the content store keeps their content
 * (`store.ttlMs`), a day at least (the dev server's own). A run's result is what lists its steps (muse export), and
 * what a batch resumed later collects: with the dev server's own day, a run ended over a weekend was gone, its
 * content still stored, and a resumed batch ran its question again. Content kept until deleted (TTL 0): ten years.
 */
export function namespaceRetentionMs(storeTtlMs: number): number {
  const day = 24 * 3_600_000;
  if (storeTtlMs === 0) return 3_650 * day;
  return Math.max(day, Math.ceil(storeTtlMs / 3_600_000) * 3_600_000);
}

/**
 * Sets the namespace's retention. A server that refuses is still a working server (its health check has just
 * passed): the failure comes back as a warning to show, not as a failed start. Runs that ended before keep the
 * retention they ended under.
 */
async function setRetention(
  address: string,
  namespace: string,
  retentionMs: number,
): Promise<string | undefined> {
  try {
    const connection = await Connection.connect({ address, connectTimeout: 5_000 });
    try {
      await connection.withDeadline(Date.now() + 10_000, () =>
        connection.workflowService.updateNamespace({
          namespace,
          config: { workflowExecutionRetentionTtl: { seconds: Math.ceil(retentionMs / 1000) as never } },
        }),
      );
      return undefined;
    } finally {
      await connection.close().catch(() => undefined);
    }
  } catch (err) {
    return `could not set namespace ${namespace}'s retention to ${retentionMs / 3_600_000} h (${causeChainMessage(err)}): ended runs are kept for the server's own retention`;
  }
}

/** JetStream must answer, not just the core protocol: KV and Object Store depend on it. */
export async function checkNats(url: string, minPayload = 0, timeoutMs = 5_000): Promise<void> {
  const nc = await natsConnect({ servers: url, timeout: timeoutMs, reconnect: false });
  try {
    const jsm = await withTimeout(jetstreamManager(nc), timeoutMs, 'JetStream API');
    await withTimeout(jsm.getAccountInfo(), timeoutMs, 'JetStream account info');
    const maxPayload = nc.info?.max_payload ?? 0;
    if (maxPayload < minPayload) {
      throw new Error(`server max_payload is ${maxPayload} bytes, expected at least ${minPayload}`);
    }
  } finally {
    await nc.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Temporal

export interface StartTemporalOptions {
  dataDir: string;
  port?: number;
  host?: string;
  /** Serve the Web UI on this port; without it the server runs headless. */
  uiPort?: number;
  /** HTTP API port; a free one by default (the CLI would otherwise also pick one at random). */
  httpPort?: number;
  metricsPort?: number;
  /** Created at launch when it is not `default` (which always exists). */
  namespace?: string;
  detached?: boolean;
  logFile?: string;
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Extra dynamic config; values are JSON-encoded. */
  dynamicConfig?: Record<string, string | number | boolean>;
  /**
   * How long the namespace keeps ended runs (see namespaceRetentionMs); the dev server's own is a day. Set at every
   * start, so a server that kept its database across restarts takes a changed setting.
   */
  retentionMs?: number;
  healthTimeoutMs?: number;
  /** Flag named in the "port in use" error, so CLI users see the option they can change. */
  portFlag?: string;
  /** Told the server's pid as soon as it is spawned, before it is healthy (see up()). */
  onSpawn?: (pid: number) => void;
}

export async function startTemporal(opts: StartTemporalOptions): Promise<TemporalHandle> {
  const binary = resolveBinary('temporal');
  const host = opts.host ?? DEFAULT_HOST;
  const port = opts.port ?? DEFAULT_TEMPORAL_PORT;
  const namespace = opts.namespace ?? 'default';
  const detached = opts.detached ?? false;
  const dataDir = resolve(opts.dataDir);
  const logFile = resolve(opts.logFile ?? join(dataDir, 'logs', 'temporal.log'));

  await assertPortFree(port, host, opts.portFlag ?? '--temporal-port');
  if (opts.uiPort !== undefined) await assertPortFree(opts.uiPort, host, '--temporal-ui-port');
  if (opts.httpPort !== undefined) await assertPortFree(opts.httpPort, host, '--temporal-http-port');
  if (opts.metricsPort !== undefined) await assertPortFree(opts.metricsPort, host, '--temporal-metrics-port');
  mkdirSync(dataDir, { recursive: true });
  const dynamicConfig: Record<string, string | number | boolean> = {
    'system.enableActivityEagerExecution': true,
    // The history service's queue readers load new tasks at a capped rate per shard: past a short burst, each
    // workflow task of a step waited ~25-30 ms to be dispatched at the default cap (measured from workflow histories
    // and the server's task_latency_load; bench/step-overhead back to back went from 82 to 43 ms per step). The cap
    // only bounds reads when tasks keep coming; an idle server reads no more often for it.
    ...Object.fromEntries(
      ['transfer', 'timer', 'visibility'].map((queue) => [`history.${queue}ProcessorMaxPollRPS`, 1000]),
    ),
    ...opts.dynamicConfig,
  };
  const args = [
    'server',
    'start-dev',
    '--db-filename',
    join(dataDir, 'temporal.db'),
    '--ip',
    host,
    '--port',
    String(port),
    // WAL with synchronous=NORMAL: a commit writes the log without waiting for the disk, and the file stays whole
    // through a power loss or OS crash (the last commits may be rolled back); synchronous=OFF could corrupt it, losing
    // every run's history, for no step time bench/step-overhead could tell apart.
    '--sqlite-pragma',
    'journal_mode=WAL',
    '--sqlite-pragma',
    'synchronous=NORMAL',
    '--log-level',
    opts.logLevel ?? 'warn',
  ];
  for (const [key, value] of Object.entries(dynamicConfig)) {
    args.push('--dynamic-config-value', `${key}=${JSON.stringify(value)}`);
  }
  if (opts.uiPort !== undefined) args.push('--ui-port', String(opts.uiPort), '--ui-disable-news-fetch');
  else args.push('--headless');
  if (namespace !== 'default') args.push('--namespace', namespace);

  const address = `${host}:${port}`;
  // Explicit ports keep two dev servers on one machine from racing for the same random/derived ports. One found free
  // can still be taken by another process before the server binds it (anything else starting at that moment): then
  // the server exits saying so, and is started again on others.
  let httpPort: number;
  let metricsPort: number;
  let spawned: Spawned;
  for (let attempt = 1; ; attempt++) {
    const picked: number[] = [];
    const pick = async () => {
      picked.push(await freePort(host));
      return picked.at(-1)!;
    };
    httpPort = opts.httpPort ?? (await pick());
    metricsPort = opts.metricsPort ?? (await pick());
    const portArgs = ['--http-port', String(httpPort), '--metrics-port', String(metricsPort)];
    spawned = await spawnService(binary, [...args, ...portArgs], logFile, detached);
    opts.onSpawn?.(spawned.pid);
    try {
      await waitHealthy(
        'temporal',
        spawned,
        logFile,
        opts.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS,
        host,
        port,
        () => checkTemporal(address, namespace, 3_000),
      );
      break;
    } catch (err) {
      if (attempt >= PORT_RACE_TRIES || !isPortRace(err, picked)) throw err;
    }
  }
  const retentionWarning =
    opts.retentionMs === undefined ? undefined : await setRetention(address, namespace, opts.retentionMs);
  const ports: Record<string, number> = { grpc: port, http: httpPort, metrics: metricsPort };
  if (opts.uiPort !== undefined) ports.ui = opts.uiPort;
  return makeHandle<TemporalHandle>(
    {
      name: 'temporal',
      address,
      url: address,
      host,
      port,
      pid: spawned.pid,
      logFile,
      binary,
      detached,
      ports,
      namespace,
      ...(retentionWarning ? { retentionWarning } : {}),
    },
    spawned.child,
  );
}

// ---------------------------------------------------------------------------------------------
// NATS

export interface StartNatsOptions {
  dataDir: string;
  port?: number;
  host?: string;
  /** Bytes; default 8 MiB. */
  maxPayload?: number;
  /** Enable the HTTP monitoring endpoint (/healthz, /varz) on this port. */
  monitorPort?: number;
  detached?: boolean;
  logFile?: string;
  healthTimeoutMs?: number;
  portFlag?: string;
  /** As StartTemporalOptions.onSpawn. */
  onSpawn?: (pid: number) => void;
}

export async function startNats(opts: StartNatsOptions): Promise<NatsHandle> {
  const binary = resolveBinary('nats-server');
  const host = opts.host ?? DEFAULT_HOST;
  const port = opts.port ?? DEFAULT_NATS_PORT;
  const maxPayload = opts.maxPayload ?? DEFAULT_NATS_MAX_PAYLOAD;
  const detached = opts.detached ?? false;
  const dataDir = resolve(opts.dataDir);
  const logFile = resolve(opts.logFile ?? join(dataDir, 'logs', 'nats.log'));

  await assertPortFree(port, host, opts.portFlag ?? '--nats-port');
  if (opts.monitorPort !== undefined) await assertPortFree(opts.monitorPort, host, '--nats-monitor-port');

  const storeDir = join(dataDir, 'jetstream');
  mkdirSync(storeDir, { recursive: true });
  // max_payload has no command-line flag, so it goes through a config file.
  const configFile = join(dataDir, `nats-${port}.conf`);
  writeFileSync(configFile, `# written by infra/services.ts on each start\nmax_payload: ${maxPayload}\n`);

  const args = ['-c', configFile, '-a', host, '-p', String(port), '-js', '-sd', storeDir];
  if (opts.monitorPort !== undefined) args.push('-m', String(opts.monitorPort));

  const spawned = await spawnService(binary, args, logFile, detached);
  opts.onSpawn?.(spawned.pid);
  const url = `nats://${host}:${port}`;
  await waitHealthy(
    'nats',
    spawned,
    logFile,
    opts.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS,
    host,
    port,
    () => checkNats(url, maxPayload, 3_000),
  );
  const ports: Record<string, number> = { client: port };
  if (opts.monitorPort !== undefined) ports.monitor = opts.monitorPort;
  return makeHandle<NatsHandle>(
    {
      name: 'nats',
      address: `${host}:${port}`,
      url,
      host,
      port,
      pid: spawned.pid,
      logFile,
      binary,
      detached,
      ports,
      maxPayload,
    },
    spawned.child,
  );
}

// ---------------------------------------------------------------------------------------------
// background stack: up / down / status

export interface ServiceRecord {
  pid: number;
  binary: string;
  host: string;
  port: number;
  address: string;
  url: string;
  logFile: string;
  ports: Record<string, number>;
  startedAt: string;
  /** The data directory as the server was given it (older stack files: the one given now). */
  dataDir?: string;
  /** directoryId of the data directory: a copy of it, stack file and all, is another directory. */
  dataDirId?: string;
  /** processStartTime of the server, where the host can tell: a later process given the same pid is not it. */
  processStart?: string;
  /** Recorded when spawned, before it answered: the `up` that started it may have been killed while it waited. */
  starting?: true;
  /**
   * The process (`muse demo`) that started this server for itself and stops it when done, unless a `muse up` since
   * found it running and so wants it kept: that `up` removes the mark.
   */
  temporaryFor?: number;
}

export interface StackFile {
  version: 1;
  dataDir: string;
  temporal?: ServiceRecord & { namespace: string };
  nats?: ServiceRecord & { maxPayload: number };
}

export interface UpOptions {
  dataDir?: string;
  temporalPort?: number;
  natsPort?: number;
  host?: string;
  temporalUiPort?: number;
  namespace?: string;
  natsMaxPayload?: number;
  healthTimeoutMs?: number;
  /** The servers this call starts are the caller's, to stop with `down({ temporaryFor: process.pid })` when done. */
  temporary?: boolean;
  /** See StartTemporalOptions.retentionMs. */
  retentionMs?: number;
  /** Told once when the call has waited a while on another `up` of the same data directory. */
  onWaiting?: (message: string) => void;
}

export interface UpResult {
  /** True when both services were already up and healthy; nothing was started. */
  alreadyRunning: boolean;
  started: ServiceName[];
  stack: StackFile & Required<Pick<StackFile, 'temporal' | 'nats'>>;
  temporalAddress: string;
  natsUrl: string;
  /** Human-readable, one line per service. */
  messages: string[];
}

export interface DownResult {
  stopped: ServiceName[];
  /** True when nothing was running. */
  wasRunning: boolean;
  messages: string[];
}

export interface ServiceStatus {
  record: ServiceRecord;
  alive: boolean;
  healthy: boolean;
}

export interface StackStatus {
  dataDir: string;
  /** Both services alive and healthy. */
  running: boolean;
  temporal?: ServiceStatus;
  nats?: ServiceStatus;
}

export function stackFilePath(dataDir: string): string {
  return join(resolve(dataDir), 'stack.json');
}

export function readStackFile(dataDir: string): StackFile | undefined {
  try {
    const parsed = JSON.parse(readFileSync(stackFilePath(dataDir), 'utf8')) as StackFile;
    return parsed && parsed.version === 1 ? parsed : undefined;
  } catch {
    return undefined;
  }
}

function writeStackFile(dataDir: string, stack: StackFile): void {
  const path = stackFilePath(dataDir);
  mkdirSync(resolve(dataDir), { recursive: true });
  replaceFileSync(path, `${JSON.stringify(stack, null, 2)}\n`);
}

/**
 * Liveness plus health of a recorded service. With `waitMs`, a live process gets that long to answer:
 * it may still be starting (another `up` just launched it) or be slow under load, and replacing a live
 * server would throw away work in flight.
 */
async function recordHealthy(
  name: ServiceName,
  stack: StackFile,
  dataDir: string,
  waitMs = 0,
): Promise<ServiceStatus | undefined> {
  const record = name === 'temporal' ? stack.temporal : stack.nats;
  if (!record) return undefined;
  const check = () =>
    name === 'temporal'
      ? checkTemporal(record.address, stack.temporal?.namespace ?? 'default', 5_000)
      : checkNats(record.url, 0, 5_000);
  const deadline = Date.now() + waitMs;
  for (;;) {
    if (!recordRuns(record, dataDir, stack.dataDir)) return { record, alive: false, healthy: false };
    try {
      await check();
      return { record, alive: true, healthy: true };
    } catch {
      if (Date.now() >= deadline) return { record, alive: true, healthy: false };
    }
    await sleep(250);
  }
}

export async function stackStatus(opts: { dataDir?: string } = {}): Promise<StackStatus> {
  const dataDir = resolve(opts.dataDir ?? '.muse');
  const stack = readStackFile(dataDir);
  if (!stack) return { dataDir, running: false };
  const [temporal, nats] = await Promise.all([
    recordHealthy('temporal', stack, dataDir),
    recordHealthy('nats', stack, dataDir),
  ]);
  return { dataDir, running: Boolean(temporal?.healthy && nats?.healthy), temporal, nats };
}

/** What stack.json keeps of a server: from its handle, or from what `up` knows of it when it is spawned. */
function toRecord(
  h: Pick<ServiceHandle, 'pid' | 'binary' | 'host' | 'port' | 'address' | 'url' | 'logFile' | 'ports'>,
  dataDir: string,
): ServiceRecord {
  return {
    pid: h.pid,
    binary: h.binary,
    host: h.host,
    port: h.port,
    address: h.address,
    url: h.url,
    logFile: h.logFile,
    ports: { ...h.ports },
    startedAt: new Date().toISOString(),
    ...recordedIdentity(h.pid, dataDir),
  };
}

function recordedIdentity(
  pid: number,
  dataDir: string,
): Pick<ServiceRecord, 'dataDir' | 'dataDirId' | 'processStart'> {
  const processStart = processStartTime(pid);
  const dataDirId = directoryId(dataDir);
  return {
    dataDir,
    ...(dataDirId !== undefined ? { dataDirId } : {}),
    ...(processStart !== undefined ? { processStart } : {}),
  };
}

/** The directory itself, whatever path reaches it (a symlink, a rename): its device and inode. */
function directoryId(dir: string): string | undefined {
  try {
    const st = statSync(dir);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/**
 * Start the local stack in the background (idempotent). Services recorded in `<dataDir>/stack.json`
 * that are alive and healthy are left alone; dead or unhealthy ones are (re)started. Logs go to
 * `<dataDir>/logs/{temporal,nats}.log`.
 */
export async function up(opts: UpOptions = {}): Promise<UpResult> {
  const dataDir = resolve(opts.dataDir ?? '.muse');
  mkdirSync(join(dataDir, 'logs'), { recursive: true });
  // One `up` at a time per data directory: a second one waits, then finds the stack the first one started.
  const release = await lockStack(dataDir, opts.onWaiting);
  // The servers run detached, so an interrupt while they start (Ctrl-C during a slow first start) would leave
  // them running with no stack.json to find them by: stop what this call spawned, then exit as the signal would
  // (which releases the lock, as any exit does).
  // Each with its start time: one that exited (a server started again on other ports) may have left its pid to
  // another process by now, which must not be signalled.
  const spawned: { pid: number; start: string | undefined }[] = [];
  const interrupted = (signal: NodeJS.Signals) => {
    for (const { pid, start } of spawned) {
      if (!isProcessAlive(pid) || (start !== undefined && processStartTime(pid) !== start)) continue;
      try {
        // Its whole group, as every other stop does: a wrapper script that does not exec would leave the server.
        signalServer(pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    process.stderr.write(
      `\nmuse: interrupted (${signal}) while starting the servers; stopped what it started\n`,
    );
    exitAsSignal(signal);
  };
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const signal of signals) process.on(signal, interrupted);
  try {
    return await upLocked(dataDir, opts, (pid) => spawned.push({ pid, start: processStartTime(pid) }));
  } finally {
    for (const signal of signals) process.off(signal, interrupted);
    release();
  }
}

/** Takes a data directory's `up.lock` for `up` or `down`, waiting for another `up` under way; returns its release. */
function lockStack(dataDir: string, onWaiting?: (message: string) => void): Promise<() => void> {
  const busy = (holder: LockHolder | undefined) =>
    holder
      ? `another muse up (pid ${holder.pid} on ${holder.host}) is starting the servers of ${dataDir}`
      : `another muse up is starting the servers of ${dataDir}`;
  return waitForLock(join(dataDir, 'up.lock'), UP_LOCK_WAIT_MS, busy, (holder) =>
    onWaiting?.(`${busy(holder)}; waiting for it`),
  );
}

/**
 * How long `up` waits for a lock whose holder it cannot see running (another host's process, or one taking a stale
 * lock over). A live holder on this host is waited for as long as it runs: its own start is bounded by its timeouts.
 */
const UP_LOCK_WAIT_MS = 3 * DEFAULT_HEALTH_TIMEOUT_MS;

/** How long a wait for the lock goes unmentioned: a second `up` usually finds the first done within it. */
const LOCK_WAIT_NOTICE_MS = 2_000;

/** Takes `lock`, waiting while a live process here holds it, else up to `waitMs`; then fails with `busy`'s message. */
async function waitForLock(
  lock: string,
  waitMs: number,
  busy: (holder: LockHolder | undefined) => string,
  onWaiting?: (holder: LockHolder | undefined) => void,
): Promise<() => void> {
  const since = Date.now();
  const until = since + waitMs;
  let told = false;
  for (;;) {
    const got = tryLock(lock);
    if (got.acquired) return got.release;
    if (!told && Date.now() - since >= LOCK_WAIT_NOTICE_MS) {
      told = true;
      onWaiting?.(got.holder);
    }
    // tryLock names a holder on this host only while it runs (a dead one's lock is taken over).
    const liveHere = got.holder?.host === hostname();
    // A takeover marker left by a process that died taking the lock over stands in the way, not the lock itself.
    const inTheWay = got.takingOver ? `${lock}.takeover` : lock;
    if (!liveHere && Date.now() >= until)
      throw new Error(
        `${busy(got.holder)}; waited ${Math.round(waitMs / 1000)} s (delete ${inTheWay} if it is gone)`,
      );
    await sleep(200);
  }
}

async function upLocked(dataDir: string, opts: UpOptions, onSpawn: (pid: number) => void): Promise<UpResult> {
  const host = opts.host ?? DEFAULT_HOST;
  const healthTimeoutMs = opts.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
  const previous = readStackFile(dataDir);
  const stack: StackFile = { version: 1, dataDir };
  const started: ServiceName[] = [];
  const startedHandles: ServiceHandle[] = [];
  const messages: string[] = [];

  const current = previous
    ? await Promise.all([
        recordHealthy('temporal', previous, dataDir, healthTimeoutMs),
        recordHealthy('nats', previous, dataDir, healthTimeoutMs),
      ])
    : [undefined, undefined];
  const [temporalStatus, natsStatus] = current;

  const mismatch = (
    name: string,
    flag: string,
    requested: number | undefined,
    status: ServiceStatus | undefined,
  ) => {
    if (requested !== undefined && status?.alive && status.record.port !== requested) {
      throw new Error(
        `${name} from ${dataDir} is already running on port ${status.record.port}, not ${requested}; ` +
          `run \`muse down\` first or drop ${flag}`,
      );
    }
  };
  mismatch('temporal', '--temporal-port', opts.temporalPort, temporalStatus);
  mismatch('nats', '--nats-port', opts.natsPort, natsStatus);
  // A server that died comes back where its clients and workers look for it. One port for both is refused here:
  // else the second to start would find it taken by the first, and blame "the other process".
  const temporalPort = opts.temporalPort ?? previous?.temporal?.port ?? DEFAULT_TEMPORAL_PORT;
  const natsPort = opts.natsPort ?? previous?.nats?.port ?? DEFAULT_NATS_PORT;
  const whence = (flag: string, given: number | undefined, before: number | undefined) =>
    given !== undefined
      ? `${flag} ${given}`
      : before !== undefined
        ? `${flag} of the stack's last start`
        : `${flag}'s default`;
  if (temporalPort === natsPort)
    throw new Error(
      `Temporal and NATS would both listen on port ${temporalPort} (${whence('--temporal-port', opts.temporalPort, previous?.temporal?.port)}, ` +
        `${whence('--nats-port', opts.natsPort, previous?.nats?.port)}): give each its own port`,
    );

  const keepTemporal = Boolean(temporalStatus?.alive && temporalStatus.healthy && previous?.temporal);
  // The dev server creates a namespace when it starts with it (and 'default' always): a server kept running may not
  // have the one configured now, and workers and clients of it would fail later with "namespace not found".
  const wantedNamespace = opts.namespace ?? 'default';
  const runningNamespace = previous?.temporal?.namespace ?? 'default';
  if (keepTemporal && previous?.temporal && wantedNamespace !== runningNamespace) {
    const missing = await checkTemporal(previous.temporal.address, wantedNamespace, 5_000).then(
      () => false,
      () => true,
    );
    if (missing)
      throw new Error(
        `temporal from ${dataDir} is already running without namespace '${wantedNamespace}' (temporal.namespace / ` +
          `MUSE_TEMPORAL_NAMESPACE; it was started with '${runningNamespace}'): run \`muse down\` first to start it with '${wantedNamespace}'`,
      );
  }
  const keepNats = Boolean(natsStatus?.alive && natsStatus.healthy && previous?.nats);
  // A server a `muse demo` started for itself, found running by any other session (a `muse up`, a second demo), is
  // kept running when that demo ends: the other session is using it.
  let claimed = false;
  const keep = <R extends ServiceRecord>(name: ServiceName, found: R): R => {
    // Recorded while starting by an `up` that did not live to record it answering: it answers now.
    let record = found;
    if (record.starting) {
      claimed = true;
      const { starting: _, ...started } = record;
      record = started as R;
    }
    if (record.temporaryFor === undefined || (opts.temporary && record.temporaryFor === process.pid))
      return record;
    claimed = true;
    messages.push(
      `${name} was started by muse demo (pid ${record.temporaryFor}); it now stays up when the demo ends`,
    );
    const { temporaryFor: _, ...kept } = record;
    return kept as R;
  };
  if (keepTemporal && previous?.temporal) {
    stack.temporal = keep('temporal', previous.temporal);
    messages.push(`temporal already running at ${previous.temporal.address} (pid ${previous.temporal.pid})`);
    // Set at every start, and at every `up` that keeps the server: the content store's TTL may have changed since.
    const warning =
      opts.retentionMs === undefined
        ? undefined
        : await setRetention(previous.temporal.address, wantedNamespace, opts.retentionMs);
    if (warning) messages.push(`temporal: ${warning}`);
  }
  if (keepNats && previous?.nats) {
    stack.nats = keep('nats', previous.nats);
    messages.push(`nats already running at ${previous.nats.url} (pid ${previous.nats.pid})`);
  }
  // A server started in place of one that died takes over what that one was for: a server a `muse up` wanted kept
  // stays kept when a demo restarts it. Only one with no live owner to inherit from becomes this demo's own.
  const mark = (previousRecord: ServiceRecord | undefined): Pick<ServiceRecord, 'temporaryFor'> => {
    if (!opts.temporary) return {};
    if (!previousRecord) return { temporaryFor: process.pid };
    const owner = previousRecord.temporaryFor;
    if (owner === undefined) return {};
    return owner === process.pid || !isProcessAlive(owner) ? { temporaryFor: process.pid } : {};
  };
  // Each server is recorded as soon as it is spawned, before it answers: if this call is killed while it waits (a
  // SIGKILL cannot be caught), the next `up` finds the server recorded and waits for it, `down` stops it, and
  // neither takes it for a stranger holding the port.
  const recordSpawned = (pid: number, server: Pick<StackFile, 'temporal'> | Pick<StackFile, 'nats'>) => {
    onSpawn(pid);
    try {
      // What the previous stack file recorded stays until replaced: a live server not yet stopped and restarted
      // (one that failed its health checks) must stay findable too.
      writeStackFile(dataDir, { ...previous, ...stack, ...server, version: 1, dataDir });
    } catch {
      // The record written once the server answers is the one that counts; its failure stops the server.
    }
  };
  const spawnedRecord =
    (binary: string, host: string, port: number, url: string, logFile: string) =>
    (pid: number): ServiceRecord => ({
      ...toRecord({ pid, binary, host, port, address: `${host}:${port}`, url, logFile, ports: {} }, dataDir),
      starting: true,
    });

  try {
    if (!keepTemporal) {
      // A live but unhealthy server holds the port and the SQLite file; replace it.
      if (temporalStatus?.alive) await stopProcess(temporalStatus.record.pid);
      const namespace = opts.namespace ?? 'default';
      const logFile = join(dataDir, 'logs', 'temporal.log');
      const address = `${host}:${temporalPort}`;
      const record = spawnedRecord(resolveBinary('temporal'), host, temporalPort, address, logFile);
      const owner = mark(previous?.temporal);
      const h = await startTemporal({
        dataDir,
        port: temporalPort,
        host,
        uiPort: opts.temporalUiPort,
        namespace,
        ...(opts.retentionMs !== undefined ? { retentionMs: opts.retentionMs } : {}),
        detached: true,
        logFile,
        healthTimeoutMs,
        onSpawn: (pid) => recordSpawned(pid, { temporal: { ...record(pid), namespace, ...owner } }),
      });
      startedHandles.push(h);
      started.push('temporal');
      stack.temporal = { ...toRecord(h, dataDir), namespace: h.namespace, ...owner };
      messages.push(`temporal started at ${h.address} (pid ${h.pid}), log ${h.logFile}`);
      if (h.retentionWarning) messages.push(`temporal: ${h.retentionWarning}`);
    }
    if (!keepNats) {
      if (natsStatus?.alive) await stopProcess(natsStatus.record.pid);
      const maxPayload = opts.natsMaxPayload ?? DEFAULT_NATS_MAX_PAYLOAD;
      const logFile = join(dataDir, 'logs', 'nats.log');
      const record = spawnedRecord(
        resolveBinary('nats-server'),
        host,
        natsPort,
        `nats://${host}:${natsPort}`,
        logFile,
      );
      const owner = mark(previous?.nats);
      const h = await startNats({
        dataDir,
        port: natsPort,
        host,
        maxPayload,
        detached: true,
        logFile,
        healthTimeoutMs,
        onSpawn: (pid) => recordSpawned(pid, { nats: { ...record(pid), maxPayload, ...owner } }),
      });
      startedHandles.push(h);
      started.push('nats');
      stack.nats = { ...toRecord(h, dataDir), maxPayload: h.maxPayload, ...owner };
      messages.push(`nats started at ${h.url} (pid ${h.pid}), log ${h.logFile}`);
    }
    // Inside the rollback: servers nobody can find again (a full disk refused their record) must not stay running.
    if (started.length > 0 || !previous || claimed) writeStackFile(dataDir, stack);
  } catch (err) {
    // Roll back what this call started, and keep stack.json describing exactly what still runs.
    await Promise.all(startedHandles.map((h) => h.stop().catch(() => undefined)));
    const survivors: StackFile = { version: 1, dataDir };
    if (keepTemporal) survivors.temporal = stack.temporal;
    if (keepNats) survivors.nats = stack.nats;
    // A previous server this call had not yet replaced (one failing its health checks) stays recorded, to be stopped.
    if (!keepTemporal && previous?.temporal && recordRuns(previous.temporal, dataDir, previous.dataDir))
      survivors.temporal = previous.temporal;
    if (!keepNats && previous?.nats && recordRuns(previous.nats, dataDir, previous.dataDir))
      survivors.nats = previous.nats;
    try {
      if (survivors.temporal || survivors.nats) writeStackFile(dataDir, survivors);
      else rmSync(stackFilePath(dataDir), { force: true });
    } catch {
      // The error that stopped the start is the one to report; the stack file is what it was.
    }
    throw err;
  }

  const full = stack as UpResult['stack'];
  return {
    alreadyRunning: started.length === 0,
    started,
    stack: full,
    temporalAddress: full.temporal.address,
    natsUrl: full.nats.url,
    messages,
  };
}

/** Stop the background stack recorded in `<dataDir>/stack.json` (idempotent). */
export async function down(opts: DownOptions = {}): Promise<DownResult> {
  const dataDir = resolve(opts.dataDir ?? '.muse');
  if (!existsSync(dataDir)) return downLocked(dataDir, opts);
  // Under `up`'s lock: an `up` meanwhile (a server claimed, one restarted) must not be undone from a stale stack.json.
  const release = await lockStack(dataDir, opts.onWaiting);
  try {
    return await downLocked(dataDir, opts);
  } finally {
    release();
  }
}

export interface DownOptions {
  dataDir?: string;
  timeoutMs?: number;
  only?: readonly ServiceName[];
  /** Stop only servers still marked as this process's own (UpOptions.temporary), leaving those claimed since. */
  temporaryFor?: number;
  /** Told once when the call has waited a while on an `up` of the same data directory. */
  onWaiting?: (message: string) => void;
}

async function downLocked(dataDir: string, opts: DownOptions): Promise<DownResult> {
  const stack = readStackFile(dataDir);
  const stopped: ServiceName[] = [];
  // Stopped, or found not running: no longer recorded.
  const gone: ServiceName[] = [];
  const messages: string[] = [];
  if (stack) {
    // NATS first: workers notice it going away and stop taking work before Temporal disappears.
    for (const name of ['nats', 'temporal'] as const) {
      const record = stack[name];
      if (!record) continue;
      if (opts.only && !opts.only.includes(name)) continue;
      if (opts.temporaryFor !== undefined && record.temporaryFor !== opts.temporaryFor) {
        messages.push(`${name} left running (pid ${record.pid}): another session since wants it`);
        continue;
      }
      if (recordRuns(record, dataDir, stack.dataDir)) {
        await stopProcess(record.pid, { timeoutMs: opts.timeoutMs });
        stopped.push(name);
        messages.push(`${name} stopped (pid ${record.pid})`);
      } else {
        messages.push(`${name} was not running`);
      }
      gone.push(name);
    }
  }
  // Stopping only some (what `muse demo` started) leaves the others recorded, for `muse down` to stop later.
  const left = (name: ServiceName) => stack?.[name] !== undefined && !gone.includes(name);
  const kept: StackFile | undefined = stack && {
    version: 1,
    dataDir: stack.dataDir,
    ...(left('temporal') ? { temporal: stack.temporal } : {}),
    ...(left('nats') ? { nats: stack.nats } : {}),
  };
  if (kept && (kept.temporal || kept.nats)) writeStackFile(dataDir, kept);
  else if (existsSync(stackFilePath(dataDir))) rmSync(stackFilePath(dataDir), { force: true });
  if (!stack) messages.push(`not running (no ${stackFilePath(dataDir)})`);
  return { stopped, wasRunning: stopped.length > 0, messages };
}
