import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { VxlanBackend } from '../../src/backends/vxlan/index.js';
import type { Lease } from '../../src/store/types.js';
import { buildHosts, labContext, labLease, labLog, type LabHost } from '../helpers/kernel-lab.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';

describe.skipIf(!isRoot)('vxlan backend between three namespace hosts', () => {
  const sb = new NetnsSandbox();
  const stateRoot = mkdtempSync(join(tmpdir(), 'weft-vxlan-lab-'));
  let hosts: LabHost[];
  let backends: VxlanBackend[];
  let leases: Lease[];
  const remotesOf = (i: number) => leases.filter((_, j) => j !== i);
  const sh = async (h: LabHost, cmd: string, args: string[], allowFail = false) => (await sb.exec(h.ns, cmd, args, allowFail)).stdout;
  const ping = (from: LabHost, to: LabHost, extra: string[] = []) =>
    sb.exec(from.ns, 'ping', ['-c', '1', '-W', '2', ...extra, '-I', from.podGw, to.podGw], true);

  async function startAll(backend: Record<string, unknown>): Promise<void> {
    backends = hosts.map((h, i) => new VxlanBackend(labContext(h, backend, join(stateRoot, `h${i + 1}`), labLog)));
    leases = [];
    for (const [i, be] of backends.entries()) {
      const prep = await be.prepare();
      expect(prep.mtu).toBe(1450);
      leases.push(labLease(hosts[i]!, 'vxlan', prep.backendData));
    }
    for (const [i, be] of backends.entries()) await be.start(leases[i]!);
    for (const [i, be] of backends.entries()) expect((await be.sync(remotesOf(i))).peers).toBe(2);
  }

  beforeAll(async () => {
    hosts = await buildHosts(sb, 3);
    await startAll({ Type: 'vxlan' });
  });
  afterAll(async () => {
    for (const be of backends ?? []) await be.stop();
    await sb.cleanup();
    rmSync(stateRoot, { recursive: true, force: true });
  });

  it('makes weft.1 with id 1, dstport 8472, nolearning, and flannel-shaped entries', async () => {
    const link = await sh(hosts[0]!, 'ip', ['-d', 'link', 'show', 'weft.1']);
    expect(link).toMatch(/vxlan id 1 local 192\.0\.2\.1 dev eth0 .*dstport 8472 nolearning/);
    expect(link).toMatch(/mtu 1450/);
    const mac2 = (leases[1]!.attrs.BackendData as { VtepMAC: string }).VtepMAC;
    expect(await sh(hosts[0]!, 'ip', ['route', 'show', '10.244.2.0/24'])).toContain('10.244.2.0/24 via 10.244.2.0 dev weft.1 proto 247 onlink');
    expect(await sh(hosts[0]!, 'ip', ['neigh', 'show', 'dev', 'weft.1'])).toContain(`10.244.2.0 lladdr ${mac2} PERMANENT`);
    expect(await sh(hosts[0]!, 'bridge', ['fdb', 'show', 'dev', 'weft.1'])).toContain(`${mac2} dst 192.0.2.2 self permanent`);
  });

  it('pings cross every pair of hosts', async () => {
    for (const a of hosts) {
      for (const b of hosts) {
        if (a !== b) expect((await ping(a, b)).code, `${a.podGw} -> ${b.podGw}`).toBe(0);
      }
    }
  });

  it('carries a TCP transfer with the default checksum offload, no UDP checksum errors', async () => {
    const [a, b] = [hosts[0]!, hosts[1]!];
    await sb.exec(b.ns, 'iperf3', ['-s', '-1', '-D', '-B', b.podGw]);
    const csumErrors = async () => {
      const snmp = (await sh(b, 'cat', ['/proc/net/snmp'])).split('\n').filter((l) => l.startsWith('Udp:'));
      const [names, values] = snmp.map((l) => l.split(/\s+/));
      return Number(values![names!.indexOf('InCsumErrors')]);
    };
    const before = await csumErrors();
    const r = await waitFor(
      async () => {
        const run = await sb.exec(a.ns, 'iperf3', ['-c', b.podGw, '-B', a.podGw, '-n', '20M', '-J'], true);
        return run.code === 0 ? run : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200, what: 'iperf3 transfer' },
    );
    const end = JSON.parse(r.stdout).end;
    expect(end.sum_sent.bytes).toBeGreaterThanOrEqual(20 * 1024 * 1024);
    expect(end.sum_received.bytes).toBeGreaterThan(0);
    expect(await csumErrors()).toBe(before);
  });

  it('path MTU: DF ping at MTU-28 passes, one byte more is refused with message too long', async () => {
    const ok = await ping(hosts[0]!, hosts[1]!, ['-M', 'do', '-s', String(1450 - 28)]);
    expect(ok.code).toBe(0);
    const big = await ping(hosts[0]!, hosts[1]!, ['-M', 'do', '-s', String(1450 - 28 + 1)]);
    expect(big.code).not.toBe(0);
    expect(big.stdout + big.stderr).toMatch(/message too long|frag needed/i);
  });

  it('a deleted device is recreated with its entries within 5 s (link notification)', async () => {
    const h = hosts[0]!;
    const be = backends[0]!;
    be.onNeedSync = () => void be.sync(remotesOf(0)).catch(() => undefined);
    const mac = (leases[0]!.attrs.BackendData as { VtepMAC: string }).VtepMAC;
    const t0 = performance.now();
    await sb.exec(h.ns, 'ip', ['link', 'del', 'weft.1']);
    await waitFor(async () => (await sh(h, 'ip', ['route', 'show', 'dev', 'weft.1'], true)).split('\n').filter(Boolean).length === 2, {
      timeoutMs: 5000,
      intervalMs: 50,
      what: 'weft.1 and its routes back',
    });
    console.log(`vxlan: weft.1 deleted -> device and routes back in ${(performance.now() - t0).toFixed(0)} ms`);
    await waitFor(async () => (await ping(h, hosts[1]!)).code === 0 && (await ping(h, hosts[2]!)).code === 0, {
      timeoutMs: 5000,
      intervalMs: 200,
      what: 'pings after weft.1 was deleted',
    });
    expect(await sh(h, 'ip', ['link', 'show', 'weft.1'])).toContain(`link/ether ${mac}`);
    be.onNeedSync = undefined;
  });

  it('a restarted backend keeps the VtepMAC and the device', async () => {
    const h = hosts[1]!;
    const before = await sh(h, 'ip', ['-o', 'link', 'show', 'weft.1']);
    await backends[1]!.stop();
    backends[1] = new VxlanBackend(labContext(h, { Type: 'vxlan' }, join(stateRoot, 'h2'), labLog));
    const prep = await backends[1].prepare();
    expect(prep.backendData).toEqual(leases[1]!.attrs.BackendData);
    await backends[1].start(leases[1]!);
    expect(await backends[1].sync(remotesOf(1))).toEqual({ fixes: 0, peers: 2 });
    expect(await sh(h, 'ip', ['-o', 'link', 'show', 'weft.1'])).toBe(before);
  });

  it('a removed lease takes its neighbour, fdb entry and route off the other hosts', async () => {
    const gone = leases[2]!;
    const mac3 = (gone.attrs.BackendData as { VtepMAC: string }).VtepMAC;
    for (const i of [0, 1]) {
      await backends[i]!.sync(remotesOf(i).filter((l) => l !== gone));
      const h = hosts[i]!;
      expect(await sh(h, 'ip', ['route', 'show', '10.244.3.0/24'])).toBe('');
      expect(await sh(h, 'ip', ['neigh', 'show', 'dev', 'weft.1'])).not.toContain('10.244.3.0');
      expect(await sh(h, 'bridge', ['fdb', 'show', 'dev', 'weft.1'])).not.toContain(mac3);
    }
    for (const i of [0, 1]) await backends[i]!.sync(remotesOf(i));
  });

  it('DirectRouting on the shared L2 uses direct routes and still pings', async () => {
    for (const be of backends) await be.stop();
    await startAll({ Type: 'vxlan', DirectRouting: true });
    const h = hosts[0]!;
    expect(await sh(h, 'ip', ['route', 'show', '10.244.2.0/24'])).toContain('10.244.2.0/24 via 192.0.2.2 dev eth0 proto 247');
    expect(await sh(h, 'ip', ['neigh', 'show', 'dev', 'weft.1'])).toBe('');
    expect((await ping(h, hosts[1]!)).code).toBe(0);
    expect((await ping(h, hosts[2]!)).code).toBe(0);
  });

  it('cleanup removes the device and the direct routes', async () => {
    await backends[0]!.cleanup();
    expect((await sb.exec(hosts[0]!.ns, 'ip', ['link', 'show', 'weft.1'], true)).code).not.toBe(0);
    expect(await sh(hosts[0]!, 'ip', ['route', 'show', 'proto', '247'])).toBe('');
  });
});
