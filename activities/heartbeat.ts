// Heartbeating for activities. The workflows run steps under a heartbeat timeout so that a dead worker is noticed
// quickly; a live one must keep beating however long its attempt takes: a model call, a tool, and the content reads
// and writes around them (a cold read of a long context, a store write waiting on a JetStream leader election).
import type { Context } from '@temporalio/activity';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';

/** When each activity attempt started, as the worker saw it (see markAttemptStart), or first asked for a deadline. */
const startedAt = new WeakMap<Context, number>();

/**
 * Notes that the activity attempt of `ctx` starts now. The rollout worker's activity interceptor calls it before
 * the activity runs, so a deadline asked for later (after reading a long step log, say) still counts from the start.
 */
export function markAttemptStart(ctx: Context, now = Date.now()): void {
  if (!startedAt.has(ctx)) startedAt.set(ctx, now);
}

/**
 * What an activity's heartbeats carry while the worker knows why its step waits (see attemptInterceptor): the reason,
 * the same text for as long as the wait lasts (a notice keyed on it is told once), and since when (epoch ms).
 */
export interface WaitingDetails {
  waiting: string;
  since: number;
}

/**
 * The rollout worker's activity interceptor: marks each attempt's start before the activity runs, and heartbeats
 * every third of the heartbeat timeout (within 200 ms to 2 s) until the attempt settles, so no part of an activity
 * (its content reads and writes included) can outlast the heartbeat timeout on a live worker. While `waiting` says why
 * the worker's steps wait (its NATS connection down, say), the heartbeats carry it (WaitingDetails), so `muse run`
 * and `muse status` can tell a step that waits from one that works: the step is alive, not failing, and nothing
 * else would show.
 */
export const attemptInterceptor =
  (waiting?: () => WaitingDetails | undefined): ActivityInterceptorsFactory =>
  (ctx) => ({
    inbound: {
      async execute(input, next) {
        markAttemptStart(ctx);
        const periodMs = Math.max(200, Math.min(2000, (ctx.info.heartbeatTimeoutMs ?? 10_000) / 3));
        // Each beat's details replace the last ones the server holds, so a beat without a wait clears one told before.
        const beat = setInterval(() => ctx.heartbeat(waiting?.()), periodMs);
        try {
          return await next(input);
        } finally {
          clearInterval(beat);
        }
      },
    },
  });

/**
 * The time by which work inside the current activity attempt must end (a model call's deadline). Start-to-close
 * counts from when the attempt started, not when it was scheduled: time spent queued for a worker slot is not the
 * call's to lose. The start is when the worker began running the attempt (markAttemptStart), or, where nothing
 * marked it, the first ask; a second of margin covers the moment between the server's start and the worker's. Only
 * the worker's clock is read: the server's timestamps, on a worker whose clock runs behind, would put the deadline
 * past the server's by the difference, and the attempt would be retried while its call still held a GPU.
 */
export function attemptDeadline(ctx: Context, now = Date.now()): number {
  markAttemptStart(ctx, now);
  return startedAt.get(ctx)! + ctx.info.startToCloseTimeoutMs - 1000;
}
