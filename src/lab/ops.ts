import { join } from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';
import { run, type RunResult } from '../exec/run.js';
import { launchProxy, launchWeftd, mustState, recordProc, withLock } from './common.js';
import { proxyLogPath, waitProxyHealthy } from './proxy.js';
import { etcdArgv, labEtcdClient, waitEtcdHealthy, type LabEtcd } from './etcd.js';
import { LabProcessError } from './errors.js';
import { resolveTarget } from './names.js';
import { isRunning, stopProcs } from './procs.js';
import { hostDir, labDir, writeState, type HostRecord, type LabState } from './state.js';
import { waitSubnetEnv, waitWeftdReady, weftdPaths } from './weftd.js';

/** Day-to-day operations on a running lab: exec, spawn, weftd restarts, etcd access. */

/** Namespace of `h1`, `h1-p1`, `sw` or a full namespace name of this lab. */
export function labTarget(id: string, target: string): string {
  const state = mustState(id);
  return resolveTarget(id, target, state.namespaces);
}

export const hostNetnsOf = (id: string, host: string): string => labTarget(id, host);
export const podNetnsOf = (id: string, pod: string): string => labTarget(id, pod);

/** Runs a command inside a lab namespace and waits for it. */
export async function labExec(
  id: string,
  target: string,
  argv: string[],
  opts: { allowFail?: boolean; input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  if (argv.length === 0) throw new InvalidArgumentError('argv', 'no command given');
  const netns = labTarget(id, target);
  return run(argv[0]!, argv.slice(1), { netns, allowFail: opts.allowFail, input: opts.input, timeoutMs: opts.timeoutMs });
}

export interface LabSpawned {
  key: string;
  pid: number;
  log: string;
}

/** Starts a long-running process in a lab namespace; its PID is recorded so `down` stops it. */
export async function labSpawn(id: string, target: string, argv: string[]): Promise<LabSpawned> {
  if (argv.length === 0) throw new InvalidArgumentError('argv', 'no command given');
  return withLock(id, async () => {
    const state = mustState(id);
    const netns = resolveTarget(id, target, state.namespaces);
    state.spawned += 1;
    const key = `spawn:${state.spawned}`;
    const rec = recordProc(state, key, netns, argv, join(labDir(id), `spawn-${state.spawned}.log`));
    return { key, pid: rec.pid, log: rec.log };
  });
}

/** Stops a process started by labSpawn (or a weftd / etcd by key) and drops its record. */
export async function labStop(id: string, key: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<boolean> {
  return withLock(id, async () => {
    const state = mustState(id);
    const recs = state.processes.filter((p) => p.key === key);
    const stopped = await stopProcs(recs, { signal });
    state.processes = state.processes.filter((p) => p.key !== key);
    writeState(state);
    return stopped.length > 0;
  });
}

function hostRecord(state: LabState, host: string): HostRecord {
  const h = state.hosts.find((x) => x.name === host || x.netns === host);
  if (!h) throw new InvalidArgumentError('host', `"${host}" is not a host of lab "${state.id}"`);
  return h;
}

/** Stops weftd on a host (SIGKILL simulates a crash; the data path stays). */
export async function stopWeftd(id: string, host: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<boolean> {
  const h = hostRecord(mustState(id), host);
  return labStop(id, `weftd:${h.name}`, signal);
}

/**
 * (Re)starts weftd on a host with the lab's flags, keeping its subnet.env so
 * the daemon can ask for the same subnet; waits for subnet.env and /readyz.
 */
export async function startWeftd(
  id: string,
  host: string,
  opts: { waitReady?: boolean; timeoutMs?: number } = {},
): Promise<{ pid: number }> {
  const rec = await withLock(id, async () => {
    const state = mustState(id);
    const h = hostRecord(state, host);
    const running = state.processes.find((p) => p.key === `weftd:${h.name}` && isRunning(p));
    if (running) throw new LabProcessError(`weftd already runs on ${h.name} (pid ${running.pid})`, { host: h.name });
    state.processes = state.processes.filter((p) => p.key !== `weftd:${h.name}`);
    return { rec: await launchWeftd(state, h), h };
  });
  const paths = weftdPaths(hostDir(id, rec.h.name));
  await waitSubnetEnv(paths, rec.rec, rec.h.name, opts.timeoutMs);
  if (opts.waitReady ?? true) await waitWeftdReady(rec.h.netns, rec.h.name, paths.log, rec.rec, opts.timeoutMs);
  return { pid: rec.rec.pid };
}

/** Stops weft-proxy on a host (its rules stay, as with kube-proxy). */
export async function stopProxy(id: string, host: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<boolean> {
  const h = hostRecord(mustState(id), host);
  return labStop(id, `proxy:${h.name}`, signal);
}

/** (Re)starts weft-proxy on a host in the lab's mode and waits (bounded) for /healthz. */
export async function startProxy(id: string, host: string, opts: { timeoutMs?: number } = {}): Promise<{ pid: number }> {
  const { rec, h } = await withLock(id, async () => {
    const state = mustState(id);
    const h = hostRecord(state, host);
    const running = state.processes.find((p) => p.key === `proxy:${h.name}` && isRunning(p));
    if (running) throw new LabProcessError(`weft-proxy already runs on ${h.name} (pid ${running.pid})`, { host: h.name });
    state.processes = state.processes.filter((p) => p.key !== `proxy:${h.name}`);
    return { rec: launchProxy(state, h), h };
  });
  await waitProxyHealthy(h, rec, proxyLogPath(id, h.name), opts.timeoutMs);
  return { pid: rec.pid };
}

/** Client for the lab's etcd (from the root namespace, via the switch). */
export function labEtcd(id: string): LabEtcd {
  return labEtcdClient(mustState(id).switchNetns);
}

/**
 * Sends a signal to a recorded process ('etcd', 'weftd:h1', 'spawn:3')
 * without stopping it for good: SIGSTOP / SIGCONT simulate an etcd outage.
 * Returns false when the process no longer runs (start time checked).
 */
export function labSignal(id: string, key: string, signal: NodeJS.Signals): boolean {
  const rec = mustState(id).processes.find((p) => p.key === key && isRunning(p));
  if (!rec) return false;
  process.kill(rec.pid, signal);
  return true;
}

/** Stops the lab's etcd (data kept in /run/weft-lab/<id>/etcd) to simulate an outage. */
export async function stopEtcd(id: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<boolean> {
  return labStop(id, 'etcd', signal);
}

/** Starts the lab's etcd again on the same data dir and waits (bounded) for /health. */
export async function startEtcd(id: string, opts: { timeoutMs?: number } = {}): Promise<{ pid: number }> {
  const { rec, state } = await withLock(id, async () => {
    const state = mustState(id);
    const running = state.processes.find((p) => p.key === 'etcd' && isRunning(p));
    if (running) throw new LabProcessError(`etcd already runs in lab ${id} (pid ${running.pid})`);
    state.processes = state.processes.filter((p) => p.key !== 'etcd');
    const log = join(labDir(id), 'etcd.log');
    return { rec: recordProc(state, 'etcd', state.switchNetns, etcdArgv(id, state.etcd.dataDir), log), state };
  });
  await waitEtcdHealthy(labEtcdClient(state.switchNetns), rec, rec.log, opts.timeoutMs ?? 30_000);
  return { pid: rec.pid };
}
