import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { createCniHandler, type CniHandler } from '../../src/cni/handler.js';
import { SUPPORTED_VERSIONS } from '../../src/cni/spec.js';
import { hostVethName } from '../../src/cni/plan.js';
import { isRoot, NetnsSandbox } from '../helpers/netns.js';
import { CniWorkspace } from '../helpers/cni-env.js';

// Kernel tests: a "host" netns holds the bridge; each container is its own
// netns. The handler runs in this process with hostNetns set; error paths go
// through the real executable (shim -> standalone Node plugin).
describe.skipIf(!isRoot)('weft CNI plugin in network namespaces', () => {
  const sb = new NetnsSandbox();
  const ws = new CniWorkspace();
  const bridge = `wb${sb.tag}`;
  let host: string;
  let handler: CniHandler;

  beforeAll(async () => {
    host = await sb.create('host');
    ws.writeSubnetEnv('10.244.21.0/24', { ipMasq: true });
    handler = createCniHandler({ hostNetns: host });
    await ws.build();
  });

  afterAll(async () => {
    await sb.cleanup();
    ws.cleanup();
  });

  const conf = (extra: Record<string, unknown> = {}) => JSON.stringify(ws.conf({ bridge, ...extra }));
  const cniEnv = (command: string, id: string, netns?: string, ifname = 'eth0') => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: id,
    CNI_NETNS: netns,
    CNI_IFNAME: ifname,
    CNI_PATH: '/opt/cni/bin',
  });
  const reservations = () => (existsSync(join(ws.dataDir, 'weftlab')) ? readdirSync(join(ws.dataDir, 'weftlab')).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : []);
  const hostLinks = async () => (await run('ip', ['-n', host, '-o', 'link', 'show'])).stdout;

  it.each(SUPPORTED_VERSIONS)('ADD, CHECK, DEL, DEL again with cniVersion %s', async (v) => {
    const id = `ver${v.replace(/\./g, '')}`;
    const ns = await sb.create(`c${v.replace(/\./g, '')}`);
    const path = `/var/run/netns/${ns}`;
    const add = await handler({ env: cniEnv('ADD', id, path), stdin: conf({ cniVersion: v }) });
    expect(add.exitCode, add.stdout).toBe(0);
    const result = JSON.parse(add.stdout);
    expect(result.cniVersion).toBe(v);
    const addr: string = result.ips[0].address;
    expect(addr).toMatch(/^10\.244\.21\.\d+\/24$/);

    // The kernel agrees with the result: address, routes, MTU, bridge port, and packets flow to the gateway.
    const a = JSON.parse((await run('ip', ['-n', ns, '-j', 'addr', 'show', 'dev', 'eth0'])).stdout)[0];
    expect(a.mtu).toBe(1450);
    expect(a.address).toBe(result.interfaces[2].mac);
    expect(a.addr_info.some((x: { local: string; prefixlen: number }) => `${x.local}/${x.prefixlen}` === addr)).toBe(true);
    const routes = (await run('ip', ['-n', ns, 'route'])).stdout;
    expect(routes).toContain('default via 10.244.21.1 dev eth0');
    expect(routes).toContain('10.244.0.0/16 via 10.244.21.1 dev eth0');
    const port = (await run('ip', ['-n', host, '-d', 'link', 'show', result.interfaces[1].name])).stdout;
    expect(port).toContain(`master ${bridge}`);
    expect(port).toContain('hairpin on');
    await run('ip', ['netns', 'exec', ns, 'ping', '-c1', '-W2', '10.244.21.1']);
    expect((await run('ip', ['netns', 'exec', host, 'sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim()).toBe('1');

    if (v !== '0.3.0' && v !== '0.3.1') {
      const check = await handler({ env: cniEnv('CHECK', id, path), stdin: conf({ cniVersion: v, prevResult: result }) });
      expect(check.exitCode, check.stdout).toBe(0);
    }
    const del = await handler({ env: cniEnv('DEL', id, path), stdin: conf({ cniVersion: v, prevResult: result }) });
    expect(del.exitCode, del.stdout).toBe(0);
    expect(reservations()).not.toContain(addr.split('/')[0]);
    await waitFor(async () => !(await hostLinks()).includes(result.interfaces[1].name), { timeoutMs: 5000, what: 'host veth gone' });
    const again = await handler({ env: cniEnv('DEL', id, path), stdin: conf({ cniVersion: v }) });
    expect(again.exitCode, again.stdout).toBe(0);
  });

  it('two containers on the bridge reach each other; DEL without netns frees the address', async () => {
    const n1 = await sb.create('p1');
    const n2 = await sb.create('p2');
    const r1 = JSON.parse((await handler({ env: cniEnv('ADD', 'pair1', `/var/run/netns/${n1}`), stdin: conf() })).stdout);
    const r2 = JSON.parse((await handler({ env: cniEnv('ADD', 'pair2', `/var/run/netns/${n2}`), stdin: conf() })).stdout);
    const ip2 = r2.ips[0].address.split('/')[0];
    await run('ip', ['netns', 'exec', n1, 'ping', '-c1', '-W2', ip2]);
    // The runtime deleted the netns before DEL: DEL must still succeed and free the address.
    await run('ip', ['netns', 'del', n2]);
    const del = await handler({ env: cniEnv('DEL', 'pair2', undefined), stdin: conf() });
    expect(del.exitCode, del.stdout).toBe(0);
    expect(reservations()).not.toContain(ip2);
    const del1 = await handler({ env: cniEnv('DEL', 'pair1', `/var/run/netns/${n1}`), stdin: JSON.stringify({ ...ws.conf({ bridge }), prevResult: {} }) });
    expect(del1.exitCode, del1.stdout).toBe(0);
    expect(reservations()).not.toContain(r1.ips[0].address.split('/')[0]);
  });

  it("honours a host-local ipam section: the address from rangeStart-rangeEnd, its routes in the container; a gateway that is not the bridge's is refused", async () => {
    const ns = await sb.create('ipam');
    const path = `/var/run/netns/${ns}`;
    const ipam = { type: 'host-local', ranges: [[{ subnet: '10.244.21.0/24', rangeStart: '10.244.21.240', rangeEnd: '10.244.21.245' }]], routes: [{ dst: '192.0.2.0/24' }] };
    const add = await handler({ env: cniEnv('ADD', 'ipam1', path), stdin: conf({ ipam }) });
    expect(add.exitCode, add.stdout).toBe(0);
    const result = JSON.parse(add.stdout);
    expect(result.ips[0].address).toMatch(/^10\.244\.21\.24[0-5]\/24$/);
    expect(result.routes).toContainEqual({ dst: '192.0.2.0/24', gw: '10.244.21.1' });
    expect((await run('ip', ['-n', ns, 'route'])).stdout).toContain('192.0.2.0/24 via 10.244.21.1 dev eth0');
    const check = await handler({ env: cniEnv('CHECK', 'ipam1', path), stdin: conf({ ipam, prevResult: result }) });
    expect(check.exitCode, check.stdout).toBe(0);
    const del = await handler({ env: cniEnv('DEL', 'ipam1', path), stdin: conf({ ipam }) });
    expect(del.exitCode, del.stdout).toBe(0);
    expect(reservations()).not.toContain(result.ips[0].address.split('/')[0]);

    const refused = await handler({ env: cniEnv('ADD', 'ipam2', path), stdin: conf({ ipam: { ...ipam, ranges: [[{ subnet: '10.244.21.0/24', gateway: '10.244.21.254' }]] } }) });
    expect(refused.exitCode).toBe(1);
    expect(JSON.parse(refused.stdout)).toMatchObject({ code: 7, msg: expect.stringMatching(/ipam\.gateway: 10\.244\.21\.254 is not 10\.244\.21\.1/) });
    // Nothing half-made: no host veth for it, no reservation.
    expect(await hostLinks()).not.toContain(hostVethName('weftlab', 'ipam2', 'eth0'));
    expect(reservations().filter((ip) => ip.startsWith('10.244.21.24'))).toEqual([]);
  });

  it('ipMasq installs a WEFT-CNI chain in the host netns and DEL removes it', async () => {
    const ns = await sb.create('masq');
    const add = await handler({ env: cniEnv('ADD', 'masq1', `/var/run/netns/${ns}`), stdin: conf({ ipMasq: true }) });
    expect(add.exitCode, add.stdout).toBe(0);
    const ip = JSON.parse(add.stdout).ips[0].address.split('/')[0];
    const save = async () => {
      const r1 = await run('iptables-nft-save', ['-t', 'nat'], { netns: host, allowFail: true });
      const r2 = await run('iptables-legacy-save', ['-t', 'nat'], { netns: host, allowFail: true });
      return r1.stdout + r2.stdout;
    };
    expect(await save()).toMatch(new RegExp(`-A POSTROUTING -s ${ip.replace(/\./g, '\\.')}/32 .*-j WEFT-CNI-[0-9A-F]{16}`));
    expect((await handler({ env: cniEnv('DEL', 'masq1', `/var/run/netns/${ns}`), stdin: conf({ ipMasq: true }) })).exitCode).toBe(0);
    expect(await save()).not.toContain('WEFT-CNI-');
  });

  it('a bridge holding an old subnet address is fixed, not fatal (flannel 1850)', async () => {
    await run('ip', ['-n', host, 'addr', 'add', '10.244.99.1/24', 'dev', bridge]);
    const ns = await sb.create('renum');
    const add = await handler({ env: cniEnv('ADD', 'renum1', `/var/run/netns/${ns}`), stdin: conf() });
    expect(add.exitCode, add.stdout).toBe(0);
    const addrs = (await run('ip', ['-n', host, '-4', '-o', 'addr', 'show', 'dev', bridge])).stdout;
    expect(addrs).toContain('10.244.21.1/24');
    expect(addrs).not.toContain('10.244.99.1');
    expect((await handler({ env: cniEnv('DEL', 'renum1', `/var/run/netns/${ns}`), stdin: conf() })).exitCode).toBe(0);
  });

  describe('the real executable (shim falling back to the standalone plugin)', () => {
    const code = async (env: Record<string, string | undefined>, stdin: string) => {
      const r = await ws.exec(host, env, stdin);
      expect(r.code).not.toBe(0);
      return JSON.parse(r.stdout) as { code: number; msg: string };
    };

    it('ADD and DEL work end to end', async () => {
      const ns = await sb.create('exe');
      const add = await ws.exec(host, cniEnv('ADD', 'exe1', `/var/run/netns/${ns}`), conf());
      expect(add.code, add.stdout + add.stderr).toBe(0);
      expect(JSON.parse(add.stdout).ips[0].address).toMatch(/^10\.244\.21\./);
      const del = await ws.exec(host, cniEnv('DEL', 'exe1', `/var/run/netns/${ns}`), conf());
      expect(del.code, del.stdout + del.stderr).toBe(0);
    });

    it('returns each error code: 6 bad JSON, 4 missing env, 1 version, 7 config, 11 no subnet.env, 3 no netns', async () => {
      const ns = `/var/run/netns/${host}`;
      expect((await code(cniEnv('ADD', 'e1', ns), '{bad')).code).toBe(6);
      expect((await code({ ...cniEnv('ADD', 'e1', ns), CNI_IFNAME: undefined }, conf())).code).toBe(4);
      expect((await code(cniEnv('ADD', 'e1', ns), conf({ cniVersion: '0.1.0' }))).code).toBe(1);
      expect((await code(cniEnv('ADD', 'e1', ns), conf({ bridge: 'way-too-long-bridge-name' }))).code).toBe(7);
      const miss = await code(cniEnv('ADD', 'e1', ns), conf({ subnetFile: join(ws.dir, 'absent.env') }));
      expect(miss.code).toBe(11);
      expect(miss.msg).toContain('absent.env');
      expect((await code(cniEnv('ADD', 'e1', '/var/run/netns/does-not-exist-x'), conf())).code).toBe(3);
      expect(reservations()).toEqual([]);
    });

    it('VERSION and STATUS', async () => {
      const v = await ws.exec(host, { CNI_COMMAND: 'VERSION' }, conf());
      expect(JSON.parse(v.stdout).supportedVersions).toEqual(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
      expect((await ws.exec(host, { CNI_COMMAND: 'STATUS' }, conf({ cniVersion: '1.1.0' }))).code).toBe(0);
      expect((await code({ CNI_COMMAND: 'STATUS' }, conf({ cniVersion: '1.1.0', subnetFile: '/nonexistent/subnet.env' }))).code).toBe(50);
    });
  });
});
