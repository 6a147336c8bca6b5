import { type Client, ServiceError } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time.js';
import proto from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { BatchError, batchStopped, questionRun } from '../../client/batch.js';
import { followThroughOutages, throughOutages } from '../../client/outages.js';
import { isServiceOutage, sayIfNoWorker, sayIfStepsRetry } from '../../client/trajectories.js';
import type { MuseConfig } from '../../common/config.js';
import { payloadConverter } from '../../common/payload-converter.cjs';
import { abortableCalls } from '../helpers/fake-temporal.js';

/** An error as the Temporal client's gRPC calls throw it. */
function grpcError(code: number, details: string): Error {
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata: {} });
}

describe('outages of the Temporal service', () => {
  it('tells an outage (unavailable, deadline, exhausted, aborted) from a failure of the question', () => {
    expect(isServiceOutage(grpcError(14, 'No connection established'))).toBe(true);
    expect(
      isServiceOutage(new ServiceError('Failed to start Workflow', { cause: grpcError(4, 'Deadline') })),
    ).toBe(true);
    // Permission, a bad request, a question that failed: not waited out.
    expect(isServiceOutage(grpcError(7, 'Permission denied'))).toBe(false);
    expect(isServiceOutage(grpcError(3, 'Invalid argument'))).toBe(false);
    expect(isServiceOutage(new Error('Workflow execution failed'))).toBe(false);
  });

  const quick = { limitMs: 200, quietMs: 50, firstPauseMs: 1, maxPauseMs: 4 };
  const never = new AbortController().signal;

  it('a question whose client calls fail for an outage is attached to again, and its result taken, not failed', async () => {
    const runs: boolean[] = [];
    const told: unknown[] = [];
    const result = await throughOutages(
      async (again) => {
        runs.push(again);
        if (runs.length < 3) throw grpcError(14, 'No connection established');
        return 'answer';
      },
      {},
      (err) => told.push(err),
      never,
      quick,
      batchStopped,
    );
    expect(result).toBe('answer');
    // Attached to again (a question that failed meanwhile is then reported, not started anew), told once.
    expect(runs).toEqual([false, true, true]);
    expect(told).toHaveLength(1);
  });

  it('muse run follows its run through an outage (a server restart) instead of ending with the gRPC error', async () => {
    let calls = 0;
    const told: string[] = [];
    const result = await followThroughOutages(
      'the trajectory',
      'traj-1',
      async () => {
        if (++calls === 1) throw grpcError(14, 'No connection established');
        return 'answer';
      },
      (why) => told.push(why),
    );
    expect(result).toBe('answer');
    expect(calls).toBe(2);
    expect(told).toEqual([
      expect.stringMatching(
        /^the Temporal server does not answer \(14 No connection established\); the trajectory traj-1 goes on in Temporal, and is followed again once the server answers/,
      ),
    ]);
    // A failure of the run itself is not waited out.
    await expect(
      followThroughOutages(
        'the trajectory',
        'traj-2',
        () => Promise.reject(new Error('Workflow execution failed')),
        () => {},
      ),
    ).rejects.toThrow('Workflow execution failed');
  });

  /**
   * A Temporal client whose latest run under every id is an earlier batch's failed one; its start calls answer as
   * `starts` says in turn (an outage, or a new run whose result is `result`).
   */
  function clientWithFailedRun(starts: Array<'outage' | (() => Promise<string>)>) {
    let calls = 0;
    const client = {
      workflow: {
        async start() {
          const next = starts[calls++];
          if (next === 'outage' || next === undefined) throw grpcError(14, 'No connection established');
          return { result: next };
        },
        getHandle: () => ({
          describe: async () => ({ status: { name: 'FAILED' } }),
          result: async () => {
            throw new Error('the earlier run failed');
          },
        }),
      },
    } as unknown as Client;
    return { client, starts: () => calls };
  }
  const cfg = { temporal: { taskQueue: 'muse' } } as MuseConfig;
  const spec = { n: 2, branchMode: 'none' as const, trajectory: { question: 'Where?' } };
  const options = { workflowId: 'job-q', jobId: 'job' };

  it('a start that never reached the server is made again, not taken for the earlier failed run under its id', async () => {
    const { client, starts } = clientWithFailedRun(['outage', async () => 'answer']);
    const run = questionRun(client, cfg, spec, options);
    expect(await throughOutages(run, {}, () => {}, never, quick, batchStopped)).toBe('answer');
    expect(starts()).toBe(2);
  });

  it('a run this batch started that ended during the outage is reported as failed, not started anew', async () => {
    const { client, starts } = clientWithFailedRun([
      async () => {
        throw grpcError(14, 'No connection established');
      },
    ]);
    const run = questionRun(client, cfg, spec, options);
    await expect(throughOutages(run, {}, () => {}, never, quick, batchStopped)).rejects.toThrow(
      'the earlier run failed',
    );
    expect(starts()).toBe(1);
  });

  it('any other failure fails the question at once', async () => {
    let calls = 0;
    await expect(
      throughOutages(
        async () => {
          calls++;
          throw grpcError(7, 'Permission denied');
        },
        {},
        () => {},
        never,
        quick,
        batchStopped,
      ),
    ).rejects.toThrow('Permission denied');
    expect(calls).toBe(1);
  });

  it('an outage is timed for the whole batch: past its limit the batch stops, and one after a quiet spell is told anew', async () => {
    const clock = {};
    const told: unknown[] = [];
    const down = async (): Promise<never> => {
      throw grpcError(14, 'No connection established');
    };
    // Two questions waiting on one outage share its clock: told once between them.
    const waits = [0, 1].map(() =>
      throughOutages(down, clock, (e) => told.push(e), never, quick, batchStopped),
    );
    // Both awaited at once: the second may reject while the first is awaited.
    await Promise.all(
      waits.map((w) => expect(w).rejects.toThrow(/has not answered for 0\.2 s .* the batch stopped/)),
    );
    expect(told).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 80));
    await expect(
      throughOutages(down, clock, (e) => told.push(e), never, quick, batchStopped),
    ).rejects.toThrow(BatchError);
    expect(told).toHaveLength(2);
  });

  it('a batch that stopped ends the pauses at once, and no question is attached to again', async () => {
    const stopping = new AbortController();
    let calls = 0;
    const waiting = throughOutages(
      async () => {
        calls++;
        throw grpcError(14, 'No connection established');
      },
      {},
      () => {},
      stopping.signal,
      { ...quick, limitMs: 60_000, firstPauseMs: 60_000 },
      batchStopped,
    );
    await new Promise((r) => setTimeout(r, 20));
    stopping.abort(new Error('the batch stopped'));
    await expect(waiting).rejects.toThrow('the batch stopped');
    expect(calls).toBe(1);
  });
});

