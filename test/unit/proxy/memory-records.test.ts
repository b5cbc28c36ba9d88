import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { isIPv4 } from '../../../src/core/ip.js';
import { silentLogger } from '../../../src/core/log.js';
import { isMirrored, sameEndpoints, sliceService, type EndpointInfo } from '../../../src/proxy/model/endpoints.js';
import type { EndpointSlice, ProxyObject } from '../../../src/proxy/model/k8s.js';
import { forEachManifest, parseManifests } from '../../../src/proxy/model/manifest.js';
import { ProxyModel } from '../../../src/proxy/model/model.js';
import { mergeSlices, recordKey, sliceRecord, toRecord } from '../../../src/proxy/model/records.js';
import { samePorts, servicePortKey, servicePortsOf, type ServicePortInfo } from '../../../src/proxy/model/service-port.js';
import { FileSource } from '../../../src/proxy/sources/files.js';
import { SourceMux } from '../../../src/proxy/sources/source.js';
import { ep, slice, svc } from './fixtures.js';

/** The model's merge before slim records (full slices in, per-port lists out): the reference. */
function referenceMerge(service: string, slices: EndpointSlice[]): Map<string, EndpointInfo[]> {
  const native = slices.filter((s) => !isMirrored(s));
  const use = native.length > 0 ? native : slices;
  const out = new Map<string, EndpointInfo[]>();
  const seen = new Set<string>();
  for (const s of use) {
    if (s.addressType !== 'IPv4') continue;
    for (const port of s.ports ?? []) {
      if (!port.port) continue;
      const key = servicePortKey(service, port.name);
      const list = out.get(key) ?? [];
      for (const e of s.endpoints) {
        const ip = e.addresses[0];
        if (!ip || !isIPv4(ip)) continue;
        const id = `${key}|${ip}:${port.port}|${port.protocol ?? 'TCP'}`;
        if (seen.has(id)) continue;
        seen.add(id);
        const ready = e.conditions?.ready ?? true;
        list.push({ ip, port: port.port, ready, serving: e.conditions?.serving ?? ready, terminating: e.conditions?.terminating ?? false, nodeName: e.nodeName ?? '' });
      }
      out.set(key, list);
    }
  }
  const order = (ip: string) => ip.split('.').reduce((a, b) => a * 256 + Number(b), 0);
  for (const l of out.values()) l.sort((a, b) => (a.ip === b.ip ? a.port - b.port : order(a.ip) - order(b.ip)));
  return out;
}

