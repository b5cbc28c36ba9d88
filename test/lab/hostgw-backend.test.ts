import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { HostGwBackend } from '../../src/backends/hostgw/index.js';
import { buildHosts, labContext, labLease, labLog, type LabHost } from '../helpers/kernel-lab.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';

describe.skipIf(!isRoot)('host-gw backend between two namespace hosts', () => {
  const sb = new NetnsSandbox();
  let hosts: LabHost[];
  let backends: HostGwBackend[];
  const leases = () => hosts.map((h) => labLease(h, 'host-gw'));
  const remotesOf = (i: number) => leases().filter((_, j) => j !== i);
  const routesOf = async (h: LabHost) => (await sb.exec(h.ns, 'ip', ['route', 'show', 'proto', '247'])).stdout.trim();
  const ping = (from: LabHost, to: LabHost) =>
    sb.exec(from.ns, 'ping', ['-c', '1', '-W', '2', '-I', from.podGw, to.podGw], true);

  beforeAll(async () => {
    hosts = await buildHosts(sb, 2);
    backends = hosts.map((h) => new HostGwBackend(labContext(h, { Type: 'host-gw' }, '/nonexistent', labLog)));
    for (const [i, be] of backends.entries()) {
      expect(await be.prepare()).toEqual({ mtu: 1500 });
      expect((await sb.exec(hosts[i]!.ns, 'sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim()).toBe('1');
      await be.start(leases()[i]!);
    }
  });
  afterAll(async () => {
    await sb.cleanup();
  });

  it('programs the peer route and pings between the hosts bridges work', async () => {
    // A stale route planted in the Network before start is removed by the first sync.
    await sb.exec(hosts[0]!.ns, 'ip', ['route', 'add', '10.244.77.0/24', 'via', '192.0.2.77', 'dev', 'eth0']);
    for (const [i, be] of backends.entries()) expect(await be.sync(remotesOf(i))).toMatchObject({ peers: 1 });
    expect(await routesOf(hosts[0]!)).toBe('10.244.2.0/24 via 192.0.2.2 dev eth0');
    expect(await routesOf(hosts[1]!)).toBe('10.244.1.0/24 via 192.0.2.1 dev eth0');
    expect((await sb.exec(hosts[0]!.ns, 'ip', ['route'])).stdout).not.toContain('10.244.77.0');
    expect((await ping(hosts[0]!, hosts[1]!)).code).toBe(0);
    expect((await ping(hosts[1]!, hosts[0]!)).code).toBe(0);
  });

  it('a deleted route is restored by the next sync', async () => {
    await sb.exec(hosts[0]!.ns, 'ip', ['route', 'del', '10.244.2.0/24']);
    expect((await ping(hosts[0]!, hosts[1]!)).code).not.toBe(0);
    expect(await backends[0]!.sync(remotesOf(0))).toEqual({ fixes: 1, peers: 1 });
    await waitFor(async () => (await ping(hosts[0]!, hosts[1]!)).code === 0, { timeoutMs: 5000, what: 'ping after restore' });
  });

  it('a lease that goes away takes its route; cleanup removes the rest', async () => {
    expect(await backends[0]!.sync([])).toEqual({ fixes: 1, peers: 0 });
    expect(await routesOf(hosts[0]!)).toBe('');
    await backends[1]!.cleanup();
    expect(await routesOf(hosts[1]!)).toBe('');
  });
});
