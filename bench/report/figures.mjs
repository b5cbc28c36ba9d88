// Turns each suite's raw JSON into report parts: headline figures (weft vs
// its rival in the same run, ratio with spread, goal), tables and charts.
// Pure: JSON in, plain objects and SVG text out.
import { bracketedRatio, fmt, pairedRatio, summarize } from './stats.mjs';
import { barChart, boxChart, lineChart } from './svg.mjs';

const finite = (x) => typeof x === 'number' && Number.isFinite(x);
const spread = (s, unit = '') => (s && finite(s.p50) ? `${fmt(s.p50)}${unit} (${fmt(s.min)}-${fmt(s.max)})` : '-');
const iqr = (s, unit = '') => (s && finite(s.p50) ? `${fmt(s.p50)}${unit} (p25-p75 ${fmt(s.p25)}-${fmt(s.p75)})` : '-');
const ratioText = (r) => (r && finite(r.median) ? `${fmt(r.median)}x (${fmt(r.min)}-${fmt(r.max)})` : r && finite(r.ofMedians) ? `${fmt(r.ofMedians)}x` : '-');
/** A ratio from two medians only (the suite kept no per-round samples). */
const plainRatio = (a, b) => ({ n: 0, median: NaN, min: NaN, max: NaN, ofMedians: finite(a) && finite(b) && b !== 0 ? a / b : NaN });

/**
 * One headline row. `better` says which way is good for the goal check
 * ('lower' or 'higher'); `goalOn` is 'ratio' or 'value'.
 */
function headline({ figure, weft, rival, rivalName, ratio, goal, goalText, goalOn = 'ratio', better = 'lower', note }) {
  let met;
  const v = goalOn === 'ratio' ? (finite(ratio?.median) ? ratio.median : ratio?.ofMedians) : weft?.value;
  if (finite(goal) && finite(v)) met = better === 'lower' ? v <= goal : v >= goal;
  return { figure, weft: weft?.text ?? '-', rival: rival?.text ?? '-', rivalName: rivalName ?? '-', ratio: ratioText(ratio), ratioValue: ratio, goal: goalText ?? '-', met, note };
}

// ---------------------------------------------------------------- dataplane

export function dataplaneReport(d) {
  const modes = Object.keys(d.summary ?? {});
  const runsOf = (m) => (d.results?.[m]?.runs ?? []).map((r) => r.gbps);
  const stat = (m) => (runsOf(m).length ? summarize(runsOf(m)) : { ...summarize([d.summary[m].gbps]), n: 0 });
  const stats = Object.fromEntries(modes.map((m) => [m, stat(m)]));
  const ratio = (a, b) => (runsOf(a).length && runsOf(b).length ? pairedRatio(runsOf(a), runsOf(b)) : plainRatio(d.summary[a]?.gbps, d.summary[b]?.gbps));
  const gb = (m) => ({ text: spread(stats[m], ' Gbit/s'), value: stats[m].p50 });
  const heads = [];
  if (stats.udp && stats.vxlan)
    heads.push(headline({ figure: 'udp backend throughput (iperf3 TCP pod to pod)', weft: gb('udp'), rival: gb('vxlan'), rivalName: 'kernel vxlan', ratio: ratio('udp', 'vxlan'), goal: 0.5, goalText: '>= 0.5x', better: 'higher' }));
  if (stats.udp && stats.veth) heads.push(headline({ figure: 'udp backend vs the bare underlay', weft: gb('udp'), rival: gb('veth'), rivalName: 'veth (no overlay)', ratio: ratio('udp', 'veth') }));
  if (stats.vxlan && stats.veth) heads.push(headline({ figure: 'vxlan throughput vs the bare underlay', weft: gb('vxlan'), rival: gb('veth'), rivalName: 'veth (no overlay)', ratio: ratio('vxlan', 'veth') }));
  const table = {
    title: `iperf3 TCP pod to pod, ${d.seconds} s x ${d.rounds} interleaved rounds`,
    columns: ['mode', 'Gbit/s median (min-max)', 'retransmits', 'daemon CPU per side', 'ping p50 ms', 'ping p99 ms'],
    rows: modes.map((m) => {
      const s = d.summary[m];
      return [m, spread(stats[m]), fmt(s.retransmits), s.cpuPerDaemon === null || s.cpuPerDaemon === undefined ? '-' : `${fmt(s.cpuPerDaemon)}%`, fmt(s.pingP50ms), fmt(s.pingP99ms)];
    }),
  };
  const chart = barChart({
    title: 'Throughput per data path (median, whiskers min-max)',
    unit: 'Gbit/s',
    groups: modes.map((m) => ({ label: m, bars: [{ name: m === 'veth' ? 'baseline' : m.startsWith('udp') ? 'udp' : 'kernel', value: stats[m].p50, lo: stats[m].min, hi: stats[m].max }] })),
  });
  return { headline: heads, tables: [table], charts: [{ name: 'throughput', title: 'Throughput per backend with the veth baseline', svg: chart }] };
}

