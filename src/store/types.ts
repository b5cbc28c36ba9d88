import type { IPv4Net } from '../core/ip.js';

/** The JSON value of a lease key, exactly as flanneld writes it. */
export interface LeaseAttrs {
  PublicIP: string;
  PublicIPv6?: string | null;
  /** "" when the value has none: flanneld's udp backend writes no BackendType. */
  BackendType: string;
  BackendData?: unknown;
}

export interface Lease {
  subnet: IPv4Net;
  attrs: LeaseAttrs;
  /** When the etcd lease expires; undefined for a reservation (key without TTL). */
  expiration?: Date;
  /**
   * etcd lease id (decimal string) holding the key; undefined for a reservation.
   * Set by registries; absent on leases built by hand.
   */
  leaseId?: string;
  /** etcd mod_revision of the key when read or written (for compare-and-swap updates). */
  revision?: number;
  /** etcd create_revision of the key: the older lease wins an overlap. */
  createRevision?: number;
  /** The key name under `<prefix>/subnets/` (set by registries). */
  key?: string;
}

/**
 * Why a key under `<prefix>/subnets/` is not a lease weft uses:
 * key = not a canonical lease key name; too-large = value over the size cap
 * (never parsed); value = not flannel's lease JSON; public-ip = PublicIP not a
 * unicast IPv4 address; outside-network / overlap = subnet not inside the
 * Network, or overlapping an older lease.
 */
export type InvalidReason = 'key' | 'too-large' | 'value' | 'public-ip' | 'outside-network' | 'overlap';

/** A key weft refuses: it still occupies its subnet (never created over, never deleted by weft). */
export interface InvalidLease {
  /** Key name under `<prefix>/subnets/`. */
  key: string;
  /** The subnet the key names, when the name is a lease key. */
  subnet?: IPv4Net;
  reason: InvalidReason;
  /** Human-readable detail for the log. */
  detail: string;
  /** etcd mod_revision of the value refused. */
  revision: number;
  createRevision?: number;
}

export type LeaseEvent = { type: 'added'; lease: Lease } | { type: 'removed'; lease: Lease };

/** Backend section of the network config: `Type` plus backend-specific fields as given. */
export interface BackendConfig {
  type: string;
  /** All backend fields with their original names (Type included). */
  raw: Record<string, unknown>;
}

/** Parsed `<prefix>/config`, flannel semantics. */
export interface NetworkConfig {
  network: IPv4Net;
  subnetLen: number;
  subnetMin: IPv4Net;
  subnetMax: IPv4Net;
  backend: BackendConfig;
  /** The JSON as stored. */
  raw: Record<string, unknown>;
}
