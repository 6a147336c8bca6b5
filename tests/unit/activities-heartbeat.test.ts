import { Context } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import {
  attemptDeadline,
  attemptInterceptor,
  markAttemptStart,
  type WaitingDetails,
} from '../../activities/heartbeat.js';

/** Runs `activity` as the worker does, through its attempt interceptor, in `env`. */
async function intercepted(
  env: MockActivityEnvironment,
  activity: () => Promise<unknown>,
  waiting?: () => WaitingDetails | undefined,
): Promise<unknown> {
  return env.run(() =>
    attemptInterceptor(waiting)(Context.current()).inbound!.execute!({ args: [], headers: {} }, activity),
  );
}

describe("the worker's attempt interceptor", () => {
  it("carries in its heartbeats why the worker's steps wait, while it says so, and nothing otherwise", async () => {
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 600 });
    const details: unknown[] = [];
    env.on('heartbeat', (d: unknown) => details.push(d));
    let why: WaitingDetails | undefined;
    let told = 0;
    await intercepted(
      env,
      async () => {
        await new Promise((r) => setTimeout(r, 450));
        why = { waiting: 'NATS down', since: 1_000 };
        await new Promise((r) => setTimeout(r, 450));
        told = details.length;
        why = undefined;
        await new Promise((r) => setTimeout(r, 450));
      },
      () => why,
    );
    expect(details[0]).toBeUndefined();
    expect(details[told - 1]).toEqual({ waiting: 'NATS down', since: 1_000 });
    // Back: the beats carry nothing, which replaces the wait the server held.
    expect(details.at(-1)).toBeUndefined();
  });

  it('heartbeats through the whole attempt, whatever it waits on (a tool, a slow content read), and stops when it settles', async () => {
    // Heartbeat timeout 600 ms: a beat every 200 ms. The activity runs past the timeout, and on until it has seen 3
    // beats (~600 ms on an idle machine; a stalled one may need longer) or 10 s without them.
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 600 });
    let beats = 0;
    env.on('heartbeat', () => beats++);
    const result = await intercepted(env, async () => {
      const t0 = Date.now();
      while ((beats < 3 || Date.now() - t0 < 700) && Date.now() - t0 < 10_000)
        await new Promise((r) => setTimeout(r, 50));
      return 'done';
    });
    expect(result).toBe('done');
    expect(beats).toBeGreaterThanOrEqual(3);
    const settled = beats;
    await new Promise((r) => setTimeout(r, 450));
    expect(beats).toBe(settled);
  });

  it('stops heartbeating when the activity fails', async () => {
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 600 });
    let beats = 0;
    env.on('heartbeat', () => beats++);
    await expect(
      intercepted(env, async () => {
        // Past the first beat (every 200 ms), so there is a heartbeat to stop.
        const t0 = Date.now();
        while (beats === 0 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50));
        throw new Error('tool failed');
      }),
    ).rejects.toThrow('tool failed');
    const settled = beats;
    expect(settled).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 450));
    expect(beats).toBe(settled);
  });
});

describe('attemptDeadline', () => {
  it('counts start-to-close from when the attempt started, not from when it was scheduled', async () => {
    const now = Date.now();
    // Queued 6 minutes for a worker slot; start-to-close 650 s.
    const env = new MockActivityEnvironment({
      currentAttemptScheduledTimestampMs: now - 360_000,
      startToCloseTimeoutMs: 650_000,
    });
    const [first, later] = await env.run(async (): Promise<[number, number]> => {
      const ctx = Context.current();
      return [attemptDeadline(ctx, now), attemptDeadline(ctx, now + 30_000)];
    });
    expect(first).toBe(now + 650_000 - 1000);
    // A second call in the same attempt (a prompt cut down after a context-length refusal) keeps that deadline.
    expect(later).toBe(first);
  });

  it("reads the worker's clock only: one running behind the server's does not push the deadline past the server's", async () => {
    const now = Date.now();
    // The server scheduled the attempt at what this worker's clock calls 5 s from now.
    const env = new MockActivityEnvironment({
      currentAttemptScheduledTimestampMs: now + 5_000,
      startToCloseTimeoutMs: 60_000,
    });
    const deadline = await env.run(async () => attemptDeadline(Context.current(), now));
    expect(deadline).toBe(now + 60_000 - 1000);
  });

  it("counts from the attempt's marked start when the deadline is first asked for later (after reading its inputs)", async () => {
    const now = Date.now();
    const env = new MockActivityEnvironment({
      currentAttemptScheduledTimestampMs: now - 360_000,
      startToCloseTimeoutMs: 60_000,
    });
    const deadline = await env.run(async () => {
      markAttemptStart(Context.current(), now);
      return attemptDeadline(Context.current(), now + 3_000);
    });
    // Not 3 s past the activity's own timeout, as counting from the first ask would give.
    expect(deadline).toBe(now + 60_000 - 1000);
  });

  it("the worker's interceptor marks the start before the activity runs, so a late ask still counts from it", async () => {
    const env = new MockActivityEnvironment({
      currentAttemptScheduledTimestampMs: Date.now() - 360_000,
      startToCloseTimeoutMs: 60_000,
    });
    const { deadline, started } = await env.run(async (): Promise<{ deadline: number; started: number }> => {
      const ctx = Context.current();
      const execute = attemptInterceptor()(ctx).inbound!.execute!;
      const started = Date.now();
      const deadline = (await execute({ args: [], headers: {} }, async () =>
        // The activity reads its inputs for 3 s before it asks.
        attemptDeadline(ctx, started + 3_000),
      )) as number;
      return { deadline, started };
    });
    expect(deadline).toBeGreaterThanOrEqual(started + 60_000 - 1000);
    expect(deadline).toBeLessThan(started + 60_000 - 1000 + 500);
  });
});
