import { describe, expect, it } from 'vitest';
import { formatCidr, parseCidr, subnetKey } from '../../../src/core/ip.js';
import { parseNetworkConfig } from '../../../src/store/netconfig.js';
import { chooseSubnet, freeSubnets, splitOwnLeases } from '../../../src/store/subnet-policy.js';
import type { Lease } from '../../../src/store/types.js';

const config = parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });
const lease = (cidr: string, ip: string): Lease => ({
  subnet: parseCidr(cidr),
  attrs: { PublicIP: ip, BackendType: 'host-gw' },
});

describe('chooseSubnet (flannel order)', () => {
  it('1. reuses the lease that carries our PublicIP', () => {
    const leases = [lease('10.244.7.0/24', '192.0.2.2'), lease('10.244.9.0/24', '192.0.2.1')];
    const c = chooseSubnet({ config, leases, publicIp: '192.0.2.1', previousSubnet: parseCidr('10.244.3.0/24') });
    expect(c.kind).toBe('own');
    expect(c.kind === 'own' && formatCidr(c.lease.subnet)).toBe('10.244.9.0/24');
  });

  it('prefers, among several own leases, the one the old subnet.env names', () => {
    const leases = [lease('10.244.9.0/24', '192.0.2.1'), lease('10.244.4.0/24', '192.0.2.1')];
    const c = chooseSubnet({ config, leases, publicIp: '192.0.2.1', previousSubnet: parseCidr('10.244.4.0/24') });
    expect(c.kind === 'own' && formatCidr(c.lease.subnet)).toBe('10.244.4.0/24');
  });

  it('2. takes the previous subnet when free', () => {
    const c = chooseSubnet({ config, leases: [], publicIp: '192.0.2.1', previousSubnet: parseCidr('10.244.3.0/24') });
    expect(c).toEqual({ kind: 'previous', subnet: parseCidr('10.244.3.0/24') });
  });

  it('skips the previous subnet when another host holds it, or when it no longer fits the config', () => {
    const held = chooseSubnet({
      config,
      leases: [lease('10.244.3.0/24', '192.0.2.9')],
      publicIp: '192.0.2.1',
      previousSubnet: parseCidr('10.244.3.0/24'),
      random: () => 0,
    });
    expect(held).toEqual({ kind: 'random', subnet: parseCidr('10.244.1.0/24') });
    const outside = chooseSubnet({ config, leases: [], publicIp: '192.0.2.1', previousSubnet: parseCidr('10.9.3.0/24'), random: () => 0 });
    expect(outside.kind).toBe('random');
  });

  it('3. picks randomly among the first free subnets from SubnetMin, skipping held ones', () => {
    const leases = [lease('10.244.1.0/24', '192.0.2.2'), lease('10.244.2.0/24', '192.0.2.3')];
    expect(chooseSubnet({ config, leases, publicIp: '192.0.2.1', random: () => 0 })).toEqual({
      kind: 'random',
      subnet: parseCidr('10.244.3.0/24'),
    });
    // random just below 1 picks the 100th free subnet: 10.244.102.0
    const last = chooseSubnet({ config, leases, publicIp: '192.0.2.1', random: () => 0.9999 });
    expect(last.kind === 'random' && formatCidr(last.subnet)).toBe('10.244.102.0/24');
  });

  it('honours the exclusion set (a race just lost)', () => {
    const c = chooseSubnet({
      config,
      leases: [],
      publicIp: '192.0.2.1',
      exclude: new Set([subnetKey(parseCidr('10.244.1.0/24'))]),
      random: () => 0,
    });
    expect(c.kind === 'random' && formatCidr(c.subnet)).toBe('10.244.2.0/24');
  });

  it('reports exhaustion when every subnet is held', () => {
    const small = parseNetworkConfig({ Network: '10.244.0.0/28', SubnetLen: 30 });
    const leases = ['10.244.0.4/30', '10.244.0.8/30', '10.244.0.12/30'].map((c, i) => lease(c, `192.0.2.${i + 2}`));
    expect(chooseSubnet({ config: small, leases, publicIp: '192.0.2.1' })).toEqual({ kind: 'exhausted' });
  });

  it('treats a lease of another size (SubnetLen changed) as holding the subnets it overlaps', () => {
    const leases = [lease('10.244.0.0/23', '192.0.2.2')];
    const c25 = parseNetworkConfig({ Network: '10.244.0.0/16', SubnetLen: 25 });
    const free = freeSubnets(c25, leases, 2);
    expect(free.map(formatCidr)).toEqual(['10.244.2.0/25', '10.244.2.128/25']);
  });

  it('splits our leases into compatible and incompatible with the config', () => {
    const leases = [lease('10.244.1.0/24', '192.0.2.1'), lease('10.9.0.0/24', '192.0.2.1'), lease('10.244.2.0/25', '192.0.2.1')];
    const { compatible, incompatible } = splitOwnLeases(config, leases, '192.0.2.1');
    expect(compatible.map((l) => formatCidr(l.subnet))).toEqual(['10.244.1.0/24']);
    expect(incompatible).toHaveLength(2);
  });
});
