import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { parseCidr } from '../../src/core/ip.js';
import { tryLoadNative } from '../../src/backends/udp/native.js';
import { isRoot } from '../helpers/netns.js';
import { buildUdpLab, parsePing, type UdpLab } from '../helpers/udp-lab.js';

const { native, reason } = tryLoadNative();
const skip = !isRoot ? 'needs root' : !native ? `native addon unavailable: ${reason}` : undefined;
if (skip) console.warn(`udp lab tests skipped: ${skip}`);

const FLOOD = join(import.meta.dirname, '..', 'helpers', 'udp-flood.mjs');
const FAKE_PEER = join(import.meta.dirname, '..', 'helpers', 'udp-fake-peer.mjs');

describe.skipIf(!!skip)('udp data path between three namespace hosts', () => {
  let lab: UdpLab;

  beforeAll(async () => {
    lab = await buildUdpLab(3);
  });
  afterAll(async () => {
    await lab?.cleanup();
  });

  const host = (n: number) => lab.hosts[n - 1]!;
  const ping = async (fromNs: string, to: string, extra: string[] = []) =>
    (await run('ping', ['-c', '2', '-i', '0.2', '-W', '2', ...extra, to], { netns: fromNs, allowFail: true })).stdout;

  it('gives the TUN flannel addressing: <subnet>.0/32, route <Network> dev tun, MTU iface-28', async () => {
    const h = host(1);
    const addr = (await run('ip', ['-4', '-o', 'addr', 'show', 'dev', 'weft-udp'], { netns: h.ns })).stdout;
    expect(addr).toContain('inet 10.244.1.0/32');
    const route = (await run('ip', ['-4', 'route', 'show', 'dev', 'weft-udp'], { netns: h.ns })).stdout;
    expect(route).toContain('10.244.0.0/16');
    const link = (await run('ip', ['-o', 'link', 'show', 'weft-udp'], { netns: h.ns })).stdout;
    expect(link).toContain('mtu 1472');
    const sock = (await run('ss', ['-uln'], { netns: h.ns })).stdout;
    expect(sock).toContain('192.0.2.1:8285');
  });

  it('carries pings pod to pod across hosts, and host to remote pod', async () => {
    expect(parsePing(await ping(host(1).pod, host(2).podIp)).received).toBe(2);
    expect(parsePing(await ping(host(3).pod, host(1).podIp)).received).toBe(2);
    expect(parsePing(await ping(host(2).ns, host(3).podIp)).received).toBe(2);
    const s = host(1).backend.stats()!;
    expect(s.counters.udp_sent_packets).toBeGreaterThan(0);
    expect(s.counters.tun_write_packets).toBeGreaterThan(0);
  });

  it('passes a DF ping at TUN MTU - 28 and refuses one byte more', async () => {
    const ok = await ping(host(1).pod, host(2).podIp, ['-M', 'do', '-s', String(1472 - 28)]);
    expect(parsePing(ok).received).toBe(2);
    const tooBig = await ping(host(1).pod, host(2).podIp, ['-M', 'do', '-s', String(1472 - 28 + 1)]);
    expect(parsePing(tooBig).received).toBe(0);
  });

  it('moves a TCP stream intact (TSO split in user space, checksums recomputed)', async () => {
    const script = `
      const net = require('node:net'); const crypto = require('node:crypto');
      const [mode, addr, size] = process.argv.slice(1);
      if (mode === 'server') {
        const srv = net.createServer((c) => { const h = crypto.createHash('sha256'); let n = 0;
          c.on('data', (d) => { h.update(d); n += d.length; });
          c.on('end', () => { process.stdout.write(JSON.stringify({ n, sha: h.digest('hex') })); srv.close(); }); });
        srv.listen(5201, addr, () => process.stderr.write('listening\\n'));
      } else {
        const buf = crypto.createHash('sha512').update('weft').digest(); const total = Number(size);
        const data = Buffer.alloc(total); for (let i = 0; i < total; i += buf.length) buf.copy(data, i);
        for (let i = 0; i < total; i += 4099) data[i] = i & 255;
        const sha = crypto.createHash('sha256').update(data).digest('hex');
        const c = net.connect(5201, addr, () => c.end(data)); c.on('close', () => process.stdout.write(JSON.stringify({ n: total, sha })));
      }`;
    const server = run('node', ['-e', script, 'server', host(2).podIp], { netns: host(2).pod, timeoutMs: 60_000 });
    await waitFor(
      async () => (await run('ss', ['-tln'], { netns: host(2).pod })).stdout.includes(':5201'),
      { timeoutMs: 10_000, what: 'tcp server listening' },
    );
    const before = host(1).backend.stats()!.counters;
    const client = await run('node', ['-e', script, 'client', host(2).podIp, String(24 * 1024 * 1024)], {
      netns: host(1).pod,
      timeoutMs: 60_000,
    });
    const got = JSON.parse((await server).stdout) as { n: number; sha: string };
    const sent = JSON.parse(client.stdout) as { n: number; sha: string };
    expect(got).toEqual(sent);
    const after = host(1).backend.stats()!.counters;
    expect(after.udp_sent_bytes! - before.udp_sent_bytes!).toBeGreaterThan(24 * 1024 * 1024);
    // The kernel handed over TSO super-packets and the addon split them.
    expect(after.tso_packets! - before.tso_packets!).toBeGreaterThan(0);
  });

  it('answers net-unreachable for a removed peer and reaches it again once re-added', async () => {
    await lab.syncAll([{ host: 1, without: [3] }]);
    try {
      const gone = await ping(host(1).pod, host(3).podIp);
      expect(parsePing(gone)).toEqual({ received: 0, unreachable: true });
      expect(gone).toContain('From 10.244.0.0');
      expect(host(1).backend.stats()!.txDrops.no_route).toBeGreaterThan(0);
      expect(host(1).backend.stats()!.counters.icmp_sent).toBeGreaterThan(0);
      expect(host(1).backend.peerTable().map((p) => p.subnet)).toEqual(['10.244.2.0/24']);
    } finally {
      await lab.syncAll();
    }
    expect(parsePing(await ping(host(1).pod, host(3).podIp)).received).toBe(2);
  });

  it('speaks flannel\'s wire format with a peer that is not weft (bare IPv4 in UDP, port 8285 both ends)', async () => {
    // Host 4 is a hand-written peer: lease 10.244.4.0/24 at 192.0.2.4.
    const peerNs = await lab.sandbox.create('fp');
    await lab.sandbox.link({ ns: peerNs, ifname: 'eth0', cidr: '192.0.2.4/24' }, { ns: lab.sw, ifname: 'portfp' });
    await run('ip', ['link', 'set', 'portfp', 'master', 'br0'], { netns: lab.sw });
    const h1 = host(1);
    const fake = { subnet: parseCidr('10.244.4.0/24'), attrs: { PublicIP: '192.0.2.4', BackendType: 'udp' } };
    await h1.backend.sync([...lab.hosts.filter((h) => h !== h1).map((h) => h.lease), fake]);
    try {
      const r = await run('node', [FAKE_PEER, '192.0.2.4', '8285', h1.publicIp, '10.244.4.2', h1.podIp], {
        netns: peerNs,
        timeoutMs: 20_000,
      });
      const got = JSON.parse(r.stdout) as { from: string; fromPort: number; hex: string };
      expect(got.from).toBe(h1.publicIp);
      expect(got.fromPort).toBe(8285);
      const pkt = Buffer.from(got.hex, 'hex');
      // The payload is exactly one IPv4 packet: the pod's echo reply.
      expect(pkt[0]).toBe(0x45);
      expect(pkt.readUInt16BE(2)).toBe(pkt.length);
      expect(pkt[9]).toBe(1);
      expect([...pkt.subarray(12, 20)]).toEqual([10, 244, 1, 2, 10, 244, 4, 2]);
      expect(pkt[20]).toBe(0); // echo reply
      expect(pkt.readUInt16BE(24)).toBe(0x7765);
      // Pod sends TTL 64; host 1 forwards (63) and the data path decrements as flannel does (62).
      expect(pkt[8]).toBe(62);
    } finally {
      await lab.syncAll();
    }
  });

  it('drops 100k bad datagrams, counts each by reason, and keeps forwarding', async () => {
    const h1 = host(1);
    const attacker = await lab.sandbox.create('x');
    await lab.sandbox.link({ ns: attacker, ifname: 'eth0', cidr: '192.0.2.99/24' }, { ns: lab.sw, ifname: 'portx' });
    await run('ip', ['link', 'set', 'portx', 'master', 'br0'], { netns: lab.sw });
    const before = h1.backend.stats()!;
    const flood = async (ns: string, mode: string, count: number, src?: string) => {
      const args = [FLOOD, h1.publicIp, '8285', mode, String(count), ...(src ? [src, h1.podIp] : [])];
      const r = await run('node', args, { netns: ns, timeoutMs: 120_000 });
      return (JSON.parse(r.stdout) as { sent: number }).sent;
    };
    // From a known peer (host 3): random bytes, broken headers, spoofed
    // inner sources. From a stranger: well-formed packets.
    const random = await flood(host(3).ns, 'random', 25_000);
    const truncated = await flood(host(3).ns, 'truncated', 25_000, '10.244.3.9');
    const spoofed = await flood(host(3).ns, 'spoofed', 25_000, '10.244.2.9');
    const stranger = await flood(attacker, 'valid', 25_000, '10.244.3.9');
    expect(random + truncated + spoofed + stranger).toBe(100_000);

    const malformed = ['short', 'bad_version', 'bad_ihl', 'length_mismatch', 'bad_checksum'];
    const delta = (s: typeof before, k: string) => s.rxDrops[k]! - before.rxDrops[k]!;
    const counted = await waitFor(
      () => {
        const s = h1.backend.stats()!;
        const bad = malformed.reduce((sum, k) => sum + delta(s, k), 0);
        const total = bad + delta(s, 'spoofed_source') + delta(s, 'unknown_peer');
        return total >= 100_000 ? s : undefined;
      },
      { timeoutMs: 30_000, what: 'drop counters to reach 100k' },
    );
    expect(malformed.reduce((sum, k) => sum + delta(counted, k), 0)).toBe(random + truncated);
    expect(delta(counted, 'spoofed_source')).toBe(spoofed);
    expect(delta(counted, 'unknown_peer')).toBe(stranger);
    // The truncated set holds all three header faults.
    for (const k of ['short', 'bad_ihl', 'length_mismatch']) expect(delta(counted, k)).toBeGreaterThan(0);
    // Still alive and forwarding.
    expect(parsePing(await ping(host(3).pod, h1.podIp)).received).toBe(2);
    expect(parsePing(await ping(h1.pod, host(2).podIp)).received).toBe(2);
  });
});
