import { InvalidArgumentError } from '../core/errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go-style durations as kube-proxy's flags take them: "1s", "500ms", "1m30s", "1h". Returns ms. */
export function parseDuration(text: string, field: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let consumed = 0;
  for (const m of text.matchAll(re)) {
    if (m.index !== consumed) break;
    total += Number(m[1]) * UNITS[m[2]!]!;
    consumed += m[0].length;
  }
  if (consumed === 0 || consumed !== text.length) throw new InvalidArgumentError(field, `"${text}" is not a duration like 1s, 500ms or 1m`);
  return Math.round(total);
}
