import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/core/log.js';
import { FakeNft } from '../../../src/netfilter/nft-fake.js';
import { groupByService } from '../../../src/proxy/iptables/render.js';
import type { EndpointSlice, Service } from '../../../src/proxy/model/k8s.js';
import { ProxyModel } from '../../../src/proxy/model/model.js';
import { NFT_FAMILY, NFT_TABLE, portChains } from '../../../src/proxy/nftables/names.js';
import { NftablesProxier } from '../../../src/proxy/nftables/proxier.js';
import { renderNftables, summarize, type NftRenderState } from '../../../src/proxy/nftables/render.js';
import type { NftProxyConfig } from '../../../src/proxy/nftables/service-rules.js';
import { CFG, ep, slice, svc } from './fixtures.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Compares with nftables-golden/<name>.txt; UPDATE_GOLDEN=1 (or a missing file) rewrites it. */
function expectGolden(name: string, text: string): void {
  const file = join(here, 'nftables-golden', `${name}.txt`);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) writeFileSync(file, text);
  expect(text).toBe(readFileSync(file, 'utf8'));
}

const T = [NFT_FAMILY, NFT_TABLE] as const;

/** Endpoints a packet to `key` can be DNATed to, following the map element it hits. */
function reach(nft: FakeNft, key: string, map = 'service-ips'): string[] {
  const verdict = nft.element(...T, map, key);
  return verdict ? nft.reachable(...T, verdict, key) : [];
}

function modelOf(objects: Array<Service | EndpointSlice>): ProxyModel {
  const m = new ProxyModel(() => 0);
  for (const o of objects) m.upsert(o);
  m.applyChanges();
  return m;
}

const input = (m: ProxyModel) => ({ services: groupByService(m.servicePorts.values()), endpoints: m.endpoints });

/** Full render into an empty table; returns the text and the fake holding it. */
async function fullInto(objects: Array<Service | EndpointSlice>, cfg: NftProxyConfig = CFG) {
  const nft = new FakeNft();
  const r = renderNftables({ model: input(modelOf(objects)), cfg, changed: 'all' });
  await nft.apply(r.text);
  return { r, nft, text: r.text, summary: summarize(r.commit()) };
}

/** Only service-specific lines (drops the fixed boilerplate) of a fake dump. */
function serviceDump(nft: FakeNft): string {
  const lines = nft.dump().split('\n');
  const out: string[] = [];
  let keep = false;
  for (const l of lines) {
    if (/^  (chain|set|map) /.test(l)) keep = /^  (map|set) /.test(l) || /^  chain (svc|svl|ext|fw|sep)-/.test(l);
    if (keep) out.push(l);
  }
  return out.join('\n') + '\n';
}

const two = slice('web', [ep('10.244.1.2', 'node-a'), ep('10.244.2.2', 'node-b')]);

