// Pure statistics for the benchmarks: quantiles, medians with spread,
// ratios of paired samples and the A, B, A, B interleaving order. No I/O.

/** Sorted copy of the finite numbers in `xs`. */
export function sorted(xs) {
  return xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
}

/**
 * Quantile `q` (0..1) with linear interpolation between closest ranks
 * (type 7, as numpy and R use by default). NaN for an empty list.
 */
export function quantile(xs, q) {
  const s = sorted(xs);
  if (s.length === 0) return NaN;
  if (q <= 0) return s[0];
  if (q >= 1) return s[s.length - 1];
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export const median = (xs) => quantile(xs, 0.5);

/**
 * Median with spread: n, min, p25, p50, p75, p99, max and mean. p99 of a
 * small sample is close to its max; `n` is kept so a reader can tell.
 */
export function summarize(xs) {
  const s = sorted(xs);
  if (s.length === 0) return { n: 0, min: NaN, p25: NaN, p50: NaN, p75: NaN, p99: NaN, max: NaN, mean: NaN };
  return {
    n: s.length,
    min: s[0],
    p25: quantile(s, 0.25),
    p50: quantile(s, 0.5),
    p75: quantile(s, 0.75),
    p99: quantile(s, 0.99),
    max: s[s.length - 1],
    mean: s.reduce((a, b) => a + b, 0) / s.length,
  };
}

/**
 * Ratio of two interleaved sample lists: the median of the pairwise ratios
 * a[i]/b[i] (noise that hits one round hits both of its members) with their
 * min and max, plus the ratio of the medians for comparison. Pairs with a
 * missing or zero member are skipped.
 */
export function pairedRatio(a, b) {
  const ratios = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (Number.isFinite(a[i]) && Number.isFinite(b[i]) && b[i] !== 0) ratios.push(a[i] / b[i]);
  }
  const s = summarize(ratios);
  return { n: s.n, median: s.p50, min: s.min, max: s.max, ofMedians: median(b) === 0 ? NaN : median(a) / median(b) };
}

/**
 * Like `pairedRatio`, for rounds that run `a` and then `b` (a0 b0 a1 b1 ...):
 * each a[i] is set against the mean of the b runs on either side of it,
 * b[i-1] and b[i] (b[0] alone for the first), so a machine that speeds up or
 * slows down between rounds moves both sides of a ratio alike.
 */
export function bracketedRatio(a, b) {
  const around = b.map((x, i) => (i > 0 && Number.isFinite(b[i - 1]) && Number.isFinite(x) ? (b[i - 1] + x) / 2 : x));
  return pairedRatio(a, around);
}

/**
 * Order of work for `rounds` rounds over `names`: every round runs each name
 * once, and every other round runs them in reverse (A B, B A, A B ...), so
 * neither side always goes first after the same neighbour.
 */
export function interleave(names, rounds) {
  const out = [];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? [...names] : [...names].reverse();
    for (const name of order) out.push({ round: r, name });
  }
  return out;
}

/** Runs `fns` (name -> async () => number) interleaved; returns name -> samples in round order. */
export async function runInterleaved(fns, rounds, onSample) {
  const samples = Object.fromEntries(Object.keys(fns).map((k) => [k, []]));
  for (const { round, name } of interleave(Object.keys(fns), rounds)) {
    const v = await fns[name](round);
    samples[name][round] = v;
    onSample?.(name, round, v);
  }
  return samples;
}

/** Formats a number with a precision that suits its size ("1.23", "45.6", "789"). */
export function fmt(x, unit = '') {
  if (x === undefined || x === null || !Number.isFinite(x)) return '-';
  const a = Math.abs(x);
  const s = a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
  return unit ? `${s} ${unit}` : s;
}

/** "12.3 (10.1-15.0)": a median with its spread. */
export function fmtSpread(s, lo = 'min', hi = 'max') {
  if (!s || !Number.isFinite(s.p50 ?? s.median)) return '-';
  const mid = s.p50 ?? s.median;
  return `${fmt(mid)} (${fmt(s[lo])}-${fmt(s[hi])})`;
}
