import { release } from 'node:os';
import { errorMessage } from '../../core/errors.js';
import { containsNet, formatCidr, type IPv4Net } from '../../core/ip.js';
import type { Logger } from '../../core/log.js';
import { UndoStack } from '../../core/undo.js';
import { createKernel, type Kernel } from '../../kernel/kernel.js';
import { randomMac, type VxlanSpec } from '../../kernel/links.js';
import { kernelNeedsTxChecksumOff } from '../../kernel/offload.js';
import { WEFT_ROUTE_PROTO, formatRoute } from '../../kernel/routes.js';
import { ExecNft, type NftClient } from '../../netfilter/nft.js';
import type { Lease } from '../../store/types.js';
import type { Backend, BackendContext, PrepareResult, SyncStats } from '../backend.js';
import { ensureIpForward } from '../hostgw/forward.js';
import { SkipLog, leaseFields, usableLeases } from '../hostgw/plan.js';
import { VXLAN_OVERHEAD, deviceName, parseVxlanConfig, type VxlanConfig } from './config.js';
import { ensureDevice, ensureDeviceAddress } from './device.js';
import { planPeers, planSize, planVxlan, type PeerPlan, type VxlanPlan } from './plan.js';
import { loadState, saveState } from './state.js';
import { checkVtepMac, rawVtepMac } from './mac.js';
import { VxlanPeerFilter, removePeerFilter } from './peer-filter.js';
import { renderSamples } from '../udp/metrics.js';

export interface VxlanOptions {
  /** Kernel adapters. Default: the real ones in ctx.netns. */
  kernel?: Kernel;
  /** Device name prefix when the config has no `DevicePrefix`. Default "weft". */
  devicePrefix?: string;
  /** Kernel release deciding `TxChecksumOffload: "auto"`. Default os.release(). */
  kernelRelease?: string;
  /** Accept VXLAN UDP only from current peers' PublicIPs. Default true. */
  peerFilter?: boolean;
  /**
   * nftables client for the peer filter. Default: `nft` in ctx.netns - but
   * none when `kernel` is injected (a unit test's fake kernel must not be
   * paired with the host's real nftables): the filter is then off.
   */
  nft?: NftClient;
}

/** flannel's lease BackendData for vxlan, field order as flanneld writes it. */
export interface VxlanBackendData {
  VNI: number;
  VtepMAC: string;
}

/**
 * vxlan: the kernel encapsulates; weft programs, per remote lease, a
 * permanent neighbour, an fdb entry and an onlink route on `weft.<VNI>`.
 */
export class VxlanBackend implements Backend {
  readonly type = 'vxlan';
  onNeedSync?: (reason: string) => void;
  readonly cfg: VxlanConfig;
  /** `weft.<VNI>`: the device this backend programs. */
  readonly device: string;
  private readonly kernel: Kernel;
  private readonly log: Logger;
  private spec?: VxlanSpec;
  private own?: IPv4Net;
  private sweep = true;
  private watch?: AbortController;
  private readonly skipLog = new SkipLog();
  /** nftables for the peer filter (also used to remove it); undefined in unit tests without a fake. */
  private readonly nft: NftClient | undefined;
  private readonly filter: VxlanPeerFilter | undefined;
  /** Last filter error logged (an unchanged error is not logged again each reconcile). */
  private filterError: string | undefined;
  /** Filter turned off: a table of an earlier run has been removed. */
  private offRemoved = false;
  /** Serialises sync() calls (a link event and the periodic timer may overlap). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly ctx: BackendContext,
    opts: VxlanOptions = {},
  ) {
    this.cfg = parseVxlanConfig(ctx.config.backend.raw, opts.devicePrefix ? { devicePrefix: opts.devicePrefix } : {});
    this.device = deviceName(this.cfg);
    this.log = ctx.log.child({ backend: 'vxlan', dev: this.device });
    this.kernel = opts.kernel ?? createKernel({ ...(ctx.netns ? { netns: ctx.netns } : {}), log: this.log });
    this.nft = opts.nft ?? (opts.kernel ? undefined : new ExecNft(ctx.netns));
    this.filter = opts.peerFilter !== false && this.nft ? new VxlanPeerFilter(this.nft, this.cfg.port, this.log) : undefined;
    const want = this.cfg.txChecksumOffload;
    this.txCsum =
      want === 'auto' ? (kernelNeedsTxChecksumOff(opts.kernelRelease ?? release()) ? false : undefined) : want;
  }

  /** Wanted tx checksum offload on the device; undefined = leave the kernel's default. */
  private readonly txCsum: boolean | undefined;

