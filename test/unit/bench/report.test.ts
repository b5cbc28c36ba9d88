import { describe, expect, it } from 'vitest';
// @ts-expect-error plain ESM module without types (bench/ is outside tsconfig)
import { barChart, boxChart, esc, lineChart, logTicks, niceTicks, tickLabel } from '../../../bench/report/svg.mjs';
// @ts-expect-error plain ESM module without types
import { headlineTable, mdTable, renderMarkdown } from '../../../bench/report/markdown.mjs';
// @ts-expect-error plain ESM module without types
import { cniReport, convergenceReport, cpuReport, dataplaneReport, memoryReport, proxyReport } from '../../../bench/report/figures.mjs';
// @ts-expect-error plain ESM module without types
import { extractJson, fileStamp, parseArgs } from '../../../bench/report/cli-util.mjs';

/** Well-formedness without a parser: one root, balanced tags, no raw '<' or '&' in text. */
function checkSvg(svg: string): void {
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  expect(svg.trim().endsWith('</svg>')).toBe(true);
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-z]+)[^>]*?(\/?)>/g)) {
    if (m[3]) continue;
    if (m[1]) expect(stack.pop()).toBe(m[2]);
    else stack.push(m[2]!);
  }
  expect(stack).toEqual([]);
  expect(svg).not.toMatch(/NaN|undefined|Infinity/);
  expect(svg.replace(/<[^>]*>/g, '')).not.toMatch(/[<]|&(?!amp;|lt;|gt;|quot;|#39;)/);
}

describe('svg charts', () => {
  it('picks round ticks', () => {
    expect(niceTicks(7.3)).toEqual([0, 2, 4, 6, 8]);
    expect(niceTicks(100)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(logTicks(3, 700)).toEqual([2, 5, 10, 20, 50, 100, 200, 500, 1000]);
    expect(logTicks(1000, 2000)).toEqual([1000, 2000]);
    expect(logTicks(1, 1e5)).toEqual([1, 10, 100, 1000, 10000, 100000]);
    expect(tickLabel(1500)).toBe('1.5k');
    expect(tickLabel(0.25)).toBe('0.25');
    expect(esc('a<b & "c"')).toBe('a&lt;b &amp; &quot;c&quot;');
  });

  it('draws bars with whiskers and a goal line, escaping labels', () => {
    const svg = barChart({
      title: 'T <&>',
      unit: 'Gbit/s',
      groups: [
        { label: 'udp', bars: [{ name: 'udp', value: 2.5, lo: 2, hi: 3 }] },
        { label: 'veth', bars: [{ name: 'baseline', value: 8.8 }] },
      ],
      goal: 5,
    });
    checkSvg(svg);
    expect(svg).toContain('T &lt;&amp;&gt;');
    expect(svg).toContain('goal 5');
    expect((svg.match(/<rect x="90"/g) ?? []).length).toBe(2);
    // Longer value, longer bar.
    const widths = [...svg.matchAll(/<rect x="90" y="[\d.]+" width="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(widths[1]).toBeGreaterThan(widths[0]! * 3);
  });

  it('draws log-log lines with error bars and handles no data', () => {
    const svg = lineChart({
      title: 'sync',
      xLabel: 'services',
      yLabel: 'ms',
      logX: true,
      logY: true,
      goal: 100,
      series: [
        { name: 'weft', points: [{ x: 10, y: 40, lo: 30, hi: 50 }, { x: 500, y: 60 }] },
        { name: 'base', points: [{ x: 10, y: 3 }, { x: 500, y: NaN }], dashed: true },
      ],
    });
    checkSvg(svg);
    expect((svg.match(/<path /g) ?? []).length).toBe(1); // 'base' has one finite point: no line
    expect((svg.match(/<circle /g) ?? []).length).toBe(3);
    expect(svg).toContain('stroke-dasharray');
    checkSvg(lineChart({ title: 'empty', series: [] }));
  });

  it('draws box plots', () => {
    const svg = boxChart({
      title: 'cni',
      unit: 'ms',
      boxes: [
        { label: 'ADD weft', group: 'weft', stats: { min: 10, p25: 12, p50: 14, p75: 18, p99: 30, max: 31 } },
        { label: 'ADD ref', group: 'ref', stats: { min: 20, p25: 22, p50: 25, p75: 28, p99: 40, max: 45 } },
      ],
    });
    checkSvg(svg);
    expect((svg.match(/fill-opacity/g) ?? []).length).toBe(2);
  });
});

describe('report figures and markdown', () => {
  const dataplane = {
    seconds: 3,
    rounds: 2,
    summary: {
      udp: { gbps: 2.5, retransmits: 10, cpuPerDaemon: 40, pingP50ms: 0.1, pingP99ms: 0.3 },
      vxlan: { gbps: 5, retransmits: 0, cpuPerDaemon: null, pingP50ms: 0.05, pingP99ms: 0.1 },
      veth: { gbps: 10, retransmits: 0, cpuPerDaemon: null, pingP50ms: 0.03, pingP99ms: 0.05 },
    },
    results: {
      udp: { runs: [{ gbps: 2 }, { gbps: 3 }] },
      vxlan: { runs: [{ gbps: 4 }, { gbps: 6 }] },
      veth: { runs: [{ gbps: 9 }, { gbps: 11 }] },
    },
  };

  it('rates udp against vxlan per round and checks the goal', () => {
    const r = dataplaneReport(dataplane);
    const h = r.headline[0];
    expect(h.ratioValue.median).toBeCloseTo(0.5);
    expect(h.ratio).toBe('0.500x (0.500-0.500)');
    expect(h.met).toBe(true);
    expect(r.charts[0].name).toBe('throughput');
    checkSvg(r.charts[0].svg);
  });

  it('falls back to medians when a suite kept no samples', () => {
    const r = cniReport({
      weft: { n: 30, addP50: 20, addP99: 40, delP50: 15, delP99: 30 },
      reference: { n: 30, addP50: 25, addP99: 50, delP50: 30, delP99: 60 },
    });
    expect(r.headline[0].ratio).toBe('0.800x');
    expect(r.headline[0].met).toBe(true);
    checkSvg(r.charts[0].svg);
  });

  it('pairs CNI samples by round', () => {
    const r = cniReport({
      weft: { n: 3, addP50: 20, addP99: 40, delP50: 15, delP99: 30, add: [20, 40, 10], del: [1, 2, 3] },
      reference: { n: 3, addP50: 25, addP99: 50, delP50: 30, delP99: 60, add: [10, 20, 5], del: [1, 2, 3] },
    });
    expect(r.headline[0].ratioValue.median).toBe(2);
    expect(r.headline[0].met).toBe(false);
  });

  it('reports proxy, convergence and memory figures', () => {
    const p = proxyReport({
      iptables: { reps: 2, rows: [{ backend: 'nft', services: 1000, rules: 8001, weft: 600, bare: 500, resync: 700 }, { backend: 'nft', services: 2000, rules: 16001, weft: 1300, bare: 1000, resync: 1400, change: 90 }] },
      nftables: { rounds: 2, results: [{ services: 1000, nftFullMs: 900, bareNftMs: 400, nftChangeMs: 40, fullVsBare: 2.25 }, { services: 2000, nftFullMs: 1500, bareNftMs: 700, nftChangeMs: 45, fullVsBare: 2.1 }] },
    });
    expect(p.headline.map((h: { met: boolean }) => h.met)).toEqual([false, false, true]);
    // With per-round samples the nftables ratio sets each round's sync against the bare loads before and after it
    // (the last round: 260 against (100 + 300) / 2; against its following bare load alone it would be 0.87).
    const paired = proxyReport({
      nftables: { rounds: 3, results: [{ services: 1000, nftFullMs: 110, bareNftMs: 100, nftChangeMs: 20, fullVsBare: 1.1, fullVsBareRange: [1.05, 1.3], nftFullRuns: [105, 110, 260], bareNftRuns: [100, 100, 300] }] },
    });
    expect(paired.headline[0].ratioValue.median).toBeCloseTo(1.1);
    expect(paired.headline[0].ratioValue.max).toBeCloseTo(1.3);
    expect(paired.headline[0].ratioValue.min).toBeCloseTo(1.05);
    expect(paired.headline[0].met).toBe(true);
    expect(paired.tables[0].rows[0][5]).toBe('1.10x (1.05-1.30)');
    expect(paired.tables[0].rows[0][1]).toBe('3');
    expect(paired.tables[0].rows[0][3]).toBe('-');
    checkSvg(p.charts[0].svg);
    const c = convergenceReport({
      samples: 3,
      backends: {
        'host-gw': { sizes: [{ peers: 10, burst: [50, 60], steady: { weft: [40, 50, 60], baseline: [4, 5, 6], weftRemove: [30], baselineRemove: [3] } }] },
        vxlan: { error: 'lab failed' },
      },
    });
    expect(c.headline).toHaveLength(1);
    expect(c.headline[0].met).toBe(true);
    expect(c.headline[0].ratioValue.median).toBe(10);
    expect(c.tables[0].rows[1][1]).toBe('failed');
    checkSvg(c.charts[0].svg);
    const m = memoryReport({ parts: { weftd: { peers: 1000, routes: 1000, idle: { p50: 50 }, loaded: { p50: 90, min: 89, max: 91, peakMB: 95 }, goalMB: 80, meetsGoal: false } } });
    expect(m.headline[0].met).toBe(false);
    checkSvg(m.charts[0].svg);
  });

  it('reports CPU per GB and says its rival is not from this run', () => {
    const run = (gbps: number, total: number) => ({ gbps, cpuSeconds: { sender: 1, receiver: 1 }, cpuSecondsPerGB: { sender: total / 2, receiver: total / 2, total } });
    const r = cpuReport({ seconds: 4, rounds: 3, runs: [run(3, 2), run(3.2, 1.5), run(2.8, 2.5)], flannelReference: { cpuSecondsPerGBPerSide: 29, gbps: 0.19, source: 'FACTS.md (not this run)' } });
    expect(r.headline[0].weft).toBe('2.00 CPU s/GB (1.50-2.50)');
    expect(r.headline[0].ratioValue.ofMedians).toBeCloseTo(2 / 58);
    expect(r.headline[0].note).toMatch(/not in this run/);
    expect(r.tables[0].rows.at(-1)).toEqual(['median', '3.00', '', '', '1.00', '1.00', '2.00']);
  });

  it('renders the Markdown report with the headline, tables and chart links', () => {
    const run = {
      command: 'node bench/run.mjs --quick',
      quick: true,
      startedAt: '2026-11-22T04:00:00.000Z',
      finishedAt: '2026-11-22T04:04:00.000Z',
      machine: { cpus: 2, load: '1 1 1', kernel: '6.1', node: 'v20' },
      suites: {
        dataplane: { ok: true, durationS: 40, command: 'node bench/dataplane/run.mjs --quick --json', report: dataplaneReport(dataplane) },
        cni: { ok: false, durationS: 3, command: 'node bench/cni/run.mjs', error: 'exit 1: boom | bang' },
      },
    };
    const md = renderMarkdown(run, (s: string, c: { name: string }) => `X-${c.name}.svg`);
    expect(md).toContain('# weft benchmark report (quick run)');
    expect(md).toContain('| udp backend throughput (iperf3 TCP pod to pod) | 2.50 Gbit/s (2.00-3.00) | kernel vxlan | 5.00 Gbit/s (4.00-6.00) | 0.500x (0.500-0.500) | >= 0.5x | yes |');
    expect(md).toContain('![Throughput per backend with the veth baseline](X-throughput.svg)');
    expect(md).toContain('failed: exit 1: boom \\| bang');
    expect(headlineTable(run.suites).split('\n')[1]).toBe('|---|---|---|---|---|---|---|');
    expect(mdTable(['a'], [['x|y']])).toBe('| a |\n|---|\n| x\\|y |');
  });
});

describe('orchestrator helpers', () => {
  it('parses arguments and refuses unknown suites', () => {
    expect(parseArgs(['--quick', '--only', 'proxy,cni'])).toMatchObject({ quick: true, only: ['cni', 'proxy'] });
    expect(parseArgs(['--only=memory']).only).toEqual(['memory']);
    expect(() => parseArgs(['--only', 'nope'])).toThrow(/unknown suite nope/);
    expect(() => parseArgs(['--fast'])).toThrow(/unknown option/);
    expect(() => parseArgs(['--out'])).toThrow(/needs a value/);
  });

  it('finds the JSON a suite printed after its human lines', () => {
    expect(extractJson('{"a":1}')).toEqual({ a: 1 });
    expect(extractJson('round 1 {x}\nresult\n{"rows":[1]}\n')).toEqual({ rows: [1] });
    expect(extractJson('header\n{\n  "rounds": 2,\n  "results": []\n}\n')).toEqual({ rounds: 2, results: [] });
    expect(() => extractJson('nothing here')).toThrow(/no JSON/);
    expect(fileStamp(new Date('2026-11-22T04:26:38.123Z'))).toBe('2026-11-22T04-26-38Z');
  });
});