describe('renderNftables golden (full sync into an empty table, checked by the stateful fake)', () => {
  it('full sync: table, maps, base chains, ClusterIP with two endpoints', async () => {
    const { text, nft } = await fullInto([svc('web'), two]);
    expectGolden('full-clusterip', text);
    expect(reach(nft, '10.96.0.10 . tcp . 80')).toEqual(['10.244.1.2:8080', '10.244.2.2:8080']);
  });

  it('no endpoints: ClusterIP goes to reject-chain via no-endpoint-services, no service chains', async () => {
    const { nft } = await fullInto([svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }), slice('web', [])]);
    expect(nft.element(...T, 'no-endpoint-services', '10.96.0.10 . tcp . 80')).toBe('goto reject-chain');
    expect(nft.element(...T, 'no-endpoint-nodeports', 'tcp . 30080')).toBe('goto reject-chain');
    expect(nft.element(...T, 'service-ips', '10.96.0.10 . tcp . 80')).toBeUndefined();
    expectGolden('no-endpoints', serviceDump(nft));
  });

  it('NodePort, externalIPs, LoadBalancer with source ranges (firewall map)', async () => {
    const s = svc('web', { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, nodePort: 30080 }], externalIPs: ['192.0.2.50'], loadBalancerSourceRanges: ['198.51.100.0/24'] }, { status: { loadBalancer: { ingress: [{ ip: '192.0.2.60' }] } } });
    const { nft } = await fullInto([s, two]);
    expect(nft.element(...T, 'firewall-ips', '192.0.2.60 . tcp . 80')).toMatch(/^goto fw-/);
    expect(reach(nft, 'tcp . 30080', 'service-nodeports')).toEqual(['10.244.1.2:8080', '10.244.2.2:8080']);
    expectGolden('external', serviceDump(nft));
  });

  it('sessionAffinity ClientIP: a timeout set per endpoint, looked up before numgen, updated before DNAT', async () => {
    const s = svc('web', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 300 } } });
    const { nft } = await fullInto([s, two]);
    const dump = serviceDump(nft);
    expect(dump.match(/^  set aff-.*flags dynamic,timeout; timeout 300s;/gm)).toHaveLength(2);
    expect(dump).toMatch(/ip saddr @aff-\S+ goto sep-[\s\S]*numgen random mod 2/);
    expectGolden('affinity', dump);
  });

  it('externalTrafficPolicy Local: local endpoints for outside traffic, all for pods and host, health-check port', async () => {
    const s = svc('web', { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, nodePort: 30080 }], externalTrafficPolicy: 'Local', healthCheckNodePort: 30999 });
    const { nft, summary } = await fullInto([s, two]);
    expect(summary.healthChecks).toEqual([{ service: 'default/web', port: 30999, localEndpoints: 1 }]);
    expectGolden('etp-local', serviceDump(nft));
  });

  it('externalTrafficPolicy Local without local endpoints: node port dropped (not rejected), counted', async () => {
    const s = svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }], externalTrafficPolicy: 'Local' });
    const { nft, summary } = await fullInto([s, slice('web', [ep('10.244.2.2', 'node-b')])]);
    expect(nft.element(...T, 'no-endpoint-nodeports', 'tcp . 30080')).toBe('drop');
    expect(nft.element(...T, 'service-nodeports', 'tcp . 30080')).toMatch(/^goto ext-/);
    expect(summary.noLocalEndpoints).toBe(1);
  });

  it('internalTrafficPolicy Local: ClusterIP goes to the local chain; none local -> drop', async () => {
    const s = svc('web', { internalTrafficPolicy: 'Local' });
    const { nft } = await fullInto([s, two]);
    expect(reach(nft, '10.96.0.10 . tcp . 80')).toEqual(['10.244.1.2:8080']);
    expectGolden('itp-local', serviceDump(nft));
    const none = await fullInto([s, slice('web', [ep('10.244.2.2', 'node-b')])]);
    expect(none.nft.element(...T, 'no-endpoint-services', '10.96.0.10 . tcp . 80')).toBe('drop');
  });

  it('terminating endpoints are used only when no endpoint is ready', async () => {
    const term = { ready: false, serving: true, terminating: true };
    const mixed = await fullInto([svc('web'), slice('web', [ep('10.244.1.2'), ep('10.244.1.3', 'node-a', term)])]);
    expect(reach(mixed.nft, '10.96.0.10 . tcp . 80')).toEqual(['10.244.1.2:8080']);
    const only = await fullInto([svc('web'), slice('web', [ep('10.244.1.3', 'node-a', term)])]);
    expect(reach(only.nft, '10.96.0.10 . tcp . 80')).toEqual(['10.244.1.3:8080']);
  });

  it('UDP with --masquerade-all and node port addresses', async () => {
    const s = svc('dns', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] });
    const { text } = await fullInto([s, slice('dns', [ep('10.244.1.2')], [{ name: 'dns', port: 5353, protocol: 'UDP' }])], { ...CFG, masqueradeAll: true, nodePortAddresses: ['192.0.2.0/24'] });
    expect(text).toContain('ip daddr { 192.0.2.0/24 } fib daddr type local');
    expect(text).toMatch(/chain pick-udp-1 \{\njump mark-for-masquerade\nmeta l4proto udp dnat ip to ip daddr . th dport . numgen random mod 1 map @service-endpoints-udp\n/);
    expect(text).toContain('add element ip weft-proxy service-endpoints-udp { 10.96.0.10 . 53 . 0 : 10.244.1.2 . 5353 }');
  });

  it('two Services claiming one address: the first keeps it, the transaction stays valid', async () => {
    const { r } = await fullInto([svc('a'), slice('a', [ep('10.244.1.2')]), svc('b'), slice('b', [ep('10.244.1.3')])]);
    expect(r.conflicts.length).toBeGreaterThan(0);
    expect(r.conflicts[0]).toBe('service-ips 10.96.0.10 . tcp . 80 (default/a, default/b)');
  });
});

