import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { labDown, labEtcd, labExec, labSpawn, labStatus, labTarget, labUp, startWeftd, stopWeftd, type LabStatus } from '../../src/lab/index.js';
import { continuousPing, pings, routesOf, uniqueLabId } from '../helpers/lab.js';
import { isRoot } from '../helpers/netns.js';

const id = uniqueLabId('vx');
const leaseKey = (subnet: string) => `/coreos.com/network/subnets/${subnet.replace('/', '-')}`;

async function ipJson<T>(target: string, args: string[]): Promise<T[]> {
  const r = await run('ip', ['-n', labTarget(id, target), '-j', ...args]);
  return JSON.parse(r.stdout || '[]') as T[];
}

async function vtepMac(host: string, subnet: string): Promise<string> {
  const raw = await labEtcd(id).get(leaseKey(subnet));
  expect(raw, `lease of ${host}`).toBeDefined();
  return (JSON.parse(raw!) as { BackendData: { VtepMAC: string } }).BackendData.VtepMAC;
}

/** The three entries flannel programs for a peer, as present on `host`. */
async function peerEntries(host: string, peerSubnet: string, peerMac: string) {
  const gw = peerSubnet.replace(/\.0\/\d+$/, '.0');
  const neigh = (await ipJson<{ dst: string; lladdr?: string }>(host, ['neigh', 'show', 'dev', 'weft.1'])).some(
    (n) => n.dst === gw && n.lladdr === peerMac,
  );
  const fdbOut = (await run('bridge', ['-n', labTarget(id, host), 'fdb', 'show', 'dev', 'weft.1'])).stdout;
  const fdb = fdbOut.includes(peerMac);
  const route = (await routesOf(id, host)).some((r) => r.dst === peerSubnet && r.gateway === gw && r.dev === 'weft.1');
  return { neigh, fdb, route };
}

