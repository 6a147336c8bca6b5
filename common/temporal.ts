// Temporal connection settings shared by every worker and client: the msgpack payload converter (by path,
// as the SDK requires, so it also runs inside the workflow sandbox) and OpenTelemetry propagation.
import { setMaxListeners } from 'node:events';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Client, Connection, type TLSConfig, type WorkflowClientInterceptor } from '@temporalio/client';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry';
import { type MuseConfig, readNamedFile } from './config.js';
import { currentTracer, initTelemetry } from './telemetry.js';

export const payloadConverterPath = fileURLToPath(new URL('./payload-converter.cjs', import.meta.url));
export const otelWorkflowInterceptorsPath = createRequire(import.meta.url).resolve(
  '@temporalio/interceptors-opentelemetry/lib/workflow-interceptors',
);

/**
 * Address, TLS and API key for a client or worker connection. The certificate files are read here, so a wrong path
 * is reported by name before any connection is tried.
 */
export function temporalConnectionOptions(cfg: MuseConfig): {
  address: string;
  tls?: TLSConfig;
  apiKey?: string;
} {
  const t = cfg.temporal;
  const read = (setting: string, path: string) => readNamedFile(`temporal.${setting}`, path);
  const wantsTls =
    t.tls ||
    t.apiKey !== undefined ||
    t.tlsCertPath !== undefined ||
    t.tlsCaPath !== undefined ||
    t.tlsServerName !== undefined;
  const tls: TLSConfig | undefined = wantsTls
    ? {
        ...(t.tlsCertPath && t.tlsKeyPath
          ? {
              clientCertPair: {
                crt: read('tlsCertPath', t.tlsCertPath),
                key: read('tlsKeyPath', t.tlsKeyPath),
              },
            }
          : {}),
        ...(t.tlsCaPath ? { serverRootCACertificate: read('tlsCaPath', t.tlsCaPath) } : {}),
        ...(t.tlsServerName ? { serverNameOverride: t.tlsServerName } : {}),
      }
    : undefined;
  return { address: t.address, ...(tls ? { tls } : {}), ...(t.apiKey ? { apiKey: t.apiKey } : {}) };
}

/**
 * A client whose workflow starts open the trajectory's trace: the process's telemetry is set up here (a no-op where
 * a worker in the same process did it first), so a client-only process such as `muse run` sends its trace context
 * with the start instead of leaving the worker to begin a trace of its own.
 */
export async function connectClient(cfg: MuseConfig): Promise<Client> {
  initTelemetry(cfg, 'client');
  const options = temporalConnectionOptions(cfg);
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...options, connectTimeout: '5s' });
  } catch (err) {
    throw new Error(
      `cannot reach the Temporal server at ${cfg.temporal.address} (${(err as Error).message}); start it with \`muse up\` or set MUSE_TEMPORAL_ADDRESS`,
    );
  }
  return new Client({
    connection,
    namespace: cfg.temporal.namespace,
    dataConverter: { payloadConverterPath },
    interceptors: { workflow: [tracingClientInterceptor()] },
  });
}

/**
 * Traces the calls that start or change a workflow, whose spans open or join its trace. Queries and lookups are left
 * out: `muse run` and `muse batch` poll progress several times a second, and each would be a trace of its own.
 */
function tracingClientInterceptor(): WorkflowClientInterceptor {
  const otel = new OpenTelemetryWorkflowClientInterceptor({
    tracer: currentTracer('@temporalio/interceptor-client'),
  });
  return {
    start: (input, next) => otel.start(input, next),
    startWithDetails: (input, next) => otel.startWithDetails(input, next),
    signalWithStart: (input, next) => otel.signalWithStart(input, next),
    signal: (input, next) => otel.signal(input, next),
    startUpdate: (input, next) => otel.startUpdate(input, next),
    startUpdateWithStart: (input, next) => otel.startUpdateWithStart(input, next),
    cancel: (input, next) => otel.cancel(input, next),
    terminate: (input, next) => otel.terminate(input, next),
  };
}

/**
 * Runs `fn` with the Temporal calls it makes cancelled by `signal`. The client adds an abort listener to the signal of
 * every call and never removes it: on a signal that outlives many calls (a follower's, polling for hours) they would
 * pile up (Node's MaxListenersExceededWarning, and memory). Each scope gets a signal of its own, which its calls'
 * listeners go with, and which alone listens on `signal` while the scope runs.
 */
export async function withCallSignal<T>(
  client: Pick<Client, 'withAbortSignal'>,
  signal: AbortSignal,
  fn: () => Promise<T>,
): Promise<T> {
  const scope = new AbortController();
  // A scope's calls (a result's long polls, say) may be many; their listeners live no longer than it does.
  setMaxListeners(0, scope.signal);
  const abort = () => scope.abort(signal.reason);
  if (signal.aborted) abort();
  else signal.addEventListener('abort', abort, { once: true });
  try {
    return await client.withAbortSignal(scope.signal, fn);
  } finally {
    signal.removeEventListener('abort', abort);
  }
}
