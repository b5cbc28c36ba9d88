import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../src/core/clock.js';
import { LeaseConflictError } from '../../../src/core/errors.js';
import { formatCidr, parseCidr } from '../../../src/core/ip.js';
import { waitFor } from '../../../src/core/async.js';
import { MemoryRegistry } from '../../../src/store/memory-registry.js';
import { isReservation, parseLeaseAttrs, serializeLeaseAttrs, type RegistryWatchEvent } from '../../../src/store/registry.js';

const sn = parseCidr('10.244.5.0/24');
const attrs = { PublicIP: '192.0.2.1', BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: 'ca:b8:3a:f3:06:ae' } };

describe('lease value codec', () => {
  it('writes flannel JSON byte for byte', () => {
    expect(serializeLeaseAttrs(attrs)).toBe(
      '{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"ca:b8:3a:f3:06:ae"}}',
    );
    expect(serializeLeaseAttrs({ PublicIP: '192.0.2.2', BackendType: 'host-gw' })).toBe(
      '{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"host-gw"}',
    );
  });
  it('refuses values that are not lease JSON', () => {
    expect(() => parseLeaseAttrs('{"BackendType":"udp"}')).toThrow(/PublicIP/);
    expect(() => parseLeaseAttrs('nope')).toThrow(/JSON/);
  });
});

describe('MemoryRegistry', () => {
  it('creates only when absent', async () => {
    const r = new MemoryRegistry();
    const l = await r.createLease(sn, attrs, 60);
    expect(l.leaseId).toBeDefined();
    const err = await r.createLease(sn, attrs, 60).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseConflictError);
    expect((err as LeaseConflictError).code).toBe('ERR_LEASE_CONFLICT');
  });

  it('compare-and-swaps updates on the mod revision', async () => {
    const r = new MemoryRegistry();
    const l = await r.createLease(sn, attrs, 60);
    const l2 = await r.updateLease(sn, attrs, 60, { ifRevision: l.revision! });
    expect(l2.revision).toBeGreaterThan(l.revision!);
    const err = await r.updateLease(sn, attrs, 60, { ifRevision: l.revision! }).catch((e: unknown) => e);
    expect((err as LeaseConflictError).code).toBe('ERR_LEASE_CONFLICT');
  });

  it('keeps a reservation without TTL when updated without TTL', async () => {
    const r = new MemoryRegistry();
    await r.createLease(sn, attrs, undefined);
    await r.updateLease(sn, attrs, undefined);
    const got = (await r.getLease(sn))!;
    expect(isReservation(got)).toBe(true);
    expect(got.expiration).toBeUndefined();
  });

  it('expires TTL keys on its clock and reports them removed to watchers', async () => {
    const clock = new FakeClock();
    const r = new MemoryRegistry({ clock });
    const { revision } = await r.listLeases();
    const events: RegistryWatchEvent[] = [];
    const ac = new AbortController();
    const watching = r.watchLeases(revision + 1, (evs) => events.push(...evs), ac.signal);
    await r.createLease(sn, attrs, 10);
    clock.advance(10_001);
    expect(await r.getLease(sn)).toBeUndefined();
    await waitFor(() => events.length === 2, { timeoutMs: 2000 });
    expect(events.map((e) => e.type)).toEqual(['added', 'removed']);
    expect(events[1]!.type === 'removed' && events[1]!.lease.attrs.PublicIP).toBe('192.0.2.1');
    ac.abort();
    expect(await watching).toBe('aborted');
    expect(r.watchCount).toBe(0);
  });

  it('replays history from a revision and resyncs once it is compacted', async () => {
    const r = new MemoryRegistry();
    const { revision } = await r.listLeases();
    await r.createLease(sn, attrs, undefined);
    await r.deleteLease(sn);
    const seen: string[] = [];
    const ac = new AbortController();
    const live = r.watchLeases(revision + 1, (evs) => evs.forEach((e) => seen.push(e.type)), ac.signal);
    await waitFor(() => seen.length === 2, { timeoutMs: 2000 });
    expect(seen).toEqual(['added', 'removed']);
    r.compact();
    expect(await live).toBe('resync');
    expect(seen.at(-1)).toBe('resync');
    const late: string[] = [];
    expect(await r.watchLeases(revision + 1, (evs) => evs.forEach((e) => late.push(e.type)), ac.signal)).toBe('resync');
    expect(late).toEqual(['resync']);
  });

  it('fails the next N calls on request, then recovers', async () => {
    const r = new MemoryRegistry();
    r.failNext(2);
    await expect(r.listLeases()).rejects.toMatchObject({ code: 'ERR_STORE' });
    await expect(r.getConfig()).rejects.toMatchObject({ code: 'ERR_STORE' });
    await r.putConfig('{"Network":"10.244.0.0/16"}');
    expect(await r.getConfig()).toContain('10.244.0.0/16');
  });

  it('lists leases sorted and skips values that are not lease JSON', async () => {
    const r = new MemoryRegistry();
    await r.createLease(parseCidr('10.244.9.0/24'), attrs, undefined);
    await r.createLease(sn, attrs, undefined);
    r.putRaw(parseCidr('10.244.7.0/24'), 'garbage');
    const { leases } = await r.listLeases();
    expect(leases.map((l) => formatCidr(l.subnet))).toEqual(['10.244.5.0/24', '10.244.9.0/24']);
  });
});
