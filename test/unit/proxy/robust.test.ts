import { afterEach, describe, expect, it, vi } from 'vitest';
import { ExecError } from '../../../src/core/errors.js';
import { createLogger, silentLogger } from '../../../src/core/log.js';
import { BoundedFrequencyRunner } from '../../../src/core/runner.js';
import { FakeKernel } from '../../../src/kernel/fake.js';
import { FakeConntrack } from '../../../src/netfilter/conntrack.js';
import { FakeIptables } from '../../../src/netfilter/fake-iptables.js';
import { healthzServer, listen, close, ProxierHealth } from '../../../src/proxy/http.js';
import { IptablesProxier } from '../../../src/proxy/iptables/proxier.js';
import { ROUTE_LOCALNET, setupLocalhostNodePorts } from '../../../src/proxy/iptables/localhost.js';
import { parseSave, renderFullSyncFinish } from '../../../src/proxy/iptables/render.js';
import { RestoreTranscript } from '../../../src/proxy/iptables/restore-error.js';
import { firewallTail, localhostNodePortsOn, nodePortJumps } from '../../../src/proxy/iptables/service-rules.js';
import { svcChain } from '../../../src/proxy/iptables/names.js';
import { FakeHolder, FakeIpset, FakeIpvs } from '../../../src/proxy/ipvs/clients.js';
import { IpvsProxier } from '../../../src/proxy/ipvs/proxier.js';
import { IPVS_SYSCTLS } from '../../../src/proxy/ipvs/sysctls.js';
import type { Endpoints } from '../../../src/proxy/model/k8s.js';
import { ProxyModel } from '../../../src/proxy/model/model.js';
import { ENDPOINT_CAPS, capEndpoints, validateObject } from '../../../src/proxy/model/validate.js';
import { ProxyMetrics } from '../../../src/proxy/metrics.js';
import { ProxySyncer, syncHealth } from '../../../src/proxy/syncer.js';
import type { ProxyModeBackend } from '../../../src/proxy/backend.js';
import { CFG, ep, expectGolden, renderFull, slice, svc } from './fixtures.js';

afterEach(() => void vi.useRealTimers());

function bigEndpoints(n: number, name = 'web'): Endpoints {
  const addresses = Array.from({ length: n }, (_, i) => ({ ip: `10.${244 + Math.floor(i / 65536)}.${Math.floor(i / 256) % 256}.${i % 256}` }));
  return { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets: [{ addresses, ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] }] };
}

describe('bounded-frequency runner backoff', () => {
  it('doubles the retry delay per failure in a row, capped', () => {
    const r = new BoundedFrequencyRunner({ name: 't', retryMs: 1000, maxRetryMs: 30_000, log: silentLogger }, async () => {});
    expect([1, 2, 3, 4, 5, 6, 7, 20].map((n) => r.retryDelay(n))).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    // Without a cap given, no growth (weftd's datapath runner keeps its fixed retry).
    const flat = new BoundedFrequencyRunner({ name: 't', retryMs: 1000, log: silentLogger }, async () => {});
    expect(flat.retryDelay(5)).toBe(1000);
  });

  it('a run that keeps failing is not retried at the request rate, and a success resets the backoff', async () => {
    vi.useFakeTimers();
    let calls = 0;
    let fail = true;
    const r = new BoundedFrequencyRunner({ name: 't', minIntervalMs: 100, maxIntervalMs: 1_000_000, retryMs: 100, maxRetryMs: 3200, log: silentLogger }, async () => {
      calls++;
      if (fail) throw new Error('busy');
    });
    r.start();
    // Changes keep arriving every 50 ms for 20 s.
    for (let t = 0; t < 20_000; t += 50) {
      r.request('change');
      await vi.advanceTimersByTimeAsync(50);
    }
    // Unbounded it would be ~200 runs (one per 100 ms); backed off: 100+200+...+3200 then every 3.2 s.
    expect(calls).toBeLessThan(15);
    expect(r.consecutiveFailures).toBe(calls);
    fail = false;
    await vi.advanceTimersByTimeAsync(3300);
    expect(r.consecutiveFailures).toBe(0);
    const before = calls;
    r.request('change');
    await vi.advanceTimersByTimeAsync(150);
    expect(calls).toBe(before + 1);
    r.stop();
  });
});

