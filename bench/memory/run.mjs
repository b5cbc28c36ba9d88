#!/usr/bin/env node
// Memory: resident set of weftd watching 1000 vxlan peers (leases in etcd,
// Network /16 with SubnetLen 26) and of weft-proxy holding 10000 services x
// 2 endpoints (manifest directory), each next to the same daemon idle in
// the same run. Goals: weftd <= 80 MB, weft-proxy <= 200 MB (MB = 10^6 bytes).
//
//   node bench/memory/run.mjs [--quick] [--parts weftd,proxy] [--peers 1000] [--services 10000]
//        [--proxy-modes iptables] [--proxy-sources manifests[,etcd]] [--json FILE]
//        [--node-flags "--max-semi-space-size=1 ..."] [--probe-dir DIR] [--heap-snapshot-dir DIR]
//
// --node-flags: V8/node flags for the spawned weft-proxy; default: those its launchers use (src/cli/node-flags.ts).
// --probe-dir: preloads daemon-probe.mjs into weft-proxy; it writes
//   <mode>-<source>.jsonl there (memoryUsage + heap spaces every 250 ms).
// --heap-snapshot-dir: after sampling, SIGUSR2 makes weft-proxy write a heap snapshot there.
// --settle-ms: wait this long after weft-proxy's first sync before sampling (default 0: at once;
//   V8's memory reducer shrinks the heap some seconds after the allocation burst of a sync).
//
// weft-proxy reads the objects either from a manifest directory or from its
// etcd registry (/weft/registry/, written straight to the lab's etcd).
//
// Needs root and a built dist/. Labs are named mm<hex> and always removed.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { makePeers, subnetsOf } from '../convergence/model.mjs';
import { REPO, argOf, labExec, labSpawn, labStop, memoryOf, runProbe, startWatcher, waitUntil, withLab } from '../convergence/lab.mjs';
import { manifestFiles, metricValue, registryEntries } from './manifests.mjs';

const argv = process.argv.slice(2);
const parts = argOf(argv, '--parts', 'weftd,proxy').split(',');
const peers = Number(argOf(argv, '--peers', '1000'));
const services = Number(argOf(argv, '--services', '10000'));
const proxyModes = argOf(argv, '--proxy-modes', 'iptables').split(',');
// etcd is opt-in: it fills the lab's etcd with 20000 keys first (~7 MB, read by weft-proxy in pages of 1000 keys).
const proxySources = argOf(argv, '--proxy-sources', 'manifests').split(',');
const jsonFile = argOf(argv, '--json');
// Default: the flags weft-proxy's launchers use (src/cli/node-flags.ts); --node-flags '' measures without.
const { nodeFlagsFor } = await import('../../dist/cli/node-flags.js');
const nodeFlags = argOf(argv, '--node-flags', nodeFlagsFor('weft-proxy').join(' ')).split(' ').filter(Boolean);
const probeDir = argOf(argv, '--probe-dir');
const snapshotDir = argOf(argv, '--heap-snapshot-dir');
const settleMs = Number(argOf(argv, '--settle-ms', '0'));
const say = (m) => process.stderr.write(`memory: ${m}\n`);
const MB = 1e6 / 2 ** 20; // MiB per MB
const GOALS = { weftd: 80, proxy: 200 };

/** Median and max of `n` RSS readings `gapMs` apart (RSS wanders with GC), in MB. */
async function sampleRss(pid, n = 8, gapMs = 250) {
  const xs = [];
  let hwm = 0;
  for (let i = 0; i < n; i++) {
    const m = memoryOf(pid);
    xs.push(m.rssMiB / MB);
    hwm = m.hwmMiB / MB;
    if (i < n - 1) await new Promise((r) => setTimeout(r, gapMs));
  }
  xs.sort((a, b) => a - b);
  return { samples: xs, p50: xs[Math.floor(xs.length / 2)], min: xs[0], max: xs[xs.length - 1], peakMB: hwm };
}

