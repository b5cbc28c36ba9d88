import { normalizeServer, type KubeConnection } from './config.js';
import { KubeConfigError } from './errors.js';
import { inClusterConfig, isInCluster, type InClusterOptions } from './incluster.js';
import { loadKubeconfig } from './kubeconfig.js';

export interface ConnectionChoice {
  /** --kubeconfig FILE. */
  kubeconfig?: string;
  /** --master URL: overrides the kubeconfig's server; alone, an unauthenticated connection. */
  master?: string;
  /** In-cluster lookup (env and service-account dir). */
  inCluster?: InClusterOptions;
}

/**
 * kube-proxy's rule (client-go's BuildConfigFromFlags): a kubeconfig (with
 * --master overriding its server), else --master alone, else in-cluster.
 * Undefined when none applies, so the caller can say what to give.
 */
export function resolveConnection(c: ConnectionChoice): KubeConnection | undefined {
  if (c.kubeconfig) return loadKubeconfig(c.kubeconfig, { server: c.master || undefined });
  if (c.master) {
    const fail = (field: string, reason: string): never => {
      throw new KubeConfigError(field, reason);
    };
    return { server: normalizeServer(c.master, '--master', fail), origin: '--master' };
  }
  if (isInCluster(c.inCluster?.env)) return inClusterConfig(c.inCluster);
  return undefined;
}
