import { describe, expect, it } from 'vitest';
import { ProxyModel } from '../../../src/proxy/model/model.js';
import { groupByService, parseSave, renderIptables } from '../../../src/proxy/iptables/render.js';
import { base32, hash16, svcChain } from '../../../src/proxy/iptables/names.js';
import { CFG, ep, expectGolden, renderFull, serviceLines, slice, svc } from './fixtures.js';

describe('chain names', () => {
  it('base32 matches RFC 4648 test vectors', () => {
    expect(base32(Buffer.from('foobar'))).toBe('MZXW6YTBOI');
    expect(base32(Buffer.from('f'))).toBe('MY');
  });
  it('hashes like kube-proxy (16 chars of base32(sha256(name+proto))) and fits iptables 28 chars', () => {
    expect(hash16('x')).toHaveLength(16);
    const c = svcChain('default/web:http', 'TCP');
    expect(c).toBe(`WEFT-SVC-${hash16('default/web:httptcp')}`);
    expect(c.length).toBeLessThanOrEqual(28);
  });
});

describe('renderIptables golden', () => {
  const two = slice('web', [ep('10.244.1.2', 'node-a'), ep('10.244.2.2', 'node-b')]);

  it('full sync: fixed chains, jumps, canaries, ClusterIP with two endpoints', () => {
    expectGolden('full-clusterip', renderFull([svc('web'), two]));
  });
  it('no endpoints: REJECT in filter, no nat chains', () => {
    expectGolden('no-endpoints', serviceLines(renderFull([svc('web'), slice('web', [])])));
  });
  it('NodePort, externalIPs, LoadBalancer with source ranges', () => {
    const s = svc('web', { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, nodePort: 30080 }], externalIPs: ['192.0.2.50'], loadBalancerSourceRanges: ['198.51.100.0/24'] }, { status: { loadBalancer: { ingress: [{ ip: '192.0.2.60' }] } } });
    expectGolden('external', serviceLines(renderFull([s, two])));
  });
  it('sessionAffinity ClientIP with timeout', () => {
    const s = svc('web', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 300 } } });
    const text = serviceLines(renderFull([s, two]));
    expect(text).toContain('--rcheck --seconds 300 --reap');
    expectGolden('affinity', text);
  });
  it('externalTrafficPolicy Local: local endpoints only, short-circuit for pods and host, health-check port', () => {
    const s = svc('web', { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, nodePort: 30080 }], externalTrafficPolicy: 'Local', healthCheckNodePort: 30999 });
    expectGolden('etp-local', serviceLines(renderFull([s, two])));
  });
  it('externalTrafficPolicy Local without local endpoints: DROP for node port', () => {
    const s = svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }], externalTrafficPolicy: 'Local' });
    const text = serviceLines(renderFull([s, slice('web', [ep('10.244.2.2', 'node-b')])]));
    expect(text).toMatch(/-A WEFT-EXTERNAL-SERVICES -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 30080 .*has no local endpoints.* -j DROP/);
    expectGolden('etp-local-none', text);
  });
  it('internalTrafficPolicy Local: ClusterIP to SVL; none local -> DROP', () => {
    const s = svc('web', { internalTrafficPolicy: 'Local' });
    expectGolden('itp-local', serviceLines(renderFull([s, two])));
    const none = serviceLines(renderFull([s, slice('web', [ep('10.244.2.2', 'node-b')])]));
    expect(none).toMatch(/-A WEFT-SERVICES -d 10.96.0.10\/32 .*has no local endpoints" -j DROP/);
  });
  it('terminating endpoints are used only when no endpoint is ready', () => {
    const term = { ready: false, serving: true, terminating: true };
    const mixed = serviceLines(renderFull([svc('web'), slice('web', [ep('10.244.1.2'), ep('10.244.1.3', 'node-a', term)])]));
    expect(mixed).not.toContain('10.244.1.3:8080');
    const only = serviceLines(renderFull([svc('web'), slice('web', [ep('10.244.1.3', 'node-a', term)])]));
    expect(only).toContain('DNAT --to-destination 10.244.1.3:8080');
    const notServing = serviceLines(renderFull([svc('web'), slice('web', [ep('10.244.1.3', 'node-a', { ready: false, serving: false, terminating: true })])]));
    expect(notServing).toContain('has no endpoints" -j REJECT');
  });
  it('UDP, masquerade-all and node port addresses', () => {
    const s = svc('dns', { type: 'NodePort', ports: [{ name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 }] });
    const sl = slice('dns', [ep('10.244.1.9')], [{ name: 'dns', port: 5353, protocol: 'UDP' }]);
    const text = renderFull([s, sl], { ...CFG, masqueradeAll: true, nodePortAddresses: ['192.0.2.0/24'] });
    expect(text).toContain('-A WEFT-SERVICES -d 192.0.2.0/24 -m comment --comment "weft service nodeports; must be the last rule in this chain" -m addrtype --dst-type LOCAL -j WEFT-NODEPORTS');
    expectGolden('udp-masqall', serviceLines(text));
  });
  it('a custom masquerade mark reaches MARK-MASQ, POSTROUTING and FORWARD', () => {
    const text = renderFull([svc('web'), two], { ...CFG, masqueradeMark: '0x1000' });
    expect(text).toContain('-A WEFT-MARK-MASQ -j MARK --or-mark 0x1000');
    expect(text).toContain('-A WEFT-POSTROUTING -m mark ! --mark 0x1000/0x1000 -j RETURN');
    expect(text).not.toContain('0x2000');
  });
  it('four endpoints get probabilities 1/4, 1/3, 1/2 and none', () => {
    const text = renderFull([svc('web'), slice('web', [ep('10.244.1.1'), ep('10.244.1.2'), ep('10.244.1.3'), ep('10.244.1.4')])]);
    const probs = [...text.matchAll(/--probability (\S+)/g)].map((m) => m[1]);
    expect(probs).toEqual(['0.2500000000', '0.3333333333', '0.5000000000']);
  });
});

