import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createCniHandler, type CniHandler } from '../../../src/cni/handler.js';
import { FakeCniKernel } from '../../../src/cni/kernel-fake.js';
import { FakeIpamStore } from '../../../src/cni/ipam/fake-store.js';
import { SUPPORTED_VERSIONS } from '../../../src/cni/spec.js';

const dir = mkdtempSync(join(tmpdir(), 'weft-cni-unit-'));
const subnetFile = join(dir, 'subnet.env');
writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NS = '/var/run/netns/fake-c1';
let kernel: FakeCniKernel;
let stores: Map<string, FakeIpamStore>;
let handler: CniHandler;

beforeEach(() => {
  kernel = new FakeCniKernel();
  kernel.addNetns(NS);
  stores = new Map();
  handler = createCniHandler({
    kernel,
    storeFor: (d) => {
      if (!stores.has(d)) stores.set(d, new FakeIpamStore());
      return stores.get(d)!;
    },
  });
});

const conf = (extra: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: '1.0.0', name: 'weftnet', type: 'weft', subnetFile, ...extra });
const env = (command: string, extra: Record<string, string | undefined> = {}) => ({ CNI_COMMAND: command, CNI_CONTAINERID: 'c1', CNI_NETNS: NS, CNI_IFNAME: 'eth0', CNI_PATH: '/x', ...extra });
const store = () => stores.get('/var/lib/cni/networks/weftnet')!;

describe('ADD result shape per spec version', () => {
  it.each(SUPPORTED_VERSIONS)('%s', async (v) => {
    const res = await handler({ env: env('ADD'), stdin: conf({ cniVersion: v }) });
    expect(res.exitCode).toBe(0);
    const out = JSON.parse(res.stdout);
    expect(out.cniVersion).toBe(v);
    expect(out.interfaces).toHaveLength(3);
    expect(out.interfaces[2]).toMatchObject({ name: 'eth0', sandbox: NS });
    expect(out.interfaces[1].name).toMatch(/^veth[0-9a-f]{8}$/);
    expect(out.ips[0]).toMatchObject({ address: '10.244.3.2/24', gateway: '10.244.3.1', interface: 2 });
    // "version" on IPs exists before 1.0.0 only; interface mtu from 1.1.0 only.
    expect('version' in out.ips[0]).toBe(v.startsWith('0.'));
    expect('mtu' in out.interfaces[2]).toBe(v === '1.1.0');
    expect(out.routes).toEqual([
      { dst: '10.244.0.0/16', gw: '10.244.3.1' },
      { dst: '0.0.0.0/0', gw: '10.244.3.1' },
    ]);
  });
});

