import { type Client, ServiceError } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { throughOutages } from '../../client/batch.js';
import { isServiceOutage, sayIfNoWorker } from '../../client/trajectories.js';
import type { MuseConfig } from '../../common/config.js';

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

  it('a question whose client calls fail for an outage is attached to again, and its result taken, not failed', async () => {
    let calls = 0;
    const told: unknown[] = [];
    const result = await throughOutages(
      async () => {
        if (++calls < 3) throw grpcError(14, 'No connection established');
        return 'answer';
      },
      (err) => told.push(err),
    );
    expect(result).toBe('answer');
    expect(calls).toBe(3);
    expect(told).toHaveLength(2);
  });

  it('any other failure fails the question at once', async () => {
    let calls = 0;
    await expect(
      throughOutages(
        async () => {
          calls++;
          throw grpcError(7, 'Permission denied');
        },
        () => {},
      ),
    ).rejects.toThrow('Permission denied');
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
});
