import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { labDown, labEtcd, labStatus, labTarget, labUp, readState, startWeftd, stopWeftd, type LabStatus } from '../../src/lab/index.js';
import { hostDir } from '../../src/lab/state.js';
import { weftdArgv, weftdPaths } from '../../src/lab/weftd.js';
import { ExecNft } from '../../src/netfilter/nft.js';
import { FakeNft } from '../../src/netfilter/nft-fake.js';
import { FILTER_NFT_CASES, fakeSetElements, normaliseRules } from '../helpers/vxlan-filter-cases.js';
import { pings, uniqueLabId } from '../helpers/lab.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';

const FRAME_PY = join(import.meta.dirname, '..', 'helpers', 'vxlan-frame.py');

/** Elements of `ip weft-vxlan peers` in a namespace; undefined without the table. */
async function realElements(netns: string): Promise<string[] | undefined> {
  const r = await run('nft', ['-j', 'list', 'set', 'ip', 'weft-vxlan', 'peers'], { netns, allowFail: true });
  if (r.code !== 0) return undefined;
  const set = (JSON.parse(r.stdout) as { nftables: Array<{ set?: { elem?: string[] } }> }).nftables.find((o) => o.set)?.set;
  return [...(set?.elem ?? [])].sort();
}

describe.skipIf(!isRoot)('real nft and FakeNft agree on the peer filter transactions', () => {
  const sb = new NetnsSandbox();
  afterAll(() => sb.cleanup());

  it('accepts and refuses the same cases, with the same rules and set elements after each', async () => {
    const results: string[] = [];
    for (const [i, c] of FILTER_NFT_CASES.entries()) {
      const ns = await sb.create(`c${i}`);
      const real = new ExecNft(ns, { lister: 'nft' });
      const fake = new FakeNft();
      for (const b of c.before) {
        await real.apply(b);
        await fake.apply(b);
      }
      const outcome = async (p: Promise<void>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? 'thrown');
      const [r, f] = [await outcome(real.apply(c.text)), await outcome(fake.apply(c.text))];
      const rules = [normaliseRules(await real.listChain('ip', 'weft-vxlan', 'input')), normaliseRules(await fake.listChain('ip', 'weft-vxlan', 'input'))];
      const elems = [await realElements(ns), fakeSetElements(fake.dump())];
      results.push(`${c.name}: real ${r} fake ${f}`);
      expect(r, c.name).toBe(c.ok ? 'ok' : 'ERR_NFT');
      expect(f, c.name).toBe(r);
      expect(rules[1], `${c.name}: rules`).toEqual(rules[0]);
      expect(elems[1], `${c.name}: set elements`).toEqual(elems[0]);
      await run('ip', ['netns', 'del', ns], { allowFail: true });
    }
    expect(results).toHaveLength(FILTER_NFT_CASES.length);
  });
});

const id = uniqueLabId('vf');
const leaseKey = (subnet: string) => `/coreos.com/network/subnets/${subnet.replace('/', '-')}`;