describe('ADD side effects', () => {
  it('builds the bridge, veth and container config; FLANNEL_IPMASQ=true means no per-container masquerade', async () => {
    await handler({ env: env('ADD'), stdin: conf() });
    expect(kernel.bridges.get('weft0')).toMatchObject({ addrs: ['10.244.3.1/24'], up: true, mtu: 1450 });
    const eth0 = kernel.netns.get(NS)!.get('eth0')!;
    expect(eth0).toMatchObject({ addrs: ['10.244.3.2/24'], up: true, mtu: 1450 });
    expect(kernel.ipForward).toBe(true);
    expect(kernel.ipt.chains.size).toBe(1);
    expect([...kernel.hostLinks.values()][0]).toMatchObject({ master: 'weft0', alias: 'weft:weftnet:c1:eth0' });
  });

  it('replaces an address from an old subnet on the bridge instead of failing (flannel 1850)', async () => {
    kernel.bridges.set('weft0', { name: 'weft0', isBridge: true, mac: '02:00:00:00:00:01', up: true, mtu: 1450, addrs: ['10.244.99.1/24'] });
    const res = await handler({ env: env('ADD'), stdin: conf() });
    expect(res.exitCode).toBe(0);
    expect(kernel.bridges.get('weft0')!.addrs).toEqual(['10.244.3.1/24']);
  });

  it('ipMasq adds a WEFT-CNI chain; DEL removes it', async () => {
    await handler({ env: env('ADD'), stdin: conf({ ipMasq: true }) });
    const chains = [...kernel.ipt.chains.keys()].filter((c) => c.startsWith('WEFT-CNI-'));
    expect(chains).toHaveLength(1);
    expect(kernel.ipt.chains.get('POSTROUTING')![0]).toContain('-s 10.244.3.2/32');
    await handler({ env: env('DEL'), stdin: conf({ ipMasq: true }) });
    expect([...kernel.ipt.chains.keys()]).toEqual(['POSTROUTING']);
    expect(kernel.ipt.chains.get('POSTROUTING')).toEqual([]);
  });

  it.each([
    ['veth creation', /type veth/],
    ['container address', /^addr add 10\.244\.3\.\d+\/24 dev eth0/],
    ['default route', /route append default/],
  ])('rolls back everything when %s fails', async (_what, re) => {
    kernel.failOn = re;
    const res = await handler({ env: env('ADD'), stdin: conf({ ipMasq: true }) });
    expect(res.exitCode).toBe(1);
    expect(JSON.parse(res.stdout).code).toBe(100);
    expect(kernel.hostLinks.size).toBe(0);
    expect(kernel.netns.get(NS)!.size).toBe(0);
    expect(store().reservations.size).toBe(0);
    expect([...kernel.ipt.chains.keys()]).toEqual(['POSTROUTING']);
  });

  it('rolls back when the masquerade rules fail', async () => {
    kernel.ipt.failRestore = true;
    const res = await handler({ env: env('ADD'), stdin: conf({ ipMasq: true }) });
    expect(res.exitCode).toBe(1);
    expect(kernel.hostLinks.size).toBe(0);
    expect(store().reservations.size).toBe(0);
  });

  it('a repeated ADD rebuilds the attachment with the same address', async () => {
    const a = JSON.parse((await handler({ env: env('ADD'), stdin: conf() })).stdout);
    const b = JSON.parse((await handler({ env: env('ADD'), stdin: conf() })).stdout);
    expect(b.ips[0].address).toBe(a.ips[0].address);
    expect(kernel.hostLinks.size).toBe(1);
    expect(store().reservations.size).toBe(1);
  });

  it('a failed repeated ADD keeps the reservation it did not make', async () => {
    await handler({ env: env('ADD'), stdin: conf() });
    kernel.failOn = /route append default/;
    expect((await handler({ env: env('ADD'), stdin: conf() })).exitCode).toBe(1);
    expect(store().reservations.size).toBe(1);
  });

  it('honours IP= in CNI_ARGS', async () => {
    const out = JSON.parse((await handler({ env: env('ADD', { CNI_ARGS: 'IP=10.244.3.50' }), stdin: conf() })).stdout);
    expect(out.ips[0].address).toBe('10.244.3.50/24');
  });
});

