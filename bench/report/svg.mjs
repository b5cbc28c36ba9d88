// Hand-written SVG charts for the benchmark report: grouped horizontal bars
// with whiskers, line charts with error bars, and horizontal box plots.
// Pure: data in, SVG text out. No dependencies.

const COLORS = ['#2b6cb0', '#c05621', '#2f855a', '#6b46c1', '#b7791f', '#c53030', '#2c7a7b', '#4a5568'];
const FONT = 'font-family="sans-serif" font-size="12"';

/** Escapes text for SVG content and attributes. */
export function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

const num = (x) => (Number.isInteger(x) ? String(x) : x.toFixed(1));
const finite = (x) => typeof x === 'number' && Number.isFinite(x);

/** Short tick label: 1500 -> "1.5k", 0.25 -> "0.25". */
export function tickLabel(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}

/** About `count` round tick values covering [0, max] (1, 2, 2.5, 5 x 10^k steps). */
export function niceTicks(max, count = 5) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  if (ticks[ticks.length - 1] < max) ticks.push(+(ticks[ticks.length - 1] + step).toPrecision(12));
  return ticks;
}

/**
 * Ticks for a log axis covering [min, max]: 1-2-5 steps per decade when the
 * range spans at most three decades, else powers of ten. The first and last
 * tick bracket the data tightly.
 */
export function logTicks(min, max) {
  if (!(min > 0) || !(max > 0)) return [1, 10];
  const decades = Math.log10(max) - Math.log10(min);
  const mant = decades <= 3 ? [1, 2, 5] : [1];
  const all = [];
  for (let e = Math.floor(Math.log10(min)) - 1; e <= Math.ceil(Math.log10(max)) + 1; e++) for (const m of mant) all.push(+(m * 10 ** e).toPrecision(6));
  const lo = all.filter((t) => t <= min * (1 + 1e-9)).pop();
  const hi = all.find((t) => t >= max * (1 - 1e-9));
  const out = all.filter((t) => t >= lo && t <= hi);
  return out.length > 1 ? out : [lo, all[all.indexOf(lo) + 1]];
}

function frame(width, height, title, body) {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT}>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** Legend entries: a colour square, or a line sample (dashed where the series is) for line charts. */
function legend(names, x, y, dashed) {
  return names.map((n, i) => {
    const c = COLORS[i % COLORS.length];
    const key = dashed
      ? `<line x1="${x - 4}" y1="${y + i * 16 - 4}" x2="${x + 12}" y2="${y + i * 16 - 4}" stroke="${c}" stroke-width="2"${dashed[i] ? ' stroke-dasharray="4,3"' : ''}/>`
      : `<rect x="${x}" y="${y + i * 16 - 9}" width="10" height="10" fill="${c}"/>`;
    return `${key}<text x="${x + 16}" y="${y + i * 16}">${esc(n)}</text>`;
  });
}

/**
 * Grouped horizontal bars. `groups`: [{ label, bars: [{ name, value, lo?, hi? }] }];
 * bars of the same name share a colour; lo/hi draw a whisker (spread).
 * `goal` draws a dashed vertical line.
 */
