// Markdown report for one benchmark run. Pure: results in, text out; the
// charts are separate SVG files referenced by relative name.

const cell = (s) => String(s ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** A GitHub-flavoured Markdown table. */
export function mdTable(columns, rows) {
  return [
    `| ${columns.map(cell).join(' | ')} |`,
    `|${columns.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

const mark = (met) => (met === true ? 'yes' : met === false ? '**no**' : '-');

/** The headline table: one row per figure, weft next to its rival, the ratio and the goal. */
export function headlineTable(suites) {
  const rows = [];
  for (const [name, s] of Object.entries(suites)) {
    if (!s.report) {
      rows.push([name, s.error ? `failed: ${s.error}` : 'skipped', '', '', '', '', '']);
      continue;
    }
    for (const h of s.report.headline) rows.push([h.figure, h.weft, h.rivalName, h.rival, h.ratio, h.goal, mark(h.met)]);
  }
  return mdTable(['figure', 'weft', 'rival', 'rival value', 'ratio weft/rival (spread)', 'goal', 'met'], rows);
}

const TITLES = {
  dataplane: 'Data path throughput',
  cni: 'CNI plugin latency',
  proxy: 'Service proxy sync time',
  convergence: 'Convergence',
  memory: 'Memory',
  cpu: 'CPU under load',
};

/**
 * The whole report. `run`: { startedAt, finishedAt, quick, command, machine:
 * { cpus, load, kernel, node }, suites: { name: { ok, durationS, error?,
 * command, report? } } }; `chartFile(suite, chart)` names each SVG file.
 */
export function renderMarkdown(run, chartFile) {
  const out = [];
  out.push(`# weft benchmark report ${run.quick ? '(quick run)' : ''}`.trim(), '');
  out.push(`Run \`${run.command}\` from ${run.startedAt} to ${run.finishedAt} on ${run.machine.cpus} CPUs (${run.machine.cpuModel ?? 'unknown CPU'}), ` +
    `kernel ${run.machine.kernel}, Node ${run.machine.node}, load average at start ${run.machine.load}.`, '');
  out.push('Every ratio is weft over its rival measured in the same run, interleaved (A, B, A, B ...): the median of the per-round ratios with their min-max, ' +
    'or the ratio of the medians where a suite keeps only medians. Times are wall clock on a shared, noisy machine: read ratios, not absolute values.', '');
  out.push('## Headline', '', headlineTable(run.suites), '');
  for (const [name, s] of Object.entries(run.suites)) {
    out.push(`## ${TITLES[name] ?? name}`, '');
    out.push(`Command: \`${s.command}\` (${s.durationS.toFixed(0)} s${s.ok ? '' : ', failed'}).`, '');
    if (s.error) out.push(`Error: \`${cell(s.error)}\``, '');
    if (!s.report) continue;
    for (const h of s.report.headline) if (h.note) out.push(`Note: ${h.note}.`, '');
    for (const t of s.report.tables) out.push(`**${t.title}**`, '', mdTable(t.columns, t.rows), '');
    for (const n of s.report.notes ?? []) out.push(`- ${n}`);
    if (s.report.notes?.length) out.push('');
    for (const c of s.report.charts) out.push(`![${c.title}](${chartFile(name, c)})`, '');
  }
  return out.join('\n');
}
