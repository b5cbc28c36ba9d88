import { containsNet, formatCidr, type IPv4Net } from '../../core/ip.js';
import type { Logger } from '../../core/log.js';
import { createKernel, type Kernel } from '../../kernel/kernel.js';
import { WEFT_ROUTE_PROTO, formatRoute, type Route } from '../../kernel/routes.js';
import type { Lease } from '../../store/types.js';
import type { Backend, BackendContext, PrepareResult, SyncStats } from '../backend.js';
import { ensureIpForward } from './forward.js';
import { SkipLog, leaseFields, planRoutes, usableLeases } from './plan.js';

export interface HostGwOptions {
  /** Kernel adapters. Default: the real ones in ctx.netns. */
  kernel?: Kernel;
}

/** The host-gw route for a remote lease: `<subnet> via <PublicIP> dev <iface> proto 247`. */
export function hostGwRoute(lease: Lease, dev: string): Route {
  return { dst: lease.subnet, gateway: lease.attrs.PublicIP, dev, proto: WEFT_ROUTE_PROTO };
}

/**
 * host-gw: the kernel forwards pod traffic straight to the peer's underlay
 * address. Needs every host on one L2 segment; MTU is the interface's.
 */
export class HostGwBackend implements Backend {
  readonly type = 'host-gw';
  onNeedSync?: (reason: string) => void;
  private readonly kernel: Kernel;
  private readonly log: Logger;
  private own?: IPv4Net;
  private sweep = true;
  private readonly skipLog = new SkipLog();

  constructor(
    private readonly ctx: BackendContext,
    opts: HostGwOptions = {},
  ) {
    this.log = ctx.log.child({ backend: 'host-gw' });
    this.kernel = opts.kernel ?? createKernel({ ...(ctx.netns ? { netns: ctx.netns } : {}), log: this.log });
  }

  async prepare(): Promise<PrepareResult> {
    await ensureIpForward(this.kernel.sysctl, this.log);
    return { mtu: this.ctx.iface.mtu };
  }

  async start(own: Lease): Promise<void> {
    this.own = own.subnet;
    // The first sync after start removes routes in the Network that no lease explains.
    this.sweep = true;
    this.log.info({ subnet: formatCidr(own.subnet), iface: this.ctx.iface.name }, 'host-gw started');
  }

  async sync(remotes: Lease[]): Promise<SyncStats> {
    const own = this.own;
    if (!own) throw new Error('host-gw: sync() before start()');
    const { network } = this.ctx.config;
    const dev = this.ctx.iface.name;
    const { usable, skipped } = usableLeases(remotes, {
      type: this.type,
      network,
      own,
      ownPublicIp: this.ctx.iface.publicIp,
    });
    for (const s of this.skipLog.fresh(skipped)) this.log.info({ ...leaseFields(s.lease), reason: s.reason }, 'ignoring lease');
    const desired = usable.map((l) => hostGwRoute(l, dev));
    const current = await this.kernel.routes.list();
    const ops = planRoutes({ network, own, desired, current, sweep: this.sweep });
    const failures = await this.kernel.routes.apply(ops);
    for (const f of failures) {
      this.log.warn({ route: formatRoute(f.op.route), op: f.op.op, error: f.message }, 'route refused by the kernel');
    }
    for (const o of ops) {
      if (!failures.some((f) => f.op === o)) this.log.info({ route: formatRoute(o.route), op: o.op }, 'route programmed');
    }
    this.sweep = false;
    const failedAdds = failures.filter((f) => f.op.op === 'replace').length;
    return { fixes: ops.length - failures.length, peers: desired.length - failedAdds };
  }

  async stop(): Promise<void> {
    // Nothing runs in the background; routes stay so traffic keeps flowing.
  }

  async cleanup(): Promise<void> {
    const { network } = this.ctx.config;
    const current = await this.kernel.routes.list();
    const ops = current
      .filter((r) => r.proto === WEFT_ROUTE_PROTO && r.dev === this.ctx.iface.name && containsNet(network, r.dst))
      .map((route) => ({ op: 'delete' as const, route }));
    const failures = await this.kernel.routes.apply(ops);
    this.log.info({ removed: ops.length - failures.length, failed: failures.length }, 'host-gw routes removed');
  }
}