describe('error codes', () => {
  const code = async (e: Record<string, string | undefined>, stdin: string) => {
    const res = await handler({ env: e, stdin });
    expect(res.exitCode).not.toBe(0);
    return JSON.parse(res.stdout) as { code: number; cniVersion: string; msg: string };
  };
  it('4 for a missing variable, 6 for bad JSON, 1 for an unknown version, 7 for bad config, 11 for no subnet.env', async () => {
    expect((await code(env('ADD', { CNI_CONTAINERID: undefined }), conf())).code).toBe(4);
    expect((await code(env('ADD'), '{not json')).code).toBe(6);
    const v = await code(env('ADD'), conf({ cniVersion: '0.2.0' }));
    expect(v).toMatchObject({ code: 1, cniVersion: '0.2.0' });
    expect((await code(env('ADD'), conf({ mtu: -1 }))).code).toBe(7);
    const missing = await code(env('ADD'), conf({ subnetFile: join(dir, 'nope.env') }));
    expect(missing.code).toBe(11);
    expect(missing.msg).toContain('nope.env');
  });
  it('3 when the netns does not exist', async () => {
    expect((await code(env('ADD', { CNI_NETNS: '/var/run/netns/gone' }), conf())).code).toBe(3);
  });
  it('1 for CHECK before 0.4.0 and GC/STATUS before 1.1.0', async () => {
    expect((await code(env('CHECK'), conf({ cniVersion: '0.3.1' }))).code).toBe(1);
    expect((await code(env('GC'), conf())).code).toBe(1);
    expect((await code(env('STATUS'), conf())).code).toBe(1);
  });
  it('VERSION echoes the config version and lists all five', async () => {
    const res = await handler({ env: { CNI_COMMAND: 'VERSION' }, stdin: conf({ cniVersion: '0.4.0' }) });
    expect(JSON.parse(res.stdout)).toEqual({ cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });
});

describe('DEL, CHECK, GC, STATUS', () => {
  it('DEL is idempotent and works without netns or prevResult', async () => {
    await handler({ env: env('ADD'), stdin: conf() });
    expect((await handler({ env: env('DEL', { CNI_NETNS: undefined }), stdin: conf() })).exitCode).toBe(0);
    expect(store().reservations.size).toBe(0);
    expect(kernel.hostLinks.size).toBe(0);
    expect((await handler({ env: env('DEL'), stdin: conf() })).exitCode).toBe(0);
  });

  it('CHECK passes on a fresh attachment and fails when the route or address is gone', async () => {
    const prev = JSON.parse((await handler({ env: env('ADD'), stdin: conf() })).stdout);
    expect((await handler({ env: env('CHECK'), stdin: conf({ prevResult: prev }) })).exitCode).toBe(0);
    kernel.netns.get(NS)!.get('eth0')!.routes.pop();
    const bad = await handler({ env: env('CHECK'), stdin: conf({ prevResult: prev }) });
    expect(JSON.parse(bad.stdout).msg).toMatch(/route 0\.0\.0\.0\/0/);
    const noPrev = await handler({ env: env('CHECK'), stdin: conf() });
    expect(JSON.parse(noPrev.stdout).code).toBe(7);
  });

  it('GC frees reservations, veths and chains not listed as valid', async () => {
    await handler({ env: env('ADD'), stdin: conf({ ipMasq: true }) });
    await handler({ env: env('ADD', { CNI_CONTAINERID: 'c2', CNI_IFNAME: 'eth1' }), stdin: conf({ ipMasq: true }) });
    const gc = await handler({ env: { CNI_COMMAND: 'GC' }, stdin: conf({ cniVersion: '1.1.0', ipMasq: true, 'cni.dev/valid-attachments': [{ containerID: 'c1', ifname: 'eth0' }] }) });
    expect(gc.exitCode).toBe(0);
    expect(store().list().map((r) => r.containerId)).toEqual(['c1']);
    expect([...kernel.hostLinks.values()].map((l) => l.alias)).toEqual(['weft:weftnet:c1:eth0']);
    expect([...kernel.ipt.chains.keys()].filter((c) => c.startsWith('WEFT-CNI-'))).toHaveLength(1);
  });

  it('STATUS is 0 with subnet.env and 50 without', async () => {
    expect((await handler({ env: { CNI_COMMAND: 'STATUS' }, stdin: conf({ cniVersion: '1.1.0' }) })).exitCode).toBe(0);
    const res = await handler({ env: { CNI_COMMAND: 'STATUS' }, stdin: conf({ cniVersion: '1.1.0', subnetFile: join(dir, 'x') }) });
    expect(JSON.parse(res.stdout).code).toBe(50);
  });
});

describe('the ipam section (host-local fields that agree with subnet.env)', () => {
  const add = (ipam: unknown, extra: Record<string, unknown> = {}) => handler({ env: env('ADD'), stdin: conf({ ipam, ...extra }) });
  const error = (res: { exitCode: number; stdout: string }) => (expect(res.exitCode).toBe(1), JSON.parse(res.stdout) as { code: number; msg: string });

  it('allocates inside rangeStart-rangeEnd, inline or in ranges, and adds its routes to the container and result', async () => {
    const res = await add({ type: 'host-local', rangeStart: '10.244.3.50', rangeEnd: '10.244.3.60', routes: [{ dst: '192.168.0.0/16' }, { dst: '172.16.5.0/24', gw: '10.244.3.9' }, { dst: '0.0.0.0/0' }] });
    expect(res.exitCode).toBe(0);
    const out = JSON.parse(res.stdout);
    expect(out.ips[0].address).toBe('10.244.3.50/24');
    // The default route is added once (isDefaultGateway), not again from ipam.routes.
    expect(out.routes).toEqual([
      { dst: '10.244.0.0/16', gw: '10.244.3.1' },
      { dst: '0.0.0.0/0', gw: '10.244.3.1' },
      { dst: '192.168.0.0/16', gw: '10.244.3.1' },
      { dst: '172.16.5.0/24', gw: '10.244.3.9' },
    ]);
    const eth0 = kernel.netns.get(NS)!.get('eth0')!;
    expect(eth0.routes.map((r) => `${r.dst} via ${r.gw}`)).toEqual(expect.arrayContaining(['192.168.0.0/16 via 10.244.3.1', '172.16.5.0/24 via 10.244.3.9']));
    // CHECK verifies the extra routes too.
    const check = await handler({ env: env('CHECK'), stdin: conf({ ipam: { rangeStart: '10.244.3.50', rangeEnd: '10.244.3.60', routes: [{ dst: '192.168.0.0/16' }] }, prevResult: out }) });
    expect(check.exitCode).toBe(0);

    kernel.addNetns('/var/run/netns/fake-c2');
    const second = await handler({ env: env('ADD', { CNI_CONTAINERID: 'c2', CNI_NETNS: '/var/run/netns/fake-c2' }), stdin: conf({ ipam: { ranges: [[{ subnet: '10.244.3.0/24', rangeStart: '10.244.3.200', gateway: '10.244.3.1' }]] } }) });
    expect(second.exitCode).toBe(0);
    expect(JSON.parse(second.stdout).ips[0].address).toBe('10.244.3.200/24');
  });

  it('takes dataDir from ipam; refuses a different one at the top level', async () => {
    expect((await add({ type: 'host-local', dataDir: '/var/lib/weft-ipam' })).exitCode).toBe(0);
    expect(stores.has('/var/lib/weft-ipam/weftnet')).toBe(true);
    const e = error(await add({ dataDir: '/a' }, { dataDir: '/b' }));
    expect(e.code).toBe(7);
    expect(e.msg).toMatch(/ipam\.dataDir/);
  });

  it('refuses, with code 7 naming the field and nothing reserved, what disagrees with the node subnet', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ type: 'dhcp' }, /ipam\.type: "dhcp" is not supported/],
      [{ subnet: '10.244.9.0/24' }, /ipam\.subnet: 10\.244\.9\.0\/24 is not this node's subnet 10\.244\.3\.0\/24/],
      [{ ranges: [[{ subnet: '10.244.3.0/24', gateway: '10.244.3.254' }]] }, /ipam\.gateway: 10\.244\.3\.254 is not 10\.244\.3\.1/],
      [{ rangeStart: '10.244.4.5' }, /ipam\.rangeStart: 10\.244\.4\.5 is not a usable address of 10\.244\.3\.0\/24/],
      [{ rangeStart: '10.244.3.90', rangeEnd: '10.244.3.80' }, /rangeStart: 10\.244\.3\.90 is after rangeEnd/],
      [{ ranges: [[{ subnet: '10.244.3.0/24' }], [{ subnet: '10.245.0.0/24' }]] }, /ipam\.ranges: weft allocates from one range/],
      [{ ranges: [[{}]], rangeStart: '10.244.3.5' }, /ipam\.rangeStart: give the range either in ipam\.ranges or inline/],
      [{ routes: [{ dst: '192.168.0.0/16', gw: '10.1.1.1' }] }, /ipam\.routes\[0\]\.gw: 10\.1\.1\.1 is not in this node's subnet/],
      [{ routes: [{ dst: 'nowhere' }] }, /ipam\.routes\[0\]\.dst: "nowhere" is not an IPv4 CIDR/],
      ['host-local', /ipam: not an object/],
    ];
    for (const [ipam, msg] of cases) {
      const e = error(await add(ipam));
      expect(e.code, JSON.stringify(ipam)).toBe(7);
      expect(e.msg).toMatch(msg);
    }
    expect(kernel.hostLinks.size).toBe(0);
    expect(stores.get('/var/lib/cni/networks/weftnet')?.getByID('c1', 'eth0') ?? []).toEqual([]);
  });
});

