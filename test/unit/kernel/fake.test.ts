import { describe, expect, it } from 'vitest';
import { parseCidr } from '../../../src/core/ip.js';
import { FakeKernel } from '../../../src/kernel/fake.js';

const net = (c: string) => parseCidr(c);

describe('FakeKernel rejects what the kernel rejects', () => {
  it('refuses a gateway that is not on-link unless onlink is set', async () => {
    const k = new FakeKernel();
    k.addHostLink('eth0', '192.0.2.1/24');
    const failed = await k.routes.apply([
      { op: 'replace', route: { dst: net('10.244.2.0/24'), gateway: '192.0.2.2', dev: 'eth0' } },
      { op: 'replace', route: { dst: net('10.244.3.0/24'), gateway: '10.9.9.9', dev: 'eth0' } },
      { op: 'replace', route: { dst: net('10.244.4.0/24'), gateway: '10.9.9.9', dev: 'eth0', onlink: true } },
      { op: 'replace', route: { dst: net('10.244.5.0/24'), gateway: '192.0.2.5', dev: 'nosuch' } },
    ]);
    expect(failed.map((f) => f.message)).toEqual(['Error: Nexthop has invalid gateway.', 'Cannot find device "nosuch"']);
    const dsts = (await k.routes.list()).map((r) => r.dst.ip >>> 8 & 255);
    expect(dsts).toContain(2);
    expect(dsts).toContain(4);
    expect(dsts).not.toContain(3);
  });

  it('refuses routes through a down device and flushes routes when a link goes down', async () => {
    const k = new FakeKernel();
    k.addHostLink('eth0', '192.0.2.1/24');
    await k.links.addBridge('br0');
    expect(await k.routes.apply([{ op: 'replace', route: { dst: net('10.244.9.0/24'), dev: 'br0' } }])).toHaveLength(1);
    await k.routes.apply([{ op: 'replace', route: { dst: net('10.244.2.0/24'), gateway: '192.0.2.2', dev: 'eth0' } }]);
    await k.links.set('eth0', { up: false });
    expect(await k.routes.list()).toEqual([]);
  });

  it('refuses neighbours and fdb entries on a missing device; link delete removes them', async () => {
    const k = new FakeKernel();
    k.addHostLink('eth0', '192.0.2.1/24');
    const f1 = await k.neighs.apply([{ op: 'replace', neigh: { dev: 'vx', ip: '10.244.2.0', mac: '02:00:00:00:00:01' } }]);
    expect(f1[0]!.message).toMatch(/Cannot find device/);
    await k.links.addVxlan({ name: 'vx', vni: 1, port: 8472, dev: 'eth0', local: '192.0.2.1', learning: false, gbp: false, udpCsum: true });
    await k.links.set('vx', { up: true });
    expect(await k.neighs.apply([{ op: 'replace', neigh: { dev: 'vx', ip: '10.244.2.0', mac: '02:00:00:00:00:01' } }])).toEqual([]);
    expect(await k.fdb.apply([{ op: 'replace', entry: { dev: 'vx', mac: '02:00:00:00:00:01', dst: '192.0.2.2' } }])).toEqual([]);
    // Replacing the fdb entry of a MAC moves it to the new VTEP, as the kernel does.
    await k.fdb.apply([{ op: 'replace', entry: { dev: 'vx', mac: '02:00:00:00:00:01', dst: '192.0.2.3' } }]);
    expect((await k.fdb.list('vx')).map((e) => e.dst)).toEqual(['192.0.2.3']);
    const events: string[] = [];
    const ac = new AbortController();
    k.linkWatcher.watch((ev) => events.push(`${ev.type} ${ev.name}`), ac.signal);
    await k.links.delete('vx');
    await Promise.resolve();
    expect(events).toEqual(['deleted vx']);
    expect(k.state.neighs).toEqual([]);
    expect(k.state.fdb).toEqual([]);
    ac.abort();
  });

  it('refuses a second vxlan device with the same VNI and port', async () => {
    const k = new FakeKernel();
    const spec = { vni: 1, port: 8472, learning: false, gbp: false, udpCsum: true };
    await k.links.addVxlan({ name: 'a', ...spec });
    await expect(k.links.addVxlan({ name: 'b', ...spec })).rejects.toThrow(/VNI already exists/);
  });
});
