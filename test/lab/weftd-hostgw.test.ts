import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import {
  labDown,
  labEtcd,
  labExec,
  labStatus,
  labUp,
  labTarget,
  startEtcd,
  startWeftd,
  stopEtcd,
  stopWeftd,
  type LabStatus,
} from '../../src/lab/index.js';
import { isRoot } from '../helpers/netns.js';
import { continuousPing, pings, podRoutesOf, uniqueLabId } from '../helpers/lab.js';

const TTL = 20;
const id = uniqueLabId('hg');
const leaseKey = (subnet: string) => `/coreos.com/network/subnets/${subnet.replace('/', '-')}`;

async function metricsOf(host: string): Promise<string> {
  const r = await labExec(id, host, ['curl', '-sS', '--max-time', '3', 'http://127.0.0.1:9808/metrics']);
  return r.stdout;
}

function metricValue(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : NaN;
}

describe.skipIf(!isRoot)('weftd host-gw on a 3-host lab (real etcd, real kernel)', () => {
  let status: LabStatus;
  const subnetOf = (host: string) => status.hosts.find((h) => h.name === host)!.subnet!;
  const podIp = (host: string) => status.hosts.find((h) => h.name === host)!.pods[0]!.ip!;

  beforeAll(async () => {
    status = await labUp({ id, hosts: 3, podsPerHost: 1, backend: 'host-gw', subnetLeaseTtl: TTL });
  });
  afterAll(async () => {
    await labDown(id);
    // Nothing of the lab is left behind.
    const left = (await run('ip', ['netns', 'list'])).stdout;
    expect(left).not.toContain(`${id}-`);
  });

  it('gives 3 hosts 3 distinct subnets and each host exactly its two peers\' routes', async () => {
    const subnets = status.hosts.map((h) => h.subnet);
    expect(new Set(subnets).size).toBe(3);
    for (const h of status.hosts) {
      const routes = await podRoutesOf(id, h.name);
      const peers = status.hosts.filter((p) => p.name !== h.name);
      expect(routes.map((r) => r.dst).sort()).toEqual(peers.map((p) => p.subnet).sort());
      for (const p of peers) {
        expect(routes.find((r) => r.dst === p.subnet)).toMatchObject({ gateway: p.underlayIp, dev: 'eth0' });
      }
    }
  });

  it('lets a pod on host 1 ping pods on hosts 2 and 3', async () => {
    expect(await pings(id, 'h1-p1', podIp('h2'), 2)).toBe(true);
    expect(await pings(id, 'h1-p1', podIp('h3'), 2)).toBe(true);
  });

  it('writes lease values in flanneld\'s JSON shape', async () => {
    const raw = await labEtcd(id).get(leaseKey(subnetOf('h1')));
    expect(JSON.parse(raw!)).toEqual({ PublicIP: '192.0.2.1', PublicIPv6: null, BackendType: 'host-gw' });
  });

  it('keeps its subnet across SIGKILL + restart while a continuous ping loses nothing', async () => {
    const before = subnetOf('h2');
    const ping = continuousPing(id, 'h1-p1', podIp('h2'), 60, 0.1);
    await stopWeftd(id, 'h2', 'SIGKILL');
    await startWeftd(id, 'h2');
    const res = await ping.done;
    expect(res.transmitted).toBe(60);
    expect(res.received, res.output).toBe(60);
    expect(labStatus(id).hosts.find((h) => h.name === 'h2')!.subnet).toBe(before);
  });

  it('brings the same subnet back within 5 s when its lease key is deleted', async () => {
    const etcd = labEtcd(id);
    const key = leaseKey(subnetOf('h3'));
    expect(await etcd.del(key)).toBe(1);
    const value = await waitFor(() => etcd.get(key), { timeoutMs: 5000, intervalMs: 100, what: `${key} re-created` });
    expect(JSON.parse(value).PublicIP).toBe('192.0.2.3');
  });

  it('removes a stale route planted inside the Network on start', async () => {
    const h1 = labTarget(id, 'h1');
    await stopWeftd(id, 'h1');
    await run('ip', ['-n', h1, 'route', 'add', '10.244.250.0/24', 'via', '192.0.2.77', 'dev', 'eth0']);
    await startWeftd(id, 'h1');
    const routes = await podRoutesOf(id, 'h1');
    expect(routes.map((r) => r.dst)).not.toContain('10.244.250.0/24');
    expect(routes).toHaveLength(2);
  });

  it('removes a vxlan device left by an earlier vxlan run on start', async () => {
    const h1 = labTarget(id, 'h1');
    await stopWeftd(id, 'h1');
    await run('ip', ['-n', h1, 'link', 'add', 'weft.9', 'type', 'vxlan', 'id', '9', 'dstport', '8472', 'dev', 'eth0']);
    await run('ip', ['-n', h1, 'link', 'set', 'weft.9', 'up']);
    await startWeftd(id, 'h1');
    const links = (await run('ip', ['-n', h1, '-o', 'link', 'show'])).stdout;
    expect(links).not.toContain('weft.9');
    expect(await podRoutesOf(id, 'h1')).toHaveLength(2);
  });

  it('restores a route deleted by hand at the next reconcile', async () => {
    const h1 = labTarget(id, 'h1');
    await run('ip', ['-n', h1, 'route', 'del', subnetOf('h2')]);
    await waitFor(async () => (await podRoutesOf(id, 'h1')).some((r) => r.dst === subnetOf('h2')), {
      timeoutMs: 15_000,
      what: 'route restored',
    });
  });

  it('survives etcd stopped for 30 s: no ping lost, leases renewed afterwards', async () => {
    const expiryBefore = metricValue(await metricsOf('h1'), 'weftd_lease_expiration_timestamp_seconds');
    const ping = continuousPing(id, 'h1-p1', podIp('h3'), 200, 0.2); // 40 s
    expect(await stopEtcd(id)).toBe(true);
    expect(await labEtcd(id).healthy().catch(() => false)).toBe(false);
    await new Promise((r) => setTimeout(r, 30_000)); // the outage itself, not synchronisation
    await startEtcd(id);
    const res = await ping.done;
    expect(res.received, res.output).toBe(res.transmitted);
    // Renewal happens a third of the TTL before expiry: wait for the expiry to move on.
    await waitFor(
      async () => metricValue(await metricsOf('h1'), 'weftd_lease_expiration_timestamp_seconds') > expiryBefore + 5,
      { timeoutMs: TTL * 1000 + 10_000, intervalMs: 500, what: 'lease renewed after the outage' },
    );
    for (const h of ['h1', 'h2', 'h3']) {
      expect(await labEtcd(id).get(leaseKey(subnetOf(h)))).toBeDefined();
    }
  });

  it('drops a host stopped for good from its peers once its TTL expires', async () => {
    const gone = subnetOf('h3');
    await stopWeftd(id, 'h3', 'SIGKILL');
    await waitFor(async () => !(await podRoutesOf(id, 'h1')).some((r) => r.dst === gone), {
      timeoutMs: (TTL + 15) * 1000,
      intervalMs: 500,
      what: `route to ${gone} removed from h1`,
    });
    expect((await podRoutesOf(id, 'h2')).some((r) => r.dst === gone)).toBe(false);
    expect(await labEtcd(id).get(leaseKey(gone))).toBeUndefined();
  });
});
