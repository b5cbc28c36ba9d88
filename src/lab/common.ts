import { run } from '../exec/run.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LabNotFoundError } from './errors.js';
import { validateLabId } from './names.js';
import { spawnInNetns } from './procs.js';
import { hostDir, labDir, readState, writeState, type HostRecord, type LabState, type ProcRecord } from './state.js';
import { weftdArgv, weftdPaths, type WeftdPaths } from './weftd.js';
import { proxyArgv, proxyLogPath, type LabProxyMode } from './proxy.js';

/** Pieces shared by up, down and the day-to-day operations on a lab. */

// One read-modify-write of a lab's state at a time within this process.
const locks = new Map<string, Promise<unknown>>();
export async function withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(id) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  locks.set(
    id,
    next.catch(() => {}),
  );
  return next;
}

export function mustState(id: string): LabState {
  const s = readState(validateLabId(id));
  if (!s) throw new LabNotFoundError(`no lab "${id}" (no state under ${labDir(id)}); run: weftctl lab up --id ${id}`, { id });
  return s;
}

/** Namespaces that currently exist (`ip netns list`). */
export async function listNetns(): Promise<string[]> {
  const r = await run('ip', ['netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

/**
 * The caller's environment without variables that etcd (ETCD_*) and weftd
 * (WEFTD_*) read as flags: a lab must not change with the shell it runs in.
 */
export function labEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('ETCD_') && !k.startsWith('WEFTD_')));
}

export function recordProc(state: LabState, key: string, netns: string, argv: string[], log: string, extraEnv: Record<string, string> = {}): ProcRecord {
  const p = spawnInNetns(netns, argv, log, { ...labEnv(), ...extraEnv });
  const rec: ProcRecord = { key, netns, pid: p.pid, startTime: p.startTime, argv, log };
  state.processes.push(rec);
  writeState(state);
  return rec;
}

export async function launchWeftd(state: LabState, host: HostRecord): Promise<ProcRecord> {
  const paths = weftdPaths(hostDir(state.id, host.name));
  mkdirSync(paths.stateDir, { recursive: true });
  if (state.subnetManager === 'kubernetes') return launchWeftdKube(state, host, paths);
  const argv = weftdArgv(paths, { subnetLeaseTtl: state.subnetLeaseTtl, extra: state.weftdArgs });
  return recordProc(state, `weftd:${host.name}`, host.netns, argv, paths.log);
}

/**
 * weftd as flanneld runs in a Kubernetes cluster (--subnet-manager
 * kubernetes): --kube-subnet-mgr with the host's kubeconfig, NODE_NAME, and
 * net-conf.json in place of etcd's network config. The one place that says
 * how; weftd's Kubernetes subnet manager reads spec.podCIDR of its Node.
 */
export function launchWeftdKube(state: LabState, host: HostRecord, paths: WeftdPaths): ProcRecord {
  if (!host.kubeconfig) throw new LabNotFoundError(`host ${host.name} of lab ${state.id} has no kubeconfig (control plane ${state.controlPlane ?? 'etcd'})`);
  const netConf = join(hostDir(state.id, host.name), 'net-conf.json');
  writeFileSync(netConf, labNetworkConfig(state.network, state.backend));
  const base = weftdArgv(paths, { subnetLeaseTtl: state.subnetLeaseTtl, extra: state.weftdArgs });
  const at = base.indexOf('--etcd-endpoints');
  const argv = at >= 0 ? [...base.slice(0, at), ...base.slice(at + 2)] : base;
  argv.push('--kube-subnet-mgr', '--kubeconfig-file', host.kubeconfig, '--net-config-path', netConf);
  return recordProc(state, `weftd:${host.name}`, host.netns, argv, paths.log, { NODE_NAME: host.nodeName ?? host.name });
}

/** flannel's network config for the lab. */
export function labNetworkConfig(network: string, backend: string): string {
  return JSON.stringify({ Network: network, Backend: { Type: backend } });
}

export function launchProxy(state: LabState, host: HostRecord): ProcRecord {
  const mode = (state.proxyMode ?? 'none') as LabProxyMode;
  if (mode === 'none') throw new LabNotFoundError(`lab ${state.id} runs no weft-proxy (proxy mode none)`, { id: state.id });
  return recordProc(state, `proxy:${host.name}`, host.netns, proxyArgv(state, host, mode), proxyLogPath(state.id, host.name));
}