/** Small deterministic PRNG (mulberry32) so failures replay. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomSlice(r: () => number, i: number): EndpointSlice {
  const pick = <T,>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const eps = Array.from({ length: Math.floor(r() * 5) }, () =>
    ep(pick(['10.244.1.2', '10.244.1.3', '10.244.0.9', '10.244.1.10', 'fd00::1']), pick(['node-a', 'node-b']), pick([{ ready: true }, { ready: false }, { ready: false, serving: true, terminating: true }, {}, undefined as never])),
  );
  const ports = pick([
    [{ name: 'http', port: 8080, protocol: 'TCP' as const }],
    [{ name: 'http', port: 8081, protocol: 'TCP' as const }],
    [{ name: 'http', port: 8080, protocol: 'UDP' as const }],
    [{ name: 'http', port: 8080, protocol: 'TCP' as const }, { name: 'dns', port: 53, protocol: 'UDP' as const }],
    [{ port: 9000 } as never],
    [],
  ]);
  const s = slice('web', eps, ports, `web-${i}`);
  if (r() < 0.15) s.addressType = 'IPv6';
  if (r() < 0.25) s.metadata.labels!['endpointslice.kubernetes.io/managed-by'] = 'weft-endpoints-mirror';
  return s;
}

describe('slim records', () => {
  it('merge the slices of a Service exactly like the full-object merge (randomised, seeded)', () => {
    const r = rng(42);
    for (let c = 0; c < 300; c++) {
      const slices = Array.from({ length: 1 + Math.floor(r() * 4) }, (_, i) => randomSlice(r, i));
      const got = mergeSlices(slices.map((s) => sliceRecord(s, `default/${s.metadata.name}`, undefined)));
      const want = referenceMerge('default/web', slices);
      expect(Object.fromEntries(got), `case ${c}`).toEqual(Object.fromEntries(want));
    }
  });

  it('keep only what the model reads of a slice', () => {
    const s = slice('web', [ep('10.244.1.3'), ep('10.244.1.2'), ep('10.244.1.2', 'node-b')]);
    s.metadata.annotations = { note: 'x'.repeat(1000) };
    const rec = sliceRecord(s, 'default/web-abc', undefined);
    expect(rec.service).toBe(sliceService(s));
    expect(JSON.stringify(rec)).not.toContain('xxx');
    expect(rec.ports[0]!.endpoints.map((e) => `${e.ip}@${e.nodeName}`)).toEqual(['10.244.1.2@node-a', '10.244.1.3@node-a']);
  });

  it('samePorts sees a change in every field of ServicePortInfo', () => {
    const base = servicePortsOf(svc('web', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 30100, sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80, nodePort: 30080 }], externalIPs: ['192.0.2.9'], loadBalancerSourceRanges: ['192.0.2.0/24'] }), { get: (s) => s }).concat();
    expect(base).toHaveLength(1);
    const p = base[0]!;
    expect(samePorts([p], [{ ...p }])).toBe(true);
    for (const k of Object.keys(p) as Array<keyof ServicePortInfo>) {
      const v = p[k];
      const other = typeof v === 'string' ? `${v}x` : typeof v === 'number' ? v + 1 : typeof v === 'boolean' ? !v : [...(v as string[]), 'x'];
      expect(samePorts([p], [{ ...p, [k]: other } as ServicePortInfo]), k).toBe(false);
    }
  });

  it('sameEndpoints sees a change in every field of EndpointInfo, not in key order', () => {
    const e: EndpointInfo = { ip: '10.244.1.2', port: 8080, ready: true, serving: true, terminating: false, nodeName: 'node-a' };
    const a = new Map([['default/web:http', [e]], ['default/web:dns', []]]);
    expect(sameEndpoints(a, new Map([['default/web:dns', []], ['default/web:http', [{ ...e }]]]))).toBe(true);
    for (const k of Object.keys(e) as Array<keyof EndpointInfo>) {
      const v = e[k];
      const other = typeof v === 'string' ? `${v}x` : typeof v === 'number' ? v + 1 : !v;
      expect(sameEndpoints(a, new Map([['default/web:http', [{ ...e, [k]: other }]], ['default/web:dns', []]])), k).toBe(false);
    }
  });

  it('the model gives the same snapshot from objects and from their records', () => {
    const objs: ProxyObject[] = [
      svc('web', { ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] }),
      slice('web', [ep('10.244.1.2'), ep('10.244.1.3', 'node-b', { ready: false })], [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'dns', port: 5353, protocol: 'UDP' }]),
      { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'old', namespace: 'default' }, subsets: [{ addresses: [{ ip: '10.244.2.2' }], ports: [{ port: 80 }] }] },
      svc('old', { clusterIP: '10.96.0.20', ports: [{ port: 80 }] }),
    ];
    const a = new ProxyModel(() => 0);
    const b = new ProxyModel(() => 0);
    for (const o of objs) (a.upsert(o), b.upsert(toRecord(o)));
    a.applyChanges();
    b.applyChanges();
    expect([...b.servicePorts]).toEqual([...a.servicePorts]);
    expect(Object.fromEntries(b.endpoints)).toEqual(Object.fromEntries(a.endpoints));
    expect(a.endpoints.get('default/old')!.map((x) => x.ip)).toEqual(['10.244.2.2']);
  });
});

describe('manifest parsing', () => {
  const reference = (text: string) =>
    parseAllDocuments(text)
      .map((d) => d.toJS())
      .filter((v) => v !== null && v !== undefined)
      .flatMap((v) => (v.kind === 'List' && Array.isArray(v.items) ? v.items : [v]));

  it('JSON (one value, a List, with a BOM) reads like YAML', () => {
    const list = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [svc('a'), slice('a', [ep('10.244.1.2')])] });
    for (const text of [list, `\uFEFF${list}`, `  \n${JSON.stringify(svc('b'))}\n`, JSON.stringify(svc('c'), null, '\t')]) {
      expect(parseManifests(text)).toEqual(reference(text));
    }
  });

  it('YAML streams and JSON that JSON.parse refuses go through the YAML reader', () => {
    const text = `${JSON.stringify(svc('a'))}\n---\n${JSON.stringify(svc('b'))}\n`;
    expect(parseManifests(text).map((o) => (o as ProxyObject).metadata.name)).toEqual(['a', 'b']);
    const yaml = '---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n---\nkind: List\nitems:\n- {kind: Service}\n';
    expect(parseManifests(yaml)).toEqual(reference(yaml));
    expect(parseManifests("{a: 1, b: 'x'}")).toEqual([{ a: 1, b: 'x' }]);
  });

  it('syntax errors carry the YAML reader\'s first line and the document number', () => {
    for (const [text, doc] of [['a: 1\n---\nb: [\n', 2], ['{"a": 1,\n', 1]] as const) {
      const docs = parseAllDocuments(text);
      const want = docs[doc - 1]!.errors[0]!.message.split('\n')[0]!;
      expect(() => parseManifests(text, 'f.yaml')).toThrow(`f.yaml document ${doc}: ${want}`);
    }
  });

  it('hands documents over one at a time', () => {
    const seen: string[] = [];
    forEachManifest('kind: A\n---\nkind: B\n', 'x', (o) => seen.push((o as { kind: string }).kind));
    expect(seen).toEqual(['A', 'B']);
  });
});

describe('file source and mux keep records only', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-memory-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('scans files into records; a broken file is refused whole; later files win', async () => {
    writeFileSync(join(dir, 'a.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [svc('a'), slice('a', [ep('10.244.1.2')])] }));
    writeFileSync(join(dir, 'b.yaml'), `${JSON.stringify(svc('a', { clusterIP: '10.96.0.99' }))}\n`);
    writeFileSync(join(dir, 'c.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec: {clusterIP: 10.96.0.30, ports: [{port: 80}]}\n---\nbroken: [\n');
    let refused = 0;
    const model = new ProxyModel(() => 0);
    const mux = new SourceMux(model, ['manifests'], { onChange: () => {}, onReady: () => {}, onRefused: () => refused++ });
    const src = new FileSource({ dir, log: silentLogger });
    const recs = await src.scan(mux);
    expect(recs.map(recordKey).sort()).toEqual(['EndpointSlice/default/a-abc', 'Service/default/a']);
    expect(recs.every((r) => !('metadata' in r))).toBe(true);
    expect(refused).toBe(1);
    mux.replace('manifests', recs);
    model.applyChanges();
    expect(model.servicePorts.get('default/a:http')!.clusterIP).toBe('10.96.0.99');
    expect(model.endpoints.get('default/a:http')!.map((e) => e.ip)).toEqual(['10.244.1.2']);
  });

  it('a relist that finds nothing new keeps the old records and pokes nobody', () => {
    const model = new ProxyModel(() => 0);
    let changes = 0;
    const mux = new SourceMux(model, ['etcd'], { onChange: () => changes++, onReady: () => {} });
    const objs = () => [svc('a'), slice('a', [ep('10.244.1.2')])];
    mux.replace('etcd', objs());
    model.applyChanges();
    const kept = model.servicePorts.get('default/a:http');
    expect(changes).toBe(1);
    mux.replace('etcd', objs());
    expect(changes).toBe(1);
    expect(model.hasPending).toBe(false);
    mux.replace('etcd', [svc('a'), slice('a', [ep('10.244.1.3')])]);
    expect(changes).toBe(2);
    expect([...model.applyChanges().changed]).toEqual(['default/a']);
    expect(model.servicePorts.get('default/a:http')).toBe(kept);
    mux.replace('etcd', []);
    expect(changes).toBe(3);
    model.applyChanges();
    expect(model.servicePorts.size).toBe(0);
  });
});