describe.skipIf(!isRoot)('weftd vxlan peer filter and VtepMAC takeover on a 2-host lab', () => {
  let status: LabStatus;
  const host = (name: string) => status.hosts.find((h) => h.name === name)!;
  const ns = (target: string) => labTarget(id, target);
  const podIp = (name: string) => host(name).pods[0]!.ip!;
  const devMac = async (h: string) => (JSON.parse((await run('ip', ['-n', ns(h), '-j', 'link', 'show', 'weft.1'])).stdout) as Array<{ address: string }>)[0]!.address;
  const dropped = async (h: string) => {
    const rules = (await run('nft', ['list', 'chain', 'ip', 'weft-vxlan', 'input'], { netns: ns(h) })).stdout;
    return Number(/counter packets (\d+)/.exec(rules)![1]);
  };
  /** Echo requests the pod's kernel has received (its own netns's /proc/net/snmp). */
  const podEchos = async (pod: string) => {
    const lines = (await run('cat', ['/proc/net/snmp'], { netns: ns(pod) })).stdout.split('\n').filter((l) => l.startsWith('Icmp:'));
    const [names, values] = lines.map((l) => l.split(/\s+/));
    return Number(values![names!.indexOf('InEchos')]);
  };
  /** A crafted frame to h2's VTEP for h2's pod, inner source spoofed from h1's subnet, sent from `fromNetns`. */
  const sendFrame = async (fromNetns: string) => {
    const spoofed = host('h1').subnet!.replace(/\.0\/\d+$/, '.77');
    await run('python3', [FRAME_PY, host('h2').underlayIp, '8472', '1', await devMac('h2'), spoofed, podIp('h2')], { netns: fromNetns });
  };

  beforeAll(async () => {
    status = await labUp({ id, hosts: 2, podsPerHost: 1, backend: 'vxlan', proxyMode: 'none', subnetLeaseTtl: 60 });
  });
  afterAll(async () => {
    await labDown(id);
    expect((await run('ip', ['netns', 'list'])).stdout).not.toContain(`${id}-`);
  });

  it('each host accepts VXLAN only from the other, and pods ping across', async () => {
    for (const [a, b] of [['h1', 'h2'], ['h2', 'h1']] as const) {
      await waitFor(async () => JSON.stringify(await realElements(ns(a))) === JSON.stringify([host(b).underlayIp]), {
        timeoutMs: 15_000,
        what: `${a}'s peer set = [${host(b).underlayIp}]`,
      });
      expect((await run('nft', ['list', 'chain', 'ip', 'weft-vxlan', 'input'], { netns: ns(a) })).stdout).toMatch(
        /udp dport 8472 ip saddr != @peers counter packets \d+ bytes \d+ drop/,
      );
      expect(await pings(id, `${a}-p1`, podIp(b), 2)).toBe(true);
    }
  });

  it('a crafted frame from a non-peer on the underlay is dropped and counted; the pod sees nothing', async () => {
    const [d0, e0] = [await dropped('h2'), await podEchos('h2-p1')];
    // The switch namespace holds 192.0.2.254 on the underlay: reachable, but no lease.
    await sendFrame(readState(id)!.switchNetns);
    await waitFor(async () => (await dropped('h2')) === d0 + 1, { timeoutMs: 5000, what: 'filter counter moved by one' });
    expect(await podEchos('h2-p1')).toBe(e0);
    // weftd exports the counter at its next reconcile.
    await waitFor(
      async () => {
        const m = (await run('curl', ['-s', '--max-time', '2', 'http://127.0.0.1:9808/metrics'], { netns: ns('h2'), allowFail: true })).stdout;
        return Number(/^weft_vxlan_peer_filter_dropped_packets_total (\d+)/m.exec(m)?.[1] ?? -1) >= 1;
      },
      { timeoutMs: 25_000, intervalMs: 500, what: 'weft_vxlan_peer_filter_dropped_packets_total >= 1' },
    );
  });

  it('the same frame from a peer\'s address reaches the pod (control: the frame is well-formed)', async () => {
    const [d0, e0] = [await dropped('h2'), await podEchos('h2-p1')];
    await sendFrame(ns('h1'));
    await waitFor(async () => (await podEchos('h2-p1')) === e0 + 1, { timeoutMs: 5000, what: 'pod received the echo request' });
    expect(await dropped('h2')).toBe(d0);
  });

  it('weftd on a host whose flanneld lease it takes over (empty state dir) keeps the lease\'s VtepMAC; the peer needs no change', async () => {
    const subnet = host('h2').subnet!;
    const flannelMac = 'ca:b8:3a:f3:06:ae';
    expect(await devMac('h2')).not.toBe(flannelMac);
    await stopWeftd(id, 'h2');
    rmSync(weftdPaths(hostDir(id, 'h2')).stateDir, { recursive: true, force: true });
    await run('ip', ['-n', ns('h2'), 'link', 'del', 'weft.1']);
    // Exactly as flanneld v0.20.2 writes it.
    await labEtcd(id).put(
      leaseKey(subnet),
      `{"PublicIP":"${host('h2').underlayIp}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${flannelMac}"}}`,
    );
    // h1 follows the lease, then is stopped: it cannot adapt to any other MAC.
    await waitFor(async () => (await run('bridge', ['-n', ns('h1'), 'fdb', 'show', 'dev', 'weft.1'])).stdout.includes(`${flannelMac} dst ${host('h2').underlayIp}`), {
      timeoutMs: 15_000,
      what: 'h1 programs the flanneld VtepMAC',
    });
    await stopWeftd(id, 'h1');
    try {
      await startWeftd(id, 'h2');
      expect(await devMac('h2')).toBe(flannelMac);
      const lease = JSON.parse((await labEtcd(id).get(leaseKey(subnet)))!) as { PublicIP: string; BackendData: { VtepMAC: string } };
      expect(lease).toMatchObject({ PublicIP: host('h2').underlayIp, BackendData: { VtepMAC: flannelMac } });
      expect(labStatus(id).hosts.find((h) => h.name === 'h2')!.subnet).toBe(subnet);
      expect(await pings(id, 'h1-p1', podIp('h2'), 2)).toBe(true);
      expect(await pings(id, 'h2-p1', podIp('h1'), 2)).toBe(true);
    } finally {
      await startWeftd(id, 'h1');
    }
  });

  it('weftd --cleanup removes the filter table with the device', async () => {
    await stopWeftd(id, 'h2');
    const argv = weftdArgv(weftdPaths(hostDir(id, 'h2')), {});
    const r = await run(argv[0]!, [...argv.slice(1), '--cleanup'], { netns: ns('h2'), allowFail: true });
    expect(r.code, r.stderr).toBe(0);
    expect(await realElements(ns('h2'))).toBeUndefined();
    expect((await run('ip', ['-n', ns('h2'), 'link', 'show', 'weft.1'], { allowFail: true })).code).not.toBe(0);
  });
});

