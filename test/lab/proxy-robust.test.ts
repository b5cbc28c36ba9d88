import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { svcChain } from '../../src/proxy/iptables/names.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';
import { ep, slice, svc } from '../unit/proxy/fixtures.js';

/**
 * Robustness of iptables mode (issue 19): a "node" namespace running
 * weft-proxy from a manifest directory and one pod (10.244.1.2) serving HTTP
 * on 8080. Localhost node ports, a 50 000-address Endpoints object, a rule of
 * someone else's jumping to a weft chain, and /healthz while syncs fail (a
 * rigged iptables-nft-restore first on the proxy's PATH).
 */
const SERVER = `
import http from 'node:http';
const name = process.argv[2];
http.createServer((req, res) => { res.setHeader('connection', 'close'); res.end(name + ' ' + req.socket.remoteAddress + '\\n'); }).listen(8080, '0.0.0.0');
`;

describe.skipIf(!isRoot)('weft-proxy robustness in namespaces (iptables mode)', () => {
  const sb = new NetnsSandbox();
  let node = '';
  let pod = '';
  let dir = '';
  let manifests = '';
  let rig = '';
  let failFlag = '';
  let proxy: ChildProcess | undefined;
  let proxyLog = '';

  const write = (name: string, objs: unknown[]) => writeFileSync(join(manifests, `${name}.yaml`), objs.map((o) => stringify(o)).join('---\n'));
  const curl = (args: string[]) => run('curl', ['-s', '--max-time', '3', ...args], { netns: node, allowFail: true });
  const healthz = async () => (await curl(['-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:10256/healthz'])).stdout;
  const metric = async (name: string) => {
    const text = (await curl(['http://127.0.0.1:10249/metrics'])).stdout;
    return text.split('\n').filter((l) => l.startsWith(name));
  };
  const metricValue = async (name: string) => Number((await metric(name))[0]?.split(' ').at(-1) ?? NaN);
  const startProxy = (extra: string[] = [], env: NodeJS.ProcessEnv = process.env) => {
    proxyLog = '';
    const p = spawn(
      'ip',
      ['netns', 'exec', node, process.execPath, 'dist/cli/weft-proxy.js', '--etcd-endpoints', '', '--manifests', manifests, '--hostname-override', 'node-a',
        '--cluster-cidr', '10.244.0.0/16', '--min-sync-period', '100ms', '--sync-period', '60s', '--iptables-backend', 'nft', ...extra],
      { stdio: ['ignore', 'ignore', 'pipe'], env },
    );
    p.stderr!.on('data', (d) => (proxyLog = (proxyLog + d).slice(-200_000)));
    proxy = p;
    return p;
  };
  const stopProxy = async () => {
    const p = proxy;
    proxy = undefined;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
  };
  const webObjects = () => [svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }), slice('web', [ep('10.244.1.2', 'node-a')])];

  beforeAll(async () => {
    if (!existsSync('dist/cli/weft-proxy.js')) await run('npx', ['tsc', '-p', 'tsconfig.json'], { allowFail: true });
    dir = mkdtempSync(join(tmpdir(), 'weft-proxy-robust-'));
    manifests = join(dir, 'manifests');
    mkdirSync(manifests);
    writeFileSync(join(dir, 'server.mjs'), SERVER);
    // iptables-nft-restore that fails (saying why) while the flag file exists, else runs the real one.
    rig = join(dir, 'bin');
    mkdirSync(rig);
    failFlag = join(dir, 'fail');
    const real = (await run('sh', ['-c', 'command -v iptables-nft-restore'])).stdout.trim();
    writeFileSync(join(rig, 'iptables-nft-restore'), `#!/bin/sh\nif [ -e '${failFlag}' ]; then cat >/dev/null; echo 'rigged failure for the test' >&2; exit 1; fi\nexec '${real}' "$@"\n`);
    chmodSync(join(rig, 'iptables-nft-restore'), 0o755);
    node = await sb.create('rnode');
    pod = await sb.create('rpod');
    await sb.link({ ns: pod, ifname: 'eth0', cidr: '10.244.1.2/24' }, { ns: node, ifname: 'pod1', cidr: '10.244.1.1/24' });
    await run('ip', ['-n', pod, 'route', 'add', 'default', 'via', '10.244.1.1']);
    // The node's own address towards an "upstream" namespace, and a default route there (never used:
    // ClusterIPs need a route to reach the OUTPUT hook, where they are DNATed).
    const up = await sb.create('rup');
    await sb.link({ ns: node, ifname: 'eth0', cidr: '192.0.2.1/24' }, { ns: up, ifname: 'eth0', cidr: '192.0.2.254/24' });
    await run('ip', ['-n', node, 'route', 'add', 'default', 'via', '192.0.2.254']);
    await sb.exec(node, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    spawn('ip', ['netns', 'exec', pod, process.execPath, join(dir, 'server.mjs'), 'ep1'], { stdio: 'ignore' }).unref();
    await waitFor(async () => (await curl(['http://10.244.1.2:8080/'])).stdout.startsWith('ep1'), { what: 'pod server', timeoutMs: 20_000 });
    write('web', webObjects());
    startProxy();
    await waitFor(async () => (await curl(['http://10.96.0.10/'])).stdout.startsWith('ep1'), { what: 'service rules', timeoutMs: 30_000 }).catch((err: Error) => {
      throw new Error(`${err.message}; proxy log: ${proxyLog.slice(-1500)}`);
    });
  }, 90_000);

  afterAll(async () => {
    await stopProxy();
    await sb.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('127.0.0.1:<nodePort> answers from the node itself (route_localnet set, and logged)', async () => {
    expect((await sb.exec(node, 'sysctl', ['-n', 'net.ipv4.conf.all.route_localnet'])).stdout.trim()).toBe('1');
    expect(proxyLog).toContain('net.ipv4.conf.all.route_localnet');
    // Masqueraded: the pod sees the node's address on its link, not 127.0.0.1.
    expect((await curl(['http://127.0.0.1:30080/'])).stdout.trim()).toBe('ep1 10.244.1.1');
    const save = (await sb.exec(node, 'iptables-nft-save', ['-t', 'filter'])).stdout;
    expect(save).toContain('block incoming localnet connections');
  });

  it('a v1 Endpoints object with 50 000 addresses does not wedge syncs; a Service applied afterwards gets its rules', async () => {
    const addresses = Array.from({ length: 50_000 }, (_, i) => ({ ip: `10.245.${Math.floor(i / 250)}.${(i % 250) + 1}` }));
    const big = { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'big', namespace: 'default' }, subsets: [{ addresses, ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] }] };
    writeFileSync(join(manifests, 'big.json'), JSON.stringify(svc('big', { clusterIP: '10.96.0.20' })) + '\n---\n' + JSON.stringify(big));
    // JSON is YAML; the file source reads *.yaml.
    await run('mv', [join(manifests, 'big.json'), join(manifests, 'big.yaml')]);
    await waitFor(() => proxyLog.includes('Endpoints default/big'), { what: `truncation logged (log: ${proxyLog.slice(-500)})`, timeoutMs: 60_000 });
    write('after', [svc('after', { clusterIP: '10.96.0.21' }), slice('after', [ep('10.244.1.2', 'node-a')])]);
    await waitFor(async () => (await curl(['http://10.96.0.21/'])).stdout.startsWith('ep1'), { what: `rules of a Service applied after the big object (log: ${proxyLog.slice(-500)})`, timeoutMs: 60_000 });
    const sepCount = (await sb.exec(node, 'iptables-nft-save', ['-t', 'nat'])).stdout.split('\n').filter((l) => l.startsWith(':WEFT-SEP-')).length;
    expect(sepCount).toBeLessThanOrEqual(1000 + 10);
    expect(proxyLog).toMatch(/"had":50000|had=50000/);
    expect(await metric('weft_proxy_truncated_objects_total')).toEqual([expect.stringContaining('object="Endpoints default/big"')]);
    expect(await metricValue('kubeproxy_sync_proxy_rules_iptables_restore_failures_total')).toBe(0);
    expect(await healthz()).toBe('200');
    rmSync(join(manifests, 'big.yaml'));
  }, 150_000);

  it("a rule of someone else's jumping to a weft chain does not make syncs fail in a loop", async () => {
    const chain = svcChain('default/web:http', 'TCP');
    await sb.exec(node, 'iptables-nft', ['-t', 'nat', '-A', 'PREROUTING', '-s', '192.0.2.99/32', '-j', chain]);
    await sb.exec(node, 'iptables-nft', ['-t', 'nat', '-A', 'PREROUTING', '-j', 'WEFT-SERVICES']);
    const failedBefore = await metricValue('kubeproxy_sync_proxy_rules_iptables_restore_failures_total');
    rmSync(join(manifests, 'web.yaml'));
    await waitFor(async () => (await curl(['http://10.96.0.10/'])).code !== 0, { what: 'web service removed', timeoutMs: 30_000 });
    // Several more changes, each seen through: each needs a successful sync.
    for (let i = 0; i < 3; i++) {
      write(`more-${i}`, [svc(`more-${i}`, { clusterIP: `10.96.0.3${i}` }), slice(`more-${i}`, [ep('10.244.1.2', 'node-a')])]);
      await waitFor(async () => (await curl([`http://10.96.0.3${i}/`])).stdout.startsWith('ep1'), { what: `more-${i} (log: ${proxyLog.slice(-500)})`, timeoutMs: 30_000 });
    }
    // One failure at most (the partial sync that tried to delete the chain), then full syncs keep it.
    expect((await metricValue('kubeproxy_sync_proxy_rules_iptables_restore_failures_total')) - failedBefore).toBeLessThanOrEqual(1);
    const kept = await sb.exec(node, 'iptables-nft', ['-t', 'nat', '-S', chain], true);
    expect(kept.code).toBe(0);
    expect(kept.stdout.trim()).toBe(`-N ${chain}`);
    expect(proxyLog.split('\n').filter((l) => l.includes('flushed it and kept it') && l.includes(chain))).toHaveLength(1);
    expect(await healthz()).toBe('200');
  }, 120_000);

  it('--iptables-localhost-nodeports=false: 127.0.0.1:<nodePort> is not answered, other node addresses are; /healthz turns 503 while syncs fail', async () => {
    await stopProxy();
    write('web', webObjects());
    startProxy(['--iptables-localhost-nodeports=false'], { ...process.env, PATH: `${rig}:${process.env.PATH}` });
    await waitFor(async () => (await curl(['http://10.244.1.1:30080/'])).stdout.startsWith('ep1'), { what: `node port on the pod link address (log: ${proxyLog.slice(-500)})`, timeoutMs: 30_000 });
    expect((await curl(['http://127.0.0.1:30080/'])).code).not.toBe(0);
    expect(proxyLog).toContain('localhost node ports off');
    await waitFor(async () => (await healthz()) === '200', { what: 'healthy', timeoutMs: 10_000 });

    writeFileSync(failFlag, '');
    try {
      write('late', [svc('late', { clusterIP: '10.96.0.40' }), slice('late', [ep('10.244.1.2', 'node-a')])]);
      await waitFor(async () => (await healthz()) === '503', { what: `healthz 503 while syncs fail (log: ${proxyLog.slice(-500)})`, timeoutMs: 30_000 });
      expect(proxyLog).toContain('rigged failure for the test');
      // Backed off: far fewer failed syncs than one per min-sync-period (100 ms) would give.
      await waitFor(async () => (await metricValue('kubeproxy_sync_proxy_rules_iptables_restore_failures_total')) >= 5, { what: 'five failed syncs', timeoutMs: 30_000 });
    } finally {
      unlinkSync(failFlag);
    }
    await waitFor(async () => (await curl(['http://10.96.0.40/'])).stdout.startsWith('ep1'), { what: 'late service after failures stop', timeoutMs: 60_000 });
    await waitFor(async () => (await healthz()) === '200', { what: 'healthz 200 again', timeoutMs: 10_000 });
  }, 180_000);
});
