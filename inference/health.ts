// A pool member's checks of its server's health (vLLM's and SGLang's GET /health): they decide when the member is
// in rotation. Started with the member, stopped with it; the member acts on each change (announces it, and fails
// over what it holds when the server drops out).
import { HealthCheckUnsupportedError } from './backends/http.js';
import { monotonicNow } from './retry.js';

/**
 * The member is in rotation once its server has passed a check (the first runs at start), and checks again
 * `intervalMs` after the last check ended (default 5 s; 0: no checks, and in rotation from the start), each check
 * given `timeoutMs` (default 5 s). After `failures` failed checks in a row (default 3; a server that stopped answering
 * is out after failures x (interval + timeout), 30 s by default) it is out of rotation until a check passes. A check
 * that gets no answer in time while the server answered a generation (see answered) is not counted: the server is
 * busy, not gone, and failing everything it holds would throw that work away.
 */
export interface HealthCheckOptions {
  intervalMs?: number;
  timeoutMs?: number;
  failures?: number;
}

const DEFAULT_INTERVAL_MS = 5000;

/** Whether `opts` has checks run at all (an interval of 0 turns them off). */
export function healthChecksOn(opts: HealthCheckOptions | undefined): boolean {
  return (opts?.intervalMs ?? DEFAULT_INTERVAL_MS) > 0;
}

export class ServerHealth {
  /** Why the server is out of rotation; undefined while it is in. */
  reason: string | undefined;
  private failed = 0;
  /** The health endpoint has answered 2xx: it exists, so a 404 from then on is a proxy's, not its absence. */
  private endpointSeen = false;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  /** When the server last answered a generation (monotonic ms). */
  private answeredAt = -Infinity;

  constructor(
    private readonly memberId: string,
    private readonly check: (signal: AbortSignal) => Promise<void>,
    private readonly opts: HealthCheckOptions,
    /** Told when the server leaves rotation and when it comes back, with why. */
    private readonly onChange: (healthy: boolean, why: string) => void,
  ) {
    // From the start, not from start(): the member's subscriptions are live before it starts the checks, and a
    // request or a question of who serves the pool may come in between.
    this.reason = `member ${memberId}'s server has not passed a health check yet`;
  }

  /** Out of rotation until the first check, which runs at once, passes. */
  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** The server answered a generation: proof it serves, whatever a slow health endpoint says meanwhile. */
  answered(): void {
    this.answeredAt = monotonicNow();
  }

  private async run(): Promise<void> {
    let failure: Error | undefined;
    let unsupported = false;
    const startedAt = monotonicNow();
    const timeout = AbortSignal.timeout(this.opts.timeoutMs ?? 5000);
    try {
      await this.check(timeout);
      this.endpointSeen = true;
    } catch (err) {
      // An endpoint that answered before is there: its 404 now is a proxy's while the server restarts behind it.
      if (err instanceof HealthCheckUnsupportedError && !this.endpointSeen) unsupported = true;
      else failure = err as Error;
    }
    if (this.stopped) return; // what a stopping member holds, it finishes as it can
    // A server under load can be slow to answer /health (SGLang's goes through its scheduler) while it keeps finishing
    // requests: only a refusal, or silence while no generation was answered either, counts as a failure.
    // Such a check is not counted either way: the failures before and after it are still in a row.
    const busy = failure !== undefined && timeout.aborted && this.answeredAt >= startedAt;
    if (failure && !busy) this.fail(failure);
    else if (!failure) {
      // No health endpoint: the server answers, so it is in rotation, and there is nothing to check from now on;
      // unless checks had failed (the server may be coming up behind a proxy), where they go on one more round.
      const keepChecking = !unsupported || this.failed > 0;
      this.pass();
      if (!keepChecking) return;
    }
    this.timer = setTimeout(() => void this.run(), this.opts.intervalMs ?? DEFAULT_INTERVAL_MS);
  }

  private pass(): void {
    this.failed = 0;
    if (this.reason === undefined) return;
    this.reason = undefined;
    this.onChange(true, `member ${this.memberId}'s server passes its health check: in rotation`);
  }

  private fail(err: Error): void {
    this.failed++;
    const limit = this.opts.failures ?? 3;
    // In rotation: out at the limit. Out since the start, nothing changes for routers; but a server that never came
    // up (a wrong --base-url) is told to the operator once, with why, instead of a member that serves nothing
    // unexplained. Out after failures: said already.
    const why =
      this.reason === undefined && this.failed >= limit
        ? `failed ${this.failed} health checks in a row`
        : !this.endpointSeen && this.failed === limit
          ? `has not passed a health check since the member started (${this.failed} failed)`
          : undefined;
    if (why === undefined) return;
    this.reason = `member ${this.memberId}'s server ${why}: ${err.message}`;
    this.onChange(false, this.reason);
  }
}
