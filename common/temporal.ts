// Temporal connection settings shared by every worker and client: the msgpack payload converter (by path,
// as the SDK requires, so it also runs inside the workflow sandbox) and OpenTelemetry propagation.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry';
import type { MuseConfig } from './config.js';

export const payloadConverterPath = fileURLToPath(new URL('./payload-converter.cjs', import.meta.url));
export const otelWorkflowInterceptorsPath = createRequire(import.meta.url).resolve(
  '@temporalio/interceptors-opentelemetry/lib/workflow-interceptors',
);

export async function connectClient(cfg: MuseConfig): Promise<Client> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: cfg.temporal.address, connectTimeout: '5s' });
  } catch (err) {
    throw new Error(
      `cannot reach the Temporal server at ${cfg.temporal.address} (${(err as Error).message}); start it with \`muse up\` or set MUSE_TEMPORAL_ADDRESS`,
    );
  }
  return new Client({
    connection,
    namespace: cfg.temporal.namespace,
    dataConverter: { payloadConverterPath },
    interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] },
  });
}
