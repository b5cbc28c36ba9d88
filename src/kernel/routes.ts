import { formatCidr, parseCidr, type IPv4Net } from '../core/ip.js';
import { ipJson } from '../exec/run.js';
import { isAbsentError, runBatch, type BatchFailure } from './batch.js';

/**
 * Route protocol number weft stamps on the routes it makes (`proto 247`), so
 * periodic reconciles only ever delete routes weft made. Unassigned in
 * /etc/iproute2/rt_protos; `ip route` prints it as "247".
 */
export const WEFT_ROUTE_PROTO = '247';

/** An IPv4 route in the main table. */
export interface Route {
  dst: IPv4Net;
  /** Next hop; absent for a directly connected route. */
  gateway?: string;
  dev: string;
  onlink?: boolean;
  /** As `ip` prints it: "kernel", "boot", "static", "247"... Absent = boot. */
  proto?: string;
  /** "link", "host"; absent = global. */
  scope?: string;
  metric?: number;
  /** Preferred source address. */
  prefsrc?: string;
}

export type RouteOp = { op: 'replace'; route: Route } | { op: 'delete'; route: Route };

export interface RouteFailure extends Omit<BatchFailure, 'index'> {
  op: RouteOp;
}

/** The main IPv4 routing table of one network namespace. */
export interface Routes {
  list(): Promise<Route[]>;
  /**
   * Applies every op, each on its own (one failure does not stop the rest),
   * in order; returns the ops the kernel refused. Deleting something already
   * gone counts as done (the desired state holds).
   */
  apply(ops: RouteOp[]): Promise<RouteFailure[]>;
}

/** Same destination, gateway and device (the fields weft decides). */
export function sameRoute(a: Route, b: Route): boolean {
  return (
    a.dst.ip === b.dst.ip &&
    a.dst.prefixLen === b.dst.prefixLen &&
    (a.gateway ?? '') === (b.gateway ?? '') &&
    a.dev === b.dev &&
    !!a.onlink === !!b.onlink
  );
}

export function formatRoute(r: Route): string {
  return routeLine('replace', r).slice('route replace '.length);
}

/** One `ip -batch` line. Deletes name only what identifies the route. */
export function routeLine(action: 'replace' | 'delete', r: Route): string {
  const parts = ['route', action === 'replace' ? 'replace' : 'del', formatCidr(r.dst)];
  if (r.gateway) parts.push('via', r.gateway);
  parts.push('dev', r.dev);
  if (action === 'replace') {
    if (r.proto) parts.push('proto', r.proto);
    if (r.scope) parts.push('scope', r.scope);
    if (r.onlink) parts.push('onlink');
    if (r.prefsrc) parts.push('src', r.prefsrc);
  }
  if (r.metric !== undefined) parts.push('metric', String(r.metric));
  return parts.join(' ');
}

interface IpRouteJson {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  metric?: number;
  prefsrc?: string;
  flags?: string[];
  type?: string;
}

/** `ip -json route` output to Route (skips unreachable/blackhole routes without a device). */
export function parseIpRoutes(rows: IpRouteJson[]): Route[] {
  const out: Route[] = [];
  for (const r of rows) {
    if (!r.dev || (r.type && r.type !== 'unicast')) continue;
    const dst = r.dst === 'default' ? '0.0.0.0/0' : r.dst.includes('/') ? r.dst : `${r.dst}/32`;
    const route: Route = { dst: parseCidr(dst), dev: r.dev };
    if (r.gateway) route.gateway = r.gateway;
    if (r.flags?.includes('onlink')) route.onlink = true;
    if (r.protocol) route.proto = r.protocol;
    if (r.scope) route.scope = r.scope;
    if (r.metric !== undefined) route.metric = r.metric;
    if (r.prefsrc) route.prefsrc = r.prefsrc;
    out.push(route);
  }
  return out;
}

/** Routes through `ip -json route` and `ip -force -batch`. */
export class IpRoutes implements Routes {
  constructor(private readonly netns?: string) {}

  async list(): Promise<Route[]> {
    return parseIpRoutes(await ipJson<IpRouteJson>(['-4', 'route', 'show', 'table', 'main'], this.netns));
  }

  async apply(ops: RouteOp[]): Promise<RouteFailure[]> {
    const failures = await runBatch(
      'ip',
      ops.map((o) => routeLine(o.op, o.route)),
      this.netns,
    );
    return failures
      .map((f) => ({ message: f.message, op: ops[f.index]! }))
      .filter((f) => !(f.op.op === 'delete' && isAbsentError(f.message)));
  }
}
