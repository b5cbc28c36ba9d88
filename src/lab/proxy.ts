import { join } from 'node:path';
import { ETCD_ENDPOINT } from './names.js';
import { type ProcIdentity, waitWhileAlive } from './procs.js';
import { hostDir, type HostRecord, type LabState } from './state.js';
import { httpStatusInNetns, repoRoot } from './weftd.js';
import { nodeFlagsFor } from '../cli/node-flags.js';

/** Proxy modes the lab can run; 'none' starts no weft-proxy. */
export const LAB_PROXY_MODES = ['iptables', 'nftables', 'none'] as const;
export type LabProxyMode = (typeof LAB_PROXY_MODES)[number];

/** weft-proxy's healthz port (kube-proxy's), on 127.0.0.1 inside the host. */
export const PROXY_HEALTHZ_PORT = 10256;

export const proxyScript = (): string => process.env.WEFT_LAB_PROXY ?? join(repoRoot, 'dist', 'cli', 'weft-proxy.js');
export const proxyLogPath = (id: string, host: string): string => join(hostDir(id, host), 'weft-proxy.log');

/** The weft-proxy command line for one lab host. */
export function proxyArgv(state: LabState, host: HostRecord, mode: Exclude<LabProxyMode, 'none'>): string[] {
  return [
    process.execPath,
    ...nodeFlagsFor('weft-proxy'),
    proxyScript(),
    // From the lab's API server when it has one, as kube-proxy runs; else from etcd.
    ...(state.controlPlane === 'kubernetes' && host.kubeconfig ? ['--kubeconfig', host.kubeconfig] : ['--etcd-endpoints', ETCD_ENDPOINT]),
    '--proxy-mode', mode,
    '--hostname-override', host.name,
    '--node-ip', host.underlayIp,
    '--cluster-cidr', state.network,
  ];
}

/** Bounded wait for weft-proxy's /healthz (it answers once rules are written). */
export async function waitProxyHealthy(host: HostRecord, proc: ProcIdentity, log: string, timeoutMs = 30_000, signal?: AbortSignal): Promise<void> {
  await waitWhileAlive(async () => (await httpStatusInNetns(host.netns, '127.0.0.1', PROXY_HEALTHZ_PORT, '/healthz')) === 200, {
    proc,
    name: `weft-proxy on ${host.name}`,
    log,
    what: '/healthz',
    timeoutMs,
    signal,
    details: { host: host.name },
  });
}
