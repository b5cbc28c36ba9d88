/**
 * The raw store under the lease manager: flannel's etcd v3 schema as
 * key/value operations. Policy lives in lease-manager.ts; the two
 * implementations are EtcdRegistry (etcd-registry.ts) and MemoryRegistry
 * (memory-registry.ts, a stateful fake for unit tests).
 *
 * Keys: `<prefix>/config` and `<prefix>/subnets/10.244.51.0-24`.
 */
import { subnetKey, type IPv4Net } from '../core/ip.js';
import { parseLeaseKeyName } from './lease-check.js';
import type { InvalidLease, Lease, LeaseAttrs } from './types.js';

export { parseLeaseAttrs } from './lease-check.js';

export const DEFAULT_ETCD_PREFIX = '/coreos.com/network';

/**
 * A key event as the registry's watch reports it (with the etcd revision and
 * the key name under `<prefix>/subnets/`): `added` = a put of a valid lease,
 * `invalid` = a put of something weft refuses (the key's old view must go),
 * `removed` = a delete or expiry of a lease key (`lease.attrs` from the
 * previous value when it parsed, else empty), `gone` = a delete of a key whose
 * name is not a lease key.
 */
export type RegistryLeaseEvent =
  | { type: 'added'; key: string; lease: Lease; revision: number }
  | { type: 'removed'; key: string; lease: Lease; revision: number }
  | { type: 'invalid'; key: string; invalid: InvalidLease; revision: number }
  | { type: 'gone'; key: string; revision: number };

/** What one lease key holds. */
export type LeaseRead = { kind: 'absent' } | { kind: 'lease'; lease: Lease } | { kind: 'invalid'; invalid: InvalidLease };

/**
 * What a watch reports: lease events in batches (one etcd watch response),
 * or `resync` when the watch cannot continue (revision compacted, watch
 * cancelled): the caller must relist and watch again from the new revision.
 */
export type RegistryWatchEvent = RegistryLeaseEvent | { type: 'resync'; reason: string };

/** Why a watch ended. */
export type WatchEnd = 'aborted' | 'resync';

export interface UpdateLeaseOptions {
  /**
   * Only write when the key's mod revision is still this one (compare-and-swap),
   * else LeaseConflictError. Undefined: write unconditionally (create or
   * overwrite).
   */
  ifRevision?: number;
}

export interface Registry {
  /** The raw config JSON, undefined when absent. */
  getConfig(): Promise<string | undefined>;
  putConfig(json: string): Promise<void>;
  /**
   * All keys under `<prefix>/subnets/` at one revision: the valid leases
   * (sorted by subnet) and the keys weft refuses (lease-check.ts; the
   * Network-dependent checks are the lease manager's).
   */
  listLeases(): Promise<{ leases: Lease[]; invalid: InvalidLease[]; revision: number }>;
  /** The lease at a subnet's key; undefined when absent OR invalid (readLease tells the two apart). */
  getLease(subnet: IPv4Net): Promise<Lease | undefined>;
  /** What the subnet's key holds: nothing, a lease, or a value weft refuses. */
  readLease(subnet: IPv4Net): Promise<LeaseRead>;
  /**
   * Creates the key only if it does not exist (version 0), attached to a new
   * etcd lease of `ttlSeconds`; undefined TTL writes a reservation (no lease).
   * @throws LeaseConflictError when the key exists
   */
  createLease(subnet: IPv4Net, attrs: LeaseAttrs, ttlSeconds: number | undefined): Promise<Lease>;
  /**
   * Re-puts the key with fresh attrs: a new etcd lease of `ttlSeconds`, or no
   * lease at all when undefined (a reservation stays a reservation).
   * @throws LeaseConflictError when `opts.ifRevision` no longer matches
   */
  updateLease(subnet: IPv4Net, attrs: LeaseAttrs, ttlSeconds: number | undefined, opts?: UpdateLeaseOptions): Promise<Lease>;
  /** Deletes the key (no error when absent). */
  deleteLease(subnet: IPv4Net): Promise<void>;
  /**
   * Watches `<prefix>/subnets/` from `fromRevision`. PUT -> added (value
   * parsed), DELETE or expiry -> removed. Resolves 'aborted' when the signal
   * fires, or 'resync' after emitting a resync event (compaction, cancel):
   * the caller relists. Temporary disconnects are retried inside.
   */
  watchLeases(fromRevision: number, onEvents: (events: RegistryWatchEvent[]) => void, signal: AbortSignal): Promise<WatchEnd>;
  /** Releases connections. */
  close(): Promise<void>;
}

/** Key layout under a prefix. */
export class RegistryKeys {
  readonly prefix: string;
  constructor(prefix = DEFAULT_ETCD_PREFIX) {
    // "/coreos.com/network/" and "/coreos.com/network" mean the same prefix.
    this.prefix = prefix.replace(/\/+$/, '');
  }
  get config(): string {
    return `${this.prefix}/config`;
  }
  get subnets(): string {
    return `${this.prefix}/subnets/`;
  }
  lease(subnet: IPv4Net): string {
    return `${this.subnets}${subnetKey(subnet)}`;
  }
  /** The subnet of a lease key, undefined for keys that are not lease keys (strict: lease-check.ts). */
  subnetOf(key: string): IPv4Net | undefined {
    if (!key.startsWith(this.subnets)) return undefined;
    return parseLeaseKeyName(key.slice(this.subnets.length));
  }
  /** The key name under `subnets/`, undefined for keys outside it. */
  nameOf(key: string): string | undefined {
    return key.startsWith(this.subnets) && key.length > this.subnets.length ? key.slice(this.subnets.length) : undefined;
  }
}

/**
 * flannel's lease JSON, field for field and in flannel's order:
 * {"PublicIP":..,"PublicIPv6":null,"BackendType":..,"BackendData":..}.
 * BackendData is omitted when undefined (Go's omitempty on a nil RawMessage).
 */
export function serializeLeaseAttrs(attrs: LeaseAttrs): string {
  const out: Record<string, unknown> = {
    PublicIP: attrs.PublicIP,
    PublicIPv6: attrs.PublicIPv6 ?? null,
    BackendType: attrs.BackendType,
  };
  if (attrs.BackendData !== undefined) out.BackendData = attrs.BackendData;
  // flanneld >= 0.16 may add BackendV6Data; keep whatever else was given.
  for (const [k, v] of Object.entries(attrs)) if (!(k in out) && v !== undefined) out[k] = v;
  return JSON.stringify(out);
}

/** True for a key without TTL (an operator's reservation). */
export function isReservation(lease: Lease): boolean {
  return lease.leaseId === undefined && lease.expiration === undefined;
}

/** JSON with object keys sorted, so equal values compare equal whatever their key order. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}

/** Attr equality as stored (key order inside BackendData does not matter). */
export function sameAttrs(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return canonicalJson(JSON.parse(serializeLeaseAttrs(a))) === canonicalJson(JSON.parse(serializeLeaseAttrs(b)));
}
