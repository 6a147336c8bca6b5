// Fault injection on loopback: a rollout worker SIGKILLed mid-trajectory, a pool member SIGKILLed
// mid-request, and a pool with no members at all. Bounded in time; every process is stopped at the end.
import { describe, expect, it } from 'vitest';
import { queryProgress, startTrajectory } from '../../client/trajectories.js';
import { PoolMember } from '../../inference/member.js';
import { decodeWire, GenerateRequestWire, MemberAnnouncementWire, subjects } from '../../inference/wire.js';
import { SimBackend } from '../../sim/backend.js';
import { sampleQuestions } from '../../sim/world.js';
import {
  completedActivities,
  inProcessMember,
  inProcessWorker,
  killHard,
  recordingBackend,
  runMuseInSuite,
  spawnMuse,
  testConfig,
  useSuite,
  waitUntil,
} from '../helpers/stack.js';

const suite = useSuite();
const { cfg } = suite;

const fastRetry = { stepMs: 60_000, heartbeatMs: 2_000 };

describe('durability under faults', () => {
  it('a trajectory whose worker is SIGKILLed mid-run is finished by a new worker, without re-running completed steps', async () => {
    const calls: string[] = [];
    const member = new PoolMember({
      nc: suite.nc,
      pool: 'kill-worker',
      id: 'rec',
      backend: recordingBackend(new SimBackend({ profile: { timeScale: 0.2 } }), (req) => {
        // A react prompt has one assistant message per finished step: the request is for the next one.
        const step = req.messages.filter((m) => m.role === 'assistant').length;
        calls.push(`${req.messages[1]?.content.slice(0, 60)}#${step}`);
      }),
    });
    await member.start();
    const child = await spawnMuse(cfg, ['worker'], /rollout worker on task queue/);
    suite.children.push(child);
    try {
      const [q] = sampleQuestions(1, 21);
      const handle = await startTrajectory(
        suite.client,
        cfg,
        { question: `${q!.question} [sim:min-turns=10]`, maxTurns: 30, pool: 'kill-worker' },
        { timeouts: fastRetry },
      );
      await waitUntil(
        async () => ((await queryProgress(handle))?.step ?? 0) >= 3,
        60_000,
        'three steps on the first worker',
      );
      await killHard(child);
      // Read from the history, not with a query: a query needs a live worker, and none serves the queue now.
      const stepsAtKill = await completedActivities(handle, 'llmStep');
      // The workflow had seen three steps end, so their model turns are in the history: the kill came mid-run.
      expect(stepsAtKill).toBeGreaterThanOrEqual(3);
      const callsAtKill = calls.length;
      // Every step the history has was asked for once, and one more may have been under way at the kill.
      expect(callsAtKill - stepsAtKill).toBeGreaterThanOrEqual(0);
      expect(callsAtKill - stepsAtKill).toBeLessThanOrEqual(1);
      const replacement = await inProcessWorker(cfg);
      try {
        const result = await handle.result();
        expect(result.termination).toBe('answer');
        expect(result.steps).toBeGreaterThan(stepsAtKill);
        // The replacement did the rest: the model was asked again after the kill.
        expect(calls.length).toBeGreaterThan(callsAtKill);
        const perStep = new Map<string, number>();
        for (const c of calls) perStep.set(c, (perStep.get(c) ?? 0) + 1);
        const repeated = [...perStep.entries()].filter(([, n]) => n > 1);
        // Only the step in flight at the kill may have been asked twice; no completed step ran again.
        expect(repeated.length).toBeLessThanOrEqual(1);
        for (const [key] of repeated) expect(Number(key.split('#')[1])).toBeGreaterThanOrEqual(stepsAtKill);
        expect(perStep.size).toBe(result.steps);
      } finally {
        await replacement.stop();
      }
    } finally {
      await member.stop();
    }
  });

  it('a pool member SIGKILLed mid-request does not lose the trajectory: the request completes on another member', async () => {
    // The victim is slow (time scale 3), so a step is in flight on it for seconds.
    const victim = await spawnMuse(
      cfg,
      ['pool', 'serve', '--backend', 'sim', '--pool', 'kill-member', '--id', 'victim', '--time-scale', '3'],
      /serving pool/,
    );
    suite.children.push(victim);
    let victimLoad: MemberAnnouncementWire | undefined;
    const announcements = suite.nc.subscribe(subjects.announce('kill-member'), {
      callback: (err, msg) => {
        if (err) return;
        const a = decodeWire(MemberAnnouncementWire, msg.data, 'announcement');
        if (a.id === 'victim') victimLoad = a;
      },
    });
    // The requests routed to each member, as sent (a copy of each, read beside the member).
    const sentTo = { victim: [] as string[], survivor: [] as string[] };
    const routed = (['victim', 'survivor'] as const).map((id) =>
      suite.nc.subscribe(subjects.member('kill-member', id), {
        callback: (err, msg) => {
          if (!err) sentTo[id].push(decodeWire(GenerateRequestWire, msg.data, 'generate request').id);
        },
      }),
    );
    const worker = await inProcessWorker(cfg);
    try {
      const [q] = sampleQuestions(1, 22);
      const handle = await startTrajectory(
        suite.client,
        cfg,
        { question: q!.question, maxTurns: 30, pool: 'kill-member' },
        { timeouts: fastRetry },
      );
      await waitUntil(
        async () => ((await queryProgress(handle))?.step ?? 0) >= 1,
        60_000,
        'a step on the victim',
      );
      const survivor = await inProcessMember(
        cfg,
        { backend: 'sim', timeScale: 0.05 },
        { pool: 'kill-member', id: 'survivor' },
      );
      try {
        // Kill the victim while it reports a request of this trajectory in flight (the trajectory's prefix keeps it
        // on the victim, so the survivor has served nothing yet).
        victimLoad = undefined;
        await waitUntil(
          async () => (victimLoad?.inFlight ?? 0) >= 1,
          60_000,
          'a request in flight on the victim',
        );
        expect(survivor.member.stats.served).toBe(0);
        await killHard(victim);
        const inFlightAtKill = sentTo.victim.at(-1);
        expect(inFlightAtKill).toBeDefined();
        const stepsAtKill = (await queryProgress(handle))?.step ?? 0;
        const result = await handle.result();
        expect(result.termination).toBe('answer');
        expect(result.steps).toBeGreaterThan(stepsAtKill);
        expect(survivor.member.stats.served).toBeGreaterThan(0);
        // The request the victim held when it died is the one the survivor was sent first: failed over, not lost
        // (a request the victim had answered would not have been sent again).
        expect(sentTo.survivor[0]).toBe(inFlightAtKill);
        // The trajectory noticed nothing beyond latency: the pool client failed the request over to the survivor
        // inside the step's activity, so no activity needed a second attempt from Temporal.
        const history = await handle.fetchHistory();
        const attempts = (history.events ?? []).flatMap((e) =>
          e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes.attempt ?? 1] : [],
        );
        expect(attempts.length).toBeGreaterThan(0);
        expect(Math.max(...attempts)).toBe(1);
      } finally {
        await survivor.stop();
      }
    } finally {
      announcements.unsubscribe();
      for (const sub of routed) sub.unsubscribe();
      await worker.stop();
    }
  });

  it('muse status of a trajectory no worker polls for says so after a few seconds instead of waiting on the query', async () => {
    const own = testConfig();
    const handle = await startTrajectory(suite.client, own, { question: 'who answers?', maxTurns: 4 });
    try {
      const status = await runMuseInSuite(suite, own, ['status', handle.workflowId]).done;
      expect(status.code, status.stderr).toBe(0);
      const shown = JSON.parse(status.stdout);
      expect(shown).toMatchObject({ status: 'RUNNING', progress: null });
      expect(shown.unanswered).toBe(
        `no worker answered within 5 s: is a rollout worker running on its task queue? (task queue ${own.temporal.taskQueue})`,
      );
    } finally {
      await handle.terminate('test done');
    }
  });

  it('muse cancel asks, says when no worker has carried it out yet, and once one has, prints the cancelled end', async () => {
    const own = testConfig();
    const handle = await startTrajectory(suite.client, own, { question: 'stop me', maxTurns: 4 });
    let worker: Awaited<ReturnType<typeof inProcessWorker>> | undefined;
    try {
      const waiting = await runMuseInSuite(suite, own, ['cancel', handle.workflowId, '--wait', '1']).done;
      expect(waiting.code, waiting.stderr).toBe(0);
      expect(waiting.stderr).toContain(`cancellation of trajectory ${handle.workflowId} requested`);
      expect(waiting.stderr).toContain(`${handle.workflowId} has not ended within 1 s`);
      expect(JSON.parse(waiting.stdout)).toMatchObject({ status: 'RUNNING' });
      // A worker on its task queue now carries the cancellation out before any step runs.
      worker = await inProcessWorker(own);
      expect((await handle.result()).termination).toBe('cancelled');
      const ended = await runMuseInSuite(suite, own, ['cancel', handle.workflowId]).done;
      expect(ended.code, ended.stderr).toBe(0);
      expect(ended.stderr).toBe(`trajectory ${handle.workflowId} has already ended; nothing to cancel\n`);
      expect(JSON.parse(ended.stdout)).toMatchObject({
        status: 'COMPLETED',
        result: { termination: 'cancelled', steps: 0 },
      });
    } finally {
      await worker?.stop();
      // Ended whatever a check found first: a trajectory left running on a queue nobody polls would stay.
      await handle.terminate('test done').catch(() => {});
    }
  });

  it('with no member at all the step waits (Temporal retries it) and proceeds when a member joins', async () => {
    const worker = await inProcessWorker(cfg);
    try {
      const [q] = sampleQuestions(1, 23);
      const handle = await startTrajectory(
        suite.client,
        cfg,
        { question: q!.question, maxTurns: 30, pool: 'empty' },
        { timeouts: fastRetry },
      );
      // The step fails with a clear pool-unavailable error while nobody serves the pool.
      await waitUntil(
        async () => {
          const d = await handle.describe();
          const pending = (d.raw.pendingActivities ?? [])[0];
          return Boolean(pending?.lastFailure?.message?.includes("pool 'empty' is unavailable"));
        },
        60_000,
        'the pool-unavailable failure',
      );
      // muse status says why the trajectory is not moving: the step in retry and its last failure.
      const status = await runMuseInSuite(suite, cfg, ['status', handle.workflowId]).done;
      expect(status.code, status.stderr).toBe(0);
      const shown = JSON.parse(status.stdout);
      expect(shown.status).toBe('RUNNING');
      expect(shown.retrying).toEqual([
        expect.objectContaining({
          workflowId: handle.workflowId,
          activity: 'llmStep',
          lastFailure: expect.stringContaining("pool 'empty' is unavailable"),
        }),
      ]);
      expect(shown.retrying[0].attempt).toBeGreaterThanOrEqual(2); // the step has failed once at least
      const late = await inProcessMember(cfg, { backend: 'sim' }, { pool: 'empty', id: 'late' });
      try {
        const result = await handle.result();
        expect(result.termination).toBe('answer');
        expect(late.member.stats.served).toBeGreaterThan(0);
      } finally {
        await late.stop();
      }
    } finally {
      await worker.stop();
    }
  });
});
