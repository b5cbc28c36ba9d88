/**
 * Exponential backoff with jitter for retrying etcd: a small state machine
 * (`next()` grows the delay, `reset()` after a success) so loops stay simple
 * and never spin.
 */
export interface BackoffOptions {
  /** First delay. Default 500 ms. */
  minMs?: number;
  /** Ceiling. Default 10 000 ms. */
  maxMs?: number;
  /** Fraction of random spread around each delay (0 = none). Default 0.2. */
  jitter?: number;
  /** Random source in [0, 1). Default Math.random. */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly minMs: number;
  private readonly maxMs: number;
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.minMs = opts.minMs ?? 500;
    this.maxMs = Math.max(opts.maxMs ?? 10_000, this.minMs);
    this.jitter = opts.jitter ?? 0.2;
    this.random = opts.random ?? Math.random;
  }

  /** The delay before the next attempt; each call doubles it up to the ceiling. */
  next(): number {
    const base = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    const spread = base * this.jitter * (2 * this.random() - 1);
    return Math.max(0, Math.round(base + spread));
  }

  reset(): void {
    this.attempt = 0;
  }

  /** Consecutive failures since the last reset. */
  get failures(): number {
    return this.attempt;
  }
}
