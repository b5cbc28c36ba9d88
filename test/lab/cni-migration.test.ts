import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, type RunResult } from '../../src/exec/run.js';
import { isRoot, NetnsSandbox } from '../helpers/netns.js';

// docs/migration.md step 3 on one host: pods started by flannel's CNI plugin
// keep running on cni0 with host-local reservations under network cbr0 while
// new pods come from weft. The flannel side is the reference bridge +
// host-local (Debian's containernetworking-plugins) driven with the delegate
// config the flannel CNI plugin builds from subnet.env; weft is installed by
// `weftctl install-cni` next to flannel's conflist and adopts its network.
// Everything lives in namespaces and a temp dir (conf, bin, data, subnet.env).
const repo = join(import.meta.dirname, '..', '..');
const REF = '/usr/lib/cni';
const haveRef = existsSync(join(REF, 'bridge')) && existsSync(join(REF, 'host-local'));
const NETWORK = '10.244.0.0/16';

describe.skipIf(!isRoot || !haveRef)('migration from flannel\'s CNI plugin: old and new pods share cni0 and its reservations', () => {
  const sb = new NetnsSandbox();
  const tmp = mkdtempSync(join(tmpdir(), 'weft-cni-migration-'));
  const confDir = join(tmp, 'net.d');
  const binDir = join(tmp, 'bin');
  const dataDir = join(tmp, 'networks');
  const subnetFile = join(tmp, 'subnet.env');
  const third = randomInt(1, 250);
  const subnet = `10.244.${third}.0/24`;
  const gateway = `10.244.${third}.1`;
  const tag = randomBytes(3).toString('hex');
  let host = '';
  const pods: Record<string, { ns: string; id: string; ip?: string }> = {};

  const inHost = (cmd: string, args: string[], input?: string, env: Record<string, string> = {}) =>
    run(cmd, args, { netns: host, input, env: { PATH: process.env.PATH, ...env }, allowFail: true });
  const cniEnv = (command: string, pod: { ns: string; id: string }) => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: pod.id,
    CNI_NETNS: `/run/netns/${pod.ns}`,
    CNI_IFNAME: 'eth0',
    // The runtime's plugin path: weft's bin dir first, then Debian's (portmap).
    CNI_PATH: `${binDir}:${REF}`,
    // No weftd here: the shim runs the standalone plugin.
    WEFT_CNI_SOCKET: join(tmp, 'no-weftd.sock'),
  });

  /** What flannel's CNI plugin hands the bridge plugin (flannel_linux.go doCmdAdd, from subnet.env). */
  const flannelDelegate = () => ({
    cniVersion: '0.3.1',
    name: 'cbr0',
    type: 'bridge',
    hairpinMode: true,
    isDefaultGateway: true,
    ipMasq: false, // !FLANNEL_IPMASQ
    mtu: 1450,
    isGateway: true,
    ipam: { type: 'host-local', dataDir, ranges: [[{ subnet }]], routes: [{ dst: NETWORK }] },
  });

  /** Runs a conflist's chain for ADD the way libcni does: each plugin gets the previous result. */
  async function addChain(conflist: { cniVersion: string; name: string; plugins: Array<Record<string, unknown>> }, pod: { ns: string; id: string }): Promise<RunResult> {
    let prev: unknown;
    let last: RunResult | undefined;
    for (const p of conflist.plugins) {
      const stdin = JSON.stringify({ cniVersion: conflist.cniVersion, name: conflist.name, ...p, ...(prev ? { prevResult: prev } : {}) });
      const bin = [binDir, REF].map((d) => join(d, String(p.type))).find((f) => existsSync(f))!;
      last = await inHost(bin, [], stdin, cniEnv('ADD', pod));
      if (last.code !== 0) return last;
      prev = JSON.parse(last.stdout);
    }
    return last!;
  }

  const reservations = () => readdirSync(join(dataDir, 'cbr0')).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)).sort();
  const ping = (from: string, to: string) => run('ping', ['-c', '3', '-i', '0.2', '-W', '2', to], { netns: pods[from]!.ns, allowFail: true });

  beforeAll(async () => {
    host = await sb.create('mgh');
    for (const name of ['old1', 'old2', 'new1', 'new2']) pods[name] = { ns: await sb.create(name), id: `${name}-${tag}` };
    mkdirSync(confDir);
    writeFileSync(subnetFile, `FLANNEL_NETWORK=${NETWORK}\nFLANNEL_SUBNET=${gateway}/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`);
    // kube-flannel's conflist, with host-local's data dir pointed at the temp dir
    // (the flannel plugin hands its entry's ipam to the delegate).
    writeFileSync(join(confDir, '10-flannel.conflist'), JSON.stringify({
      name: 'cbr0',
      cniVersion: '0.3.1',
      plugins: [
        { type: 'flannel', subnetFile, ipam: { dataDir }, delegate: { hairpinMode: true, isDefaultGateway: true } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }));
  });

  afterAll(async () => {
    await sb.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('flannel side: the reference bridge + host-local put 2 pods on cni0 under network cbr0', async () => {
    for (const name of ['old1', 'old2']) {
      const r = await inHost(join(REF, 'bridge'), [], JSON.stringify(flannelDelegate()), cniEnv('ADD', pods[name]!));
      expect(r.code, r.stdout + r.stderr).toBe(0);
      pods[name]!.ip = (JSON.parse(r.stdout).ips[0].address as string).split('/')[0];
    }
    expect(reservations()).toEqual([pods.old1!.ip, pods.old2!.ip].sort());
    expect((await ping('old1', pods.old2!.ip!)).code).toBe(0);
  });

  it('install-cni finds flannel\'s conflist and adopts network cbr0, bridge cni0 and its data dir', async () => {
    const r = await run(process.execPath, [join(repo, 'dist/cli/weftctl.js'), 'install-cni', '--bin-dir', binDir, '--conf-dir', confDir, '--subnet-file', subnetFile], { allowFail: true });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`adopted flannel's network from ${join(confDir, '10-flannel.conflist')}: name cbr0, bridge cni0, reservations in ${dataDir}/cbr0`);
    const conflist = JSON.parse(readFileSync(join(confDir, '10-weft.conflist'), 'utf8'));
    expect(conflist.name).toBe('cbr0');
    expect(conflist.plugins[0]).toMatchObject({ type: 'weft', bridge: 'cni0', dataDir, subnetFile });
    // flannel's file still sorts first: the runtime switches when the operator removes it (step 3).
    expect(readdirSync(confDir).filter((f) => f.endsWith('.conflist')).sort()).toEqual(['10-flannel.conflist', '10-weft.conflist']);
  });

  it('new pods through the weft conflist get addresses no running pod holds, on the same bridge', async () => {
    const conflist = JSON.parse(readFileSync(join(confDir, '10-weft.conflist'), 'utf8'));
    for (const name of ['new1', 'new2']) {
      const r = await addChain(conflist, pods[name]!);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      pods[name]!.ip = (JSON.parse(r.stdout).ips[0].address as string).split('/')[0];
    }
    const ips = Object.values(pods).map((p) => p.ip!);
    expect(new Set(ips).size).toBe(4);
    for (const ip of ips) expect(ip.startsWith(`10.244.${third}.`) && ip !== gateway).toBe(true);
    expect(reservations()).toEqual([...ips].sort());

    // One bridge holds the gateway: cni0. No weft0 was made.
    const addrs = JSON.parse((await inHost('ip', ['-j', '-4', 'addr', 'show'])).stdout) as Array<{ ifname: string; addr_info: Array<{ local: string }> }>;
    expect(addrs.filter((l) => l.addr_info.some((a) => a.local === gateway)).map((l) => l.ifname)).toEqual(['cni0']);
    expect((await inHost('ip', ['link', 'show', 'weft0'])).code).not.toBe(0);
    // All four pods' host ends hang on cni0.
    const ports = (await inHost('ip', ['-o', 'link', 'show', 'master', 'cni0'])).stdout.trim().split('\n');
    expect(ports).toHaveLength(4);
  });

  it('old and new pods reach each other both ways', async () => {
    const pairs: Array<[string, string]> = [['old1', 'new1'], ['new1', 'old1'], ['old2', 'new2'], ['new2', 'old2'], ['new1', 'new2'], ['old2', 'old1']];
    const failed: string[] = [];
    for (const [a, b] of pairs) if ((await ping(a, pods[b]!.ip!)).code !== 0) failed.push(`${a}->${b}`);
    expect(failed).toEqual([]);
  });

  it('an old pod\'s DEL through the weft plugin frees host-local\'s reservation', async () => {
    const conflist = JSON.parse(readFileSync(join(confDir, '10-weft.conflist'), 'utf8'));
    const stdin = JSON.stringify({ cniVersion: conflist.cniVersion, name: conflist.name, ...conflist.plugins[0] });
    const r = await inHost(join(binDir, 'weft'), [], stdin, cniEnv('DEL', pods.old1!));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(reservations()).not.toContain(pods.old1!.ip);
    expect(reservations()).toHaveLength(3);
  });
});
