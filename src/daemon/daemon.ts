import type { Server } from 'node:http';
import { AbortedError } from '../core/errors.js';
import { formatCidr, sameNet, subnetKey } from '../core/ip.js';
import type { Logger } from '../core/log.js';
import { removeStaleOverlayDevices } from '../backends/stale-devices.js';
import { BoundedFrequencyRunner } from '../core/runner.js';
import { createBackend, type Backend, type ExternalInterface } from '../backends/backend.js';
import '../backends/index.js';
import { createKernel, type Kernel } from '../kernel/kernel.js';
import { selectInterface } from '../kernel/iface.js';
import { ExecIptables, type IptablesClient } from '../netfilter/iptables.js';
import { ExecNft, type NftClient } from '../netfilter/nft.js';
import { removePeerFilter } from '../backends/vxlan/peer-filter.js';
import { parseNetworkConfig } from '../store/netconfig.js';
import type { Registry } from '../store/registry.js';
import { writeSubnetEnv } from '../store/subnet-env.js';
import { etcdRegistryOf, etcdSource, kubeSource, readNetConf, DEFAULT_NET_CONFIG_PATH, type KubeSourceDeps, type SubnetSource } from './subnet-source.js';
import type { InvalidLease, Lease, NetworkConfig } from '../store/types.js';
import { startCniServer, type CniServer } from '../cni/server.js';
import { startHealthServer } from './health.js';
import { applyMasq, removeMasq } from './masq.js';
import { WeftdMetrics } from './metrics.js';
import type { WeftdOptions } from './options.js';

export interface DaemonDeps {
  log: Logger;
  signal: AbortSignal;
  /** Injected in tests; default: built from the options. */
  registry?: Registry;
  /** Kubernetes mode (--kube-subnet-mgr) test hooks: an API client, short backoffs. */
  kube?: KubeSourceDeps;
  /** Injected in tests (FakeKernel); default: the real kernel. */
  kernel?: Kernel;
  /** Injected in tests; default: detected iptables when --ip-masq. */
  iptables?: IptablesClient;
  /** Injected in tests (FakeNft); default: `nft`, unless `kernel` is injected (then no nftables is touched). */
  nft?: NftClient;
  /** Filled in by runWeftd for the CLI's signal handlers (SIGUSR1 dump, SIGHUP resync). */
  control?: DaemonControl;
}

/** What a running weftd offers its signal handlers (src/cli/signals.ts). */
export interface DaemonControl {
  /** A cheap snapshot of what the daemon holds. */
  state?: () => Record<string, unknown>;
  /** Asks for a data path reconcile now; false before the data path runs. */
  resync?: (reason: string) => boolean;
}

/**
 * weftd: config -> interface -> backend.prepare -> lease -> subnet.env ->
 * backend.start -> masq -> watch + reconcile. Resolves when `signal` aborts;
 * the data path stays in place so pods keep talking across a restart.
 */
