import { describe, expect, it } from 'vitest';
// @ts-expect-error plain ESM module without types (bench/ is outside tsconfig)
import { bracketedRatio, fmt, interleave, median, pairedRatio, quantile, runInterleaved, summarize } from '../../../bench/report/stats.mjs';

describe('bench stats', () => {
  it('interpolates quantiles between closest ranks', () => {
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantile([4, 1, 3, 2], 0.25)).toBe(1.75);
    expect(quantile([7], 0.99)).toBe(7);
    expect(Number.isNaN(quantile([], 0.5))).toBe(true);
    expect(median([5, NaN, 1, 3])).toBe(3);
  });

  it('summarizes with spread', () => {
    const s = summarize([10, 1, 4, 7]);
    expect(s).toMatchObject({ n: 4, min: 1, max: 10, p50: 5.5, mean: 5.5 });
    expect(s.p25).toBeLessThan(s.p50);
    expect(s.p75).toBeGreaterThan(s.p50);
    expect(summarize([]).n).toBe(0);
  });

  it('pairs interleaved samples for ratios and skips broken pairs', () => {
    // Round 2 was slow for both: per-round ratios stay at 2.
    const r = pairedRatio([2, 20, 4, NaN], [1, 10, 2, 5]);
    expect(r.n).toBe(3);
    expect(r.median).toBe(2);
    expect(r.min).toBe(2);
    expect(r.max).toBe(2);
    expect(r.ofMedians).toBeCloseTo(4 / 3.5);
    expect(pairedRatio([1], [0]).n).toBe(0);
  });

  it('sets each a run against the b runs on either side of it', () => {
    // The machine slows down steadily: a is always 1.1x the b runs around it, but 1.0x the b run after it.
    const b = [100, 120, 140, 160];
    const a = [110, 121, 143, 165];
    const r = bracketedRatio(a, b);
    expect(r.n).toBe(4);
    expect(r.min).toBeCloseTo(1.1);
    expect(r.max).toBeCloseTo(1.1);
    expect(pairedRatio(a, b).median).toBeLessThan(1.05);
    // A missing neighbour: that round uses its own b run.
    expect(bracketedRatio([2, 4], [NaN, 2]).median).toBe(2);
  });

  it('interleaves A B, B A so neither side always goes first', () => {
    expect(interleave(['a', 'b'], 3).map((x: { name: string }) => x.name)).toEqual(['a', 'b', 'b', 'a', 'a', 'b']);
    expect(interleave(['a', 'b', 'c'], 2).map((x: { round: number }) => x.round)).toEqual([0, 0, 0, 1, 1, 1]);
  });

  it('runs interleaved functions and files samples by round', async () => {
    const order: string[] = [];
    const samples = await runInterleaved(
      {
        a: async (r: number) => (order.push(`a${r}`), r),
        b: async (r: number) => (order.push(`b${r}`), 10 + r),
      },
      2,
    );
    expect(order).toEqual(['a0', 'b0', 'b1', 'a1']);
    expect(samples).toEqual({ a: [0, 1], b: [10, 11] });
  });

  it('formats numbers by magnitude', () => {
    expect(fmt(1234.4)).toBe('1234');
    expect(fmt(12.34)).toBe('12.3');
    expect(fmt(1.234)).toBe('1.23');
    expect(fmt(0.1234)).toBe('0.123');
    expect(fmt(NaN)).toBe('-');
    expect(fmt(3, 'ms')).toBe('3.00 ms');
  });
});