async function metrics(id, port) {
  const r = await labExec(id, 'h1', ['curl', '-s', '--max-time', '5', `http://127.0.0.1:${port}/metrics`], { allowFail: true, timeoutMs: 10_000 });
  return r.stdout;
}

async function weftdMemory(id) {
  const NETWORK = '10.244.0.0/16';
  const w = await startWatcher(id, { Network: NETWORK, SubnetLen: 26, Backend: { Type: 'vxlan' } });
  const idle = await sampleRss(w.pid);
  say(`weftd idle ${idle.p50.toFixed(1)} MB; writing ${peers} vxlan leases`);
  const list = makePeers(subnetsOf(NETWORK, 26, [w.subnet]).slice(0, peers));
  await runProbe(id, { mode: 'fill', backend: 'vxlan', peers: list });
  await waitUntil(async () => metricValue(await metrics(id, 9808), 'weftd_peers') === peers, `weftd_peers = ${peers}`, 180_000, 500);
  const routes = (await labExec(id, 'h1', ['ip', '-4', 'route', 'show', 'dev', 'weft.1'])).stdout.trim().split('\n').length;
  const loaded = await sampleRss(w.pid);
  say(`weftd with ${peers} peers ${loaded.p50.toFixed(1)} MB (peak ${loaded.peakMB.toFixed(1)} MB; goal <= ${GOALS.weftd} MB)`);
  return { peers, routes, idle, loaded, ratioToIdle: loaded.p50 / idle.p50, goalMB: GOALS.weftd, meetsGoal: loaded.p50 <= GOALS.weftd };
}

async function proxyMemory(id, mode, source, dir) {
  const from = source === 'etcd' ? ['--etcd-endpoints', 'http://192.0.2.254:2379'] : ['--etcd-endpoints=', '--manifests', dir];
  const argvProxy = [
    process.execPath, ...daemonFlags(`${mode}-${source}`), join(REPO, 'dist', 'cli', 'weft-proxy.js'),
    ...from, '--proxy-mode', mode,
    '--hostname-override', 'node-a', '--cluster-cidr', '10.244.0.0/16', '--log-level', 'warn',
  ];
  const p = await labSpawn(id, 'h1', argvProxy);
  const tail = () => {
    try {
      return readFileSync(p.log, 'utf8').trim().split('\n').slice(-3).join(' | ').slice(0, 600);
    } catch {
      return '';
    }
  };
  try {
    const t0 = Date.now();
    await waitUntil(async () => (metricValue(await metrics(id, 10249), 'kubeproxy_sync_proxy_rules_last_timestamp_seconds') ?? 0) > 0, `weft-proxy ${mode} first sync`, 180_000, 500).catch((err) => {
      throw new Error(`${err.message}; weft-proxy log: ${tail()}`);
    });
    const firstSyncS = (Date.now() - t0) / 1000;
    const m = await metrics(id, 10249);
    if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
    const loaded = await sampleRss(p.pid);
    if (snapshotDir) await heapSnapshot(p.pid);
    say(`weft-proxy ${mode} (${source}) with ${services} services ${loaded.p50.toFixed(1)} MB (peak ${loaded.peakMB.toFixed(1)} MB; goal <= ${GOALS.proxy} MB), first sync after ${firstSyncS.toFixed(1)} s`);
    return { mode, source, nodeFlags, settleMs, services, endpoints: services * 2, natRules: metricValue(m, 'kubeproxy_sync_proxy_rules_iptables_total', 'table="nat"'), firstSyncS, loaded, goalMB: GOALS.proxy, meetsGoal: loaded.p50 <= GOALS.proxy };
  } finally {
    await labStop(id, p.key);
    // The next mode starts from an empty ruleset.
    await labExec(id, 'h1', [process.execPath, join(REPO, 'dist', 'cli', 'weft-proxy.js'), '--cleanup', '--etcd-endpoints='], { allowFail: true, timeoutMs: 120_000 });
  }
}