export async function runWeftd(opts: WeftdOptions, deps: DaemonDeps): Promise<void> {
  const { log, signal } = deps;
  const metrics = new WeftdMetrics();
  let source: SubnetSource | undefined;
  const kernel = deps.kernel ?? createKernel({ log });
  let server: Server | undefined;
  let cni: CniServer | undefined;
  let backend: Backend | undefined;
  let runner: BoundedFrequencyRunner | undefined;
  let ready = false;
  let readyReason = 'starting';
  let own: Lease | undefined;
  let remote: Lease[] = [];
  let invalidLeases: () => string[] = () => [];
  let lastReconcile: Date | undefined;
  let dataPathUp: Promise<void> | undefined;
  // Ends background API work when the daemon ends for any reason.
  const inner = new AbortController();
  const stopInner = () => inner.abort();
  signal.addEventListener('abort', stopInner, { once: true });
  if (deps.control) {
    deps.control.state = () => ({
      ready,
      readyReason,
      backend: backend?.type,
      subnetManager: source?.kind,
      subnet: own ? formatCidr(own.subnet) : undefined,
      publicIp: own?.attrs.PublicIP,
      leaseExpires: metrics.leaseExpiration()?.toISOString(),
      peers: remote.length,
      lastReconcile: lastReconcile?.toISOString(),
      cniServed: cni?.served,
    });
    deps.control.resync = (reason) => (runner ? (runner.request(reason), true) : false);
  }

  try {
    if (opts.healthzPort > 0) {
      server = await startHealthServer({
        host: opts.healthzIp,
        port: opts.healthzPort,
        metrics: metrics.registry,
        state: { live: () => true, ready: () => ({ ok: ready, reason: readyReason }), invalidLeases: () => invalidLeases() },
        extraMetrics: () => backendMetricsText(backend),
      });
      log.info({ addr: `${opts.healthzIp}:${opts.healthzPort}` }, 'serving /healthz, /readyz and /metrics');
    }

    if (opts.cniSocket) {
      // Serving CNI from the daemon spares every ADD/DEL a Node start-up.
      cni = await startCniServer({
        socketPath: opts.cniSocket,
        log,
        signal,
        metrics: { refused: (reason) => metrics.cniRefused.inc({ reason }), timedOut: (phase) => metrics.cniTimedOut.inc({ phase }) },
      });
      log.info({ socket: opts.cniSocket }, 'serving CNI requests');
    }

    if (opts.kubeSubnetMgr) {
      readyReason = 'waiting for the Kubernetes API';
      source = await kubeSource(opts, log, signal, deps.kube);
    } else source = etcdSource(opts, log, deps.registry);
    const src = source;

    readyReason = 'waiting for network config';
    const config = await src.loadConfig(signal);

    const nft = deps.nft ?? (deps.kernel ? undefined : new ExecNft());
    const hinted = opts.publicIp ? undefined : src.publicIpHint();
    const { backend: made, iface } = await backendFor(hinted ? { ...opts, publicIp: hinted } : opts, config, kernel, log, {
      nft,
      // The lease we will hold, read ahead so vxlan can keep a taken-over lease's VtepMAC.
      takeoverLease: (iface) => src.takeoverLease(config, iface.publicIp),
    });
    backend = made;
    if (backend.type !== 'vxlan' && nft) await removeVxlanPeerFilter(nft, log);
    log.info({ iface: iface.name, ifaceAddr: iface.ifaceAddr, publicIp: iface.publicIp, mtu: iface.mtu }, 'using interface');
    await removeStaleOverlayDevices(kernel.links, backend.device, log);
    const prepared = await backend.prepare();

    readyReason = 'acquiring lease';
    const manager = src.createStore({
      config,
      publicIp: iface.publicIp,
      backendType: config.backend.type,
      backendData: prepared.backendData,
      log: log.child({ component: 'lease' }),
      onLeaseChanged: (lease) => {
        const moved = own !== undefined && !sameNet(lease.subnet, own.subnet);
        own = lease;
        recordLease(metrics, lease, config.backend.type);
        if (moved) {
          // Only when another host took our subnet: pods must be re-created.
          log.error({ subnet: formatCidr(lease.subnet) }, 'our subnet was taken by another host; moved to a new subnet');
          writeEnv(lease);
          runner?.request('own lease moved');
        }
      },
      onError: (err) => {
        // (etcd mode: etcd errors; Kubernetes mode: API errors writing our Node.)
        if ((err as { code?: string }).code !== 'ERR_LEASE_CONFLICT') metrics.etcdErrors.inc({ op: 'lease' });
      },
      onInvalid: (inv) => metrics.leaseInvalid.inc({ reason: inv.reason }),
    });
    metrics.invalidLeaseKeys = () => manager.invalidLeases.length;
    invalidLeases = () => describeInvalidLeases(manager.invalidLeases, manager.ownLeaseInvalid?.key);
    const writeEnv = (lease: Lease) => {
      writeSubnetEnv(opts.subnetFile, { network: config.network, subnet: lease.subnet, mtu: prepared.mtu, ipMasq: opts.ipMasq });
      log.info({ file: opts.subnetFile, subnet: formatCidr(lease.subnet), mtu: prepared.mtu }, 'wrote subnet file');
    };
    own = await manager.acquire(signal);
    log.info({ subnet: formatCidr(own.subnet), publicIp: own.attrs.PublicIP, expires: own.expiration?.toISOString() ?? 'never' }, 'acquired lease');
    writeEnv(own);
    recordLease(metrics, own, config.backend.type);
    // Renewals do not announce themselves; read the expiry when scraped.
    metrics.leaseExpiration = () => manager.expiration;

    await backend.start(own);
    const ipt = opts.ipMasq ? (deps.iptables ?? (await ExecIptables.create())) : undefined;

    runner = new BoundedFrequencyRunner(
      { name: 'datapath', minIntervalMs: 50, maxIntervalMs: opts.reconcileIntervalMs, retryMs: 1000, log },
      async (reasons) => {
        const started = process.hrtime.bigint();
        try {
          const stats = await backend!.sync(remote);
          if (ipt) {
            const fixed = await applyMasq(ipt, { network: config.network, subnet: own!.subnet });
            if (fixed > 0) metrics.masqFixes.inc(fixed);
          }
          metrics.reconcileRuns.inc({ result: 'ok' });
          lastReconcile = new Date();
          metrics.reconcileFixes.inc(stats.fixes);
          metrics.peers.set(stats.peers);
          if (stats.fixes > 0) log.info({ fixes: stats.fixes, peers: stats.peers, reasons: reasons.join(',') }, 'data path reconciled');
          if (!ready) {
            ready = true;
            readyReason = 'ready';
            log.info({ peers: stats.peers }, 'ready');
            // Kubernetes mode: NodeNetworkUnavailable goes once the data path is up (in the background: retried).
            dataPathUp ??= src.dataPathUp(inner.signal).catch((err) => log.warn({ err: (err as Error).message }, 'marking the node network available failed'));
          }
        } catch (err) {
          metrics.reconcileRuns.inc({ result: 'error' });
          throw err;
        } finally {
          metrics.reconcileDuration.set(Number(process.hrtime.bigint() - started) / 1e9);
        }
      },
    );
    backend.onNeedSync = (reason) => runner!.request(reason);

    // The first reconcile waits for the first lease snapshot: reconciling
    // against an empty peer list would delete every route for a moment
    // (a restarted weftd must not disturb traffic).
    let started = false;
    const watchDone = manager.watch((snapshot) => {
      remote = [...snapshot.values()].filter((l) => !sameNet(l.subnet, own!.subnet));
      if (!started) {
        started = true;
        runner!.start();
      } else {
        runner!.request('leases changed');
      }
    }, signal);
    const keepDone = manager.run(signal);
    await Promise.all([watchDone, keepDone]);
  } catch (err) {
    if (err instanceof AbortedError || signal.aborted) return;
    throw err;
  } finally {
    runner?.stop();
    await cni?.close().catch(() => {});
    await backend?.stop().catch((err) => log.warn({ err }, 'backend stop failed'));
    inner.abort();
    signal.removeEventListener('abort', stopInner);
    await dataPathUp;
    await source?.close().catch(() => {});
    if (server) await new Promise<void>((r) => server!.close(() => r()));
    log.info({ subnet: own ? subnetKey(own.subnet) : undefined }, 'stopped');
  }
}

