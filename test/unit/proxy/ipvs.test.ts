import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/core/log.js';
import { FakeIptables } from '../../../src/netfilter/fake-iptables.js';
import type { EndpointSlice, Service } from '../../../src/proxy/model/k8s.js';
import { ProxyModel } from '../../../src/proxy/model/model.js';
import { FakeHolder, FakeIpset, FakeIpvs } from '../../../src/proxy/ipvs/clients.js';
import { checkIpvsKernel } from '../../../src/proxy/ipvs/kernel.js';
import { planIpvs, type IpvsProxyConfig } from '../../../src/proxy/ipvs/plan.js';
import { IpvsProxier } from '../../../src/proxy/ipvs/proxier.js';
import { diffIpvs, parseIpvsadmSave, planText, renderIpsets, renderIpvsIptables } from '../../../src/proxy/ipvs/render.js';
import { ep, slice, svc } from './fixtures.js';

const here = dirname(fileURLToPath(import.meta.url));
function expectGolden(name: string, text: string): void {
  const file = join(here, 'ipvs-golden', `${name}.txt`);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) writeFileSync(file, text);
  expect(text).toBe(readFileSync(file, 'utf8'));
}

const CFG: IpvsProxyConfig = { nodeName: 'node-a', clusterCIDR: '10.244.0.0/16', nodeIPs: ['192.0.2.1'] };

function modelOf(objects: Array<Service | EndpointSlice>): ProxyModel {
  const m = new ProxyModel(() => 0);
  for (const o of objects) m.upsert(o);
  m.applyChanges();
  return m;
}
const plan = (objects: Array<Service | EndpointSlice>, cfg = CFG) => {
  const m = modelOf(objects);
  return planIpvs(m.servicePorts.values(), (k) => m.endpoints.get(k), cfg);
};
const two = slice('web', [ep('10.244.1.2', 'node-a'), ep('10.244.2.2', 'node-b')]);

describe('planIpvs golden', () => {
  it('ClusterIP + NodePort with two endpoints: virtual servers per IP:port and per node IP, NAT weight 1', () => {
    expectGolden('nodeport', planText(plan([svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }), two])));
  });
  it('ClientIP affinity becomes persistence; scheduler from the config', () => {
    const text = planText(plan([svc('web', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 300 } } }), two], { ...CFG, scheduler: 'sh' }));
    expect(text).toContain('-A -t 10.96.0.10:80 -s sh -p 300');
    expectGolden('affinity', text);
  });
  it('LoadBalancer with source ranges and ETP Local: local real servers outside, ipset members, health check', () => {
    const s = svc('web', { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, nodePort: 30080 }], externalTrafficPolicy: 'Local', healthCheckNodePort: 30999, loadBalancerSourceRanges: ['198.51.100.0/24'], externalIPs: ['192.0.2.50'] }, { status: { loadBalancer: { ingress: [{ ip: '192.0.2.60' }] } } });
    const p = plan([s, two]);
    expect(p.healthChecks).toEqual([{ service: 'default/web', port: 30999, localEndpoints: 1 }]);
    expect(p.virtualServers.find((v) => v.address === '192.0.2.60')!.realServers).toEqual([{ address: '10.244.1.2', port: 8080, weight: 1 }]);
    expect(p.virtualServers.find((v) => v.address === '10.96.0.10')!.realServers).toHaveLength(2);
    expectGolden('lb-etp-local', planText(p));
  });
  it('terminating endpoints: weight 0 while a ready one exists, weight 1 when none is ready', () => {
    const term = { ready: false, serving: true, terminating: true };
    const mixed = plan([svc('web'), slice('web', [ep('10.244.1.2'), ep('10.244.1.3', 'node-a', term)])]);
    expect(mixed.virtualServers[0]!.realServers).toEqual([{ address: '10.244.1.2', port: 8080, weight: 1 }, { address: '10.244.1.3', port: 8080, weight: 0 }]);
    const only = plan([svc('web'), slice('web', [ep('10.244.1.3', 'node-a', term)])]);
    expect(only.virtualServers[0]!.realServers).toEqual([{ address: '10.244.1.3', port: 8080, weight: 1 }]);
  });
  it('no endpoints: virtual server without real servers, address in WEFT-NO-ENDPOINTS (REJECT)', () => {
    const p = plan([svc('web'), slice('web', [])]);
    expect(p.virtualServers[0]!.realServers).toEqual([]);
    expect(p.ipsets.find((s) => s.name === 'WEFT-NO-ENDPOINTS')!.members).toEqual(['10.96.0.10,tcp:80']);
  });
});