describe('sync health', () => {
  const ok = { lastSuccessfulSync: 1000, lastQueued: 1000, oldestPending: 0, consecutiveFailures: 0 };
  it('is unhealthy before the first sync, after N failures, and when the oldest waiting change is overdue', () => {
    expect(syncHealth({ ...ok, lastSuccessfulSync: 0 }, 2000, { timeoutMs: 5000 }).healthy).toBe(false);
    expect(syncHealth(ok, 2000, { timeoutMs: 5000 }).healthy).toBe(true);
    expect(syncHealth({ ...ok, consecutiveFailures: 3 }, 2000, { timeoutMs: 5000 })).toEqual({ healthy: false, reason: 'the last 3 syncs failed' });
    // A fresh lastQueued does not hide an old pending change.
    expect(syncHealth({ ...ok, lastQueued: 9000, oldestPending: 2000 }, 9000, { timeoutMs: 5000 }).healthy).toBe(false);
    expect(syncHealth({ ...ok, lastQueued: 9000, oldestPending: 8000 }, 9000, { timeoutMs: 5000 }).healthy).toBe(true);
  });

  it('the syncer counts failures in a row, keeps the oldest pending change, and /healthz answers 503', async () => {
    let fail = false;
    const backend: ProxyModeBackend = {
      mode: 'test',
      async sync() {
        if (fail) throw new ExecError('iptables-restore', null, '');
        return { wrote: true, full: true, ruleCounts: {}, healthChecks: [], noLocalEndpoints: 0 };
      },
      async healthy() {
        return true;
      },
      async cleanup() {},
    };
    let now = 1000;
    const model = new ProxyModel(() => now);
    const syncer = new ProxySyncer({ model, backend, conntrack: new FakeConntrack(), log: silentLogger, now: () => now });
    syncer.markReady();
    model.upsert(svc('web'));
    syncer.noteQueued();
    await syncer.sync();
    expect(syncer.state).toMatchObject({ lastSuccessfulSync: 1000, consecutiveFailures: 0, oldestPending: 0 });
    fail = true;
    now = 2000;
    model.upsert(slice('web', [ep('10.244.1.2')]));
    syncer.noteQueued();
    for (let i = 0; i < 3; i++) {
      now += 500;
      syncer.noteQueued();
      await expect(syncer.sync()).rejects.toThrow();
    }
    expect(syncer.state).toMatchObject({ lastSuccessfulSync: 1000, lastQueued: 3500, oldestPending: 2000, consecutiveFailures: 3 });
    const server = healthzServer(new ProxierHealth(60_000, () => now, () => syncer.state));
    const port = await listen(server, '127.0.0.1', 0);
    try {
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(503);
      fail = false;
      await syncer.sync();
      expect(syncer.state).toMatchObject({ consecutiveFailures: 0, oldestPending: 0 });
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    } finally {
      await close(server);
    }
  });
});

describe('restore failures name what failed', () => {
  it('a killed restore says it timed out, with the table and the bytes', () => {
    const t = new RestoreTranscript();
    t.add('*nat\n:WEFT-SERVICES - [0:0]\n');
    t.add('-A WEFT-SERVICES -j RETURN\n');
    const e = t.failure(new ExecError('iptables-restore --noflush -w 5', null, ''));
    expect(e.code).toBe('ERR_IPTABLES_RESTORE');
    expect(e.message).toMatch(/^iptables-restore timed out after \d+\.\d s \(killed\) while loading nat \(\d+ bytes sent\)$/);
    expect(e.message).toContain(`(${Buffer.byteLength('*nat\n:WEFT-SERVICES - [0:0]\n-A WEFT-SERVICES -j RETURN\n')} bytes sent)`);
  });

  it("a refused line is quoted from what was sent, with iptables-restore's own words", () => {
    const t = new RestoreTranscript();
    t.add('*filter\n:WEFT-FORWARD - [0:0]\nCOMMIT\n*nat\n:WEFT-SVC-AAAA - [0:0]\n');
    t.add('-X WEFT-SVC-AAAA\nCOMMIT\n');
    const e = t.failure(new ExecError('iptables-restore', 4, 'iptables-nft-restore: line 6: CHAIN_DEL failed (Device or resource busy): chain WEFT-SVC-AAAA'));
    expect(e.message).toContain('CHAIN_DEL failed (Device or resource busy)');
    expect(e.message).toContain('line 6 (table nat): -X WEFT-SVC-AAAA');
    expect(e.details).toMatchObject({ table: 'nat', line: 6, rule: '-X WEFT-SVC-AAAA' });
  });
});

