// The servers themselves killed mid-trajectory: the Temporal dev server and the nats-server are SIGKILLed and started
// again on the same port and data. The trajectory goes on where it was, with no finished step run again. This file
// runs its own servers on loopback (the shared ones stay up for the other files) and stops them at the end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryProgress, startTrajectory, stepsInRetry } from '../../client/trajectories.js';
import { BlobStore } from '../../common/blob-store.js';
import { loadConfig, type MuseConfig } from '../../common/config.js';
import { readStepLog } from '../../common/step-log.js';
import { connectClient } from '../../common/temporal.js';
import { PoolMember } from '../../inference/member.js';
import { type ServiceHandle, startNats, startTemporal } from '../../infra/services.js';
import { SimBackend } from '../../sim/backend.js';
import { sampleQuestions } from '../../sim/world.js';
import { onFreePorts, startAll } from '../helpers/servers.js';
import {
  completedActivities,
  inProcessWorker,
  natsFor,
  recordingBackend,
  runMuse,
  waitUntil,
} from '../helpers/stack.js';

const dataDir = mkdtempSync(join(tmpdir(), 'muse-restarts-'));
let temporal: ServiceHandle;
let nats: ServiceHandle;
let cfg: MuseConfig;
let client: Client;

const startTemporalOn = (port: number) => startTemporal({ dataDir, port });
const startNatsOn = (port: number) => startNats({ dataDir, port });

beforeAll(async () => {
  // Both or neither: one started beside one that failed would outlive the run.
  [temporal, nats] = await startAll<[ServiceHandle, ServiceHandle]>([
    onFreePorts(startTemporalOn),
    onFreePorts(startNatsOn),
  ]);
  cfg = loadConfig({
    env: {},
    overrides: {
      dataDir: join(dataDir, 'state'),
      temporal: { address: temporal.address, taskQueue: 'restarts' },
      nats: { url: nats.url },
      router: { memberTtlMs: 1500 },
    },
  });
  client = await connectClient(cfg);
});

afterAll(async () => {
  await client?.connection.close().catch(() => {});
  await Promise.all([temporal?.stop(), nats?.stop()]);
  rmSync(dataDir, { recursive: true, force: true });
});

/** SIGKILL, as a crash or an OOM kill would end it, then the same binary on the same port and data. */
async function crashAndRestart(
  server: ServiceHandle,
  start: (port: number) => Promise<ServiceHandle>,
): Promise<ServiceHandle> {
  process.kill(server.pid, 'SIGKILL');
  await server.stop();
  return start(server.port);
}

/**
 * Runs a trajectory on an in-process worker and simulated member, crashes a server once three steps are done, and
 * returns the model requests per step (a react prompt's assistant messages: the step it asks for) with the result.
 */
async function trajectoryAcrossCrash(
  pool: string,
  crash: (handle: Awaited<ReturnType<typeof startTrajectory>>) => Promise<void>,
) {
  const asked = new Map<number, number>();
  const nc = await natsFor(cfg);
  const member = new PoolMember({
    nc,
    pool,
    id: `${pool}-member`,
    backend: recordingBackend(new SimBackend({ profile: { timeScale: 0.2 } }), (req) => {
      const step = req.messages.filter((m) => m.role === 'assistant').length;
      asked.set(step, (asked.get(step) ?? 0) + 1);
    }),
  });
  await member.start();
  const worker = await inProcessWorker(cfg);
  try {
    const [q] = sampleQuestions(1, 33);
    const handle = await startTrajectory(
      client,
      cfg,
      { question: `${q!.question} [sim:min-turns=8]`, maxTurns: 30, pool },
      { timeouts: { stepMs: 60_000, heartbeatMs: 2_000 } },
    );
    let finished = 0;
    await waitUntil(
      async () => {
        finished = (await queryProgress(handle))?.step ?? 0;
        return finished >= 3;
      },
      60_000,
      'three steps',
    );
    const crashedAt = Date.now();
    await crash(handle);
    const result = await handle.result();
    return { result, asked, finished, endedAfterCrashMs: Date.now() - crashedAt };
  } finally {
    await worker.stop();
    await member.stop();
    await nc.close().catch(() => {});
  }
}

/**
 * Every step's model request was made once, but for at most one step in flight at the crash (asked again after); the
 * trajectory ended within `withinMs` of the crash (its remaining steps included), not after a timeout.
 */
function expectResumed(run: Awaited<ReturnType<typeof trajectoryAcrossCrash>>, withinMs: number) {
  const { result, asked, finished } = run;
  expect(result.termination).toBe('answer');
  expect(asked.size).toBe(result.steps);
  const repeated = [...asked].filter(([, n]) => n > 1).map(([step]) => step);
  expect(repeated.length).toBeLessThanOrEqual(1);
  // The steps the workflow had finished when the server went were not asked for again.
  for (const step of repeated) expect(step).toBeGreaterThanOrEqual(finished);
  // The crash came mid-run: steps were asked for after it.
  expect(result.steps).toBeGreaterThan(finished + 1);
  // The step in flight waited neither for its attempt limit (2 min and more) nor for its activity's timeout.
  expect(run.endedAfterCrashMs).toBeLessThan(withinMs);
}

