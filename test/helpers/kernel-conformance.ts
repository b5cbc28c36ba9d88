import { expect, it } from 'vitest';
import { parseCidr } from '../../src/core/ip.js';
import type { Kernel } from '../../src/kernel/kernel.js';

/**
 * Cases that the real kernel (lab project, in a throwaway netns) and
 * FakeKernel (unit project) must both pass: the kernel is the judge, the
 * fake has to agree. `setup` returns a fresh namespace holding an up link
 * `eth0` with 192.0.2.1/24 and nothing else of weft's; `done` tidies up.
 */
export function kernelConformance(setup: () => Promise<Kernel>, done: () => Promise<void> = async () => {}): void {
  const net = (c: string) => parseCidr(c);
  const vx = { vni: 42, port: 8472, local: '192.0.2.1', dev: 'eth0', learning: false, gbp: false, udpCsum: true };

  it('routes: on-link gateway ok, off-link refused, onlink flag ok, missing device refused', async () => {
    const k = await setup();
    try {
      const failed = await k.routes.apply([
        { op: 'replace', route: { dst: net('10.244.2.0/24'), gateway: '192.0.2.2', dev: 'eth0', proto: '247' } },
        { op: 'replace', route: { dst: net('10.244.3.0/24'), gateway: '10.9.9.9', dev: 'eth0' } },
        { op: 'replace', route: { dst: net('10.244.4.0/24'), gateway: '10.244.4.0', dev: 'eth0', onlink: true } },
        { op: 'replace', route: { dst: net('10.244.5.0/24'), gateway: '192.0.2.5', dev: 'nosuch0' } },
      ]);
      expect(failed.map((f) => f.op.route.dst.ip)).toEqual([net('10.244.3.0/24').ip, net('10.244.5.0/24').ip]);
      expect(failed[0]!.message).toMatch(/invalid gateway/);
      const routes = await k.routes.list();
      const r2 = routes.find((r) => r.dst.ip === net('10.244.2.0/24').ip);
      expect(r2).toMatchObject({ gateway: '192.0.2.2', dev: 'eth0', proto: '247' });
      expect(routes.find((r) => r.dst.ip === net('10.244.4.0/24').ip)).toMatchObject({ onlink: true });
      expect(routes.find((r) => r.dst.ip === net('192.0.2.0/24').ip)).toMatchObject({ proto: 'kernel', scope: 'link' });
      // Replace moves a route; delete removes it; deleting it again is refused.
      await k.routes.apply([{ op: 'replace', route: { dst: net('10.244.2.0/24'), gateway: '192.0.2.9', dev: 'eth0', proto: '247' } }]);
      expect((await k.routes.list()).filter((r) => r.dst.ip === net('10.244.2.0/24').ip).map((r) => r.gateway)).toEqual(['192.0.2.9']);
      expect(await k.routes.apply([{ op: 'delete', route: { dst: net('10.244.2.0/24'), gateway: '192.0.2.9', dev: 'eth0' } }])).toEqual([]);
      // Deleting what is already gone counts as done.
      expect(await k.routes.apply([{ op: 'delete', route: { dst: net('10.244.2.0/24'), dev: 'eth0' } }])).toEqual([]);
      expect((await k.routes.list()).some((r) => r.dst.ip === net('10.244.2.0/24').ip)).toBe(false);
    } finally {
      await done();
    }
  });

  it('links: vxlan attributes, mtu/mac/up changes, down link flushes its routes, delete', async () => {
    const k = await setup();
    try {
      const l = await k.links.addVxlan({ name: 'wk.42', ...vx, mtu: 1450, mac: '02:aa:bb:cc:dd:01' });
      expect(l).toMatchObject({ name: 'wk.42', mtu: 1450, mac: '02:aa:bb:cc:dd:01', up: false, kind: 'vxlan' });
      expect(l.vxlan).toEqual(vx);
      await expect(k.links.addVxlan({ name: 'wk.43', ...vx })).rejects.toThrow();
      // A route through a down device is refused.
      expect(await k.routes.apply([{ op: 'replace', route: { dst: net('10.244.7.0/24'), gateway: '10.244.7.0', dev: 'wk.42', onlink: true } }])).toHaveLength(1);
      await k.links.set('wk.42', { up: true, mtu: 1400, mac: '02:aa:bb:cc:dd:02' });
      expect(await k.links.get('wk.42')).toMatchObject({ up: true, mtu: 1400, mac: '02:aa:bb:cc:dd:02' });
      expect(await k.routes.apply([{ op: 'replace', route: { dst: net('10.244.7.0/24'), gateway: '10.244.7.0', dev: 'wk.42', onlink: true } }])).toEqual([]);
      await k.links.set('wk.42', { up: false });
      expect((await k.routes.list()).filter((r) => r.dev === 'wk.42')).toEqual([]);
      const br = await k.links.addBridge('wkbr0');
      expect(br.kind).toBe('bridge');
      expect((await k.links.getByIndex(br.index))?.name).toBe('wkbr0');
      await k.links.delete('wk.42');
      await k.links.delete('wk.42'); // missing is fine
      expect(await k.links.get('wk.42')).toBeUndefined();
    } finally {
      await done();
    }
  });

  it('addresses: add, list, connected route, delete', async () => {
    const k = await setup();
    try {
      const br = await k.links.addBridge('wkbr1');
      await k.links.set(br.name, { up: true });
      await k.addrs.add({ dev: 'wkbr1', ip: '10.244.1.1', prefixLen: 24 });
      await k.addrs.add({ dev: 'wkbr1', ip: '10.244.1.1', prefixLen: 24 }); // replace is idempotent
      expect(await k.addrs.list('wkbr1')).toMatchObject([{ dev: 'wkbr1', ip: '10.244.1.1', prefixLen: 24 }]);
      expect((await k.routes.list()).some((r) => r.dev === 'wkbr1' && r.proto === 'kernel')).toBe(true);
      await k.addrs.delete({ dev: 'wkbr1', ip: '10.244.1.1', prefixLen: 24 });
      expect(await k.addrs.list('wkbr1')).toEqual([]);
      await k.links.delete('wkbr1');
    } finally {
      await done();
    }
  });

  it('neighbours and fdb: refused on a missing device, replace moves, link delete removes', async () => {
    const k = await setup();
    try {
      const mac = '02:00:00:00:00:01';
      const nf = await k.neighs.apply([{ op: 'replace', neigh: { dev: 'wk.44', ip: '10.244.2.0', mac } }]);
      expect(nf[0]!.message).toMatch(/Cannot find device/);
      const ff = await k.fdb.apply([{ op: 'replace', entry: { dev: 'wk.44', mac, dst: '192.0.2.2' } }]);
      expect(ff[0]!.message).toMatch(/Cannot find device/);
      await k.links.addVxlan({ name: 'wk.44', ...vx, vni: 44 });
      await k.links.set('wk.44', { up: true });
      expect(await k.neighs.apply([{ op: 'replace', neigh: { dev: 'wk.44', ip: '10.244.2.0', mac } }])).toEqual([]);
      expect(await k.fdb.apply([{ op: 'replace', entry: { dev: 'wk.44', mac, dst: '192.0.2.2' } }])).toEqual([]);
      await k.fdb.apply([{ op: 'replace', entry: { dev: 'wk.44', mac, dst: '192.0.2.3' } }]);
      expect(await k.neighs.list('wk.44')).toMatchObject([{ ip: '10.244.2.0', mac, state: ['PERMANENT'] }]);
      expect((await k.fdb.list('wk.44')).filter((e) => e.mac === mac)).toMatchObject([{ dst: '192.0.2.3', state: 'permanent' }]);
      // `ip neigh` aborts a whole batch on a netlink error (here: deleting an
      // absent entry); the adapter retries around it, so the rest still lands
      // and the absent entry counts as deleted.
      const mixed = await k.neighs.apply([
        { op: 'delete', neigh: { dev: 'wk.44', ip: '10.244.9.0' } },
        { op: 'replace', neigh: { dev: 'wk.44', ip: '10.244.3.0', mac: '02:00:00:00:00:03' } },
        { op: 'replace', neigh: { dev: 'wk.44', ip: '10.244.5.0', mac: '02:00:00:00:00:05' } },
      ]);
      expect(mixed).toEqual([]);
      expect((await k.neighs.list('wk.44')).map((n) => n.ip).sort()).toEqual(['10.244.2.0', '10.244.3.0', '10.244.5.0']);
      await k.links.delete('wk.44');
      expect(await k.links.get('wk.44')).toBeUndefined();
      await expect(k.neighs.list('wk.44')).rejects.toThrow();
    } finally {
      await done();
    }
  });

  it('link watcher reports a deleted link', async () => {
    const k = await setup();
    const ac = new AbortController();
    try {
      const seen: string[] = [];
      k.linkWatcher.watch((ev) => seen.push(`${ev.type} ${ev.name}`), ac.signal);
      // The real watcher is a child process; create links until it reports one (bounded).
      let n = 0;
      const { waitFor } = await import('../../src/core/async.js');
      await waitFor(
        async () => {
          const name = `wkw${n++}`;
          await k.links.addBridge(name);
          await k.links.delete(name);
          await new Promise((r) => setImmediate(r));
          return seen.some((s) => s.startsWith('deleted wkw'));
        },
        { timeoutMs: 5000, intervalMs: 100, what: 'a link deletion event' },
      );
      expect(seen.find((s) => s.startsWith('deleted'))).toMatch(/^deleted wkw\d+$/);
    } finally {
      ac.abort();
      await done();
    }
  });

  it('offloads: tx checksum on by default on a vxlan device, can be turned off', async () => {
    const k = await setup();
    try {
      await k.links.addVxlan({ name: 'wk.45', ...vx, vni: 45 });
      expect(await k.offloads.getTxChecksum('wk.45')).toBe(true);
      await k.offloads.setTxChecksum('wk.45', false);
      expect(await k.offloads.getTxChecksum('wk.45')).toBe(false);
      await expect(k.offloads.getTxChecksum('nosuch0')).rejects.toThrow();
      await k.links.delete('wk.45');
    } finally {
      await done();
    }
  });

  it('sysctl: read and write a per-namespace value', async () => {
    const k = await setup();
    try {
      await k.sysctl.set('net.ipv4.ip_forward', '1');
      expect(await k.sysctl.get('net.ipv4.ip_forward')).toBe('1');
      await k.sysctl.set('net.ipv4.ip_forward', '0');
      expect(await k.sysctl.get('net.ipv4.ip_forward')).toBe('0');
    } finally {
      await done();
    }
  });
}
