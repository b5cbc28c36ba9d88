import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';
import { run } from '../exec/run.js';
import { recordProc } from './common.js';
import { LabProcessError } from './errors.js';
import { kubeApiserverPath, kubeconfigYaml, newToken, prepareKubeApiserver, waitKubeApiserverReady, KUBE_APISERVER_SCRIPT } from './kube-apiserver.js';
import { ETCD_IP } from './names.js';
import { isRunning, tailFile } from './procs.js';
import { hostDir, labDir, writeState, type HostRecord, type LabState } from './state.js';

/**
 * The lab's Kubernetes control plane (`lab up --control-plane kubernetes`):
 * kube-apiserver in the switch namespace beside etcd (its own etcd prefix,
 * token auth), a Node per host and a kubeconfig per host. The root namespace
 * has no route to the switch, so the lab itself talks to the API with curl
 * inside the switch namespace (as it does to etcd).
 */

export const LAB_CONTROL_PLANES = ['etcd', 'kubernetes'] as const;
export type LabControlPlane = (typeof LAB_CONTROL_PLANES)[number];
export const LAB_SUBNET_MANAGERS = ['etcd', 'kubernetes'] as const;
export type LabSubnetManager = (typeof LAB_SUBNET_MANAGERS)[number];

export const KUBE_API_PORT = 6443;
export const KUBE_API_URL = `https://${ETCD_IP}:${KUBE_API_PORT}`;
/** etcd prefix of the lab's API server (beside flannel's /coreos.com/network and weft's /weft). */
export const KUBE_ETCD_PREFIX = '/weft-lab-kube';
export const KUBE_PROC_KEY = 'kube-apiserver';

export const labKubeDir = (id: string): string => join(labDir(id), 'kube');
export const hostKubeconfigPath = (id: string, host: string): string => join(hostDir(id, host), 'kubeconfig');

/** Checks the control-plane options before anything is made. */
export function checkControlPlane(controlPlane: string, subnetManager: string): void {
  if (!LAB_CONTROL_PLANES.includes(controlPlane as LabControlPlane)) {
    throw new InvalidArgumentError('controlPlane', `"${controlPlane}" is not one of ${LAB_CONTROL_PLANES.join(', ')}`);
  }
  if (!LAB_SUBNET_MANAGERS.includes(subnetManager as LabSubnetManager)) {
    throw new InvalidArgumentError('subnetManager', `"${subnetManager}" is not one of ${LAB_SUBNET_MANAGERS.join(', ')}`);
  }
  if (subnetManager === 'kubernetes' && controlPlane !== 'kubernetes') {
    throw new InvalidArgumentError('subnetManager', 'kubernetes needs --control-plane kubernetes (the subnets come from the Nodes)');
  }
  if (controlPlane === 'kubernetes' && !kubeApiserverPath()) {
    throw new InvalidArgumentError('controlPlane', `kubernetes needs a built kube-apiserver: run ${KUBE_APISERVER_SCRIPT} (it caches the binary under /var/cache/weft/kube)`);
  }
}

/**
 * Starts kube-apiserver in the switch namespace on 192.0.2.254:6443 and
 * writes one kubeconfig per host (a token each). Recorded before it runs, so
 * `lab down` stops it by PID even after a crash.
 */
export async function startLabKubeApiserver(state: LabState, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const dir = labKubeDir(state.id);
  const tokens = new Map(state.hosts.map((h) => [h.name, newToken()]));
  const k = await prepareKubeApiserver({
    dir,
    etcd: `http://127.0.0.1:2379`,
    bindAddress: ETCD_IP,
    port: KUBE_API_PORT,
    etcdPrefix: KUBE_ETCD_PREFIX,
    // Each host's kubelet-like identity; AlwaysAllow authorizes every authenticated user.
    users: state.hosts.map((h) => ({ token: tokens.get(h.name)!, user: `system:node:${h.name}`, groups: ['system:nodes'] })),
  });
  state.kube = { url: k.url, dir, etcdPrefix: k.etcdPrefix, caFile: k.caFile, adminKubeconfig: k.kubeconfigPath, authHeaderFile: k.authHeaderFile };
  for (const h of state.hosts) {
    h.nodeName = h.name;
    h.kubeconfig = hostKubeconfigPath(state.id, h.name);
    writeFileSync(h.kubeconfig, kubeconfigYaml(k.url, k.caFile, tokens.get(h.name)!, `system:node:${h.name}`, `lab-${state.id}`), { mode: 0o600 });
  }
  writeState(state);
  const log = join(labDir(state.id), 'kube-apiserver.log');
  const rec = recordProc(state, KUBE_PROC_KEY, state.switchNetns, k.argv, log);
  await waitKubeApiserverReady(k, {
    netns: state.switchNetns,
    exited: () => (isRunning(rec) ? undefined : 'see its log'),
    logs: () => `\n--- ${log} ---\n${tailFile(log)}`,
    // The first start creates its bootstrap objects; on a loaded machine that takes a while.
    timeoutMs: Math.max(timeoutMs, 120_000),
    signal,
  });
}

