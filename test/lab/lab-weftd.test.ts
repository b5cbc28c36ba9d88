import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { labDown, labEtcd, labExec, labSignal, labStatus, labUp, startEtcd, stopEtcd, startWeftd, stopWeftd, verifyPing, topologyFromLab } from '../../src/lab/index.js';
import { weftdScript } from '../../src/lab/weftd.js';
import { isRoot } from '../helpers/netns.js';
import { netnsOf, pidAlive, uniqueLabId } from '../helpers/lab-util.js';

// Runs only once the daemon is built and starts (`npm run build`).
const weftdRuns = isRoot && spawnSync(process.execPath, [weftdScript(), '--help'], { timeout: 20_000 }).status === 0;

describe.skipIf(!weftdRuns)('lab with weftd (host-gw)', () => {
  const id = uniqueLabId('wd');

  beforeAll(async () => {
    await labUp({ id, hosts: 3, podsPerHost: 1, backend: 'host-gw', subnetLeaseTtl: 60 });
  });
  afterAll(async () => {
    await labDown(id);
  });

  it('gives three hosts three distinct leased subnets, recorded in etcd with their public IPs', async () => {
    const s = labStatus(id);
    const subnets = s.hosts.map((h) => h.subnet);
    expect(new Set(subnets).size).toBe(3);
    expect(subnets.every((n) => n && n.startsWith('10.244.'))).toBe(true);
    const leases = await labEtcd(id).list('/coreos.com/network/subnets/');
    const byIp = Object.fromEntries(leases.map((l) => [JSON.parse(l.value).PublicIP, l.key]));
    for (const h of s.hosts) expect(byIp[h.underlayIp]).toBe(`/coreos.com/network/subnets/${h.subnet!.replace('/', '-')}`);
  });

  it('programs host-gw routes to both peers in every host, and pods ping across hosts', async () => {
    const s = labStatus(id);
    for (const h of s.hosts) {
      await waitFor(
        async () => {
          const r = await labExec(id, h.name, ['ip', '-4', 'route', 'show']);
          return s.hosts.filter((o) => o !== h).every((o) => r.stdout.includes(`${o.subnet} via ${o.underlayIp} dev eth0`));
        },
        { timeoutMs: 15_000, what: `peer routes on ${h.name}` },
      );
    }
    const checks = await verifyPing(topologyFromLab(id), { count: 1 });
    expect(checks.filter((c) => !c.ok)).toEqual([]);
  });

  it('a weftd killed with SIGKILL and restarted keeps its subnet', async () => {
    const before = labStatus(id).hosts[1]!;
    expect(await stopWeftd(id, 'h2', 'SIGKILL')).toBe(true);
    expect(pidAlive(before.weftd!.pid)).toBe(false);
    const { pid } = await startWeftd(id, 'h2');
    const after = labStatus(id).hosts[1]!;
    expect(after.weftd).toEqual({ pid, running: true });
    expect(after.subnet).toBe(before.subnet);
  });

  it('keeps pods talking while etcd is paused, and weftd stays ready', async () => {
    expect(labSignal(id, 'etcd', 'SIGSTOP')).toBe(true);
    try {
      const checks = await verifyPing(topologyFromLab(id), { count: 1 });
      expect(checks.filter((c) => !c.ok)).toEqual([]);
    } finally {
      expect(labSignal(id, 'etcd', 'SIGCONT')).toBe(true);
    }
    await waitFor(async () => (await labEtcd(id).healthy()) === true, { timeoutMs: 10_000, what: 'etcd healthy again' });
  });

  it('stops and restarts etcd on the same data: the leases are still there', async () => {
    const before = (await labEtcd(id).list('/coreos.com/network/subnets/')).map((l) => l.key).sort();
    expect(await stopEtcd(id)).toBe(true);
    expect(labStatus(id).etcdRunning).toBe(false);
    await startEtcd(id);
    expect(labStatus(id).etcdRunning).toBe(true);
    expect((await labEtcd(id).list('/coreos.com/network/subnets/')).map((l) => l.key).sort()).toEqual(before);
  });

  it('down stops every weftd and etcd', async () => {
    const pids = labStatus(id).hosts.map((h) => h.weftd!.pid);
    await labDown(id);
    await waitFor(() => pids.every((p) => !pidAlive(p)), { timeoutMs: 5000, what: 'weftd gone' });
    expect(await netnsOf(id)).toEqual([]);
  });
});

describe.skipIf(!weftdRuns)('lab up when weftd cannot start', () => {
  const id = uniqueLabId('wf');
  afterAll(async () => {
    await labDown(id);
  });

  it('fails with the weftd log tail in the message and leaves nothing behind', async () => {
    const err = await labUp({ id, hosts: 1, podsPerHost: 0, weftdArgs: ['--no-such-flag'], timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_LAB_UP' });
    expect((err as Error).message).toContain('weftd on h1 wrote no subnet.env');
    expect((err as Error).message).toContain('no-such-flag');
    expect(await netnsOf(id)).toEqual([]);
  });
});