describe('partial sync', () => {
  function setup() {
    const m = new ProxyModel(() => 0);
    m.upsert(svc('web'));
    m.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.2.2', 'node-b')]));
    m.upsert(svc('api', { clusterIP: '10.96.0.11' }));
    m.upsert(slice('api', [ep('10.244.1.7')]));
    let c = m.applyChanges();
    const model = () => ({ services: groupByService(m.servicePorts.values()), endpoints: m.endpoints });
    const first = renderIptables({ model: model(), cfg: CFG, changed: 'all' });
    return { m, model, first, c };
  }

  it('an unchanged model renders nothing', () => {
    const { m, model, first } = setup();
    const c = m.applyChanges();
    expect(c.changed.size).toBe(0);
    const r = renderIptables({ model: model(), cfg: CFG, changed: c.changed, previous: first.state });
    expect(r.text).toBe('');
    expect(r.full).toBe(false);
  });

  it('one endpoint change rewrites only that service chain and the new/removed endpoint chains', () => {
    const { m, model, first } = setup();
    m.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.3.3', 'node-c')]));
    const c = m.applyChanges();
    expect([...c.changed]).toEqual(['default/web']);
    const r = renderIptables({ model: model(), cfg: CFG, changed: c.changed, previous: first.state });
    expect(r.text).not.toContain('default/api');
    expect(r.text).not.toContain(':WEFT-SERVICES');
    expect(r.text).not.toContain('*filter');
    expectGolden('partial-endpoint-change', r.text);
  });

  it('deleting a service removes its chains and rewrites the dispatch chain', () => {
    const { m, model, first } = setup();
    m.remove('Service', 'default/api');
    const c = m.applyChanges();
    const r = renderIptables({ model: model(), cfg: CFG, changed: c.changed, previous: first.state });
    expect(r.text).toContain(':WEFT-SERVICES - [0:0]');
    expect(r.text).toMatch(/-X WEFT-SVC-/);
    expect(r.text).toMatch(/-X WEFT-SEP-/);
    expect(r.text).not.toContain('default/api cluster IP');
  });

  it('a full sync removes stale owned chains found on the host but never foreign ones', () => {
    const existing = parseSave(['*nat', ':WEFT-SVC-AAAAAAAAAAAAAAAA - [0:0]', ':WEFT-POSTRTG - [0:0]', ':KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]', '-A PREROUTING -m comment --comment "weft service portals" -j WEFT-SERVICES', 'COMMIT', ''].join('\n'));
    const text = renderIptables({ model: { services: new Map(), endpoints: new Map() }, cfg: CFG, changed: 'all', existing }).text;
    expect(text).toContain('-X WEFT-SVC-AAAAAAAAAAAAAAAA');
    expect(text).not.toContain('-X WEFT-POSTRTG');
    expect(text).not.toContain('KUBE-SVC');
    // The PREROUTING jump exists already; the others are inserted.
    expect(text).not.toContain('-I PREROUTING');
    expect(text).toContain('-I OUTPUT -m comment --comment "weft service portals" -j WEFT-SERVICES');
  });
});

describe('chunked restores', () => {
  it('splits a large full sync into restores that each apply cleanly on their own, in order', async () => {
    const { FakeIptables } = await import('../../../src/netfilter/fake-iptables.js');
    const m = new ProxyModel(() => 0);
    for (let i = 0; i < 30; i++) {
      m.upsert(svc(`s${i}`, { clusterIP: `10.96.1.${i + 1}` }));
      m.upsert(slice(`s${i}`, [ep(`10.244.1.${i + 1}`), ep(`10.244.2.${i + 1}`, 'node-b')]));
    }
    m.applyChanges();
    const model = { services: groupByService(m.servicePorts.values()), endpoints: m.endpoints };
    const r = renderIptables({ model, cfg: CFG, changed: 'all', maxRulesPerRestore: 20 });
    expect(r.chunks.length).toBeGreaterThan(3);
    expect(r.chunks.join('')).toBe(r.text);
    // Every Service's chains are written in one chunk.
    for (const c of r.chunks) {
      const svcChains = [...c.matchAll(/^:WEFT-SVC-(\S+)/gm)].length;
      expect(svcChains).toBeLessThanOrEqual(5);
    }
    const ipt = new FakeIptables();
    for (const c of r.chunks) await ipt.restore(c); // the fake refuses jumps to missing chains
    expect(ipt.rules('nat', 'WEFT-SERVICES')!.filter((l) => l.includes('cluster IP'))).toHaveLength(30);
  });
});

