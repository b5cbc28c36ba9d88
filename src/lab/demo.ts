import { join } from 'node:path';
import { waitFor } from '../core/async.js';
import type { LabBackend } from './plan.js';
import { labDown } from './down.js';
import { ETCD_ENDPOINT } from './names.js';
import { labExec } from './ops.js';
import { labServePods } from './podserver.js';
import type { LabProxyMode } from './proxy.js';
import type { LabControlPlane } from './kube.js';
import { readState } from './state.js';
import type { LabStatus } from './status.js';
import { labUp } from './up.js';
import { renderChecks, topologyFromLab, verifyCurl, verifyPing, type Check } from './verify.js';
import { repoRoot } from './weftd.js';

export interface DemoOptions {
  /** Lab id. Default 'demo'. */
  id?: string;
  /** Default 'vxlan'. */
  backend?: LabBackend;
  /** Default 'iptables'. */
  proxyMode?: Exclude<LabProxyMode, 'none'>;
  /** Default 3. */
  hosts?: number;
  /** Default 2. */
  podsPerHost?: number;
  /** Default 'etcd'; 'kubernetes' creates the Service through the lab's kube-apiserver. */
  controlPlane?: LabControlPlane;
  /** Progress lines ("==> ..."). Default: none. */
  progress?: (line: string) => void;
}

export interface DemoResult {
  status: LabStatus;
  checks: Check[];
  ok: boolean;
  /** The readable summary table. */
  report: string;
}

/** The demo Service: ClusterIP + NodePort over every pod's HTTP server. */
export const DEMO_SERVICE = { name: 'demo', clusterIp: '10.96.0.100', port: 80, targetPort: 8080, nodePort: 30080 };

/** Service + EndpointSlice manifests (Kubernetes JSON) for the lab's pods. */
export function demoManifests(status: LabStatus): string {
  const s = DEMO_SERVICE;
  const service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: s.name, namespace: 'default' },
    spec: {
      type: 'NodePort',
      clusterIP: s.clusterIp,
      selector: { app: s.name },
      ports: [{ name: 'http', protocol: 'TCP', port: s.port, targetPort: s.targetPort, nodePort: s.nodePort }],
    },
  };
  const slice = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${s.name}-lab`, namespace: 'default', labels: { 'kubernetes.io/service-name': s.name } },
    addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: s.targetPort }],
    endpoints: status.hosts.flatMap((h) =>
      h.pods.filter((p) => p.ip).map((p) => ({ addresses: [p.ip], conditions: { ready: true, serving: true, terminating: false }, nodeName: h.name })),
    ),
  };
  return `${JSON.stringify(service)}\n---\n${JSON.stringify(slice)}\n`;
}

/**
 * The README's main job: a lab with weftd, weft-proxy and CNI-attached pods
 * that serve HTTP, a Service over them, then ping and curl verification.
 * Leaves the lab running for a person to look around.
 */
export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  const id = opts.id ?? 'demo';
  const say = opts.progress ?? (() => {});
  if (readState(id)) {
    say(`removing the older lab "${id}"`);
    await labDown(id);
  }
  say(`bringing up a ${opts.hosts ?? 3}-host lab "${id}": etcd${opts.controlPlane === 'kubernetes' ? ', kube-apiserver' : ''}, weftd (${opts.backend ?? 'vxlan'}), weft-proxy (${opts.proxyMode ?? 'iptables'}), pods via the weft CNI plugin`);
  const status = await labUp({
    id,
    hosts: opts.hosts ?? 3,
    podsPerHost: opts.podsPerHost ?? 2,
    backend: opts.backend ?? 'vxlan',
    proxyMode: opts.proxyMode ?? 'iptables',
    controlPlane: opts.controlPlane ?? 'etcd',
    onStep: (step) => say(`  ${step}`),
  });

  say('starting an HTTP server in every pod (answers "<pod> <ip>")');
  await labServePods(id, { port: DEMO_SERVICE.targetPort });

  const s = DEMO_SERVICE;
  // Through the lab's API server when it has one (weft-proxy reads it from there), else into etcd.
  const kubeconfig = status.hosts[0]?.kubeconfig;
  const source = kubeconfig ? ['apply', '-f', '-', '--kubeconfig', kubeconfig] : ['--etcd-endpoints', ETCD_ENDPOINT, 'apply', '-f', '-'];
  say(`applying Service ${s.name}${kubeconfig ? ' through the Kubernetes API' : ''}: ClusterIP ${s.clusterIp}:${s.port}, NodePort ${s.nodePort}`);
  await labExec(id, 'h1', [process.execPath, join(repoRoot, 'dist', 'cli', 'weftctl.js'), ...source], {
    input: demoManifests(status),
  });
  // Bounded wait for the rules to reach every host (the proxies sync at most once a second).
  const firstPod = status.hosts.flatMap((h) => h.pods)[0]!;
  await waitFor(
    async () => (await labExec(id, firstPod.name, ['curl', '-sf', '--max-time', '2', `http://${s.clusterIp}:${s.port}/`], { allowFail: true })).code === 0,
    { timeoutMs: 30_000, intervalMs: 300, what: `${s.clusterIp}:${s.port} answering` },
  );

  const topo = topologyFromLab(id);
  say('verifying: every pod pings every other pod');
  const pings = await verifyPing(topo, { count: 2 });
  say('verifying: the ClusterIP from every pod, the NodePort on every host');
  const curls = await verifyCurl(topo, { clusterIp: `${s.clusterIp}:${s.port}`, nodePort: s.nodePort, tries: 4 });
  const checks = [...pings, ...curls];
  return { status, checks, ok: checks.every((c) => c.ok), report: renderChecks(checks) };
}
