import { errorMessage, isWeftError } from '../../core/errors.js';
import { formatCidr, formatIPv4, parseIPv4, type IPv4Net } from '../../core/ip.js';
import { ipBatch, ip, run } from '../../exec/run.js';
import type { Lease } from '../../store/types.js';
import type { Backend, BackendContext, PrepareResult, SyncStats } from '../backend.js';
import {
  parseUdpConfig,
  resolveUdpOptions,
  udpMtu,
  type ResolvedUdpOptions,
  type UdpBackendOptions,
  type UdpNetworkConfig,
} from './config.js';
import { renderSamples, udpMetrics, type MetricSample } from './metrics.js';
import { loadNative, UdpDatapathError, type NativeHandle, type NativePeer, type NativeStats, type WeftNative } from './native.js';
import { diffPeers, planPeers } from './peers.js';

/**
 * flannel's udp backend with a native data path: a TUN device `<own
 * subnet>.0/32` with route `<Network> dev <tun>`, a UDP socket on
 * <iface addr>:Port, and two native threads carrying bare IPv4 packets as
 * UDP payloads (flannel's wire format). Peers come from udp leases.
 *
 * The data path lives as long as this process holds the TUN: stop() closes
 * it (the device and its routes disappear, as with flanneld).
 */
export class UdpBackend implements Backend {
  readonly type = 'udp';
  readonly cfg: UdpNetworkConfig;
  readonly opts: ResolvedUdpOptions;
  onNeedSync?: (reason: string) => void;
  private native?: WeftNative;
  private handle?: NativeHandle;
  private own?: Lease;
  private mtu = 0;
  private peers: NativePeer[] = [];
  private lastRemote: Lease[] = [];
  private watchdog?: NodeJS.Timeout;
  private deadReported = false;

  constructor(
    private readonly ctx: BackendContext,
    opts: UdpBackendOptions = {},
  ) {
    this.cfg = parseUdpConfig(ctx.config.backend);
    this.opts = resolveUdpOptions(opts);
  }

  /** The TUN device name. */
  get device(): string {
    return this.opts.tunName;
  }

  async prepare(): Promise<PrepareResult> {
    this.native = loadNative();
    this.mtu = udpMtu(this.ctx.iface.mtu);
    // flannel's udp leases carry no BackendData: peers use the configured Port.
    return { mtu: this.mtu };
  }

  async start(own: Lease): Promise<void> {
    if (!this.native || !this.mtu) await this.prepare();
    this.own = own;
    await this.openDatapath();
    this.startWatchdog();
  }

