// The servers themselves killed mid-trajectory: the Temporal dev server and the nats-server are SIGKILLed and started
// again on the same port and data. The trajectory goes on where it was, with no finished step run again. This file
// runs its own servers on loopback (the shared ones stay up for the other files) and stops them at the end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryProgress, startTrajectory } from '../../client/trajectories.js';
import { loadConfig, type MuseConfig } from '../../common/config.js';
import { connectClient } from '../../common/temporal.js';
import { PoolMember } from '../../inference/member.js';
import { type ServiceHandle, startNats, startTemporal } from '../../infra/services.js';
import { SimBackend } from '../../sim/backend.js';
import { sampleQuestions } from '../../sim/world.js';
import { onFreePorts } from '../helpers/servers.js';
import { inProcessWorker, natsFor, recordingBackend, waitUntil } from '../helpers/stack.js';

const dataDir = mkdtempSync(join(tmpdir(), 'muse-restarts-'));
let temporal: ServiceHandle;
let nats: ServiceHandle;
let cfg: MuseConfig;
let client: Client;

const startTemporalOn = (port: number) => startTemporal({ dataDir, port });
const startNatsOn = (port: number) => startNats({ dataDir, port });

beforeAll(async () => {
  [temporal, nats] = await Promise.all([onFreePorts(startTemporalOn), onFreePorts(startNatsOn)]);
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
async function trajectoryAcrossCrash(pool: string, crash: () => Promise<void>) {
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
    await waitUntil(async () => ((await queryProgress(handle))?.step ?? 0) >= 3, 60_000, 'three steps');
    const before = new Map(asked);
    await crash();
    const result = await handle.result();
    return { result, asked, before };
  } finally {
    await worker.stop();
    await member.stop();
    await nc.close().catch(() => {});
  }
}

/** Every step's model request was made once, but for at most one step in flight at the crash (asked again after). */
function expectNoFinishedStepRepeated(run: Awaited<ReturnType<typeof trajectoryAcrossCrash>>) {
  const { result, asked, before } = run;
  expect(result.termination).toBe('answer');
  expect(asked.size).toBe(result.steps);
  const repeated = [...asked].filter(([, n]) => n > 1).map(([step]) => step);
  expect(repeated.length).toBeLessThanOrEqual(1);
  // A repeated step is the one whose request was out when the server went: the last one asked before it.
  for (const step of repeated) expect(step).toBe(Math.max(...before.keys()));
  // The crash came mid-run: steps were asked for after it.
  expect(result.steps).toBeGreaterThan(Math.max(...before.keys()) + 1);
}

describe('servers killed and restarted mid-trajectory', () => {
  it('the Temporal server: the trajectory resumes at its last finished step', async () => {
    const run = await trajectoryAcrossCrash('temporal-crash', async () => {
      temporal = await crashAndRestart(temporal, startTemporalOn);
    });
    expectNoFinishedStepRepeated(run);
    // The history came through the crash whole: one model turn completed per step, the ones from before it included.
    const events = (await client.workflow.getHandle(run.result.trajectoryId).fetchHistory()).events ?? [];
    const llmStepIds = new Set(
      events
        .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'llmStep')
        .map((e) => String(e.eventId)),
    );
    const completed = events.filter((e) =>
      llmStepIds.has(String(e.activityTaskCompletedEventAttributes?.scheduledEventId)),
    );
    expect(completed.length).toBe(run.result.steps);
  });

  it('the NATS server: content written before the crash is still there and the pool is found again', async () => {
    const run = await trajectoryAcrossCrash('nats-crash', async () => {
      nats = await crashAndRestart(nats, startNatsOn);
    });
    expectNoFinishedStepRepeated(run);
  });
});
