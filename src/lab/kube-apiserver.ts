import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { delay } from '../core/async.js';
import { run } from '../exec/run.js';
import { LabProcessError } from './errors.js';

/**
 * A real kube-apiserver 1.20 (built from Debian's source package by
 * scripts/kube-apiserver.sh) for the lab and the tests: token auth, its own
 * etcd prefix, a throwaway CA, serving cert and service-account keys in one
 * directory. This module only prepares files and the command line and waits
 * for /readyz; who spawns the process (the lab records it by PID, tests keep
 * the ChildProcess) is the caller's business.
 */

export const KUBE_APISERVER_SCRIPT = 'scripts/kube-apiserver.sh';
export const KUBE_SKIP_MESSAGE = `kube-apiserver not built: run ${KUBE_APISERVER_SCRIPT}`;

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

/** One line of --token-auth-file. */
export interface KubeTokenUser {
  token: string;
  user: string;
  groups: string[];
}

export interface KubeApiserverPrepareOptions {
  /** Directory for certs, tokens and kubeconfigs (created; the caller removes it). */
  dir: string;
  /** etcd client URL(s), comma-separated as --etcd-servers takes them. */
  etcd: string;
  /** Secure-port bind (and advertise) address. */
  bindAddress: string;
  port: number;
  /** Default `/weft-kube-<random>`, so servers sharing an etcd never see each other. */
  etcdPrefix?: string;
  /** Default AlwaysAllow; RBAC enforces roles (the admin token is in system:masters either way). */
  authorizationMode?: 'AlwaysAllow' | 'RBAC';
  /** Default 10.96.0.0/12. */
  serviceClusterIpRange?: string;
  /** More token users besides `admin` (system:masters). */
  users?: KubeTokenUser[];
  /** More kube-apiserver flags, appended last. */
  extraArgs?: string[];
}

export interface PreparedKubeApiserver {
  /** kube-apiserver binary and flags. */
  argv: string[];
  /** https://<bind>:<port> */
  url: string;
  /** Bearer token of `admin` (group system:masters). */
  token: string;
  caFile: string;
  /** A kubeconfig for admin with the token and the CA. */
  kubeconfigPath: string;
  /** curl -H @file: the admin's Authorization header (keeps the token off command lines). */
  authHeaderFile: string;
  /** An admin client certificate (CN=admin, O=system:masters) signed by caFile. */
  clientCertFile: string;
  clientKeyFile: string;
  etcdPrefix: string;
  dir: string;
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
export function firstServiceIp(cidr: string): string {
  const [addr] = cidr.split('/');
  const o = addr!.split('.').map(Number);
  o[3] = (o[3] ?? 0) + 1;
  return o.join('.');
}

/** A kubeconfig (as JSON, which is YAML) for one token user. */
export function kubeconfigYaml(url: string, caFile: string, token: string, user = 'admin', cluster = 'weft-test'): string {
  // JSON is YAML: no quoting questions for paths or tokens.
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: cluster, cluster: { server: url, 'certificate-authority': caFile } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: `${user}@${cluster}`, context: { cluster, user } }],
    'current-context': `${user}@${cluster}`,
  }, null, 2) + '\n';
}

/** A random bearer token. */
export const newToken = (): string => randomBytes(24).toString('hex');

const csvField = (s: string): string => {
  // --token-auth-file is CSV: a field with a comma or quote must be quoted.
  if (!/^[A-Za-z0-9:._@-]*$/.test(s)) throw new LabProcessError(`token file field ${JSON.stringify(s)} has characters the lab does not quote`);
  return s;
};

/**
 * Writes certs, the token file and the admin kubeconfig into opts.dir and
 * returns the command line (flags as the tests and the lab need them).
 */
export async function prepareKubeApiserver(opts: KubeApiserverPrepareOptions): Promise<PreparedKubeApiserver> {
  const bin = kubeApiserverPath();
  if (!bin) throw new LabProcessError(KUBE_SKIP_MESSAGE, { script: KUBE_APISERVER_SCRIPT });
  const { dir, bindAddress: bind, port } = opts;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const etcdPrefix = opts.etcdPrefix ?? `/weft-kube-${randomBytes(4).toString('hex')}`;
  const range = opts.serviceClusterIpRange ?? '10.96.0.0/12';
  const f = (n: string) => join(dir, n);
  const token = newToken();
  const url = `https://${bind}:${port}`;
  await makeCerts(dir, bind, firstServiceIp(range));
  const users: KubeTokenUser[] = [{ token, user: 'admin', groups: ['system:masters'] }, ...(opts.users ?? [])];
  const csv = users.map((u) => `${csvField(u.token)},${csvField(u.user)},${csvField(u.user)},"${u.groups.map(csvField).join(',')}"`).join('\n');
  writeFileSync(f('tokens.csv'), `${csv}\n`, { mode: 0o600 });
  writeFileSync(f('kubeconfig'), kubeconfigYaml(url, f('ca.crt'), token), { mode: 0o600 });
  writeFileSync(f('auth-header'), `Authorization: Bearer ${token}\n`, { mode: 0o600 });
  const loopback = bind.startsWith('127.');
  const argv = [
    bin,
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
  return {
    argv,
    url,
    token,
    caFile: f('ca.crt'),
    kubeconfigPath: f('kubeconfig'),
    authHeaderFile: f('auth-header'),
    clientCertFile: f('client.crt'),
    clientKeyFile: f('client.key'),
    etcdPrefix,
    dir,
  };
}

export interface WaitReadyOptions {
  /** Where to run curl (the server's namespace: its address may not be reachable from here). */
  netns?: string;
  /** Non-undefined: the process is gone, with this text as the reason. */
  exited: () => string | undefined;
  /** Log tail for the error. */
  logs: () => string;
  /** Default 120 s (the machine may be loaded). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Bounded poll on /readyz (all post-start hooks done, etcd reachable). curl,
 * because inside a netns the address is not reachable from this process.
 */
export async function waitKubeApiserverReady(k: Pick<PreparedKubeApiserver, 'url' | 'caFile' | 'authHeaderFile'>, o: WaitReadyOptions): Promise<void> {
  const deadline = Date.now() + (o.timeoutMs ?? 120_000);
  let last = '';
  for (;;) {
    const gone = o.exited();
    if (gone !== undefined) throw new LabProcessError(`kube-apiserver exited (${gone}): ${o.logs()}`, { url: k.url });
    const r = await run('curl', ['-sS', '--max-time', '3', '--cacert', k.caFile, '-H', `@${k.authHeaderFile}`, `${k.url}/readyz`],
      { netns: o.netns, allowFail: true, timeoutMs: 10_000 });
    if (r.code === 0 && r.stdout.trim() === 'ok') return;
    last = (r.stdout + r.stderr).trim().slice(-300);
    if (Date.now() > deadline) throw new LabProcessError(`kube-apiserver not ready at ${k.url}/readyz (last: ${last}); log: ${o.logs()}`, { url: k.url });
    await delay(250, o.signal);
  }
}