const offId = uniqueLabId('vo');

/** Without the filter the kernel takes the frame from anyone: what the filter is for (flannel's behaviour). */
describe.skipIf(!isRoot)('weftd vxlan with --vxlan-peer-filter=false on a 2-host lab', () => {
  let status: LabStatus;
  const ns = (target: string) => labTarget(offId, target);

  beforeAll(async () => {
    status = await labUp({ id: offId, hosts: 2, podsPerHost: 1, backend: 'vxlan', proxyMode: 'none', weftdArgs: ['--vxlan-peer-filter=false'] });
  });
  afterAll(async () => {
    await labDown(offId);
    expect((await run('ip', ['netns', 'list'])).stdout).not.toContain(`${offId}-`);
  });

  it('has no filter table, and a non-peer\'s crafted frame reaches the pod', async () => {
    const h = (name: string) => status.hosts.find((x) => x.name === name)!;
    expect(await realElements(ns('h2'))).toBeUndefined();
    const mac = (JSON.parse((await run('ip', ['-n', ns('h2'), '-j', 'link', 'show', 'weft.1'])).stdout) as Array<{ address: string }>)[0]!.address;
    const echos = async () => {
      const lines = (await run('cat', ['/proc/net/snmp'], { netns: ns('h2-p1') })).stdout.split('\n').filter((l) => l.startsWith('Icmp:'));
      const [names, values] = lines.map((l) => l.split(/\s+/));
      return Number(values![names!.indexOf('InEchos')]);
    };
    const e0 = await echos();
    const spoofed = h('h1').subnet!.replace(/\.0\/\d+$/, '.77');
    await run('python3', [FRAME_PY, h('h2').underlayIp, '8472', '1', mac, spoofed, h('h2').pods[0]!.ip!], { netns: readState(offId)!.switchNetns });
    await waitFor(async () => (await echos()) === e0 + 1, { timeoutMs: 5000, what: 'the unfiltered frame reached the pod' });
  });
});
