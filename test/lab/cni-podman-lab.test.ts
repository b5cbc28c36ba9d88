import { afterAll, describe, expect, it } from 'vitest';
import { contains, parseCidr, parseIPv4 } from '../../src/core/ip.js';
import { labDown, labUp, readState } from '../../src/lab/index.js';
import { isRoot } from '../helpers/netns.js';
import { uniqueLabId } from '../helpers/lab-util.js';
import { CniWorkspace } from '../helpers/cni-env.js';
import { havePodman, PodmanHost } from '../helpers/cni-podman.js';

/**
 * The runtime test on the real lab: weftd leases a subnet per host
 * from etcd and programs the data path; podman on two lab hosts runs one
 * container each through weft (reading the subnet.env weftd wrote); they ping
 * each other across hosts; podman rm releases the addresses.
 */
describe.skipIf(!isRoot || !havePodman)('podman through weft on two lab hosts with weftd', () => {
  const id = uniqueLabId('cp');
  const wss = [new CniWorkspace(), new CniWorkspace()];
  const hosts: PodmanHost[] = [];

  afterAll(async () => {
    for (const h of hosts) await h.removeAll();
    await labDown(id);
    for (const ws of wss) ws.cleanup();
  });

  it('runs a container per host, they ping across hosts, podman rm frees the addresses', async () => {
    await labUp({ id, hosts: 2, podsPerHost: 0 });
    const st = readState(id)!;
    for (const [i, ws] of wss.entries()) {
      const host = st.hosts[i]!;
      await ws.build();
      const h = new PodmanHost(ws, host.netns, `wl${id}`, { bridge: `wb${id}`, subnetFile: host.subnetFile, dataDir: ws.dataDir });
      await h.setup();
      hosts.push(h);
    }
    const ips: string[] = [];
    for (const [i, h] of hosts.entries()) {
      const ip = await h.runContainer(`c${i + 1}`);
      expect(contains(parseCidr(st.hosts[i]!.subnet!), parseIPv4(ip))).toBe(true);
      ips.push(ip);
    }
    expect((await hosts[0]!.podman(['exec', 'c1', 'ping', '-c', '2', '-W', '3', ips[1]!])).stdout).toMatch(/2 packets received/);
    expect((await hosts[1]!.podman(['exec', 'c2', 'ping', '-c', '2', '-W', '3', ips[0]!])).stdout).toMatch(/2 packets received/);
    for (const [i, h] of hosts.entries()) {
      await h.podman(['rm', '-f', '-t', '0', `c${i + 1}`]);
      expect(h.reservations()).toEqual([]);
    }
  });
});
