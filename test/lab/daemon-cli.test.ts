/**
 * The daemons' process behaviour, each in a fresh network namespace (so its
 * loopback, and any inspector port, is private): SIGUSR1 dumps state and
 * opens no inspector, SIGHUP keeps the daemon running, a second weftd on one
 * state directory is refused, a failed start exits non-zero leaving no child
 * processes, and weft-proxy / weftctl apply/get speak to an etcd that wants
 * TLS client certificates, through flags and through the environment.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/exec/run.js';
import { labDown, labUp, readState } from '../../src/lab/index.js';
import { uniqueLabId } from '../helpers/lab.js';
import { makeTlsFiles, type TlsFilesOnDisk } from '../helpers/etcd-secure.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';

const repo = join(import.meta.dirname, '..', '..');
const bin = (name: string) => join(repo, 'dist', 'cli', `${name}.js`);
/** The parent's WEFTD_* etc. must not leak into the daemons under test. */
const cleanEnv = (extra: Record<string, string> = {}) => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(WEFTD_|WEFT_PROXY_|WEFTCTL_|ETCD)/.test(k))),
  ...extra,
});

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50)); // bounded poll
  }
}

interface Daemon {
  proc: ChildProcess;
  pid: number;
  log: () => string;
  exited: Promise<number | null>;
  waitLog: (re: RegExp, what: string) => Promise<void>;
}

/** Starts a program inside `ns` (`ip netns exec` execs it: the child's PID is the program's). */
function start(ns: string, program: string, args: string[], env: Record<string, string> = {}): Daemon {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, bin(program), ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const log = () => out;
  return {
    proc,
    pid: proc.pid!,
    log,
    exited,
    waitLog: (re, what) => until(`${program}: ${what}\n${out}`, () => re.test(out) || proc.exitCode !== null).then(() => {
      if (!re.test(out)) throw new Error(`${program} exited (${proc.exitCode}) before ${what}:\n${out}`);
    }),
  };
}

const alive = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;
const listens9229 = async (ns: string) => /:9229\b/.test((await run('ss', ['-ltn'], { netns: ns })).stdout);
const pidsIn = async (ns: string) => (await run('ip', ['netns', 'pids', ns])).stdout.split(/\s+/).filter(Boolean).sort();

/** A signal's effect is visible in the log: wait for the n-th occurrence of `re`. */
async function signalAndWait(d: Daemon, sig: NodeJS.Signals, re: RegExp, what: string): Promise<void> {
  const before = (d.log().match(new RegExp(re.source, 'g')) ?? []).length;
  d.proc.kill(sig);
  await until(`${what}\n${d.log()}`, () => (d.log().match(new RegExp(re.source, 'g')) ?? []).length > before || !alive(d.proc));
}

/** After the dump has been logged, the inspector would be up at once; watch for it a while. */
async function expectNoInspector(ns: string): Promise<void> {
  for (let i = 0; i < 20; i++) {
    expect(await listens9229(ns)).toBe(false);
    await new Promise((r) => setTimeout(r, 50)); // bounded poll: 20 samples
  }
}

