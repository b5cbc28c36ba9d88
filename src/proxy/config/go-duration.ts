import { ProxyConfigError } from './errors.js';

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Go's time.ParseDuration (what metav1.Duration and kube-proxy's duration
 * flags take): "30s", "1h0m0s", "1.5m", "250ms", "0". Returns milliseconds
 * (sub-millisecond parts rounded). Negative durations are refused: no
 * kube-proxy setting means anything by them.
 */
export function parseGoDuration(text: string, field: string): number {
  const s = text.trim();
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  while (at < s.length) {
    re.lastIndex = at;
    const m = re.exec(s);
    if (!m) break;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    at = re.lastIndex;
  }
  if (s.length === 0 || at !== s.length) throw new ProxyConfigError(field, `"${text}" is not a duration (Go syntax: 30s, 1m30s, 1h0m0s, 250ms)`);
  return Math.round(total);
}

/** ms -> Go's canonical duration text ("1h0m0s", "30s", "250ms", "0s"), as /configz shows durations. */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const sec = (ms % 60_000) / 1000;
  if (h > 0) return `${h}h${m}m${sec}s`;
  if (m > 0) return `${m}m${sec}s`;
  return `${sec}s`;
}
