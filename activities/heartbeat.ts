// Heartbeating for activities that wait on something slow (a model call, a tool). The workflows run steps
// under a heartbeat timeout so that a dead worker is noticed quickly; a live one must keep beating however
// long the wait itself takes.
import { Context } from '@temporalio/activity';

/**
 * Runs `fn` in the current activity, heartbeating every third of the heartbeat timeout (within 200 ms to 2 s)
 * until it settles. `fn` gets the activity's context (deadline, cancellation signal).
 */
export async function withHeartbeat<T>(fn: (ctx: Context) => Promise<T>): Promise<T> {
  const ctx = Context.current();
  const periodMs = Math.max(200, Math.min(2000, (ctx.info.heartbeatTimeoutMs ?? 10_000) / 3));
  const beat = setInterval(() => ctx.heartbeat(), periodMs);
  try {
    return await fn(ctx);
  } finally {
    clearInterval(beat);
  }
}

/** When each activity attempt first asked for a deadline: the closest the worker sees to the attempt's start. */
const firstAskedAt = new WeakMap<Context, number>();

/**
 * The time by which work inside the current activity attempt must end (a model call's deadline). Start-to-close
 * counts from when the attempt started, not when it was scheduled: time spent queued for a worker slot is not the
 * call's to lose. The worker does not see the start; the first ask comes within a second of it (after reading the
 * step's context), so a second of margin keeps the deadline inside the activity's own.
 */
export function attemptDeadline(ctx: Context, now = Date.now()): number {
  const { currentAttemptScheduledTimestampMs: scheduled, startToCloseTimeoutMs: limit } = ctx.info;
  let asked = firstAskedAt.get(ctx);
  if (asked === undefined) {
    asked = now;
    firstAskedAt.set(ctx, asked);
  }
  return Math.max(scheduled + limit - 250, asked + limit - 1000);
}
