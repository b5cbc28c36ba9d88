import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isWeftError } from '../../../src/core/errors.js';
import { formatCidr, parseCidr } from '../../../src/core/ip.js';
import { createLogger } from '../../../src/core/log.js';
import { VxlanBackend, parseVxlanConfig } from '../../../src/backends/vxlan/index.js';
import { FakeKernel } from '../../../src/kernel/fake.js';
import type { BackendContext } from '../../../src/backends/backend.js';
import type { Lease } from '../../../src/store/types.js';
import type { NftClient } from '../../../src/netfilter/nft.js';
import { FakeNft } from '../../../src/netfilter/nft-fake.js';
import { fakeSetElements } from '../../helpers/vxlan-filter-cases.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const macOf = (n: number) => `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`;
const peer = (n: number, publicIp = `192.0.2.${n}`, mac = macOf(n), type = 'vxlan'): Lease => ({
  subnet: parseCidr(`10.244.${n}.0/24`),
  attrs: { PublicIP: publicIp, BackendType: type, BackendData: { VNI: 1, VtepMAC: mac } },
});
const own: Lease = peer(1);

function setup(
  backend: Record<string, unknown> = {},
  k = new FakeKernel(),
  stateDir?: string,
  kernelRelease = '6.1.0',
  extra: { takeoverLease?: BackendContext['takeoverLease']; nft?: NftClient; peerFilter?: boolean } = {},
) {
  if (!k.state.links.some((l) => l.name === 'eth0')) k.addHostLink('eth0', '192.0.2.1/24');
  const dir = stateDir ?? mkdtempSync(join(tmpdir(), 'weft-vx-'));
  if (!stateDir) dirs.push(dir);
  const lines: string[] = [];
  const ctx: BackendContext = {
    config: {
      network: parseCidr('10.244.0.0/16'),
      subnetLen: 24,
      subnetMin: parseCidr('10.244.1.0/24'),
      subnetMax: parseCidr('10.244.255.0/24'),
      backend: { type: 'vxlan', raw: { Type: 'vxlan', ...backend } },
      raw: {},
    },
    iface: { name: 'eth0', index: 1, mtu: 1500, ifaceAddr: '192.0.2.1', publicIp: '192.0.2.1' },
    log: createLogger({ level: 'debug', write: (l) => lines.push(l) }),
    stateDir: dir,
    ...(extra.takeoverLease ? { takeoverLease: extra.takeoverLease } : {}),
  };
  const be = new VxlanBackend(ctx, {
    kernel: k,
    kernelRelease,
    ...(extra.nft ? { nft: extra.nft } : {}),
    ...(extra.peerFilter !== undefined ? { peerFilter: extra.peerFilter } : {}),
  });
  return { k, be, dir, lines };
}

/** The kernel state on weft.1 and the main table, in flannel's `ip` notation. */
function dump(k: FakeKernel): string[] {
  const out: string[] = [];
  for (const r of k.state.routes.filter((x) => x.proto !== 'kernel')) {
    out.push(`route ${formatCidr(r.dst)} via ${r.gateway} dev ${r.dev}${r.onlink ? ' onlink' : ''}`);
  }
  for (const n of k.state.neighs) out.push(`neigh ${n.ip} dev ${n.dev} lladdr ${n.mac} PERMANENT`);
  for (const e of k.state.fdb) out.push(`fdb ${e.mac} dev ${e.dev} dst ${e.dst} self ${e.state}`);
  return out.sort();
}

const entries = (n: number, publicIp = `192.0.2.${n}`, mac = macOf(n)) => [
  `fdb ${mac} dev weft.1 dst ${publicIp} self permanent`,
  `neigh 10.244.${n}.0 dev weft.1 lladdr ${mac} PERMANENT`,
  `route 10.244.${n}.0/24 via 10.244.${n}.0 dev weft.1 onlink`,
];

async function started(backend: Record<string, unknown> = {}) {
  const s = setup(backend);
  const prep = await s.be.prepare();
  await s.be.start(own);
  return { ...s, prep };
}

