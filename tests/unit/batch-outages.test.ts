import { ServiceError } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { throughOutages } from '../../client/batch.js';
import { isServiceOutage } from '../../client/trajectories.js';

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
