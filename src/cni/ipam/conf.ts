import { contains, formatCidr, formatIPv4, isIPv4, parseCidr, parseIPv4, sameNet, type IPv4, type IPv4Net } from '../../core/ip.js';
import { InvalidNetworkConfigError } from '../errors.js';
import { rangeFor, type IpRange } from './allocator.js';

/**
 * The `ipam` section of a network configuration, as far as weft honours it.
 * weft allocates host-local style from the node's subnet (subnet.env), so a
 * section is optional; when present it must be host-local's, and what it
 * names must agree with that subnet. Strings are kept as written until the
 * subnet is known (ADD).
 */
export interface WeftIpamConf {
  /** host-local's state directory. */
  dataDir?: string;
  /** Must equal FLANNEL_SUBNET. */
  subnet?: string;
  rangeStart?: string;
  rangeEnd?: string;
  /** Must be the subnet's first address (the bridge holds it). */
  gateway?: string;
  /** Extra container routes; `gw` defaults to the gateway. */
  routes: Array<{ dst: string; gw?: string }>;
}

const RANGE_FIELDS = ['subnet', 'rangeStart', 'rangeEnd', 'gateway'] as const;

function str(o: Record<string, unknown>, k: string, field: string): string | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v === '') throw new InvalidNetworkConfigError(field, `${JSON.stringify(v)} is not a non-empty string`);
  return v;
}

function ipv4(o: Record<string, unknown>, k: string, field: string): string | undefined {
  const v = str(o, k, field);
  if (v !== undefined && !isIPv4(v)) throw new InvalidNetworkConfigError(field, `"${v}" is not an IPv4 address`);
  return v;
}

function cidr(v: string | undefined, field: string): string | undefined {
  if (v === undefined) return undefined;
  try {
    parseCidr(v, field);
  } catch {
    throw new InvalidNetworkConfigError(field, `"${v}" is not an IPv4 CIDR`);
  }
  return v;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Validates the section's shape (code 7 naming the field); undefined when there is none. Pure. */
export function parseIpamConf(raw: unknown): WeftIpamConf | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isObject(raw)) throw new InvalidNetworkConfigError('ipam', 'not an object');
  const type = str(raw, 'type', 'ipam.type');
  if (type !== undefined && type !== 'host-local') {
    throw new InvalidNetworkConfigError('ipam.type', `"${type}" is not supported: weft allocates host-local style from the node's subnet (subnet.env); use "host-local" or leave ipam out`);
  }
  let range: Record<string, unknown> = raw;
  let base = 'ipam';
  if (raw.ranges !== undefined && raw.ranges !== null) {
    const sets = raw.ranges;
    if (!Array.isArray(sets) || !sets.every((s) => Array.isArray(s) && s.every(isObject))) throw new InvalidNetworkConfigError('ipam.ranges', 'not a list of range sets (lists of objects)');
    if (sets.length !== 1 || (sets[0] as unknown[]).length !== 1) throw new InvalidNetworkConfigError('ipam.ranges', "weft allocates from one range (the node's subnet): give one set with one range");
    const inline = RANGE_FIELDS.filter((k) => raw[k] !== undefined);
    if (inline.length) throw new InvalidNetworkConfigError(`ipam.${inline[0]}`, 'give the range either in ipam.ranges or inline, not both');
    range = (sets[0] as Record<string, unknown>[])[0]!;
    base = 'ipam.ranges[0][0]';
  }
  const routesRaw = raw.routes;
  if (routesRaw !== undefined && routesRaw !== null && (!Array.isArray(routesRaw) || !routesRaw.every(isObject))) throw new InvalidNetworkConfigError('ipam.routes', 'not a list of objects');
  const routes = ((routesRaw as Record<string, unknown>[] | undefined) ?? []).map((r, i) => {
    const dst = cidr(str(r, 'dst', `ipam.routes[${i}].dst`), `ipam.routes[${i}].dst`);
    if (!dst) throw new InvalidNetworkConfigError(`ipam.routes[${i}].dst`, 'missing');
    const gw = ipv4(r, 'gw', `ipam.routes[${i}].gw`);
    return gw ? { dst, gw } : { dst };
  });
  return {
    dataDir: str(raw, 'dataDir', 'ipam.dataDir'),
    subnet: cidr(str(range, 'subnet', `${base}.subnet`), `${base}.subnet`),
    rangeStart: ipv4(range, 'rangeStart', `${base}.rangeStart`),
    rangeEnd: ipv4(range, 'rangeEnd', `${base}.rangeEnd`),
    gateway: ipv4(range, 'gateway', `${base}.gateway`),
    routes,
  };
}

/**
 * The allocation range for the node's subnet, narrowed by the section's
 * rangeStart / rangeEnd; code 7 when the section names another subnet, a
 * range outside it, or another gateway. Pure.
 */
export function ipamRange(subnet: IPv4Net, ipam: WeftIpamConf | undefined): IpRange {
  const range = rangeFor(subnet);
  if (!ipam) return range;
  const node = formatCidr(subnet);
  if (ipam.subnet !== undefined && !sameNet(parseCidr(ipam.subnet), subnet)) {
    throw new InvalidNetworkConfigError('ipam.subnet', `${ipam.subnet} is not this node's subnet ${node} (subnet.env); weft allocates from the node's subnet`);
  }
  if (ipam.gateway !== undefined && parseIPv4(ipam.gateway) !== range.gateway) {
    throw new InvalidNetworkConfigError('ipam.gateway', `${ipam.gateway} is not ${formatIPv4(range.gateway)}, the first address of ${node}, which the bridge holds`);
  }
  const bound = (text: string | undefined, field: string, dflt: IPv4): IPv4 => {
    if (text === undefined) return dflt;
    const ip = parseIPv4(text);
    if (!contains(subnet, ip) || ip < range.start || ip > range.end) {
      throw new InvalidNetworkConfigError(field, `${text} is not a usable address of ${node} (${formatIPv4(range.start)}-${formatIPv4(range.end)})`);
    }
    return ip;
  };
  const start = bound(ipam.rangeStart, 'ipam.rangeStart', range.start);
  const end = bound(ipam.rangeEnd, 'ipam.rangeEnd', range.end);
  if (start > end) throw new InvalidNetworkConfigError('ipam.rangeStart', `${formatIPv4(start)} is after rangeEnd ${formatIPv4(end)}`);
  return { ...range, start, end };
}

/**
 * The section's routes with their gateways, minus those the plugin adds
 * anyway (`added`: their destinations, in formatCidr's form); code 7 for a gateway
 * outside the node's subnet (it would not be on-link). Pure.
 */
export function ipamRoutes(subnet: IPv4Net, ipam: WeftIpamConf | undefined, gateway: string, added: readonly string[]): Array<{ dst: string; gw: string }> {
  if (!ipam) return [];
  const seen = new Set(added);
  const out: Array<{ dst: string; gw: string }> = [];
  ipam.routes.forEach((r, i) => {
    const gw = r.gw ?? gateway;
    if (!contains(subnet, parseIPv4(gw))) throw new InvalidNetworkConfigError(`ipam.routes[${i}].gw`, `${gw} is not in this node's subnet ${formatCidr(subnet)}, so not reachable from the container`);
    const dst = formatCidr(parseCidr(r.dst));
    if (seen.has(dst)) return;
    seen.add(dst);
    out.push({ dst, gw });
  });
  return out;
}

