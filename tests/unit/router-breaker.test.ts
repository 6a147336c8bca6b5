import { describe, expect, it, vi } from 'vitest';
import { CircuitBreaker } from '../../inference/router/breaker.js';

function clock() {
  let t = 1_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('CircuitBreaker', () => {
  it('opens after N consecutive failures, half-opens after the cooldown, closes on a successful probe', () => {
    const c = clock();
    const b = new CircuitBreaker({ failureThreshold: 3, cooldownMs: 1000, now: c.now });
    expect(b.state).toBe('closed');
    b.onFailure();
    b.onFailure();
    b.onSuccess(); // resets the run
    b.onFailure();
    b.onFailure();
    expect(b.state).toBe('closed');
    b.onFailure();
    expect(b.state).toBe('open');
    expect(b.isAvailable()).toBe(false);
    expect(b.tryAcquire()).toBeNull();
    c.advance(999);
    expect(b.state).toBe('open');
    c.advance(1);
    expect(b.state).toBe('half_open');
    expect(b.isAvailable()).toBe(true);
    expect(b.tryAcquire()).toMatchObject({ probe: true });
    // only one probe at a time
    expect(b.tryAcquire()).toBeNull();
    expect(b.isAvailable()).toBe(false);
    b.onSuccess();
    expect(b.state).toBe('closed');
    expect(b.consecutiveFailures).toBe(0);
  });

  it('re-opens on a failed probe with a longer cooldown', () => {
    const c = clock();
    const b = new CircuitBreaker({
      failureThreshold: 1,
      cooldownMs: 1000,
      cooldownMultiplier: 2,
      maxCooldownMs: 3000,
      now: c.now,
    });
    b.onFailure();
    c.advance(1000);
    const probe = b.tryAcquire();
    expect(probe).toMatchObject({ probe: true });
    b.onFailure(probe);
    expect(b.state).toBe('open');
    c.advance(1999);
    expect(b.state).toBe('open');
    c.advance(1);
    expect(b.state).toBe('half_open');
    b.onFailure(b.tryAcquire());
    c.advance(2999);
    expect(b.state).toBe('open'); // capped at 3000
    c.advance(1);
    expect(b.state).toBe('half_open');
  });

  it('hands out another probe when the first one never reports back', () => {
    const c = clock();
    const b = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 500, now: c.now });
    b.onFailure();
    c.advance(500);
    expect(b.tryAcquire()).toMatchObject({ probe: true });
    c.advance(499);
    expect(b.tryAcquire()).toBeNull();
    c.advance(1);
    expect(b.tryAcquire()).toMatchObject({ probe: true });
  });

  it('resets the cooldown after recovering', () => {
    const c = clock();
    const b = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 100, now: c.now });
    b.onFailure();
    c.advance(100);
    b.onFailure(b.tryAcquire()); // cooldown 200
    c.advance(200);
    b.tryAcquire();
    b.onSuccess();
    b.onFailure();
    c.advance(100);
    expect(b.state).toBe('half_open');
  });

  it('lets only the probe decide a half-open circuit: late failures of earlier requests are ignored', () => {
    const c = clock();
    const b = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 1000, now: c.now });
    const early = b.tryAcquire();
    expect(early).toEqual({ probe: false });
    b.onFailure(early);
    expect(b.state).toBe('open');
    c.advance(1000);
    expect(b.state).toBe('half_open');
    // Requests sent while it was closed fail now, before any probe went out: nothing changes.
    b.onFailure(early);
    b.onFailure();
    expect(b.state).toBe('half_open');
    const probe = b.tryAcquire();
    b.onFailure(early);
    expect(b.state).toBe('half_open');
    b.onFailure(probe);
    expect(b.state).toBe('open');
    c.advance(1999);
    expect(b.state).toBe('open'); // one doubling, not four
    c.advance(1);
    expect(b.state).toBe('half_open');
  });

  it('frees the probe when its request ends saying nothing about the member (overloaded, caller gone)', () => {
    const c = clock();
    const b = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 500, now: c.now });
    b.onFailure();
    c.advance(500);
    const probe = b.tryAcquire();
    expect(probe).toMatchObject({ probe: true });
    expect(b.tryAcquire()).toBeNull();
    b.release(probe);
    expect(b.state).toBe('half_open');
    expect(b.tryAcquire()).toMatchObject({ probe: true });
    // Releasing a request that was not the probe frees nothing.
    b.release({ probe: false });
    expect(b.tryAcquire()).toBeNull();
  });

  it("holds a probe for its attempt's timeout, and a probe replaced after that no longer decides", () => {
    const c = clock();
    const b = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 500, now: c.now });
    b.onFailure();
    c.advance(500);
    const first = b.tryAcquire(10_000);
    c.advance(9_999);
    expect(b.tryAcquire()).toBeNull(); // a long generation still running: no second probe behind it
    c.advance(1);
    const second = b.tryAcquire(10_000);
    expect(second).toMatchObject({ probe: true });
    b.onFailure(first); // the first probe's attempt timing out late
    expect(b.state).toBe('half_open');
    b.onFailure(second);
    expect(b.state).toBe('open');
  });
});

describe('CircuitBreaker on its default clock', () => {
  it('a wall clock stepped back (NTP, a resumed VM) does not keep an open circuit open', async () => {
    // The wall clock is the test's from here (it stands still unless set).
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const breaker = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 50 });
      breaker.onFailure();
      expect(breaker.state).toBe('open');
      vi.setSystemTime(Date.now() - 600_000);
      await new Promise((r) => setTimeout(r, 80));
      expect(breaker.state).toBe('half_open');
    } finally {
      vi.useRealTimers();
    }
  });
});