describe('ipvs rendering', () => {
  it('diff touches only what changed and deletes only owned virtual servers', () => {
    const before = plan([svc('web'), two]).virtualServers;
    const after = plan([svc('web', { sessionAffinity: 'ClientIP' }), slice('web', [ep('10.244.1.2'), ep('10.244.3.3')])]).virtualServers;
    const foreign = { protocol: 'tcp' as const, address: '10.0.0.1', port: 1, scheduler: 'rr', persistenceS: 0, realServers: [] };
    expect(diffIpvs([...before, foreign], after, new Set(['10.96.0.10']))).toBe(
      '-E -t 10.96.0.10:80 -s rr -p 10800\n-a -t 10.96.0.10:80 -r 10.244.3.3:8080 -m -w 1\n-d -t 10.96.0.10:80 -r 10.244.2.2:8080\n',
    );
    expect(diffIpvs(before, before, new Set())).toBe('');
  });
  it('ipvsadm -S output parses back into the plan', () => {
    const vs = plan([svc('web', { sessionAffinity: 'ClientIP' }), two]).virtualServers;
    const save = diffIpvs([], vs, new Set()).replace(/ -m -w/g, ' -m -w');
    expect(parseIpvsadmSave(save)).toEqual(vs);
  });
  it('ipsets are refilled through swap; iptables rules are static and golden', () => {
    const text = renderIpsets([{ name: 'WEFT-CLUSTER-IP', type: 'hash:ip,port', options: '', members: ['10.96.0.10,tcp:80'] }]);
    expect(text).toBe('create WEFT-CLUSTER-IP hash:ip,port -exist\ncreate WEFT-CLUSTER-IP-TMP hash:ip,port -exist\nflush WEFT-CLUSTER-IP-TMP\nadd WEFT-CLUSTER-IP-TMP 10.96.0.10,tcp:80\nswap WEFT-CLUSTER-IP-TMP WEFT-CLUSTER-IP\ndestroy WEFT-CLUSTER-IP-TMP\n');
    expectGolden('iptables', renderIpvsIptables(CFG));
  });
});

describe('IpvsProxier with fakes', () => {
  it('syncs, changes one endpoint with one real-server add and delete, cleans up everything', async () => {
    const c = { ipvs: new FakeIpvs(), ipset: new FakeIpset(), holder: new FakeHolder(), ipt: new FakeIptables() };
    const px = new IpvsProxier(c, CFG, silentLogger);
    const m = modelOf([svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }), two]);
    const r = await px.sync(m, new Set(), true);
    expect(r.full).toBe(true);
    expect(c.ipvs.servers.map((v) => `${v.address}:${v.port}`).sort()).toEqual(['10.96.0.10:80', '192.0.2.1:30080']);
    expect([...c.holder.addresses]).toEqual(['10.96.0.10']);
    expect([...c.ipset.sets.get('WEFT-NODE-PORT-TCP')!]).toEqual(['30080']);
    expect(await px.healthy()).toBe(true);
    m.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.3.3')]));
    const ch = m.applyChanges();
    await px.sync(m, ch.changed, false);
    expect(c.ipvs.sent.at(-1)).toBe(
      '-a -t 10.96.0.10:80 -r 10.244.3.3:8080 -m -w 1\n-d -t 10.96.0.10:80 -r 10.244.2.2:8080\n-a -t 192.0.2.1:30080 -r 10.244.3.3:8080 -m -w 1\n-d -t 192.0.2.1:30080 -r 10.244.2.2:8080\n',
    );
    await px.cleanup();
    expect(c.ipvs.servers).toEqual([]);
    expect(c.holder.exists).toBe(false);
    expect(c.ipset.sets.size).toBe(0);
    expect(await c.ipt.save('nat')).not.toContain('WEFT-IPVS');
  });

  it('refuses to start without IP_VS or dummy links, naming the feature and the modprobe', async () => {
    const err = await checkIpvsKernel({ ipvs: async () => false, dummy: async () => true }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_KERNEL_FEATURE' });
    expect((err as Error).message).toContain('IP_VS');
    expect((err as Error).message).toContain('modprobe ip_vs');
    await expect(checkIpvsKernel({ ipvs: async () => true, dummy: async () => false })).rejects.toThrow(/dummy links.*modprobe dummy/);
    await expect(checkIpvsKernel({ ipvs: async () => true, dummy: async () => true })).resolves.toBeUndefined();
  });
});
