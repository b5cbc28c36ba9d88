/**
 * weft-proxy started the way kubeadm starts kube-proxy:
 * `--config=<config.conf> --hostname-override=node1`, with kubeadm 1.20's
 * KubeProxyConfiguration (healthzBindAddress and metricsBindAddress set to
 * what a DaemonSet gets, clientConnection.kubeconfig dropped since this
 * branch reads Services from a manifest directory), in a private network
 * namespace: it starts, writes rules, serves /healthz (kube-proxy's JSON),
 * /livez, /proxyMode, /configz and /metrics, and an idle weft-proxy does not
 * wake up many times a second. A config with an unknown field and a bad -v
 * exit 2 naming what is wrong.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/exec/run.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';

const repo = join(import.meta.dirname, '..', '..');
const bin = join(repo, 'dist', 'cli', 'weft-proxy.js');
const kubeadmConf = readFileSync(join(repo, 'test', 'unit', 'proxy', 'config-fixtures', 'kubeadm-1.20-config.conf'), 'utf8');
const cleanEnv = () => Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(WEFTD_|WEFT_PROXY_|WEFTCTL_|ETCD)/.test(k)));

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100)); // bounded poll
  }
}

/** curl inside the namespace (its loopback is private). */
async function get(ns: string, url: string): Promise<{ status: number; body: string; type: string }> {
  const r = await run('curl', ['-s', '--max-time', '5', '-o', '-', '-w', '\n%{http_code} %{content_type}', url], { netns: ns, allowFail: true });
  const at = r.stdout.lastIndexOf('\n');
  const [status, type] = r.stdout.slice(at + 1).split(' ');
  return { status: Number(status), body: r.stdout.slice(0, at), type: type ?? '' };
}

function ctxtSwitches(pid: number): number {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(s)![1]) + Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(s)![1]);
}

