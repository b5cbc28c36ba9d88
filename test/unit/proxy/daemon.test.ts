import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { waitFor } from '../../../src/core/async.js';
import { silentLogger } from '../../../src/core/log.js';
import { FakeConntrack } from '../../../src/netfilter/conntrack.js';
import { FakeIptables } from '../../../src/netfilter/fake-iptables.js';
import { runProxy, iptablesConfig } from '../../../src/proxy/daemon.js';
import { parseDuration } from '../../../src/proxy/duration.js';
import type { ProxySyncer } from '../../../src/proxy/syncer.js';
import { ep, slice, svc } from './fixtures.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function start(dir: string) {
  const ipt = new FakeIptables();
  const ct = new FakeConntrack();
  const ac = new AbortController();
  let ports: { healthz?: number; metrics?: number } = {};
  let syncer: ProxySyncer | undefined;
  const done = runProxy(
    {
      manifestsDir: dir,
      nodeName: 'node-a',
      clusterCIDR: '10.244.0.0/16',
      minSyncPeriodMs: 10,
      syncPeriodMs: 60_000,
      canaryIntervalMs: 50,
      healthzBindAddress: '127.0.0.1:0',
      metricsBindAddress: '127.0.0.1:0',
      healthCheckBindHost: '127.0.0.1',
      iptables: ipt,
      conntrack: ct,
      log: silentLogger,
      onListening: (p) => (ports = p),
      onStarted: (p) => (syncer = p.syncer),
    },
    ac.signal,
  );
  cleanups.push(async () => {
    ac.abort();
    await done;
  });
  return { ipt, ct, ac, done, ports: () => ports, syncer: () => syncer! };
}

describe('weft-proxy daemon (fakes, manifest directory)', () => {
  it('writes rules once sources list, syncs partially, resyncs after a flush, serves healthz and metrics, stops cleanly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-proxy-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const dns = svc('dns', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] });
    const udp = [{ name: 'dns', port: 53, protocol: 'UDP' as const }];
    const write = (eps: string[]) =>
      writeFileSync(join(dir, 'dns.yaml'), [dns, slice('dns', eps.map((ip) => ep(ip)), udp)].map((o) => stringify(o)).join('---\n'));
    write(['10.244.1.2', '10.244.1.3']);
    writeFileSync(join(dir, 'bad.yaml'), stringify(svc('bad', { ports: [{ port: 0 }] })));
    const p = start(dir);

    await waitFor(() => p.ipt.rules('nat', 'WEFT-SERVICES')?.some((r) => r.includes('default/dns:dns cluster IP')), { what: 'first sync' });
    expect(p.ipt.chains('nat').filter((c) => c.startsWith('WEFT-SEP-'))).toHaveLength(2);
    // The invalid object was refused, the rest applied.
    expect(p.ipt.restores[0]).not.toContain('default/bad');

    const hz = await fetch(`http://127.0.0.1:${p.ports().healthz}/healthz`);
    expect(hz.status).toBe(200);
    expect(await hz.json()).toMatchObject({ nodeEligible: true });

    // Remove one endpoint: a partial restore, and conntrack cleanup for the UDP endpoint that went away.
    const before = p.ipt.restores.length;
    write(['10.244.1.2']);
    await waitFor(() => p.ipt.chains('nat').filter((c) => c.startsWith('WEFT-SEP-')).length === 1, { what: 'endpoint removal' });
    const partial = p.ipt.restores.slice(before).join('');
    expect(partial).not.toContain('*mangle');
    await waitFor(() => p.ct.deleted.some((f) => f.dstNat === '10.244.1.3' && f.origDst === '10.96.0.10'), { what: 'conntrack delete' });

    // Someone flushes our chains: the canary notices and a full sync restores them.
    p.ipt.wipe('nat', 'WEFT-');
    p.ipt.wipe('filter', 'WEFT-');
    p.ipt.wipe('mangle', 'WEFT-');
    await waitFor(() => p.ipt.rules('nat', 'WEFT-SERVICES')?.some((r) => r.includes('default/dns:dns cluster IP')), { what: 'resync after flush' });
    expect(p.ipt.rules('nat', 'PREROUTING')!.some((r) => r.includes('-j WEFT-SERVICES'))).toBe(true);

    const metrics = await (await fetch(`http://127.0.0.1:${p.ports().metrics}/metrics`)).text();
    for (const name of ['kubeproxy_sync_proxy_rules_duration_seconds', 'kubeproxy_sync_proxy_rules_last_timestamp_seconds', 'kubeproxy_network_programming_duration_seconds', 'kubeproxy_sync_proxy_rules_iptables_restore_failures_total']) {
      expect(metrics).toContain(name);
    }
    expect(metrics).toMatch(/weft_proxy_invalid_objects_total\{source="manifests:bad.yaml"\} [1-9]/);

    p.ac.abort();
    await p.done;
    // Rules stay after a stop.
    expect(p.ipt.rules('nat', 'WEFT-SERVICES')!.length).toBeGreaterThan(0);
  });

  it('a failed restore is retried as a full sync and counted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-proxy-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'web.yaml'), [svc('web'), slice('web', [ep('10.244.1.2')])].map((o) => stringify(o)).join('---\n'));
    const p = start(dir);
    await waitFor(() => p.syncer()?.syncs.full === 1, { what: 'first sync' });
    p.ipt.failNext = true;
    writeFileSync(join(dir, 'web.yaml'), [svc('web'), slice('web', [ep('10.244.1.5')])].map((o) => stringify(o)).join('---\n'));
    await waitFor(() => p.syncer().syncs.failed === 1 && p.syncer().syncs.full === 2, { what: 'retry as full sync' });
    expect(p.ipt.rules('nat', 'WEFT-SERVICES')!.length).toBeGreaterThan(0);
    expect(p.ipt.chains('nat').some((c) => c.startsWith('WEFT-SEP-'))).toBe(true);
  });
});