describe('full sync against what the host holds', () => {
  it('normalizes iptables-save output to the rendered form', async () => {
    const { normalizeRule } = await import('../../../src/proxy/iptables/render.js');
    expect(normalizeRule('-A X -m statistic --mode random --probability 0.33333333349 -j Y')).toBe(normalizeRule('-A X -m statistic --mode random --probability 0.3333333333 -j Y'));
    expect(normalizeRule('-A WEFT-MARK-MASQ -j MARK --set-xmark 0x2000/0x2000')).toBe(normalizeRule('-A WEFT-MARK-MASQ -j MARK --or-mark 0x2000'));
    expect(normalizeRule('-A S -d 1.2.3.4/32 -j REJECT --reject-with icmp-port-unreachable')).toBe(normalizeRule('-A S -d 1.2.3.4/32 -j REJECT'));
  });

  it('a full resync (or a restart) over an unchanged host writes nothing; a changed chain is rewritten alone', async () => {
    const { FakeIptables } = await import('../../../src/netfilter/fake-iptables.js');
    const { IptablesProxier } = await import('../../../src/proxy/iptables/proxier.js');
    const { silentLogger } = await import('../../../src/core/log.js');
    const ipt = new FakeIptables();
    const m = new ProxyModel(() => 0);
    m.upsert(svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }], sessionAffinity: 'ClientIP' }));
    m.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.2.2', 'node-b'), ep('10.244.3.2', 'node-c')]));
    m.upsert(svc('empty', { clusterIP: '10.96.0.20' }));
    m.applyChanges();
    const p = new IptablesProxier(ipt, CFG, silentLogger);
    expect((await p.sync(m, new Set(), true)).wrote).toBe(true);
    const n = ipt.restores.length;
    expect((await new IptablesProxier(ipt, CFG, silentLogger).sync(m, new Set(), true)).wrote).toBe(false);
    expect(ipt.restores.length).toBe(n);
    // Someone edits one of our chains: the next full sync rewrites just that chain.
    ipt.rules('nat', 'WEFT-SERVICES')!.pop();
    await p.sync(m, new Set(), true);
    expect(ipt.restores.at(-1)!.match(/^:/gm)).toEqual([':']);
    expect(ipt.restores.at(-1)).toContain(':WEFT-SERVICES - [0:0]');
  });

  it('renders while iptables-save runs on the bet that the host holds nothing of ours; weftd\'s chains do not spoil the bet', async () => {
    const { holdsNoneOfOurs, NOTHING_OURS } = await import('../../../src/proxy/iptables/render.js');
    const weftdOnly = parseSave('*nat\n:WEFT-POSTRTG - [0:0]\n-A POSTROUTING -j WEFT-POSTRTG\nCOMMIT\n*filter\n:WEFT-FWD - [0:0]\nCOMMIT\n');
    expect(holdsNoneOfOurs(weftdOnly)).toBe(true);
    expect(holdsNoneOfOurs(NOTHING_OURS)).toBe(true);
    expect(holdsNoneOfOurs(parseSave('*nat\n:WEFT-SVC-AAAAAAAAAAAAAAAA - [0:0]\nCOMMIT\n'))).toBe(false);
    expect(holdsNoneOfOurs(parseSave('*mangle\n:WEFT-PROXY-CANARY - [0:0]\nCOMMIT\n'))).toBe(false);
    expect(holdsNoneOfOurs(parseSave('*filter\n-A FORWARD -m comment --comment "weft forwarding rules" -j WEFT-FORWARD\nCOMMIT\n'))).toBe(false);
    // Same text either way on such a host: the speculative render is the real one.
    const m = new ProxyModel(() => 0);
    m.upsert(svc('web'));
    m.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.2.2', 'node-b')]));
    m.applyChanges();
    const model = { services: groupByService(m.servicePorts.values()), endpoints: m.endpoints };
    const a = renderIptables({ model, cfg: CFG, changed: 'all', existing: NOTHING_OURS }).text;
    expect(renderIptables({ model, cfg: CFG, changed: 'all', existing: weftdOnly }).text).toBe(a);

    // Through the proxier: a fresh host gets the whole ruleset; a host that has it gets nothing (the bet lost, rendered again).
    const { FakeIptables } = await import('../../../src/netfilter/fake-iptables.js');
    const { IptablesProxier } = await import('../../../src/proxy/iptables/proxier.js');
    const { silentLogger } = await import('../../../src/core/log.js');
    const ipt = new FakeIptables();
    await new IptablesProxier(ipt, CFG, silentLogger).sync(m, new Set(), true);
    expect(ipt.restores).toEqual([a]);
    expect((await new IptablesProxier(ipt, CFG, silentLogger).sync(m, new Set(), true)).wrote).toBe(false);
    expect(ipt.restores).toHaveLength(1);
  });
});
