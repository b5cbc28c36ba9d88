/**
 * The store against a real etcd (Debian etcd-server on 127.0.0.1, random
 * ports, temp dir): create-if-absent races, TTL expiry, key deletion,
 * reservations, an etcd outage and compaction. No namespaces needed.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { formatCidr, parseCidr, subnetKey } from '../../src/core/ip.js';
import { EtcdRegistry } from '../../src/store/etcd-registry.js';
import { LeaseManager, type LeaseManagerOptions, type LeaseSnapshot } from '../../src/store/lease-manager.js';
import { parseNetworkConfig } from '../../src/store/netconfig.js';
import type { Registry } from '../../src/store/registry.js';
import { startEtcd, type TestEtcd } from '../helpers/etcd.js';

const config = parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });

let etcd: TestEtcd;
let prefixNo = 0;
const cleanups: Array<() => unknown> = [];
const aborts: AbortController[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
afterEach(async () => {
  etcd.resume();
  // Stop loops first, then wait for them, then close clients.
  for (const ac of aborts.splice(0)) ac.abort();
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** A registry on a prefix of its own, closed after the test. */
function registry(prefix = `/weft-test-${process.pid}-${++prefixNo}/network`): EtcdRegistry {
  const r = new EtcdRegistry({ endpoints: [etcd.endpoint], prefix, callTimeoutMs: 2000 });
  cleanups.push(() => r.close());
  return r;
}

function stopper(): AbortSignal {
  const ac = new AbortController();
  aborts.push(ac);
  return ac.signal;
}

function manager(r: Registry, publicIp: string, extra: Partial<LeaseManagerOptions> = {}): LeaseManager {
  return new LeaseManager({
    registry: r,
    config,
    publicIp,
    backendType: 'host-gw',
    ttlSeconds: 30,
    minBackoffMs: 100,
    maxBackoffMs: 1000,
    ...extra,
  });
}

