import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { delay } from '../../src/core/async.js';
import { run, type RunResult } from '../../src/exec/run.js';
import { freePort } from './etcd.js';
import { stopChild } from './lab-util.js';

/**
 * A real kube-apiserver 1.20 (built from Debian's source package by
 * scripts/kube-apiserver.sh) for tests and the lab: token auth, its own etcd
 * prefix, a throwaway CA, serving cert and service-account keys in a temp dir.
 */

export const KUBE_SKIP_MESSAGE = 'kube-apiserver not built: run scripts/kube-apiserver.sh';

/** Where scripts/kube-apiserver.sh caches its builds; `current` is the last good one. */
export function kubeCacheDir(): string {
  return process.env.WEFT_KUBE_CACHE ?? '/var/cache/weft/kube';
}

function cached(name: string, envVar: string): string | undefined {
  const fromEnv = process.env[envVar];
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : undefined;
  const dir = join(kubeCacheDir(), 'current');
  // `ok` is written only after both binaries were built and ran --version.
  const bin = join(dir, 'bin', name);
  return existsSync(join(dir, 'ok')) && existsSync(bin) ? bin : undefined;
}

/** The cached kube-apiserver (or $WEFT_KUBE_APISERVER), undefined when not built. */
export function kubeApiserverPath(): string | undefined {
  return cached('kube-apiserver', 'WEFT_KUBE_APISERVER');
}

/** The cached kube-proxy 1.20 (the bench's rival), undefined when not built. */
export function kubeProxyPath(): string | undefined {
  return cached('kube-proxy', 'WEFT_KUBE_PROXY');
}

/** kubectl 1.20 as the script installed it (or $WEFT_KUBECTL), else `kubectl` on PATH. */
export function kubectlPath(): string {
  const fromEnv = process.env.WEFT_KUBECTL;
  if (fromEnv) return fromEnv;
  const bin = join(kubeCacheDir(), 'bin', 'kubectl');
  return existsSync(bin) ? bin : 'kubectl';
}

export interface KubeApiserverOptions {
  /** etcd client URL(s), comma-separated as --etcd-servers takes them. */
  etcd: string;
  /** Run inside this network namespace (the lab's switch); default the caller's. */
  netns?: string;
  /** Secure-port bind (and advertise) address. Default 127.0.0.1. */
  bindAddress?: string;
  /** Default: a free port (loopback) or 6443 (inside a netns). */
  port?: number;
  /** Default `/weft-kube-<random>`, so servers sharing an etcd never see each other. */
  etcdPrefix?: string;
  /** Default AlwaysAllow; RBAC enforces roles (the admin token is in system:masters either way). */
  authorizationMode?: 'AlwaysAllow' | 'RBAC';
  serviceClusterIpRange?: string;
  /** More kube-apiserver flags, appended last. */
  extraArgs?: string[];
  /** How long to wait for /readyz. Default 120 s (the machine may be loaded). */
  readyTimeoutMs?: number;
}

export interface KubeApiserver {
  /** https://<bind>:<port> */
  url: string;
  /** Bearer token of `admin` (group system:masters). */
  token: string;
  /** CA that signed the serving cert (and the admin client cert). */
  caFile: string;
  /** A kubeconfig for admin with the token and the CA. */
  kubeconfigPath: string;
  /** An admin client certificate (CN=admin, O=system:masters) signed by caFile, for cert-auth clients. */
  clientCertFile: string;
  clientKeyFile: string;
  etcdPrefix: string;
  /** The temp dir holding all of the above (removed by stop()). */
  dir: string;
  pid: number;
  netns?: string;
  /** Last lines kube-apiserver wrote (for failure messages). */
  logs(): string;
  /** Kills the process (by PID) and removes the temp dir. */
  stop(): Promise<void>;
}

async function openssl(args: string[]): Promise<void> {
  await run('openssl', args, { timeoutMs: 60_000 });
}

/** CA, serving cert (SANs: bind address, loopback, the first service IP), client cert, SA keys. */
async function makeCerts(dir: string, bind: string, serviceIp: string): Promise<void> {
  const f = (n: string) => join(dir, n);
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'),
    '-days', '7', '-subj', '/CN=weft-test-kube-ca']);
  const sans = [...new Set([bind, '127.0.0.1', serviceIp])].map((a) => `IP:${a}`);
  sans.push('DNS:localhost', 'DNS:kubernetes', 'DNS:kubernetes.default', 'DNS:kubernetes.default.svc');
  writeFileSync(f('server.ext'), `subjectAltName=${sans.join(',')}\nextendedKeyUsage=serverAuth\n`);
  writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const [name, subj, ext] of [['server', '/CN=kube-apiserver', 'server.ext'], ['client', '/O=system:masters/CN=admin', 'client.ext']]) {
    await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', subj]);
    await openssl(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial',
      '-out', f(`${name}.crt`), '-days', '7', '-extfile', f(ext)]);
  }
  await openssl(['genrsa', '-out', f('sa.key'), '2048']);
  await openssl(['rsa', '-in', f('sa.key'), '-pubout', '-out', f('sa.pub')]);
}

/** First address of a service CIDR (the `kubernetes` Service's ClusterIP). */
function firstServiceIp(cidr: string): string {
  const [addr] = cidr.split('/');
  const o = addr!.split('.').map(Number);
  o[3] = (o[3] ?? 0) + 1;
  return o.join('.');
}

