import { describe, expect, it } from 'vitest';
import { formatCidr } from '../../../src/core/ip.js';
import { parseBatchErrors } from '../../../src/kernel/batch.js';
import { parseIpLinks, vxlanAddArgs } from '../../../src/kernel/links.js';
import { parseMonitorLine } from '../../../src/kernel/monitor.js';
import { parseIpRoutes, routeLine } from '../../../src/kernel/routes.js';

describe('iproute2 output parsing', () => {
  it('maps batch failures to their lines', () => {
    const stderr = 'Error: Nexthop has invalid gateway.\nCommand failed -:2\nCannot find device "x"\nCommand failed -:5\n';
    expect(parseBatchErrors(stderr)).toEqual([
      { index: 1, message: 'Error: Nexthop has invalid gateway.' },
      { index: 4, message: 'Cannot find device "x"' },
    ]);
  });

  it('parses ip -json route (default, host routes, onlink, proto)', () => {
    const routes = parseIpRoutes([
      { dst: 'default', gateway: '192.0.2.254', dev: 'eth0', flags: [] },
      { dst: '10.244.3.0/24', gateway: '10.244.3.0', dev: 'weft.1', protocol: '247', flags: ['onlink'] },
      { dst: '10.1.1.1', dev: 'eth0', scope: 'link', metric: 5, flags: [] },
      { dst: '10.9.0.0/16', type: 'blackhole', flags: [] },
    ]);
    expect(routes.map((r) => formatCidr(r.dst))).toEqual(['0.0.0.0/0', '10.244.3.0/24', '10.1.1.1/32']);
    expect(routes[1]).toMatchObject({ gateway: '10.244.3.0', onlink: true, proto: '247' });
    expect(routes[2]!.metric).toBe(5);
    expect(routeLine('replace', routes[1]!)).toBe('route replace 10.244.3.0/24 via 10.244.3.0 dev weft.1 proto 247 onlink');
    expect(routeLine('delete', routes[2]!)).toBe('route del 10.1.1.1/32 dev eth0 metric 5');
  });

  it('parses vxlan link details and builds ip link add arguments', () => {
    const [l] = parseIpLinks([
      {
        ifindex: 3,
        ifname: 'weft.1',
        mtu: 1450,
        address: 'B6:35:E5:40:C8:CE',
        flags: ['BROADCAST', 'UP'],
        linkinfo: { info_kind: 'vxlan', info_data: { id: 1, local: '192.0.2.1', link: 'eth0', port: 8472, learning: false, udp_csum: true } },
      },
    ]);
    expect(l).toMatchObject({ name: 'weft.1', mac: 'b6:35:e5:40:c8:ce', up: true, kind: 'vxlan' });
    expect(l!.vxlan).toEqual({ vni: 1, port: 8472, local: '192.0.2.1', dev: 'eth0', learning: false, gbp: false, udpCsum: true });
    expect(vxlanAddArgs({ name: 'weft.1', ...l!.vxlan!, mtu: 1450 }).join(' ')).toBe(
      'link add weft.1 mtu 1450 type vxlan id 1 dstport 8472 local 192.0.2.1 dev eth0 nolearning udpcsum',
    );
  });

  it('parses ip monitor link lines', () => {
    expect(parseMonitorLine('Deleted 5: weft.1: <BROADCAST,MULTICAST> mtu 1450 qdisc noop state DOWN group default')).toEqual({
      type: 'deleted',
      index: 5,
      name: 'weft.1',
      up: false,
      mtu: 1450,
    });
    expect(parseMonitorLine('7: veth1@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue')).toMatchObject({
      type: 'changed',
      name: 'veth1',
      up: true,
    });
    expect(parseMonitorLine('    link/ether aa:bb:cc:dd:ee:ff')).toBeUndefined();
  });
});
