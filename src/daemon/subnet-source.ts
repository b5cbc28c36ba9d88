/**
 * Where weftd's subnets come from: etcd (flannel's schema, a Registry under
 * the LeaseManager) or the Kubernetes API (--kube-subnet-mgr: Nodes'
 * podCIDRs and annotations, a KubeLeaseStore). Everything after this -
 * backends, subnet.env, masquerade, the reconcile loop - is the same.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { KubeClient } from '../kube/client.js';
import { KubeConfigError } from '../kube/errors.js';
import { resolveConnection } from '../kube/resolve.js';
import { loadNetworkConfig } from '../store/config-loader.js';
import { EtcdRegistry } from '../store/etcd-registry.js';
import { KubeLeaseStore, KubeNodeWatcher, markNodeNetworkAvailable, resolveNodeName } from '../store/kube-lease-store.js';
import { kubeAnnotations, nodeToLease } from '../store/kube-node.js';
import { LeaseManager } from '../store/lease-manager.js';
import type { LeaseStore } from '../store/lease-store.js';
import { describeNetworkConfig, parseNetworkConfig } from '../store/netconfig.js';
import type { Registry } from '../store/registry.js';
import { readPreviousSubnet } from '../store/subnet-env.js';
import { chooseSubnet } from '../store/subnet-policy.js';
import { publicIpProblem } from '../store/lease-check.js';
import type { InvalidLease, Lease, NetworkConfig } from '../store/types.js';
import type { WeftdOptions } from './options.js';

export const DEFAULT_NET_CONFIG_PATH = '/etc/kube-flannel/net-conf.json';

/** What the daemon hands a store once the backend is prepared. */
export interface StoreParams {
  config: NetworkConfig;
  publicIp: string;
  backendType: string;
  backendData?: unknown;
  log: Logger;
  onLeaseChanged: (lease: Lease) => void;
  onError: (err: Error) => void;
  onInvalid: (inv: InvalidLease) => void;
}

