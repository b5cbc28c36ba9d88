import { InvalidArgumentError } from '../core/errors.js';
import { formatCidr, netSize, parseCidr, type IPv4Net } from '../core/ip.js';
import {
  MAX_HOSTS,
  MAX_PODS_PER_HOST,
  checkIfname,
  hostName,
  hostNetns,
  podHostVeth,
  podName,
  podNetns,
  switchBridge,
  switchNetns,
  switchPort,
  underlayIp,
  validateLabId,
} from './names.js';

export const BACKENDS = ['host-gw', 'vxlan', 'udp'] as const;
export type LabBackend = (typeof BACKENDS)[number];

/** What a lab is made of, before anything is created (pure). */
export interface LabPlanInput {
  /** Lab id. Default 'weft'. */
  id?: string;
  /** Number of hosts. Default 3. */
  hosts?: number;
  /** Pods per host. Default 1. */
  podsPerHost?: number;
  /** Data path weftd programs. Default 'host-gw'. */
  backend?: string;
  /** Pod network (flannel's `Network`). Default '10.244.0.0/16'. */
  network?: string;
}

export interface PodPlan {
  name: string;
  netns: string;
  index: number;
  /** Host end of the pod's veth (inside the host namespace). */
  hostVeth: string;
}

export interface HostPlan {
  name: string;
  index: number;
  netns: string;
  underlayIp: string;
  /** Switch end of the underlay veth (inside the switch namespace). */
  switchPort: string;
  pods: PodPlan[];
}

export interface LabPlan {
  id: string;
  backend: LabBackend;
  network: string;
  switchNetns: string;
  switchBridge: string;
  hosts: HostPlan[];
}

function intIn(field: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new InvalidArgumentError(field, `${v} is not an integer between ${min} and ${max}`);
  }
  return v;
}

export function parseBackend(v: string): LabBackend {
  if (!(BACKENDS as readonly string[]).includes(v)) {
    throw new InvalidArgumentError('backend', `"${v}" is not one of ${BACKENDS.join(', ')}`);
  }
  return v as LabBackend;
}

/** Validates the options and names every namespace and link the lab will have. */
export function planLab(input: LabPlanInput = {}): LabPlan {
  const id = validateLabId(input.id ?? 'weft');
  const hosts = intIn('hosts', input.hosts ?? 3, 1, MAX_HOSTS);
  const pods = intIn('podsPerHost', input.podsPerHost ?? 1, 0, MAX_PODS_PER_HOST);
  const backend = parseBackend(input.backend ?? 'host-gw');
  const net = parseCidr(input.network ?? '10.244.0.0/16', 'network');
  if (net.prefixLen > 28) throw new InvalidArgumentError('network', `${formatCidr(net)} is too small for a lab`);
  const plan: LabPlan = {
    id,
    backend,
    network: formatCidr(net),
    switchNetns: switchNetns(id),
    switchBridge: checkIfname(switchBridge(id)),
    hosts: [],
  };
  for (let n = 1; n <= hosts; n++) {
    const host: HostPlan = {
      name: hostName(n),
      index: n,
      netns: hostNetns(id, n),
      underlayIp: underlayIp(n),
      switchPort: checkIfname(switchPort(id, n)),
      pods: [],
    };
    for (let k = 1; k <= pods; k++) {
      host.pods.push({ name: podName(n, k), netns: podNetns(id, n, k), index: k, hostVeth: checkIfname(podHostVeth(id, k)) });
    }
    plan.hosts.push(host);
  }
  return plan;
}

/** Every namespace of a plan, switch first. */
export function planNamespaces(plan: LabPlan): string[] {
  return [plan.switchNetns, ...plan.hosts.flatMap((h) => [h.netns, ...h.pods.map((p) => p.netns)])];
}

/**
 * Subnet the lab assigns to host N when weftd is not started (development
 * fallback): the N-th subnet of flannel's default size (/24 for networks of
 * /22 or larger, else prefix + 2), so host 1 gets 10.244.1.0/24.
 */
export function fallbackSubnet(network: string, n: number): IPv4Net {
  const net = parseCidr(network, 'network');
  const len = net.prefixLen <= 22 ? 24 : net.prefixLen + 2;
  const size = 2 ** (32 - len);
  const count = netSize(net) / size;
  if (n >= count) throw new InvalidArgumentError('hosts', `network ${formatCidr(net)} holds only ${count - 1} host subnets`);
  return { ip: (net.ip + n * size) >>> 0, prefixLen: len };
}
