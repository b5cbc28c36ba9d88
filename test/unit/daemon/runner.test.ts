import { describe, expect, it } from 'vitest';
import { waitFor } from '../../../src/core/async.js';
import { silentLogger } from '../../../src/core/log.js';
import { BoundedFrequencyRunner } from '../../../src/core/runner.js';

describe('BoundedFrequencyRunner', () => {
  it('coalesces a burst of requests into few runs and never overlaps', async () => {
    let active = 0;
    let maxActive = 0;
    const runs: string[][] = [];
    const r = new BoundedFrequencyRunner({ name: 't', minIntervalMs: 30, maxIntervalMs: 60_000, log: silentLogger }, async (reasons) => {
      active++;
      maxActive = Math.max(maxActive, active);
      runs.push(reasons);
      await new Promise((res) => setImmediate(res));
      active--;
    });
    r.start();
    for (let i = 0; i < 50; i++) r.request(`r${i}`);
    await waitFor(() => runs.flat().includes('r49'), { timeoutMs: 5000 });
    r.stop();
    expect(maxActive).toBe(1);
    expect(runs.length).toBeLessThan(10);
  });

  it('retries a failed run', async () => {
    let calls = 0;
    const r = new BoundedFrequencyRunner({ name: 't', minIntervalMs: 1, retryMs: 5, log: silentLogger }, async () => {
      calls++;
      if (calls === 1) throw new Error('boom');
    });
    r.start();
    await waitFor(() => calls >= 2, { timeoutMs: 5000 });
    r.stop();
    expect(calls).toBeGreaterThanOrEqual(2);
  });
});
