import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';

// No systemd runs this machine (nor CI), so this test does what systemd would
// do with the installed units, inside a throwaway namespace: read Environment=
// and the installed EnvironmentFile, expand ExecStart= / ExecStartPost= with
// systemd's rules ($VAR splits, ${VAR} does not), start the program, run the
// readiness probe, stop with SIGTERM to the main process (KillMode=mixed) and
// start again (Restart=always). It proves the env files are understood by
// the programs, the probe waits for readiness and no teardown happens on stop.
// The same etcd also checks vagrant/provision.sh's demo manifests and its
// verify-argument extraction against the real weftctl and weft-proxy.
const repo = join(import.meta.dirname, '..', '..');
const script = join(repo, 'scripts', 'install-weft.sh');
const SYSTEMD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface Unit {
  environment: Record<string, string>;
  environmentFile: string;
  execStart: string;
  execStartPost: string;
}

function parseUnit(text: string): Unit {
  const get = (key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(text)?.[1] ?? '';
  const environment: Record<string, string> = {};
  for (const kv of get('Environment').split(/\s+/).filter(Boolean)) {
    const i = kv.indexOf('=');
    environment[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return { environment, environmentFile: get('EnvironmentFile'), execStart: get('ExecStart'), execStartPost: get('ExecStartPost') };
}

/** KEY=VALUE lines of a systemd EnvironmentFile (this installer writes no quotes). */
function readEnvFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** systemd's command line expansion: `$VAR` alone splits into words, `${VAR}` substitutes. */
function expand(cmd: string, env: Record<string, string>): string[] {
  const words: string[] = [];
  for (const w of cmd.split(/\s+/).filter(Boolean)) {
    const whole = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(w);
    if (whole) words.push(...(env[whole[1]!] ?? '').split(/\s+/).filter(Boolean));
    else words.push(w.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, k: string) => env[k] ?? ''));
  }
  return words;
}

/** Metric families in a /metrics answer that docs/operations.md does not name. */
function undocumentedMetrics(text: string): string[] {
  const doc = readFileSync(join(repo, 'docs', 'operations.md'), 'utf8');
  const names = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
  expect(names.length).toBeGreaterThan(0);
  // prom-client's default process_* / nodejs_* families are documented as a group.
  return names.filter((n) => !/^(process|nodejs)_/.test(n) && !doc.includes(n));
}

describe.skipIf(!isRoot)('the installed units, run the way systemd would (in a namespace)', () => {
  const sb = new NetnsSandbox();
  const tmp = mkdtempSync(join(tmpdir(), 'weft-ops-units-'));
  const prefix = join(tmp, 'root');
  const children = new Set<ChildProcess>();
  let host = '';

  const inHost = (cmd: string, args: string[], timeoutMs = 30_000) => run(cmd, args, { netns: host, allowFail: true, timeoutMs });

  /** Environment systemd would give the service: clean PATH, Environment=, then the EnvironmentFile. */
  const serviceEnv = (unit: Unit) => ({ PATH: SYSTEMD_PATH, ...unit.environment, ...readEnvFile(join(prefix, unit.environmentFile)) });
  const unitOf = (name: string) => parseUnit(readFileSync(join(prefix, 'etc/systemd/system', name), 'utf8'));
  /** The installed wrapper stands at /usr/local/bin only inside the prefix. */
  const inPrefix = (argv: string[]) => argv.map((a) => (a.startsWith('/usr/local/bin/') ? join(prefix, a) : a));

  function startService(unit: Unit): ChildProcess {
    const env = serviceEnv(unit);
    const argv = inPrefix(expand(unit.execStart, env));
    const child = spawn('ip', ['netns', 'exec', host, ...argv], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    child.on('exit', () => children.delete(child));
    (child as ChildProcess & { tail: () => string }).tail = () => stderr;
    children.add(child);
    return child;
  }

  async function stopService(child: ChildProcess): Promise<number | null> {
    if (child.exitCode !== null) return child.exitCode;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    return exited;
  }

  const probe = (unit: Unit) => {
    const [cmd, ...args] = expand(unit.execStartPost, serviceEnv(unit));
    return inHost(cmd!, args, 150_000);
  };

  /** The probe while the service runs: a service that dies first fails at once, with its stderr. */
  async function probeRunning(unit: Unit, child: ChildProcess): Promise<{ code: number | null; why: string }> {
    const tail = () => (child as ChildProcess & { tail: () => string }).tail();
    const died = new Promise<{ code: number | null; why: string }>((resolve) => {
      if (child.exitCode !== null) resolve({ code: -1, why: `exited ${child.exitCode}: ${tail()}` });
      child.once('exit', (code) => resolve({ code: -1, why: `exited ${code}: ${tail()}` }));
    });
    return Promise.race([probe(unit).then((r) => ({ code: r.code, why: `${r.stderr}\n${tail()}` })), died]);
  }

  beforeAll(async () => {
    host = await sb.create('opsh');
    const peer = await sb.create('opsp');
    await sb.link({ ns: host, ifname: 'eth1', cidr: '192.0.2.1/24' }, { ns: peer, ifname: 'eth1', cidr: '192.0.2.2/24' });
    // etcd on the namespace's own loopback: 127.0.0.1:2379 there is private.
    const etcd = spawn('ip', ['netns', 'exec', host, '/usr/bin/etcd', '--name', 'ops', '--data-dir', join(tmp, 'etcd'),
      '--listen-client-urls', 'http://127.0.0.1:2379', '--advertise-client-urls', 'http://127.0.0.1:2379',
      '--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
      '--initial-cluster', 'ops=http://127.0.0.1:2380', '--log-level', 'warn'], { stdio: 'ignore' });
    children.add(etcd);
    await waitFor(async () => (await inHost('curl', ['-fsS', '--max-time', '1', 'http://127.0.0.1:2379/health'])).code === 0, { timeoutMs: 30_000 });
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const conf = JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });
    const put = await inHost('curl', ['-fsS', '-X', 'POST', '--data-binary', JSON.stringify({ key: b64('/coreos.com/network/config'), value: b64(conf) }), 'http://127.0.0.1:2379/v3/kv/put']);
    expect(put.code).toBe(0);

    const inst = await run('bash', [script, '--prefix', prefix, '--no-build', '--no-cni', '--iface', 'eth1', '--hostname-override', 'opsnode'], { allowFail: true, timeoutMs: 120_000 });
    expect(inst.stderr).toBe('');
    expect(inst.code).toBe(0);
    // The operator's edit: keep this test's files out of the machine's /run and /var/lib.
    const envPath = join(prefix, 'etc/weft/weftd.env');
    const text = readFileSync(envPath, 'utf8')
      .replace(/^WEFTD_SUBNET_FILE=.*$/m, `WEFTD_SUBNET_FILE=${join(tmp, 'subnet.env')}`)
      .replace(/^WEFTD_CNI_SOCKET=.*$/m, `WEFTD_CNI_SOCKET=${join(tmp, 'cni.sock')}`)
      .concat(`WEFTD_STATE_DIR=${join(tmp, 'state')}\n`);
    writeFileSync(envPath, text, { mode: 0o600 });
  });

  afterAll(async () => {
    for (const c of children) if (c.pid && c.exitCode === null) c.kill('SIGKILL');
    await sb.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('the weftd readiness probe fails (bounded) while nothing is ready', async () => {
    const unit = unitOf('weftd.service');
    // Same command with a 2 s bound instead of 120 s.
    const quick = { ...unit, execStartPost: unit.execStartPost.replace('--retry 120', '--retry 2').replace('--retry-max-time 120', '--retry-max-time 2') };
    const r = await probe(quick);
    expect(r.code).not.toBe(0);
  });

  it('weftd starts from the env file, the probe passes, subnet.env appears', async () => {
    const unit = unitOf('weftd.service');
    const weftd = startService(unit);
    const r = await probeRunning(unit, weftd);
    expect(r.code, r.why).toBe(0);
    const env = readFileSync(join(tmp, 'subnet.env'), 'utf8');
    expect(env).toContain('FLANNEL_NETWORK=10.244.0.0/16');
    expect(env).toContain('FLANNEL_IPMASQ=true');
    // The env file's WEFTD_IP_MASQ=true reached weftd: its masquerade chain exists.
    const nat = await inHost('iptables', ['-w', '-t', 'nat', '-S']);
    expect(nat.stdout).toContain('WEFT-POSTRTG');
    // WEFTD_CNI_SOCKET reached weftd: it serves the CNI shim there.
    expect(existsSync(join(tmp, 'cni.sock'))).toBe(true);
    // docs/operations.md lists every metric weftd exports.
    expect(undocumentedMetrics((await inHost('curl', ['-fsS', '--max-time', '3', 'http://127.0.0.1:9808/metrics'])).stdout)).toEqual([]);

    // systemctl stop: SIGTERM to the main process; nothing is torn down.
    const subnet = /FLANNEL_SUBNET=(.*)/.exec(env)![1];
    expect(await stopService(weftd)).toBe(0);
    expect(existsSync(join(tmp, 'subnet.env'))).toBe(true);
    expect((await inHost('iptables', ['-w', '-t', 'nat', '-S'])).stdout).toContain('WEFT-POSTRTG');

    // Restart=always: a new start is ready again with the same subnet.
    const again = startService(unit);
    const r2 = await probeRunning(unit, again);
    expect(r2.code, r2.why).toBe(0);
    expect(readFileSync(join(tmp, 'subnet.env'), 'utf8')).toContain(`FLANNEL_SUBNET=${subnet}`);
    expect(await stopService(again)).toBe(0);
  });

  // vagrant/provision.sh's demo objects, through the real weftctl and etcd:
  // they must pass validation, and its verify arguments must come out of
  // `weftctl get endpointslices -o json` as the VMs would compute them.
  const provision = join(repo, 'vagrant', 'provision.sh');
  const ALL = 'node1=192.168.56.11,node2=192.168.56.12,node3=192.168.56.13';
  const weftctl = (args: string[], input?: string) =>
    run('ip', ['netns', 'exec', host, process.execPath, join(repo, 'dist/cli/weftctl.js'), '--etcd-endpoints', 'http://127.0.0.1:2379', ...args], { input, allowFail: true });

  it('the Vagrant demo manifests apply, and verify arguments come from the slices', async () => {
    for (const [node, ip] of [['node1', '10.244.1.2'], ['node2', '10.244.2.2']] as const) {
      const m = await run('bash', [provision, 'manifest', node, '192.168.56.11', '192.168.56.11', ALL, 'vxlan', 'iptables', ip]);
      const applied = await weftctl(['apply', '-f', '-'], m.stdout);
      expect(applied.code, applied.stderr).toBe(0);
    }
    const slices = await weftctl(['get', 'endpointslices', '-n', 'default', '-o', 'json']);
    expect(slices.code, slices.stderr).toBe(0);
    const args = await run('bash', [provision, 'verify-args', 'node2', '192.168.56.12', '192.168.56.11', ALL, 'vxlan', 'iptables', '10.244.2.2', '/run/netns/demo'], { input: slices.stdout });
    expect(args.stdout.trim().split('\n')).toEqual([
      '--pod', 'weft-demo-node1=10.244.1.2',
      '--pod', 'weft-demo-node2=10.244.2.2@/run/netns/demo',
      '--host', 'node1=192.168.56.11',
      '--host', 'node2=192.168.56.12',
    ]);
  });

  it('weft-proxy starts from the env file, the probe passes, rules stay after stop', async () => {
    const unit = unitOf('weft-proxy.service');
    const proxy = startService(unit);
    const r = await probeRunning(unit, proxy);
    expect(r.code, r.why).toBe(0);
    // The metrics address from the env file is served too.
    const metrics = await inHost('curl', ['-fsS', '--max-time', '3', 'http://127.0.0.1:10249/metrics']);
    expect(metrics.stdout).toMatch(/^# (HELP|TYPE) /m);
    expect(undocumentedMetrics(metrics.stdout)).toEqual([]);
    // The demo Service applied above is rendered: ClusterIP and NodePort.
    await waitFor(async () => /10\.96\.100\.100\/32/.test((await inHost('iptables', ['-w', '-t', 'nat', '-S'])).stdout), { timeoutMs: 20_000 });
    const nat = (await inHost('iptables', ['-w', '-t', 'nat', '-S'])).stdout;
    expect(nat).toMatch(/--dport 30080/);
    expect(await stopService(proxy)).toBe(0);
    expect((await inHost('iptables', ['-w', '-t', 'nat', '-S'])).stdout).toContain('WEFT-SERVICES');
  });
});
