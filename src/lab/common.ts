import { run } from '../exec/run.js';
import { mkdirSync } from 'node:fs';
import { LabNotFoundError } from './errors.js';
import { validateLabId } from './names.js';
import { spawnInNetns } from './procs.js';
import { hostDir, labDir, readState, writeState, type HostRecord, type LabState, type ProcRecord } from './state.js';
import { weftdArgv, weftdPaths } from './weftd.js';
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

export function recordProc(state: LabState, key: string, netns: string, argv: string[], log: string): ProcRecord {
  const p = spawnInNetns(netns, argv, log, labEnv());
  const rec: ProcRecord = { key, netns, pid: p.pid, startTime: p.startTime, argv, log };
  state.processes.push(rec);
  writeState(state);
  return rec;
}

export async function launchWeftd(state: LabState, host: HostRecord): Promise<ProcRecord> {
  const paths = weftdPaths(hostDir(state.id, host.name));
  mkdirSync(paths.stateDir, { recursive: true });
  const argv = weftdArgv(paths, { subnetLeaseTtl: state.subnetLeaseTtl, extra: state.weftdArgs });
  return recordProc(state, `weftd:${host.name}`, host.netns, argv, paths.log);
}

export function launchProxy(state: LabState, host: HostRecord): ProcRecord {
  const mode = (state.proxyMode ?? 'none') as LabProxyMode;
  if (mode === 'none') throw new LabNotFoundError(`lab ${state.id} runs no weft-proxy (proxy mode none)`, { id: state.id });
  return recordProc(state, `proxy:${host.name}`, host.netns, proxyArgv(state, host, mode), proxyLogPath(state.id, host.name));
}