describe.skipIf(!isRoot)('weftd process behaviour', () => {
  const sandbox = new NetnsSandbox();
  let dir = '';
  const started: Daemon[] = [];
  let ns = '';
  const weftd = (name: string, extra: string[] = [], env: Record<string, string> = {}) => {
    // No etcd in this namespace: weftd waits for its network config, holding the lock and the CNI socket.
    const d = start(ns, 'weftd', ['--etcd-endpoints', 'http://127.0.0.1:2379', '--healthz-port', '0', '--subnet-file', join(dir, name, 'subnet.env'), ...extra], env);
    started.push(d);
    return d;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'weft-daemon-cli-'));
    ns = await sandbox.create('dcli');
  });
  afterAll(async () => {
    for (const d of started) if (alive(d.proc)) d.proc.kill('SIGKILL');
    await sandbox.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the probe works: plain Node opens its inspector on 127.0.0.1:9229 at SIGUSR1 in this netns', async () => {
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', 'console.log("up"); setInterval(() => {}, 1000)'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await until('plain node up', () => p.stdout!.readableLength > 0 || p.exitCode !== null);
      expect(await listens9229(ns)).toBe(false);
      p.kill('SIGUSR1');
      await until('inspector listening', () => listens9229(ns));
    } finally {
      p.kill('SIGKILL');
      await new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(null) : p.once('exit', r)));
    }
    await until('inspector gone', async () => !(await listens9229(ns)));
  });

  it('weftd: SIGUSR1 logs a state dump and opens no inspector; SIGHUP is logged and ignored', async () => {
    const state = join(dir, 'a', 'state');
    const a = weftd('a', ['--state-dir', state]);
    await until('weftd.lock written', () => {
      try {
        return readFileSync(join(state, 'weftd.lock'), 'utf8').trim() === String(a.pid);
      } catch {
        return false;
      }
    });
    await signalAndWait(a, 'SIGUSR1', /state dump/, 'state dump');
    expect(a.log()).toMatch(/state dump .*signal=SIGUSR1/);
    expect(a.log()).toContain(`stateDir=${state}`);
    expect(a.log()).toMatch(/readyReason=/);
    await expectNoInspector(ns);
    await signalAndWait(a, 'SIGHUP', /SIGHUP ignored: restart to apply changes/, 'SIGHUP log');
    expect(alive(a.proc)).toBe(true);
    // And it still stops on SIGTERM, exiting 0.
    a.proc.kill('SIGTERM');
    expect(await a.exited).toBe(0);
  });

  it('a second weftd on the same state directory exits non-zero naming the lock and the holder; the first keeps running', async () => {
    const state = join(dir, 'b', 'state');
    const first = weftd('b1', ['--state-dir', state]);
    await until('first holds the lock', () => {
      try {
        return readFileSync(join(state, 'weftd.lock'), 'utf8').trim() === String(first.pid);
      } catch {
        return false;
      }
    });
    const second = weftd('b2', ['--state-dir', state]);
    const code = await second.exited;
    expect(code).not.toBe(0);
    expect(second.log()).toContain('ERR_INSTANCE_LOCKED');
    expect(second.log()).toContain(`${join(state, 'weftd.lock')} is held by PID ${first.pid}`);
    expect(alive(first.proc)).toBe(true);
    await signalAndWait(first, 'SIGUSR1', /state dump/, 'first still answers');
    expect(alive(first.proc)).toBe(true);
    first.proc.kill('SIGTERM');
    expect(await first.exited).toBe(0);
  });

  it('a weftd whose start fails (CNI socket taken) exits non-zero and leaves no child processes', async () => {
    const sock = join(dir, 'cni.sock');
    const holder = weftd('c1', ['--state-dir', join(dir, 'c1', 'state'), '--cni-socket', sock]);
    await holder.waitLog(/serving CNI requests/, 'CNI socket served');
    const before = await pidsIn(ns);
    expect(before).toContain(String(holder.pid));
    const failing = weftd('c2', ['--state-dir', join(dir, 'c2', 'state'), '--cni-socket', sock]);
    const code = await failing.exited;
    expect(code).not.toBe(0);
    expect(failing.log()).toContain(`${sock}: another server is listening`);
    // It ended by itself, not by exitWhenDone's forced exit after a leaked handle (its shells, before the fix).
    expect(failing.log()).not.toContain('leaked handle');
    // Nothing it started (the CNI server's shells) outlives it: the namespace holds what it held before.
    expect(await pidsIn(ns)).toEqual(before);
    expect(alive(holder.proc)).toBe(true);
    // The failed start probed the socket: the holder still stops cleanly (a half-open probe held its close before).
    holder.proc.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
    expect(holder.log()).not.toContain('leaked handle');
  });

  it('--version on every program exits 0 with package.json\'s version', async () => {
    const version = (JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }).version;
    for (const p of ['weftd', 'weft-proxy', 'weftctl']) {
      const r = await run(process.execPath, [bin(p), '--version'], { allowFail: true });
      expect({ p, code: r.code, out: r.stdout.trim() }).toEqual({ p, code: 0, out: version });
    }
  });

  it('environment values are validated like flags: exit 2 naming the variable', async () => {
    const cases: Array<[string, Record<string, string>, string]> = [
      ['weftd', { WEFTD_HEALTHZ_PORT: 'abc' }, 'error [ERR_INVALID_ARGUMENT]: WEFTD_HEALTHZ_PORT: "abc" is not a port'],
      ['weftd', { WEFTD_IP_MASQ: 'yes' }, 'WEFTD_IP_MASQ: "yes" is not a boolean'],
      ['weft-proxy', { WEFT_PROXY_SYNC_PERIOD: '1 hour' }, 'WEFT_PROXY_SYNC_PERIOD: "1 hour" is not a duration'],
      ['weft-proxy', { WEFT_PROXY_PROXY_MODE: 'userspace' }, 'WEFT_PROXY_PROXY_MODE: "userspace" is not one of iptables, nftables, ipvs'],
      ['weftctl', { WEFTCTL_ETCD_CERTFILE: '/c.pem' }, '--etcd-keyfile: a client certificate needs its key'],
    ];
    for (const [p, env, msg] of cases) {
      const args = p === 'weftctl' ? ['leases'] : [];
      const r = await run(process.execPath, [bin(p), ...args], { allowFail: true, env: cleanEnv(env), netns: ns, timeoutMs: 30_000 });
      expect({ p, code: r.code }).toEqual({ p, code: 2 });
      expect(r.stderr).toContain(msg);
    }
  });
});