  /** Applies the TxChecksumOffload policy; true when it changed something. */
  private async ensureOffload(): Promise<boolean> {
    if (this.txCsum === undefined) return false;
    if ((await this.kernel.offloads.getTxChecksum(this.device)) === this.txCsum) return false;
    await this.kernel.offloads.setTxChecksum(this.device, this.txCsum);
    this.log.info({ txChecksumOffload: this.txCsum }, 'set tx checksum offload on vxlan device');
    return true;
  }

  /** The device MTU: (Backend.MTU or the interface MTU) - 50. */
  get mtu(): number {
    return (this.cfg.mtu || this.ctx.iface.mtu) - VXLAN_OVERHEAD;
  }

  async prepare(): Promise<PrepareResult> {
    const mac = await this.persistentMac();
    this.spec = {
      name: this.device,
      vni: this.cfg.vni,
      port: this.cfg.port,
      // The VTEP source must be an address on this host; --public-ip may be a NAT address.
      local: this.ctx.iface.ifaceAddr,
      dev: this.ctx.iface.name,
      learning: this.cfg.learning,
      gbp: this.cfg.gbp,
      udpCsum: true,
      mtu: this.mtu,
      mac,
    };
    await ensureIpForward(this.kernel.sysctl, this.log);
    await ensureDevice(this.kernel, this.spec, this.log);
    await this.ensureOffload();
    const backendData: VxlanBackendData = { VNI: this.cfg.vni, VtepMAC: mac };
    return { backendData, mtu: this.mtu };
  }

  /**
   * The MAC from the state file, else the VtepMAC of the lease we take over
   * (peers - flanneld ones keep a stale fdb entry on a MAC change - then need
   * no change), else the existing device's, else a new one; saved either way.
   */
  private async persistentMac(): Promise<string> {
    const saved = await loadState(this.ctx.stateDir, this.cfg.vni);
    const inherited = saved ? undefined : await this.takeoverMac();
    const existing = saved || inherited ? undefined : await this.kernel.links.get(this.device);
    const mac = saved?.VtepMAC ?? inherited ?? (existing?.kind === 'vxlan' ? existing.mac : undefined) ?? randomMac();
    await saveState(this.ctx.stateDir, { VNI: this.cfg.vni, VtepMAC: mac, Port: this.cfg.port, MTU: this.mtu });
    return mac;
  }

  /** A valid VtepMAC of the lease we are about to take over, if any (logged either way). */
  private async takeoverMac(): Promise<string | undefined> {
    if (!this.ctx.takeoverLease) return undefined;
    let lease: Lease | undefined;
    try {
      lease = await this.ctx.takeoverLease();
    } catch (err) {
      this.log.warn({ error: errorMessage(err) }, 'could not read the lease to take over; making a new VtepMAC');
      return undefined;
    }
    if (!lease) return undefined;
    const subnet = formatCidr(lease.subnet);
    const raw = rawVtepMac(lease.attrs.BackendData);
    if (raw === undefined) return undefined;
    const r = checkVtepMac(raw);
    if (!r.ok) {
      this.log.warn({ subnet, publicIp: lease.attrs.PublicIP, reason: r.reason }, 'ignored the VtepMAC of the lease we take over');
      return undefined;
    }
    this.log.info({ subnet, publicIp: lease.attrs.PublicIP, mac: r.mac }, 'keeping the VtepMAC of the lease we take over');
    return r.mac;
  }

  async start(own: Lease): Promise<void> {
    if (!this.spec) throw new Error('vxlan: start() before prepare()');
    this.own = own.subnet;
    this.sweep = true;
    await ensureDeviceAddress(this.kernel, this.device, own.subnet, this.log);
    this.watch?.abort();
    this.watch = new AbortController();
    this.kernel.linkWatcher.watch((ev) => {
      if (ev.name !== this.device) return;
      if (ev.type === 'deleted') this.needSync('device deleted');
      else if (!ev.up) this.needSync('device down');
    }, this.watch.signal);
    this.log.info({ subnet: formatCidr(own.subnet), mtu: this.mtu, mac: this.spec.mac }, 'vxlan started');
  }

