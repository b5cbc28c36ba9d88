import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../src/core/clock.js';
import { AbortedError, SubnetExhaustedError } from '../../../src/core/errors.js';
import { waitFor } from '../../../src/core/async.js';
import { formatCidr, parseCidr, subnetKey, type IPv4Net } from '../../../src/core/ip.js';
import { LeaseManager, type LeaseManagerOptions, type LeaseSnapshot } from '../../../src/store/lease-manager.js';
import { MemoryRegistry } from '../../../src/store/memory-registry.js';
import { parseNetworkConfig } from '../../../src/store/netconfig.js';
import { isReservation } from '../../../src/store/registry.js';
import type { Lease, LeaseAttrs, LeaseEvent } from '../../../src/store/types.js';

const config = parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } });
const ME = '192.0.2.1';
const other = (ip: string): LeaseAttrs => ({ PublicIP: ip, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '02:00:00:00:00:02' } });

/** Fake-time world: sleeping advances the FakeClock and yields to real I/O, so loops run fast and never spin. */
function world() {
  const clock = new FakeClock();
  const registry = new MemoryRegistry({ clock });
  const sleep = async (ms: number, signal: AbortSignal) => {
    if (signal.aborted) throw new AbortedError();
    clock.advance(Math.min(ms, 3_600_000));
    await new Promise((r) => setTimeout(r, 1));
    if (signal.aborted) throw new AbortedError();
  };
  return { clock, registry, sleep };
}

const stops: AbortController[] = [];
afterEach(() => stops.splice(0).forEach((ac) => ac.abort()));
function controller(): AbortController {
  const ac = new AbortController();
  stops.push(ac);
  return ac;
}

function manager(w: ReturnType<typeof world>, extra: Partial<LeaseManagerOptions> = {}) {
  const changed: Lease[] = [];
  const errors: Error[] = [];
  const m = new LeaseManager({
    registry: w.registry,
    config,
    publicIp: ME,
    backendType: 'vxlan',
    backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:01' },
    ttlSeconds: 60,
    clock: w.clock,
    sleep: w.sleep,
    random: () => 0,
    onLeaseChanged: (l) => changed.push(l),
    onError: (e) => errors.push(e),
    ...extra,
  });
  return { m, changed, errors };
}

describe('LeaseManager.acquire', () => {
  it('reuses the lease that carries our PublicIP and refreshes its backend data', async () => {
    const w = world();
    const sn = parseCidr('10.244.42.0/24');
    await w.registry.createLease(sn, { PublicIP: ME, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: 'old' } }, 60);
    const { m, changed } = manager(w);
    const lease = await m.acquire(controller().signal);
    expect(formatCidr(lease.subnet)).toBe('10.244.42.0/24');
    expect((await w.registry.getLease(sn))!.attrs.BackendData).toEqual({ VNI: 1, VtepMAC: '02:00:00:00:00:01' });
    expect(changed).toHaveLength(1);
    expect(m.expiration!.getTime()).toBe(w.clock.now() + 60_000);
  });

  it('keeps a reservation (key without TTL) without TTL when reusing it (flannel 1329)', async () => {
    const w = world();
    const sn = parseCidr('10.244.7.0/24');
    await w.registry.createLease(sn, { PublicIP: ME, BackendType: 'vxlan' }, undefined);
    const { m } = manager(w);
    const lease = await m.acquire(controller().signal);
    expect(formatCidr(lease.subnet)).toBe('10.244.7.0/24');
    const stored = (await w.registry.getLease(sn))!;
    expect(isReservation(stored)).toBe(true);
    expect(stored.attrs.BackendData).toEqual({ VNI: 1, VtepMAC: '02:00:00:00:00:01' });
    expect(m.expiration).toBeUndefined();
  });

  it('takes the subnet of the old subnet.env when it is free', async () => {
    const w = world();
    const { m } = manager(w, { previousSubnet: parseCidr('10.244.33.0/24') });
    expect(formatCidr((await m.acquire(controller().signal)).subnet)).toBe('10.244.33.0/24');
  });

  it('takes a free subnet, skipping those held by other hosts', async () => {
    const w = world();
    await w.registry.createLease(parseCidr('10.244.1.0/24'), other('192.0.2.2'), 60);
    await w.registry.createLease(parseCidr('10.244.2.0/24'), other('192.0.2.3'), undefined);
    const { m } = manager(w, { previousSubnet: parseCidr('10.244.2.0/24') });
    const lease = await m.acquire(controller().signal);
    expect(formatCidr(lease.subnet)).toBe('10.244.3.0/24');
    expect((await w.registry.getLease(lease.subnet))!.attrs.PublicIP).toBe(ME);
  });

  it('retries on a lost create race and ends on another subnet', async () => {
    const w = world();
    // Another host creates the subnet we chose right before our transaction.
    const create = w.registry.createLease.bind(w.registry);
    let raced = false;
    w.registry.createLease = async (sn: IPv4Net, attrs: LeaseAttrs, ttl: number | undefined) => {
      if (!raced) {
        raced = true;
        await create(sn, other('192.0.2.9'), ttl);
      }
      return create(sn, attrs, ttl);
    };
    const { m } = manager(w);
    const lease = await m.acquire(controller().signal);
    expect(formatCidr(lease.subnet)).toBe('10.244.2.0/24');
    expect(m.counters.conflicts).toBe(1);
    expect((await w.registry.getLease(parseCidr('10.244.1.0/24')))!.attrs.PublicIP).toBe('192.0.2.9');
  });

  it('fails with SubnetExhaustedError when every subnet is held', async () => {
    const w = world();
    const small = parseNetworkConfig({ Network: '10.244.0.0/28', SubnetLen: 30 });
    for (const [i, c] of ['10.244.0.4/30', '10.244.0.8/30', '10.244.0.12/30'].entries()) {
      await w.registry.createLease(parseCidr(c), other(`192.0.2.${i + 2}`), 60);
    }
    const { m } = manager(w, { config: small });
    const err = await m.acquire(controller().signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SubnetExhaustedError);
    expect((err as SubnetExhaustedError).code).toBe('ERR_SUBNET_EXHAUSTED');
  });

  it('retries through etcd errors with backoff and counts them', async () => {
    const w = world();
    w.registry.failNext(3);
    const { m, errors } = manager(w);
    const lease = await m.acquire(controller().signal);
    expect(formatCidr(lease.subnet)).toBe('10.244.1.0/24');
    expect(m.counters.etcdErrors).toBe(3);
    expect(errors.map((e) => (e as { code?: string }).code)).toEqual(['ERR_STORE', 'ERR_STORE', 'ERR_STORE']);
  });

  it('deletes our lease that no longer fits the network config and takes a fitting one', async () => {
    const w = world();
    await w.registry.createLease(parseCidr('10.9.0.0/24'), { PublicIP: ME, BackendType: 'vxlan' }, 60);
    const { m } = manager(w);
    const lease = await m.acquire(controller().signal);
    expect(formatCidr(lease.subnet)).toBe('10.244.1.0/24');
    expect(await w.registry.getLease(parseCidr('10.9.0.0/24'))).toBeUndefined();
  });

  it('stops when aborted while etcd is down', async () => {
    const w = world();
    w.registry.failNext(1000);
    const ac = controller();
    const { m } = manager(w);
    const p = m.acquire(ac.signal);
    await waitFor(() => m.counters.etcdErrors >= 2, { timeoutMs: 5000 });
    ac.abort();
    await expect(p).rejects.toBeInstanceOf(AbortedError);
  });
});

