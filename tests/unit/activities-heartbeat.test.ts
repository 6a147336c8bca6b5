import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import { withHeartbeat } from '../../activities/heartbeat.js';

describe('withHeartbeat', () => {
  it('heartbeats while a wait runs past the heartbeat timeout, and stops when it settles', async () => {
    // Heartbeat timeout 600 ms: a beat every 200 ms, so a 700 ms wait (a slow tool) beats 3 times (2 leaves slack).
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 600 });
    let beats = 0;
    env.on('heartbeat', () => beats++);
    const result = await env.run(() =>
      withHeartbeat(async (ctx) => {
        expect(ctx.cancellationSignal.aborted).toBe(false);
        await new Promise((r) => setTimeout(r, 700));
        return 'done';
      }),
    );
    expect(result).toBe('done');
    expect(beats).toBeGreaterThanOrEqual(2);
    const settled = beats;
    await new Promise((r) => setTimeout(r, 450));
    expect(beats).toBe(settled);
  });

  it('stops heartbeating when the wait fails', async () => {
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 600 });
    let beats = 0;
    env.on('heartbeat', () => beats++);
    await expect(
      env.run(() =>
        withHeartbeat(async () => {
          await new Promise((r) => setTimeout(r, 250));
          throw new Error('tool failed');
        }),
      ),
    ).rejects.toThrow('tool failed');
    const settled = beats;
    await new Promise((r) => setTimeout(r, 450));
    expect(beats).toBe(settled);
  });
});