export interface KubeAnswer<T> {
  status: number;
  body: T;
}

/** One API request as the lab's admin, from inside the switch namespace. */
export async function labKubeRequest<T = Record<string, unknown>>(
  state: LabState,
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
  path: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<KubeAnswer<T>> {
  const kube = state.kube;
  if (!kube) throw new LabProcessError(`lab ${state.id} has no Kubernetes control plane`, { id: state.id });
  if (!path.startsWith('/') || /[\s\\]/.test(path)) throw new InvalidArgumentError('path', `${JSON.stringify(path)} is not an API path`);
  const args = ['-sS', '--max-time', '10', '--cacert', kube.caFile, '-H', `@${kube.authHeaderFile}`, '-X', method, '-w', '\n%{http_code}'];
  if (body !== undefined) args.push('-H', `Content-Type: ${contentType}`, '--data-binary', '@-');
  args.push(`${kube.url}${path}`);
  const r = await run('curl', args, { netns: state.switchNetns, input: body === undefined ? undefined : JSON.stringify(body), timeoutMs: 15_000 });
  const nl = r.stdout.lastIndexOf('\n');
  const status = Number(r.stdout.slice(nl + 1));
  const text = r.stdout.slice(0, Math.max(nl, 0));
  let parsed: unknown = {};
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    throw new LabProcessError(`${method} ${path}: answer is not JSON (HTTP ${status}): ${text.slice(0, 200)}`, { path, status });
  }
  return { status, body: parsed as T };
}

async function mustOk<T>(p: Promise<KubeAnswer<T>>, what: string): Promise<T> {
  const r = await p;
  if (r.status < 200 || r.status > 299) {
    const msg = (r.body as { message?: unknown })?.message;
    throw new LabProcessError(`${what}: HTTP ${r.status}${typeof msg === 'string' ? `: ${msg}` : ''}`, { status: r.status });
  }
  return r.body;
}

/** The Node object the lab creates for a host, as a kubelet would register it. */
export function nodeObject(host: HostRecord, podCIDR?: string): Record<string, unknown> {
  const name = host.nodeName ?? host.name;
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' } },
    spec: podCIDR ? { podCIDR, podCIDRs: [podCIDR] } : {},
    // Nodes take status on create (kubelets register that way).
    status: { addresses: [{ type: 'InternalIP', address: host.underlayIp }, { type: 'Hostname', address: name }] },
  };
}

/** Creates the host's Node (podCIDR when the lab allocates it now). */
export async function createLabNode(state: LabState, host: HostRecord, podCIDR?: string): Promise<void> {
  await mustOk(labKubeRequest(state, 'POST', '/api/v1/nodes', nodeObject(host, podCIDR)), `create Node ${host.name}`);
}

/** Sets spec.podCIDR once weftd holds the host's subnet (it may be set only once). */
export async function setNodePodCidr(state: LabState, host: HostRecord, podCIDR: string): Promise<void> {
  const name = encodeURIComponent(host.nodeName ?? host.name);
  await mustOk(
    labKubeRequest(state, 'PATCH', `/api/v1/nodes/${name}`, { spec: { podCIDR, podCIDRs: [podCIDR] } }, 'application/merge-patch+json'),
    `set spec.podCIDR of Node ${host.name}`,
  );
}

/** The Nodes as the API has them. */
export async function listLabNodes(state: LabState): Promise<Array<{ metadata: { name: string }; spec?: { podCIDR?: string }; status?: { addresses?: Array<{ type: string; address: string }> } }>> {
  const body = await mustOk(labKubeRequest<{ items?: [] }>(state, 'GET', '/api/v1/nodes'), 'list Nodes');
  return body.items ?? [];
}
