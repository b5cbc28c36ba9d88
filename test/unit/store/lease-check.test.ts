import { describe, expect, it } from 'vitest';
import { formatCidr, parseCidr } from '../../../src/core/ip.js';
import { MAX_LEASE_VALUE_BYTES, acceptLeases, classifyLeaseKv, parseLeaseKeyName, publicIpProblem, type LeaseEntry } from '../../../src/store/lease-check.js';
import { RegistryKeys, parseLeaseAttrs } from '../../../src/store/registry.js';
import type { Lease } from '../../../src/store/types.js';

describe('lease key names', () => {
  it.each([
    ['10.244.41.0-24', '10.244.41.0/24'],
    ['10.244.0.0-16', '10.244.0.0/16'],
    ['10.244.41.0-24&fd00:41::-64', '10.244.41.0/24'],
    ['10.244.41.128-25', '10.244.41.128/25'],
  ])('%s is the lease of %s', (name, subnet) => {
    expect(formatCidr(parseLeaseKeyName(name)!)).toBe(subnet);
  });

  it.each([
    '10.244.41.0-24&x',
    '10.244.41.0-24&',
    '10.244.41.0-24&fd00::-129',
    '10.244.41.0-24&fd00::-064',
    '10.244.41.0-24&:::-64',
    '10.244.41.0-24x',
    '10.244.041.0-24',
    '010.244.41.0-24',
    '10.244.41.1-24',
    '10.244.41.0-024',
    '10.244.41.0-33',
    '10.244.41.256-24',
    ' 10.244.41.0-24',
    '10.244.41.0-24 ',
    '10.244.41.0/24',
    '10.244.41-24',
    '',
  ])('%j is not a lease key', (name) => {
    expect(parseLeaseKeyName(name)).toBeUndefined();
  });

  it('RegistryKeys.subnetOf is strict too', () => {
    const k = new RegistryKeys('/coreos.com/network/');
    expect(k.subnetOf('/coreos.com/network/subnets/10.244.41.0-24&x')).toBeUndefined();
    expect(formatCidr(k.subnetOf('/coreos.com/network/subnets/10.244.41.0-24')!)).toBe('10.244.41.0/24');
    expect(k.nameOf('/coreos.com/network/subnets/10.244.41.0-24&x')).toBe('10.244.41.0-24&x');
    expect(k.nameOf('/coreos.com/network/config')).toBeUndefined();
  });
});

describe('lease values', () => {
  it("reads flanneld's udp value (no BackendType) with BackendType ''", () => {
    expect(parseLeaseAttrs('{"PublicIP":"192.0.2.3","PublicIPv6":null}')).toEqual({ PublicIP: '192.0.2.3', PublicIPv6: null, BackendType: '' });
    expect(parseLeaseAttrs('{"PublicIP":"192.0.2.3","BackendType":null}').BackendType).toBe('');
    expect(() => parseLeaseAttrs('{"PublicIP":"192.0.2.3","BackendType":7}')).toThrow(/BackendType/);
  });

  it.each(['0.0.0.0', '0.1.2.3', '127.0.0.1', '224.0.0.1', '239.255.255.255', '240.0.0.1', '255.255.255.255', '192.0.2', ' 192.0.2.1', '192.0.02.1', '::1'])(
    'refuses PublicIP %j',
    (ip) => {
      expect(publicIpProblem(ip)).toBeDefined();
    },
  );
  it('takes a unicast PublicIP', () => {
    expect(publicIpProblem('192.0.2.1')).toBeUndefined();
    expect(publicIpProblem('10.0.0.1')).toBeUndefined();
    expect(publicIpProblem(42)).toMatch(/not a string/);
  });

  const kv = (name: string, value: string) => ({ name, value, bytes: Buffer.byteLength(value), modRevision: 5, createRevision: 3 });
  it('classifies key, size, JSON and PublicIP problems, each with its reason', () => {
    const ok = classifyLeaseKv(kv('10.244.1.0-24', '{"PublicIP":"192.0.2.1","BackendType":"vxlan"}'));
    expect('lease' in ok && ok.lease).toMatchObject({ key: '10.244.1.0-24', revision: 5, createRevision: 3 });
    const reason = (r: ReturnType<typeof classifyLeaseKv>) => ('invalid' in r ? r.invalid.reason : 'lease');
    expect(reason(classifyLeaseKv(kv('10.244.1.0-24&x', '{"PublicIP":"192.0.2.1"}')))).toBe('key');
    expect(reason(classifyLeaseKv(kv('10.244.1.0-24', '{"PublicIP":"192.0.2.1","Back')))).toBe('value');
    expect(reason(classifyLeaseKv(kv('10.244.1.0-24', '{"PublicIP":"0.0.0.0","BackendType":"udp"}')))).toBe('public-ip');
    // Over the cap: refused by its size alone, the text is never parsed.
    const big = { name: '10.244.1.0-24', value: undefined, bytes: MAX_LEASE_VALUE_BYTES + 1, modRevision: 5 };
    expect(reason(classifyLeaseKv(big))).toBe('too-large');
    const justOver = kv('10.244.1.0-24', `{"PublicIP":"192.0.2.1","BackendType":"udp","X":"${'y'.repeat(MAX_LEASE_VALUE_BYTES)}"}`);
    expect(reason(classifyLeaseKv(justOver))).toBe('too-large');
  });
});

describe('acceptLeases', () => {
  const network = parseCidr('10.244.0.0/16');
  const l = (key: string, createRevision: number): LeaseEntry => {
    const subnet = parseLeaseKeyName(key)!;
    const lease: Lease = { subnet, key, attrs: { PublicIP: '192.0.2.9', BackendType: 'udp' }, revision: createRevision, createRevision };
    return { lease };
  };

  it('refuses the newer of two overlapping leases, whatever order they come in', () => {
    const entries = [l('10.244.50.0-24', 10), l('10.244.50.128-25', 20), l('10.244.0.0-16', 30), l('10.244.51.0-24', 40), l('10.9.0.0-24', 5)];
    for (const order of [entries, [...entries].reverse()]) {
      const { accepted, invalid } = acceptLeases({ network }, order);
      expect(accepted.map((a) => a.key)).toEqual(['10.244.50.0-24', '10.244.51.0-24']);
      expect(Object.fromEntries(invalid.map((i) => [i.key, i.reason]))).toEqual({
        '10.244.50.128-25': 'overlap',
        '10.244.0.0-16': 'overlap',
        '10.9.0.0-24': 'outside-network',
      });
    }
  });

  it('an older small lease inside a newer big one refuses the big one', () => {
    const { accepted, invalid } = acceptLeases({ network }, [l('10.244.0.0-16', 30), l('10.244.7.128-25', 2)]);
    expect(accepted.map((a) => a.key)).toEqual(['10.244.7.128-25']);
    expect(invalid[0]!.detail).toContain('10.244.7.128-25');
  });

  it('a key and its dual-stack twin for one subnet: the older wins, then the smaller key', () => {
    expect(acceptLeases({ network }, [l('10.244.8.0-24&fd00::-64', 1), l('10.244.8.0-24', 2)]).accepted.map((a) => a.key)).toEqual([
      '10.244.8.0-24&fd00::-64',
    ]);
    expect(acceptLeases({ network }, [l('10.244.8.0-24&fd00::-64', 2), l('10.244.8.0-24', 2)]).accepted.map((a) => a.key)).toEqual([
      '10.244.8.0-24',
    ]);
  });
});
