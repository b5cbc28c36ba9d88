import { describe, expect, it } from 'vitest';
import { isWeftError } from '../../../src/core/errors.js';
import { parseCidr } from '../../../src/core/ip.js';
import { chooseInterface, type IfaceSnapshot } from '../../../src/kernel/iface.js';
import type { Link } from '../../../src/kernel/links.js';

const link = (index: number, name: string, mtu = 1500): Link => ({ index, name, mtu, mac: '02:00:00:00:00:0' + index, up: true });
const snap: IfaceSnapshot = {
  links: [link(1, 'lo', 65536), link(2, 'eth0'), link(3, 'eth1', 9000)],
  addrs: [
    { dev: 'lo', ip: '127.0.0.1', prefixLen: 8 },
    { dev: 'eth0', ip: '10.0.2.15', prefixLen: 24 },
    { dev: 'eth1', ip: '192.0.2.7', prefixLen: 24 },
    { dev: 'eth1', ip: '192.0.2.8', prefixLen: 24 },
  ],
  routes: [{ dst: parseCidr('0.0.0.0/0'), gateway: '10.0.2.2', dev: 'eth0' }],
};

describe('chooseInterface (flannel order)', () => {
  it('uses the default route interface when nothing is given', () => {
    expect(chooseInterface({}, snap)).toEqual({ name: 'eth0', index: 2, mtu: 1500, ifaceAddr: '10.0.2.15', publicIp: '10.0.2.15' });
  });

  it('--iface by name or IP, first match wins; an IP selects that address', () => {
    expect(chooseInterface({ ifaces: ['nosuch', 'eth1'] }, snap)).toMatchObject({ name: 'eth1', ifaceAddr: '192.0.2.7', mtu: 9000 });
    expect(chooseInterface({ ifaces: ['192.0.2.8'] }, snap)).toMatchObject({ name: 'eth1', ifaceAddr: '192.0.2.8' });
  });

  it('--iface-regex matches IPs first, then names', () => {
    expect(chooseInterface({ ifaceRegex: ['^192\\.0\\.2\\.'] }, snap)).toMatchObject({ name: 'eth1', ifaceAddr: '192.0.2.7' });
    expect(chooseInterface({ ifaceRegex: ['^eth1$'] }, snap)).toMatchObject({ name: 'eth1' });
  });

  it('--public-ip overrides only the public address', () => {
    expect(chooseInterface({ ifaces: ['eth1'], publicIp: '203.0.113.9' }, snap)).toMatchObject({
      ifaceAddr: '192.0.2.7',
      publicIp: '203.0.113.9',
    });
  });

  it('names what was tried when nothing matches', () => {
    const tries: Array<[object, RegExp]> = [
      [{ ifaces: ['eth9', '10.9.9.9'] }, /--iface eth9, 10.9.9.9/],
      [{ ifaceRegex: ['^wlan'] }, /--iface-regex \^wlan/],
    ];
    for (const [opts, re] of tries) {
      try {
        chooseInterface(opts, snap);
        expect.unreachable();
      } catch (err) {
        expect(isWeftError(err, 'ERR_INTERFACE_NOT_FOUND')).toBe(true);
        expect((err as Error).message).toMatch(re);
      }
    }
    expect(() => chooseInterface({}, { ...snap, routes: [] })).toThrow(/no default route/);
  });
});
