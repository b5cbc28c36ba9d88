// Preloaded into a daemon by `bench/memory/run.mjs --probe-dir DIR` (node
// --import <this file>?out=FILE): appends process.memoryUsage() and the V8
// heap spaces as one JSON line every 250 ms, so a run shows heapUsed vs
// external vs RSS over time, peak included, without touching src/cli.
// Leaves the daemon's behaviour alone: the timer is unref'd, errors ignored.
import { appendFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';

const out = new URL(import.meta.url).searchParams.get('out');
if (out) {
  const t0 = Date.now();
  const MB = 1e6;
  const tick = () => {
    try {
      const m = process.memoryUsage();
      const spaces = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, +(s.space_used_size / MB).toFixed(1)]));
      const committed = getHeapSpaceStatistics().reduce((a, s) => a + s.space_size, 0);
      appendFileSync(
        out,
        JSON.stringify({
          t: Date.now() - t0,
          rss: +(m.rss / MB).toFixed(1),
          heapTotal: +(m.heapTotal / MB).toFixed(1),
          heapCommitted: +(committed / MB).toFixed(1),
          heapUsed: +(m.heapUsed / MB).toFixed(1),
          external: +(m.external / MB).toFixed(1),
          arrayBuffers: +(m.arrayBuffers / MB).toFixed(1),
          spaces,
        }) + '\n',
      );
    } catch {
      // a probe must never break the daemon
    }
  };
  setInterval(tick, 250).unref();
}
