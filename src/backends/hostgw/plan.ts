import { containsNet, formatIPv4, isIPv4, overlaps, sameNet, subnetKey, type IPv4Net } from '../../core/ip.js';
import { WEFT_ROUTE_PROTO, sameRoute, type Route, type RouteOp } from '../../kernel/routes.js';
import type { Lease } from '../../store/types.js';

export interface RoutePlanInput {
  /** The flannel Network; weft only ever touches routes inside it. */
  network: IPv4Net;
  /** Our own subnet: never touched (the bridge's connected route lives there). */
  own: IPv4Net;
  desired: Route[];
  current: Route[];
  /**
   * Start-up sweep: also delete routes inside the Network that weft did not
   * make (a previous backend's, a flanneld's, ones left while weftd was down).
   * Otherwise only weft's own routes (proto 247) or routes on weft's devices
   * are removed.
   */
  sweep: boolean;
  /** Devices that belong to this backend (every route on them is its business). */
  ownDevices?: string[];
}

/** True when `r` is a route this plan may delete when nothing wants it. */
function deletable(r: Route, input: RoutePlanInput): boolean {
  if (!containsNet(input.network, r.dst) || overlaps(r.dst, input.own)) return false;
  if (r.proto === 'kernel') return false; // connected routes follow addresses, not us
  if (r.proto === WEFT_ROUTE_PROTO || input.ownDevices?.includes(r.dev)) return true;
  // A route for the whole Network is someone else's design (e.g. a udp tun); leave it.
  return input.sweep && !sameNet(r.dst, input.network);
}

/**
 * Route ops that turn `current` into `desired` within the Network: deletes of
 * unexplained routes first (so a replaced metric-0 route is never deleted
 * afterwards), then a replace for every desired route that is missing or
 * differs (gateway, device, onlink or a foreign proto).
 */
export function planRoutes(input: RoutePlanInput): RouteOp[] {
  const ops: RouteOp[] = [];
  // The kernel keys a main-table route by destination and metric.
  const key = (r: Route) => `${r.dst.ip}/${r.dst.prefixLen}/${r.metric ?? 0}`;
  const desired = new Map(input.desired.map((d) => [key(d), d]));
  const current = new Map<string, Route>();
  for (const r of input.current) {
    if (!current.has(key(r))) current.set(key(r), r);
    if (!desired.has(key(r)) && deletable(r, input)) ops.push({ op: 'delete', route: r });
  }
  for (const d of input.desired) {
    const have = current.get(key(d));
    if (!have || !sameRoute(have, d) || (have.proto ?? 'boot') !== (d.proto ?? 'boot')) {
      ops.push({ op: 'replace', route: d });
    }
  }
  return ops;
}

/** Why a remote lease is not programmed. */
export interface SkippedLease {
  lease: Lease;
  reason: string;
}

/**
 * Splits remote leases into usable ones and skipped ones (wrong backend type,
 * outside the Network, overlapping our subnet, bad PublicIP, our own PublicIP).
 */
export function usableLeases(
  remotes: Lease[],
  opts: { type: string; network: IPv4Net; own: IPv4Net; ownPublicIp: string },
): { usable: Lease[]; skipped: SkippedLease[] } {
  const usable: Lease[] = [];
  const skipped: SkippedLease[] = [];
  for (const lease of remotes) {
    const reason =
      lease.attrs.BackendType !== opts.type
        ? `backend type ${lease.attrs.BackendType} is not ${opts.type}`
        : !containsNet(opts.network, lease.subnet)
          ? 'subnet outside the Network'
          : overlaps(lease.subnet, opts.own)
            ? 'subnet overlaps our own'
            : !isIPv4(lease.attrs.PublicIP ?? '')
              ? `PublicIP ${JSON.stringify(lease.attrs.PublicIP)} is not IPv4`
              : lease.attrs.PublicIP === opts.ownPublicIp
                ? 'PublicIP is our own'
                : undefined;
    if (reason) skipped.push({ lease, reason });
    else usable.push(lease);
  }
  return { usable, skipped };
}

/**
 * Remembers which skipped leases were already logged, so a lease of another
 * backend type yields one log line, not one per sync.
 */
export class SkipLog {
  private seen = new Set<string>();

  /** Returns the skipped leases not reported before; forgets leases that went away. */
  fresh(skipped: SkippedLease[]): SkippedLease[] {
    const now = new Set<string>();
    const out: SkippedLease[] = [];
    for (const s of skipped) {
      const key = `${subnetKey(s.lease.subnet)}|${s.lease.attrs.PublicIP}|${s.reason}`;
      now.add(key);
      if (!this.seen.has(key)) out.push(s);
    }
    this.seen = now;
    return out;
  }
}

export function leaseFields(lease: Lease): Record<string, unknown> {
  return {
    subnet: `${formatIPv4(lease.subnet.ip)}/${lease.subnet.prefixLen}`,
    publicIp: lease.attrs.PublicIP,
    backendType: lease.attrs.BackendType,
  };
}
