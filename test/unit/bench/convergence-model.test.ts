import { describe, expect, it } from 'vitest';
import {
  PresenceTracker,
  expectedEntries,
  leaseKey,
  leaseValue,
  makePeers,
  parseMonitorLine,
  subnetsOf,
  // @ts-expect-error plain ESM module without types (bench/ is outside tsconfig)
} from '../../../bench/convergence/model.mjs';

const at = (t: string) => `[2026-11-22T04:17:${t}]`;

describe('convergence model', () => {
  it('lists subnets from the second one, without the excluded', () => {
    const s = subnetsOf('10.244.0.0/17', 26, ['10.244.0.128/26']);
    expect(s.length).toBe(511 - 1);
    expect(s[0]).toBe('10.244.0.64/26');
    expect(s[1]).toBe('10.244.0.192/26');
    expect(s).not.toContain('10.244.0.128/26');
    expect(s[s.length - 1]).toBe('10.244.127.192/26');
    expect(() => subnetsOf('10.244.0.0/17', 16)).toThrow();
  });

  it('writes leases in flannel schema', () => {
    expect(leaseKey('/coreos.com/network', '10.244.1.64/26')).toBe('/coreos.com/network/subnets/10.244.1.64-26');
    const [p] = makePeers(['10.244.1.64/26']);
    expect(JSON.parse(leaseValue('vxlan', p.publicIp, p.mac))).toEqual({
      PublicIP: '192.0.2.10',
      PublicIPv6: null,
      BackendType: 'vxlan',
      BackendData: { VNI: 1, VtepMAC: '0e:77:66:00:00:01' },
    });
    expect(JSON.parse(leaseValue('host-gw', '192.0.2.9', 'x')).BackendData).toBeNull();
    const many = makePeers(subnetsOf('10.244.0.0/17', 26).slice(0, 500));
    expect(new Set(many.map((x: { mac: string }) => x.mac)).size).toBe(500);
    expect(many.every((x: { publicIp: string }) => x.publicIp !== '192.0.2.1' && x.publicIp !== '192.0.2.254')).toBe(true);
  });

  it('expects a route, or neighbour + fdb + route for vxlan', () => {
    const p = { cidr: '10.244.1.64/26', mac: '0e:77:66:00:00:01', publicIp: '192.0.2.10' };
    expect(expectedEntries('host-gw', p)).toEqual(['route 10.244.1.64/26']);
    expect(expectedEntries('vxlan', p)).toEqual(['neigh 10.244.1.64', 'fdb 0e:77:66:00:00:01', 'route 10.244.1.64/26']);
  });

  it('parses ip -ts monitor lines (as printed by iproute2 here)', () => {
    const r = parseMonitorLine(`${at('26.506943')} 10.244.5.0/26 via 192.0.2.50 dev eth0 proto 247 `);
    expect(r).toMatchObject({ deleted: false, key: 'route 10.244.5.0/26' });
    expect(r.at % 1000).toBeCloseTo(506.943, 3);
    expect(parseMonitorLine(`${at('26.5')} 10.244.6.0 dev weft.1 lladdr 0E:77:66:00:00:06 PERMANENT `)).toMatchObject({ key: 'neigh 10.244.6.0', deleted: false });
    expect(parseMonitorLine(`${at('26.5')} 192.0.2.60 dev weft.1 lladdr 0e:77:66:00:00:06 NOARP PERMANENT `)).toMatchObject({ key: 'fdb 0e:77:66:00:00:06', deleted: false });
    expect(parseMonitorLine(`${at('26.5')} Deleted 192.0.2.60 dev weft.1 lladdr 0e:77:66:00:00:06 NOARP PERMANENT `)).toMatchObject({ key: 'fdb 0e:77:66:00:00:06', deleted: true });
    expect(parseMonitorLine(`${at('26.5')} 10.244.6.0 dev weft.1 FAILED `)).toMatchObject({ key: 'neigh 10.244.6.0', deleted: true });
    expect(parseMonitorLine(`${at('26.5')} Deleted 10.244.6.0 dev weft.1 FAILED `)).toMatchObject({ key: 'neigh 10.244.6.0', deleted: true });
    expect(parseMonitorLine(`${at('26.5')} 10.244.254.1 dev lo scope link `)).toMatchObject({ key: 'route 10.244.254.1/32' });
    expect(parseMonitorLine(`${at('27.5')} local fe80::1 dev v0 table local proto kernel metric 0 pref medium`)).toBeUndefined();
    expect(parseMonitorLine('garbage')).toBeUndefined();
  });

  it('tracks when entries first appeared and when the last one went', () => {
    const t = new PresenceTracker();
    const keys = ['neigh 10.244.6.0', 'fdb m', 'route 10.244.6.0/26'];
    t.feed({ at: 10, deleted: false, key: keys[0] });
    t.feed({ at: 12, deleted: false, key: keys[1] });
    expect(t.doneAt(keys)).toBeUndefined();
    t.feed({ at: 15, deleted: false, key: keys[2] });
    expect(t.doneAt(keys)).toBe(15);
    // A later replace of a present entry keeps the time it first appeared.
    t.feed({ at: 40, deleted: false, key: keys[0] });
    expect(t.doneAt(keys)).toBe(15);
    expect(t.goneAt(keys)).toBeUndefined();
    for (const [i, k] of keys.entries()) t.feed({ at: 50 + i, deleted: true, key: k });
    expect(t.goneAt(keys)).toBe(52);
    expect(t.doneAt(keys)).toBeUndefined();
  });
});
