/**
 * weftd (udp backend) on a lab with a real etcd, next to a stand-in for a
 * flanneld udp host (h3: its weftd stopped, its lease rewritten exactly as
 * flanneld v0.20.2 writes it, test/helpers/udp-fake-peer.mjs speaking
 * flannel's wire format from 192.0.2.3:8285), then hostile data in etcd:
 * junk on h2's own key, alias keys, a 0.0.0.0 PublicIP, a /25 inside h3's
 * /24, two 1 MB values. weftd must refuse all of it without a retry storm
 * (etcd's own request counter) and keep forwarding to h3.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { ETCD_ENDPOINT, labDown, labEtcd, labExec, labUp, readState, stopWeftd, type LabStatus } from '../../src/lab/index.js';
import { isRoot } from '../helpers/netns.js';
import { uniqueLabId } from '../helpers/lab.js';

const id = uniqueLabId('hl');
const FAKE_PEER = join(import.meta.dirname, '..', 'helpers', 'udp-fake-peer.mjs');
const WEFTCTL = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'weftctl.js');
const PREFIX = '/coreos.com/network/subnets/';
const FLANNEL_UDP_VALUE = '{"PublicIP":"192.0.2.3","PublicIPv6":null}';

const keyOf = (subnet: string) => `${PREFIX}${subnet.replace('/', '-')}`;

async function httpIn(host: string, path: string): Promise<{ code: string; body: string }> {
  const r = await labExec(id, host, ['curl', '-sS', '--max-time', '3', '-w', '\n%{http_code}', `http://127.0.0.1:9808${path}`], { allowFail: true });
  const lines = r.stdout.trimEnd().split('\n');
  return { code: lines.pop() ?? '', body: lines.join('\n') };
}

function metricValue(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (!labels && l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').pop()) : NaN;
}

/** gRPC requests etcd has started, all methods summed (the JSON gateway turns every weft call into one). */
async function etcdRequests(): Promise<number> {
  const sw = readState(id)!.switchNetns;
  const text = (await run('curl', ['-sS', '--max-time', '3', `${ETCD_ENDPOINT}/metrics`], { netns: sw })).stdout;
  let sum = 0;
  for (const l of text.split('\n')) if (l.startsWith('grpc_server_started_total{')) sum += Number(l.split(' ').pop());
  return sum;
}