describe('LeaseManager.run', () => {
  it('renews before expiry, keeping the subnet', async () => {
    const w = world();
    const { m } = manager(w);
    const ac = controller();
    const running = m.run(ac.signal);
    await waitFor(() => m.counters.renewals >= 3, { timeoutMs: 5000 });
    const subnet = formatCidr(m.current!.subnet);
    const stored = (await w.registry.getLease(m.current!.subnet))!;
    // Renewed at 1/3 of the TTL before expiry, so the key never lapsed.
    expect(stored.expiration!.getTime()).toBeGreaterThan(w.clock.now());
    expect(m.counters.reacquisitions).toBe(0);
    ac.abort();
    await running;
    expect(subnet).toBe('10.244.1.0/24');
  });

  it('leaves a reservation without TTL while running', async () => {
    const w = world();
    const sn = parseCidr('10.244.8.0/24');
    await w.registry.createLease(sn, { PublicIP: ME, BackendType: 'vxlan' }, undefined);
    const { m } = manager(w);
    const ac = controller();
    const running = m.run(ac.signal);
    // Several recheck periods of fake time pass.
    const t0 = w.clock.now();
    await waitFor(() => w.clock.now() - t0 > 5 * 60_000, { timeoutMs: 5000 });
    const stored = (await w.registry.getLease(sn))!;
    expect(isReservation(stored)).toBe(true);
    expect(m.counters.renewals).toBe(0);
    ac.abort();
    await running;
  });

  it('re-creates the same subnet when our key is deleted', async () => {
    const w = world();
    const { m, changed } = manager(w);
    const ac = controller();
    const running = m.run(ac.signal);
    await waitFor(() => m.current, { timeoutMs: 5000 });
    const sn = m.current!.subnet;
    await w.registry.deleteLease(sn);
    await waitFor(() => m.counters.reacquisitions === 1, { timeoutMs: 5000 });
    const stored = (await w.registry.getLease(sn))!;
    expect(stored.attrs.PublicIP).toBe(ME);
    expect(formatCidr(m.current!.subnet)).toBe(formatCidr(sn));
    expect(changed.map((l) => formatCidr(l.subnet))).toEqual([formatCidr(sn), formatCidr(sn)]);
    ac.abort();
    await running;
  });

  it('gets the same subnet back after an outage longer than the TTL', async () => {
    const w = world();
    const { m } = manager(w);
    const ac = controller();
    await m.acquire(ac.signal);
    const sn = formatCidr(m.current!.subnet);
    // etcd unreachable for many attempts while fake time runs past the TTL.
    w.registry.failNext(20);
    const t0 = w.clock.now();
    const running = m.run(ac.signal);
    await waitFor(() => m.counters.reacquisitions === 1, { timeoutMs: 10_000 });
    // run() and its own-key watch share the 20 failures; fake time ran past the TTL meanwhile.
    expect(m.counters.etcdErrors).toBeGreaterThanOrEqual(5);
    expect(w.clock.now() - t0).toBeGreaterThan(60_000);
    expect(formatCidr(m.current!.subnet)).toBe(sn);
    expect((await w.registry.getLease(m.current!.subnet))!.attrs.PublicIP).toBe(ME);
    ac.abort();
    await running;
  });

  it('rewrites our value when someone else edits it, keeping the TTL lease', async () => {
    const w = world();
    const { m } = manager(w);
    const ac = controller();
    const running = m.run(ac.signal);
    await waitFor(() => m.current, { timeoutMs: 5000 });
    const sn = m.current!.subnet;
    await w.registry.updateLease(sn, { PublicIP: ME, BackendType: 'udp' }, 60);
    await waitFor(async () => (await w.registry.getLease(sn))?.attrs.BackendType === 'vxlan', { timeoutMs: 5000 });
    expect(formatCidr(m.current!.subnet)).toBe(formatCidr(sn));
    ac.abort();
    await running;
  });

  it('moves to another subnet when another host took ours', async () => {
    const w = world();
    const { m, errors } = manager(w);
    const ac = controller();
    const running = m.run(ac.signal);
    await waitFor(() => m.current, { timeoutMs: 5000 });
    const sn = m.current!.subnet;
    await w.registry.updateLease(sn, other('192.0.2.7'), undefined);
    await waitFor(() => m.counters.subnetChanges === 1 && m.current, { timeoutMs: 5000 });
    expect(formatCidr(m.current!.subnet)).not.toBe(formatCidr(sn));
    expect(errors.some((e) => (e as { code?: string }).code === 'ERR_LEASE_CONFLICT')).toBe(true);
    expect((await w.registry.getLease(sn))!.attrs.PublicIP).toBe('192.0.2.7');
    ac.abort();
    await running;
  });
});