describe('partial syncs', () => {
  /** Applies a full sync, then returns a helper that applies model changes as partial syncs. */
  async function start(objects: Array<Service | EndpointSlice>) {
    const nft = new FakeNft();
    const model = new ProxyModel(() => 0);
    for (const o of objects) model.upsert(o);
    model.applyChanges();
    let state: NftRenderState | undefined;
    const first = renderNftables({ model: input(model), cfg: CFG, changed: 'all' });
    await nft.apply(first.text);
    state = first.commit();
    return {
      nft,
      model,
      state: () => state!,
      async step(mutate: (m: ProxyModel) => void) {
        mutate(model);
        const c = model.applyChanges();
        const r = renderNftables({ model: input(model), cfg: CFG, changed: c.changed, previous: state });
        await nft.apply(r.text);
        state = r.commit();
        return r;
      },
    };
  }

  it('an unchanged model renders nothing', async () => {
    const s = await start([svc('web'), two]);
    const r = await s.step(() => {});
    expect(r.text).toBe('');
    expect(r.full).toBe(false);
  });

  it('one endpoint of a plain ClusterIP replaced: map elements only, no rule rewritten', async () => {
    const s = await start([svc('web'), two, svc('other', { clusterIP: '10.96.0.20' }), slice('other', [ep('10.244.5.5')])]);
    const r = await s.step((m) => m.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.3.3', 'node-c')])));
    expectGolden('partial-endpoint-change', r.text);
    expect(r.text).not.toContain('other');
    expect(r.text).not.toContain('rule');
    expect(reach(s.nft, '10.96.0.10 . tcp . 80')).toEqual(['10.244.1.2:8080', '10.244.3.3:8080']);
  });

  it('a NodePort service endpoint replaced: its service chain is rewritten, the shared pick chain is not', async () => {
    const s = await start([svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }), two]);
    const r = await s.step((m) => m.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.3.3', 'node-c')])));
    expect(r.text).toMatch(/^flush chain ip weft-proxy svc-/m);
    expect(r.text).not.toContain('pick-tcp');
    expect(reach(s.nft, 'tcp . 30080', 'service-nodeports')).toEqual(['10.244.1.2:8080', '10.244.3.3:8080']);
  });

  it('the endpoint count changes: the ClusterIP moves to another pick chain, the unused one goes', async () => {
    const s = await start([svc('web'), two]);
    const r = await s.step((m) => m.upsert(slice('web', [ep('10.244.1.2')])));
    expect(r.text).toContain('add chain ip weft-proxy pick-tcp-1');
    expect(r.text).toMatch(/delete chain ip weft-proxy pick-tcp-2\n$/);
    expect(reach(s.nft, '10.96.0.10 . tcp . 80')).toEqual(['10.244.1.2:8080']);
  });

  it('affinity endpoint replaced: old endpoint chain and set flushed, then deleted', async () => {
    const s = await start([svc('web', { sessionAffinity: 'ClientIP' }), two]);
    const r = await s.step((m) => m.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.3.3', 'node-c')])));
    expect(r.text).toMatch(/flush chain \S+ \S+ sep-\S+10.244.2.2\/8080\n[\s\S]*delete chain \S+ \S+ sep-\S+10.244.2.2\/8080\ndelete set \S+ \S+ aff-\S+10.244.2.2\/8080/);
  });

  it('a hairpin element shared by two Services stays while one still uses it', async () => {
    const s = await start([svc('a'), slice('a', [ep('10.244.1.2')]), svc('b', { clusterIP: '10.96.0.20' }), slice('b', [ep('10.244.1.2')])]);
    const r = await s.step((m) => m.remove('Service', 'default/a'));
    expect(r.text).not.toContain('hairpin');
    expect(s.nft.dump()).toContain('10.244.1.2 . 10.244.1.2');
    const r2 = await s.step((m) => m.remove('Service', 'default/b'));
    expect(r2.text).toContain('delete element ip weft-proxy hairpin-endpoints { 10.244.1.2 . 10.244.1.2 }');
  });

  it('after any sequence of partial syncs the table equals a fresh full sync of the same model', async () => {
    const lb = svc('lb', { clusterIP: '10.96.0.30', type: 'LoadBalancer', ports: [{ name: 'http', port: 80, nodePort: 30090 }], loadBalancerSourceRanges: ['198.51.100.0/24'], sessionAffinity: 'ClientIP' }, { status: { loadBalancer: { ingress: [{ ip: '192.0.2.70' }] } } });
    const s = await start([svc('web'), two, lb, slice('lb', [ep('10.244.1.2')])]);
    const steps: Array<(m: ProxyModel) => void> = [
      (m) => m.upsert(slice('web', [])), // endpoints gone: elements move to no-endpoint maps
      (m) => m.upsert(slice('web', [ep('10.244.7.7')])),
      (m) => m.upsert(slice('web', [ep('10.244.7.7'), ep('10.244.7.8'), ep('10.244.7.9', 'node-b')])),
      (m) => m.upsert(slice('web', [ep('10.244.7.6'), ep('10.244.7.7')])),
      (m) => m.upsert(slice('lb', [ep('10.244.1.2'), ep('10.244.1.9', 'node-b')])),
      (m) => m.upsert(svc('lb', { ...lb.spec, loadBalancerSourceRanges: [] }, { status: lb.status })),
      (m) => m.upsert(svc('web', { clusterIP: '10.96.0.40', type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }], externalTrafficPolicy: 'Local' })),
      (m) => m.upsert(svc('web', { clusterIP: '10.96.0.40', type: 'LoadBalancer', ports: [{ name: 'http', port: 80, nodePort: 30080 }], externalTrafficPolicy: 'Local', healthCheckNodePort: 30999 })),
      (m) => m.remove('Service', 'default/lb'),
      (m) => (m.upsert(svc('new', { clusterIP: '10.96.0.50' })), m.upsert(slice('new', [ep('10.244.8.8')]))),
    ];
    for (const step of steps) {
      await s.step(step);
      const fresh = new FakeNft();
      const f = renderNftables({ model: input(s.model), cfg: CFG, changed: 'all' });
      await fresh.apply(f.text);
      expect(s.nft.dump()).toBe(fresh.dump());
      expect(summarize(s.state())).toEqual(summarize(f.commit()));
    }
  });

  it('a Service deleted: its chains, sets and elements go, in an order the kernel accepts', async () => {
    const s = await start([svc('web', { sessionAffinity: 'ClientIP' }), two]);
    const r = await s.step((m) => m.remove('Service', 'default/web'));
    expect(r.text).toMatch(/delete element [\s\S]*flush chain [\s\S]*delete chain [\s\S]*delete set /);
    expect(serviceDump(s.nft)).not.toMatch(/chain (svc|sep)-|set aff-/);
  });
});

