// Lab plumbing shared by the convergence and memory benchmarks: a lab with a
// unique id that is always taken down, weftd started on a network config of
// our choosing, the probe run in the switch namespace, /proc readings.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = join(HERE, '..', '..');
const lab = await import(join(REPO, 'dist', 'lab', 'index.js')).catch((err) => {
  throw new Error(`dist/lab/index.js not loadable (run npm run build first): ${err.message}`);
});
export const { labUp, labDown, labStatus, labEtcd, labExec, labSpawn, labStop, startWeftd, readState } = lab;

/** A lab id no other run uses: `<prefix>` + 6 hex digits (lab ids are at most 8 characters). */
export const uniqueLabId = (prefix) => `${prefix}${randomBytes(3).toString('hex')}`.slice(0, 8);

const live = new Set();
let hooked = false;
function hookSignals() {
  if (hooked) return;
  hooked = true;
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, async () => {
      process.stderr.write(`\n${sig}: taking down ${[...live].join(', ') || 'nothing'}\n`);
      for (const id of live) await labDown(id).catch(() => {});
      process.exit(130);
    });
  }
}

/** Runs `fn(id)` on a fresh lab and always takes it down afterwards. */
export async function withLab({ prefix = 'bn', ...opts }, fn) {
  hookSignals();
  const id = uniqueLabId(prefix);
  live.add(id);
  try {
    await labUp({ ...opts, id });
    return await fn(id);
  } finally {
    await labDown(id).catch((err) => process.stderr.write(`lab down ${id} failed: ${err.message}\n`));
    live.delete(id);
  }
}

/**
 * Writes our own network config (the lab's has no SubnetLen) and starts
 * weftd on h1 of a lab made with `startWeftd: false`. The fallback subnet.env
 * the lab wrote is removed first so weftd does not ask for a /24.
 */
export async function startWatcher(id, config, timeoutMs = 60_000) {
  await labEtcd(id).put('/coreos.com/network/config', JSON.stringify(config));
  const host = readState(id).hosts[0];
  rmSync(host.subnetFile, { force: true });
  const { pid } = await startWeftd(id, 'h1', { timeoutMs });
  return { pid, subnet: labStatus(id).hosts[0].subnet, netns: host.netns, switchNetns: readState(id).switchNetns };
}

/** Runs bench/convergence/probe.mjs inside the lab's switch namespace; resolves with its JSON. */
export function runProbe(id, spec) {
  const sw = readState(id).switchNetns;
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', sw, process.execPath, join(HERE, 'probe.mjs')], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`probe exited ${code}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()));
      } catch (err) {
        reject(new Error(`probe printed no JSON: ${err.message}`));
      }
    });
    child.stdin.end(JSON.stringify(spec));
  });
}

/** Resident set (VmRSS) and its peak (VmHWM) of a process, in MiB. */
export function memoryOf(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
}

/** utime + stime of a process in clock ticks (fields 14 and 15 of /proc/<pid>/stat). */
export function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

/** Clock ticks per second (USER_HZ); 100 on every Linux this runs on. */
export const HZ = 100;

/** Bounded poll for benchmarks (same contract as core/async waitFor). */
export async function waitUntil(check, what, timeoutMs = 60_000, intervalMs = 100) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Parses JSON output flags shared by the suites: `--json <file>` writes the result there. */
export function argOf(argv, name, dflt) {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : dflt;
}
