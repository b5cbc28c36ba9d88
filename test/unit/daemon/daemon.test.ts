import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../src/core/async.js';
import { formatCidr, parseCidr } from '../../../src/core/ip.js';
import { silentLogger } from '../../../src/core/log.js';
import { runWeftd } from '../../../src/daemon/daemon.js';
import { DEFAULT_OPTIONS } from '../../../src/daemon/options.js';
import { FakeKernel } from '../../../src/kernel/fake.js';
import { MemoryRegistry } from '../../../src/store/memory-registry.js';
import { FakeIptables } from '../../../src/netfilter/fake-iptables.js';

/** weftd wired end to end against fakes: in-memory etcd, fake kernel, fake iptables. */
describe('weftd daemon (fakes)', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  async function start(config: object) {
    const dir = mkdtempSync(join(tmpdir(), 'weftd-unit-'));
    dirs.push(dir);
    const registry = new MemoryRegistry();
    await registry.putConfig(JSON.stringify(config));
    const kernel = new FakeKernel();
    kernel.addHostLink('eth0', '192.0.2.1/24');
    const iptables = new FakeIptables();
    const ac = new AbortController();
    const done = runWeftd(
      { ...DEFAULT_OPTIONS, iface: ['eth0'], subnetFile: join(dir, 'subnet.env'), stateDir: join(dir, 'state'), healthzPort: 0, ipMasq: true, reconcileIntervalMs: 60_000 },
      { log: silentLogger, signal: ac.signal, registry, kernel, iptables },
    );
    const subnetEnv = await waitFor(() => {
      try {
        return readFileSync(join(dir, 'subnet.env'), 'utf8');
      } catch {
        return undefined;
      }
    }, { what: 'subnet.env' });
    return { registry, kernel, iptables, ac, done, subnetEnv };
  }

  it('leases a subnet, writes subnet.env, routes to peers added later and stops on abort', async () => {
    const w = await start({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });
    expect(w.subnetEnv).toMatch(/^FLANNEL_NETWORK=10\.244\.0\.0\/16\nFLANNEL_SUBNET=10\.244\.\d+\.1\/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n$/);
    const { leases } = await w.registry.listLeases();
    expect(leases).toHaveLength(1);
    expect(leases[0]!.attrs).toMatchObject({ PublicIP: '192.0.2.1', BackendType: 'host-gw' });

    const peer = parseCidr(leases[0]!.subnet.ip === parseCidr('10.244.77.0/24').ip ? '10.244.78.0/24' : '10.244.77.0/24');
    await w.registry.createLease(peer, { PublicIP: '192.0.2.2', BackendType: 'host-gw' }, 3600);
    await waitFor(async () => (await w.kernel.routes.list()).some((r) => formatCidr(r.dst) === formatCidr(peer) && r.gateway === '192.0.2.2'), {
      what: 'route to the peer',
    });
    expect(await w.iptables.save('nat')).toContain('WEFT-POSTRTG');

    await w.registry.deleteLease(peer);
    await waitFor(async () => !(await w.kernel.routes.list()).some((r) => formatCidr(r.dst) === formatCidr(peer)), { what: 'route removed' });

    w.ac.abort();
    await expect(w.done).resolves.toBeUndefined();
    // The data path stays after a stop: the masquerade chain is still there.
    expect(await w.iptables.save('nat')).toContain('WEFT-POSTRTG');
  });

  it('refuses an invalid config with ERR_CONFIG naming the field', async () => {
    const registry = new MemoryRegistry();
    await registry.putConfig('{"Network":"10.244.0.0/16","SubnetLen":31}');
    const ac = new AbortController();
    const err = await runWeftd({ ...DEFAULT_OPTIONS, healthzPort: 0 }, { log: silentLogger, signal: ac.signal, registry, kernel: new FakeKernel() }).catch((e) => e);
    expect(err.code).toBe('ERR_CONFIG');
    expect(err.message).toContain('SubnetLen');
  });
});
