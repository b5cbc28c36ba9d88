import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/exec/run.js';
import { startCniServer, type CniServer } from '../../src/cni/server.js';
import { isRoot, NetnsSandbox } from '../helpers/netns.js';
import { CniWorkspace } from '../helpers/cni-env.js';
import { havePodman, PodmanHost } from '../helpers/cni-podman.js';

/**
 * A real runtime: Debian's podman on two "hosts" (netns) joined by an
 * underlay veth with host-gw routes between their pod subnets (what weftd's
 * host-gw backend programs). Host 1 answers through the weft server socket,
 * host 2 through the standalone plugin. test/lab/cni-podman-lab.test.ts does
 * the same on the real lab with weftd.
 */
describe.skipIf(!isRoot || !havePodman)('podman runs containers through weft on two hosts', () => {
  const sb = new NetnsSandbox();
  const net = `wp${sb.tag}`;
  const subnets = ['10.244.41.0/24', '10.244.42.0/24'];
  const wss = [new CniWorkspace(), new CniWorkspace()];
  const hosts: PodmanHost[] = [];
  let server: CniServer | undefined;

  beforeAll(async () => {
    for (const [i, ws] of wss.entries()) {
      const ns = await sb.create(`h${i + 1}`);
      await ws.build();
      ws.writeSubnetEnv(subnets[i]!, { ipMasq: true });
      const sock = i === 0 ? { WEFT_CNI_SOCKET: join(ws.dir, 'cni.sock') } : {};
      const h = new PodmanHost(ws, ns, net, { bridge: `wb${sb.tag}`, subnetFile: ws.subnetFile, dataDir: ws.dataDir }, sock);
      await h.setup();
      hosts.push(h);
    }
    await sb.link({ ns: hosts[0]!.hostNetns, ifname: 'under0', cidr: '192.0.2.1/24' }, { ns: hosts[1]!.hostNetns, ifname: 'under0', cidr: '192.0.2.2/24' });
    // host-gw: each host routes the other's pod subnet via the other's underlay address.
    await run('ip', ['-n', hosts[0]!.hostNetns, 'route', 'add', subnets[1]!, 'via', '192.0.2.2']);
    await run('ip', ['-n', hosts[1]!.hostNetns, 'route', 'add', subnets[0]!, 'via', '192.0.2.1']);
    server = await startCniServer({ socketPath: join(wss[0]!.dir, 'cni.sock'), hostNetns: hosts[0]!.hostNetns });
  });

  afterAll(async () => {
    for (const h of hosts) await h.removeAll();
    await server?.close();
    await sb.cleanup();
    for (const ws of wss) ws.cleanup();
  });

  it('containers get addresses from their host subnet, ping across hosts, and podman rm releases them', async () => {
    const ips: string[] = [];
    for (const [i, h] of hosts.entries()) {
      const ip = await h.runContainer(`c${i + 1}`);
      expect(ip.startsWith(subnets[i]!.slice(0, subnets[i]!.lastIndexOf('.')))).toBe(true);
      expect(h.reservations()).toEqual([ip]);
      ips.push(ip);
    }
    // podman calls VERSION then ADD: host 1's calls went through the server.
    expect(server!.served).toBeGreaterThanOrEqual(2);
    expect((await hosts[0]!.podman(['exec', 'c1', 'ping', '-c', '2', '-W', '3', ips[1]!])).stdout).toMatch(/2 packets received/);
    expect((await hosts[1]!.podman(['exec', 'c2', 'ping', '-c', '2', '-W', '3', ips[0]!])).stdout).toMatch(/2 packets received/);

    for (const [i, h] of hosts.entries()) {
      await h.podman(['rm', '-f', '-t', '0', `c${i + 1}`]);
      expect(h.reservations()).toEqual([]);
      expect((await run('ip', ['-n', h.hostNetns, '-o', 'link', 'show', 'master', `wb${sb.tag}`])).stdout.trim()).toBe('');
    }
  });
});
