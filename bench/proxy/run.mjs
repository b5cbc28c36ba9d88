#!/usr/bin/env node
// weft-proxy iptables mode: full sync at 1000/5000/10000 services x 2 endpoints
// next to a bare `iptables-restore --noflush` of the same text, and one
// endpoint change at the largest size, in throwaway network namespaces.
// Usage: node bench/proxy/run.mjs [--sizes 1000,5000,10000] [--backends nft,legacy] [--reps 3]
// Needs root and a built dist/ (npx tsc -p tsconfig.json).
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { run } from '../../dist/exec/run.js';
import { silentLogger } from '../../dist/core/log.js';
import { ExecIptables } from '../../dist/netfilter/iptables.js';
import { IptablesProxier } from '../../dist/proxy/iptables/proxier.js';
import { ProxyModel } from '../../dist/proxy/model/model.js';
import { groupByService, parseSave, renderIptables } from '../../dist/proxy/iptables/render.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const sizes = arg('sizes', '1000,5000,10000').split(',').map(Number);
const backends = arg('backends', 'nft,legacy').split(',');
const reps = Number(arg('reps', '3'));
// Also time one restore of the same rules as a single nat transaction (kube-proxy's way); slow on nft.
const single = !process.argv.includes('--no-single');
const CFG = { nodeName: 'node-a', clusterCIDR: '10.244.0.0/16' };
// Each measurement (weft's and the bare restore) starts from a collected young generation, as in
// nft.mjs: the fresh garbage of the previous size must not be paid by the next one. Not a forced full
// GC, which makes V8 drop optimised code that weft-proxy (never forcing a GC) keeps.
setFlagsFromString('--expose_gc');
const gcRaw = runInNewContext('gc');
const gc = () => gcRaw({ type: 'minor' });

const ipOf = (base, i) => `${base}.${(i >> 8) & 255}.${i & 255}`;
function buildModel(n) {
  const m = new ProxyModel();
  for (let i = 0; i < n; i++) {
    const name = `svc-${i}`;
    m.upsert({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'bench' }, spec: { clusterIP: ipOf('10.96', i + 1), ports: [{ name: 'http', port: 80 }] } });
    m.upsert(slice(name, [ipOf('10.244', 2 * i + 2), ipOf('10.244', 2 * i + 3)]));
  }
  m.applyChanges();
  return m;
}
function slice(name, ips) {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: `${name}-x`, namespace: 'bench', labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4', endpoints: ips.map((ip, k) => ({ addresses: [ip], nodeName: k ? 'node-b' : 'node-a', conditions: { ready: true } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}
const live = new Set();
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    for (const ns of live) await run('ip', ['netns', 'del', ns], { allowFail: true });
    process.exit(130);
  });
}
/**
 * Runs fn in a new namespace. The namespace is deleted later, by dropNamespaces() after each size:
 * the kernel tears a namespace down in the background, and that teardown of 80 000 rules must not
 * land in the middle of the next measurement (weft's or the bare restore's).
 */
async function withNetns(fn) {
  const ns = `weft-bench-${randomBytes(3).toString('hex')}`;
  await run('ip', ['netns', 'add', ns]);
  live.add(ns);
  return fn(ns);
}
async function dropNamespaces() {
  for (const ns of live) await run('ip', ['netns', 'del', ns], { allowFail: true });
  live.clear();
}
/** Wraps the client to capture the text weft sends (the bare restore replays it). */
class Recording extends ExecIptables {
  texts = [];
  openRestore() {
    const s = super.openRestore();
    return { write: (t) => (this.texts.push(t), s.write(t)), end: () => s.end(), abort: () => s.abort() };
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x) => `${x.toFixed(0)} ms`.padStart(9);

const rows = [];
try {
  for (const backend of backends) {
    for (const n of sizes) {
      const model = buildModel(n);
      const weft = [], bare = [], resync = [], change = [];
      let rules = 0;
      for (let r = 0; r < reps; r++) {
        // weft: render + iptables-save + restore, into an empty netns.
        let text = '';
        await withNetns(async (ns) => {
          const ipt = new Recording(backend, ns);
          const p = new IptablesProxier(ipt, CFG, silentLogger);
          gc();
          let t = performance.now();
          const res = await p.sync(model, new Set(), true);
          weft.push(performance.now() - t);
          rules = res.ruleCounts.nat + res.ruleCounts.filter;
          text = ipt.texts.join('');
          // Periodic full resync over existing rules.
          t = performance.now();
          await p.sync(model, new Set(), true);
          resync.push(performance.now() - t);
          if (n === Math.max(...sizes)) {
            // One endpoint of one service replaced: a partial sync.
            model.upsert(slice('svc-7', ['10.250.0.' + (r + 1), ipOf('10.244', 17)]));
            const c = model.applyChanges();
            t = performance.now();
            await p.sync(model, c.changed, false);
            change.push(performance.now() - t);
          }
        });
        // bare: the same text, iptables-restore --noflush -w, into an empty netns.
        await withNetns(async (ns) => {
          gc();
          const t = performance.now();
          await run(`iptables-${backend}-restore`, ['--noflush', '-w', '5'], { input: text, netns: ns, timeoutMs: 900_000 });
          bare.push(performance.now() - t);
        });
      }
      let one;
      if (single) {
        const text = renderIptables({ model: { services: groupByService(model.servicePorts.values()), endpoints: model.endpoints }, cfg: CFG, changed: 'all', existing: parseSave(''), maxRulesPerRestore: Infinity }).text;
        await withNetns(async (ns) => {
          const t = performance.now();
          await run(`iptables-${backend}-restore`, ['--noflush', '-w', '5'], { input: text, netns: ns, timeoutMs: 900_000 });
          one = performance.now() - t;
        });
      }
      await dropNamespaces();
      const row = { backend, services: n, rules, weft: median(weft), bare: median(bare), single: one, resync: median(resync), change: change.length ? median(change) : undefined };
      rows.push(row);
      console.log(
        `${backend.padEnd(6)} ${String(n).padStart(6)} services ${String(rules).padStart(6)} rules  weft full ${ms(row.weft)}  bare restore ${ms(row.bare)}  ratio ${(row.weft / row.bare).toFixed(2)}x` +
          `  full resync ${ms(row.resync)}` + (one !== undefined ? `  single-transaction restore ${ms(one)} (weft ${(one / row.weft).toFixed(1)}x faster)` : '') + (row.change !== undefined ? `  one endpoint change ${ms(row.change)} (${(row.change / row.weft * 100).toFixed(1)}% of full)` : ''),
      );
    }
  }
} finally {
  // Also when a measurement failed: nothing is left behind.
  await dropNamespaces();
}
console.log(JSON.stringify({ reps, rows }));
