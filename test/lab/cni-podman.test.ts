import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/exec/run.js';
import { startCniServer, type CniServer } from '../../src/cni/server.js';
import { isRoot, NetnsSandbox } from '../helpers/netns.js';
import { CniWorkspace } from '../helpers/cni-env.js';

const havePodman = existsSync('/usr/bin/podman') && existsSync('/usr/sbin/runc') && existsSync('/usr/bin/busybox');

/**
 * A real runtime: Debian's podman (CNI backend, runc) on two "hosts" (netns)
 * joined by an underlay veth with host-gw routes between their pod subnets
 * (what weftd's host-gw backend programs). Host 1 answers through the weft
 * server socket, host 2 through the standalone plugin. Podman runs in the
 * root mount namespace with only its network namespace switched, so its
 * /run/netns files stay visible to later podman calls.
 */
describe.skipIf(!isRoot || !havePodman)('podman runs containers through weft on two hosts', () => {
  const sb = new NetnsSandbox();
  const net = `wp${sb.tag}`;
  const hosts = [
    { name: 'h1', subnet: '10.244.41.0/24', underlay: '192.0.2.1', ws: new CniWorkspace(), ns: '' },
    { name: 'h2', subnet: '10.244.42.0/24', underlay: '192.0.2.2', ws: new CniWorkspace(), ns: '' },
  ];
  let server: CniServer | undefined;

  const podman = (h: (typeof hosts)[number], args: string[], allowFail = false) =>
    run('nsenter', [`--net=/var/run/netns/${h.ns}`, 'podman', '--root', join(h.ws.dir, 'root'), '--runroot', join(h.ws.dir, 'runroot'), '--tmpdir', join(h.ws.dir, 'tmp'), ...args], {
      allowFail,
      timeoutMs: 120_000,
      env: { ...process.env, CONTAINERS_CONF: join(h.ws.dir, 'containers.conf'), WEFT_CNI_SOCKET: join(h.ws.dir, h.name === 'h1' ? 'cni.sock' : 'absent.sock') },
    });
  const reservations = (h: (typeof hosts)[number]) => {
    const d = join(h.ws.dataDir, net);
    return existsSync(d) ? readdirSync(d).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
  };

  beforeAll(async () => {
    for (const h of hosts) {
      h.ns = await sb.create(h.name);
      await h.ws.build();
      h.ws.writeSubnetEnv(h.subnet, { ipMasq: true });
      mkdirSync(join(h.ws.dir, 'net.d'));
      writeFileSync(
        join(h.ws.dir, 'net.d', `10-${net}.conflist`),
        JSON.stringify({ cniVersion: '1.0.0', name: net, plugins: [{ type: 'weft', bridge: `wb${sb.tag}`, subnetFile: h.ws.subnetFile, dataDir: h.ws.dataDir }] }),
      );
      writeFileSync(
        join(h.ws.dir, 'containers.conf'),
        [
          '[containers]',
          'default_ulimits = ["nofile=20000:20000","nproc=32768:32768"]',
          '[engine]',
          'cgroup_manager = "cgroupfs"',
          'events_logger = "file"',
          `events_logfile_path = "${join(h.ws.dir, 'events.log')}"`,
          'runtime = "runc"',
          '[network]',
          'network_backend = "cni"',
          `cni_plugin_dirs = ["${h.ws.binDir}"]`,
          `network_config_dir = "${join(h.ws.dir, 'net.d')}"`,
          '',
        ].join('\n'),
      );
      // Image: a busybox-static rootfs imported from a tarball (no registry needed).
      const rootfs = join(h.ws.dir, 'rootfs');
      mkdirSync(join(rootfs, 'bin'), { recursive: true });
      copyFileSync('/usr/bin/busybox', join(rootfs, 'bin/busybox'));
      for (const c of ['sh', 'ping', 'ip', 'sleep']) symlinkSync('busybox', join(rootfs, 'bin', c));
      await run('tar', ['-C', rootfs, '-cf', join(h.ws.dir, 'rootfs.tar'), '.']);
      await podman(h, ['import', join(h.ws.dir, 'rootfs.tar'), `localhost/weft-busybox-${sb.tag}`]);
    }
    await sb.link({ ns: hosts[0]!.ns, ifname: 'under0', cidr: '192.0.2.1/24' }, { ns: hosts[1]!.ns, ifname: 'under0', cidr: '192.0.2.2/24' });
    // host-gw: each host routes the other's pod subnet via the other's underlay address.
    await run('ip', ['-n', hosts[0]!.ns, 'route', 'add', hosts[1]!.subnet, 'via', '192.0.2.2']);
    await run('ip', ['-n', hosts[1]!.ns, 'route', 'add', hosts[0]!.subnet, 'via', '192.0.2.1']);
    server = await startCniServer({ socketPath: join(hosts[0]!.ws.dir, 'cni.sock'), hostNetns: hosts[0]!.ns });
  });

  afterAll(async () => {
    for (const h of hosts) if (h.ns) await podman(h, ['rm', '-a', '-f', '-t', '0'], true);
    await server?.close();
    await sb.cleanup();
    for (const h of hosts) h.ws.cleanup();
  });

  it('containers get addresses from their host subnet, ping across hosts, and podman rm releases them', async () => {
    const ips: string[] = [];
    for (const h of hosts) {
      const r = await podman(h, ['run', '-d', '--name', `c-${h.name}`, '--network', net, '--cap-add', 'NET_RAW', `localhost/weft-busybox-${sb.tag}`, 'sleep', '600']);
      expect(r.code).toBe(0);
      const info = JSON.parse((await podman(h, ['inspect', `c-${h.name}`])).stdout)[0];
      const ip: string = info.NetworkSettings.Networks[net].IPAddress;
      expect(ip.startsWith(h.subnet.slice(0, h.subnet.lastIndexOf('.')))).toBe(true);
      expect(reservations(h)).toEqual([ip]);
      ips.push(ip);
    }
    // podman calls VERSION then ADD: host 1's calls went through the server.
    expect(server!.served).toBeGreaterThanOrEqual(2);
    const p1 = await podman(hosts[0]!, ['exec', 'c-h1', 'ping', '-c', '2', '-W', '3', ips[1]!]);
    expect(p1.stdout).toMatch(/2 packets received/);
    const p2 = await podman(hosts[1]!, ['exec', 'c-h2', 'ping', '-c', '2', '-W', '3', ips[0]!]);
    expect(p2.stdout).toMatch(/2 packets received/);

    for (const h of hosts) {
      await podman(h, ['rm', '-f', '-t', '0', `c-${h.name}`]);
      expect(reservations(h)).toEqual([]);
      const ports = (await run('ip', ['-n', h.ns, '-o', 'link', 'show', 'master', `wb${sb.tag}`])).stdout.trim();
      expect(ports).toBe('');
    }
  });
});
