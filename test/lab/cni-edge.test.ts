import { existsSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/exec/run.js';
import { startCniServer, type CniServer } from '../../src/cni/server.js';
import { hostVethName } from '../../src/cni/plan.js';
import { isRoot, NetnsSandbox } from '../helpers/netns.js';
import { CniWorkspace } from '../helpers/cni-env.js';

// Edge cases of issue 17, each run on both paths a runtime takes: the real
// executable falling back to the standalone Node plugin, and the same
// executable handing the request to a CNI server (as inside weftd). Each path
// has its own "host" netns (fresh: no bridge yet), network name and bridge.
const PATHS = ['standalone', 'weftd'] as const;

describe.skipIf(!isRoot)('weft CNI edge cases in network namespaces', () => {
  const sb = new NetnsSandbox();
  const ws = new CniWorkspace();
  const sock = join(ws.dir, 'cni.sock');
  const hosts = new Map<string, string>();
  let server: CniServer | undefined;

  beforeAll(async () => {
    ws.writeSubnetEnv('10.244.23.0/24', { ipMasq: true });
    await ws.build();
    for (const p of PATHS) hosts.set(p, await sb.create(`h${p.slice(0, 2)}`));
    server = await startCniServer({ socketPath: sock, hostNetns: hosts.get('weftd')! });
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    await sb.cleanup();
    ws.cleanup();
  });

  describe.each(PATHS)('%s', (path) => {
    const net = `edge${path.slice(0, 2)}`;
    const bridge = `we${path.slice(0, 2)}${sb.tag}`;
    const host = () => hosts.get(path)!;
    const conf = (extra: Record<string, unknown> = {}) => JSON.stringify(ws.conf({ name: net, bridge, ...extra }));
    const cniEnv = (command: string, id: string, netns?: string, ifname = 'eth0', args?: string) => ({
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: netns,
      CNI_IFNAME: ifname,
      CNI_PATH: '/opt/cni/bin',
      CNI_ARGS: args,
    });
    const exec = async (env: Record<string, string | undefined>, stdin: string) => {
      const before = server!.served;
      const r = await ws.exec(host(), env, stdin, path === 'weftd' ? { WEFT_CNI_SOCKET: sock } : {});
      // The request really took the path under test.
      if (path === 'weftd') expect(server!.served).toBeGreaterThan(before);
      return r;
    };
    const ok = async (env: Record<string, string | undefined>, stdin: string) => {
      const r = await exec(env, stdin);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      return r.stdout ? JSON.parse(r.stdout) : undefined;
    };
    const fails = async (env: Record<string, string | undefined>, stdin: string) => {
      const r = await exec(env, stdin);
      expect(r.code, r.stdout).not.toBe(0);
      return JSON.parse(r.stdout) as { code: number; msg: string };
    };
    const reservations = () => (existsSync(join(ws.dataDir, net)) ? readdirSync(join(ws.dataDir, net)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : []);
    const ports = async () => (await run('ip', ['-n', host(), '-o', 'link', 'show', 'master', bridge], { allowFail: true })).stdout.split('\n').filter(Boolean);
    const nsPath = (ns: string) => `/var/run/netns/${ns}`;
    const addrsOf = async (ns: string, dev: string) =>
      (JSON.parse((await run('ip', ['-n', ns, '-j', 'addr', 'show', 'dev', dev])).stdout)[0].addr_info as Array<{ family: string; local: string }>)
        .filter((a) => a.family === 'inet')
        .map((a) => a.local);

    it('4 first ADDs at once on a fresh host all succeed with distinct addresses; DELs leave nothing (5 rounds, bridge deleted in between)', async () => {
      // The bridge race is a window of a few ms: several fresh starts make a miss unlikely.
      for (let round = 0; round < 5; round++) {
        await run('ip', ['-n', host(), 'link', 'del', bridge], { allowFail: true });
        expect((await run('ip', ['-n', host(), 'link', 'show', bridge], { allowFail: true })).code).not.toBe(0);
        const nss = await Promise.all([0, 1, 2, 3].map((i) => sb.create(`${path.slice(0, 2)}f${round}${i}`)));
        const adds = await Promise.all(nss.map((ns, i) => exec(cniEnv('ADD', `first${round}${i}`, nsPath(ns)), conf())));
        for (const r of adds) expect(r.code, `round ${round}: ${r.stdout}${r.stderr}`).toBe(0);
        const ips = adds.map((r) => JSON.parse(r.stdout).ips[0].address);
        expect(new Set(ips).size).toBe(4);
        expect(await ports()).toHaveLength(4);
        const br = (await run('ip', ['-n', host(), '-d', '-4', 'addr', 'show', 'dev', bridge])).stdout;
        expect(br).toContain('bridge');
        expect(br.match(/inet /g)).toHaveLength(1);
        expect(br).toContain('10.244.23.1/24');
        await run('ip', ['netns', 'exec', nss[0]!, 'ping', '-c1', '-W2', ips[3].split('/')[0]]);
        const dels = await Promise.all(nss.map((ns, i) => exec(cniEnv('DEL', `first${round}${i}`, nsPath(ns)), conf())));
        for (const r of dels) expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(reservations()).toEqual([]);
        expect(await ports()).toEqual([]);
      }
    });

    it('eth1 beside eth0 in one container; the default route only where isDefaultGateway says; DEL eth1 keeps eth0 working', async () => {
      const ns = await sb.create(`${path.slice(0, 2)}mi`);
      const r0 = await ok(cniEnv('ADD', 'multi', nsPath(ns), 'eth0'), conf());
      const r1 = await ok(cniEnv('ADD', 'multi', nsPath(ns), 'eth1'), conf({ isDefaultGateway: false }));
      expect(r1.ips[0].address).not.toBe(r0.ips[0].address);
      expect(r1.routes).toEqual([{ dst: '10.244.0.0/16', gw: '10.244.23.1' }]);
      expect(await addrsOf(ns, 'eth1')).toEqual([r1.ips[0].address.split('/')[0]]);
      const routes = (await run('ip', ['-n', ns, '-4', 'route', 'show'])).stdout;
      expect(routes.match(/^default /gm)).toHaveLength(1);
      expect(routes).toContain('default via 10.244.23.1 dev eth0');
      expect(routes).toContain('10.244.0.0/16 via 10.244.23.1 dev eth0');
      expect(routes).toContain('10.244.0.0/16 via 10.244.23.1 dev eth1');
      // CHECK agrees for both.
      await ok(cniEnv('CHECK', 'multi', nsPath(ns), 'eth0'), conf({ prevResult: r0 }));
      await ok(cniEnv('CHECK', 'multi', nsPath(ns), 'eth1'), conf({ isDefaultGateway: false, prevResult: r1 }));
      await ok(cniEnv('DEL', 'multi', nsPath(ns), 'eth1'), conf({ isDefaultGateway: false }));
      expect((await run('ip', ['-n', ns, '-4', 'route', 'show'])).stdout).toContain('10.244.0.0/16 via 10.244.23.1 dev eth0');
      await run('ip', ['netns', 'exec', ns, 'ping', '-c1', '-W2', '10.244.23.1']);
      await ok(cniEnv('DEL', 'multi', nsPath(ns), 'eth0'), conf());
      expect(reservations()).toEqual([]);
    });

    it('a repeated ADD asking for another IP is refused with the held address named; the first attachment stays whole, nothing leaks', async () => {
      const ns = await sb.create(`${path.slice(0, 2)}rp`);
      const first = await ok(cniEnv('ADD', 'again', nsPath(ns), 'eth0', 'IP=10.244.23.50'), conf());
      expect(first.ips[0].address).toBe('10.244.23.50/24');
      for (const [args, extra] of [
        ['IP=10.244.23.60', {}],
        [undefined, { runtimeConfig: { ips: ['10.244.23.61/24'] } }],
      ] as const) {
        const e = await fails(cniEnv('ADD', 'again', nsPath(ns), 'eth0', args), conf(extra));
        expect(e.code).toBe(102);
        expect(e.msg).toMatch(/again\/eth0 already holds 10\.244\.23\.50; requested IP 10\.244\.23\.6[01] refused/);
      }
      expect(reservations()).toEqual(['10.244.23.50']);
      expect(await addrsOf(ns, 'eth0')).toEqual(['10.244.23.50']);
      expect(await ports()).toEqual([expect.stringContaining(hostVethName(net, 'again', 'eth0'))]);
      await run('ip', ['netns', 'exec', ns, 'ping', '-c1', '-W2', '10.244.23.1']);
      await ok(cniEnv('CHECK', 'again', nsPath(ns)), conf({ prevResult: first }));
      // Asking again for the address it has is a plain repeated ADD.
      expect((await ok(cniEnv('ADD', 'again', nsPath(ns), 'eth0', 'IP=10.244.23.50'), conf())).ips[0].address).toBe('10.244.23.50/24');
      await ok(cniEnv('DEL', 'again', nsPath(ns)), conf());
      expect(reservations()).toEqual([]);
    });

    it('a netns path holding a space works (ADD, CHECK, DEL)', async () => {
      const ns = await sb.create(`${path.slice(0, 2)}sp`);
      const spaced = join(ws.dir, `net ns ${path}`);
      symlinkSync(nsPath(ns), spaced);
      const res = await ok(cniEnv('ADD', 'spaced', spaced), conf());
      expect(res.interfaces[2].sandbox).toBe(spaced);
      expect(await addrsOf(ns, 'eth0')).toEqual([res.ips[0].address.split('/')[0]]);
      await ok(cniEnv('CHECK', 'spaced', spaced), conf({ prevResult: res }));
      await ok(cniEnv('DEL', 'spaced', spaced), conf());
      expect(reservations()).toEqual([]);
    });

    it('a netns value holding a newline is refused (code 4) and injects nothing', async () => {
      const ns = await sb.create(`${path.slice(0, 2)}nl`);
      const evil = `evil${sb.tag}`;
      const e = await fails(cniEnv('ADD', 'newline', `${nsPath(ns)}\nlink add ${evil} type dummy`), conf());
      expect(e.code).toBe(4);
      expect(e.msg).toMatch(/CNI_NETNS: .* holds a control character/);
      expect((await run('ip', ['-n', host(), 'link', 'show', evil], { allowFail: true })).code).not.toBe(0);
      expect((await run('ip', ['-n', ns, '-o', 'link', 'show'])).stdout).not.toContain('eth0');
      expect(reservations()).toEqual([]);
    });

    it('a 500-character container ID: ADD (with ipMasq), CHECK, GC keeps it, DEL frees it', async () => {
      const ns = await sb.create(`${path.slice(0, 2)}lg`);
      const id = `L${'0123456789abcdef'.repeat(32)}`.slice(0, 500);
      const c = (extra: Record<string, unknown> = {}) => conf({ ipMasq: true, ...extra });
      const res = await ok(cniEnv('ADD', id, nsPath(ns)), c());
      const ip = res.ips[0].address.split('/')[0];
      // host-local's format keeps the whole ID.
      expect(readFileSync(join(ws.dataDir, net, ip), 'utf8')).toBe(`${id}\r\neth0`);
      const link = JSON.parse((await run('ip', ['-n', host(), '-j', 'link', 'show', 'dev', hostVethName(net, id, 'eth0')])).stdout)[0];
      expect(link.ifalias.length).toBeLessThanOrEqual(255);
      expect(link.ifalias).toMatch(new RegExp(`^weft:${net}:@[0-9a-f]{32}:eth0$`));
      await ok(cniEnv('CHECK', id, nsPath(ns)), c({ prevResult: res }));
      await ok({ CNI_COMMAND: 'GC' }, c({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: id, ifname: 'eth0' }] }));
      expect(reservations()).toEqual([ip]);
      expect(await ports()).toHaveLength(1);
      await ok(cniEnv('DEL', id, nsPath(ns)), c());
      expect(reservations()).toEqual([]);
      expect(await ports()).toEqual([]);
    });

    it("the host's own namespace is refused (code 4) before anything is done", async () => {
      const before = (await run('ip', ['-n', host(), '-4', 'route', 'show'])).stdout;
      for (const target of [nsPath(host()), '/proc/self/ns/net']) {
        const e = await fails(cniEnv('ADD', 'hostns', target), conf());
        expect(e.code, target).toBe(4);
        expect(e.msg).toMatch(/host's own network namespace/);
      }
      expect((await run('ip', ['-n', host(), '-4', 'route', 'show'])).stdout).toBe(before);
      expect((await run('ip', ['-n', host(), '-o', 'link', 'show'])).stdout).not.toContain(hostVethName(net, 'hostns', 'eth0'));
      expect(reservations()).toEqual([]);
      // A file that is not a namespace is no better.
      expect((await fails(cniEnv('ADD', 'notns', ws.subnetFile), conf())).msg).toMatch(/is not a network namespace/);
    });

    it('two IPv4 addresses in runtimeConfig.ips are refused (code 7 naming the field)', async () => {
      const ns = await sb.create(`${path.slice(0, 2)}ips`);
      const e = await fails(cniEnv('ADD', 'twoips', nsPath(ns)), conf({ runtimeConfig: { ips: ['10.244.23.70/24', '10.244.23.71/24'] } }));
      expect(e.code).toBe(7);
      expect(e.msg).toMatch(/^runtimeConfig\.ips: .* holds 2 IPv4 addresses/);
      expect(reservations()).toEqual([]);
      const one = await ok(cniEnv('ADD', 'oneip', nsPath(ns)), conf({ runtimeConfig: { ips: ['10.244.23.70/24'] } }));
      expect(one.ips[0].address).toBe('10.244.23.70/24');
      await ok(cniEnv('DEL', 'oneip', nsPath(ns)), conf());
    });

    it('the mac capability sets the container MAC (and the result says so); a bad one is code 7', async () => {
      const ns = await sb.create(`${path.slice(0, 2)}mac`);
      const mac = path === 'weftd' ? '02:5e:00:00:00:02' : '02:5e:00:00:00:01';
      const res = await ok(cniEnv('ADD', 'mac', nsPath(ns)), conf({ runtimeConfig: { mac: mac.toUpperCase() } }));
      expect(res.interfaces[2]).toMatchObject({ name: 'eth0', mac });
      expect(JSON.parse((await run('ip', ['-n', ns, '-j', 'link', 'show', 'dev', 'eth0'])).stdout)[0].address).toBe(mac);
      await ok(cniEnv('CHECK', 'mac', nsPath(ns)), conf({ prevResult: res }));
      await ok(cniEnv('DEL', 'mac', nsPath(ns)), conf());
      const e = await fails(cniEnv('ADD', 'mac2', nsPath(ns)), conf({ runtimeConfig: { mac: '01:00:5e:00:00:01' } }));
      expect(e).toMatchObject({ code: 7, msg: expect.stringMatching(/^runtimeConfig\.mac: .* multicast/) });
      expect(reservations()).toEqual([]);
    });
  });
});
