import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';
import { ep, slice, svc } from '../unit/proxy/fixtures.js';

/**
 * Namespaces: a client (192.0.2.10, off-cluster), a "node" running
 * weft-proxy (192.0.2.1, routes to the pods), two pods ep1 (10.244.1.2,
 * local to node-a) and ep2 (10.244.2.2, "on node-b") each serving HTTP on
 * 8080 ("<name> <client address>") and UDP on 5353 ("<name>").
 */
const SERVER = `
import http from 'node:http'; import dgram from 'node:dgram';
const name = process.argv[2];
http.createServer((req, res) => { res.setHeader('connection', 'close'); res.end(name + ' ' + req.socket.remoteAddress + '\\n'); }).listen(8080, '0.0.0.0');
const u = dgram.createSocket('udp4'); u.on('message', (m, r) => u.send(name + '\\n', r.port, r.address)); u.bind(5353);
`;
const UDP_CLIENT = `
import dgram from 'node:dgram';
const [ip, port] = process.argv.slice(2);
const s = dgram.createSocket('udp4');
const t = setTimeout(() => { console.log('timeout'); process.exit(0); }, 1500);
s.on('message', (m) => { process.stdout.write(m.toString()); clearTimeout(t); s.close(); });
s.bind(40000, () => s.send('q', Number(port), ip));
`;

const udpPorts = [{ name: 'dns', port: 5353, protocol: 'UDP' as const }];