describe('LeaseManager.watch', () => {
  it('reports snapshots, then events, and relists after compaction', async () => {
    const w = world();
    await w.registry.createLease(parseCidr('10.244.1.0/24'), other('192.0.2.2'), 60);
    const { m } = manager(w);
    const ac = controller();
    const reports: Array<{ snapshot: LeaseSnapshot; events: LeaseEvent[] }> = [];
    const watching = m.watch((snapshot, events) => reports.push({ snapshot, events }), ac.signal);
    await waitFor(() => reports.length === 1, { timeoutMs: 5000 });
    expect([...reports[0]!.snapshot.keys()]).toEqual(['10.244.1.0-24']);
    expect(reports[0]!.events.map((e) => e.type)).toEqual(['added']);

    await w.registry.createLease(parseCidr('10.244.2.0/24'), other('192.0.2.3'), 60);
    await waitFor(() => reports.at(-1)!.snapshot.size === 2, { timeoutMs: 5000 });
    await w.registry.deleteLease(parseCidr('10.244.1.0/24'));
    await waitFor(() => reports.at(-1)!.snapshot.size === 1, { timeoutMs: 5000 });
    const removed = reports.at(-1)!.events[0]!;
    expect(removed.type).toBe('removed');
    expect(removed.lease.attrs.PublicIP).toBe('192.0.2.2');

    // History compacted: the watch must relist (and report the full state), not spin.
    w.registry.compact();
    await w.registry.createLease(parseCidr('10.244.3.0/24'), other('192.0.2.4'), 60);
    await waitFor(() => m.counters.resyncs === 1 && reports.at(-1)!.snapshot.size === 2, { timeoutMs: 5000 });
    expect([...reports.at(-1)!.snapshot.keys()].sort()).toEqual(['10.244.2.0-24', '10.244.3.0-24']);
    const listsBefore = w.registry.calls.listLeases ?? 0;
    expect(listsBefore).toBeLessThan(5);
    ac.abort();
    await watching;
  });

  it('reports an expired lease as removed', async () => {
    const w = world();
    await w.registry.createLease(parseCidr('10.244.1.0/24'), other('192.0.2.2'), 10);
    const { m } = manager(w);
    const ac = controller();
    const removed: string[] = [];
    const watching = m.watch((_s, events) => {
      for (const e of events) if (e.type === 'removed') removed.push(subnetKey(e.lease.subnet));
    }, ac.signal);
    await waitFor(() => w.registry.watchCount === 1, { timeoutMs: 5000 });
    w.clock.advance(11_000);
    w.registry.expire();
    await waitFor(() => removed.length === 1, { timeoutMs: 5000 });
    expect(removed).toEqual(['10.244.1.0-24']);
    ac.abort();
    await watching;
  });
});