describe('vxlan config', () => {
  it('applies flannel defaults and matches field names case-insensitively', () => {
    expect(parseVxlanConfig({ Type: 'vxlan' })).toEqual({
      vni: 1,
      port: 8472,
      mtu: 0,
      gbp: false,
      learning: false,
      directRouting: false,
      devicePrefix: 'weft',
      txChecksumOffload: 'auto',
    });
    expect(parseVxlanConfig({ vni: 7, port: 4789, directrouting: true })).toMatchObject({ vni: 7, port: 4789, directRouting: true });
  });

  it('refuses bad values with an error naming the field', () => {
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ VNI: -1 }, 'Backend.VNI'],
      [{ VNI: 1 << 24 }, 'Backend.VNI'],
      [{ VNI: '1' }, 'Backend.VNI'],
      [{ Port: 70000 }, 'Backend.Port'],
      [{ MTU: 100 }, 'Backend.MTU'],
      [{ DirectRouting: 'yes' }, 'Backend.DirectRouting'],
      [{ DevicePrefix: 'a-very-long-name' }, 'Backend.DevicePrefix'],
      [{ TxChecksumOffload: 'off' }, 'Backend.TxChecksumOffload'],
    ];
    for (const [raw, field] of bad) {
      try {
        parseVxlanConfig(raw);
        expect.unreachable(JSON.stringify(raw));
      } catch (err) {
        expect(isWeftError(err, 'ERR_CONFIG')).toBe(true);
        expect((err as { field: string }).field).toBe(field);
      }
    }
  });
});

describe('vxlan device and lease data', () => {
  it('creates weft.1 as flannel does and returns BackendData {VNI, VtepMAC}', async () => {
    const { k, prep, dir } = await started();
    const dev = k.state.links.find((l) => l.name === 'weft.1')!;
    expect(dev).toMatchObject({ mtu: 1450, up: true, kind: 'vxlan' });
    expect(dev.vxlan).toEqual({ vni: 1, port: 8472, local: '192.0.2.1', dev: 'eth0', learning: false, gbp: false, udpCsum: true });
    expect(prep.mtu).toBe(1450);
    expect(JSON.stringify(prep.backendData)).toBe(`{"VNI":1,"VtepMAC":"${dev.mac}"}`);
    expect(k.state.addrs.filter((a) => a.dev === 'weft.1')).toEqual([{ dev: 'weft.1', ip: '10.244.1.0', prefixLen: 32 }]);
    expect(JSON.parse(readFileSync(join(dir, 'vxlan-1.json'), 'utf8')).VtepMAC).toBe(dev.mac);
  });

  it('keeps the MAC across restarts and recreates the device when VNI settings change', async () => {
    const { k, dir, prep } = await started();
    const mac = (prep.backendData as { VtepMAC: string }).VtepMAC;
    const index = k.state.links.find((l) => l.name === 'weft.1')!.index;
    // Same settings: the device is kept.
    const again = setup({}, k, dir);
    expect(((await again.be.prepare()).backendData as { VtepMAC: string }).VtepMAC).toBe(mac);
    expect(k.state.links.find((l) => l.name === 'weft.1')!.index).toBe(index);
    // A new MTU or port: recreated, same MAC.
    const changed = setup({ MTU: 1400, Port: 4789 }, k, dir);
    expect(await changed.be.prepare()).toEqual({ mtu: 1350, backendData: { VNI: 1, VtepMAC: mac } });
    const dev = k.state.links.find((l) => l.name === 'weft.1')!;
    expect(dev.index).not.toBe(index);
    expect(dev).toMatchObject({ mtu: 1350, mac });
    expect(dev.vxlan!.port).toBe(4789);
  });
});

describe('vxlan tx checksum offload policy', () => {
  it('auto leaves it on for kernels >= 5.7, turns it off for older ones and keeps it off', async () => {
    const modern = setup();
    await modern.be.prepare();
    expect(modern.k.state.txCsumOff.size).toBe(0);
    const old = setup({}, new FakeKernel(), undefined, '4.18.0-348.el8.x86_64');
    await old.be.prepare();
    await old.be.start(own);
    expect([...old.k.state.txCsumOff]).toEqual(['weft.1']);
    // The device was recreated by hand: the next sync turns it off again.
    await old.k.links.delete('weft.1');
    await old.be.sync([]);
    expect([...old.k.state.txCsumOff]).toEqual(['weft.1']);
    const forced = setup({ TxChecksumOffload: false });
    await forced.be.prepare();
    expect([...forced.k.state.txCsumOff]).toEqual(['weft.1']);
  });
});

