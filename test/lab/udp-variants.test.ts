import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { tryLoadNative } from '../../src/backends/udp/native.js';
import type { UdpBackendOptions } from '../../src/backends/udp/config.js';
import { isRoot } from '../helpers/netns.js';
import { buildUdpLab, parsePing, type UdpLab } from '../helpers/udp-lab.js';

const { native, reason } = tryLoadNative();
const skip = !isRoot ? 'needs root' : !native ? `native addon unavailable: ${reason}` : undefined;

/** Sends `bytes` pod1 -> pod2 over TCP with socat-free node one-liners; returns both sha256s. */
async function tcpTransfer(lab: UdpLab, bytes: number): Promise<{ sent: string; got: string }> {
  const [h1, h2] = lab.hosts;
  const server = run(
    'node',
    [
      '-e',
      `const s=require('net').createServer(c=>{const h=require('crypto').createHash('sha256');c.on('data',d=>h.update(d));c.on('end',()=>{process.stdout.write(h.digest('hex'));s.close()})});s.listen(5202,'${h2!.podIp}')`,
    ],
    { netns: h2!.pod, timeoutMs: 60_000 },
  );
  await waitFor(async () => (await run('ss', ['-tln'], { netns: h2!.pod })).stdout.includes(':5202'), {
    timeoutMs: 10_000,
    what: 'server',
  });
  const client = await run(
    'node',
    [
      '-e',
      `const d=Buffer.alloc(${bytes});for(let i=0;i<d.length;i++)d[i]=(i*131+(i>>9))&255;const h=require('crypto').createHash('sha256').update(d).digest('hex');const c=require('net').connect(5202,'${h2!.podIp}',()=>c.end(d));c.on('close',()=>process.stdout.write(h))`,
    ],
    { netns: h1!.pod, timeoutMs: 60_000 },
  );
  return { sent: client.stdout, got: (await server).stdout };
}

const variants: [string, UdpBackendOptions][] = [
  ['no offload (plain TUN, one packet per read)', { offload: false }],
  ['offload without GRO, UDP GSO or UDP_GRO', { gro: false, udpGso: false, udpGro: false }],
];

describe.skipIf(!!skip).each(variants)('udp data path, %s', (_name, opts) => {
  let lab: UdpLab;
  beforeAll(async () => {
    lab = await buildUdpLab(2, opts);
  });
  afterAll(async () => {
    await lab?.cleanup();
  });

  it('pings across and moves a TCP stream intact', async () => {
    const [h1, h2] = lab.hosts;
    const p = await run('ping', ['-c', '2', '-i', '0.2', '-W', '2', h2!.podIp], { netns: h1!.pod, allowFail: true });
    expect(parsePing(p.stdout).received).toBe(2);
    const t = await tcpTransfer(lab, 8 * 1024 * 1024);
    expect(t.got).toHaveLength(64);
    expect(t.got).toBe(t.sent);
    const s = h1!.backend.stats()!.counters;
    if (opts.offload === false) expect(s.tso_packets).toBe(0);
    expect(h2!.backend.stats()!.counters.gro_writes).toBe(0);
  });
});

describe.skipIf(!!skip)('udp data path recovery', () => {
  let lab: UdpLab;
  beforeAll(async () => {
    lab = await buildUdpLab(2);
  });
  afterAll(async () => {
    await lab?.cleanup();
  });

  it('reopens the TUN when someone deletes it, on the next sync', async () => {
    const [h1, h2] = lab.hosts;
    const asked: string[] = [];
    h2!.backend.onNeedSync = (why) => asked.push(why);
    await run('ip', ['link', 'del', 'weft-udp'], { netns: h2!.ns });
    const lost = await run('ping', ['-c', '1', '-W', '1', h2!.podIp], { netns: h1!.pod, allowFail: true });
    expect(parsePing(lost.stdout).received).toBe(0);
    // The reader thread notices and parks instead of spinning on the dead fd.
    await waitFor(() => h2!.backend.health().tunDead, { timeoutMs: 5_000, what: 'tunDead' });
    // ... and the backend asks the daemon for an early sync.
    await waitFor(() => asked.length > 0, { timeoutMs: 10_000, what: 'onNeedSync' });
    const stats = await h2!.backend.sync([h1!.lease]);
    expect(stats.fixes).toBeGreaterThan(0);
    expect(stats.peers).toBe(1);
    const back = await run('ping', ['-c', '2', '-i', '0.2', '-W', '2', h2!.podIp], { netns: h1!.pod, allowFail: true });
    expect(parsePing(back.stdout).received).toBe(2);
  });

  it('puts a removed route back and reports it as a fix; a clean sync fixes nothing', async () => {
    const [h1, h2] = lab.hosts;
    await run('ip', ['route', 'del', '10.244.0.0/16', 'dev', 'weft-udp'], { netns: h1!.ns });
    expect((await h1!.backend.sync([h2!.lease])).fixes).toBe(1);
    expect((await run('ip', ['route', 'show', 'dev', 'weft-udp'], { netns: h1!.ns })).stdout).toContain('10.244.0.0/16');
    expect((await h1!.backend.sync([h2!.lease])).fixes).toBe(0);
  });

  it('cleanup removes the device', async () => {
    const [h1] = lab.hosts;
    await h1!.backend.cleanup();
    const r = await run('ip', ['link', 'show', 'weft-udp'], { netns: h1!.ns, allowFail: true });
    expect(r.code).not.toBe(0);
  });
});
