import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, type RunResult } from '../../src/exec/run.js';
import { KUBE_SKIP_MESSAGE, kubeApiserverPath, kubectlPath, prepareKubeApiserver, waitKubeApiserverReady, type PreparedKubeApiserver } from '../../src/lab/kube-apiserver.js';
import { freePort } from './etcd.js';
import { stopChild } from './lab-util.js';

/**
 * A real kube-apiserver 1.20 (built from Debian's source package by
 * scripts/kube-apiserver.sh) for tests and the lab: token auth, its own etcd
 * prefix, a throwaway CA, serving cert and service-account keys in a temp dir.
 */

export { KUBE_SKIP_MESSAGE, kubeCacheDir, kubeApiserverPath, kubeProxyPath, kubectlPath, kubeconfigYaml } from '../../src/lab/kube-apiserver.js';

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

/** Starts kube-apiserver and resolves once /readyz answers ok; throws (with its log tail) otherwise. */
export async function startKubeApiserver(opts: KubeApiserverOptions): Promise<KubeApiserver> {
  if (!kubeApiserverPath()) throw new Error(KUBE_SKIP_MESSAGE);
  const bind = opts.bindAddress ?? '127.0.0.1';
  const port = opts.port ?? (opts.netns ? 6443 : await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'weft-kube-'));
  let proc: ChildProcess | undefined;
  let stderr = '';

  const stop = async () => {
    const p = proc;
    proc = undefined;
    await stopChild(p, 10_000);
    rmSync(dir, { recursive: true, force: true });
  };

  let k: PreparedKubeApiserver;
  try {
    k = await prepareKubeApiserver({
      dir,
      etcd: opts.etcd,
      bindAddress: bind,
      port,
      etcdPrefix: opts.etcdPrefix,
      authorizationMode: opts.authorizationMode,
      serviceClusterIpRange: opts.serviceClusterIpRange,
      extraArgs: opts.extraArgs,
    });
    const [file, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, ...k.argv]] : [k.argv[0]!, k.argv.slice(1)];
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
    await waitKubeApiserverReady(k, {
      netns: opts.netns,
      exited: () => (p.exitCode !== null || p.signalCode !== null ? String(p.exitCode ?? p.signalCode) : undefined),
      logs: () => stderr,
      timeoutMs: opts.readyTimeoutMs,
    });
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    url: k.url,
    token: k.token,
    caFile: k.caFile,
    kubeconfigPath: k.kubeconfigPath,
    clientCertFile: k.clientCertFile,
    clientKeyFile: k.clientKeyFile,
    etcdPrefix: k.etcdPrefix,
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
