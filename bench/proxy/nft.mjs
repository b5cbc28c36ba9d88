#!/usr/bin/env node
// weft-proxy nftables mode: full sync at 1000/5000/10000 services x 2 endpoints
// next to a bare `nft -f` of the same ruleset (the kernel's own `nft list table`
// output loaded into an empty netns), one endpoint change at each size, and the
// same full sync / change in iptables mode, side by side in one run. Each
// measurement runs in its own throwaway netns, after a young-generation GC.
// Each size starts with one untimed warm-up round (its sync time is printed).
// Times are medians over the rounds. Each round runs the sync and then the
// bare load; the full-vs-bare ratio is the median over rounds of the sync's
// time against the mean of the bare loads just before and just after it, so
// the machine's speed drifting between rounds moves both sides alike.
//
//   npx tsc -p tsconfig.json && node bench/proxy/nft.mjs [--sizes 1000,5000,10000] [--rounds 3 (at 5000 and up; more below)] [--changes 5] [--iptables-backend nft|legacy|none] [--json]
//
// Needs root and nft / iptables-{nft,legacy}-restore.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { silentLogger } from '../../dist/core/log.js';
import { ExecNft } from '../../dist/netfilter/nft.js';
import { ExecIptables } from '../../dist/netfilter/iptables.js';
import { NftablesProxier } from '../../dist/proxy/nftables/proxier.js';
import { IptablesProxier } from '../../dist/proxy/iptables/proxier.js';
import { ProxyModel } from '../../dist/proxy/model/model.js';
import { bracketedRatio } from '../report/stats.mjs';

const opt = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : def;
};
const SIZES = opt('--sizes', '1000,5000,10000').split(',').map(Number);
const ROUNDS = Number(opt('--rounds', '3'));
// Small sizes get more rounds (as many as make the same work as ROUNDS at 5000 Services): a round at
// 1000 takes ~70 ms of nft, where this machine's speed alone moves single loads by 30%.
const roundsFor = (n) => Math.max(ROUNDS, Math.ceil((ROUNDS * 5000) / n));
const CHANGES = Number(opt('--changes', '5'));
const IPT = opt('--iptables-backend', 'nft');
const JSON_OUT = process.argv.includes('--json');
const CFG = { nodeName: 'node-a', clusterCIDR: '10.244.0.0/16' };
const tag = randomBytes(3).toString('hex');
// Each measurement starts from a collected young generation, so one mode does not pay for the other's
// fresh garbage. Not a forced full GC: that makes V8 drop the optimised render code, and the next sync
// then runs unoptimised while ~200 ms of recompiling competes with nft, a cost weft-proxy (which never
// forces a GC) does not pay. Old-generation garbage is left to V8's own collections, as in the daemon.
setFlagsFromString('--expose_gc');
const gcRaw = runInNewContext('gc');
const gc = () => gcRaw({ type: 'minor' });
const made = [];

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 30, ...opts });
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r;
}
function netns(name) {
  const ns = `wpb-${tag}-${name}`;
  sh('ip', ['netns', 'add', ns]);
  made.push(ns);
  return ns;
}
function delNetns(ns) {
  // Rules freed here, in the syscall, rather than by the kernel's netns cleanup worker, which runs after
  // `ip netns del` returns and would compete with the next measurement for the CPU.
  sh('ip', ['netns', 'exec', ns, 'nft', 'flush', 'ruleset'], { allowFail: true });
  sh('ip', ['netns', 'del', ns], { allowFail: true });
  made.splice(made.indexOf(ns), 1);
}
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

