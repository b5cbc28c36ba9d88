import { registryEtcdOptions } from './registry/kv.js';
import { hostname } from 'node:os';
import type { Server } from 'node:http';
import { EtcdClient, type EtcdClientOptions } from '../etcd/index.js';
import { InvalidArgumentError, errorMessage } from '../core/errors.js';
import { parseCidr, parseIPv4, formatCidr } from '../core/ip.js';
import type { Logger } from '../core/log.js';
import { BoundedFrequencyRunner } from '../core/runner.js';
import { ExecConntrack, type ConntrackClient } from '../netfilter/conntrack.js';
import { ExecIptables, type IptablesBackend, type IptablesChainClient } from '../netfilter/iptables.js';
import type { ProxyModeBackend } from './backend.js';
import type { NftClient } from '../netfilter/nft.js';
import { RemovingLeftovers, createMode, removeLeftovers } from './nftables/modes.js';
import { close, healthzServer, listen, metricsServer, nodeBeingDeleted, parseBindAddress, ProxierHealth, ServiceHealthServers } from './http.js';
import { IptablesProxier } from './iptables/proxier.js';
import { setupLocalhostNodePorts } from './iptables/localhost.js';
import { ProcSysctl, type Sysctl } from '../kernel/sysctl.js';
import type { IptablesProxyConfig } from './iptables/service-rules.js';
import { ProxyMetrics } from './metrics.js';
import { ProxyModel } from './model/model.js';
import { EtcdSource } from './sources/etcd.js';
import { FileSource } from './sources/files.js';
import { SourceMux, type ProxySource } from './sources/source.js';
import { KubernetesSource, type KubernetesSourceOptions } from './sources/kubernetes.js';
import { KubeClient } from '../kube/client.js';
import { resolveConnection } from '../kube/resolve.js';
import type { InClusterOptions } from '../kube/incluster.js';
import { ProxySyncer } from './syncer.js';

import { PROXY_MODES, type ModeOptions, type ProxyMode } from './mode-options.js';

export { PROXY_MODES, type ProxyMode };

export interface ProxyOptions extends ModeOptions {
  /** etcd endpoints; empty with no manifests dir is an error. */
  etcdEndpoints?: string[];
  /** etcd TLS and auth (--etcd-cafile, --etcd-certfile, --etcd-keyfile, --etcd-username, --etcd-password). */
  etcd?: Pick<EtcdClientOptions, 'caFile' | 'certFile' | 'keyFile' | 'username' | 'password'>;
  /** --kubeconfig FILE: read Services, EndpointSlices and this Node from that cluster's API server. */
  kubeconfig?: string;
  /** --master URL: the API server (overrides the kubeconfig's server; alone: no credentials). */
  master?: string;
  /** Kubernetes source details: in-cluster config (chosen by the CLI, see chooseSources), informer tuning (tests). */
  kube?: {
    inCluster?: boolean | InClusterOptions;
    informer?: KubernetesSourceOptions['informer'];
    onNode?: KubernetesSourceOptions['onNode'];
  };
  /** Directory of Service/EndpointSlice manifests, watched. */
  manifestsDir?: string;
  /** Default 'iptables'. */
  mode?: ProxyMode;
  /**
   * iptables mode answers 127.0.0.1:<nodePort> from the node (sets
   * net.ipv4.conf.all.route_localnet=1). Default true; nftables and ipvs modes never do.
   */
  localhostNodePorts?: boolean;
  /** This node's name (endpoints' nodeName). Default os.hostname(). */
  nodeName?: string;
  /** Pod network CIDR; off-cluster traffic to ClusterIPs is masqueraded. */
  clusterCIDR?: string;
  /** Masquerade every ClusterIP connection. Default false. */
  masqueradeAll?: boolean;
  /** Mark bit for masquerading. Default 13 (0x2000); kube-proxy's 14 would collide on a shared host. */
  masqueradeBit?: number;
  /** CIDRs (or "primary") whose local addresses answer node ports. Default: all local addresses. */
  nodePortAddresses?: string[];
  /** Default 1000 ms. */
  minSyncPeriodMs?: number;
  /**
   * Full resync period. Default 3 600 000 ms (1 h, kube-proxy's full-sync
   * interval since 1.28); changes are synced partially in between, and a
   * flush by someone else is caught by the canary within canaryIntervalMs.
   */
  syncPeriodMs?: number;
  /** What /configz serves (the configuration as applied); the CLI builds it. */
  configz?: () => unknown;
  /** Failed syncs are retried after minSyncPeriod, doubled per failure in a row up to this. Default 30 000 ms. */
  maxRetryMs?: number;
  /**
   * /healthz turns 503 when a queued change waits longer than this for a
   * successful sync (and at once after 3 failed syncs in a row). Default
   * 60 000 ms: kube-proxy's 2x its 30 s sync period.
   */
  healthzTimeoutMs?: number;
  /** How often the canary chains are checked (kube-proxy: every sync period). Default 30 000 ms. */
  canaryIntervalMs?: number;
  /** Default 127.0.0.1:10256; "" disables. */
  healthzBindAddress?: string;
  /** Default 127.0.0.1:10249; "" disables. */
  metricsBindAddress?: string;
  /** Host the health-check node ports listen on. Default 0.0.0.0. */
  healthCheckBindHost?: string;
  /** Injected conntrack client (tests); default: the conntrack command. */
  conntrack?: ConntrackClient;
  /** Called once the HTTP servers listen (tests learn the ports). */
  onListening?: (ports: { healthz?: number; metrics?: number }) => void;
  /** Test hook: the running pieces. */
  onStarted?: (parts: { model: ProxyModel; syncer: ProxySyncer; runner: BoundedFrequencyRunner; sources: ProxySource[]; health: ProxierHealth }) => void;
}