/**
 * From the crash to the trajectory's end: the restart (a cold start on a loaded machine), a lost workflow task, a
 * heartbeat timeout and the steps left. Below the 60 s step timeout a step in flight would otherwise wait out.
 */
const RESUMED_WITHIN_MS = 50_000;

describe('servers killed and restarted mid-trajectory', () => {
  it('the Temporal server: the trajectory resumes at its last finished step', async () => {
    const run = await trajectoryAcrossCrash('temporal-crash', async () => {
      temporal = await crashAndRestart(temporal, startTemporalOn);
    });
    expectResumed(run, RESUMED_WITHIN_MS);
    // The history came through the crash whole: one model turn completed per step, the ones from before it included.
    expect(await completedActivities(client.workflow.getHandle(run.result.trajectoryId), 'llmStep')).toBe(
      run.result.steps,
    );
  });

  it('the Temporal server down long enough to fail the client: muse run says so, follows the run again, and prints its end', async () => {
    const pool = 'cli-temporal-down';
    const nc = await natsFor(cfg);
    const member = new PoolMember({
      nc,
      pool,
      id: `${pool}-member`,
      backend: new SimBackend({ profile: { timeScale: 0.2 } }),
    });
    await member.start();
    const worker = await inProcessWorker(cfg);
    try {
      const [q] = sampleQuestions(1, 34);
      const run = runMuse(cfg, [
        'run',
        '--pool',
        pool,
        '--max-turns',
        '30',
        `${q!.question} [sim:min-turns=8]`,
      ]);
      let stderr = '';
      run.child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      await waitUntil(() => /step [3-9]\//.test(stderr), 60_000, 'three steps');
      process.kill(temporal.pid, 'SIGKILL');
      await temporal.stop();
      // Down until the command's own calls have failed (their retries spent), as a restart that takes a while does.
      await waitUntil(
        () => stderr.includes('the Temporal server does not answer'),
        90_000,
        'the outage told',
      );
      temporal = await startTemporalOn(temporal.port);
      const r = await run.done;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/termination: answer/);
      expect(r.stderr).toMatch(
        /waiting: the Temporal server does not answer \(.*\); the trajectory traj-\S+ goes on in Temporal, and is followed again once the server answers/,
      );
      // Told once, not at every failed call.
      expect(r.stderr.match(/the trajectory traj-\S+ goes on in Temporal/g)).toHaveLength(1);
    } finally {
      await worker.stop();
      await member.stop();
      await nc.close().catch(() => {});
    }
  }, 180_000);

  it('the NATS server down for a while: a step says, in its heartbeats, that it waits for NATS; the run goes on after', async () => {
    let waiting: string | undefined;
    const run = await trajectoryAcrossCrash('nats-down', async (handle) => {
      process.kill(nats.pid, 'SIGKILL');
      await nats.stop();
      // What muse run and muse status read (the step is alive, not failing: nothing else would show it).
      await waitUntil(
        async () => {
          const steps = await stepsInRetry(client, await handle.describe());
          waiting = steps.find((r) => r.waiting !== undefined)?.waiting;
          return waiting !== undefined;
        },
        30_000,
        'a step saying it waits for NATS',
      );
      nats = await startNatsOn(nats.port);
    });
    expect(waiting).toMatch(/^the worker's NATS connection to nats:\/\/\S+ is down/);
    expect(run.result.termination).toBe('answer');
  });

  it('the NATS server: content written before the crash is still there and the pool is found again', async () => {
    const run = await trajectoryAcrossCrash('nats-crash', async () => {
      nats = await crashAndRestart(nats, startNatsOn);
    });
    expectResumed(run, RESUMED_WITHIN_MS);
    // Read back by a new connection and store, with nothing cached from the run: the steps from before the crash,
    // their turns and observations, are on the restarted server.
    const fresh = await natsFor(cfg);
    const blobs = new BlobStore(fresh);
    try {
      const log = await readStepLog(blobs, run.result.log);
      expect(log).toHaveLength(run.result.steps);
      for (const step of log.slice(0, run.finished)) {
        expect((await blobs.getText(step.turnRef)).length, `step ${step.step}'s turn`).toBeGreaterThan(0);
        if (step.observationRef)
          expect(
            (await blobs.getText(step.observationRef)).length,
            `step ${step.step}'s observation`,
          ).toBeGreaterThan(0);
      }
    } finally {
      blobs.close();
      await fresh.close();
    }
  });
});
