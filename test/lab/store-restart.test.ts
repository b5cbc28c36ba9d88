/**
 * etcd stopped for good (process gone, not paused) for 30 s and started
 * again on the same data: the lease manager must reconnect by itself and
 * still hold (and renew) the same subnet; the lease watch must resume.
 * Also `weftctl config` / `leases` through the real etcd client.
 */
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { formatCidr, parseCidr } from '../../src/core/ip.js';
import { registerConfigCommands, registryFromOptions } from '../../src/store/cli.js';
import { EtcdRegistry } from '../../src/store/etcd-registry.js';
import { LeaseManager } from '../../src/store/lease-manager.js';
import { parseNetworkConfig } from '../../src/store/netconfig.js';
import { createEtcd, type TestEtcd } from '../helpers/etcd.js';

let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await createEtcd();
});
afterAll(async () => {
  await etcd?.destroy();
});

describe('store across an etcd restart', () => {
  it('keeps and renews the same subnet after etcd is down for 30 s', async () => {
    const registry = new EtcdRegistry({ endpoints: [etcd.endpoint], prefix: '/restart/network', callTimeoutMs: 2000 });
    const ac = new AbortController();
    try {
      const config = parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });
      const m = new LeaseManager({
        registry,
        config,
        publicIp: '192.0.2.21',
        backendType: 'host-gw',
        ttlSeconds: 20,
        minBackoffMs: 200,
        maxBackoffMs: 2000,
      });
      const lease = await m.acquire(ac.signal);
      const seen = new Set<string>();
      const watching = m.watch((snap) => snap.forEach((_l, k) => seen.add(k)), ac.signal);
      const running = m.run(ac.signal);
      await etcd.stop();
      const until = Date.now() + 30_000;
      await waitFor(() => Date.now() >= until, { timeoutMs: 40_000, intervalMs: 1000 });
      expect(m.counters.etcdErrors).toBeGreaterThan(0);
      await etcd.start();
      const before = m.counters.renewals + m.counters.reacquisitions;
      await waitFor(() => m.counters.renewals + m.counters.reacquisitions > before, {
        timeoutMs: 30_000,
        what: 'renewal after restart',
      });
      const stored = (await registry.getLease(lease.subnet))!;
      expect(stored.attrs.PublicIP).toBe('192.0.2.21');
      expect(formatCidr(m.current!.subnet)).toBe(formatCidr(lease.subnet));
      // The lease watch came back too: a lease written now shows up (10.244.200.0 lies beyond
      // the first ~100 subnets the manager picks from, so it never collides with ours).
      await registry.createLease(parseCidr('10.244.200.0/24'), { PublicIP: '192.0.2.99', BackendType: 'host-gw' }, undefined);
      await waitFor(() => seen.has('10.244.200.0-24'), { timeoutMs: 30_000, what: 'watch after restart' });
      ac.abort();
      await Promise.all([running, watching]);
    } finally {
      ac.abort();
      await registry.close();
    }
  });

  it('weftctl config set/get and leases work through the real etcd client', async () => {
    let out = '';
    const program = new Command('weftctl')
      .option('--etcd-endpoints <urls>', 'etcd', etcd.endpoint)
      .option('--etcd-prefix <prefix>', 'prefix', '/cli/network')
      .exitOverride();
    registerConfigCommands(program, { out: (t) => (out += t) });
    await program.parseAsync(['node', 'weftctl', 'config', 'set', '--network', '10.244.0.0/16', '--backend', 'vxlan']);
    out = '';
    await program.parseAsync(['node', 'weftctl', 'config', 'get']);
    expect(JSON.parse(out)).toEqual({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } });
    const r = registryFromOptions({ etcdEndpoints: etcd.endpoint, etcdPrefix: '/cli/network' });
    try {
      await r.createLease(parseCidr('10.244.5.0/24'), { PublicIP: '192.0.2.5', BackendType: 'vxlan' }, 600);
    } finally {
      await r.close();
    }
    out = '';
    await program.parseAsync(['node', 'weftctl', 'leases']);
    expect(out).toMatch(/10\.244\.5\.0\/24\s+192\.0\.2\.5\s+vxlan\s+\d{4}-\d\d-\d\dT.*\(in \d+m\d\ds\)/);
  });
});