/** Our child processes named `comm`. */
function children(comm) {
  const pids = readdirSync('/proc/self/task').flatMap((t) => readFileSync(`/proc/self/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean));
  return pids.filter((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === comm;
    } catch {
      return false; // gone meanwhile
    }
  });
}
/**
 * Waits (bounded) until the nft started ahead sits in read(2) on its input, as it does in weft-proxy
 * long before a sync comes; otherwise its start-up (exec, libraries, netlink socket) would run inside
 * a measurement that starts right after it was spawned. The bare run pays nft's start, as any `nft -f` does.
 */
async function nftWaiting() {
  const until = Date.now() + 2000;
  while (Date.now() < until) {
    const reading = children('nft').some((p) => {
      try {
        return readFileSync(`/proc/${p}/syscall`, 'utf8').startsWith('0 ');
      } catch {
        return false;
      }
    });
    if (reading) return true;
    await new Promise((r) => setTimeout(r, 2));
  }
  return false;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const ip = (i, base) => `${base}.${(i >> 8) & 255}.${i & 255}`;
function buildModel(n) {
  const m = new ProxyModel();
  for (let i = 0; i < n; i++) {
    const name = `svc-${i}`;
    m.upsert({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'bench' }, spec: { clusterIP: ip(i, '10.96'), ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
    m.upsert(slice(name, [ip(2 * i, '10.244'), ip(2 * i + 1, '10.245')]));
  }
  m.applyChanges();
  return m;
}
function slice(name, ips) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${name}-a`, namespace: 'bench', labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4',
    endpoints: ips.map((a) => ({ addresses: [a], conditions: { ready: true }, nodeName: 'node-a' })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

/** Full sync in a fresh netns, then CHANGES single-endpoint changes (partial syncs). */
async function runMode(mode, n, model) {
  const ns = netns(`${mode}${n}`);
  let px;
  try {
    // As weft-proxy runs it: the next transaction's nft started ahead (keepReady), closed before the netns goes.
    px = mode === 'nft' ? new NftablesProxier(new ExecNft(ns, { keepReady: true }), CFG, silentLogger) : new IptablesProxier(new ExecIptables(IPT, ns), CFG, silentLogger);
    if (mode === 'nft' && !(await nftWaiting())) throw new Error('the nft started ahead is not waiting for input after 2 s');
    gc();
    let t0 = process.hrtime.bigint();
    await px.sync(model, new Set(), true);
    const full = ms(t0);
    const changes = [];
    for (let k = 0; k < CHANGES; k++) {
      const i = (k * 7919) % n;
      model.upsert(slice(`svc-${i}`, [ip(2 * i, '10.244'), ip(60000 + k, '10.246')]));
      const c = model.applyChanges();
      t0 = process.hrtime.bigint();
      const r = await px.sync(model, c.changed, false);
      changes.push(ms(t0));
      if (r.full) throw new Error('expected a partial sync');
      // Put it back so every round starts from the same model.
      model.upsert(slice(`svc-${i}`, [ip(2 * i, '10.244'), ip(2 * i + 1, '10.245')]));
      await px.sync(model, model.applyChanges().changed, false);
    }
    let dump = '';
    if (mode === 'nft') dump = sh('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'ip', 'weft-proxy']).stdout;
    return { full, change: median(changes), dump };
  } finally {
    await px?.close?.();
    delNetns(ns);
  }
}

function bareNft(dump, n) {
  const ns = netns(`bare${n}`);
  try {
    const t0 = process.hrtime.bigint();
    sh('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: dump });
    return ms(t0);
  } finally {
    delNetns(ns);
  }
}

const results = [];
try {
  for (const n of SIZES) {
    const model = buildModel(n);
    const rows = { nftFull: [], bare: [], nftChange: [], iptFull: [], iptChange: [] };
    // One untimed round first, as any benchmark of JIT-compiled code warms up: the rounds then measure
    // the syncs of a running weft-proxy. The first sync of a fresh process is printed on its own.
    const cold = (await runMode('nft', n, model)).full;
    if (IPT !== 'none') await runMode('ipt', n, model);
    const rounds = roundsFor(n);
    for (let r = 0; r < rounds; r++) {
      const nft = await runMode('nft', n, model);
      rows.nftFull.push(nft.full);
      rows.nftChange.push(nft.change);
      rows.bare.push(bareNft(nft.dump, n));
      if (IPT !== 'none') {
        const ipt = await runMode('ipt', n, model);
        rows.iptFull.push(ipt.full);
        rows.iptChange.push(ipt.change);
      }
    }
    const row = {
      services: n,
      rounds,
      nftFullMs: median(rows.nftFull),
      bareNftMs: median(rows.bare),
      nftChangeMs: median(rows.nftChange),
      nftWarmupFullMs: cold,
      iptFullMs: IPT !== 'none' ? median(rows.iptFull) : undefined,
      iptChangeMs: IPT !== 'none' ? median(rows.iptChange) : undefined,
    };
    const paired = bracketedRatio(rows.nftFull, rows.bare);
    row.fullVsBare = paired.median;
    row.fullVsBareRange = [paired.min, paired.max];
    // Per-round samples, in round order, for the report.
    row.nftFullRuns = rows.nftFull;
    row.bareNftRuns = rows.bare;
    if (row.iptFullMs) row.nftVsIptFull = row.nftFullMs / row.iptFullMs;
    if (row.iptChangeMs) row.nftVsIptChange = row.nftChangeMs / row.iptChangeMs;
    results.push(row);
    if (!JSON_OUT) {
      const f = (x) => (x === undefined ? '-' : x.toFixed(1));
      console.log(
        `${n} services x 2 endpoints: nft full sync ${f(row.nftFullMs)} ms (warm-up ${f(row.nftWarmupFullMs)}), bare nft -f ${f(row.bareNftMs)} ms (ratio ${row.fullVsBare.toFixed(2)}, rounds ${row.fullVsBareRange.map((x) => x.toFixed(2)).join('-')}), ` +
          `one endpoint change ${f(row.nftChangeMs)} ms; iptables-${IPT} full ${f(row.iptFullMs)} ms, change ${f(row.iptChangeMs)} ms` +
          (row.nftVsIptFull ? ` (nft/iptables: full ${row.nftVsIptFull.toFixed(2)}, change ${row.nftVsIptChange.toFixed(2)})` : ''),
      );
    }
  }
  if (JSON_OUT) console.log(JSON.stringify({ rounds: ROUNDS, changes: CHANGES, iptablesBackend: IPT, results }, null, 2));
} finally {
  for (const ns of [...made]) delNetns(ns);
}
