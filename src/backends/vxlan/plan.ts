import { contains, formatIPv4, parseIPv4, subnetKey, type IPv4Net } from '../../core/ip.js';
import type { FdbEntry, FdbOp } from '../../kernel/fdb.js';
import type { Neighbour, NeighbourOp } from '../../kernel/neighbours.js';
import { WEFT_ROUTE_PROTO, type Route, type RouteOp } from '../../kernel/routes.js';
import type { Lease } from '../../store/types.js';
import { planRoutes, type SkippedLease } from '../hostgw/plan.js';
import { checkVtepMac, rawVtepMac } from './mac.js';

/** What one remote lease needs on this host. */
export interface PeerPlan {
  key: string;
  lease: Lease;
  /** DirectRouting to an on-link peer: only `route` (via its PublicIP on the underlay). */
  direct: boolean;
  neigh?: Neighbour & { mac: string };
  fdb?: FdbEntry & { dst: string };
  route: Route;
}

/** VtepMAC from a lease's BackendData (field names matched case-insensitively, as flannel's JSON does). */
export function vtepMacOf(lease: Lease): string | undefined {
  const r = checkVtepMac(rawVtepMac(lease.attrs.BackendData));
  return r.ok ? r.mac : undefined;
}

/** True when `ip` is covered by a connected route on `dev` (the peer shares our L2). */
export function isOnLink(ip: string, dev: string, routes: Route[]): boolean {
  const addr = parseIPv4(ip);
  return routes.some((r) => !r.gateway && r.dev === dev && r.scope === 'link' && r.dst.prefixLen > 0 && contains(r.dst, addr));
}

/**
 * The entries each usable vxlan lease needs: neighbour `<subnet>.0 -> VtepMAC`,
 * fdb `VtepMAC -> PublicIP`, route `<subnet> via <subnet>.0 onlink`; or with
 * DirectRouting and an on-link peer, `<subnet> via <PublicIP> dev <underlay>`.
 */
export function planPeers(
  usable: Lease[],
  opts: { dev: string; underlay: string; directRouting: boolean; routes: Route[] },
): { peers: PeerPlan[]; skipped: SkippedLease[] } {
  const peers: PeerPlan[] = [];
  const skipped: SkippedLease[] = [];
  for (const lease of usable) {
    const key = subnetKey(lease.subnet);
    const publicIp = lease.attrs.PublicIP;
    if (opts.directRouting && isOnLink(publicIp, opts.underlay, opts.routes)) {
      const route: Route = { dst: lease.subnet, gateway: publicIp, dev: opts.underlay, proto: WEFT_ROUTE_PROTO };
      peers.push({ key, lease, direct: true, route });
      continue;
    }
    const mac = vtepMacOf(lease);
    if (!mac) {
      skipped.push({ lease, reason: 'BackendData has no valid VtepMAC' });
      continue;
    }
    const vtep = formatIPv4(lease.subnet.ip);
    peers.push({
      key,
      lease,
      direct: false,
      neigh: { dev: opts.dev, ip: vtep, mac },
      fdb: { dev: opts.dev, mac, dst: publicIp },
      route: { dst: lease.subnet, gateway: vtep, dev: opts.dev, onlink: true, proto: WEFT_ROUTE_PROTO },
    });
  }
  return { peers, skipped };
}

/** The kernel objects of the vxlan device and the main table, as read before a sync. */
export interface VxlanCurrent {
  neighs: Neighbour[];
  fdb: FdbEntry[];
  routes: Route[];
}

/** Per-phase ops. Adds are keyed by peer so a failure can be rolled back per peer. */
export interface VxlanPlan {
  routeDeletes: RouteOp[];
  fdbDeletes: FdbOp[];
  neighDeletes: NeighbourOp[];
  /** Peers whose neighbour must be written, with what it replaces (for undo). */
  neighAdds: Array<{ peer: PeerPlan; previous?: Neighbour }>;
  fdbAdds: Array<{ peer: PeerPlan; previous?: FdbEntry }>;
  routeAdds: Array<{ peer: PeerPlan }>;
}

const ZERO_MAC = '00:00:00:00:00:00';

/**
 * Desired peers vs. current kernel state -> ops. Stale neighbours and fdb
 * entries on our device are deleted (learned fdb entries are left alone when
 * Learning is on); stale routes follow planRoutes (start-up sweep included).
 */
export function planVxlan(input: {
  peers: PeerPlan[];
  current: VxlanCurrent;
  network: IPv4Net;
  own: IPv4Net;
  dev: string;
  sweep: boolean;
  learning: boolean;
}): VxlanPlan {
  const { peers, current } = input;
  const plan: VxlanPlan = { routeDeletes: [], fdbDeletes: [], neighDeletes: [], neighAdds: [], fdbAdds: [], routeAdds: [] };

  const wantNeigh = new Map(peers.filter((p) => p.neigh).map((p) => [p.neigh!.ip, p]));
  for (const n of current.neighs) {
    if (!wantNeigh.has(n.ip)) plan.neighDeletes.push({ op: 'delete', neigh: n });
  }
  const wantFdb = new Map(peers.filter((p) => p.fdb).map((p) => [p.fdb!.mac, p]));
  for (const e of current.fdb) {
    if (!e.dst || e.mac === ZERO_MAC || wantFdb.has(e.mac)) continue;
    if (input.learning && e.state !== 'permanent') continue;
    plan.fdbDeletes.push({ op: 'delete', entry: e });
  }

  const routeOps = planRoutes({
    network: input.network,
    own: input.own,
    desired: peers.map((p) => p.route),
    current: current.routes,
    sweep: input.sweep,
    ownDevices: [input.dev],
  });
  plan.routeDeletes = routeOps.filter((o) => o.op === 'delete');
  const routeReplaces = new Set(routeOps.filter((o) => o.op === 'replace').map((o) => o.route));

  const neighByIp = new Map(current.neighs.map((n) => [n.ip, n]));
  const fdbByMac = new Map(current.fdb.map((e) => [e.mac, e]));
  for (const peer of peers) {
    if (peer.neigh) {
      const have = neighByIp.get(peer.neigh.ip);
      if (!have || have.mac !== peer.neigh.mac || !have.state?.includes('PERMANENT')) {
        plan.neighAdds.push({ peer, ...(have ? { previous: have } : {}) });
      }
    }
    if (peer.fdb) {
      const have = fdbByMac.get(peer.fdb.mac);
      if (!have || have.dst !== peer.fdb.dst || have.state !== 'permanent') {
        plan.fdbAdds.push({ peer, ...(have ? { previous: have } : {}) });
      }
    }
    if (routeReplaces.has(peer.route)) plan.routeAdds.push({ peer });
  }
  return plan;
}

export function planSize(p: VxlanPlan): number {
  return p.routeDeletes.length + p.fdbDeletes.length + p.neighDeletes.length + p.neighAdds.length + p.fdbAdds.length + p.routeAdds.length;
}
