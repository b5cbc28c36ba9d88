/** Exponential backoff with jitter, capped: initial, 2x, 4x ... max, each +-jitter. */
export interface BackoffOptions {
  /** Default 500 ms. */
  initialMs?: number;
  /** Default 30 000 ms. */
  maxMs?: number;
  /** Fraction of the delay added or removed at random. Default 0.2. */
  jitter?: number;
  /** Default Math.random (tests pass a fixed one). */
  random?: () => number;
}

export class Backoff {
  private failures = 0;
  constructor(private readonly o: BackoffOptions = {}) {}

  /** The pause before the next attempt after one more failure. */
  next(): number {
    this.failures++;
    const initial = this.o.initialMs ?? 500;
    const max = this.o.maxMs ?? 30_000;
    const base = Math.min(max, initial * 2 ** Math.min(this.failures - 1, 30));
    const j = this.o.jitter ?? 0.2;
    const r = (this.o.random ?? Math.random)();
    return Math.max(0, Math.round(base * (1 + j * (2 * r - 1))));
  }

  get attempts(): number {
    return this.failures;
  }

  reset(): void {
    this.failures = 0;
  }
}