describe('sayIfNoWorker', () => {
  it('says so again when the workers go missing after they were back, once each time', async () => {
    // The server's answers in turn: missing, missing, back, back, missing again, and then missing for good.
    const answers = [false, false, true, true, false];
    let asked = 0;
    const client = {
      withDeadline: (_: number, fn: () => unknown) => fn(),
      withAbortSignal: (_: AbortSignal, fn: () => unknown) => fn(),
      workflowService: {
        describeTaskQueue: async () => ({ pollers: (answers[asked++] ?? false) ? [{}] : [] }),
      },
    } as unknown as Client;
    const cfg = { temporal: { namespace: 'default', taskQueue: 'rollouts' } } as MuseConfig;
    const said: string[] = [];
    const quiet = sayIfNoWorker(client, cfg, (why) => said.push(why), 1, 5);
    for (let waited = 0; asked < 8 && waited < 5_000; waited += 5) await new Promise((r) => setTimeout(r, 5));
    quiet();
    expect(said).toHaveLength(2);
    expect(said[0]).toMatch(/no worker is polling task queue/);
  });

  it('its cancel stops a check in flight and settles once it has ended, so the connection can then close', async () => {
    const cfg = { temporal: { namespace: 'default', taskQueue: 'rollouts' } } as MuseConfig;
    await expectCancelEndsTheCallInFlight((calls, say) => {
      const client = {
        ...calls,
        // A server slow to answer: the check is in flight until cancelled.
        workflowService: { describeTaskQueue: () => new Promise(() => {}) },
      } as unknown as Client;
      return sayIfNoWorker(client, cfg, say, 1, 5);
    });
  });
});