export interface SubnetSource {
  /** "etcd" or "kubernetes" (logs, metrics). */
  readonly kind: 'etcd' | 'kubernetes';
  loadConfig(signal: AbortSignal): Promise<NetworkConfig>;
  /** The PublicIP to use when --public-ip is not given (kube: the node-public-ip annotation). */
  publicIpHint(): string | undefined;
  /** The lease we are about to take (vxlan keeps its VtepMAC). */
  takeoverLease(config: NetworkConfig, publicIp: string): Promise<Lease | undefined>;
  createStore(p: StoreParams): LeaseStore;
  /** Called once the data path is up (kube: clears NodeNetworkUnavailable); resolves when done or aborted. */
  dataPathUp(signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/** The etcd Registry weftd's flags describe (also used by `--cleanup`). */
export function etcdRegistryOf(opts: WeftdOptions): Registry {
  return new EtcdRegistry({
    endpoints: opts.etcdEndpoints,
    prefix: opts.etcdPrefix,
    caFile: opts.etcdCafile,
    certFile: opts.etcdCertfile,
    keyFile: opts.etcdKeyfile,
    username: opts.etcdUsername,
    password: opts.etcdPassword,
  });
}

/** etcd mode: the Registry (injected in tests) under the LeaseManager. */
export function etcdSource(opts: WeftdOptions, log: Logger, injected?: Registry): SubnetSource {
  const registry = injected ?? etcdRegistryOf(opts);
  return {
    kind: 'etcd',
    loadConfig: (signal) => loadNetworkConfig(registry, { signal, log }),
    publicIpHint: () => undefined,
    takeoverLease: async (config, publicIp) => {
      // flannel's acquire order step 1, read ahead.
      const { leases } = await registry.listLeases();
      const prev = readPreviousSubnet(opts.subnetFile);
      const c = chooseSubnet({ config, leases, publicIp, ...(prev ? { previousSubnet: prev } : {}) });
      return c.kind === 'own' ? c.lease : undefined;
    },
    createStore: (p) =>
      new LeaseManager({
        registry,
        config: p.config,
        publicIp: p.publicIp,
        backendType: p.backendType,
        backendData: p.backendData,
        ttlSeconds: opts.subnetLeaseTtl,
        previousSubnet: readPreviousSubnet(opts.subnetFile),
        log: p.log,
        onLeaseChanged: p.onLeaseChanged,
        onError: p.onError,
        onInvalid: p.onInvalid,
      }),
    dataPathUp: async () => {},
    close: () => registry.close(),
  };
}

/** Test hooks for the Kubernetes source. */
export interface KubeSourceDeps {
  /** Default: built from --kubeconfig-file / --kube-api-url / in-cluster. */
  client?: KubeClient;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * --kube-subnet-mgr: connects (kubeconfig, --kube-api-url, in-cluster, as
 * flanneld's BuildConfigFromFlags), finds the node name, lists Nodes and
 * waits for that list before anything else (the backend may keep its
 * VtepMAC from our annotations, and node-public-ip may name our address).
 */
export async function kubeSource(opts: WeftdOptions, log: Logger, signal: AbortSignal, deps: KubeSourceDeps = {}): Promise<SubnetSource> {
  const annotations = kubeAnnotations(opts.kubeAnnotationPrefix);
  let client = deps.client;
  if (!client) {
    const conn = resolveConnection({ kubeconfig: opts.kubeconfigFile, master: opts.kubeApiUrl });
    if (!conn) throw new KubeConfigError('--kubeconfig-file', 'not given, no --kube-api-url, and not running in a cluster (KUBERNETES_SERVICE_HOST unset)');
    client = new KubeClient(conn, { userAgent: 'weftd' });
    log.info({ server: conn.server, origin: conn.origin }, 'using the Kubernetes API');
  }
  const kube = client;
  try {
    const nodeName = await resolveNodeName(kube, { nodeName: opts.nodeName, podName: opts.podName, podNamespace: opts.podNamespace }, signal);
    const retry = { ...(deps.minBackoffMs !== undefined ? { minBackoffMs: deps.minBackoffMs } : {}), ...(deps.maxBackoffMs !== undefined ? { maxBackoffMs: deps.maxBackoffMs } : {}) };
    const watcher = new KubeNodeWatcher({ client: kube, annotations, log: log.child({ component: 'nodes' }), ...retry });
    watcher.start(signal);
    log.info({ node: nodeName, annotationPrefix: annotations.prefix }, 'Kubernetes subnet manager: waiting for the Node list');
    await watcher.synced(signal);
    let store: KubeLeaseStore | undefined;
    return {
      kind: 'kubernetes',
      loadConfig: async () => {
        const config = readNetConf(opts.netConfigPath ?? DEFAULT_NET_CONFIG_PATH);
        log.info({ file: opts.netConfigPath ?? DEFAULT_NET_CONFIG_PATH, config: describeNetworkConfig(config) }, 'loaded network config');
        return config;
      },
      publicIpHint: () => {
        const v = watcher.node(nodeName)?.annotations[annotations.nodePublicIp];
        if (v === undefined || v === '') return undefined;
        const problem = publicIpProblem(v);
        if (problem) {
          log.warn({ node: nodeName, annotation: annotations.nodePublicIp, problem }, 'ignored the node public IP annotation');
          return undefined;
        }
        log.info({ node: nodeName, publicIp: v, annotation: annotations.nodePublicIp }, 'public IP from the node annotation');
        return v;
      },
      takeoverLease: async (config) => {
        const n = watcher.node(nodeName);
        const r = n && nodeToLease(n, annotations, config.network);
        return r && 'lease' in r ? r.lease : undefined;
      },
      createStore: (p) =>
        (store = new KubeLeaseStore({
          watcher,
          nodeName,
          config: p.config,
          publicIp: p.publicIp,
          backendType: p.backendType,
          backendData: p.backendData,
          log: p.log,
          onLeaseChanged: p.onLeaseChanged,
          onError: p.onError,
          onInvalid: p.onInvalid,
          ...retry,
        })),
      dataPathUp: async (sig) => {
        void store;
        if (opts.setNodeNetworkUnavailable === false) return;
        await markNodeNetworkAvailable(kube, nodeName, sig, { log, ...retry });
      },
      // The informer ends with the daemon's signal.
      close: async () => kube.close(),
    };
  } catch (err) {
    if (!deps.client) kube.close();
    throw err;
  }
}

/** net-conf.json (the kube-flannel ConfigMap), parsed as etcd's config is. */
export function readNetConf(path: string): NetworkConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('--net-config-path', `cannot read ${path}: ${errorMessage(err)}`);
  }
  try {
    return parseNetworkConfig(text);
  } catch (err) {
    throw new ConfigError('--net-config-path', `${path}: ${errorMessage(err)}`);
  }
}
