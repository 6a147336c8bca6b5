// vitest globalSetup for integration tests: one real Temporal dev server and one real nats-server
// (JetStream) per run, on free ports, with a throwaway data dir. Tests read the addresses with
// `inject('temporalAddress')`, `inject('natsUrl')`, `inject('dataDir')`.
//
// Env knobs:
//   MUSE_TEST_TEMPORAL_ADDRESS  + MUSE_TEST_NATS_URL: use servers that are already running instead
//   MUSE_KEEP_TEST_DATA=1       keep the data dir (SQLite db, JetStream store, logs) for a post-mortem

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { type NatsHandle, startNats, startTemporal, type TemporalHandle } from '../../infra/services.js';
import { onFreePorts, startAll } from '../helpers/servers.js';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    natsUrl: string;
    dataDir: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const externalTemporal = process.env.MUSE_TEST_TEMPORAL_ADDRESS;
  const externalNats = process.env.MUSE_TEST_NATS_URL;
  if (externalTemporal && externalNats) {
    const dataDir = process.env.MUSE_TEST_DATA_DIR ?? mkdtempSync(join(tmpdir(), 'muse-it-'));
    project.provide('temporalAddress', externalTemporal);
    project.provide('natsUrl', externalNats);
    project.provide('dataDir', dataDir);
    return async () => {};
  }

  const dataDir = mkdtempSync(join(tmpdir(), 'muse-it-'));
  const [temporal, nats] = await startAll<[TemporalHandle, NatsHandle]>([
    onFreePorts((port) => startTemporal({ dataDir, port })),
    onFreePorts((port) => startNats({ dataDir, port })),
  ]);

  project.provide('temporalAddress', temporal.address);
  project.provide('natsUrl', nats.url);
  project.provide('dataDir', dataDir);
  // For code that cannot call inject() (helpers spawned as subprocesses); test workers inherit the env.
  process.env.MUSE_TEST_TEMPORAL_ADDRESS = temporal.address;
  process.env.MUSE_TEST_NATS_URL = nats.url;
  process.env.MUSE_TEST_DATA_DIR = dataDir;

  return async () => {
    await Promise.all([temporal.stop(), nats.stop()]);
    delete process.env.MUSE_TEST_TEMPORAL_ADDRESS;
    delete process.env.MUSE_TEST_NATS_URL;
    delete process.env.MUSE_TEST_DATA_DIR;
    if (process.env.MUSE_KEEP_TEST_DATA === '1') {
      process.stderr.write(`[muse tests] kept test data in ${dataDir}\n`);
    } else {
      rmSync(dataDir, { recursive: true, force: true });
    }
  };
}