export function kubeconfigYaml(url: string, caFile: string, token: string): string {
  // JSON is YAML: no quoting questions for paths or tokens.
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'weft-test', cluster: { server: url, 'certificate-authority': caFile } }],
    users: [{ name: 'admin', user: { token } }],
    contexts: [{ name: 'admin@weft-test', context: { cluster: 'weft-test', user: 'admin' } }],
    'current-context': 'admin@weft-test',
  }, null, 2) + '\n';
}

/** Starts kube-apiserver and resolves once /readyz answers ok; throws (with its log tail) otherwise. */
export async function startKubeApiserver(opts: KubeApiserverOptions): Promise<KubeApiserver> {
  const bin = kubeApiserverPath();
  if (!bin) throw new Error(KUBE_SKIP_MESSAGE);
  const bind = opts.bindAddress ?? '127.0.0.1';
  const port = opts.port ?? (opts.netns ? 6443 : await freePort());
  const etcdPrefix = opts.etcdPrefix ?? `/weft-kube-${randomBytes(4).toString('hex')}`;
  const range = opts.serviceClusterIpRange ?? '10.96.0.0/12';
  const dir = mkdtempSync(join(tmpdir(), 'weft-kube-'));
  const f = (n: string) => join(dir, n);
  const token = randomBytes(24).toString('hex');
  const url = `https://${bind}:${port}`;
  let proc: ChildProcess | undefined;
  let stderr = '';

  const stop = async () => {
    const p = proc;
    proc = undefined;
    await stopChild(p, 10_000);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await makeCerts(dir, bind, firstServiceIp(range));
    writeFileSync(f('tokens.csv'), `${token},admin,admin,"system:masters"\n`, { mode: 0o600 });
    writeFileSync(f('kubeconfig'), kubeconfigYaml(url, f('ca.crt'), token), { mode: 0o600 });
    writeFileSync(f('auth-header'), `Authorization: Bearer ${token}\n`, { mode: 0o600 });
    const loopback = bind.startsWith('127.');
    const args = [
      `--etcd-servers=${opts.etcd}`,
      `--etcd-prefix=${etcdPrefix}`,
      `--bind-address=${bind}`,
      `--advertise-address=${bind}`,
      `--secure-port=${port}`,
      // 1.20 still opens an unauthenticated port 8080 unless told not to.
      '--insecure-port=0',
      `--cert-dir=${f('certs')}`,
      `--tls-cert-file=${f('server.crt')}`,
      `--tls-private-key-file=${f('server.key')}`,
      `--client-ca-file=${f('ca.crt')}`,
      `--token-auth-file=${f('tokens.csv')}`,
      `--authorization-mode=${opts.authorizationMode ?? 'AlwaysAllow'}`,
      `--service-account-key-file=${f('sa.pub')}`,
      `--service-account-signing-key-file=${f('sa.key')}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-cluster-ip-range=${range}`,
      // No controller-manager makes default service accounts: Pods would be refused.
      '--disable-admission-plugins=ServiceAccount',
      // The `kubernetes` Endpoints may not hold a loopback address: do not try.
      ...(loopback ? ['--endpoint-reconciler-type=none'] : []),
      '--profiling=false',
      '--logtostderr=true',
      '--v=0',
      ...(opts.extraArgs ?? []),
    ];
    const [file, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, bin, ...args]] : [bin, args];
    const p = spawn(file, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    proc = p;
    p.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-8000)));
    const spawned = await new Promise<boolean>((resolve) => {
      p.once('spawn', () => resolve(true));
      p.once('error', (err) => {
        stderr += `\nspawn failed: ${err.message}`;
        resolve(false);
      });
    });
    if (!spawned) throw new Error(`kube-apiserver did not start: ${stderr}`);

    // Bounded poll on /readyz (all post-start hooks done, etcd reachable). curl,
    // because inside a netns the address is not reachable from this process.
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 120_000);
    let last = '';
    for (;;) {
      if (p.exitCode !== null || p.signalCode !== null) throw new Error(`kube-apiserver exited (${p.exitCode ?? p.signalCode}): ${stderr}`);
      const r = await run('curl', ['-sS', '--max-time', '3', '--cacert', f('ca.crt'), '-H', `@${f('auth-header')}`, `${url}/readyz`],
        { netns: opts.netns, allowFail: true, timeoutMs: 10_000 });
      if (r.code === 0 && r.stdout.trim() === 'ok') break;
      last = (r.stdout + r.stderr).trim().slice(-300);
      if (Date.now() > deadline) throw new Error(`kube-apiserver not ready at ${url}/readyz (last: ${last}); log: ${stderr}`);
      await delay(250);
    }
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    url,
    token,
    caFile: f('ca.crt'),
    kubeconfigPath: f('kubeconfig'),
    clientCertFile: f('client.crt'),
    clientKeyFile: f('client.key'),
    etcdPrefix,
    dir,
    pid: proc!.pid!,
    netns: opts.netns,
    logs: () => stderr,
    stop,
  };
}

export interface KubectlOptions {
  netns?: string;
  /** stdin (for `apply -f -`). */
  input?: string;
  allowFail?: boolean;
  timeoutMs?: number;
}

/** Runs kubectl against a kubeconfig; throws on a non-zero exit unless allowFail. */
export function kubectl(args: string[], kubeconfig: string, opts: KubectlOptions = {}): Promise<RunResult> {
  return run(kubectlPath(), [`--kubeconfig=${kubeconfig}`, ...args], {
    netns: opts.netns,
    input: opts.input,
    allowFail: opts.allowFail,
    timeoutMs: opts.timeoutMs ?? 60_000,
  });
}