export function barChart({ title, unit = '', groups, goal, width = 760 }) {
  const names = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.name)))];
  const barH = 16;
  const gap = 10;
  // Room for the longest group label (about 7 px per character at 12 px).
  const left = Math.max(90, 16 + 7 * Math.max(0, ...groups.map((g) => String(g.label).length)));
  const right = 170;
  const top = 36;
  const plotW = width - left - right;
  const rows = groups.reduce((n, g) => n + g.bars.length, 0);
  const height = top + rows * barH + groups.length * gap + 48;
  const max = Math.max(...groups.flatMap((g) => g.bars.flatMap((b) => [b.value, b.hi].filter(finite))), finite(goal) ? goal : 0, 1e-9);
  const ticks = niceTicks(max);
  const xMax = ticks[ticks.length - 1];
  const X = (v) => left + (v / xMax) * plotW;
  const body = [];
  const plotBottom = height - 30;
  for (const t of ticks) {
    body.push(`<line x1="${X(t)}" y1="${top - 4}" x2="${X(t)}" y2="${plotBottom}" stroke="#e2e8f0"/>`);
    body.push(`<text x="${X(t)}" y="${plotBottom + 14}" text-anchor="middle">${esc(tickLabel(t))}</text>`);
  }
  body.push(`<text x="${left + plotW / 2}" y="${plotBottom + 28}" text-anchor="middle">${esc(unit)}</text>`);
  let y = top;
  for (const g of groups) {
    const gh = g.bars.length * barH;
    body.push(`<text x="${left - 8}" y="${y + gh / 2 + 4}" text-anchor="end">${esc(g.label)}</text>`);
    for (const b of g.bars) {
      const c = COLORS[names.indexOf(b.name) % COLORS.length];
      if (finite(b.value)) {
        body.push(`<rect x="${left}" y="${y + 2}" width="${Math.max(0.5, X(b.value) - left).toFixed(1)}" height="${barH - 4}" fill="${c}"><title>${esc(`${b.name}: ${num(b.value)} ${unit}`)}</title></rect>`);
        body.push(`<text x="${X(Math.max(b.value, finite(b.hi) ? b.hi : 0)) + 4}" y="${y + barH - 4}" font-size="11">${esc(num(b.value))}</text>`);
      }
      if (finite(b.lo) && finite(b.hi)) {
        const my = y + barH / 2;
        body.push(`<line x1="${X(b.lo)}" y1="${my}" x2="${X(b.hi)}" y2="${my}" stroke="#1a202c"/>`);
        body.push(`<line x1="${X(b.lo)}" y1="${my - 4}" x2="${X(b.lo)}" y2="${my + 4}" stroke="#1a202c"/>`);
        body.push(`<line x1="${X(b.hi)}" y1="${my - 4}" x2="${X(b.hi)}" y2="${my + 4}" stroke="#1a202c"/>`);
      }
      y += barH;
    }
    y += gap;
  }
  if (finite(goal)) {
    body.push(`<line x1="${X(goal)}" y1="${top - 6}" x2="${X(goal)}" y2="${plotBottom}" stroke="#c53030" stroke-dasharray="5,3"/>`);
    body.push(`<text x="${X(goal)}" y="${top - 8}" text-anchor="middle" fill="#c53030" font-size="11">goal ${esc(num(goal))}</text>`);
  }
  body.push(...legend(names, width - right + 16, top + 8));
  return frame(width, height, title, body);
}

/**
 * Line chart. `series`: [{ name, points: [{ x, y, lo?, hi? }], dashed? }].
 * `logX` / `logY` use log10 axes (values must be > 0).
 */
export function lineChart({ title, xLabel = '', yLabel = '', series, logX = false, logY = false, goal, width = 820, height = 380 }) {
  const left = 70;
  const right = 280;
  const top = 36;
  const bottom = 50;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const pts = series.flatMap((s) => s.points).filter((p) => finite(p.x) && finite(p.y));
  const xs = pts.map((p) => p.x);
  const ys = pts.flatMap((p) => [p.y, p.lo, p.hi].filter(finite)).concat(finite(goal) ? [goal] : []);
  const body = [];
  if (pts.length === 0) {
    body.push(`<text x="${width / 2}" y="${height / 2}" text-anchor="middle">no data</text>`);
    return frame(width, height, title, body);
  }
  const xTicks = logX ? logTicks(Math.min(...xs), Math.max(...xs)) : niceTicks(Math.max(...xs));
  const yPos = ys.filter((v) => v > 0);
  const yTicks = logY ? logTicks(Math.min(...yPos), Math.max(...yPos)) : niceTicks(Math.max(...ys));
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const f = (v, a, b, log) => (log ? (Math.log10(Math.max(v, a)) - Math.log10(a)) / (Math.log10(b) - Math.log10(a)) : (v - a) / (b - a || 1));
  const X = (v) => left + f(v, x0, x1, logX) * plotW;
  const Y = (v) => top + plotH - f(v, y0, y1, logY) * plotH;
  for (const t of yTicks) {
    body.push(`<line x1="${left}" y1="${Y(t)}" x2="${left + plotW}" y2="${Y(t)}" stroke="#e2e8f0"/>`);
    body.push(`<text x="${left - 6}" y="${Y(t) + 4}" text-anchor="end">${esc(tickLabel(t))}</text>`);
  }
  for (const t of xTicks) {
    body.push(`<line x1="${X(t)}" y1="${top}" x2="${X(t)}" y2="${top + plotH}" stroke="#edf2f7"/>`);
    body.push(`<text x="${X(t)}" y="${top + plotH + 16}" text-anchor="middle">${esc(tickLabel(t))}</text>`);
  }
  body.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#a0aec0"/>`);
  body.push(`<text x="${left + plotW / 2}" y="${height - 12}" text-anchor="middle">${esc(xLabel)}</text>`);
  body.push(`<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  if (finite(goal)) {
    body.push(`<line x1="${left}" y1="${Y(goal)}" x2="${left + plotW}" y2="${Y(goal)}" stroke="#c53030" stroke-dasharray="5,3"/>`);
    body.push(`<text x="${left + plotW - 4}" y="${Y(goal) - 4}" text-anchor="end" fill="#c53030" font-size="11">goal ${esc(num(goal))}</text>`);
  }
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const p = s.points.filter((q) => finite(q.x) && finite(q.y)).sort((a, b) => a.x - b.x);
    if (p.length > 1) {
      const d = p.map((q, k) => `${k ? 'L' : 'M'}${X(q.x).toFixed(1)},${Y(q.y).toFixed(1)}`).join(' ');
      body.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6,4"' : ''}/>`);
    }
    for (const q of p) {
      if (finite(q.lo) && finite(q.hi)) body.push(`<line x1="${X(q.x)}" y1="${Y(q.lo)}" x2="${X(q.x)}" y2="${Y(q.hi)}" stroke="${c}"/>`);
      body.push(`<circle cx="${X(q.x).toFixed(1)}" cy="${Y(q.y).toFixed(1)}" r="3.5" fill="${c}"><title>${esc(`${s.name}: ${num(q.x)} -> ${num(q.y)}`)}</title></circle>`);
    }
  });
  body.push(...legend(series.map((s) => s.name), width - right + 16, top + 8, series.map((s) => Boolean(s.dashed))));
  return frame(width, height, title, body);
}

