#!/usr/bin/env node --expose-gc
// Where weft-proxy's memory goes, without root or a lab: the same manifests
// as bench/memory/run.mjs go through the real pieces in one process (file
// source -> source mux -> model -> applyChanges -> the pure iptables or
// nftables renderer), and heap / external / RSS are printed after each stage
// (after a forced GC, so the numbers are what stays live).
//
//   node --expose-gc bench/memory/inproc.mjs [--services 10000] [--mode iptables|nftables|none]
//        [--snapshot FILE]   write a heap snapshot at the end (open in Chrome DevTools)
//
// Needs a built dist/. Prints one JSON line on stdout.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { manifestFiles } from './manifests.mjs';

const argv = process.argv.slice(2);
const argOf = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const services = Number(argOf('--services', '10000'));
const mode = argOf('--mode', 'iptables');
const snapshot = argOf('--snapshot');
const dist = new URL('../../dist/', import.meta.url);
const imp = (p) => import(new URL(p, dist).href);

const { silentLogger } = await imp('core/log.js');
const { ProxyModel } = await imp('proxy/model/model.js');
const { FileSource } = await imp('proxy/sources/files.js');
const { SourceMux } = await imp('proxy/sources/source.js');
const { groupByService, renderIptables } = await imp('proxy/iptables/render.js');
const { renderNftables } = await imp('proxy/nftables/render.js');

const MB = 1e6;
const stages = [];
let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 5);
function mark(stage) {
  globalThis.gc?.();
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  const row = { stage, heapUsedMB: +(m.heapUsed / MB).toFixed(1), externalMB: +(m.external / MB).toFixed(1), arrayBuffersMB: +(m.arrayBuffers / MB).toFixed(1), rssMB: +(m.rss / MB).toFixed(1), peakRssMB: +(peakRss / MB).toFixed(1) };
  stages.push(row);
  process.stderr.write(`inproc: ${stage.padEnd(22)} heap ${row.heapUsedMB} MB, external ${row.externalMB} MB, rss ${row.rssMB} MB (peak ${row.peakRssMB})\n`);
}

const dir = mkdtempSync(join(tmpdir(), 'weft-inproc-'));
try {
  for (const f of manifestFiles(services)) writeFileSync(join(dir, f.name), f.text);
  mark('start');
  const model = new ProxyModel();
  const source = new FileSource({ dir, log: silentLogger });
  const mux = new SourceMux(model, [source.name], { onChange() {}, onReady() {} });
  let objects = await source.scan(mux);
  mark('scanned');
  mux.replace(source.name, objects);
  objects = undefined;
  mark('in model (pending)');
  let changes = model.applyChanges();
  mark('applied (changes live)');
  const changeCount = changes.changed.size;
  // The syncer drops the changes once the sync is done; so does this.
  changes = undefined;
  let state;
  const cfg = { nodeName: 'node-a', clusterCIDR: '10.244.0.0/16', masqueradeMark: '0x2000', nodePortAddresses: [] };
  if (mode === 'iptables') {
    const r = renderIptables({ model: { services: groupByService(model.servicePorts.values()), endpoints: model.endpoints }, cfg, changed: 'all', existing: { chains: new Map(), jumps: new Set() } });
    mark('rendered (text live)');
    state = r.state;
  } else if (mode === 'nftables') {
    const r = renderNftables({ model: { services: groupByService(model.servicePorts.values()), endpoints: model.endpoints }, cfg, changed: 'all' });
    mark('rendered (text live)');
    state = r.commit();
  }
  mark('steady (state kept)');
  if (snapshot) writeHeapSnapshot(snapshot);
  console.log(JSON.stringify({ services, mode, changes: changeCount, servicePorts: model.servicePorts.size, kept: !!state && !!model, stages }));
} finally {
  clearInterval(sampler);
  rmSync(dir, { recursive: true, force: true });
}
