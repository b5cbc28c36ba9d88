import { isInCluster } from '../../kube/incluster.js';

export interface SourceChoiceInput {
  kubeconfig?: string;
  master?: string;
  /** --etcd-endpoints (or WEFT_PROXY_ETCD_ENDPOINTS) was given, not defaulted. */
  etcdExplicit: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface SourceChoice {
  /** Read from a Kubernetes API server. */
  kubernetes: boolean;
  /** ...found through the pod's service account (no --kubeconfig/--master). */
  inCluster: boolean;
  /** Keep reading /weft/registry/ from etcd. */
  etcd: boolean;
}

/**
 * Which sources weft-proxy reads, so that today's default (etcd at
 * 127.0.0.1:2379) stays for everyone who does not ask for Kubernetes:
 * - --kubeconfig or --master: the Kubernetes API; etcd only if
 *   --etcd-endpoints is given explicitly as well.
 * - neither, inside a pod (KUBERNETES_SERVICE_HOST/PORT set) and no explicit
 *   --etcd-endpoints: the API in-cluster (a kube-proxy DaemonSet's command
 *   line needs no extra flag).
 * - otherwise: etcd, as before.
 * --manifests adds its directory in every case.
 */
export function chooseSources(i: SourceChoiceInput): SourceChoice {
  if (i.kubeconfig || i.master) return { kubernetes: true, inCluster: false, etcd: i.etcdExplicit };
  if (!i.etcdExplicit && isInCluster(i.env ?? process.env)) return { kubernetes: true, inCluster: true, etcd: false };
  return { kubernetes: false, inCluster: false, etcd: true };
}