describe.skipIf(!isRoot)('weft-proxy and weftctl apply/get over an etcd with TLS client certificates', () => {
  const sandbox = new NetnsSandbox();
  let dir = '';
  let ns = '';
  let tls: TlsFilesOnDisk;
  let etcd: ChildProcess | undefined;
  let proxy: Daemon | undefined;
  // The namespace's loopback is private: fixed ports cannot collide with other tests.
  const endpoint = 'https://127.0.0.1:2379';
  const flags = () => ['--etcd-endpoints', endpoint, '--etcd-cafile', tls.ca, '--etcd-certfile', tls.clientCert, '--etcd-keyfile', tls.clientKey];
  const weftctl = (args: string[], opts: { input?: string; env?: Record<string, string> } = {}) =>
    run(process.execPath, [bin('weftctl'), ...args], { allowFail: true, netns: ns, env: cleanEnv(opts.env), input: opts.input, timeoutMs: 30_000 });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'weft-proxy-tls-'));
    ns = await sandbox.create('ptls');
    tls = makeTlsFiles(dir);
    etcd = spawn('ip', ['netns', 'exec', ns, 'etcd', '--name', 'tls', '--data-dir', join(dir, 'data'),
      '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
      '--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
      '--initial-cluster', 'tls=http://127.0.0.1:2380', '--log-level', 'error',
      '--cert-file', tls.serverCert, '--key-file', tls.serverKey, '--client-cert-auth', '--trusted-ca-file', tls.ca], { stdio: 'ignore' });
    await until('etcd answers over mTLS', async () => (await weftctl(['get', 'services', ...flags()])).code === 0, 30_000);
  });
  afterAll(async () => {
    if (proxy && alive(proxy.proc)) proxy.proc.kill('SIGKILL');
    if (etcd && etcd.exitCode === null) etcd.kill('SIGKILL');
    await sandbox.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('weftctl apply/get take the TLS flags and WEFTCTL_ETCD_* and fail without them', async () => {
    const svc = 'apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n    protocol: TCP\n';
    const applied = await weftctl(['apply', '-f', '-', ...flags()], { input: svc });
    expect(applied.stderr).toBe('');
    expect(applied.stdout).toMatch(/service\/default\/web \(clusterIP 10\.\d+\.\d+\.\d+\) (created|configured|unchanged)/);
    const got = await weftctl(['get', 'services'], {
      env: { WEFTCTL_ETCD_ENDPOINTS: endpoint, WEFTCTL_ETCD_CAFILE: tls.ca, WEFTCTL_ETCD_CERTFILE: tls.clientCert, WEFTCTL_ETCD_KEYFILE: tls.clientKey },
    });
    expect(got.code).toBe(0);
    expect(got.stdout).toMatch(/default\s+web\s+ClusterIP/);
    // Without a client certificate etcd refuses the connection.
    const refused = await weftctl(['get', 'services', '--etcd-endpoints', endpoint, '--etcd-cafile', tls.ca]);
    expect(refused.code).toBe(1);
  });

  it('weft-proxy reads the registry with WEFT_PROXY_ETCD_* TLS settings; SIGUSR1 dumps it, SIGHUP resyncs, no inspector', async () => {
    proxy = start(ns, 'weft-proxy', ['--healthz-bind-address', '', '--metrics-bind-address', '', '--hostname-override', 'h1'], {
      WEFT_PROXY_ETCD_ENDPOINTS: endpoint,
      WEFT_PROXY_ETCD_CAFILE: tls.ca,
      WEFT_PROXY_ETCD_CERTFILE: tls.clientCert,
      WEFT_PROXY_ETCD_KEYFILE: tls.clientKey,
    });
    await proxy.waitLog(/listed registry .*objects=1/, 'registry listed over TLS');
    await proxy.waitLog(/synced proxy rules/, 'first sync');
    await signalAndWait(proxy, 'SIGUSR1', /state dump/, 'proxy state dump');
    expect(proxy.log()).toMatch(/state dump .*servicePorts=1/);
    await expectNoInspector(ns);
    await signalAndWait(proxy, 'SIGHUP', /reloaded=/, 'proxy SIGHUP');
    expect(proxy.log()).toMatch(/reloaded="full rule sync"/);
    expect(alive(proxy.proc)).toBe(true);
    proxy.proc.kill('SIGTERM');
    expect(await proxy.exited).toBe(0);
  });
});

