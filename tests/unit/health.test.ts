import { describe, expect, it } from 'vitest';
import { HealthCheckUnsupportedError } from '../../inference/backends/http.js';
import { ServerHealth } from '../../inference/health.js';

type Answer = 'ok' | 'fail' | 'unsupported';

/** ServerHealth over checks answering `answers` in turn (then 'ok'), every 1 ms, out after 2 failures. */
function scripted(answers: Answer[]) {
  let checks = 0;
  const changes: Array<{ healthy: boolean; why: string }> = [];
  const health = new ServerHealth(
    'gpu',
    async () => {
      const answer = answers[checks++] ?? 'ok';
      if (answer === 'fail') throw new Error('no answer in time');
      if (answer === 'unsupported') throw new HealthCheckUnsupportedError('GET /health: HTTP 404');
    },
    { intervalMs: 1, timeoutMs: 50, failures: 2 },
    (healthy, why) => changes.push({ healthy, why }),
  );
  return { health, changes, checks: () => checks };
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ServerHealth', () => {
  it('is out of rotation until a check passes; out after failures in a row; a 404 after failures puts it back, still checked', async () => {
    const { health, changes, checks } = scripted(['fail', 'fail', 'unsupported', 'fail', 'fail']);
    // Out before the checks start too: the member's subscriptions are live a round trip earlier.
    expect(health.reason).toBe("member gpu's server has not passed a health check yet");
    health.start();
    expect(health.reason).toBe("member gpu's server has not passed a health check yet");
    for (let waited = 0; checks() < 7 && waited < 2_000; waited += 2) await settle(2);
    health.stop();
    // Not yet in rotation through the first two failures, and told so with why once they reach the limit (a server
    // that never comes up is not left unexplained); in at the 404; out after two more; back at the next pass.
    expect(changes.map((c) => c.healthy)).toEqual([false, true, false, true]);
    expect(changes[0]!.why).toBe(
      "member gpu's server has not passed a health check since the member started (2 failed): no answer in time",
    );
    expect(changes[2]!.why).toBe("member gpu's server failed 2 health checks in a row: no answer in time");
    expect(health.reason).toBeUndefined();
  });

  it('a 404 from an endpoint that answered before is a failure (a proxy while the server restarts), and checks go on', async () => {
    const { health, changes, checks } = scripted([
      'ok',
      'fail',
      'fail',
      'unsupported',
      'unsupported',
      'fail',
      'fail',
    ]);
    health.start();
    for (let waited = 0; checks() < 9 && waited < 2_000; waited += 2) await settle(2);
    health.stop();
    // In at the first pass, out after two failures, kept out through the 404s and failures, back at the next pass.
    expect(changes.map((c) => c.healthy)).toEqual([true, false, true]);
    expect(checks()).toBeGreaterThanOrEqual(8);
  });

  it('a server without a health endpoint is asked once and is in rotation from then on', async () => {
    const { health, changes, checks } = scripted(['unsupported']);
    health.start();
    await settle(50);
    health.stop();
    expect(checks()).toBe(1);
    expect(changes.map((c) => c.healthy)).toEqual([true]);
    expect(health.reason).toBeUndefined();
  });

  it('a check that ends after stop changes nothing and schedules no other', async () => {
    let release: (() => void) | undefined;
    let checks = 0;
    const changes: boolean[] = [];
    const health = new ServerHealth(
      'gpu',
      () => {
        checks++;
        return new Promise<void>((resolve) => {
          release = resolve;
        });
      },
      { intervalMs: 1 },
      (healthy) => changes.push(healthy),
    );
    health.start();
    health.stop();
    release!();
    await settle(20);
    expect(checks).toBe(1);
    expect(changes).toEqual([]);
  });

  it('a check with no answer in time is not counted while the server answers generations; it is once they stop', async () => {
    let checks = 0;
    let busy = true;
    const changes: Array<{ healthy: boolean; why: string }> = [];
    const health: ServerHealth = new ServerHealth(
      'gpu',
      (signal) => {
        // The first check passes; later ones hang until their timeout, as /health behind a full batch can.
        if (checks++ === 0) return Promise.resolve();
        return new Promise<void>((_, reject) => {
          // A generation finishes while the check waits (the member tells its health of every one).
          if (busy) setTimeout(() => health.answered(), 2);
          signal.addEventListener('abort', () => reject(new Error('no answer in time')), { once: true });
        });
      },
      { intervalMs: 1, timeoutMs: 15, failures: 2 },
      (healthy, why) => changes.push({ healthy, why }),
    );
    health.start();
    for (let waited = 0; checks < 6 && waited < 2_000; waited += 2) await settle(2);
    // Five checks timed out, each while a generation was answered: still in rotation.
    expect(changes.map((c) => c.healthy)).toEqual([true]);
    expect(health.reason).toBeUndefined();
    busy = false;
    const at = checks;
    for (let waited = 0; checks < at + 3 && waited < 2_000; waited += 2) await settle(2);
    health.stop();
    // Silence with nothing answered: out after two in a row.
    expect(changes.map((c) => c.healthy)).toEqual([true, false]);
    expect(changes[1]!.why).toBe("member gpu's server failed 2 health checks in a row: no answer in time");
  });

  it('a busy check between two silent ones leaves them in a row: out after the second', async () => {
    let checks = 0;
    const answers = [false, true, false];
    const changes: boolean[] = [];
    const health: ServerHealth = new ServerHealth(
      'gpu',
      (signal) => {
        if (checks++ === 0) return Promise.resolve();
        const generationMeanwhile = answers[checks - 2] ?? false;
        return new Promise<void>((_, reject) => {
          if (generationMeanwhile) setTimeout(() => health.answered(), 2);
          signal.addEventListener('abort', () => reject(new Error('no answer in time')), { once: true });
        });
      },
      { intervalMs: 1, timeoutMs: 15, failures: 2 },
      (healthy) => changes.push(healthy),
    );
    health.start();
    // Until the fourth check has ended (the fifth begun).
    for (let waited = 0; checks < 5 && waited < 2_000; waited += 2) await settle(2);
    health.stop();
    // In at the first check; silent, busy (not counted), silent: two failures in a row, out.
    expect(changes).toEqual([true, false]);
  });
});