/** Node-level iptables settings from the options (validated). */
export function iptablesConfig(o: ProxyOptions): IptablesProxyConfig {
  const bit = o.masqueradeBit ?? 13;
  if (!Number.isInteger(bit) || bit < 0 || bit > 31) throw new InvalidArgumentError('--masquerade-bit', 'must be 0..31');
  if (o.clusterCIDR) parseCidr(o.clusterCIDR, '--cluster-cidr');
  const nodePortAddresses = (o.nodePortAddresses ?? []).map((a) => {
    if (a === 'primary') {
      if (!o.nodeIP) throw new InvalidArgumentError('--nodeport-addresses', '"primary" needs --node-ip');
      parseIPv4(o.nodeIP, '--node-ip');
      return `${o.nodeIP}/32`;
    }
    return formatCidr(parseCidr(a, '--nodeport-addresses'));
  });
  return {
    nodeName: o.nodeName ?? hostname(),
    clusterCIDR: o.clusterCIDR ? formatCidr(parseCidr(o.clusterCIDR, '--cluster-cidr')) : undefined,
    masqueradeAll: o.masqueradeAll ?? false,
    masqueradeMark: `0x${(2 ** bit).toString(16)}`,
    nodePortAddresses,
    localhostNodePorts: o.localhostNodePorts ?? true,
  };
}

async function modeBackend(o: ProxyOptions, cfg: IptablesProxyConfig): Promise<{ backend: ProxyModeBackend; ipt?: IptablesChainClient }> {
  const mode = o.mode ?? 'iptables';
  if (mode !== 'iptables') return { backend: await createMode(mode, o, cfg) };
  const ipt = o.iptables ?? (await ExecIptables.create({ netns: o.netns, backend: o.iptablesBackend }));
  const px = new IptablesProxier(ipt, cfg, o.log);
  // Not with an injected (fake) iptables and no sysctl: /proc/sys would be the test runner's own.
  const sysctl = o.sysctl ?? (o.iptables ? undefined : new ProcSysctl(o.netns));
  if (sysctl) await setupLocalhostNodePorts(sysctl, cfg, o.log);
  // Switching from another mode: its rules go after our first sync (not with injected test clients).
  return { backend: o.iptables ? px : new RemovingLeftovers(px, 'iptables', o, cfg), ipt };
}

/** `weft-proxy --cleanup`: removes every rule weft-proxy wrote, in every backend that holds some. */
export async function cleanupProxy(o: ProxyOptions): Promise<void> {
  const cfg = iptablesConfig(o);
  const backends: IptablesBackend[] = o.iptables ? [o.iptables.backend] : ['legacy', 'nft'];
  for (const b of backends) {
    const ipt = o.iptables ?? new ExecIptables(b, o.netns);
    await new IptablesProxier(ipt, cfg, o.log).cleanup().catch((err) => o.log.warn({ backend: b, err: errorMessage(err) }, 'cleanup failed'));
    o.log.info({ backend: b }, 'removed weft-proxy iptables rules');
  }
  // And the nftables table and ipvs mode's servers, device, rules and ipsets.
  await removeLeftovers('iptables', o, cfg);
}

/**
 * weft-proxy: sources -> model -> one writer (bounded-frequency runner) ->
 * mode backend. Resolves when the signal fires; rules are left in place so
 * that a restart does not interrupt traffic.
 */