/** node flags for a spawned weft-proxy: --node-flags, plus the probe and snapshot hooks when asked. */
function daemonFlags(tag) {
  const flags = [...nodeFlags];
  if (probeDir) {
    mkdirSync(probeDir, { recursive: true });
    const out = resolve(probeDir, `${tag}.jsonl`);
    rmSync(out, { force: true });
    flags.push('--import', `${pathToFileURL(join(REPO, 'bench', 'memory', 'daemon-probe.mjs')).href}?out=${encodeURIComponent(out)}`);
  }
  if (snapshotDir) {
    mkdirSync(snapshotDir, { recursive: true });
    flags.push('--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${resolve(snapshotDir)}`);
  }
  return flags;
}

/** Asks the daemon for a heap snapshot (after the RSS samples: writing one costs memory) and waits for the file. */
async function heapSnapshot(pid) {
  const before = new Set(readdirSync(snapshotDir));
  process.kill(pid, 'SIGUSR2');
  await waitUntil(async () => readdirSync(snapshotDir).some((f) => !before.has(f) && f.endsWith('.heapsnapshot')), 'heap snapshot', 120_000, 500);
  // The file appears before it is complete: wait until its size stops changing.
  const file = join(snapshotDir, readdirSync(snapshotDir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot')));
  let last = -1;
  await waitUntil(async () => {
    const size = existsSync(file) ? statSync(file).size : 0;
    const done = size > 0 && size === last;
    last = size;
    return done;
  }, 'heap snapshot written', 120_000, 1000);
  say(`heap snapshot ${file}`);
}

async function proxyIdle(id, dir) {
  // Same daemon, empty manifest directory: the baseline in the same run.
  const p = await labSpawn(id, 'h1', [process.execPath, ...daemonFlags('idle'), join(REPO, 'dist', 'cli', 'weft-proxy.js'), '--etcd-endpoints=', '--manifests', dir, '--log-level', 'warn']);
  try {
    await waitUntil(async () => (metricValue(await metrics(id, 10249), 'kubeproxy_sync_proxy_rules_last_timestamp_seconds') ?? 0) > 0, 'idle weft-proxy first sync', 60_000, 300);
    return await sampleRss(p.pid);
  } finally {
    await labStop(id, p.key);
  }
}

const out = { parts: {} };
let failed = false;
await withLab({ prefix: 'mm', hosts: 1, podsPerHost: 0, backend: 'vxlan', network: '10.244.0.0/16', startWeftd: false }, async (id) => {
  if (parts.includes('weftd')) {
    try {
      out.parts.weftd = await weftdMemory(id);
    } catch (err) {
      failed = true;
      out.parts.weftd = { error: err.message };
      say(`weftd failed: ${err.stack ?? err}`);
    }
  }
  if (parts.includes('proxy')) {
    const empty = mkdtempSync(join(tmpdir(), 'weft-bench-empty-'));
    const dir = mkdtempSync(join(tmpdir(), 'weft-bench-manifests-'));
    try {
      for (const f of manifestFiles(services)) writeFileSync(join(dir, f.name), f.text);
      const idle = await proxyIdle(id, empty);
      say(`weft-proxy idle ${idle.p50.toFixed(1)} MB`);
      out.parts.proxy = { idle, modes: {} };
      if (proxySources.includes('etcd')) await runProbe(id, { mode: 'put-all', kvs: registryEntries(services) });
      for (const mode of proxyModes) {
        for (const source of proxySources) {
          const key = `${mode}/${source}`;
          try {
            const r = await proxyMemory(id, mode, source, dir);
            out.parts.proxy.modes[key] = { ...r, ratioToIdle: r.loaded.p50 / idle.p50 };
          } catch (err) {
            failed = true;
            out.parts.proxy.modes[key] = { error: err.message };
            say(`weft-proxy ${key} failed: ${err.stack ?? err}`);
          }
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(empty, { recursive: true, force: true });
    }
  }
});
if (jsonFile) writeFileSync(jsonFile, JSON.stringify(out));
else console.log(JSON.stringify(out));
if (failed) process.exitCode = 1;