describe.skipIf(!isRoot)("weft-proxy with kubeadm's kube-proxy command line", () => {
  const sandbox = new NetnsSandbox();
  let ns = '';
  let dir = '';
  let proxy: ChildProcess | undefined;
  let out = '';

  beforeAll(async () => {
    ns = await sandbox.create('kcli');
    dir = mkdtempSync(join(tmpdir(), 'weft-proxy-kubecli-'));
    const manifests = join(dir, 'manifests');
    mkdirSync(manifests);
    writeFileSync(
      join(manifests, 'web.json'),
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80, protocol: 'TCP' }] } },
          {
            apiVersion: 'discovery.k8s.io/v1',
            kind: 'EndpointSlice',
            metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
            addressType: 'IPv4',
            endpoints: [{ addresses: ['10.244.1.5'], conditions: { ready: true }, nodeName: 'node1' }],
            ports: [{ port: 8080, protocol: 'TCP' }],
          },
        ],
      }),
    );
    // kubeadm's file, as a DaemonSet would run it: healthz on all addresses, the mark bit kube-proxy uses.
    const conf = kubeadmConf
      .replace('healthzBindAddress: ""', 'healthzBindAddress: 0.0.0.0:10256')
      .replace('metricsBindAddress: ""', 'metricsBindAddress: 127.0.0.1:10249')
      .replace('  masqueradeBit: null', '  masqueradeBit: 14')
      .replace('  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf', '  kubeconfig: ""')
      .replace('  maxPerCore: null', '  maxPerCore: 32768');
    writeFileSync(join(dir, 'config.conf'), conf);
    writeFileSync(join(dir, 'bad.conf'), `${kubeadmConf}foo: 1\n`.replace('  masqueradeBit: null', '  masqueradeBits: 14'));
  });

  afterAll(async () => {
    if (proxy && proxy.exitCode === null) proxy.kill('SIGKILL');
    await sandbox.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('starts from --config=config.conf --hostname-override=node1, writes rules and serves kube-proxy\'s endpoints', async () => {
    proxy = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, bin, `--config=${join(dir, 'config.conf')}`, '--hostname-override=node1', '--etcd-endpoints=', `--manifests=${join(dir, 'manifests')}`, '--v=2', '--alsologtostderr'],
      { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proxy.stdout!.on('data', (d) => (out += d));
    proxy.stderr!.on('data', (d) => (out += d));
    await until(`healthz 200\n${out}`, async () => proxy!.exitCode === null && (await get(ns, 'http://127.0.0.1:10256/healthz')).status === 200);

    const hz = await get(ns, 'http://127.0.0.1:10256/healthz');
    expect(hz.type).toBe('application/json');
    const body = JSON.parse(hz.body) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['lastUpdated', 'currentTime', 'nodeEligible']);
    expect(body.nodeEligible).toBe(true);
    expect(Number.isNaN(Date.parse(String(body.lastUpdated)))).toBe(false);
    // healthzBindAddress 0.0.0.0:10256 from the file is honoured: not only loopback.
    expect((await run('ss', ['-ltnH', 'sport = :10256'], { netns: ns })).stdout).toMatch(/0\.0\.0\.0:10256|\*:10256/);
    expect((await get(ns, 'http://127.0.0.1:10256/livez')).status).toBe(200);

    const mode = await get(ns, 'http://127.0.0.1:10249/proxyMode');
    expect(mode).toMatchObject({ status: 200, body: 'iptables' });
    const configz = JSON.parse((await get(ns, 'http://127.0.0.1:10249/configz')).body) as Record<string, Record<string, any>>;
    expect(configz['kubeproxy.config.k8s.io']).toMatchObject({
      kind: 'KubeProxyConfiguration',
      mode: 'iptables',
      hostnameOverride: 'node1',
      clusterCIDR: '10.244.0.0/16',
      healthzBindAddress: '0.0.0.0:10256',
      iptables: { masqueradeBit: 14, syncPeriod: '1h0m0s', minSyncPeriod: '1s' },
      conntrack: { maxPerCore: 32768 },
    });
    expect((await get(ns, 'http://127.0.0.1:10249/healthz')).status).toBe(200);
    const metrics = (await get(ns, 'http://127.0.0.1:10249/metrics')).body;
    expect(metrics).toMatch(/^kubeproxy_sync_proxy_rules_last_timestamp_seconds \d/m);
    expect(metrics).toMatch(/^process_resident_memory_bytes \d/m);

    // Rules: the Service's DNAT, with the file's mark bit 14 (0x4000).
    const nat = (await run('iptables-save', ['-t', 'nat'], { netns: ns, allowFail: true })).stdout + (await run('iptables-legacy-save', ['-t', 'nat'], { netns: ns, allowFail: true })).stdout;
    expect(nat).toContain('10.96.0.10/32');
    expect(nat).toMatch(/DNAT --to-destination 10\.244\.1\.5:8080/);
    expect(nat).toContain('0x4000');
    // What was accepted without an effect was said, by name.
    expect(out).toMatch(/alsologtostderr/);
    expect(out).toMatch(/conntrack/);
  });

  it('idle, it does not wake up for its metrics (no event-loop monitor timer)', async () => {
    expect(proxy?.exitCode).toBe(null);
    // `ip netns exec` execs node: the child's PID is weft-proxy's.
    const pid = proxy!.pid!;
    const before = ctxtSwitches(pid);
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, 2000)); // measuring a rate over a window, not synchronising
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const rate = (ctxtSwitches(pid) - before) / secs;
    console.log(`idle weft-proxy: ${rate.toFixed(1)} context switches/s over ${secs.toFixed(2)} s`);
    // prom-client's collectDefaultMetrics() alone made ~95/s (10 ms event-loop monitor). Timers left:
    // the canary (30 s), the manifest rescan (30 s), V8's own GC/compiler threads are not counted here.
    expect(rate).toBeLessThan(20);
  });

  it('a config with an unknown field exits 2 naming it', async () => {
    const r = await run(process.execPath, [bin, `--config=${join(dir, 'bad.conf')}`, '--etcd-endpoints='], { netns: ns, allowFail: true, env: cleanEnv(), timeoutMs: 30_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('iptables.masqueradeBits: unknown field');
    expect(r.stderr).toContain('[ERR_PROXY_CONFIG]');
  });

  it('a bad -v, a bad duration and an unknown flag exit 2', async () => {
    for (const args of [['-v', 'loud'], ['--iptables-sync-period=30'], ['--no-such-flag']]) {
      const r = await run(process.execPath, [bin, ...args, '--etcd-endpoints='], { netns: ns, allowFail: true, env: cleanEnv(), timeoutMs: 30_000 });
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
    }
  });

  it('--write-config-to writes the applied configuration and exits 0', async () => {
    const to = join(dir, 'applied.yaml');
    const r = await run(process.execPath, [bin, `--config=${join(dir, 'config.conf')}`, '--iptables-masquerade-bit=12', `--write-config-to=${to}`], { netns: ns, allowFail: true, env: cleanEnv(), timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(to, 'utf8');
    expect(text).toMatch(/masqueradeBit: 12/);
    expect(text).toMatch(/kind: KubeProxyConfiguration/);
  });
});
