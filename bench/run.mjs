#!/usr/bin/env node
// weft benchmark suite: runs every benchmark on the lab, one after another
// (they would distort each other on a 2-core machine), and writes
// bench/results/<timestamp>.json, <timestamp>.md and <timestamp>-<chart>.svg.
//
//   node bench/run.mjs [--quick] [--only convergence,cni,dataplane,cpu,memory,proxy] [--out DIR]
//
// Needs root, a built dist/ (npm run build) and the native addon. Each suite
// is a separate process with its own throwaway namespaces / labs that it
// always removes; a suite that fails is reported and the others still run.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALL_SUITES, extractJson, fileStamp, parseArgs } from './report/cli-util.mjs';
import { headlineTable } from './report/markdown.mjs';
import { buildReports, writeReport } from './report/write.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..');

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  console.error(`bench: ${err.message}`);
  process.exit(2);
}
if (opts.help) {
  console.log(`usage: node bench/run.mjs [--quick] [--only ${ALL_SUITES.join(',')}] [--out DIR]`);
  process.exit(0);
}
if (process.getuid?.() !== 0) {
  console.error('bench: needs root (network namespaces, iptables, etcd in the lab)');
  process.exit(2);
}
for (const f of ['dist/lab/index.js', 'dist/cli/weftd.js', 'dist/cli/weft-proxy.js']) {
  if (!existsSync(join(REPO, f))) {
    console.error(`bench: ${f} missing: run npm run build first`);
    process.exit(2);
  }
}

const q = opts.quick;
const tmp = mkdtempSync(join(tmpdir(), 'weft-bench-'));
const jsonFile = (name) => join(tmp, `${name}.json`);

/**
 * Each suite: the commands to run (args to node, relative to the repo) and
 * how to read its result. Quick settings keep the whole run under 5 minutes
 * on a loaded 2-core machine; the full run uses each suite's own defaults.
 */
const SUITES = {
  convergence: { steps: [{ args: ['bench/convergence/run.mjs', ...(q ? ['--quick'] : []), '--json', jsonFile('convergence')], file: jsonFile('convergence') }], budgetS: q ? 120 : 900 },
  cni: { steps: [{ args: ['bench/cni/run.mjs', '--rounds', q ? '30' : '100', '--standalone-rounds', q ? '8' : '20', '--json'] }], budgetS: q ? 150 : 900 },
  dataplane: { steps: [{ args: ['bench/dataplane/run.mjs', ...(q ? ['--quick'] : []), '--json'] }], budgetS: q ? 150 : 900 },
  cpu: { steps: [{ args: ['bench/memory/cpu.mjs', ...(q ? ['--quick'] : []), '--json', jsonFile('cpu')], file: jsonFile('cpu') }], budgetS: q ? 90 : 300 },
  memory: { steps: [{ args: ['bench/memory/run.mjs', '--proxy-modes', 'iptables,nftables', '--json', jsonFile('memory')], file: jsonFile('memory') }], budgetS: q ? 150 : 900 },
  proxy: {
    steps: [
      { key: 'iptables', args: ['bench/proxy/run.mjs', '--sizes', q ? '1000,2000' : '1000,5000,10000', '--backends', 'nft,legacy', '--reps', '3', ...(q ? ['--no-single'] : [])] },
      { key: 'nftables', args: ['bench/proxy/nft.mjs', '--sizes', q ? '1000,2000' : '1000,5000,10000', '--rounds', q ? '3' : '9', '--iptables-backend', 'none', '--json'] },
    ],
    budgetS: q ? 200 : 3600,
  },
};

const stamp = () => new Date().toISOString().slice(11, 19);
const log = (msg) => process.stderr.write(`[${stamp()}] ${msg}\n`);

