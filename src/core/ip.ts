import { InvalidArgumentError } from './errors.js';

/** IPv4 address as an unsigned 32-bit number. */
export type IPv4 = number;

export interface IPv4Net {
  /** Network address (host bits zero). */
  readonly ip: IPv4;
  readonly prefixLen: number;
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function parseIPv4(text: string, field = 'ip'): IPv4 {
  const m = IPV4_RE.exec(text.trim());
  if (!m) throw new InvalidArgumentError(field, `"${text}" is not an IPv4 address`);
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const o = Number(m[i]);
    if (o > 255) throw new InvalidArgumentError(field, `"${text}" is not an IPv4 address`);
    n = n * 256 + o;
  }
  return n >>> 0;
}

export function isIPv4(text: string): boolean {
  try {
    parseIPv4(text);
    return true;
  } catch {
    return false;
  }
}

export function formatIPv4(ip: IPv4): string {
  return `${(ip >>> 24) & 255}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

export function maskOf(prefixLen: number): number {
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/** Parses "a.b.c.d/n". `strict` refuses host bits set (flannel's Network must be a network). */
export function parseCidr(text: string, field = 'cidr', strict = false): IPv4Net {
  const parts = String(text).trim().split('/');
  if (parts.length !== 2 || !/^\d{1,2}$/.test(parts[1]!)) {
    throw new InvalidArgumentError(field, `"${text}" is not an IPv4 CIDR`);
  }
  const prefixLen = Number(parts[1]);
  if (prefixLen > 32) throw new InvalidArgumentError(field, `"${text}" has a prefix length over 32`);
  let ip: IPv4;
  try {
    ip = parseIPv4(parts[0]!, field);
  } catch {
    throw new InvalidArgumentError(field, `"${text}" is not an IPv4 CIDR`);
  }
  const net = (ip & maskOf(prefixLen)) >>> 0;
  if (strict && net !== ip) {
    throw new InvalidArgumentError(field, `"${text}" has host bits set (did you mean ${formatIPv4(net)}/${prefixLen}?)`);
  }
  return { ip: net, prefixLen };
}

export function formatCidr(net: IPv4Net): string {
  return `${formatIPv4(net.ip)}/${net.prefixLen}`;
}

export function netSize(net: IPv4Net): number {
  return 2 ** (32 - net.prefixLen);
}

export function lastIP(net: IPv4Net): IPv4 {
  return (net.ip + netSize(net) - 1) >>> 0;
}

export function contains(net: IPv4Net, ip: IPv4): boolean {
  return ((ip & maskOf(net.prefixLen)) >>> 0) === net.ip;
}

/** True when `inner` lies wholly inside `outer`. */
export function containsNet(outer: IPv4Net, inner: IPv4Net): boolean {
  return inner.prefixLen >= outer.prefixLen && contains(outer, inner.ip);
}

export function overlaps(a: IPv4Net, b: IPv4Net): boolean {
  return containsNet(a, b) || containsNet(b, a);
}

export function sameNet(a: IPv4Net, b: IPv4Net): boolean {
  return a.ip === b.ip && a.prefixLen === b.prefixLen;
}

/** The n-th address of a network (0 = network address). */
export function nthIP(net: IPv4Net, n: number): IPv4 {
  return (net.ip + n) >>> 0;
}

/** The next subnet of the same size. */
export function nextSubnet(net: IPv4Net): IPv4Net {
  return { ip: (net.ip + netSize(net)) >>> 0, prefixLen: net.prefixLen };
}

/** flannel's lease key form: "10.244.51.0-24". */
export function subnetKey(net: IPv4Net): string {
  return `${formatIPv4(net.ip)}-${net.prefixLen}`;
}

export function parseSubnetKey(key: string): IPv4Net | undefined {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})-(\d{1,2})(?:&.*)?$/.exec(key);
  if (!m) return undefined;
  try {
    return parseCidr(`${m[1]}/${m[2]}`, 'subnet', true);
  } catch {
    return undefined;
  }
}