describe('a chain of ours that someone else jumps to', () => {
  const web = svc('web');
  const webEps = slice('web', [ep('10.244.1.2')]);
  const chain = svcChain('default/web:http', 'TCP');

  it('parseSave tells foreign references from our own jumps', () => {
    const e = parseSave(
      [
        '*nat',
        ':PREROUTING ACCEPT [0:0]',
        ':WEFT-SERVICES - [0:0]',
        `:${chain} - [0:0]`,
        '-A PREROUTING -m comment --comment "weft service portals" -j WEFT-SERVICES',
        `-A PREROUTING -s 192.0.2.9/32 -j ${chain}`,
        '-A PREROUTING -j WEFT-SERVICES',
        'COMMIT',
        '',
      ].join('\n'),
    );
    expect(e.foreignRefs?.get(`nat/${chain}`)).toEqual([`-A PREROUTING -s 192.0.2.9/32 -j ${chain}`]);
    expect(e.foreignRefs?.get('nat/WEFT-SERVICES')).toEqual(['-A PREROUTING -j WEFT-SERVICES']);
  });

  it('a full sync flushes and keeps a stale chain that is referenced instead of deleting it', () => {
    const existing = parseSave(['*nat', `:${chain} - [0:0]`, `-A ${chain} -j RETURN`, `-A PREROUTING -j ${chain}`, 'COMMIT', ''].join('\n'));
    const kept: string[] = [];
    const text = renderFullSyncFinish(existing, { services: new Map(), top: new Map() }, (t, c) => kept.push(`${t}/${c}`));
    expect(text).toContain(`:${chain} - [0:0]`);
    expect(text).not.toContain(`-X ${chain}`);
    expect(kept).toEqual([`nat/${chain}`]);
  });

  it('with the fake kernel: deleting the Service fails one sync at most, then syncs succeed and the chain stays, empty', async () => {
    const ipt = new FakeIptables();
    const lines: string[] = [];
    const log = createLogger({ format: "json", level: "warn", write: (l: string) => void lines.push(l) });
    const px = new IptablesProxier(ipt, CFG, log);
    const model = new ProxyModel(() => 0);
    const syncer = new ProxySyncer({ model, backend: px, conntrack: new FakeConntrack(), log: silentLogger });
    syncer.markReady();
    model.upsert(web);
    model.upsert(webEps);
    await syncer.sync();
    await ipt.restore(`*nat\n-A PREROUTING -s 192.0.2.9/32 -j ${chain}\nCOMMIT\n`);
    model.remove('Service', 'default/web');
    let failures = 0;
    for (let i = 0; i < 5; i++) await syncer.sync(i % 2 ? ['periodic'] : []).catch(() => failures++);
    expect(failures).toBeLessThanOrEqual(1);
    expect(syncer.consecutiveFailures).toBe(0);
    expect(ipt.chains('nat')).toContain(chain);
    expect(ipt.rules('nat', chain)).toEqual([]);
    expect(px.keptChains).toEqual(new Set([`nat/${chain}`]));
  });
});