/** Runs one node script, streaming its stderr (and human stdout lines) as progress; SIGINT on overrun. */
function runStep(name, args, budgetS) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let partial = '';
    const relay = (prefix) => (d) => {
      const text = partial + d;
      const lines = text.split('\n');
      partial = lines.pop();
      for (const l of lines) if (l.trim() && !l.startsWith('{') && !l.startsWith(' ') && !l.startsWith('}') && !l.startsWith('"')) process.stderr.write(`  ${prefix} ${l}\n`);
    };
    child.stdout.on('data', (d) => (stdout += d));
    child.stdout.on('data', relay(`[${name}]`));
    child.stderr.on('data', (d) => String(d).split('\n').filter((l) => l.trim()).forEach((l) => process.stderr.write(`  [${name}] ${l}\n`)));
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      log(`${name}: over its ${budgetS} s budget, interrupting (SIGINT lets it clean up)`);
      child.kill('SIGINT');
      setTimeout(() => child.exitCode === null && child.kill('SIGKILL'), 30_000).unref();
    }, budgetS * 1000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, killed });
    });
  });
}

/**
 * Ctrl-C reaches the running suite too (same process group), which removes
 * its namespaces; the orchestrator then skips the remaining suites and still
 * writes the report of what ran.
 */
let interrupted = false;
process.on('SIGINT', () => {
  interrupted = true;
  log('interrupted: the running suite cleans up, the rest are skipped');
});

const run = {
  command: `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
  quick: q,
  startedAt: new Date().toISOString(),
  machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, load: loadavg().map((x) => x.toFixed(2)).join(' '), kernel: release(), node: process.version },
  suites: {},
};
const t0 = Date.now();
log(`weft bench${q ? ' --quick' : ''}: ${opts.only.join(', ')}`);
for (const [i, name] of opts.only.entries()) {
  if (interrupted) break;
  const suite = SUITES[name];
  const started = Date.now();
  log(`(${i + 1}/${opts.only.length}) ${name} ...`);
  const entry = { ok: true, command: suite.steps.map((s) => `node ${s.args.map((a) => (a.startsWith(tmp) ? 'FILE' : a)).join(' ')}`).join(' && '), raw: {} };
  const errors = [];
  for (const step of suite.steps) {
    const r = await runStep(name, step.args, suite.budgetS);
    try {
      const data = step.file ? JSON.parse(readFileSync(step.file, 'utf8')) : extractJson(r.stdout);
      if (step.key) entry.raw[step.key] = data;
      else entry.raw = data;
      if (r.code !== 0) errors.push(`exit ${r.code}${r.killed ? ' (interrupted over budget)' : ''}, partial result`);
    } catch (err) {
      errors.push(`exit ${r.code}${r.killed ? ' (interrupted over budget)' : ''}: ${err.message}`);
    }
  }
  entry.durationS = (Date.now() - started) / 1000;
  if (errors.length) {
    entry.ok = false;
    entry.error = errors.join('; ');
  }
  run.suites[name] = entry;
  buildReports({ suites: { [name]: entry } });
  log(`${name} ${entry.ok ? 'done' : 'FAILED'} in ${entry.durationS.toFixed(0)} s${entry.error ? `: ${entry.error}` : ''}`);
  for (const h of entry.report?.headline ?? []) log(`  ${h.figure}: weft ${h.weft} | ${h.rivalName} ${h.rival} | ratio ${h.ratio}${h.goal !== '-' ? ` | goal ${h.goal}: ${h.met === true ? 'met' : h.met === false ? 'NOT met' : '-'}` : ''}`);
}
run.finishedAt = new Date().toISOString();
run.totalS = (Date.now() - t0) / 1000;

const outDir = opts.out ?? join(HERE, 'results');
const base = fileStamp(new Date(run.startedAt)) + (q ? '-quick' : '');
const files = writeReport(run, outDir, base);
rmSync(tmp, { recursive: true, force: true });

console.log(`\n${headlineTable(run.suites)}\n`);
log(`total ${run.totalS.toFixed(0)} s; wrote ${files.map((f) => relative(process.cwd(), join(outDir, f))).join(', ')}`);
if (Object.values(run.suites).some((s) => !s.ok)) process.exitCode = 1;
