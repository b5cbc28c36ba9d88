import type { IPv4Net } from '../core/ip.js';

/** The JSON value of a lease key, exactly as flanneld writes it. */
export interface LeaseAttrs {
  PublicIP: string;
  PublicIPv6?: string | null;
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