// ---------------------------------------------------------------------- cni

export function cniReport(d) {
  const names = Object.keys(d).filter((k) => d[k] && typeof d[k] === 'object' && 'addP50' in d[k]);
  const st = (name, verb) => {
    const raw = d[name][verb];
    if (Array.isArray(raw) && raw.length) return summarize(raw);
    const p50 = d[name][`${verb}P50`];
    const p99 = d[name][`${verb}P99`];
    return { n: d[name].n, min: p50, p25: p50, p50, p75: p50, p99, max: p99, mean: NaN };
  };
  const ratio = (a, b, verb) => (Array.isArray(d[a]?.[verb]) && Array.isArray(d[b]?.[verb]) ? pairedRatio(d[a][verb], d[b][verb]) : plainRatio(d[a]?.[`${verb}P50`], d[b]?.[`${verb}P50`]));
  const heads = [];
  const ms = (name, verb) => ({ text: iqr(st(name, verb), ' ms'), value: st(name, verb).p50 });
  if (d.weft && d.reference) {
    heads.push(headline({ figure: 'CNI ADD latency (weft shim -> weftd)', weft: ms('weft', 'add'), rival: ms('reference', 'add'), rivalName: 'bridge + host-local', ratio: ratio('weft', 'reference', 'add'), goal: 1.0, goalText: 'p50 <= 1.0x' }));
    heads.push(headline({ figure: 'CNI DEL latency (weft shim -> weftd)', weft: ms('weft', 'del'), rival: ms('reference', 'del'), rivalName: 'bridge + host-local', ratio: ratio('weft', 'reference', 'del') }));
  }
  if (d['weft-standalone'] && d.reference)
    heads.push(headline({ figure: 'CNI ADD latency (standalone Node plugin)', weft: ms('weft-standalone', 'add'), rival: ms('reference', 'add'), rivalName: 'bridge + host-local', ratio: ratio('weft-standalone', 'reference', 'add') }));
  const table = {
    title: 'CNI wall time per call, spawn to exit (ms)',
    columns: ['plugin', 'n', 'ADD p50', 'ADD p25-p75', 'ADD p99', 'DEL p50', 'DEL p25-p75', 'DEL p99'],
    rows: names.map((n) => {
      const a = st(n, 'add');
      const r = st(n, 'del');
      return [n, String(a.n), fmt(a.p50), `${fmt(a.p25)}-${fmt(a.p75)}`, fmt(a.p99), fmt(r.p50), `${fmt(r.p25)}-${fmt(r.p75)}`, fmt(r.p99)];
    }),
  };
  const boxes = [];
  for (const verb of ['add', 'del']) for (const n of names) boxes.push({ label: `${verb.toUpperCase()} ${n}`, group: n, stats: st(n, verb) });
  const chart = boxChart({ title: 'CNI latency distribution (box p25-p75, line p50, whiskers min-max, dot p99)', unit: 'ms per call', boxes });
  return { headline: heads, tables: [table], charts: [{ name: 'cni-latency', title: 'CNI latency distribution, weft vs the reference plugins', svg: chart }] };
}

// -------------------------------------------------------------------- proxy