/**
 * Horizontal box plots on one axis: box p25-p75, line at p50, whiskers to
 * min and max (or p99 when `whiskerHigh: 'p99'`). `boxes`: [{ label, stats, group? }].
 */
export function boxChart({ title, unit = '', boxes, logX = false, width = 720 }) {
  const left = 170;
  const right = 40;
  const top = 36;
  const rowH = 26;
  const plotW = width - left - right;
  const height = top + boxes.length * rowH + 44;
  const vals = boxes.flatMap((b) => [b.stats.min, b.stats.max].filter(finite));
  const ticks = logX ? logTicks(Math.max(1e-3, Math.min(...vals)), Math.max(...vals)) : niceTicks(Math.max(...vals, 1e-9));
  const [a, b] = [ticks[0], ticks[ticks.length - 1]];
  const X = (v) => left + (logX ? (Math.log10(Math.max(v, a)) - Math.log10(a)) / (Math.log10(b) - Math.log10(a)) : (v - a) / (b - a || 1)) * plotW;
  const plotBottom = top + boxes.length * rowH;
  const body = [];
  for (const t of ticks) {
    body.push(`<line x1="${X(t)}" y1="${top}" x2="${X(t)}" y2="${plotBottom}" stroke="#e2e8f0"/>`);
    body.push(`<text x="${X(t)}" y="${plotBottom + 14}" text-anchor="middle">${esc(tickLabel(t))}</text>`);
  }
  body.push(`<text x="${left + plotW / 2}" y="${plotBottom + 30}" text-anchor="middle">${esc(unit)}</text>`);
  const groups = [...new Set(boxes.map((x) => x.group ?? x.label))];
  boxes.forEach((bx, i) => {
    const s = bx.stats;
    const y = top + i * rowH;
    const my = y + rowH / 2;
    const c = COLORS[groups.indexOf(bx.group ?? bx.label) % COLORS.length];
    body.push(`<text x="${left - 8}" y="${my + 4}" text-anchor="end">${esc(bx.label)}</text>`);
    if (![s.min, s.p25, s.p50, s.p75, s.max].every(finite)) return;
    body.push(`<line x1="${X(s.min)}" y1="${my}" x2="${X(s.max)}" y2="${my}" stroke="#4a5568"/>`);
    body.push(`<line x1="${X(s.min)}" y1="${my - 5}" x2="${X(s.min)}" y2="${my + 5}" stroke="#4a5568"/>`);
    body.push(`<line x1="${X(s.max)}" y1="${my - 5}" x2="${X(s.max)}" y2="${my + 5}" stroke="#4a5568"/>`);
    body.push(`<rect x="${X(s.p25)}" y="${y + 5}" width="${Math.max(1, X(s.p75) - X(s.p25)).toFixed(1)}" height="${rowH - 10}" fill="${c}" fill-opacity="0.35" stroke="${c}"><title>${esc(`${bx.label}: p50 ${num(s.p50)} ${unit}, p25-p75 ${num(s.p25)}-${num(s.p75)}, min-max ${num(s.min)}-${num(s.max)}`)}</title></rect>`);
    body.push(`<line x1="${X(s.p50)}" y1="${y + 4}" x2="${X(s.p50)}" y2="${y + rowH - 4}" stroke="${c}" stroke-width="3"/>`);
    if (finite(s.p99)) body.push(`<circle cx="${X(s.p99)}" cy="${my}" r="3" fill="#1a202c"><title>p99 ${esc(num(s.p99))}</title></circle>`);
  });
  return frame(width, height, title, body);
}