describe('endpoint caps', () => {
  it('a v1 Endpoints object with 50 000 addresses contributes the first 1000, named in a truncation', () => {
    const big = bigEndpoints(50_000);
    validateObject(big);
    expect(capEndpoints(big).ep.subsets![0]!.addresses).toHaveLength(ENDPOINT_CAPS.perEndpointsObject);
    expect(capEndpoints(big).had).toBe(50_000);
    const m = new ProxyModel(() => 0);
    m.upsert(svc('web'));
    m.upsert(big);
    m.applyChanges();
    expect(m.endpoints.get('default/web:http')).toHaveLength(1000);
    expect(m.endpoints.get('default/web:http')![0]!.ip).toBe('10.244.0.0');
    expect(m.takeTruncations()).toEqual([{ object: 'Endpoints default/web', field: 'subsets', had: 50_000, kept: 1000 }]);
    expect(m.takeTruncations()).toEqual([]);
  });

  it('an EndpointSlice with more than 1000 endpoints is refused, naming it', () => {
    const s = slice('web', Array.from({ length: 1001 }, (_, i) => ep(`10.244.${Math.floor(i / 256)}.${i % 256}`)));
    expect(() => validateObject(s)).toThrow(/EndpointSlice default\/web-abc: endpoints: must have at most 1000 items \(has 1001\)/);
  });

  it('slices of one Service port are merged up to 5000 endpoints, lowest addresses kept, and the syncer logs and counts it', async () => {
    const m = new ProxyModel(() => 0);
    m.upsert(svc('web'));
    for (let k = 0; k < 6; k++) m.upsert(slice('web', Array.from({ length: 1000 }, (_, i) => ep(`10.${250 - k}.${Math.floor(i / 256)}.${i % 256}`)), undefined, `web-${k}`));
    const metrics = new ProxyMetrics();
    const lines: string[] = [];
    const backend: ProxyModeBackend = { mode: 'test', sync: async () => ({ wrote: true, full: true, ruleCounts: {}, healthChecks: [], noLocalEndpoints: 0 }), healthy: async () => true, cleanup: async () => {} };
    const log = { ...silentLogger, warn: (f: Record<string, unknown>, msg: string) => void lines.push(`${msg} ${JSON.stringify(f)}`) } as typeof silentLogger;
    const syncer = new ProxySyncer({ model: m, backend, conntrack: new FakeConntrack(), log, metrics });
    syncer.markReady();
    await syncer.sync();
    const eps = m.endpoints.get('default/web:http')!;
    expect(eps).toHaveLength(ENDPOINT_CAPS.perServicePort);
    expect(eps[0]!.ip).toBe('10.245.0.0');
    expect(eps.some((e) => e.ip.startsWith('10.250.'))).toBe(false);
    expect(lines.join('\n')).toContain('"object":"EndpointSlices of Service default/web"');
    expect(await metrics.registry.getSingleMetricAsString('weft_proxy_truncated_objects_total')).toContain('object="EndpointSlices of Service default/web"');
  });
});

describe('localhost node ports (iptables mode)', () => {
  const np = svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] });
  const two = slice('web', [ep('10.244.1.2', 'node-a'), ep('10.244.2.2', 'node-b')]);

  it('on by default: loopback is among the node port addresses and incoming localnet traffic is blocked', () => {
    expect(localhostNodePortsOn(CFG)).toBe(true);
    expect(nodePortJumps(CFG)[0]).not.toContain('127.0.0.0/8');
    expect(firewallTail(CFG)).toHaveLength(1);
    expect(localhostNodePortsOn({ ...CFG, nodePortAddresses: ['192.0.2.0/24'] })).toBe(false);
    expect(localhostNodePortsOn({ ...CFG, nodePortAddresses: ['192.0.2.0/24', '127.0.0.0/8'] })).toBe(true);
    expect(localhostNodePortsOn({ ...CFG, nodePortAddresses: ['0.0.0.0/0'] })).toBe(true);
  });

  it('off: loopback destinations skip the node port chain, no localnet rule (golden)', () => {
    const off = { ...CFG, localhostNodePorts: false };
    expect(localhostNodePortsOn(off)).toBe(false);
    expect(firewallTail(off)).toEqual([]);
    expect(nodePortJumps({ ...off, nodePortAddresses: ['127.0.0.0/8', '192.0.2.0/24'] })).toEqual([
      '-A WEFT-SERVICES -d 192.0.2.0/24 -m comment --comment "weft service nodeports; must be the last rule in this chain" -m addrtype --dst-type LOCAL -j WEFT-NODEPORTS',
    ]);
    const text = renderFull([np, two], off);
    expect(text).toContain('-A WEFT-SERVICES ! -d 127.0.0.0/8 -m comment');
    expect(text).not.toContain('block incoming localnet');
    expectGolden('localhost-off', text);
  });

  it('sets route_localnet only when on, and says so', async () => {
    const k = new FakeKernel();
    k.state.sysctl.set(ROUTE_LOCALNET, '0');
    expect(await setupLocalhostNodePorts(k.sysctl, { ...CFG, localhostNodePorts: false }, silentLogger)).toBe('off');
    expect(k.state.sysctl.get(ROUTE_LOCALNET)).toBe('0');
    expect(await setupLocalhostNodePorts(k.sysctl, CFG, silentLogger)).toBe('set');
    expect(k.state.sysctl.get(ROUTE_LOCALNET)).toBe('1');
    expect(await setupLocalhostNodePorts(k.sysctl, CFG, silentLogger)).toBe('already');
  });
});