export function proxyReport(d) {
  const rows = d.iptables?.rows ?? [];
  const nft = d.nftables?.results ?? [];
  const heads = [];
  const series = [];
  const backends = [...new Set(rows.map((r) => r.backend))];
  for (const b of backends) {
    const rs = rows.filter((r) => r.backend === b).sort((x, y) => x.services - y.services);
    series.push({ name: `iptables (${b}): weft full sync`, points: rs.map((r) => ({ x: r.services, y: r.weft })) });
    series.push({ name: `iptables (${b}): bare restore`, points: rs.map((r) => ({ x: r.services, y: r.bare })), dashed: true });
    if (rs.some((r) => finite(r.single))) series.push({ name: `iptables (${b}): one-transaction restore`, points: rs.map((r) => ({ x: r.services, y: r.single })), dashed: true });
    const top = rs[rs.length - 1];
    if (top) {
      heads.push(headline({ figure: `proxy full sync, iptables-${b}, ${top.services} services`, weft: { text: `${fmt(top.weft)} ms`, value: top.weft }, rival: { text: `${fmt(top.bare)} ms`, value: top.bare }, rivalName: `bare iptables-${b}-restore of weft's text`, ratio: plainRatio(top.weft, top.bare), goal: 1.2, goalText: '<= 1.2x' }));
      if (finite(top.single)) heads.push(headline({ figure: `proxy full sync, iptables-${b}, ${top.services} services, vs one transaction`, weft: { text: `${fmt(top.weft)} ms`, value: top.weft }, rival: { text: `${fmt(top.single)} ms`, value: top.single }, rivalName: "one-transaction restore (kube-proxy's way)", ratio: plainRatio(top.weft, top.single) }));
    }
  }
  if (nft.length) {
    const rs = [...nft].sort((x, y) => x.services - y.services);
    series.push({ name: 'nftables: weft full sync', points: rs.map((r) => ({ x: r.services, y: r.nftFullMs })) });
    series.push({ name: 'nftables: bare nft -f', points: rs.map((r) => ({ x: r.services, y: r.bareNftMs })), dashed: true });
    const top = rs[rs.length - 1];
    heads.push(headline({ figure: `proxy full sync, nftables, ${top.services} services`, weft: { text: `${fmt(top.nftFullMs)} ms`, value: top.nftFullMs }, rival: { text: `${fmt(top.bareNftMs)} ms`, value: top.bareNftMs }, rivalName: 'bare nft -f', ratio: top.nftFullRuns && top.bareNftRuns ? bracketedRatio(top.nftFullRuns, top.bareNftRuns) : plainRatio(top.nftFullMs, top.bareNftMs), goal: 1.2, goalText: '<= 1.2x' }));
    const iptChange = rows.filter((r) => r.change !== undefined && r.services === top.services).map((r) => r.change)[0] ?? top.iptChangeMs;
    heads.push(headline({ figure: `proxy one endpoint change, nftables, ${top.services} services`, weft: { text: `${fmt(top.nftChangeMs)} ms`, value: top.nftChangeMs }, rival: { text: finite(iptChange) ? `${fmt(iptChange)} ms` : '-', value: iptChange }, rivalName: 'weft iptables mode', ratio: plainRatio(top.nftChangeMs, iptChange), goal: 50, goalText: '<= 50 ms', goalOn: 'value' }));
  }
  const tables = [];
  if (rows.length)
    tables.push({
      title: `iptables mode (medians of ${d.iptables.reps} interleaved repetitions)`,
      columns: ['backend', 'services', 'rules', 'weft full sync ms', 'bare restore ms', 'ratio', 'one-transaction restore ms', 'full resync ms', 'one endpoint change ms'],
      rows: rows.map((r) => [r.backend, String(r.services), String(r.rules), fmt(r.weft), fmt(r.bare), `${fmt(r.weft / r.bare)}x`, fmt(r.single), fmt(r.resync), finite(r.change) ? fmt(r.change) : '-']),
    });
  if (nft.length)
    tables.push({
      title: 'nftables mode (medians over rounds, after one warm-up round; ratio: each sync against the bare loads before and after it)',
      columns: ['services', 'rounds', 'weft full sync ms', 'warm-up sync ms', 'bare nft -f ms', 'ratio (median of rounds, min-max)', 'one endpoint change ms', 'iptables full ms', 'iptables change ms'],
      rows: nft.map((r) => [String(r.services), String(r.rounds ?? d.nftables.rounds), fmt(r.nftFullMs), fmt(r.nftWarmupFullMs), fmt(r.bareNftMs), `${fmt(r.fullVsBare)}x${r.fullVsBareRange ? ` (${fmt(r.fullVsBareRange[0])}-${fmt(r.fullVsBareRange[1])})` : ''}`, fmt(r.nftChangeMs), fmt(r.iptFullMs), fmt(r.iptChangeMs)]),
    });
  const chart = lineChart({ title: 'Proxy full sync time vs services (solid weft, dashed bare load)', xLabel: 'services (x 2 endpoints)', yLabel: 'ms', series, logX: true, logY: true });
  return { headline: heads, tables, charts: series.length ? [{ name: 'proxy-sync', title: 'Proxy sync time vs number of services, per mode, with the bare restore', svg: chart }] : [] };
}

// -------------------------------------------------------------- convergence

