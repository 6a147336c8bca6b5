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

  it('goes back to a member that turned the request away (stopping, unhealthy) only when no other is left', () => {
    // a turned it away first, then b failed: b, though a was tried longer ago.
    const tried = new Map<string, TriedOutcome>([
      ['a', 'turned_away'],
      ['b', 'failed'],
    ]);
    expect(retryTarget(['a', 'b'], tried)).toBe('b');
    expect(retryTarget(['a'], tried)).toBe('a');
    // Not taken for a busy one.
    expect(retryTarget(['a', 'b'], new Map<string, TriedOutcome>([['a', 'turned_away']]))).toBe('b');
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
