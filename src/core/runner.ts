import type { Logger } from './log.js';

export interface RunnerOptions {
  /** Name for logs. */
  name: string;
  /** Never run more often than this. Default 1000 ms. */
  minIntervalMs?: number;
  /** Run at least this often even without requests (periodic reconcile). Default 10 s. */
  maxIntervalMs?: number;
  /** After a failed run, retry after this long. Default 1000 ms. */
  retryMs?: number;
  log: Logger;
}

/**
 * Bounded-frequency runner (kube-proxy's shape): callers `request()` a run;
 * requests coalesce; runs never overlap, are spaced by minInterval, happen at
 * least every maxInterval, and a failed run is retried. The callback is the
 * one writer to the kernel.
 */
export class BoundedFrequencyRunner {
  private pending = false;
  private running = false;
  private lastRun = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private reasons = new Set<string>();

  constructor(
    private readonly opts: RunnerOptions,
    private readonly fn: (reasons: string[]) => Promise<void>,
  ) {}

  /** Starts the periodic schedule and runs once now. */
  start(): void {
    this.request('start');
  }

  /** Asks for a run as soon as the minimum interval allows. */
  request(reason = 'request'): void {
    if (this.stopped) return;
    this.reasons.add(reason);
    this.pending = true;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(delayOverride?: number): void {
    if (this.stopped || this.running) return;
    const min = this.opts.minIntervalMs ?? 1000;
    const max = this.opts.maxIntervalMs ?? 10_000;
    const sinceLast = Date.now() - this.lastRun;
    const wait = delayOverride ?? (this.pending ? Math.max(0, min - sinceLast) : Math.max(0, max - sinceLast));
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), wait);
    this.timer.unref?.();
  }

  private async tick(): Promise<void> {
    this.timer = undefined;
    if (this.stopped || this.running) return;
    const reasons = this.pending ? [...this.reasons] : ['periodic'];
    this.pending = false;
    this.reasons.clear();
    this.running = true;
    this.lastRun = Date.now();
    let failed = false;
    try {
      await this.fn(reasons);
    } catch (err) {
      failed = true;
      this.opts.log.warn({ runner: this.opts.name, err }, 'run failed, will retry');
    } finally {
      this.running = false;
    }
    if (failed) {
      this.pending = true;
      this.reasons.add('retry');
      this.schedule(this.opts.retryMs ?? 1000);
    } else {
      this.schedule();
    }
  }
}
