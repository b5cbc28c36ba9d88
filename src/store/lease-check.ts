/**
 * What weft accepts from `<prefix>/subnets/`: strict key names, a size cap on
 * values, sane PublicIPs, and (given the Network) no subnet outside it and no
 * two leases on overlapping subnets. Everything else becomes an InvalidLease:
 * logged, counted, never a peer, never created over or deleted by weft.
 *
 * The same functions run on a relist and on watch events (lease-manager.ts
 * keeps the raw view per key and re-derives the accepted one), so both paths
 * always agree on what is a lease.
 */
import { isIPv6 } from 'node:net';
import { containsNet, formatIPv4, maskOf, parseIPv4, subnetKey, type IPv4Net } from '../core/ip.js';
import { InvalidArgumentError, errorMessage } from '../core/errors.js';
import type { InvalidLease, InvalidReason, Lease, LeaseAttrs, NetworkConfig } from './types.js';

/** Largest lease value weft reads. flannel's are ~150 bytes; anything near this is not a lease. */
export const MAX_LEASE_VALUE_BYTES = 64 * 1024;

/** The reasons, for metrics that pre-create their label values. */
export const INVALID_REASONS: readonly InvalidReason[] = [
  'key',
  'too-large',
  'value',
  'public-ip',
  'outside-network',
  'overlap',
];

const IPV4_PART = '(?:0|[1-9]\\d{0,2})';
const LEN_PART = '(?:0|[1-9]\\d?)';
const KEY_RE = new RegExp(`^(${IPV4_PART}(?:\\.${IPV4_PART}){3})-(${LEN_PART})(?:&([0-9a-fA-F:]+)-(${LEN_PART}|1[01]\\d|12[0-8]))?$`);

/**
 * The subnet of a lease key name (the part after `<prefix>/subnets/`):
 * exactly `<ipv4>-<len>` with an optional `&<ipv6>-<len>` twin, in canonical
 * form (network address, no leading zeros). Anything else is not a lease key,
 * so `10.244.41.0-24&x` can never alias 10.244.41.0/24.
 */
export function parseLeaseKeyName(name: string): IPv4Net | undefined {
  const m = KEY_RE.exec(name);
  if (!m) return undefined;
  const prefixLen = Number(m[2]);
  if (prefixLen > 32) return undefined;
  let ip: number;
  try {
    ip = parseIPv4(m[1]!);
  } catch {
    return undefined;
  }
  if (formatIPv4(ip) !== m[1] || ((ip & maskOf(prefixLen)) >>> 0) !== ip) return undefined;
  if (m[3] !== undefined) {
    // The twin: a valid IPv6 address with a prefix of at most 128 (checked by the pattern).
    if (!isIPv6(m[3])) return undefined;
  }
  return { ip, prefixLen };
}

/** Why `ip` cannot be a host's PublicIP, or undefined when it is a unicast IPv4 address. */
export function publicIpProblem(ip: unknown): string | undefined {
  if (typeof ip !== 'string') return 'PublicIP is not a string';
  let n: number;
  try {
    n = parseIPv4(ip);
    if (formatIPv4(n) !== ip) throw new Error('not canonical');
  } catch {
    return `PublicIP ${JSON.stringify(ip.slice(0, 64))} is not an IPv4 address`;
  }
  const first = n >>> 24;
  if (first === 0) return `PublicIP ${ip} is in 0.0.0.0/8 ("this network")`;
  if (first === 127) return `PublicIP ${ip} is a loopback address`;
  if (first >= 224 && first <= 239) return `PublicIP ${ip} is a multicast address`;
  if (first >= 240) return `PublicIP ${ip} is reserved or broadcast`;
  return undefined;
}

/** A stored key/value as the registries hand it over (value as text, or only its size when too big). */
export interface RawLeaseKv {
  /** Key name under `<prefix>/subnets/`. */
  name: string;
  /** The value; undefined when it was not read because of its size. */
  value: string | undefined;
  /** Size of the value in bytes. */
  bytes: number;
  modRevision: number;
  createRevision?: number;
  /** etcd lease id (decimal), undefined for a key without lease. */
  leaseId?: string;
}

/**
 * A stored key as a Lease, or as an InvalidLease saying why not. Checks that
 * need no network config: key form, size (before any JSON parsing), JSON
 * shape, PublicIP.
 */