describe.skipIf(!isRoot)('weftd udp next to a flanneld udp host, and hostile lease data', () => {
  let status: LabStatus;
  let h3Subnet: string;
  let h3Base: string;
  let h1Pod: string;

  /** The fake flanneld host sends an echo from `innerSrc` to h1's pod; h1 must answer to 192.0.2.3:8285. */
  async function exchange(innerSrc: string): Promise<{ from?: string; fromPort?: number; hex?: string; error?: string }> {
    const r = await labExec(id, 'h3', [process.execPath, FAKE_PEER, '192.0.2.3', '8285', '192.0.2.1', innerSrc, h1Pod], {
      allowFail: true,
      timeoutMs: 15_000,
    });
    return JSON.parse(r.stdout.trim().split('\n').pop() || '{"error":"no output"}') as { from?: string; hex?: string; error?: string };
  }
  const isEchoReply = (hex: string | undefined, from: string, to: string) => {
    if (!hex) return false;
    const b = Buffer.from(hex, 'hex');
    return b[9] === 1 && b[20] === 0 && [...b.subarray(12, 16)].join('.') === from && [...b.subarray(16, 20)].join('.') === to;
  };

  beforeAll(async () => {
    status = await labUp({ id, hosts: 3, podsPerHost: 1, backend: 'udp' });
    h3Subnet = status.hosts[2]!.subnet!;
    h3Base = h3Subnet.split('/')[0]!.split('.').slice(0, 3).join('.');
    h1Pod = status.hosts[0]!.pods[0]!.ip!;
    // h3 becomes the flanneld stand-in: no weftd, its UDP port free for the fake peer.
    await stopWeftd(id, 'h3');
  }, 240_000);
  afterAll(async () => {
    await labDown(id);
    const left = (await run('ip', ['netns', 'list'])).stdout;
    expect(left).not.toContain(`${id}-`);
  });

  it("takes flanneld's udp lease (no BackendType) as a peer both ways, and weftctl leases lists it", async () => {
    const etcd = labEtcd(id);
    // Remove h3's weftd lease first, so h1 provably drops it and must take it back from flannel's form.
    await etcd.del(keyOf(h3Subnet));
    await waitFor(async () => metricValue((await httpIn('h1', '/metrics')).body, 'weftd_peers') === 1, { timeoutMs: 20_000 });
    await etcd.put(keyOf(h3Subnet), FLANNEL_UDP_VALUE);
    await waitFor(async () => metricValue((await httpIn('h1', '/metrics')).body, 'weftd_peers') === 2, { timeoutMs: 20_000 });
    const got = await exchange(`${h3Base}.130`);
    expect(got.error).toBeUndefined();
    expect(got.from).toBe('192.0.2.1');
    expect(got.fromPort).toBe(8285);
    expect(isEchoReply(got.hex, h1Pod, `${h3Base}.130`)).toBe(true);
    const sw = readState(id)!.switchNetns;
    const out = (await run(process.execPath, [WEFTCTL, '--etcd-endpoints', ETCD_ENDPOINT, 'leases'], { netns: sw })).stdout;
    expect(out).toMatch(new RegExp(`${h3Subnet.replace(/\./g, '\\.')}\\s+192\\.0\\.2\\.3\\s+\\(none\\)\\s+never`));
  });

  it('refuses junk, aliases, 0.0.0.0, an overlap and 1 MB values without a retry storm or losing h3', async () => {
    const etcd = labEtcd(id);
    const h2Subnet = status.hosts[1]!.subnet!;
    const h2File = readState(id)!.hosts[1]!.subnetFile;
    const h2Env = readFileSync(h2File, 'utf8');
    const junk = '{"PublicIP":"192.0.2.2","BackendType":"ud';
    const used = new Set(status.hosts.map((h) => h.subnet));
    const spare = [200, 201, 202, 203].map((n) => `10.244.${n}.0/24`).filter((s) => !used.has(s));
    const big = `{"PublicIP":"192.0.2.99","BackendType":"udp","BackendData":"${'x'.repeat(1024 * 1024)}"}`;
    const alias = `${PREFIX}${h3Subnet.replace('/', '-')}&x`;
    const before = await etcdRequests();
    await etcd.put(keyOf(h2Subnet), junk);
    await etcd.put(alias, '{"PublicIP":"192.0.2.88","BackendType":"udp"}');
    await etcd.put(`${PREFIX}${h3Base}.128-25`, '{"PublicIP":"192.0.2.77","PublicIPv6":null}');
    await etcd.put(keyOf(spare[0]!), '{"PublicIP":"0.0.0.0","BackendType":"udp"}');
    await etcd.put(keyOf(spare[1]!), big);
    await etcd.put(keyOf(spare[2]!), big);
    await waitFor(async () => metricValue((await httpIn('h1', '/metrics')).body, 'weftd_lease_invalid_keys') === 6, { timeoutMs: 30_000 });

    // A measurement window, not a synchronisation: how many etcd requests the
    // two weftd make while the junk sits on h2's key (the storm was ~600/s).
    const start = await etcdRequests();
    expect(start - before).toBeGreaterThanOrEqual(6); // the counter moves with our own six puts
    const t0 = Date.now();
    await waitFor(() => Date.now() - t0 >= 8000, { timeoutMs: 20_000, intervalMs: 500 });
    const during = (await etcdRequests()) - start;
    const seconds = (Date.now() - t0) / 1000;
    console.log(`etcd requests: ${during} in ${seconds.toFixed(1)} s with junk on h2's own key (${start - before} during setup)`);
    expect(during).toBeLessThan(10 + 5 * seconds);

    // h2 lists its own key in /readyz and stays ready (it holds its subnet); nothing was written over.
    await waitFor(async () => (await httpIn('h2', '/readyz')).body.includes('(our own key)'), { timeoutMs: 20_000 });
    expect((await httpIn('h2', '/readyz')).code).toBe('200');
    expect(await etcd.get(keyOf(h2Subnet))).toBe(junk);
    expect(readFileSync(h2File, 'utf8')).toBe(h2Env);
    // On h1 the unparseable update drops h2 as a peer (its old view is not kept); h3 stays.
    await waitFor(async () => metricValue((await httpIn('h1', '/metrics')).body, 'weftd_peers') === 1, { timeoutMs: 20_000 });
    const h1Ready = await httpIn('h1', '/readyz');
    expect(h1Ready.code).toBe('200');
    expect(h1Ready.body).toContain(`"${h2Subnet.replace('/', '-')}" value`);
    expect(h1Ready.body).toContain('invalid lease keys: 6');
    const metrics = (await httpIn('h1', '/metrics')).body;
    for (const [reason, n] of [
      ['value', 1],
      ['key', 1],
      ['overlap', 1],
      ['public-ip', 1],
      ['too-large', 2],
    ] as const) {
      expect(metricValue(metrics, 'weftd_lease_invalid_total', `{reason="${reason}"}`), reason).toBe(n);
    }
    // h3 is still reached, also from inside the refused /25, and after the alias is deleted again.
    expect(isEchoReply((await exchange(`${h3Base}.130`)).hex, h1Pod, `${h3Base}.130`)).toBe(true);
    await etcd.del(alias);
    await waitFor(async () => metricValue((await httpIn('h1', '/metrics')).body, 'weftd_lease_invalid_keys') === 5, { timeoutMs: 20_000 });
    expect(isEchoReply((await exchange(`${h3Base}.5`)).hex, h1Pod, `${h3Base}.5`)).toBe(true);
  });
});