describe('vxlan peer programming against the fake kernel', () => {
  it('adds neighbour, fdb and onlink route per peer; removes them with the lease', async () => {
    const { k, be } = await started();
    expect(await be.sync([peer(2), peer(3)])).toEqual({ fixes: 6, peers: 2 });
    expect(dump(k)).toEqual([...entries(2), ...entries(3)].sort());
    expect(await be.sync([peer(2), peer(3)])).toEqual({ fixes: 0, peers: 2 });
    expect(await be.sync([peer(3)])).toEqual({ fixes: 3, peers: 1 });
    expect(dump(k)).toEqual(entries(3).sort());
  });

  it('follows a changed VtepMAC and a changed PublicIP', async () => {
    const { k, be } = await started();
    await be.sync([peer(2)]);
    await be.sync([peer(2, '192.0.2.2', macOf(0x22))]);
    expect(dump(k)).toEqual(entries(2, '192.0.2.2', macOf(0x22)).sort());
    await be.sync([peer(2, '192.0.2.12', macOf(0x22))]);
    expect(dump(k)).toEqual(entries(2, '192.0.2.12', macOf(0x22)).sort());
  });

  it('DirectRouting: on-link peers get a direct route, others the vxlan entries', async () => {
    const { k, be } = await started({ DirectRouting: true });
    expect(await be.sync([peer(2), peer(3, '198.51.100.3')])).toEqual({ fixes: 4, peers: 2 });
    expect(dump(k)).toEqual(['route 10.244.2.0/24 via 192.0.2.2 dev eth0', ...entries(3, '198.51.100.3')].sort());
  });

  it('rolls back a peer whose fdb step fails and programs it on the next sync', async () => {
    const { k, be, lines } = await started();
    k.inject('fdb', (op) => (op as { op: string; entry: { mac: string } }).op === 'replace' && (op as { entry: { mac: string } }).entry.mac === macOf(3));
    expect(await be.sync([peer(2), peer(3), peer(4)])).toEqual({ fixes: 6, peers: 2 });
    expect(dump(k)).toEqual([...entries(2), ...entries(4)].sort());
    expect(lines.some((l) => l.includes('peer programming failed') && l.includes('10.244.3.0/24') && l.includes('step=fdb'))).toBe(true);
    k.clearFaults();
    expect(await be.sync([peer(2), peer(3), peer(4)])).toEqual({ fixes: 3, peers: 3 });
    expect(dump(k)).toEqual([...entries(2), ...entries(3), ...entries(4)].sort());
  });

  it('rolls back neighbour and fdb when the route step fails, restoring a changed entry', async () => {
    const { k, be } = await started();
    await be.sync([peer(2)]);
    // Peer 2 moved to a new PublicIP and its route was lost; peer 5 is new.
    k.state.routes = k.state.routes.filter((r) => r.dev !== 'weft.1');
    k.inject('route', (op) => (op as { op: string }).op === 'replace');
    expect(await be.sync([peer(2, '192.0.2.12'), peer(5)])).toEqual({ fixes: 0, peers: 0 });
    // Peer 5 left nothing behind; peer 2's fdb entry points at its old address again.
    expect(dump(k)).toEqual(entries(2).filter((e) => !e.startsWith('route')).sort());
    k.clearFaults();
    await be.sync([peer(2, '192.0.2.12'), peer(5)]);
    expect(dump(k)).toEqual([...entries(2, '192.0.2.12'), ...entries(5)].sort());
  });

  it('on start removes entries no lease explains, also a previous host-gw route in the Network', async () => {
    const k = new FakeKernel();
    const first = setup({}, k);
    await first.be.prepare();
    await first.be.start(own);
    await first.be.sync([peer(2), peer(3)]);
    await k.routes.apply([{ op: 'replace', route: { dst: parseCidr('10.244.9.0/24'), gateway: '192.0.2.9', dev: 'eth0' } }]);
    await k.routes.apply([{ op: 'replace', route: { dst: parseCidr('10.98.0.0/16'), gateway: '192.0.2.9', dev: 'eth0' } }]);
    // weftd restarts; peer 3 went away meanwhile.
    const second = setup({}, k, first.dir);
    await second.be.prepare();
    await second.be.start(own);
    await second.be.sync([peer(2)]);
    expect(dump(k)).toEqual([...entries(2), 'route 10.98.0.0/16 via 192.0.2.9 dev eth0'].sort());
  });

  it('a deleted device triggers onNeedSync; the next sync recreates device, address and entries', async () => {
    const { k, be } = await started();
    const reasons: string[] = [];
    be.onNeedSync = (r) => reasons.push(r);
    await be.sync([peer(2)]);
    const mac = k.state.links.find((l) => l.name === 'weft.1')!.mac;
    await k.links.delete('weft.1');
    await Promise.resolve();
    await Promise.resolve();
    expect(reasons).toEqual(['device deleted']);
    expect(dump(k)).toEqual([]);
    const stats = await be.sync([peer(2)]);
    expect(stats.peers).toBe(1);
    expect(dump(k)).toEqual(entries(2).sort());
    expect(k.state.links.find((l) => l.name === 'weft.1')).toMatchObject({ mac, up: true });
    expect(k.state.addrs.some((a) => a.dev === 'weft.1' && a.ip === '10.244.1.0')).toBe(true);
    await be.stop();
  });

  it('programs 200 peers with one batch per step', async () => {
    const { k, be } = await started();
    const many: Lease[] = [];
    for (let i = 0; i < 200; i++) {
      many.push({
        subnet: parseCidr(`10.244.${Math.floor(i / 4) + 10}.${(i % 4) * 64}/26`),
        attrs: { PublicIP: `192.0.2.${(i % 200) + 2}`, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` } },
      });
    }
    const before = { ...k.writes };
    expect(await be.sync(many)).toEqual({ fixes: 600, peers: 200 });
    expect(k.writes.neigh - before.neigh).toBe(1);
    expect(k.writes.fdb - before.fdb).toBe(1);
    expect(k.writes.route - before.route).toBe(1);
  });

  it('ignores non-vxlan leases and leases without a VtepMAC, logging each once', async () => {
    const { k, be, lines } = await started();
    const noMac: Lease = { subnet: parseCidr('10.244.6.0/24'), attrs: { PublicIP: '192.0.2.6', BackendType: 'vxlan' } };
    const remotes = [peer(2), peer(4, '192.0.2.4', macOf(4), 'host-gw'), noMac];
    await be.sync(remotes);
    await be.sync(remotes);
    expect(dump(k)).toEqual(entries(2).sort());
    expect(lines.filter((l) => l.includes('ignoring lease'))).toHaveLength(2);
  });
});

describe('vxlan: taking over a lease keeps its VtepMAC', () => {
  /** A lease as flanneld writes it for this host (PublicIP 192.0.2.1). */
  const flannelLease = (mac: unknown): Lease => ({
    subnet: parseCidr('10.244.7.0/24'),
    attrs: { PublicIP: '192.0.2.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } },
  });

  it('creates the device with the lease\'s VtepMAC when no MAC is persisted, and persists it', async () => {
    const { k, be, dir, lines } = setup({}, new FakeKernel(), undefined, '6.1.0', { takeoverLease: async () => flannelLease('CA:B8:3A:F3:06:AE') });
    const prep = await be.prepare();
    expect(prep.backendData).toEqual({ VNI: 1, VtepMAC: 'ca:b8:3a:f3:06:ae' });
    expect(k.state.links.find((l) => l.name === 'weft.1')!.mac).toBe('ca:b8:3a:f3:06:ae');
    expect(JSON.parse(readFileSync(join(dir, 'vxlan-1.json'), 'utf8')).VtepMAC).toBe('ca:b8:3a:f3:06:ae');
    expect(lines.join('\n')).toContain('keeping the VtepMAC of the lease we take over');
  });

  it('a persisted MAC of our own still wins (the lease is not even read)', async () => {
    const first = setup();
    const mine = ((await first.be.prepare()).backendData as { VtepMAC: string }).VtepMAC;
    let asked = 0;
    const again = setup({}, new FakeKernel(), first.dir, '6.1.0', { takeoverLease: async () => (asked++, flannelLease('ca:b8:3a:f3:06:ae')) });
    expect(((await again.be.prepare()).backendData as { VtepMAC: string }).VtepMAC).toBe(mine);
    expect(again.k.state.links.find((l) => l.name === 'weft.1')!.mac).toBe(mine);
    expect(asked).toBe(0);
  });

  it('the lease\'s MAC beats the MAC of a leftover device without state', async () => {
    const k = new FakeKernel();
    k.addHostLink('eth0', '192.0.2.1/24');
    await k.links.addVxlan({ name: 'weft.1', vni: 1, port: 8472, learning: false, gbp: false, udpCsum: true, mac: '02:11:11:11:11:11', local: '192.0.2.1', dev: 'eth0', mtu: 1450 });
    const { be } = setup({}, k, undefined, '6.1.0', { takeoverLease: async () => flannelLease('ca:b8:3a:f3:06:ae') });
    await be.prepare();
    expect(k.state.links.find((l) => l.name === 'weft.1')!.mac).toBe('ca:b8:3a:f3:06:ae');
  });

  it.each([
    ['multicast', '01:00:5e:00:00:01'],
    ['broadcast', 'ff:ff:ff:ff:ff:ff'],
    ['all-zero', '00:00:00:00:00:00'],
    ['malformed', 'ca:b8:3a:f3:06'],
    ['junk text', 'ca:b8:3a:f3:06:ae; rm -rf /'],
    ['a number', 42],
  ])('ignores a %s VtepMAC with a log line and makes a fresh one', async (_what, bad) => {
    const { k, be, lines } = setup({}, new FakeKernel(), undefined, '6.1.0', { takeoverLease: async () => flannelLease(bad) });
    const mac = ((await be.prepare()).backendData as { VtepMAC: string }).VtepMAC;
    expect(mac).not.toBe(String(bad).toLowerCase());
    expect(mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    expect(parseInt(mac.slice(0, 2), 16) & 1).toBe(0);
    expect(k.state.links.find((l) => l.name === 'weft.1')!.mac).toBe(mac);
    expect(lines.join('\n')).toContain('ignored the VtepMAC of the lease we take over');
  });

  it('no lease to take over, or the store failing: a fresh MAC, logged', async () => {
    const none = setup({}, new FakeKernel(), undefined, '6.1.0', { takeoverLease: async () => undefined });
    expect(((await none.be.prepare()).backendData as { VtepMAC: string }).VtepMAC).toMatch(/^[0-9a-f:]{17}$/);
    const failing = setup({}, new FakeKernel(), undefined, '6.1.0', {
      takeoverLease: async () => {
        throw new Error('etcd unavailable');
      },
    });
    await failing.be.prepare();
    expect(failing.lines.join('\n')).toContain('could not read the lease to take over');
  });

  it('peers\' leases with a multicast VtepMAC are not programmed', async () => {
    const { k, be } = await started();
    await be.sync([peer(2), peer(3, '192.0.2.3', '01:00:5e:00:00:03')]);
    expect(dump(k)).toEqual(entries(2).sort());
  });
});

describe('vxlan peer filter in the backend', () => {
  const elements = (nft: FakeNft) => fakeSetElements(nft.dump());
  async function withNft(extra: { peerFilter?: boolean } = {}) {
    const nft = new FakeNft();
    const s = setup({}, new FakeKernel(), undefined, '6.1.0', { nft, ...extra });
    await s.be.prepare();
    await s.be.start(own);
    return { ...s, nft };
  }

  it('accepts VXLAN only from the programmed peers, following leases as they come and go', async () => {
    const { be, nft } = await withNft();
    await be.sync([peer(2), peer(3), peer(4, '192.0.2.4', macOf(4), 'host-gw')]);
    expect(await nft.listChain('ip', 'weft-vxlan', 'input')).toEqual(['udp dport 8472 ip saddr != @peers counter drop']);
    expect(elements(nft)).toEqual(['192.0.2.2', '192.0.2.3']);
    await be.sync([peer(3), peer(5)]);
    expect(elements(nft)).toEqual(['192.0.2.3', '192.0.2.5']);
    expect(be.metricsText()).toContain('weft_vxlan_peer_filter_peers 2');
  });

  it('uses the configured Port', async () => {
    const nft = new FakeNft();
    const { be } = setup({ Port: 4789 }, new FakeKernel(), undefined, '6.1.0', { nft });
    await be.prepare();
    await be.start(own);
    await be.sync([peer(2)]);
    expect(await nft.listChain('ip', 'weft-vxlan', 'input')).toEqual(['udp dport 4789 ip saddr != @peers counter drop']);
  });

  it('turned off: no filter, and a table left by an earlier run is removed', async () => {
    const { be, nft } = await withNft({ peerFilter: false });
    await nft.apply('add table ip weft-vxlan\nadd chain ip weft-vxlan input\n');
    await be.sync([peer(2)]);
    expect(await nft.listTable('ip', 'weft-vxlan')).toBeUndefined();
    expect(be.metricsText()).toBe('');
  });

  it('an nft failure is logged once and counted; the data path is still programmed', async () => {
    const { k, be, nft, lines } = await withNft();
    nft.failNext = true;
    await be.sync([peer(2)]);
    expect(dump(k)).toEqual(entries(2).sort());
    expect(be.metricsText()).toContain('weft_vxlan_peer_filter_errors_total 1');
    expect(lines.filter((l) => l.includes('vxlan peer filter update failed'))).toHaveLength(1);
    await be.sync([peer(2)]);
    expect(elements(nft)).toEqual(['192.0.2.2']);
    expect(lines.some((l) => l.includes('vxlan peer filter works again'))).toBe(true);
  });

  it('cleanup removes the table with the device', async () => {
    const { k, be, nft } = await withNft();
    await be.sync([peer(2)]);
    await be.cleanup();
    expect(await nft.listTable('ip', 'weft-vxlan')).toBeUndefined();
    expect(k.state.links.find((l) => l.name === 'weft.1')).toBeUndefined();
  });
});
