import { delay } from '../core/async.js';

/** A wait that ends early when `wake()` is called (a watch event for our own key or Node). */
export class Wakeup {
  private pending = false;
  private resolve: (() => void) | undefined;
  wake(): void {
    this.pending = true;
    this.resolve?.();
  }
  async wait(ms: number, signal: AbortSignal, sleep: (ms: number, signal: AbortSignal) => Promise<void> = delay): Promise<void> {
    if (this.pending || signal.aborted) {
      this.pending = false;
      return;
    }
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.race([sleep(ms, ac.signal).catch(() => {}), new Promise<void>((r) => (this.resolve = r))]);
    } finally {
      ac.abort();
      signal.removeEventListener('abort', onAbort);
      this.resolve = undefined;
      this.pending = false;
    }
  }
}
