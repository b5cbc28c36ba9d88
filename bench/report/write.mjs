// Writes one run's report files: <base>.json (raw suite output, headline
// figures, tables), <base>.md and <base>-<chart>.svg, all in `outDir`.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPORTERS } from './figures.mjs';
import { renderMarkdown } from './markdown.mjs';

/** Builds each suite's report from its raw output; a reporter that throws marks the suite failed. */
export function buildReports(run) {
  for (const [name, s] of Object.entries(run.suites)) {
    s.report = undefined;
    if (!s.raw || Object.keys(s.raw).length === 0) continue;
    try {
      s.report = REPORTERS[name](s.raw);
    } catch (err) {
      s.ok = false;
      s.error = `${s.error ? `${s.error}; ` : ''}report: ${err.message}`;
    }
  }
  return run;
}

/** Writes the files; returns their names. */
export function writeReport(run, outDir, base) {
  mkdirSync(outDir, { recursive: true });
  const chartFile = (suite, c) => `${base}-${c.name}.svg`;
  const files = [];
  for (const [name, s] of Object.entries(run.suites)) {
    for (const c of s.report?.charts ?? []) {
      writeFileSync(join(outDir, chartFile(name, c)), c.svg);
      files.push(chartFile(name, c));
    }
  }
  writeFileSync(join(outDir, `${base}.md`), renderMarkdown(run, chartFile));
  // The JSON keeps raw samples and the figures; SVG text lives in its own files.
  const suites = Object.fromEntries(
    Object.entries(run.suites).map(([k, s]) => [
      k,
      { ...s, report: s.report ? { headline: s.report.headline, tables: s.report.tables, notes: s.report.notes, charts: s.report.charts.map((c) => chartFile(k, c)) } : undefined },
    ]),
  );
  writeFileSync(join(outDir, `${base}.json`), JSON.stringify({ ...run, suites }, null, 1));
  return [`${base}.json`, `${base}.md`, ...files];
}
