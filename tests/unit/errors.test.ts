import { describe, expect, it } from 'vitest';
import { causeChainMessage } from '../../common/errors.js';

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