describe('NftablesProxier', () => {
  it('full sync over an existing table removes stale chains and sets, keeps wanted ones', async () => {
    const nft = new FakeNft();
    const px = new NftablesProxier(nft, CFG, silentLogger);
    const m = modelOf([svc('web', { sessionAffinity: 'ClientIP' }), two, svc('gone', { clusterIP: '10.96.0.20', sessionAffinity: 'ClientIP' }), slice('gone', [ep('10.244.4.4')])]);
    await px.sync(m, new Set(), true);
    // A restart: a new proxier sees a model without "gone".
    const px2 = new NftablesProxier(nft, CFG, silentLogger);
    const r = await px2.sync(modelOf([svc('web', { sessionAffinity: 'ClientIP' }), two]), new Set(), true);
    expect(r.full).toBe(true);
    const dump = nft.dump();
    expect(dump).not.toContain('default/gone');
    expect(dump.match(/^  set aff-/gm)).toHaveLength(2);
    expect(dump).toContain(`chain ${portChains({ key: 'default/web:http', service: 'default/web', protocol: 'TCP', portName: 'http', port: 80 }).svc}`);
  });

  it('a failed apply makes the next sync full; a flushed ruleset is seen by healthy(); cleanup removes the table', async () => {
    const nft = new FakeNft();
    const px = new NftablesProxier(nft, CFG, silentLogger);
    const m = modelOf([svc('web'), two]);
    await px.sync(m, new Set(), true);
    expect(await px.healthy()).toBe(true);
    m.upsert(slice('web', [ep('10.244.1.2')]));
    const c = m.applyChanges();
    nft.failNext = true;
    await expect(px.sync(m, c.changed, false)).rejects.toMatchObject({ code: 'ERR_NFT' });
    const again = await px.sync(m, new Set(), false);
    expect(again.full).toBe(true);
    expect(reach(nft, '10.96.0.10 . tcp . 80')).toEqual(['10.244.1.2:8080']);
    nft.flushRuleset();
    expect(await px.healthy()).toBe(false);
    await px.sync(m, new Set(), true);
    await px.cleanup();
    expect(await nft.listTable(...T)).toBeUndefined();
    await px.cleanup(); // idempotent
  });

  it('a table the kernel refuses to update (base chain declared differently) is recreated', async () => {
    const nft = new FakeNft();
    await nft.apply('add table ip weft-proxy\nadd chain ip weft-proxy nat-prerouting { type nat hook prerouting priority -99; policy accept; }\n');
    const px = new NftablesProxier(nft, CFG, silentLogger);
    const r = await px.sync(modelOf([svc('web'), two]), new Set(), true);
    expect(r.full).toBe(true);
    expect(nft.dump()).toContain('chain nat-prerouting { type nat hook prerouting priority -100; policy accept; }');
  });
});

describe('FakeNft refuses what the kernel refuses', () => {
  it('missing chain reference, deleting a referenced chain, conflicting element, missing element; atomically', async () => {
    const nft = new FakeNft();
    await nft.apply('add table ip t\nadd chain ip t a\nadd map ip t m { type inet_proto . inet_service : verdict; }\n');
    await expect(nft.apply('add rule ip t a goto b\n')).rejects.toMatchObject({ code: 'ERR_NFT' });
    await nft.apply('add chain ip t b\nadd element ip t m { tcp . 80 : goto b }\n');
    await expect(nft.apply('delete chain ip t b\n')).rejects.toThrow(/referenced/);
    await expect(nft.apply('add element ip t m { tcp . 80 : drop }\n')).rejects.toThrow(/File exists/);
    await expect(nft.apply('delete element ip t m { tcp . 81 }\n')).rejects.toThrow(/No such file/);
    const before = nft.dump();
    await expect(nft.apply('add chain ip t c\nadd rule ip t c goto nowhere\n')).rejects.toThrow();
    expect(nft.dump()).toBe(before);
  });
});