/** /readyz lines for refused keys: the key (escaped), its reason and detail. */
function describeInvalidLeases(list: readonly InvalidLease[], ownKey: string | undefined): string[] {
  return list.map((i) => `${JSON.stringify(i.key)} ${i.reason}${i.key === ownKey ? ' (our own key)' : ''}: ${i.detail}`);
}

function recordLease(metrics: WeftdMetrics, lease: Lease, backend: string): void {
  metrics.leaseRenewals.inc();
  metrics.leaseInfo.reset();
  metrics.leaseInfo.set({ subnet: formatCidr(lease.subnet), public_ip: lease.attrs.PublicIP, backend }, 1);
}

function backendMetricsText(backend: Backend | undefined): string {
  return backend?.metricsText?.() ?? '';
}

/** The underlay interface chosen in flannel's order, and the configured backend on it. */
async function backendFor(
  opts: WeftdOptions,
  config: NetworkConfig,
  kernel: Kernel,
  log: Logger,
  extra: { nft?: NftClient | undefined; takeoverLease?: (iface: ExternalInterface) => Promise<Lease | undefined> } = {},
): Promise<{ backend: Backend; iface: ExternalInterface }> {
  const iface = await selectInterface({ ifaces: opts.iface, ifaceRegex: opts.ifaceRegex, publicIp: opts.publicIp }, kernel);
  const { nft, takeoverLease } = extra;
  const backend = createBackend({
    config,
    iface,
    log: log.child({ backend: config.backend.type }),
    stateDir: opts.stateDir,
    kernel,
    vxlanPeerFilter: opts.vxlanPeerFilter,
    ...(nft ? { nft } : {}),
    ...(takeoverLease ? { takeoverLease: () => takeoverLease(iface) } : {}),
  });
  return { backend, iface };
}

/** The vxlan peer filter's table, left by an earlier run with vxlan; a failure is logged, not fatal. */
async function removeVxlanPeerFilter(nft: NftClient, log: Logger): Promise<void> {
  try {
    await removePeerFilter(nft);
  } catch (err) {
    log.warn({ error: (err as Error).message }, 'could not remove the vxlan peer filter table');
  }
}

/** `weftd --cleanup`: removes masquerade rules and what the configured backend programmed. */
export async function cleanupWeftd(opts: WeftdOptions, log: Logger): Promise<void> {
  const ipt = await ExecIptables.create();
  await removeMasq(ipt);
  log.info({}, 'removed masquerade and forward rules');
  // Whatever the config says now: the table may be left from a vxlan run.
  await removeVxlanPeerFilter(new ExecNft(), log);
  if (opts.kubeSubnetMgr) {
    const config = readNetConf(opts.netConfigPath ?? DEFAULT_NET_CONFIG_PATH);
    const { backend } = await backendFor(opts, config, createKernel({ log }), log);
    await backend.cleanup();
    log.info({ backend: config.backend.type }, 'removed backend routes and devices');
    return;
  }
  const registry = etcdRegistryOf(opts);
  try {
    const raw = await registry.getConfig();
    if (raw === undefined) {
      log.warn({}, 'no network config in etcd; only the rules were removed');
      return;
    }
    const config = parseNetworkConfig(raw);
    const { backend } = await backendFor(opts, config, createKernel({ log }), log);
    await backend.cleanup();
    log.info({ backend: config.backend.type }, 'removed backend routes and devices');
  } finally {
    await registry.close();
  }
}
