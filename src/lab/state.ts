import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../store/subnet-env.js';
import type { LabBackend } from './plan.js';
import { LabStateError } from './errors.js';

/**
 * The lab's record of everything it created, in `/run/weft-lab/<id>/state.json`.
 * Each object is recorded BEFORE it is created, so `lab down` can remove
 * exactly what exists even after a crash or a half-finished `up`. /run is a
 * tmpfs: a reboot removes both the namespaces and this record.
 */

export const STATE_VERSION = 1;

/** Root of all lab state. Default /run/weft-lab; WEFT_LAB_RUN_DIR overrides (unit tests). */
export function labRunRoot(): string {
  return process.env.WEFT_LAB_RUN_DIR ?? '/run/weft-lab';
}
export const labDir = (id: string): string => join(labRunRoot(), id);
export const statePath = (id: string): string => join(labDir(id), 'state.json');
export const hostDir = (id: string, host: string): string => join(labDir(id), host);

/** A long-running process the lab started. startTime guards against recycled PIDs. */
export interface ProcRecord {
  /** 'etcd', 'weftd:h1', or 'spawn:<n>' for labSpawn. */
  key: string;
  netns: string;
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot). */
  startTime: number;
  argv: string[];
  log: string;
}

export interface PodRecord {
  name: string;
  netns: string;
  index: number;
  hostVeth: string;
  /** Address once attached (no prefix). */
  ip?: string;
}

export interface HostRecord {
  name: string;
  index: number;
  netns: string;
  underlayIp: string;
  switchPort: string;
  /** Subnet from subnet.env once known (CIDR of the subnet, e.g. 10.244.3.0/24). */
  subnet?: string;
  mtu?: number;
  subnetFile: string;
  /** Control plane kubernetes: this host's kubeconfig (its own token) and Node name. */
  kubeconfig?: string;
  nodeName?: string;
  pods: PodRecord[];
}

/** The lab's kube-apiserver (control plane kubernetes); its process is ProcRecord 'kube-apiserver'. */
export interface KubeRecord {
  url: string;
  dir: string;
  etcdPrefix: string;
  caFile: string;
  /** The admin's kubeconfig (system:masters). */
  adminKubeconfig: string;
  /** curl -H @file with the admin's token. */
  authHeaderFile: string;
}

export interface LabState {
  version: number;
  id: string;
  createdAt: string;
  /** 'creating' until up finishes; 'deleting' once down starts. */
  phase: 'creating' | 'ready' | 'failed' | 'deleting';
  backend: LabBackend;
  network: string;
  subnetLeaseTtl?: number;
  weftdArgs: string[];
  startWeftd: boolean;
  /** weft-proxy mode on every host ('none' = not started). Absent in older state files. */
  proxyMode?: string;
  /** Pod attacher used by up (down detaches nothing: namespaces go, veths go with them). */
  attacher: string;
  etcd: { endpoint: string; dataDir: string };
  /** Where Services and Nodes live: 'etcd' (absent in older state files) or 'kubernetes'. */
  controlPlane?: 'etcd' | 'kubernetes';
  /** Where weftd takes subnets from: 'etcd' (default) or 'kubernetes' (Node spec.podCIDR). */
  subnetManager?: 'etcd' | 'kubernetes';
  kube?: KubeRecord;
  switchNetns: string;
  switchBridge: string;
  /** Namespaces in creation order (recorded before each `ip netns add`). */
  namespaces: string[];
  processes: ProcRecord[];
  hosts: HostRecord[];
  /** Counter for labSpawn keys. */
  spawned: number;
}

export function readState(id: string): LabState | undefined {
  const path = statePath(id);
  if (!existsSync(path)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new LabStateError(`${path} is not valid JSON: ${(err as Error).message}`, { path });
  }
  return checkState(parsed, path);
}

/** Validates the parts of a state file that `down` relies on. */
export function checkState(v: unknown, source = 'state'): LabState {
  const s = v as Partial<LabState> | null;
  if (!s || typeof s !== 'object') throw new LabStateError(`${source}: not an object`);
  if (s.version !== STATE_VERSION) throw new LabStateError(`${source}: unsupported version ${String(s.version)}`);
  if (typeof s.id !== 'string') throw new LabStateError(`${source}: id missing`);
  if (!Array.isArray(s.namespaces) || !s.namespaces.every((n) => typeof n === 'string')) {
    throw new LabStateError(`${source}: namespaces must be a list of names`);
  }
  if (!Array.isArray(s.processes) || !s.processes.every((p) => Number.isInteger(p?.pid) && Number.isInteger(p?.startTime))) {
    throw new LabStateError(`${source}: processes must carry pid and startTime`);
  }
  if (!Array.isArray(s.hosts)) throw new LabStateError(`${source}: hosts missing`);
  return s as LabState;
}

export function writeState(state: LabState): void {
  writeFileAtomic(statePath(state.id), JSON.stringify(state, null, 2) + '\n', 0o600);
}