describe.skipIf(!isRoot)('weftd vxlan on a 3-host lab (real etcd, real kernel)', () => {
  let status: LabStatus;
  const host = (name: string) => status.hosts.find((h) => h.name === name)!;
  const podIp = (name: string) => host(name).pods[0]!.ip!;

  beforeAll(async () => {
    status = await labUp({ id, hosts: 3, podsPerHost: 1, backend: 'vxlan', subnetLeaseTtl: 30 });
  });
  afterAll(async () => {
    await labDown(id);
    expect((await run('ip', ['netns', 'list'])).stdout).not.toContain(`${id}-`);
  });

  it('creates weft.1 with VNI 1, port 8472, nolearning, MTU 1450 and publishes its MAC', async () => {
    const [link] = await ipJson<{
      mtu: number;
      address: string;
      linkinfo: { info_kind: string; info_data: { id: number; port: number; learning?: boolean; local?: string } };
    }>('h1', ['-d', 'link', 'show', 'weft.1']);
    expect(link!.linkinfo.info_kind).toBe('vxlan');
    expect(link!.linkinfo.info_data).toMatchObject({ id: 1, port: 8472, local: '192.0.2.1' });
    expect(link!.linkinfo.info_data.learning ?? false).toBe(false);
    expect(link!.mtu).toBe(1450);
    expect(await vtepMac('h1', host('h1').subnet!)).toBe(link!.address);
    expect(host('h1').mtu).toBe(1450);
  });

  it('programs neighbour, fdb and route for every peer and pods ping across hosts', async () => {
    for (const [a, b] of [['h1', 'h2'], ['h1', 'h3'], ['h2', 'h3']] as const) {
      expect(await peerEntries(a, host(b).subnet!, await vtepMac(b, host(b).subnet!))).toEqual({ neigh: true, fdb: true, route: true });
      expect(await pings(id, `${a}-p1`, podIp(b), 2)).toBe(true);
    }
  });

  it('carries a TCP transfer across hosts intact', async () => {
    // A one-shot TCP sink in a pod on h2 that logs the byte count and sha256 of what arrived.
    const sink = `const c=require('crypto'),h=c.createHash('sha256');let n=0;require('net').createServer(s=>{s.on('data',d=>{n+=d.length;h.update(d)});s.on('end',()=>{console.log(n+' '+h.digest('hex'));process.exit(0)})}).listen(5201,()=>console.log('listening'))`;
    const spawned = await labSpawn(id, 'h2-p1', [process.execPath, '-e', sink]);
    await waitFor(() => readFileSync(spawned.log, 'utf8').includes('listening'), { timeoutMs: 15_000, what: 'sink listening' });
    // 20 MiB of deterministic bytes from a pod on h1.
    const src = `const c=require('crypto'),h=c.createHash('sha256');const s=require('net').connect(5201,process.argv[1],()=>{const b=Buffer.alloc(1<<20);for(let i=0;i<20;i++){b.fill(i);h.update(b);s.write(Buffer.from(b))}s.end(()=>console.log(h.digest('hex')))})`;
    const sent = await labExec(id, 'h1-p1', [process.execPath, '-e', src, podIp('h2')], { timeoutMs: 60_000 });
    const got = await waitFor(() => readFileSync(spawned.log, 'utf8').split('\n').find((l) => /^\d+ [0-9a-f]{64}$/.test(l)), {
      timeoutMs: 30_000,
      what: 'sink result',
    });
    expect(got).toBe(`${20 * 1024 * 1024} ${sent.stdout.trim()}`);
  });

  it('has the right path MTU: DF ping at MTU-28 passes, one byte more is refused', async () => {
    const ok = await labExec(id, 'h1-p1', ['ping', '-M', 'do', '-s', '1422', '-c', '1', '-W', '2', podIp('h3')], { allowFail: true });
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    const big = await labExec(id, 'h1-p1', ['ping', '-M', 'do', '-s', '1423', '-c', '1', '-W', '2', podIp('h3')], { allowFail: true });
    expect(big.code).not.toBe(0);
    expect(big.stdout + big.stderr).toMatch(/message too long|frag needed/i);
  });

  it('keeps its VtepMAC and loses no ping across SIGKILL + restart', async () => {
    const mac = await vtepMac('h2', host('h2').subnet!);
    const ping = continuousPing(id, 'h1-p1', podIp('h2'), 60, 0.1);
    await stopWeftd(id, 'h2', 'SIGKILL');
    await startWeftd(id, 'h2');
    const res = await ping.done;
    expect(res.received, res.output).toBe(60);
    expect(await vtepMac('h2', host('h2').subnet!)).toBe(mac);
    expect(labStatus(id).hosts.find((h) => h.name === 'h2')!.subnet).toBe(host('h2').subnet);
  });

  it('heals within 5 s when weft.1 is deleted by hand', async () => {
    await run('ip', ['-n', labTarget(id, 'h2'), 'link', 'del', 'weft.1']);
    await waitFor(
      async () => {
        const e = await peerEntries('h2', host('h1').subnet!, await vtepMac('h1', host('h1').subnet!));
        return e.neigh && e.fdb && e.route;
      },
      { timeoutMs: 5000, intervalMs: 100, what: 'weft.1 and its entries recreated' },
    );
    expect(await pings(id, 'h2-p1', podIp('h1'), 2)).toBe(true);
  });

  it('removes a peer\'s three entries on every other host when its lease goes', async () => {
    const subnet = host('h3').subnet!;
    const mac = await vtepMac('h3', subnet);
    await stopWeftd(id, 'h3', 'SIGKILL');
    expect(await labEtcd(id).del(leaseKey(subnet))).toBe(1);
    for (const h of ['h1', 'h2']) {
      await waitFor(
        async () => {
          const e = await peerEntries(h, subnet, mac);
          return !e.neigh && !e.fdb && !e.route;
        },
        { timeoutMs: 5000, intervalMs: 100, what: `h3's entries removed on ${h}` },
      );
    }
  });
});