describe('issue 17 edge cases (fake kernel)', () => {
  const error = (res: { exitCode: number; stdout: string }) => (expect(res.exitCode).toBe(1), JSON.parse(res.stdout) as { code: number; msg: string });

  it('a bridge made by another ADD between our read and our batch is re-read, verified and used', async () => {
    let raced = false;
    kernel.beforeHostBatch = () => {
      if (raced) return;
      raced = true;
      kernel.bridges.set('weft0', { name: 'weft0', isBridge: true, mac: '02:00:00:00:00:09', up: false, mtu: 1450, addrs: [] });
    };
    const res = await handler({ env: env('ADD'), stdin: conf() });
    expect(res.exitCode, res.stdout).toBe(0);
    expect(kernel.bridges.get('weft0')).toMatchObject({ addrs: ['10.244.3.1/24'], up: true, mac: '02:00:00:00:00:09' });
    expect(kernel.lines.filter((l) => /type bridge$/.test(l))).toHaveLength(1);
  });

  it('a link of the bridge name that is not a bridge is refused after the race, not used', async () => {
    kernel.beforeHostBatch = () => {
      if (!kernel.bridges.has('weft0')) kernel.bridges.set('weft0', { name: 'weft0', isBridge: false, mac: 'x', up: true, mtu: 1500, addrs: [] });
    };
    const e = error(await handler({ env: env('ADD'), stdin: conf() }));
    expect(e).toMatchObject({ code: 7, msg: expect.stringMatching(/bridge: link weft0 exists and is not a bridge/) });
    expect(kernel.hostLinks.size).toBe(0);
    expect(store().reservations.size).toBe(0);
  });

  it('eth1 beside eth0: routes are appended, the default route only where isDefaultGateway says', async () => {
    expect((await handler({ env: env('ADD'), stdin: conf() })).exitCode).toBe(0);
    const r1 = await handler({ env: env('ADD', { CNI_IFNAME: 'eth1' }), stdin: conf({ isDefaultGateway: false }) });
    expect(r1.exitCode, r1.stdout).toBe(0);
    const links = kernel.netns.get(NS)!;
    expect(links.get('eth0')!.routes.map((r) => r.dst)).toEqual(['10.244.0.0/16', '0.0.0.0/0']);
    expect(links.get('eth1')!.routes.map((r) => r.dst)).toEqual(['10.244.0.0/16']);
    expect(store().reservations.size).toBe(2);
  });

  it('a repeated ADD asking for another address is refused (102, naming the held one) and changes nothing', async () => {
    await handler({ env: env('ADD', { CNI_ARGS: 'IP=10.244.3.50' }), stdin: conf() });
    const linesBefore = kernel.lines.length;
    const e = error(await handler({ env: env('ADD'), stdin: conf({ runtimeConfig: { ips: ['10.244.3.60'] } }) }));
    expect(e.code).toBe(102);
    expect(e.msg).toContain('c1/eth0 already holds 10.244.3.50');
    expect(kernel.lines.length).toBe(linesBefore);
    expect(store().list().map((r) => r.ip)).toHaveLength(1);
    expect(kernel.netns.get(NS)!.get('eth0')!.addrs).toEqual(['10.244.3.50/24']);
  });

  it("refuses the host's namespace and a newline in CNI_NETNS (code 4) before any kernel work", async () => {
    for (const ns of ['/proc/self/ns/net', `${NS}\nlink add evil type dummy`]) {
      const e = error(await handler({ env: env('ADD', { CNI_NETNS: ns }), stdin: conf() }));
      expect(e.code, ns).toBe(4);
      expect(e.msg).toMatch(/^CNI_NETNS: /);
    }
    expect(kernel.lines).toEqual([]);
    expect(store()?.reservations.size ?? 0).toBe(0);
  });

  it('a netns path with a space is never pasted into a batch line; the result keeps the path; the ref is closed', async () => {
    const spaced = '/run/my netns/c 1';
    kernel.addNetns(spaced);
    const res = await handler({ env: env('ADD', { CNI_NETNS: spaced }), stdin: conf() });
    expect(res.exitCode, res.stdout).toBe(0);
    expect(JSON.parse(res.stdout).interfaces[2].sandbox).toBe(spaced);
    expect(kernel.lines.filter((l) => !l.startsWith('[')).some((l) => l.includes('my netns'))).toBe(false);
    expect(kernel.netns.get(spaced)!.get('eth0')!.up).toBe(true);
    expect(kernel.openRefs).toBe(0);
  });

  it('a 500-character container ID: bounded alias and masquerade comment, GC keeps it by its hash token', async () => {
    const id = `L${'x'.repeat(499)}`;
    const res = await handler({ env: env('ADD', { CNI_CONTAINERID: id }), stdin: conf({ ipMasq: true }) });
    expect(res.exitCode, res.stdout).toBe(0);
    const alias = [...kernel.hostLinks.values()][0]!.alias!;
    expect(alias.length).toBeLessThanOrEqual(255);
    expect(alias).toMatch(/^weft:weftnet:@[0-9a-f]{32}:eth0$/);
    const jump = kernel.ipt.chains.get('POSTROUTING')![0]!;
    expect(/--comment "([^"]*)"/.exec(jump)![1]!.length).toBeLessThanOrEqual(255);
    const gc = (keep: unknown[]) => handler({ env: { CNI_COMMAND: 'GC' }, stdin: conf({ cniVersion: '1.1.0', ipMasq: true, 'cni.dev/valid-attachments': keep }) });
    expect((await gc([{ containerID: id, ifname: 'eth0' }])).exitCode).toBe(0);
    expect(kernel.hostLinks.size).toBe(1);
    expect(store().list().map((r) => r.containerId)).toEqual([id]);
    expect((await gc([])).exitCode).toBe(0);
    expect(kernel.hostLinks.size).toBe(0);
    expect([...kernel.ipt.chains.keys()]).toEqual(['POSTROUTING']);
  });

  it('runtimeConfig: two IPv4 ips are code 7; mac is set on the container interface and in the result', async () => {
    const e = error(await handler({ env: env('ADD'), stdin: conf({ runtimeConfig: { ips: ['10.244.3.7', '10.244.3.8'] } }) }));
    expect(e).toMatchObject({ code: 7, msg: expect.stringMatching(/^runtimeConfig\.ips: .*holds 2 IPv4 addresses/) });
    expect(error(await handler({ env: env('ADD'), stdin: conf({ runtimeConfig: { mac: 'zz:00:00:00:00:00' } }) })).code).toBe(7);
    const both = error(await handler({ env: env('ADD', { CNI_ARGS: 'IP=10.244.3.7' }), stdin: conf({ runtimeConfig: { ips: ['10.244.3.8'] } }) }));
    expect(both).toMatchObject({ code: 7, msg: expect.stringMatching(/^runtimeConfig\.ips: 10\.244\.3\.8 differs from CNI_ARGS IP=10\.244\.3\.7/) });
    expect(store()?.reservations.size ?? 0).toBe(0);
    const res = await handler({ env: env('ADD'), stdin: conf({ runtimeConfig: { mac: '02-AA-BB-CC-DD-EE' } }) });
    expect(res.exitCode, res.stdout).toBe(0);
    expect(JSON.parse(res.stdout).interfaces[2].mac).toBe('02:aa:bb:cc:dd:ee');
    expect(kernel.netns.get(NS)!.get('eth0')!.mac).toBe('02:aa:bb:cc:dd:ee');
  });
});

describe('ip -batch words', () => {
  it('plain words stay bare, others are quoted, what cannot be written is refused; the fake reads them as ip does', async () => {
    const { batchWord } = await import('../../../src/cni/plan.js');
    const { batchWords } = await import('../../../src/cni/kernel-fake.js');
    expect(batchWord('/run/netns/a-1')).toBe('/run/netns/a-1');
    expect(batchWord('/tmp/my ns')).toBe('"/tmp/my ns"');
    expect(batchWord('it"s')).toBe(`'it"s'`);
    for (const bad of ['a#b', 'a\nb', `a"b'c`, '']) expect(() => batchWord(bad), JSON.stringify(bad)).toThrow(/cannot be passed to ip -batch/);
    expect(batchWords(`link add name x netns ${batchWord('/tmp/my ns')} # note`)).toEqual(['link', 'add', 'name', 'x', 'netns', '/tmp/my ns']);
    expect(() => batchWords('addr add 1.2.3.4/24 dev x\nlink add evil type dummy')).toThrow(/line break/);
  });
});
