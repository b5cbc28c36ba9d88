import { formatCidr } from '../core/ip.js';
import { readSubnetEnv } from '../store/subnet-env.js';
import { mustState } from './common.js';
import { isRunning } from './procs.js';
import type { LabState } from './state.js';

export interface LabPodStatus {
  name: string;
  ip: string | null;
  netns: string;
}

export interface LabHostStatus {
  name: string;
  netns: string;
  underlayIp: string;
  subnet: string | null;
  mtu: number | null;
  weftd: { pid: number; running: boolean } | null;
  /** Control plane kubernetes: the host's kubeconfig. */
  kubeconfig?: string;
  pods: LabPodStatus[];
}

/** Where Services and Nodes live; for kubernetes, the API server and its process. */
export interface LabControlPlaneStatus {
  kind: 'etcd' | 'kubernetes';
  subnetManager: 'etcd' | 'kubernetes';
  /** kubernetes: the API server URL (reachable from the lab's namespaces), its PID and liveness. */
  url?: string;
  pid?: number;
  running?: boolean;
  /** kubernetes: the admin's kubeconfig. */
  adminKubeconfig?: string;
}

export interface LabStatus {
  id: string;
  etcd: string;
  controlPlane: LabControlPlaneStatus;
  backend: string;
  network: string;
  phase: LabState['phase'];
  etcdRunning: boolean;
  hosts: LabHostStatus[];
}

function controlPlaneOf(state: LabState): LabControlPlaneStatus {
  const kind = state.controlPlane ?? 'etcd';
  const subnetManager = state.subnetManager ?? 'etcd';
  if (kind === 'etcd') return { kind, subnetManager };
  const p = [...state.processes].reverse().find((r) => r.key === 'kube-apiserver');
  return { kind, subnetManager, url: state.kube?.url, pid: p?.pid, running: p ? isRunning(p) : false, adminKubeconfig: state.kube?.adminKubeconfig };
}

export function statusOf(state: LabState): LabStatus {
  const etcdProc = state.processes.find((p) => p.key === 'etcd');
  return {
    id: state.id,
    etcd: state.etcd.endpoint,
    controlPlane: controlPlaneOf(state),
    backend: state.backend,
    network: state.network,
    phase: state.phase,
    etcdRunning: etcdProc ? isRunning(etcdProc) : false,
    hosts: state.hosts.map((h) => {
      // subnet.env is the live truth (weftd may have been restarted); the record is the fallback.
      let subnet = h.subnet ?? null;
      let mtu = h.mtu ?? null;
      try {
        const env = readSubnetEnv(h.subnetFile);
        subnet = formatCidr(env.subnet);
        mtu = env.mtu;
      } catch {
        /* not written yet */
      }
      const w = [...state.processes].reverse().find((p) => p.key === `weftd:${h.name}`);
      return {
        name: h.name,
        netns: h.netns,
        underlayIp: h.underlayIp,
        subnet,
        mtu,
        weftd: w ? { pid: w.pid, running: isRunning(w) } : null,
        ...(h.kubeconfig ? { kubeconfig: h.kubeconfig } : {}),
        pods: h.pods.map((p) => ({ name: p.name, ip: p.ip ?? null, netns: p.netns })),
      };
    }),
  };
}

/** The lab as recorded, with live subnet.env and process liveness. */
export function labStatus(id: string): LabStatus {
  return statusOf(mustState(id));
}
