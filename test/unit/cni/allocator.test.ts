import { describe, expect, it } from 'vitest';
import { formatIPv4, parseCidr, parseIPv4 } from '../../../src/core/ip.js';
import { allocate, rangeFor } from '../../../src/cni/ipam/allocator.js';
import { FakeIpamStore } from '../../../src/cni/ipam/fake-store.js';
import type { CniError } from '../../../src/cni/errors.js';

const range = rangeFor(parseCidr('10.244.1.0/24'));
const ip = (s: string) => parseIPv4(s);

describe('allocate (host-local semantics against a fake store)', () => {
  it('skips the gateway and starts at .2 on an empty store', async () => {
    const s = new FakeIpamStore();
    const a = await allocate(s, range, 'c1', 'eth0');
    expect(formatIPv4(a.ip)).toBe('10.244.1.2');
    expect(a.fresh).toBe(true);
    expect(formatIPv4(s.lastReservedIP('0')!)).toBe('10.244.1.2');
  });

  it('goes round robin from the last reserved address, not the lowest free one', async () => {
    const s = new FakeIpamStore();
    await allocate(s, range, 'c1', 'eth0');
    await allocate(s, range, 'c2', 'eth0');
    s.releaseByID('c1', 'eth0');
    const a = await allocate(s, range, 'c3', 'eth0');
    expect(formatIPv4(a.ip)).toBe('10.244.1.4');
  });

  it('wraps around past the end and skips the gateway', async () => {
    const s = new FakeIpamStore();
    s.lastReserved.set('0', ip('10.244.1.254'));
    const a = await allocate(s, range, 'c1', 'eth0');
    expect(formatIPv4(a.ip)).toBe('10.244.1.2');
  });

  it('returns the same address on a repeated ADD, marked not fresh', async () => {
    const s = new FakeIpamStore();
    const a = await allocate(s, range, 'c1', 'eth0');
    const b = await allocate(s, range, 'c1', 'eth0');
    expect(b).toEqual({ ip: a.ip, fresh: false });
    const c = await allocate(s, range, 'c1', 'eth1');
    expect(c.ip).not.toBe(a.ip);
    expect(s.reservations.size).toBe(2);
  });

  it('gives a requested address when free, refuses it when taken, out of range or the gateway', async () => {
    const s = new FakeIpamStore();
    expect(formatIPv4((await allocate(s, range, 'c1', 'eth0', '10.244.1.77')).ip)).toBe('10.244.1.77');
    for (const [want, id] of [['10.244.1.77', 'c2'], ['10.244.2.5', 'c3'], ['10.244.1.1', 'c4'], ['10.244.1.255', 'c5']] as const) {
      const err = await allocate(s, range, id, 'eth0', want).catch((e: CniError) => e);
      expect((err as CniError).cniCode).toBe(102);
    }
    // the same attachment asking again for its own address is fine
    expect((await allocate(s, range, 'c1', 'eth0', '10.244.1.77')).fresh).toBe(false);
  });

  it('fails with code 101 when the range is exhausted, and every address is distinct', async () => {
    const small = rangeFor(parseCidr('10.244.9.0/29')); // .1 gateway, .2-.6 usable
    const s = new FakeIpamStore();
    const got = [];
    for (let i = 0; i < 5; i++) got.push(formatIPv4((await allocate(s, small, `c${i}`, 'eth0')).ip));
    expect(new Set(got).size).toBe(5);
    expect(got).not.toContain('10.244.9.1');
    const err = (await allocate(s, small, 'c9', 'eth0').catch((e: CniError) => e)) as CniError;
    expect(err.cniCode).toBe(101);
    expect(err.code).toBe('ERR_CNI_RANGE_EXHAUSTED');
  });

  it('refuses subnets too small for containers', () => {
    expect(() => rangeFor(parseCidr('10.244.9.0/31'))).toThrow(/too small/);
  });

  it('never hands an old-format reservation (container ID alone) back to an ADD; DEL frees it when the attachment has none of its own', async () => {
    const s = new FakeIpamStore();
    s.reservations.set(ip('10.244.1.2'), { containerId: 'old', ifname: '' });
    const a = await allocate(s, range, 'old', 'eth0');
    expect(a.fresh).toBe(true);
    expect(formatIPv4(a.ip)).not.toBe('10.244.1.2');
    expect(s.releaseByID('old', 'eth0')).toEqual([a.ip]);
    expect(s.releaseByID('old', 'eth0')).toEqual([ip('10.244.1.2')]);
    expect(s.reservations.size).toBe(0);
  });
});
