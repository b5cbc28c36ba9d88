import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isWeftError } from '../core/errors.js';
import { run } from '../exec/run.js';
import { readSubnetEnv, type SubnetEnv } from '../store/subnet-env.js';
import { ETCD_ENDPOINT, HOST_IFACE } from './names.js';
import { LabProcessError } from './errors.js';
import { isRunning, pollUntil, tailFile, type ProcIdentity, waitWhileAlive } from './procs.js';
import { nodeFlagsFor } from '../cli/node-flags.js';

/** Repository root (this file is src/lab/weftd.ts or dist/lab/weftd.js). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The built daemon the lab starts in every host. */
export const weftdScript = (): string => process.env.WEFT_LAB_WEFTD ?? join(repoRoot, 'dist', 'cli', 'weftd.js');

export interface WeftdPaths {
  subnetFile: string;
  stateDir: string;
  log: string;
  /** weftd serves the CNI shim here (the lab's pods are attached through it). */
  cniSocket: string;
}

export function weftdPaths(hostDir: string): WeftdPaths {
  return {
    subnetFile: join(hostDir, 'subnet.env'),
    stateDir: join(hostDir, 'state'),
    log: join(hostDir, 'weftd.log'),
    cniSocket: join(hostDir, 'cni.sock'),
  };
}

/** The weftd command line for one lab host (flannel's flag names). */
export function weftdArgv(paths: WeftdPaths, opts: { subnetLeaseTtl?: number; extra?: readonly string[] }): string[] {
  const argv = [
    process.execPath,
    ...nodeFlagsFor('weftd'),
    weftdScript(),
    '--etcd-endpoints', ETCD_ENDPOINT,
    '--iface', HOST_IFACE,
    '--subnet-file', paths.subnetFile,
    '--state-dir', paths.stateDir,
    '--ip-masq',
    '--cni-socket', paths.cniSocket,
  ];
  if (opts.subnetLeaseTtl !== undefined) argv.push('--subnet-lease-ttl', String(opts.subnetLeaseTtl));
  return [...argv, ...(opts.extra ?? [])];
}

function readSubnetEnvOrUndefined(path: string): SubnetEnv | undefined {
  try {
    return readSubnetEnv(path);
  } catch {
    return undefined; // not complete yet
  }
}

/** Waits (bounded) for weftd to write subnet.env; the error carries the log tail. */
export async function waitSubnetEnv(
  paths: WeftdPaths,
  proc: ProcIdentity,
  host: string,
  timeoutMs = 30_000,
  signal?: AbortSignal,
): Promise<SubnetEnv> {
  try {
    return await pollUntil(
      () => {
        if (!isRunning(proc)) throw new LabProcessError('weftd exited');
        return existsSync(paths.subnetFile) ? readSubnetEnvOrUndefined(paths.subnetFile) : undefined;
      },
      { timeoutMs, intervalMs: 100, what: `${paths.subnetFile}`, signal },
    );
  } catch (err) {
    if (isWeftError(err, 'ERR_ABORTED')) throw err;
    throw new LabProcessError(
      `weftd on ${host} wrote no subnet.env: ${(err as Error).message}\n--- ${paths.log} ---\n${tailFile(paths.log)}`,
      { host, log: paths.log },
    );
  }
}

/**
 * HTTP GET from inside a namespace without extra tools: bash's /dev/tcp.
 * Returns the status code, or undefined when nothing answers.
 */
export async function httpStatusInNetns(netns: string, host: string, port: number, path: string): Promise<number | undefined> {
  const script = `exec 3<>/dev/tcp/${host}/${port} && printf 'GET ${path} HTTP/1.0\\r\\nHost: ${host}\\r\\n\\r\\n' >&3 && head -n1 <&3`;
  const r = await run('timeout', ['3', 'bash', '-c', script], { netns, allowFail: true, timeoutMs: 5000 });
  const m = /^HTTP\/\d\.\d (\d{3})/.exec(r.stdout);
  return m ? Number(m[1]) : undefined;
}

/** Default weftd health port (on 127.0.0.1 inside the host namespace). */
export const WEFTD_HEALTHZ_PORT = 9808;

/** Bounded wait for weftd's /readyz to answer 200. */
export async function waitWeftdReady(
  netns: string,
  host: string,
  log: string,
  proc: ProcIdentity,
  timeoutMs = 30_000,
  signal?: AbortSignal,
): Promise<void> {
  await waitWhileAlive(async () => (await httpStatusInNetns(netns, '127.0.0.1', WEFTD_HEALTHZ_PORT, '/readyz')) === 200, {
    proc,
    name: `weftd on ${host}`,
    log,
    what: '/readyz',
    timeoutMs,
    signal,
    details: { host },
  });
}