export async function runProxy(o: ProxyOptions, signal: AbortSignal): Promise<void> {
  const log = o.log;
  const cfg = iptablesConfig(o);
  const inCluster = o.kube?.inCluster;
  const kubeConn =
    o.kubeconfig || o.master || inCluster ? resolveConnection({ kubeconfig: o.kubeconfig, master: o.master, inCluster: typeof inCluster === 'object' ? inCluster : {} }) : undefined;
  if (!o.etcdEndpoints?.length && !o.manifestsDir && !kubeConn) throw new InvalidArgumentError('--etcd-endpoints', 'give etcd endpoints, --kubeconfig/--master (or run in-cluster) or --manifests DIR');
  const { backend } = await modeBackend(o, cfg);
  const metrics = new ProxyMetrics({ processMetrics: true });
  const model = new ProxyModel();
  const healthHost = o.healthCheckBindHost ?? '0.0.0.0';
  const hcServers = new ServiceHealthServers(healthHost, log);
  const syncer = new ProxySyncer({
    model,
    backend,
    conntrack: o.conntrack ?? new ExecConntrack(o.netns),
    log,
    metrics,
    onHealthChecks: (ports) => void hcServers.sync(ports),
  });
  const minSync = o.minSyncPeriodMs ?? 1000;
  const syncPeriod = o.syncPeriodMs ?? 3_600_000;
  metrics.pendingChanges = () => model.pendingCounts;
  const runner = new BoundedFrequencyRunner({ name: 'proxy-rules', minIntervalMs: minSync, maxIntervalMs: syncPeriod, retryMs: minSync, maxRetryMs: Math.max(minSync, o.maxRetryMs ?? 30_000), log }, (reasons) =>
    syncer.sync(reasons),
  );
  // One rule over the syncer's own state: failed syncs keep their change pending, so they turn /healthz 503.
  const health = new ProxierHealth(o.healthzTimeoutMs ?? 60_000, Date.now, () => syncer.state);

  const etcd = o.etcdEndpoints?.length ? new EtcdClient({ ...registryEtcdOptions(o.etcdEndpoints), ...o.etcd }) : undefined;
  const sources: ProxySource[] = [];
  if (etcd) sources.push(new EtcdSource({ client: etcd, log }));
  const kube = kubeConn ? new KubeClient(kubeConn, { userAgent: 'weft-proxy' }) : undefined;
  // kube-proxy's node eligibility: a Node being deleted (deletionTimestamp, autoscaler taint) turns /healthz 503;
  // so does a Node that was seen and is gone. A Node never seen (no object by this name) leaves it eligible.
  let nodeSeen = false;
  const onNode: KubernetesSourceOptions['onNode'] = (n) => {
    if (n) nodeSeen = true;
    health.setNodeDeleting(n ? nodeBeingDeleted(n as Parameters<typeof nodeBeingDeleted>[0]) : nodeSeen);
    o.kube?.onNode?.(n);
  };
  if (kube) sources.push(new KubernetesSource({ client: kube, nodeName: cfg.nodeName, log, informer: o.kube?.informer, onNode }));
  if (o.manifestsDir) sources.push(new FileSource({ dir: o.manifestsDir, log }));
  const mux = new SourceMux(
    model,
    sources.map((s) => s.name),
    {
      onChange: () => {
        syncer.noteQueued();
        runner.request('change');
      },
      onReady: () => {
        syncer.markReady();
        syncer.noteQueued(); // the first write is owed from now on
        log.info({ sources: sources.map((s) => s.name) }, 'all sources listed; writing rules');
        runner.request('ready');
      },
      onRefused: (source) => metrics.invalidObjects.inc({ source }),
    },
  );

  const servers: Server[] = [];
  const ports: { healthz?: number; metrics?: number } = {};
  try {
    const hz = o.healthzBindAddress ?? '127.0.0.1:10256';
    if (hz) {
      const a = parseBindAddress(hz, '--healthz-bind-address');
      const s = healthzServer(health, metrics);
      ports.healthz = await listen(s, a.host, a.port);
      servers.push(s);
    }
    const mz = o.metricsBindAddress ?? '127.0.0.1:10249';
    if (mz) {
      const a = parseBindAddress(mz, '--metrics-bind-address');
      const s = metricsServer(metrics, { mode: backend.mode, configz: o.configz, health });
      ports.metrics = await listen(s, a.host, a.port);
      servers.push(s);
    }
    o.onListening?.(ports);
    log.info({ mode: backend.mode, node: cfg.nodeName, mark: cfg.masqueradeMark, ...ports }, 'weft-proxy started');

    runner.start();
    const canary = setInterval(() => {
      void syncer.checkCanary().then((gone) => gone && runner.request('canary'));
    }, o.canaryIntervalMs ?? 30_000);
    canary.unref();
    o.onStarted?.({ model, syncer, runner, sources, health });
    const running = sources.map((s) =>
      s.run(mux, signal).catch((err) => log.error({ source: s.name, err: errorMessage(err) }, 'source stopped')),
    );
    await new Promise<void>((r) => (signal.aborted ? r() : signal.addEventListener('abort', () => r(), { once: true })));
    clearInterval(canary);
    runner.stop();
    await Promise.all(running);
  } finally {
    runner.stop();
    await backend.close?.();
    await hcServers.closeAll();
    await Promise.all(servers.map(close));
    etcd?.close();
    kube?.close();
    log.info({}, 'weft-proxy stopped; rules left in place');
  }
}