describe.skipIf(!isRoot).each(['iptables', 'nftables'])('weft-proxy end to end in namespaces (%s mode)', (mode) => {
  const sb = new NetnsSandbox();
  const ns = { client: '', node: '', ep1: '', ep2: '' };
  let dir: string;
  let manifests: string;
  let proxy: ChildProcess | undefined;
  let proxyLog = '';

  const write = (name: string, objs: unknown[]) => writeFileSync(join(manifests, `${name}.yaml`), objs.map((o) => stringify(o)).join('---\n'));
  const curl = (where: string, args: string[]) => run('curl', ['-s', '--max-time', '3', ...args], { netns: where, allowFail: true });
  const startProxy = () => {
    const p = spawn(
      'ip',
      ['netns', 'exec', ns.node, process.execPath, 'dist/cli/weft-proxy.js', '--etcd-endpoints', '', '--manifests', manifests, '--hostname-override', 'node-a',
        '--cluster-cidr', '10.244.0.0/16', '--node-ip', '192.0.2.1', '--min-sync-period', '100ms', '--sync-period', '60s', '--proxy-mode', mode],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    p.stderr!.on('data', (d) => (proxyLog = (proxyLog + d).slice(-20_000)));
    return p;
  };
  const stopProxy = async (p: ChildProcess) => {
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    p.kill('SIGTERM');
    return exited;
  };

  beforeAll(async () => {
    if (!existsSync('dist/cli/weft-proxy.js')) await run('npx', ['tsc', '-p', 'tsconfig.json'], { allowFail: true });
    dir = mkdtempSync(join(tmpdir(), 'weft-proxy-e2e-'));
    manifests = join(dir, 'manifests');
    await run('mkdir', ['-p', manifests]);
    writeFileSync(join(dir, 'server.mjs'), SERVER);
    writeFileSync(join(dir, 'udp.mjs'), UDP_CLIENT);
    for (const k of Object.keys(ns) as Array<keyof typeof ns>) ns[k] = await sb.create(`px${k}`);
    await sb.link({ ns: ns.client, ifname: 'eth0', cidr: '192.0.2.10/24' }, { ns: ns.node, ifname: 'eth0', cidr: '192.0.2.1/24' });
    await sb.link({ ns: ns.ep1, ifname: 'eth0', cidr: '10.244.1.2/24' }, { ns: ns.node, ifname: 'pod1', cidr: '10.244.1.1/24' });
    await sb.link({ ns: ns.ep2, ifname: 'eth0', cidr: '10.244.2.2/24' }, { ns: ns.node, ifname: 'pod2', cidr: '10.244.2.1/24' });
    await run('ip', ['-n', ns.client, 'route', 'add', 'default', 'via', '192.0.2.1']);
    // The node's default route points at an upstream router that is never used: a node needs a route
    // for ClusterIPs to reach the FORWARD hook, where services without endpoints are refused.
    await run('ip', ['-n', ns.node, 'route', 'add', 'default', 'via', '192.0.2.254']);
    await run('ip', ['-n', ns.ep1, 'route', 'add', 'default', 'via', '10.244.1.1']);
    await run('ip', ['-n', ns.ep2, 'route', 'add', 'default', 'via', '10.244.2.1']);
    await sb.exec(ns.node, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    // Client and router share eth0, so the node would send an ICMP redirect first, and the kernel's ICMP
    // rate limit (shared per peer) then swallows the REJECT's port-unreachable.
    await sb.exec(ns.node, 'sysctl', ['-qw', 'net.ipv4.conf.all.send_redirects=0', 'net.ipv4.conf.eth0.send_redirects=0']);
    for (const [k, n] of [['ep1', ns.ep1], ['ep2', ns.ep2]] as const) {
      spawn('ip', ['netns', 'exec', n, process.execPath, join(dir, 'server.mjs'), k], { stdio: 'ignore' }).unref();
    }
    await waitFor(async () => (await curl(ns.node, ['http://10.244.2.2:8080/'])).stdout.startsWith('ep2'), { what: 'pod servers', timeoutMs: 20_000 });

    const both = [ep('10.244.1.2', 'node-a'), ep('10.244.2.2', 'node-b')];
    write('web', [svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }), slice('web', both)]);
    write('sticky', [svc('sticky', { clusterIP: '10.96.0.11', sessionAffinity: 'ClientIP' }), slice('sticky', both)]);
    write('empty', [svc('empty', { clusterIP: '10.96.0.12' })]);
    write('local', [svc('local', { clusterIP: '10.96.0.13', type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, nodePort: 30081 }] }), slice('local', [ep('10.244.1.2', 'node-a')])]);
    write('remote', [svc('remote', { clusterIP: '10.96.0.15', type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, nodePort: 30082 }] }), slice('remote', [ep('10.244.2.2', 'node-b')])]);
    write('self', [svc('self', { clusterIP: '10.96.0.14' }), slice('self', [ep('10.244.1.2', 'node-a')])]);
    write('dns', [svc('dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }), slice('dns', [ep('10.244.1.2')], udpPorts)]);
    proxy = startProxy();
    await waitFor(async () => (await curl(ns.client, ['http://10.96.0.10/'])).stdout.startsWith('ep'), { what: `service rules (proxy log: ${proxyLog.slice(-500)})`, timeoutMs: 30_000 });
  });

  afterAll(async () => {
    if (proxy && proxy.exitCode === null) await stopProxy(proxy);
    await sb.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ClusterIP spreads 100 connections over both endpoints (each >= 20%)', async () => {
    const urls = Array.from({ length: 100 }, () => 'http://10.96.0.10/');
    const r = await curl(ns.client, ['-H', 'Connection: close', ...urls]);
    const names = r.stdout.trim().split('\n').map((l) => l.split(' ')[0]);
    expect(names).toHaveLength(100);
    expect(names.filter((n) => n === 'ep1').length).toBeGreaterThanOrEqual(20);
    expect(names.filter((n) => n === 'ep2').length).toBeGreaterThanOrEqual(20);
  });

  it('NodePort answers on the node address', async () => {
    expect((await curl(ns.client, ['http://192.0.2.1:30080/'])).stdout).toMatch(/^ep[12] /);
  });

  it('ClientIP affinity sticks to one endpoint', async () => {
    const r = await curl(ns.client, ['-H', 'Connection: close', ...Array.from({ length: 20 }, () => 'http://10.96.0.11/')]);
    const names = new Set(r.stdout.trim().split('\n').map((l) => l.split(' ')[0]));
    expect(names.size).toBe(1);
  });

  it('a service without endpoints is refused at once', async () => {
    const r = await curl(ns.client, ['http://10.96.0.12/']);
    expect(r.code).toBe(7); // connection refused (REJECT), not a timeout (28)
  });

  it('externalTrafficPolicy Local: local endpoint answers with the client source IP; no local endpoint drops', async () => {
    expect((await curl(ns.client, ['http://192.0.2.1:30081/'])).stdout.trim()).toBe('ep1 192.0.2.10');
    const r = await run('curl', ['-s', '--max-time', '1', 'http://192.0.2.1:30082/'], { netns: ns.client, allowFail: true });
    expect(r.code).toBe(28); // dropped: timeout
  });

  it('a pod reaches itself through its own service (hairpin)', async () => {
    expect((await curl(ns.ep1, ['http://10.96.0.14/'])).stdout).toMatch(/^ep1 /);
  });

  it('removing a UDP endpoint deletes its conntrack entries, so the same client flow moves to the new endpoint', async () => {
    const ask = async () => (await run(process.execPath, [join(dir, 'udp.mjs'), '10.96.0.53', '53'], { netns: ns.client })).stdout.trim();
    expect(await ask()).toBe('ep1');
    const flows = async () => (await run('conntrack', ['-L', '-p', 'udp', '--dst-nat', '10.244.1.2'], { netns: ns.node, allowFail: true })).stdout;
    expect(await flows()).toContain('sport=40000');
    write('dns', [svc('dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }), slice('dns', [ep('10.244.2.2')], udpPorts)]);
    await waitFor(async () => !(await flows()).includes('sport=40000'), { what: 'stale conntrack entry deleted', timeoutMs: 15_000 });
    expect(await ask()).toBe('ep2');
  });

  it('healthz answers 200 inside the node', async () => {
    const r = await curl(ns.node, ['-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:10256/healthz']);
    expect(r.stdout).toBe('200');
  });

  it('1000 invalid manifests are refused and the proxy keeps serving', async () => {
    const bad = Array.from({ length: 1000 }, (_, i) => svc(`bad-${i}`, { clusterIP: '10.96.1.1', ports: [{ port: 70000 + i }] }));
    write('zz-bad', bad);
    await waitFor(() => proxyLog.includes('bad-999'), { what: 'refusal logged', timeoutMs: 20_000 });
    expect(proxyLog).toMatch(/Service default\/bad-999: spec.ports\[0\].port: must be an integer between 1 and 65535/);
    expect((await curl(ns.client, ['http://10.96.0.10/'])).stdout).toMatch(/^ep[12] /);
    rmSync(join(manifests, 'zz-bad.yaml'));
  });

  it('a restart of weft-proxy does not interrupt a running curl loop', async () => {
    const urls = Array.from({ length: 40 }, () => 'http://10.96.0.10/');
    const loop = run('curl', ['-s', '--max-time', '20', '--rate', '20/s', '-H', 'Connection: close', ...urls], { netns: ns.client, allowFail: true });
    expect(await stopProxy(proxy!)).toBe(0);
    proxy = startProxy();
    await waitFor(() => proxyLog.includes('all sources listed'), { what: 'proxy restarted' });
    const r = await loop;
    expect(r.stdout.trim().split('\n').filter((l) => /^ep[12] /.test(l))).toHaveLength(40);
  });
});