describe('options', () => {
  it('parses durations', () => {
    expect(parseDuration('1s', 'f')).toBe(1000);
    expect(parseDuration('1m30s', 'f')).toBe(90_000);
    expect(parseDuration('250ms', 'f')).toBe(250);
    expect(() => parseDuration('soon', 'f')).toThrow(/duration/);
  });
  it('turns the masquerade bit and node port addresses into rule settings', () => {
    const cfg = iptablesConfig({ log: silentLogger, masqueradeBit: 12, nodeIP: '192.0.2.1', nodePortAddresses: ['primary', '198.51.100.0/24'] });
    expect(cfg.masqueradeMark).toBe('0x1000');
    expect(cfg.nodePortAddresses).toEqual(['192.0.2.1/32', '198.51.100.0/24']);
    expect(() => iptablesConfig({ log: silentLogger, nodePortAddresses: ['primary'] })).toThrow(/node-ip/);
  });
});

describe('health-check node ports', () => {
  it('answer 200 with the local endpoint count, 503 with none, and close when the service goes', async () => {
    const { ServiceHealthServers } = await import('../../../src/proxy/http.js');
    const { freePort } = await import('../../helpers/etcd.js');
    const port = await freePort();
    const hc = new ServiceHealthServers('127.0.0.1', silentLogger);
    cleanups.push(() => hc.closeAll());
    await hc.sync([{ service: 'default/web', port, localEndpoints: 2 }]);
    let r = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ service: { namespace: 'default', name: 'web' }, localEndpoints: 2, serviceProxyHealthy: true });
    await hc.sync([{ service: 'default/web', port, localEndpoints: 0 }]);
    r = await fetch(`http://127.0.0.1:${port}/`);
    expect(r.status).toBe(503);
    await hc.sync([]);
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
  });
});