describe('EtcdRegistry + LeaseManager on a real etcd', () => {
  it('two hosts racing for the same subnet end on two different subnets, in flannel JSON', async () => {
    const r1 = registry();
    const r2 = registry(r1.keys.prefix);
    const signal = stopper();
    // random: () => 0 makes both choose SubnetMin: one create transaction must lose.
    const a = manager(r1, '192.0.2.1', { random: () => 0 });
    const b = manager(r2, '192.0.2.2', { random: () => 0 });
    const [la, lb] = await Promise.all([a.acquire(signal), b.acquire(signal)]);
    expect(formatCidr(la.subnet)).not.toBe(formatCidr(lb.subnet));
    expect(a.counters.conflicts + b.counters.conflicts).toBe(1);
    const raw = (await r1.client.get(r1.keys.lease(la.subnet)))?.value;
    expect(raw).toBe('{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"host-gw"}');
    const { leases } = await r1.listLeases();
    expect(leases.map((l) => l.attrs.PublicIP).sort()).toEqual(['192.0.2.1', '192.0.2.2']);
    expect(leases.every((l) => l.expiration && l.expiration.getTime() > Date.now())).toBe(true);
  });

  it('a lease with a 2 s TTL expires: the key goes and the watch reports it removed', async () => {
    const r = registry();
    const signal = stopper();
    const removed: string[] = [];
    const watcher = manager(r, '192.0.2.50');
    const watching = watcher.watch((_s, events) => {
      for (const e of events) if (e.type === 'removed') removed.push(subnetKey(e.lease.subnet));
    }, signal);
    cleanups.push(() => watching);
    const sn = parseCidr('10.244.77.0/24');
    await r.createLease(sn, { PublicIP: '192.0.2.77', BackendType: 'host-gw' }, 2);
    expect(await r.getLease(sn)).toBeDefined();
    await waitFor(() => removed.includes('10.244.77.0-24'), { timeoutMs: 10_000, what: 'removed event' });
    expect(await r.getLease(sn)).toBeUndefined();
  });

  it('deleting our key brings the same subnet back within 5 s', async () => {
    const r = registry();
    const signal = stopper();
    const m = manager(r, '192.0.2.3');
    const lease = await m.acquire(signal);
    const running = m.run(signal);
    cleanups.push(() => running);
    await r.deleteLease(lease.subnet);
    await waitFor(async () => (await r.getLease(lease.subnet))?.attrs.PublicIP === '192.0.2.3', {
      timeoutMs: 5000,
      intervalMs: 50,
      what: 'lease re-created',
    });
    expect(m.counters.reacquisitions).toBe(1);
    expect(formatCidr(m.current!.subnet)).toBe(formatCidr(lease.subnet));
  });

  it('a reservation (key without TTL) stays without TTL after renewals', async () => {
    const r = registry();
    const signal = stopper();
    const sn = parseCidr('10.244.200.0/24');
    await r.createLease(sn, { PublicIP: '192.0.2.4', BackendType: 'vxlan' }, undefined);
    // A short TTL with a 1 s margin: a TTL lease would be renewed every 2 s.
    const m = manager(r, '192.0.2.4', { ttlSeconds: 3, renewMarginSeconds: 1, recheckIntervalMs: 500 });
    const ttlLease = manager(r, '192.0.2.5', { ttlSeconds: 3, renewMarginSeconds: 1 });
    const lease = await m.acquire(signal);
    expect(formatCidr(lease.subnet)).toBe('10.244.200.0/24');
    const runs = [m.run(signal), ttlLease.run(signal)];
    cleanups.push(() => Promise.all(runs));
    await waitFor(() => ttlLease.counters.renewals >= 2, { timeoutMs: 15_000, what: 'two renewals of the TTL lease' });
    const kv = (await r.client.get(r.keys.lease(sn)))!;
    expect(kv.lease).toBe('0');
    expect(JSON.parse(kv.value)).toMatchObject({ PublicIP: '192.0.2.4', BackendType: 'host-gw' });
    const other = (await r.client.get(r.keys.lease(ttlLease.current!.subnet)))!;
    expect(other.lease).not.toBe('0');
  });

  it('an etcd outage of 30 s (SIGSTOP) ends with the same subnet held and renewed', async () => {
    const r = registry();
    const signal = stopper();
    // TTL shorter than the outage: etcd expires the key when it wakes up.
    const m = manager(r, '192.0.2.6', { ttlSeconds: 10 });
    const lease = await m.acquire(signal);
    const running = m.run(signal);
    cleanups.push(() => running);
    await etcd.pause();
    const until = Date.now() + 30_000;
    await waitFor(() => Date.now() >= until, { timeoutMs: 40_000, intervalMs: 1000 });
    etcd.resume();
    expect(m.counters.etcdErrors).toBeGreaterThan(0);
    const renewalsBefore = m.counters.renewals + m.counters.reacquisitions;
    await waitFor(() => m.counters.renewals + m.counters.reacquisitions > renewalsBefore, {
      timeoutMs: 30_000,
      what: 'renewal after the outage',
    });
    const stored = await waitFor(async () => r.getLease(lease.subnet), { timeoutMs: 10_000 });
    expect(stored.attrs.PublicIP).toBe('192.0.2.6');
    expect(stored.expiration!.getTime()).toBeGreaterThan(Date.now());
    expect(formatCidr(m.current!.subnet)).toBe(formatCidr(lease.subnet));
  });

  it('a watch that falls behind a compaction relists instead of looping', async () => {
    const r = registry();
    const signal = stopper();
    const { revision: stale } = await r.listLeases();
    await r.createLease(parseCidr('10.244.10.0/24'), { PublicIP: '192.0.2.10', BackendType: 'host-gw' }, undefined);
    await r.createLease(parseCidr('10.244.11.0/24'), { PublicIP: '192.0.2.11', BackendType: 'host-gw' }, undefined);
    const { revision: now } = await r.listLeases();
    await r.compact(now);

    // The registry itself: watching from a compacted revision ends in 'resync'.
    const seen: string[] = [];
    expect(await r.watchLeases(stale + 1, (evs) => evs.forEach((e) => seen.push(e.type)), signal)).toBe('resync');
    expect(seen).toEqual(['resync']);

    // The manager: its first list hands out the stale revision (as if the
    // client had been cut off while etcd compacted); it must relist once.
    let lists = 0;
    const lagging: Registry = Object.create(r, {
      listLeases: {
        value: async () => {
          const res = await r.listLeases();
          return ++lists === 1 ? { ...res, revision: stale } : res;
        },
      },
    });
    const m = manager(lagging, '192.0.2.12');
    let last: LeaseSnapshot = new Map();
    const watching = m.watch((s) => (last = s), signal);
    cleanups.push(() => watching);
    await waitFor(() => m.counters.resyncs === 1 && lists >= 2, { timeoutMs: 10_000, what: 'resync' });
    await r.createLease(parseCidr('10.244.12.0/24'), { PublicIP: '192.0.2.12', BackendType: 'host-gw' }, undefined);
    await waitFor(() => last.size === 3, { timeoutMs: 10_000, what: 'event after resync' });
    expect([...last.keys()].sort()).toEqual(['10.244.10.0-24', '10.244.11.0-24', '10.244.12.0-24']);
    expect(lists).toBe(2);
    expect(m.counters.resyncs).toBe(1);
  });
});
