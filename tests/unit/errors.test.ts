import { describe, expect, it } from 'vitest';
import { causeChainMessage, causeCodes } from '../../common/errors.js';

describe('causeChainMessage', () => {
  it('joins the causes, each once, and keeps a cause that is a bare string', () => {
    const inner = new Error('nats: timeout');
    const outer = new Error('Activity task failed', { cause: inner });
    expect(causeChainMessage(outer)).toBe('Activity task failed: nats: timeout');
    expect(causeChainMessage(new Error('write failed', { cause: 'disk full' }))).toBe(
      'write failed: disk full',
    );
    // A message an outer one already repeats is given once.
    expect(causeChainMessage(new Error('step failed: nats: timeout', { cause: inner }))).toBe(
      'step failed: nats: timeout',
    );
  });
});

describe('causeCodes', () => {
  it("reads the numeric codes of a failure's causes, as the Temporal client wraps a gRPC error, once each in a loop", () => {
    const grpc = Object.assign(new Error('14 UNAVAILABLE'), { code: 14 });
    const wrapped = new Error('Failed to start Workflow', { cause: grpc });
    expect(causeCodes(wrapped)).toEqual([14]);
    // A system error's code is a name, not a status.
    expect(causeCodes(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).toEqual([]);
    const loop = Object.assign(new Error('a'), { code: 4 }) as Error & { cause?: unknown };
    loop.cause = loop;
    expect(causeCodes(loop)).toEqual([4]);
  });
});
