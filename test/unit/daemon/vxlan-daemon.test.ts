import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../src/core/async.js';
import { parseCidr } from '../../../src/core/ip.js';
import { silentLogger } from '../../../src/core/log.js';
import { runWeftd } from '../../../src/daemon/daemon.js';
import { DEFAULT_OPTIONS } from '../../../src/daemon/options.js';
import { FakeKernel } from '../../../src/kernel/fake.js';
import { FakeNft } from '../../../src/netfilter/nft-fake.js';
import { MemoryRegistry } from '../../../src/store/memory-registry.js';
import { fakeSetElements } from '../../helpers/vxlan-filter-cases.js';

/** weftd with the vxlan backend against fakes: takeover of a flanneld lease and the peer filter's wiring. */
describe('weftd vxlan wiring (fakes)', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  async function start(backend: string, opts: { vxlanPeerFilter?: boolean; before?: (r: MemoryRegistry, nft: FakeNft) => Promise<void> } = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'weftd-vx-unit-'));
    dirs.push(dir);
    const registry = new MemoryRegistry();
    await registry.putConfig(JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: backend } }));
    const kernel = new FakeKernel();
    kernel.addHostLink('eth0', '192.0.2.1/24');
    const nft = new FakeNft();
    await opts.before?.(registry, nft);
    const ac = new AbortController();
    const done = runWeftd(
      {
        ...DEFAULT_OPTIONS,
        iface: ['eth0'],
        subnetFile: join(dir, 'subnet.env'),
        stateDir: join(dir, 'state'),
        healthzPort: 0,
        reconcileIntervalMs: 60_000,
        ...(opts.vxlanPeerFilter !== undefined ? { vxlanPeerFilter: opts.vxlanPeerFilter } : {}),
      },
      { log: silentLogger, signal: ac.signal, registry, kernel, nft },
    );
    await waitFor(() => {
      try {
        return readFileSync(join(dir, 'subnet.env'), 'utf8');
      } catch {
        return undefined;
      }
    }, { what: 'subnet.env' });
    const stop = async () => {
      ac.abort();
      await done;
    };
    return { registry, kernel, nft, stop };
  }

  const leftover = async (_r: MemoryRegistry, nft: FakeNft) => {
    await nft.apply('add table ip weft-vxlan\nadd set ip weft-vxlan peers { type ipv4_addr; }\nadd chain ip weft-vxlan input\n');
  };

  it('takes over a flanneld lease with our PublicIP keeping its VtepMAC; the filter follows peers', async () => {
    const w = await start('vxlan', {
      before: async (r) => {
        await r.createLease(
          parseCidr('10.244.9.0/24'),
          { PublicIP: '192.0.2.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: 'ca:b8:3a:f3:06:ae' } },
          3600,
        );
      },
    });
    try {
      const own = await w.registry.getLease(parseCidr('10.244.9.0/24'));
      expect(own!.attrs.BackendData).toEqual({ VNI: 1, VtepMAC: 'ca:b8:3a:f3:06:ae' });
      expect(w.kernel.state.links.find((l) => l.name === 'weft.1')!.mac).toBe('ca:b8:3a:f3:06:ae');
      await w.registry.createLease(parseCidr('10.244.10.0/24'), { PublicIP: '192.0.2.2', BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '02:00:00:00:00:02' } }, 3600);
      await waitFor(() => JSON.stringify(fakeSetElements(w.nft.dump())) === '["192.0.2.2"]', { what: 'peer in the filter set' });
      expect(await w.nft.listChain('ip', 'weft-vxlan', 'input')).toEqual(['udp dport 8472 ip saddr != @peers counter drop']);
    } finally {
      await w.stop();
    }
  });

  it('a lease with a broadcast VtepMAC is not taken over as MAC (a fresh unicast one is made and published)', async () => {
    const w = await start('vxlan', {
      before: async (r) => {
        await r.createLease(parseCidr('10.244.9.0/24'), { PublicIP: '192.0.2.1', BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: 'ff:ff:ff:ff:ff:ff' } }, 3600);
      },
    });
    try {
      const mac = ((await w.registry.getLease(parseCidr('10.244.9.0/24')))!.attrs.BackendData as { VtepMAC: string }).VtepMAC;
      expect(mac).not.toBe('ff:ff:ff:ff:ff:ff');
      expect(w.kernel.state.links.find((l) => l.name === 'weft.1')!.mac).toBe(mac);
    } finally {
      await w.stop();
    }
  });

  it('a backend other than vxlan removes a peer filter table left by a vxlan run', async () => {
    const w = await start('host-gw', { before: leftover });
    try {
      expect(await w.nft.listTable('ip', 'weft-vxlan')).toBeUndefined();
    } finally {
      await w.stop();
    }
  });

  it('--vxlan-peer-filter=false: no table, and a leftover one is removed', async () => {
    const w = await start('vxlan', { vxlanPeerFilter: false, before: leftover });
    try {
      await waitFor(async () => (await w.nft.listTable('ip', 'weft-vxlan')) === undefined, { what: 'table removed' });
    } finally {
      await w.stop();
    }
  });
});
