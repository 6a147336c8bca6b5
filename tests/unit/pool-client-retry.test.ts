// Where the router sends an attempt once every member it ranks has been tried for the request.
import { describe, expect, it } from 'vitest';
import { retryTarget, type TriedOutcome } from '../../inference/pool-client.js';

describe('retryTarget', () => {
  it('prefers a member that only answered overloaded over one that failed', () => {
    const tried = new Map<string, TriedOutcome>([
      ['a', 'failed'],
      ['b', 'backpressure'],
    ]);
    expect(retryTarget(['a', 'b'], tried)).toBe('b');
  });

  it("otherwise takes the member tried longest ago, not the policy's first choice that just failed", () => {
    // Tried a, then b, then a again: b's failure is the older one.
    const tried = new Map<string, TriedOutcome>([
      ['b', 'failed'],
      ['a', 'failed'],
    ]);
    expect(retryTarget(['a', 'b'], tried)).toBe('b');
  });

  it("never goes back to a member that refused the request's size (HTTP 413): it would refuse again", () => {
    const tried = new Map<string, TriedOutcome>([
      ['a', 'size_refused'],
      ['b', 'failed'],
    ]);
    expect(retryTarget(['a', 'b'], tried)).toBe('b');
    expect(retryTarget(['a'], tried)).toBeUndefined();
  });

  it('ignores members no longer ranked (gone or circuit open)', () => {
    const tried = new Map<string, TriedOutcome>([
      ['gone', 'backpressure'],
      ['x', 'failed'],
      ['y', 'failed'],
    ]);
    expect(retryTarget(['y', 'x'], tried)).toBe('x');
    expect(retryTarget(['z'], tried)).toBe('z');
  });
});
