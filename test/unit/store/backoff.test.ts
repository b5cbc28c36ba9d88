import { describe, expect, it } from 'vitest';
import { parseCidr } from '../../../src/core/ip.js';
import { Backoff } from '../../../src/store/backoff.js';
import { diffSnapshots } from '../../../src/store/lease-manager.js';
import type { Lease } from '../../../src/store/types.js';

describe('Backoff', () => {
  it('doubles up to the ceiling and starts over after reset', () => {
    const b = new Backoff({ minMs: 100, maxMs: 1000, jitter: 0 });
    expect([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(b.failures).toBe(6);
    b.reset();
    expect(b.next()).toBe(100);
  });
  it('spreads delays by the jitter fraction', () => {
    expect(new Backoff({ minMs: 1000, jitter: 0.2, random: () => 0 }).next()).toBe(800);
    expect(new Backoff({ minMs: 1000, jitter: 0.2, random: () => 0.9999999 }).next()).toBe(1200);
  });
});

describe('diffSnapshots', () => {
  const l = (cidr: string, ip: string, revision: number, leaseId?: string): Lease => ({
    subnet: parseCidr(cidr),
    attrs: { PublicIP: ip, BackendType: 'host-gw' },
    revision,
    ...(leaseId ? { leaseId, expiration: new Date(0) } : {}),
  });
  it('reports removed, new and changed leases, nothing for unchanged ones', () => {
    const a = new Map([
      ['a', l('10.244.1.0/24', '192.0.2.1', 5)],
      ['b', l('10.244.2.0/24', '192.0.2.2', 6)],
      ['c', l('10.244.3.0/24', '192.0.2.3', 7)],
    ]);
    const b = new Map([
      ['b', l('10.244.2.0/24', '192.0.2.2', 6)],
      ['c', l('10.244.3.0/24', '192.0.2.9', 9)],
      ['d', l('10.244.4.0/24', '192.0.2.4', 10)],
    ]);
    const d = diffSnapshots(a, b);
    expect(d.map((e) => `${e.type} ${e.lease.attrs.PublicIP}`)).toEqual(['removed 192.0.2.1', 'added 192.0.2.9', 'added 192.0.2.4']);
  });
});