export function convergenceReport(d) {
  const heads = [];
  const rows = [];
  const series = [];
  for (const [backend, r] of Object.entries(d.backends ?? {})) {
    if (!r.sizes) {
      rows.push([backend, 'failed', r.error ?? '', '', '', '', '', '', '']);
      continue;
    }
    const pts = { weft: [], base: [], burst: [] };
    for (const s of r.sizes) {
      const join = summarize(s.steady.weft);
      const base = summarize(s.steady.baseline);
      const leave = summarize(s.steady.weftRemove);
      const burst = summarize(s.burst);
      const ratio = pairedRatio(s.steady.weft, s.steady.baseline);
      rows.push([backend, String(s.peers), iqr(join), fmt(join.p99), iqr(base), ratioText(ratio), fmt(leave.p50), `${fmt(burst.p50)} / ${fmt(burst.p99)}`, fmt(burst.max)]);
      pts.weft.push({ x: s.peers, y: join.p50, lo: join.p25, hi: join.p75 });
      pts.base.push({ x: s.peers, y: base.p50, lo: base.p25, hi: base.p75 });
      pts.burst.push({ x: s.peers, y: burst.p99 });
    }
    series.push({ name: `${backend}: weft, one peer joins`, points: pts.weft });
    series.push({ name: `${backend}: ip/bridge baseline`, points: pts.base, dashed: true });
    series.push({ name: `${backend}: weft, burst p99`, points: pts.burst, dashed: true });
    const top = r.sizes[r.sizes.length - 1];
    const join = summarize(top.steady.weft);
    const base = summarize(top.steady.baseline);
    heads.push(headline({
      figure: `convergence, ${backend}, one peer joining ${top.peers} (p50; p99 ${fmt(join.p99)} ms)`,
      weft: { text: iqr(join, ' ms'), value: join.p50 },
      rival: { text: iqr(base, ' ms'), value: base.p50 },
      rivalName: 'ip/bridge commands (no flanneld here)',
      ratio: pairedRatio(top.steady.weft, top.steady.baseline),
      goal: 100,
      goalText: 'p50 <= 100 ms',
      goalOn: 'value',
    }));
  }
  const notes = Object.entries(d.backends ?? {})
    .filter(([, r]) => finite(r.lastReconcileMs))
    .map(([b, r]) => `${b}: weftd's last full data path sync (weftd_reconcile_last_duration_seconds) took ${fmt(r.lastReconcileMs)} ms with ${r.sizes?.[r.sizes.length - 1]?.peers} peers present`);
  const table = {
    title: `Lease in etcd -> entries in the watching host (ms); ${d.samples} interleaved samples per size`,
    columns: ['backend', 'peers', 'one peer joins: p50 (p25-p75)', 'p99', 'baseline p50 (p25-p75)', 'ratio to baseline', 'peer leaves p50', 'burst of all peers p50 / p99', 'burst last'],
    rows,
  };
  const chart = lineChart({ title: 'Convergence time vs number of peers', xLabel: 'simulated peers', yLabel: 'ms (lease put -> kernel entry)', series, logX: true, logY: true, goal: 100 });
  return { headline: heads, tables: [table], notes, charts: series.length ? [{ name: 'convergence', title: 'Convergence time vs number of peers', svg: chart }] : [] };
}

// ------------------------------------------------------------------- memory

