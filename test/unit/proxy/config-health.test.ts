import type { Server } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { close, healthzServer, listen, metricsServer, nodeBeingDeleted, ProxierHealth } from '../../../src/proxy/http.js';
import { ProxyMetrics } from '../../../src/proxy/metrics.js';
import { WeftdMetrics } from '../../../src/daemon/metrics.js';

// First: later tests' fetch() keep-alive sockets arm timers of their own.
describe('process metrics start no timers (issue 22: an idle daemon woke ~95 times a second)', () => {
  it('creating and scraping the metrics of weft-proxy and weftd leaves no interval, timeout or event-loop monitor behind', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'setTimeout'] });
    try {
      const before = vi.getTimerCount();
      const p = new ProxyMetrics({ processMetrics: true });
      const w = new WeftdMetrics();
      await p.registry.metrics();
      await w.registry.metrics();
      expect(vi.getTimerCount()).toBe(before);
    } finally {
      vi.useRealTimers();
    }
    // prom-client's default collectors would show up as these; scrape-time ones have the process_* names only.
    const text = await new ProxyMetrics({ processMetrics: true }).registry.metrics();
    expect(text).not.toContain('nodejs_eventloop_lag_p99_seconds');
    expect(text).toContain('process_cpu_seconds_total');
    expect(await new WeftdMetrics().registry.metrics()).toContain('process_resident_memory_bytes');
  });
});

describe('ProxierHealth (kube-proxy proxier_health semantics, injected clock)', () => {
  it('is live at start, healthy only after the first sync, 503 when a queued change waits too long', () => {
    let t = 1_000_000;
    const h = new ProxierHealth(60_000, () => t);
    expect(h.status()).toMatchObject({ live: true, healthy: false, nodeEligible: true });
    h.queued();
    t += 59_999;
    expect(h.status().live).toBe(true);
    t += 1;
    expect(h.status()).toMatchObject({ live: false, healthy: false }); // first sync overdue
    h.updated();
    expect(h.status()).toMatchObject({ live: true, healthy: true, lastUpdated: t });
  });

  it('counts the oldest pending change: changes arriving while syncs fail do not keep it healthy', () => {
    let t = 0;
    const h = new ProxierHealth(10_000, () => t);
    h.updated();
    h.queued(); // at 0
    for (let i = 0; i < 20; i++) {
      t += 1000;
      h.queued(); // more changes, every sync failing (no updated())
    }
    expect(h.status()).toMatchObject({ live: false, healthy: false });
    h.updated();
    expect(h.status().healthy).toBe(true);
    t += 1_000_000; // idle for long: nothing queued, still healthy
    expect(h.status().healthy).toBe(true);
  });

  it('is not eligible while the Node is being deleted; /livez ignores that', () => {
    const h = new ProxierHealth(10_000, () => 5);
    h.updated();
    h.setNodeDeleting(true);
    expect(h.status()).toMatchObject({ live: true, healthy: false, nodeEligible: false });
    h.setNodeDeleting(false);
    expect(h.status().healthy).toBe(true);
    expect(nodeBeingDeleted({ metadata: { deletionTimestamp: '2024-01-01T00:00:00Z' } })).toBe(true);
    expect(nodeBeingDeleted({ spec: { taints: [{ key: 'ToBeDeletedByClusterAutoscaler' }] } })).toBe(true);
    expect(nodeBeingDeleted({ metadata: {}, spec: { taints: [{ key: 'node.kubernetes.io/unschedulable' }] } })).toBe(false);
  });
});

