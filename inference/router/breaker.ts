// Per-member circuit breakers. A member that keeps failing is taken out of rotation for a cooldown instead of
// costing every request a timeout before failover; after the cooldown one probe request decides whether it is back.

import { monotonicNow } from '../retry.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

/** Leave to send one request; a half-open circuit hands out one probe, whose outcome alone decides. */
export interface BreakerTicket {
  probe: boolean;
  /** When a probe was handed out: a probe replaced after its hold ran out no longer speaks for the member. */
  since?: number;
}

export interface BreakerOptions {
  /** Consecutive failures that open the circuit. Default 5. */
  failureThreshold?: number;
  /** How long an open circuit stays open before one probe is let through. Default 5 s. */
  cooldownMs?: number;
  /** Each failed probe multiplies the cooldown by this, up to maxCooldownMs, so a dead member is tried rarely. Default 2. */
  cooldownMultiplier?: number;
  /** Default 60 s. */
  maxCooldownMs?: number;
  /** Default monotonicNow: a wall clock stepped back would keep an open circuit open as long again. */
  now?: () => number;
}

export class CircuitBreaker {
  private readonly threshold: number;
  private readonly baseCooldown: number;
  private readonly multiplier: number;
  private readonly maxCooldown: number;
  private readonly now: () => number;

  private _state: BreakerState = 'closed';
  private failures = 0;
  private cooldown: number;
  private openedAt = 0;
  /** When the half-open probe was handed out, and how long it may stay out; undefined while none is out. */
  private probeSince: number | undefined;
  private probeHoldMs = 0;

  constructor(opts: BreakerOptions = {}) {
    this.threshold = Math.max(1, opts.failureThreshold ?? 5);
    this.baseCooldown = Math.max(0, opts.cooldownMs ?? 5_000);
    this.multiplier = Math.max(1, opts.cooldownMultiplier ?? 2);
    this.maxCooldown = Math.max(this.baseCooldown, opts.maxCooldownMs ?? 60_000);
    this.now = opts.now ?? monotonicNow;
    this.cooldown = this.baseCooldown;
  }

  /** The state now; an open circuit whose cooldown has passed reads as half-open. */
  get state(): BreakerState {
    if (this._state === 'open' && this.now() - this.openedAt >= this.cooldown) {
      this._state = 'half_open';
      this.probeSince = undefined;
    }
    return this._state;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }

  /**
   * Whether the router may send to this member now, without taking the half-open probe. Routers use it to build
   * the healthy set; the member then gets the probe through tryAcquire.
   */
  isAvailable(): boolean {
    const s = this.state;
    if (s === 'closed') return true;
    if (s === 'open') return false;
    return this.probeFree();
  }

  /**
   * Call right before sending; null when the member must not be sent to. In half-open, one probe at a time, out for
   * at most `holdMs` (the attempt's timeout; default the cooldown): a model call takes far longer than a cooldown,
   * and a second probe sent while the first still runs would only wait on the same member.
   */
  tryAcquire(holdMs = this.cooldown): BreakerTicket | null {
    const s = this.state;
    if (s === 'closed') return { probe: false };
    if (s === 'open' || !this.probeFree()) return null;
    this.probeSince = this.now();
    this.probeHoldMs = Math.max(this.cooldown, holdMs);
    return { probe: true, since: this.probeSince };
  }

  private probeFree(): boolean {
    // A probe whose outcome never came back (the caller crashed or forgot) must not pin the circuit half-open
    // forever: once its hold has passed a new probe is allowed.
    return this.probeSince === undefined || this.now() - this.probeSince >= this.probeHoldMs;
  }

  private isCurrentProbe(ticket: BreakerTicket | null | undefined): boolean {
    return ticket?.probe === true && ticket.since === this.probeSince;
  }

  /**
   * The request ended without saying anything about the member's health (the caller gave up, its own deadline
   * passed, the member answered `overloaded`, the server refused the request as such): a probe's place is free again.
   */
  release(ticket?: BreakerTicket | null): void {
    if (this.isCurrentProbe(ticket)) this.probeSince = undefined;
  }

  onSuccess(): void {
    this._state = 'closed';
    this.failures = 0;
    this.cooldown = this.baseCooldown;
    this.probeSince = undefined;
  }

  /**
   * A request to the member failed. In half-open only the probe's failure counts: a request sent before the circuit
   * opened that fails late says nothing about whether the member is back, and must not lengthen the cooldown.
   */
  onFailure(ticket?: BreakerTicket | null): void {
    const s = this.state;
    if (s === 'half_open' && !this.isCurrentProbe(ticket)) return;
    this.failures++;
    if (s === 'half_open') {
      this.cooldown = Math.min(this.maxCooldown, this.cooldown * this.multiplier);
      this.trip();
    } else if (s === 'closed' && this.failures >= this.threshold) {
      this.trip();
    }
    // Failures while open come from requests sent before it opened; they do not extend the cooldown.
  }

  private trip(): void {
    this._state = 'open';
    this.openedAt = this.now();
    this.probeSince = undefined;
  }
}