describe('sayIfStepsRetry', () => {
  /** A run whose describe answers, in turn, the pending steps given. */
  function describedRun(pending: { attempt: number; lastFailure?: string }[][]) {
    const calls = abortableCalls();
    let asked = 0;
    const handle = {
      workflowId: 'traj-1',
      describe: async () => {
        const now = pending[Math.min(asked++, pending.length - 1)]!;
        return {
          workflowId: 'traj-1',
          raw: {
            pendingActivities: now.map((a) => ({
              activityType: { name: 'llmStep' },
              attempt: a.attempt,
              ...(a.lastFailure ? { lastFailure: { message: a.lastFailure } } : {}),
            })),
            pendingChildren: [],
          },
        };
      },
    };
    return { client: calls as unknown as Client, handle: handle as never, calls, asked: () => asked };
  }

  it('says which step keeps failing and why, once per failure, and again when the failure changes', async () => {
    const unavailable = "pool 'nobody' is unavailable: no responders";
    const { client, handle, asked } = describedRun([
      [{ attempt: 1 }],
      [{ attempt: 2, lastFailure: unavailable }],
      [{ attempt: 3, lastFailure: unavailable }],
      [{ attempt: 4, lastFailure: unavailable }],
      [{ attempt: 5, lastFailure: 'the member timed out' }],
    ]);
    const said: string[] = [];
    const quiet = sayIfStepsRetry(
      client,
      () => handle,
      (why) => said.push(why),
      1,
      5,
    );
    for (let waited = 0; asked() < 7 && waited < 5_000; waited += 5)
      await new Promise((r) => setTimeout(r, 5));
    await quiet();
    expect(said).toEqual([
      `step llmStep is being retried (attempt 2): ${unavailable}`,
      'step llmStep is being retried (attempt 5): the member timed out',
    ]);
  });

  it('says why a step waits when its worker says so in its heartbeats (its NATS connection down), once per wait', async () => {
    const why = "the worker's NATS connection to nats://127.0.0.1:4222 is down";
    const client = {
      ...abortableCalls(),
      options: { loadedDataConverter: { payloadConverter } },
    } as unknown as Client;
    const { PENDING_ACTIVITY_STATE_STARTED: STARTED, PENDING_ACTIVITY_STATE_SCHEDULED: SCHEDULED } =
      proto.temporal.api.enums.v1.PendingActivityState;
    const waitingSince = Date.now() - 20_000;
    const details = { payloads: [payloadConverter.toPayload({ waiting: why, since: waitingSince })] };
    /** A pending step as a description lists it, with the wait its heartbeats carried. */
    const pending = (
      name: string,
      attempt: number,
      state: number,
      startedAt: number,
      beatAt: number,
      failure?: string,
    ) => ({
      activityType: { name },
      attempt,
      state,
      // As the server's descriptions carry them (seconds as a Long).
      lastStartedTime: msToTs(startedAt),
      lastHeartbeatTime: msToTs(beatAt),
      heartbeatDetails: details,
      ...(failure ? { lastFailure: { message: failure } } : {}),
    });
    let described = 0;
    const handle = {
      workflowId: 'traj-1',
      describe: async () => {
        described++;
        const now = Date.now();
        return {
          workflowId: 'traj-1',
          raw: {
            pendingActivities: [
              // A first attempt, alive and beating: nothing else would show it. Two of them (two steps alike).
              pending('llmStep', 1, STARTED, now - 30_000, now - 1_000),
              pending('llmStep', 1, STARTED, now - 30_000, now - 1_000),
              // A retry just started: the server sets its heartbeat time to its start, beside the last attempt's
              // details. Its failure, not the old wait.
              pending('summarizeStep', 3, STARTED, now - 500, now - 500, 'activity StartToClose timeout'),
              // An attempt that failed after its worker said it waited (the server keeps the details): its failure.
              // Scheduled, waiting for a worker.
              pending('toolStep', 2, SCHEDULED, now - 5_000, now - 9_000, 'activity Heartbeat timeout'),
            ],
            pendingChildren: [],
          },
        };
      },
    };
    const said: string[] = [];
    const quiet = sayIfStepsRetry(
      client,
      () => handle as never,
      (w) => said.push(w),
      1,
      5,
    );
    await expect.poll(() => described, { timeout: 2_000 }).toBeGreaterThan(3);
    await quiet();
    // Told once over several checks (the reason stays the same text while the wait lasts), the two steps as one.
    expect(said).toHaveLength(3);
    expect(said[0]).toMatch(
      new RegExp(`^step llmStep \\(and 1 more alike\\) is waiting \\(attempt 1, for 2\\d s\\): ${why}$`),
    );
    expect(said.slice(1).sort()).toEqual([
      'step summarizeStep is being retried (attempt 3): activity StartToClose timeout',
      'step toolStep is being retried (attempt 2): activity Heartbeat timeout',
    ]);
  });

  it("tells a question's rollouts failing alike as one line, naming the first, describing a few of them per check", async () => {
    const unavailable = "pool 'nobody' is unavailable: no responders";
    const rollout = { activityType: { name: 'llmStep' }, attempt: 3, lastFailure: { message: unavailable } };
    const client = {
      ...abortableCalls(),
      workflow: {
        getHandle: (id: string) => ({
          describe: async () => ({ workflowId: id, raw: { pendingActivities: [rollout] } }),
        }),
      },
    } as unknown as Client;
    const question = {
      workflowId: 'q-1',
      describe: async () => ({
        workflowId: 'q-1',
        raw: {
          pendingActivities: [],
          // 20 rollouts under way: 8 are described per check.
          pendingChildren: Array.from({ length: 20 }, (_, i) => ({ workflowId: `q-1/initial-${i}` })),
        },
      }),
    };
    const said: string[] = [];
    const quiet = sayIfStepsRetry(
      client,
      () => question as never,
      (why) => said.push(why),
      1,
      5,
    );
    await expect.poll(() => said.length, { timeout: 2_000 }).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    await quiet();
    expect(said).toEqual([
      `step llmStep of q-1/initial-0 (and 7 more alike) is being retried (attempt 3): ${unavailable}`,
    ]);
  });

  it('its cancel stops a describe in flight and settles once it has ended', async () => {
    const handle = { workflowId: 'traj-1', describe: () => new Promise(() => {}) };
    await expectCancelEndsTheCallInFlight((calls, say) =>
      sayIfStepsRetry(calls as unknown as Client, () => handle as never, say, 1, 5),
    );
  });
});

/**
 * Starts a periodic check whose server call never answers: once the call is in flight, the check's cancel must end it
 * and settle only after, with nothing said.
 */
async function expectCancelEndsTheCallInFlight(
  start: (calls: ReturnType<typeof abortableCalls>, say: (why: string) => void) => () => Promise<void>,
): Promise<void> {
  const calls = abortableCalls();
  const said: string[] = [];
  const cancel = start(calls, (why) => said.push(why));
  for (let waited = 0; calls.inFlight() === 0 && waited < 2_000; waited += 5)
    await new Promise((r) => setTimeout(r, 5));
  expect(calls.inFlight()).toBe(1);
  await cancel();
  expect(calls.inFlight()).toBe(0);
  expect(said).toEqual([]);
}