describe.skipIf(!isRoot)('a running weftd (lab, host-gw, two hosts)', () => {
  const id = uniqueLabId('dsig');
  beforeAll(async () => {
    await labUp({ id, hosts: 2, podsPerHost: 0, backend: 'host-gw' });
  });
  afterAll(async () => {
    await labDown(id);
  });

  it('SIGUSR1 dumps lease, peers and readiness; SIGHUP re-asserts the data path; it keeps running', async () => {
    const rec = readState(id)!.processes.find((p) => p.key === 'weftd:h1')!;
    const log = () => readFileSync(rec.log, 'utf8');
    const count = (re: RegExp) => (log().match(new RegExp(re.source, 'g')) ?? []).length;
    const dumps = count(/state dump/);
    process.kill(rec.pid, 'SIGUSR1');
    await until('state dump in the weftd log', () => count(/state dump/) > dumps);
    const dump = log().split('\n').filter((l) => l.includes('state dump')).pop()!;
    expect(dump).toMatch(/ready=true/);
    expect(dump).toMatch(/subnet=10\.244\.\d+\.0\/24/);
    expect(dump).toMatch(/peers=1\b/);
    expect(dump).toMatch(/backend=host-gw/);
    const hups = count(/reloaded="data path reconcile"/);
    process.kill(rec.pid, 'SIGHUP');
    await until('SIGHUP reconcile logged', () => count(/reloaded="data path reconcile"/) > hups);
    process.kill(rec.pid, 0); // still running
    expect(log()).not.toMatch(/Debugger listening/);
  });
});

describe.skipIf(!isRoot)('installer: etcd TLS files reach both env files', () => {
  let prefix = '';
  beforeAll(() => {
    prefix = mkdtempSync(join(tmpdir(), 'weft-install-tls-'));
  });
  afterAll(() => {
    if (prefix) rmSync(prefix, { recursive: true, force: true });
  });
  const install = (args: string[]) =>
    run('bash', [join(repo, 'scripts', 'install-weft.sh'), '--prefix', prefix, '--no-build', '--no-systemd', '--no-cni', ...args], { allowFail: true, timeoutMs: 60_000 });

  it('--etcd-cafile/--etcd-certfile/--etcd-keyfile are written for weftd and weft-proxy; a certificate without its key is refused', async () => {
    const bad = await install(['--etcd-certfile', '/etc/weft/client.pem']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--etcd-certfile and --etcd-keyfile go together');
    const r = await install(['--etcd-endpoints', 'https://192.0.2.254:2379', '--etcd-cafile', '/etc/weft/ca.pem', '--etcd-certfile', '/etc/weft/client.pem', '--etcd-keyfile', '/etc/weft/client.key']);
    expect(r.code, r.stderr).toBe(0);
    for (const [file, p] of [['weftd.env', 'WEFTD'], ['weft-proxy.env', 'WEFT_PROXY']] as const) {
      const text = readFileSync(join(prefix, 'etc', 'weft', file), 'utf8');
      expect(text).toContain(`${p}_ETCD_ENDPOINTS=https://192.0.2.254:2379\n`);
      expect(text).toContain(`${p}_ETCD_CAFILE=/etc/weft/ca.pem\n`);
      expect(text).toContain(`${p}_ETCD_CERTFILE=/etc/weft/client.pem\n`);
      expect(text).toContain(`${p}_ETCD_KEYFILE=/etc/weft/client.key\n`);
      expect(text).toContain(`#${p}_ETCD_USERNAME=\n`);
    }
  });
});
