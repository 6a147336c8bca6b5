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