export function classifyLeaseKv(kv: RawLeaseKv): { lease: Lease } | { invalid: InvalidLease } {
  const base = {
    key: kv.name,
    revision: kv.modRevision,
    ...(kv.createRevision !== undefined ? { createRevision: kv.createRevision } : {}),
  };
  const subnet = parseLeaseKeyName(kv.name);
  if (!subnet) {
    return { invalid: { ...base, reason: 'key', detail: 'key is not <ipv4>-<len>[&<ipv6>-<len>] in canonical form' } };
  }
  if (kv.value === undefined || kv.bytes > MAX_LEASE_VALUE_BYTES) {
    return {
      invalid: { ...base, subnet, reason: 'too-large', detail: `value of ${kv.bytes} bytes is over the ${MAX_LEASE_VALUE_BYTES}-byte cap` },
    };
  }
  let attrs;
  try {
    attrs = parseLeaseAttrs(kv.value, kv.name);
  } catch (err) {
    return { invalid: { ...base, subnet, reason: 'value', detail: errorMessage(err) } };
  }
  const ipProblem = publicIpProblem(attrs.PublicIP);
  if (ipProblem) return { invalid: { ...base, subnet, reason: 'public-ip', detail: ipProblem } };
  const lease: Lease = { subnet, attrs, key: kv.name, revision: kv.modRevision };
  if (kv.createRevision !== undefined) lease.createRevision = kv.createRevision;
  if (kv.leaseId !== undefined) lease.leaseId = kv.leaseId;
  return { lease };
}

/** An entry of the raw view: what one key holds. */
export type LeaseEntry = { lease: Lease } | { invalid: InvalidLease };

/**
 * The leases weft uses out of the raw view, given the Network: subnets
 * outside it and subnets overlapping an older lease are refused. Older means
 * the smaller create revision (then the smaller key), so every host refuses
 * the same newcomer whatever order it saw the keys in.
 */
export function acceptLeases(
  config: Pick<NetworkConfig, 'network'>,
  entries: Iterable<LeaseEntry>,
): { accepted: Lease[]; invalid: InvalidLease[] } {
  const invalid: InvalidLease[] = [];
  const candidates: Lease[] = [];
  for (const e of entries) {
    if ('invalid' in e) invalid.push(e.invalid);
    else if (!containsNet(config.network, e.lease.subnet)) {
      invalid.push(refusal(e.lease, 'outside-network', `subnet is not inside the Network ${subnetKey(config.network)}`));
    } else candidates.push(e.lease);
  }
  candidates.sort(olderFirst);
  // Aligned CIDRs overlap only when one contains the other: look up the
  // (at most 33) nets containing a candidate, and whether an accepted lease
  // lies strictly inside it.
  const taken = new Map<number, Lease>();
  const insideOf = new Set<number>();
  const accepted: Lease[] = [];
  for (const l of candidates) {
    let holder: Lease | undefined;
    for (let p = 0; p <= l.subnet.prefixLen && !holder; p++) {
      holder = taken.get(netKey(l.subnet.ip, p));
    }
    if (!holder && insideOf.has(netKey(l.subnet.ip, l.subnet.prefixLen))) {
      holder = accepted.find((a) => containsNet(l.subnet, a.subnet));
    }
    if (holder) {
      invalid.push(refusal(l, 'overlap', `subnet overlaps the older lease ${holder.key ?? subnetKey(holder.subnet)}`));
      continue;
    }
    taken.set(netKey(l.subnet.ip, l.subnet.prefixLen), l);
    for (let p = 0; p < l.subnet.prefixLen; p++) insideOf.add(netKey(l.subnet.ip, p));
    accepted.push(l);
  }
  accepted.sort((a, b) => a.subnet.ip - b.subnet.ip || a.subnet.prefixLen - b.subnet.prefixLen);
  return { accepted, invalid };
}

/** A net as one number (network address * 64 + prefix length): cheap Map keys. */
function netKey(ip: number, prefixLen: number): number {
  return ((ip & maskOf(prefixLen)) >>> 0) * 64 + prefixLen;
}

function olderFirst(a: Lease, b: Lease): number {
  const ca = a.createRevision ?? a.revision ?? Number.MAX_SAFE_INTEGER;
  const cb = b.createRevision ?? b.revision ?? Number.MAX_SAFE_INTEGER;
  if (ca !== cb) return ca - cb;
  const ka = a.key ?? subnetKey(a.subnet);
  const kb = b.key ?? subnetKey(b.subnet);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function refusal(l: Lease, reason: InvalidReason, detail: string): InvalidLease {
  return {
    key: l.key ?? subnetKey(l.subnet),
    subnet: l.subnet,
    reason,
    detail,
    revision: l.revision ?? 0,
    ...(l.createRevision !== undefined ? { createRevision: l.createRevision } : {}),
  };
}

/**
 * Parses a lease value; InvalidArgumentError when it is not flannel's JSON.
 * A missing or null BackendType reads as "": flanneld's udp backend writes
 * `{"PublicIP":"192.0.2.3","PublicIPv6":null}` and nothing else.
 */
export function parseLeaseAttrs(text: string, key = 'lease'): LeaseAttrs {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new InvalidArgumentError(key, 'lease value is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidArgumentError(key, 'lease value is not an object');
  const o = v as Record<string, unknown>;
  if (typeof o.PublicIP !== 'string') throw new InvalidArgumentError(key, 'lease value has no PublicIP');
  if (o.BackendType === undefined || o.BackendType === null) return { ...o, BackendType: '' } as unknown as LeaseAttrs;
  if (typeof o.BackendType !== 'string') throw new InvalidArgumentError(key, 'lease value has a BackendType that is not a string');
  return o as unknown as LeaseAttrs;
}
