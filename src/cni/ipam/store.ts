import type { IPv4 } from '../../core/ip.js';

/** One reservation as host-local keeps it: file `<ip>` holding `<containerID>\r\n<ifname>`. */
export interface Reservation {
  ip: IPv4;
  containerId: string;
  /** '' for a file of an old host-local version (it holds the container ID alone). */
  ifname: string;
}

/**
 * GC: the reservations whose attachment is not among `valid`. An old-format
 * reservation (no ifname) stays while its container has any valid
 * attachment, and goes with the container.
 */
export function staleReservations(all: readonly Reservation[], valid: ReadonlyArray<{ containerID: string; ifname: string }>): Reservation[] {
  const keep = new Set(valid.map((a) => `${a.containerID}/${a.ifname}`));
  const containers = new Set(valid.map((a) => a.containerID));
  return all.filter((r) => (r.ifname === '' ? !containers.has(r.containerId) : !keep.has(`${r.containerId}/${r.ifname}`)));
}

/**
 * host-local's Store, reduced to what weft's allocator needs. All calls but
 * `withLock` are synchronous so a critical section runs without yielding.
 */
export interface IpamStore {
  /** Runs `fn` holding the store's lock (other processes and other in-process callers wait). */
  withLock<T>(fn: () => T): Promise<T>;
  /** Claims `ip` for the attachment; false when it is already taken (exclusive create). */
  reserve(containerId: string, ifname: string, ip: IPv4, rangeId: string): boolean;
  /** `last_reserved_ip.<rangeId>`, when present and readable. */
  lastReservedIP(rangeId: string): IPv4 | undefined;
  /** Addresses held by this attachment. */
  getByID(containerId: string, ifname: string): IPv4[];
  /** Frees the attachment's addresses (when it has none, the container's old-format ones, as host-local); returns them. */
  releaseByID(containerId: string, ifname: string): IPv4[];
  /** Frees one address. */
  release(ip: IPv4): void;
  /** Every reservation (GC). */
  list(): Reservation[];
  /**
   * Makes reservations made so far durable (fsync). Separate from `reserve`
   * so the disk wait overlaps the kernel work; ADD awaits it before replying.
   */
  flush(): Promise<void>;
}
