// The runner's schedule on fake timers: intervals and backoff asserted in exact
// milliseconds, with no real time passing.
import { describe, expect, it } from 'vitest';
import { FakeTimers } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/log.js';
import { BoundedFrequencyRunner, type RunnerOptions } from '../../../src/core/runner.js';

/** Lets the runner's awaited callback and its rescheduling finish. */
const settle = () => new Promise<void>((res) => setImmediate(res));

function setup(opts: Partial<RunnerOptions>, fail: () => boolean = () => false) {
  // A realistic epoch start: the runner's first run is due at once.
  const timers = new FakeTimers();
  const t0 = timers.now();
  const runs: { at: number; reasons: string[] }[] = [];
  const r = new BoundedFrequencyRunner({ name: 't', log: silentLogger, timers, ...opts }, async (reasons) => {
    runs.push({ at: timers.now() - t0, reasons });
    if (fail()) throw new Error('sync failed');
  });
  /** Moves time forward by ms, timer by timer, letting the runner react to each. */
  const advance = async (ms: number) => {
    const end = timers.now() + ms;
    await settle();
    for (let next = timers.nextDueIn(); next !== undefined && timers.now() + next <= end; next = timers.nextDueIn()) {
      timers.advance(next);
      await settle();
    }
    timers.advance(end - timers.now());
  };
  return { timers, runs, r, advance };
}

describe('BoundedFrequencyRunner on fake timers', () => {
  it('runs at start, then no sooner than minInterval however many requests arrive', async () => {
    const { runs, r, advance } = setup({ minIntervalMs: 1000, maxIntervalMs: 60_000 });
    r.start();
    await advance(10);
    expect(runs.map((x) => x.at)).toEqual([0]);
    for (let i = 0; i < 20; i++) r.request(`change-${i}`);
    await advance(980);
    expect(runs).toHaveLength(1);
    await advance(20);
    expect(runs).toHaveLength(2);
    expect(runs[1].at).toBe(1000);
    expect(runs[1].reasons).toHaveLength(20);
    r.stop();
  });

  it('runs periodically at maxInterval without requests', async () => {
    const { runs, r, advance } = setup({ minIntervalMs: 100, maxIntervalMs: 5000 }, () => false);
    r.start();
    await advance(15_010);
    expect(runs.map((x) => x.at)).toEqual([0, 5000, 10_000, 15_000]);
    expect(runs[1].reasons).toEqual(['periodic']);
    r.stop();
  });

  it('backs off 1 s, 2 s, 4 s, capped at 4 s, and requests do not bring a retry forward', async () => {
    let failing = true;
    const { runs, r, advance } = setup({ minIntervalMs: 10, maxIntervalMs: 600_000, retryMs: 1000, maxRetryMs: 4000 }, () => failing);
    r.start();
    await advance(11_010);
    expect(runs.map((x) => x.at)).toEqual([0, 1000, 3000, 7000, 11_000]);
    expect(r.consecutiveFailures).toBe(5);
    r.request('change');
    await advance(3000);
    expect(runs).toHaveLength(5);
    failing = false;
    await advance(1010);
    expect(runs.at(-1)?.at).toBe(15_000);
    expect(r.consecutiveFailures).toBe(0);
    r.request('after-recovery');
    await advance(20);
    expect(runs.at(-1)?.reasons).toEqual(['after-recovery']);
    r.stop();
  });

  it('stop clears its timer: nothing runs afterwards', async () => {
    const { timers, runs, r, advance } = setup({ minIntervalMs: 100, maxIntervalMs: 1000 });
    r.start();
    await advance(10);
    r.stop();
    expect(timers.pending).toBe(0);
    r.request('late');
    await advance(5000);
    expect(runs).toHaveLength(1);
  });
});

describe('FakeTimers', () => {
  it('fires due timers in due order and leaves later ones', () => {
    const t = new FakeTimers(0);
    const fired: string[] = [];
    t.set(() => fired.push('b'), 20);
    t.set(() => fired.push('a'), 10);
    const c = t.set(() => fired.push('c'), 15);
    t.set(() => fired.push('d'), 100);
    t.clear(c);
    t.advance(50);
    expect(fired).toEqual(['a', 'b']);
    expect(t.now()).toBe(50);
    expect(t.nextDueIn()).toBe(50);
  });
});
