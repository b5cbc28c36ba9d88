import { systemTimers, type TimerHandle, type Timers } from './clock.js';
import type { Logger } from './log.js';

export interface RunnerOptions {
  /** Name for logs. */
  name: string;
  /** Never run more often than this. Default 1000 ms. */
  minIntervalMs?: number;
  /** Run at least this often even without requests (periodic reconcile). Default 10 s. */
  maxIntervalMs?: number;
  /** After a failed run, retry after this long; doubled per further failure in a row. Default 1000 ms. */
  retryMs?: number;
  /** Cap of the doubled retry delay. Default retryMs (no growth). */
  maxRetryMs?: number;
  log: Logger;
  /** Time and timers; tests pass FakeTimers. Default: the real clock. */
  timers?: Timers;
}

/**
 * Bounded-frequency runner (kube-proxy's shape): callers `request()` a run;
 * requests coalesce; runs never overlap, are spaced by minInterval, happen at
 * least every maxInterval, and a failed run is retried with exponential
 * backoff (capped, reset by a success). While backing off, requests do not
 * bring the next run forward: a sync that keeps failing (a rule of someone
 * else's, a hostile object) must not be retried once a second forever just
 * because changes keep arriving. The callback is the one writer to the kernel.
 */
export class BoundedFrequencyRunner {
  private pending = false;
  private running = false;
  private lastRun = 0;
  private timer: TimerHandle | undefined;
  private stopped = false;
  private reasons = new Set<string>();
  /** No run before this (ms since epoch): the backoff after failures. */
  private notBefore = 0;
  /** Failed runs in a row; 0 after a success. */
  consecutiveFailures = 0;

  private readonly timers: Timers;

  constructor(
    private readonly opts: RunnerOptions,
    private readonly fn: (reasons: string[]) => Promise<void>,
  ) {
    this.timers = opts.timers ?? systemTimers;
  }

  /** Starts the periodic schedule and runs once now. */
  start(): void {
    this.request('start');
  }

  /** Asks for a run as soon as the minimum interval (and any backoff) allows. */
  request(reason = 'request'): void {
    if (this.stopped) return;
    this.reasons.add(reason);
    this.pending = true;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.timers.clear(this.timer);
    this.timer = undefined;
  }

  /** The delay before the next retry after `failures` failed runs in a row. */
  retryDelay(failures: number): number {
    const base = this.opts.retryMs ?? 1000;
    const cap = Math.max(base, this.opts.maxRetryMs ?? base);
    return Math.min(cap, base * 2 ** Math.min(30, Math.max(0, failures - 1)));
  }

  private schedule(): void {
    if (this.stopped || this.running) return;
    const min = this.opts.minIntervalMs ?? 1000;
    const max = this.opts.maxIntervalMs ?? 10_000;
    const now = this.timers.now();
    const sinceLast = now - this.lastRun;
    const wait = Math.max(this.pending ? min - sinceLast : max - sinceLast, this.notBefore - now, 0);
    if (this.timer !== undefined) this.timers.clear(this.timer);
    this.timer = this.timers.set(() => void this.tick(), wait);
  }

  private async tick(): Promise<void> {
    this.timer = undefined;
    if (this.stopped || this.running) return;
    const reasons = this.pending ? [...this.reasons] : ['periodic'];
    this.pending = false;
    this.reasons.clear();
    this.running = true;
    this.lastRun = this.timers.now();
    let failed = false;
    try {
      await this.fn(reasons);
    } catch (err) {
      failed = true;
      this.consecutiveFailures++;
      const delay = this.retryDelay(this.consecutiveFailures);
      this.notBefore = this.timers.now() + delay;
      this.opts.log.warn({ runner: this.opts.name, failures: this.consecutiveFailures, retryInMs: delay, err }, 'run failed, will retry');
    } finally {
      this.running = false;
    }
    if (failed) {
      this.pending = true;
      this.reasons.add('retry');
    } else {
      this.consecutiveFailures = 0;
      this.notBefore = 0;
    }
    this.schedule();
  }
}