describe('ipvs mode kernel parameters', () => {
  it('the ipvs proxier sets what kube-proxy sets before its first sync (strictARP adds the ARP pair)', async () => {
    for (const strictARP of [false, true]) {
      const k = new FakeKernel();
      k.state.sysctl.set(IPVS_SYSCTLS.ipForward, '0');
      k.state.sysctl.set(IPVS_SYSCTLS.conntrack, '0');
      const c = { ipvs: new FakeIpvs(), ipset: new FakeIpset(), holder: new FakeHolder(), ipt: new FakeIptables(), sysctl: k.sysctl };
      const px = new IpvsProxier(c, { ...CFG, nodeIPs: ['192.0.2.1'], strictARP }, silentLogger);
      const m = new ProxyModel(() => 0);
      m.upsert(svc('web'));
      m.applyChanges();
      await px.sync(m, new Set(), true);
      const s = k.state.sysctl;
      expect([s.get(IPVS_SYSCTLS.conntrack), s.get(IPVS_SYSCTLS.expireNodestConn), s.get(IPVS_SYSCTLS.expireQuiescentTemplate), s.get(IPVS_SYSCTLS.ipForward)]).toEqual(['1', '1', '1', '1']);
      expect([s.get(IPVS_SYSCTLS.arpIgnore), s.get(IPVS_SYSCTLS.arpAnnounce)]).toEqual(strictARP ? ['1', '2'] : [undefined, undefined]);
      // bridge-nf-call-iptables is only checked, never set.
      expect(s.get(IPVS_SYSCTLS.bridgeCallIptables)).toBeUndefined();
    }
  });
});

describe('--cleanup next to a rule of someone else', () => {
  it('flushes but keeps a chain that a foreign rule still jumps to, and removes the rest', async () => {
    const ipt = new FakeIptables();
    const px = new IptablesProxier(ipt, CFG, silentLogger);
    const model = new ProxyModel(() => 0);
    model.upsert(svc('web'));
    model.upsert(slice('web', [ep('10.244.1.2')]));
    model.applyChanges();
    await px.sync(model, new Set(), true);
    const chain = svcChain('default/web:http', 'TCP');
    await ipt.restore(`*nat\n-A PREROUTING -s 192.0.2.9/32 -j ${chain}\nCOMMIT\n`);
    await px.cleanup();
    expect(ipt.chains('nat').filter((c) => c.startsWith('WEFT-'))).toEqual([chain]);
    expect(ipt.rules('nat', chain)).toEqual([]);
    expect(ipt.chains('filter').filter((c) => c.startsWith('WEFT-'))).toEqual([]);
  });
});

describe('oldest pending change across a sync', () => {
  it('a change queued while the backend writes stays pending from when it was queued', async () => {
    let now = 1000;
    let syncer: ProxySyncer | undefined;
    let calls = 0;
    const backend: ProxyModeBackend = {
      mode: 'test',
      async sync() {
        if (calls++ > 0) return { wrote: false, full: false, ruleCounts: {}, healthChecks: [], noLocalEndpoints: 0 };
        now = 1500;
        syncer!.noteQueued();
        now = 1700;
        return { wrote: true, full: true, ruleCounts: {}, healthChecks: [], noLocalEndpoints: 0 };
      },
      healthy: async () => true,
      cleanup: async () => {},
    };
    const model = new ProxyModel(() => now);
    syncer = new ProxySyncer({ model, backend, conntrack: new FakeConntrack(), log: silentLogger, now: () => now });
    syncer.markReady();
    syncer.noteQueued();
    await syncer.sync();
    expect(syncer.state).toMatchObject({ lastSuccessfulSync: 1700, oldestPending: 1500 });
    now = 2000;
    await syncer.sync();
    expect(syncer.state.oldestPending).toBe(0);
  });
});