describe('healthz and metrics servers (loopback)', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map(close));
  });
  async function serve(s: Server): Promise<string> {
    servers.push(s);
    return `http://127.0.0.1:${await listen(s, '127.0.0.1', 0)}`;
  }

  it("answers /healthz and /livez with kube-proxy's JSON", async () => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    const h = new ProxierHealth(60_000, () => t);
    const m = new ProxyMetrics();
    const base = await serve(healthzServer(h, m));
    let r = await fetch(`${base}/healthz`);
    expect(r.status).toBe(503);
    expect(await r.json()).toEqual({ lastUpdated: '0001-01-01T00:00:00Z', currentTime: '2026-01-01T00:00:00.000Z', nodeEligible: true });
    h.updated();
    t += 5000;
    r = await fetch(`${base}/healthz`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    expect(await r.json()).toEqual({ lastUpdated: '2026-01-01T00:00:05.000Z', currentTime: '2026-01-01T00:00:05.000Z', nodeEligible: true });
    h.setNodeDeleting(true);
    expect((await fetch(`${base}/healthz`)).status).toBe(503);
    r = await fetch(`${base}/livez`);
    expect(r.status).toBe(200);
    expect(Object.keys(await r.json())).toEqual(['lastUpdated', 'currentTime']);
    expect((await fetch(`${base}/other`)).status).toBe(404);
    const text = await m.registry.metrics();
    expect(text).toMatch(/kubeproxy_proxy_healthz_total\{code="503"\} 2/);
    expect(text).toMatch(/kubeproxy_proxy_healthz_total\{code="200"\} 1/);
    expect(text).toMatch(/kubeproxy_proxy_livez_total\{code="200"\} 1/);
  });

  it('serves /metrics, /proxyMode, /configz and /healthz on the metrics address', async () => {
    const h = new ProxierHealth(60_000);
    h.updated();
    const m = new ProxyMetrics({ processMetrics: true });
    m.pendingChanges = () => ({ services: 3, endpoints: 4 });
    const base = await serve(metricsServer(m, { mode: 'nftables', configz: () => ({ mode: 'nftables' }), health: h }));
    const pm = await fetch(`${base}/proxyMode`);
    expect(pm.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await pm.text()).toBe('nftables');
    expect(await (await fetch(`${base}/configz`)).json()).toEqual({ 'kubeproxy.config.k8s.io': { mode: 'nftables' } });
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const text = await (await fetch(`${base}/metrics`)).text();
    for (const name of [
      'kubeproxy_sync_proxy_rules_duration_seconds',
      'kubeproxy_sync_full_proxy_rules_duration_seconds',
      'kubeproxy_sync_partial_proxy_rules_duration_seconds',
      'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds',
      'kubeproxy_network_programming_duration_seconds',
      'process_resident_memory_bytes',
      'process_cpu_seconds_total',
      'process_start_time_seconds',
      'process_open_fds',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds',
    ]) {
      expect(text, name).toContain(`# TYPE ${name} `);
    }
    expect(text).toContain('kubeproxy_sync_proxy_rules_service_changes_pending 3');
    expect(text).toContain('kubeproxy_sync_proxy_rules_endpoint_changes_pending 4');
    expect(Number(/^process_resident_memory_bytes (\d+)/m.exec(text)![1])).toBeGreaterThan(10e6);
    expect(Number(/^process_open_fds (\d+)/m.exec(text)![1])).toBeGreaterThan(2);
  });
});


describe('the daemon wires health to syncs (fakes)', () => {
  it('/healthz turns 503 while every sync fails, with or without new changes, and 200 again once one succeeds', async () => {
    const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { stringify } = await import('yaml');
    const { waitFor } = await import('../../../src/core/async.js');
    const { silentLogger } = await import('../../../src/core/log.js');
    const { FakeConntrack } = await import('../../../src/netfilter/conntrack.js');
    const { FakeIptables } = await import('../../../src/netfilter/fake-iptables.js');
    const { runProxy } = await import('../../../src/proxy/daemon.js');
    const { ep, slice, svc } = await import('./fixtures.js');

    const dir = mkdtempSync(join(tmpdir(), 'weft-proxy-health-'));
    const ipt = new FakeIptables();
    let failing = false;
    const restore = ipt.restore.bind(ipt);
    ipt.restore = async (text: string) => {
      if (failing) throw new Error('injected: restore refused');
      return restore(text);
    };
    const write = (ips: string[]) => writeFileSync(join(dir, 'web.yaml'), [svc('web'), slice('web', ips.map((ip) => ep(ip)))].map((o) => stringify(o)).join('---\n'));
    write(['10.244.1.2']);
    const ac = new AbortController();
    let port = 0;
    const done = runProxy(
      {
        manifestsDir: dir,
        nodeName: 'node-a',
        minSyncPeriodMs: 10,
        syncPeriodMs: 60_000,
        canaryIntervalMs: 60_000,
        healthzTimeoutMs: 300,
        healthzBindAddress: '127.0.0.1:0',
        metricsBindAddress: '',
        healthCheckBindHost: '127.0.0.1',
        iptables: ipt,
        conntrack: new FakeConntrack(),
        log: silentLogger,
        onListening: (p) => (port = p.healthz!),
      },
      ac.signal,
    );
    const status = async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status;
    try {
      await waitFor(async () => port > 0 && (await status()) === 200, { what: 'healthy after the first sync', timeoutMs: 10_000 });
      failing = true;
      write(['10.244.1.3']); // one change; every sync of it fails
      await waitFor(async () => (await status()) === 503, { what: '503 while syncs fail', timeoutMs: 10_000 });
      expect(ipt.restores.length).toBeGreaterThan(0);
      failing = false;
      await waitFor(async () => (await status()) === 200, { what: '200 after a sync succeeds', timeoutMs: 10_000 });
    } finally {
      ac.abort();
      await done;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
