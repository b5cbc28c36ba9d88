import type { Logger } from '../core/log.js';
import type { Kernel } from '../kernel/kernel.js';
import type { NftClient } from '../netfilter/nft.js';
import type { Lease, NetworkConfig } from '../store/types.js';

/** The underlay interface weftd uses (chosen by --iface / --iface-regex / default route). */
export interface ExternalInterface {
  name: string;
  index: number;
  mtu: number;
  /** Address on the interface. */
  ifaceAddr: string;
  /** The address peers reach us at (--public-ip or ifaceAddr). */
  publicIp: string;
}

export interface BackendContext {
  config: NetworkConfig;
  iface: ExternalInterface;
  log: Logger;
  /** State directory (default /var/lib/weft). */
  stateDir: string;
  /** Run `ip` etc. inside this netns (tests); undefined = the current one. */
  netns?: string;
  /** Kernel adapters to use (a FakeKernel in unit tests); default: the real ones in `netns`. */
  kernel?: Kernel;
  /**
   * The lease this host is about to take over (flannel's acquire order: an
   * existing lease with our PublicIP), read before prepare(); undefined when
   * there is none. vxlan keeps its VtepMAC when it has no MAC of its own.
   */
  takeoverLease?: () => Promise<Lease | undefined>;
  /** vxlan: accept VXLAN UDP only from current peers' PublicIPs (nftables). Default true. */
  vxlanPeerFilter?: boolean;
  /** nftables client (a FakeNft in unit tests); default: `nft` in `netns`. */
  nft?: NftClient;
}

export interface PrepareResult {
  /** Goes into the lease as BackendData. */
  backendData?: unknown;
  /** The pod MTU, written to subnet.env as FLANNEL_MTU. */
  mtu: number;
}

export interface SyncStats {
  /** Kernel objects added, changed or removed by this pass. */
  fixes: number;
  /** Remote leases currently programmed. */
  peers: number;
}

/**
 * A data path. The daemon calls prepare(), acquires the lease, start(own),
 * then sync(remotes) from its single writer whenever leases change and
 * periodically; sync must be idempotent desired-state reconciliation.
 */
export interface Backend {
  readonly type: string;
  prepare(): Promise<PrepareResult>;
  start(own: Lease): Promise<void>;
  /** `remote` holds every lease except our own, of any backend type. */
  sync(remote: Lease[]): Promise<SyncStats>;
  /**
   * Optional: called when the backend wants an early sync (e.g. its device
   * vanished). The daemon sets this before start().
   */
  onNeedSync?: (reason: string) => void;
  /** Stop background work; leaves the data path in place (SIGTERM keeps traffic flowing). */
  stop(): Promise<void>;
  /** Remove everything the backend programmed (`weftd --cleanup`). */
  cleanup(): Promise<void>;
  /** Optional: backend counters as Prometheus text, appended to weftd's /metrics. */
  metricsText?(): string;
  /** Optional: the overlay device the backend programs (vxlan's `weft.<VNI>`); kept when stale ones are removed. */
  readonly device?: string;
}

export type BackendFactory = (ctx: BackendContext) => Backend;

const registry = new Map<string, BackendFactory>();

export function registerBackend(type: string, factory: BackendFactory): void {
  registry.set(type, factory);
}

export function backendTypes(): string[] {
  return [...registry.keys()].sort();
}

export function createBackend(ctx: BackendContext): Backend {
  const factory = registry.get(ctx.config.backend.type);
  if (!factory) {
    throw new Error(`backend "${ctx.config.backend.type}" is not available (have: ${backendTypes().join(', ')})`);
  }
  return factory(ctx);
}
