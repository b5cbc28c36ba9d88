import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/core/log.js';
import { formatCidr, parseCidr } from '../../../src/core/ip.js';
import { HostGwBackend } from '../../../src/backends/hostgw/index.js';
import { FakeKernel } from '../../../src/kernel/fake.js';
import { WEFT_ROUTE_PROTO } from '../../../src/kernel/routes.js';
import type { BackendContext } from '../../../src/backends/backend.js';
import type { Lease } from '../../../src/store/types.js';

const lease = (subnet: string, publicIp: string, type = 'host-gw'): Lease => ({
  subnet: parseCidr(subnet),
  attrs: { PublicIP: publicIp, BackendType: type },
});

function setup() {
  const k = new FakeKernel();
  k.addHostLink('eth0', '192.0.2.1/24');
  const lines: string[] = [];
  const ctx: BackendContext = {
    config: {
      network: parseCidr('10.244.0.0/16'),
      subnetLen: 24,
      subnetMin: parseCidr('10.244.1.0/24'),
      subnetMax: parseCidr('10.244.255.0/24'),
      backend: { type: 'host-gw', raw: { Type: 'host-gw' } },
      raw: {},
    },
    iface: { name: 'eth0', index: 1, mtu: 1500, ifaceAddr: '192.0.2.1', publicIp: '192.0.2.1' },
    log: createLogger({ level: 'debug', write: (l) => lines.push(l) }),
    stateDir: '/nonexistent',
  };
  const be = new HostGwBackend(ctx, { kernel: k });
  const routes = () =>
    k.state.routes
      .filter((r) => r.proto !== 'kernel')
      .map((r) => `${formatCidr(r.dst)} via ${r.gateway} dev ${r.dev}${r.proto === WEFT_ROUTE_PROTO ? '' : ' proto ' + r.proto}`)
      .sort();
  return { k, be, lines, routes };
}

const own = lease('10.244.1.0/24', '192.0.2.1');

describe('host-gw backend against the fake routing table', () => {
  it('prepare returns the interface MTU and no BackendData, and turns on forwarding', async () => {
    const { k, be } = setup();
    expect(await be.prepare()).toEqual({ mtu: 1500 });
    expect(k.state.sysctl.get('net.ipv4.ip_forward')).toBe('1');
  });

  it('adds a route per remote lease, removes it when the lease goes, and is idempotent', async () => {
    const { k, be, routes } = setup();
    await be.start(own);
    const remotes = [lease('10.244.2.0/24', '192.0.2.2'), lease('10.244.3.0/24', '192.0.2.3')];
    expect(await be.sync(remotes)).toEqual({ fixes: 2, peers: 2 });
    expect(routes()).toEqual(['10.244.2.0/24 via 192.0.2.2 dev eth0', '10.244.3.0/24 via 192.0.2.3 dev eth0']);
    const writes = k.writes.route;
    expect(await be.sync(remotes)).toEqual({ fixes: 0, peers: 2 });
    expect(k.writes.route).toBe(writes); // nothing to do = no kernel write
    expect(await be.sync([remotes[1]!])).toEqual({ fixes: 1, peers: 1 });
    expect(routes()).toEqual(['10.244.3.0/24 via 192.0.2.3 dev eth0']);
  });

  it('follows a PublicIP change and restores a deleted route', async () => {
    const { k, be, routes } = setup();
    await be.start(own);
    await be.sync([lease('10.244.2.0/24', '192.0.2.2')]);
    expect(await be.sync([lease('10.244.2.0/24', '192.0.2.22')])).toMatchObject({ fixes: 1 });
    expect(routes()).toEqual(['10.244.2.0/24 via 192.0.2.22 dev eth0']);
    k.state.routes = k.state.routes.filter((r) => r.proto === 'kernel');
    expect(await be.sync([lease('10.244.2.0/24', '192.0.2.22')])).toMatchObject({ fixes: 1 });
    expect(routes()).toEqual(['10.244.2.0/24 via 192.0.2.22 dev eth0']);
  });

  it('on start removes stale routes inside the Network, later only its own; never routes outside', async () => {
    const { k, be, routes } = setup();
    await k.links.addBridge('cni0');
    await k.links.set('cni0', { up: true });
    await k.addrs.add({ dev: 'cni0', ip: '10.244.1.1', prefixLen: 24 });
    await k.routes.apply([
      { op: 'replace', route: { dst: parseCidr('10.244.9.0/24'), gateway: '192.0.2.9', dev: 'eth0' } }, // stale, foreign
      { op: 'replace', route: { dst: parseCidr('10.99.0.0/16'), gateway: '192.0.2.9', dev: 'eth0' } }, // outside
      { op: 'replace', route: { dst: parseCidr('10.244.0.0/16'), gateway: '192.0.2.254', dev: 'eth0' } }, // the whole Network
    ]);
    await be.start(own);
    await be.sync([lease('10.244.2.0/24', '192.0.2.2')]);
    expect(routes()).toEqual([
      '10.244.0.0/16 via 192.0.2.254 dev eth0 proto boot',
      '10.244.2.0/24 via 192.0.2.2 dev eth0',
      '10.99.0.0/16 via 192.0.2.9 dev eth0 proto boot',
    ]);
    // The bridge's connected route in our own subnet is untouched.
    expect(k.state.routes.some((r) => r.dev === 'cni0' && r.proto === 'kernel')).toBe(true);
    // After the start-up sweep, a foreign route in the Network is left alone.
    await k.routes.apply([{ op: 'replace', route: { dst: parseCidr('10.244.8.0/24'), gateway: '192.0.2.8', dev: 'eth0' } }]);
    await be.sync([lease('10.244.2.0/24', '192.0.2.2')]);
    expect(routes()).toContain('10.244.8.0/24 via 192.0.2.8 dev eth0 proto boot');
  });

  it('ignores other backend types with one log line per lease', async () => {
    const { be, lines, routes } = setup();
    await be.start(own);
    const remotes = [lease('10.244.2.0/24', '192.0.2.2'), lease('10.244.4.0/24', '192.0.2.4', 'vxlan')];
    await be.sync(remotes);
    await be.sync(remotes);
    await be.sync(remotes);
    expect(routes()).toEqual(['10.244.2.0/24 via 192.0.2.2 dev eth0']);
    expect(lines.filter((l) => l.includes('ignoring lease'))).toHaveLength(1);
    expect(lines.find((l) => l.includes('ignoring lease'))).toContain('10.244.4.0/24');
  });

  it('reports a peer the kernel refuses (not on-link) and programs the rest', async () => {
    const { be, lines, routes } = setup();
    await be.start(own);
    const stats = await be.sync([lease('10.244.2.0/24', '192.0.2.2'), lease('10.244.5.0/24', '198.51.100.5')]);
    expect(stats).toEqual({ fixes: 1, peers: 1 });
    expect(routes()).toEqual(['10.244.2.0/24 via 192.0.2.2 dev eth0']);
    expect(lines.some((l) => l.includes('route refused') && l.includes('10.244.5.0/24'))).toBe(true);
  });

  it('cleanup removes only weft routes', async () => {
    const { k, be, routes } = setup();
    await be.start(own);
    await be.sync([lease('10.244.2.0/24', '192.0.2.2')]);
    await k.routes.apply([{ op: 'replace', route: { dst: parseCidr('10.244.8.0/24'), gateway: '192.0.2.8', dev: 'eth0' } }]);
    await be.cleanup();
    expect(routes()).toEqual(['10.244.8.0/24 via 192.0.2.8 dev eth0 proto boot']);
  });
});