  private needSync(reason: string): void {
    this.log.warn({ reason }, 'vxlan device needs repair');
    this.onNeedSync?.(reason);
  }

  sync(remotes: Lease[]): Promise<SyncStats> {
    const run = this.queue.then(() => this.syncOnce(remotes));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async syncOnce(remotes: Lease[]): Promise<SyncStats> {
    const own = this.own;
    const spec = this.spec;
    if (!own || !spec) throw new Error('vxlan: sync() before start()');
    let fixes = 0;
    const dev = await ensureDevice(this.kernel, spec, this.log);
    if (dev.changed) fixes++;
    if (await this.ensureOffload()) fixes++;
    if (await ensureDeviceAddress(this.kernel, this.device, own, this.log)) fixes++;

    const { network } = this.ctx.config;
    const [routes, neighs, fdb] = await Promise.all([
      this.kernel.routes.list(),
      this.kernel.neighs.list(this.device),
      this.kernel.fdb.list(this.device),
    ]);
    const { usable, skipped } = usableLeases(remotes, { type: this.type, network, own, ownPublicIp: this.ctx.iface.publicIp });
    const planned = planPeers(usable, { dev: this.device, underlay: this.ctx.iface.name, directRouting: this.cfg.directRouting, routes });
    for (const s of this.skipLog.fresh([...skipped, ...planned.skipped])) {
      this.log.info({ ...leaseFields(s.lease), reason: s.reason }, 'ignoring lease');
    }
    // Not counted in `fixes` (kernel data path objects): the filter has its own log lines and metrics.
    await this.syncFilter(planned.peers.map((p) => p.lease.attrs.PublicIP));
    const plan = planVxlan({
      peers: planned.peers,
      current: { routes, neighs, fdb },
      network,
      own,
      dev: this.device,
      sweep: this.sweep,
      learning: this.cfg.learning,
    });
    const started = Date.now();
    const res = await this.apply(plan);
    this.sweep = false;
    if (planSize(plan) > 0) {
      this.log.info(
        { ops: planSize(plan), applied: res.applied, failedPeers: res.failed.size, peers: planned.peers.length, ms: Date.now() - started },
        'vxlan entries programmed',
      );
    }
    fixes += res.applied;
    return { fixes, peers: planned.peers.length - res.failed.size };
  }

  /**
   * The peer filter follows the programmed peers. Turned off, a table left by
   * an earlier run is removed. A failure (nft missing, refused) is logged and
   * counted but does not hold up the data path.
   */
  private async syncFilter(publicIps: string[]): Promise<boolean> {
    try {
      let changed = false;
      if (this.filter) changed = await this.filter.sync(publicIps);
      else if (this.nft && !this.offRemoved) {
        await removePeerFilter(this.nft);
        this.offRemoved = true;
      }
      if (this.filterError !== undefined) this.log.info({}, 'vxlan peer filter works again');
      this.filterError = undefined;
      return changed;
    } catch (err) {
      const msg = errorMessage(err);
      if (this.filter) this.filter.stats.errors++;
      if (msg !== this.filterError) this.log.error({ error: msg, filter: this.filter ? 'on' : 'off' }, 'vxlan peer filter update failed; retrying at the next reconcile');
      this.filterError = msg;
      return false;
    }
  }

  metricsText(): string {
    return this.filter ? renderSamples(this.filter.metrics()) : '';
  }

  /**
   * Stale entries go first (route, fdb, neighbour), then each peer gets its
   * neighbour, fdb entry and route in that order - one batch per step for all
   * peers. A peer whose step fails has its earlier steps undone and is left
   * for the next sync. Returns the failed peers' keys and how many ops stuck.
   */
  private async apply(plan: VxlanPlan): Promise<{ failed: Set<string>; applied: number }> {
    const k = this.kernel;
    let applied = plan.routeDeletes.length + plan.fdbDeletes.length + plan.neighDeletes.length;
    const refused = [
      ...(await k.routes.apply(plan.routeDeletes)).map((f) => ['route', formatRoute(f.op.route), f.message]),
      ...(await k.fdb.apply(plan.fdbDeletes)).map((f) => ['fdb', f.op.entry.mac, f.message]),
      ...(await k.neighs.apply(plan.neighDeletes)).map((f) => ['neighbour', f.op.neigh.ip, f.message]),
    ];
    for (const [step, what, error] of refused) this.log.warn({ step, what, error }, 'stale entry delete refused');
    applied -= refused.length;

    const failed = new Set<string>();
    const undo = new Map<string, UndoStack>();
    const undoOf = (p: PeerPlan) => undo.get(p.key) ?? undo.set(p.key, new UndoStack()).get(p.key)!;

    const neighOps = plan.neighAdds.map((a) => ({ op: 'replace' as const, neigh: a.peer.neigh! }));
    for (const f of await k.neighs.apply(neighOps)) {
      failed.add(this.peerFailed(plan.neighAdds[neighOps.indexOf(f.op as (typeof neighOps)[number])], 'neighbour', f.message));
    }
    for (const a of plan.neighAdds) {
      if (failed.has(a.peer.key)) continue;
      const prev = a.previous;
      undoOf(a.peer).push(`neighbour ${a.peer.neigh!.ip}`, async () => {
        const op = prev?.mac
          ? { op: 'replace' as const, neigh: { ...prev, mac: prev.mac } }
          : { op: 'delete' as const, neigh: a.peer.neigh! };
        const f = await k.neighs.apply([op]);
        if (f.length) throw new Error(f[0]!.message);
      });
    }

    const fdbAdds = plan.fdbAdds.filter((a) => !failed.has(a.peer.key));
    const fdbOps = fdbAdds.map((a) => ({ op: 'replace' as const, entry: a.peer.fdb! }));
    for (const f of await k.fdb.apply(fdbOps)) {
      failed.add(this.peerFailed(fdbAdds[fdbOps.indexOf(f.op as (typeof fdbOps)[number])], 'fdb', f.message));
    }
    for (const a of fdbAdds) {
      if (failed.has(a.peer.key)) continue;
      const prev = a.previous;
      undoOf(a.peer).push(`fdb ${a.peer.fdb!.mac}`, async () => {
        const op = prev?.dst
          ? { op: 'replace' as const, entry: { ...prev, dst: prev.dst } }
          : { op: 'delete' as const, entry: a.peer.fdb! };
        const f = await k.fdb.apply([op]);
        if (f.length) throw new Error(f[0]!.message);
      });
    }

    const routeAdds = plan.routeAdds.filter((a) => !failed.has(a.peer.key));
    const routeOps = routeAdds.map((a) => ({ op: 'replace' as const, route: a.peer.route }));
    for (const f of await k.routes.apply(routeOps)) {
      failed.add(this.peerFailed(routeAdds[routeOps.indexOf(f.op as (typeof routeOps)[number])], 'route', f.message));
    }

    for (const key of failed) {
      const stack = undo.get(key);
      if (!stack) continue;
      for (const u of await stack.rollback()) this.log.warn({ what: u.what, error: errorMessage(u.error) }, 'rollback step failed');
    }
    const ok = (a: { peer: PeerPlan }) => !failed.has(a.peer.key);
    applied += plan.neighAdds.filter(ok).length + plan.fdbAdds.filter(ok).length + plan.routeAdds.filter(ok).length;
    return { failed, applied };
  }

  /** Logs a refused per-peer step and returns the peer's key. */
  private peerFailed(add: { peer: PeerPlan } | undefined, step: string, message: string): string {
    this.log.warn({ ...(add ? leaseFields(add.peer.lease) : {}), step, error: message }, 'peer programming failed; rolling back');
    return add?.peer.key ?? 'unknown';
  }

  async stop(): Promise<void> {
    this.watch?.abort();
    this.watch = undefined;
  }

  async cleanup(): Promise<void> {
    await this.stop();
    // Deleting the device takes its neighbours, fdb entries and onlink routes with it.
    await this.kernel.links.delete(this.device);
    const { network } = this.ctx.config;
    const direct = (await this.kernel.routes.list())
      .filter((r) => r.proto === WEFT_ROUTE_PROTO && r.dev === this.ctx.iface.name && containsNet(network, r.dst))
      .map((route) => ({ op: 'delete' as const, route }));
    await this.kernel.routes.apply(direct);
    if (this.nft) await removePeerFilter(this.nft);
    this.log.info({ directRoutes: direct.length, peerFilter: this.nft ? 'removed' : 'not managed' }, 'vxlan device, routes and peer filter removed');
  }
}
