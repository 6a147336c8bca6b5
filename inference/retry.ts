// Waiting between retries, shared by the HTTP backends (retrying one server) and the pool client (failing over
// across members). Runs in pool members and rollout workers, never in workflow code, so Math.random is fine here.

export interface BackoffOptions {
  /** First retry waits about this long (before jitter). Default 200 ms. */
  baseMs?: number;
  /** The exponential wait stops growing here. Default 10 s. */
  maxMs?: number;
}

/** Wait before retry `attempt` (0 for the first retry): exponential, capped, with equal jitter. */
export function backoffDelay(attempt: number, opts: BackoffOptions | undefined): number {
  const base = opts?.baseMs ?? 200;
  const max = opts?.maxMs ?? 10_000;
  const exp = Math.min(max, base * 2 ** attempt);
  // Equal jitter: keeps a floor so retries do not hammer, and spreads callers that failed together.
  return exp / 2 + Math.random() * (exp / 2);
}

/**
 * The latest deadline a timer can keep: setTimeout fires at once for a delay past 2^31-1 ms (about 24.8 days), so a
 * deadline further off (a garbage or hostile request) would end the request immediately, and one past what a Date
 * can hold would throw when printed. Later deadlines are brought in to this.
 */
export function timerDeadline(deadline: number, now = Date.now()): number {
  return Math.min(deadline, now + MAX_TIMER_MS);
}
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A clock a stepped wall clock (NTP, a resumed VM) does not move, for intervals (TTLs, leases, cooldowns): stepped
 * back, Date.now would hold each of them open for as long again.
 */
export const monotonicNow = (): number => performance.now();

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * `work`, or the signal's reason as soon as it aborts: the caller stops waiting (and frees what it holds) while
 * work that cannot be cancelled (a content store read) finishes on its own.
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => {});
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