export function memoryReport(d) {
  const heads = [];
  const rows = [];
  const groups = [];
  const w = d.parts?.weftd;
  if (w?.loaded) {
    heads.push(headline({ figure: `weftd RSS with ${w.peers} vxlan peers`, weft: { text: `${fmt(w.loaded.p50)} MB`, value: w.loaded.p50 }, rival: { text: `${fmt(w.idle.p50)} MB`, value: w.idle.p50 }, rivalName: 'same weftd, no peers', ratio: plainRatio(w.loaded.p50, w.idle.p50), goal: w.goalMB, goalText: `<= ${w.goalMB} MB`, goalOn: 'value' }));
    rows.push(['weftd', `${w.peers} vxlan peers (${w.routes} routes)`, fmt(w.idle.p50), fmt(w.loaded.p50), `${fmt(w.loaded.min)}-${fmt(w.loaded.max)}`, fmt(w.loaded.peakMB), `<= ${w.goalMB}`, w.meetsGoal ? 'yes' : 'no']);
    groups.push({ label: 'weftd', bars: [{ name: 'idle', value: w.idle.p50 }, { name: 'loaded', value: w.loaded.p50, lo: w.loaded.min, hi: w.loaded.max }, { name: 'goal', value: w.goalMB }] });
  } else if (w?.error) rows.push(['weftd', 'failed', w.error, '', '', '', '', '']);
  const p = d.parts?.proxy;
  for (const [mode, m] of Object.entries(p?.modes ?? {})) {
    if (!m.loaded) {
      rows.push([`weft-proxy ${mode}`, 'failed', m.error ?? '', '', '', '', '', '']);
      continue;
    }
    const [pmode, source = 'manifests'] = mode.split('/');
    heads.push(headline({ figure: `weft-proxy RSS, ${pmode} mode, ${m.services} services x 2 endpoints from ${source}`, weft: { text: `${fmt(m.loaded.p50)} MB`, value: m.loaded.p50 }, rival: { text: `${fmt(p.idle.p50)} MB`, value: p.idle.p50 }, rivalName: 'same weft-proxy, no services', ratio: plainRatio(m.loaded.p50, p.idle.p50), goal: m.goalMB, goalText: `<= ${m.goalMB} MB`, goalOn: 'value' }));
    rows.push([`weft-proxy ${mode}`, `${m.services} services, ${m.endpoints} endpoints (${m.natRules !== undefined ? `${m.natRules} iptables nat rules; ` : ''}first sync ${fmt(m.firstSyncS)} s)`, fmt(p.idle.p50), fmt(m.loaded.p50), `${fmt(m.loaded.min)}-${fmt(m.loaded.max)}`, fmt(m.loaded.peakMB), `<= ${m.goalMB}`, m.meetsGoal ? 'yes' : 'no']);
    groups.push({ label: `weft-proxy ${mode}`, bars: [{ name: 'idle', value: p.idle.p50 }, { name: 'loaded', value: m.loaded.p50, lo: m.loaded.min, hi: m.loaded.max }, { name: 'goal', value: m.goalMB }] });
  }
  const table = { title: 'Resident set size (MB = 10^6 bytes; median of 8 readings 250 ms apart)', columns: ['daemon', 'load', 'idle RSS', 'loaded RSS', 'min-max', 'peak (VmHWM)', 'goal', 'met'], rows };
  const chart = barChart({ title: 'RSS idle, loaded and the goal', unit: 'MB', groups });
  return { headline: heads, tables: [table], charts: groups.length ? [{ name: 'memory', title: 'Resident memory', svg: chart }] : [] };
}

// ---------------------------------------------------------------------- cpu

export function cpuReport(d) {
  const runs = d.runs ?? [];
  const total = summarize(runs.map((r) => r.cpuSecondsPerGB.total));
  const snd = summarize(runs.map((r) => r.cpuSecondsPerGB.sender));
  const rcv = summarize(runs.map((r) => r.cpuSecondsPerGB.receiver));
  const gbps = summarize(runs.map((r) => r.gbps));
  const ref = d.flannelReference;
  const heads = [
    headline({
      figure: 'weftd CPU per GB moved, udp backend (sender + receiver)',
      weft: { text: spread(total, ' CPU s/GB'), value: total.p50 },
      rival: ref ? { text: `~${fmt(ref.cpuSecondsPerGBPerSide * 2)} CPU s/GB`, value: ref.cpuSecondsPerGBPerSide * 2 } : undefined,
      rivalName: ref ? `flanneld udp: ${ref.source}` : "-",
      ratio: ref ? plainRatio(total.p50, ref.cpuSecondsPerGBPerSide * 2) : undefined,
      note: 'no flanneld on this machine: the rival is a figure measured earlier, not in this run',
    }),
  ];
  const table = {
    title: `weftd (udp backend) CPU while iperf3 TCP runs pod to pod, ${d.seconds} s x ${d.rounds} rounds`,
    columns: ['round', 'Gbit/s', 'sender weftd CPU s', 'receiver weftd CPU s', 'CPU s/GB sender', 'CPU s/GB receiver', 'CPU s/GB total'],
    rows: [
      ...runs.map((r, i) => [String(i + 1), fmt(r.gbps), fmt(r.cpuSeconds.sender), fmt(r.cpuSeconds.receiver), fmt(r.cpuSecondsPerGB.sender), fmt(r.cpuSecondsPerGB.receiver), fmt(r.cpuSecondsPerGB.total)]),
      ['median', fmt(gbps.p50), '', '', fmt(snd.p50), fmt(rcv.p50), fmt(total.p50)],
    ],
  };
  return { headline: heads, tables: [table], charts: [] };
}

export const REPORTERS = { dataplane: dataplaneReport, cni: cniReport, proxy: proxyReport, convergence: convergenceReport, memory: memoryReport, cpu: cpuReport };