  /**
   * The native side cannot call into JS, so a cheap timer asks it whether the
   * TUN died (device deleted, e.g. by a network restart) and requests an
   * early sync, which reopens it.
   */
  private startWatchdog(): void {
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => {
      const { open, tunDead } = this.health();
      if (open && tunDead && !this.deadReported) {
        this.deadReported = true;
        this.ctx.log.warn({ device: this.opts.tunName }, 'udp TUN device lost; requesting sync');
        this.onNeedSync?.('udp TUN device lost');
      }
    }, 2000);
    this.watchdog.unref();
  }

  private async openDatapath(): Promise<void> {
    const native = this.native!;
    const own = this.own!;
    const log = this.ctx.log;
    // A TUN left by a crashed run with the same name would make TUNSETIFF
    // attach to it; remove it so that we start from a clean device.
    await ip(['link', 'del', this.opts.tunName], { netns: this.ctx.netns, allowFail: true });
    try {
      this.handle = native.open({
        ...(this.ctx.netns ? { netns: this.ctx.netns } : {}),
        ifname: this.opts.tunName,
        mtu: this.mtu,
        port: this.cfg.port,
        bindIp: parseIPv4(this.ctx.iface.ifaceAddr, 'iface.ifaceAddr'),
        // Source of ICMP net-unreachable answers. Not the TUN's own address
        // (flannel's choice): the kernel drops a packet arriving with a local
        // source as a martian, so those answers never reach the pod. The
        // Network address routes back through the TUN and passes rp_filter.
        tunAddr: this.ctx.config.network.ip,
        txqlen: this.opts.txQueueLen,
        sockbuf: this.opts.sockBuf,
        batch: this.opts.batch,
        offload: this.opts.offload ? 1 : 0,
        udpGso: this.opts.udpGso ? 1 : 0,
        gro: this.opts.gro ? 1 : 0,
        udpGro: this.opts.udpGro ? 1 : 0,
      });
    } catch (err) {
      throw new UdpDatapathError(`udp data path: ${errorMessage(err)}`, {
        device: this.opts.tunName,
        port: this.cfg.port,
        netns: this.ctx.netns,
      });
    }
    const undo = async () => {
      if (this.handle) native.close(this.handle);
      this.handle = undefined;
    };
    try {
      await this.ensureAddressing();
      native.setPeers(this.handle, this.peers, own.subnet.ip, own.subnet.prefixLen);
    } catch (err) {
      await undo();
      throw err;
    }
    log.info(
      {
        device: this.opts.tunName,
        address: `${formatIPv4(own.subnet.ip)}/32`,
        network: formatCidr(this.ctx.config.network),
        mtu: this.mtu,
        listen: `${this.ctx.iface.ifaceAddr}:${this.cfg.port}`,
        offload: this.opts.offload,
        gro: this.opts.offload && this.opts.gro,
      },
      'udp data path started',
    );
  }

  /**
   * `<own subnet>.0/32` on the TUN (a /32 so no broadcast or subnet route
   * appears) and `<Network> dev <tun>` in scope global, as flannel does.
   * Idempotent (`replace`).
   */
  private async ensureAddressing(): Promise<void> {
    const dev = this.opts.tunName;
    const own = this.own!.subnet;
    await ipBatch(
      [
        `addr replace ${formatIPv4(own.ip)}/32 dev ${dev}`,
        `route replace ${formatCidr(this.ctx.config.network)} dev ${dev} scope global`,
      ],
      { netns: this.ctx.netns },
    );
    // The overlay carries IPv4 only (as flannel's udp); without this the
    // kernel sends router solicitations and MLD into the TUN, which would
    // show up as tx drops (bad_version).
    await run('sysctl', ['-qw', `net/ipv6/conf/${dev}/disable_ipv6=1`], { netns: this.ctx.netns, allowFail: true });
  }

  async sync(remote: Lease[]): Promise<SyncStats> {
    if (!this.handle || !this.own || !this.native) return { fixes: 0, peers: this.peers.length };
    this.lastRemote = remote;
    const plan = planPeers(remote, this.own, this.cfg.port);
    const diff = diffPeers(this.peers, plan.peers);
    let fixes = diff.added + diff.removed;
    if (fixes > 0) {
      this.native.setPeers(this.handle, plan.peers, this.own.subnet.ip, this.own.subnet.prefixLen);
      this.ctx.log.info({ peers: plan.peers.length, added: diff.added, removed: diff.removed }, 'udp peer table replaced');
    }
    this.peers = plan.peers;
    fixes += await this.reassertDevice();
    return { fixes, peers: this.peers.length };
  }

  /** Puts back the address and route if someone removed them; reopens a deleted device. */
  private async reassertDevice(): Promise<number> {
    try {
      if (this.health().tunDead) throw new Error('TUN read side failed (device deleted?)');
      const before = await ip(['-4', 'route', 'show', 'dev', this.opts.tunName, 'scope', 'global'], {
        netns: this.ctx.netns,
        allowFail: true,
      });
      if (before.code !== 0) throw new Error(before.stderr);
      if (before.stdout.includes(formatCidr(this.ctx.config.network))) return 0;
      await this.ensureAddressing();
      this.ctx.log.warn({ device: this.opts.tunName }, 'udp route was missing; restored');
      return 1;
    } catch (err) {
      if (isWeftError(err) && err.code !== 'ERR_EXEC') throw err;
      this.ctx.log.warn({ device: this.opts.tunName, err: errorMessage(err) }, 'udp device missing; reopening data path');
      if (this.handle) this.native!.close(this.handle);
      this.handle = undefined;
      await this.openDatapath();
      this.deadReported = false;
      return 1;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
    if (this.handle && this.native) {
      this.native.close(this.handle);
      this.ctx.log.info({ device: this.opts.tunName }, 'udp data path stopped');
    }
    this.handle = undefined;
  }

  async cleanup(): Promise<void> {
    await this.stop();
    // Closing the TUN removes it with its address and route; a leftover
    // (another process, a persist flag) is deleted explicitly.
    await ip(['link', 'del', this.opts.tunName], { netns: this.ctx.netns, allowFail: true });
  }

  /** Whether the data path is open, and whether its TUN died under it (the next sync reopens it). */
  health(): { open: boolean; tunDead: boolean } {
    if (!this.handle || !this.native) return { open: false, tunDead: false };
    return { open: true, tunDead: this.native.info(this.handle).tunDead };
  }

  /** Raw native counters; undefined before start / after stop. */
  stats(): NativeStats | undefined {
    return this.handle && this.native ? this.native.stats(this.handle) : undefined;
  }

  /** Samples for /metrics (shape documented in docs/udp.md). */
  metricsText(): string {
    return renderSamples(this.metrics());
  }

  metrics(): MetricSample[] {
    const s = this.stats();
    return s ? udpMetrics(s, this.peers.length) : [];
  }

  /** Current peer table (for `weftctl` / debugging). */
  peerTable(): { subnet: string; publicIp: string; port: number }[] {
    return this.peers.map((p) => ({
      subnet: formatCidr({ ip: p.net, prefixLen: p.prefixLen } as IPv4Net),
      publicIp: formatIPv4(p.ip),
      port: p.port,
    }));
  }

  /** The remote leases last given to sync (for a re-sync after reopening). */
  get remoteLeases(): Lease[] {
    return this.lastRemote;
  }
}

export function createUdpBackend(ctx: BackendContext, opts?: UdpBackendOptions): UdpBackend {
  return new UdpBackend(ctx, opts);
}
