import type { IPv4 } from '../../core/ip.js';
import type { IpamStore, Reservation } from './store.js';

/** In-memory IpamStore with host-local's semantics (exclusive reserve, last reserved per range). */
export class FakeIpamStore implements IpamStore {
  readonly reservations = new Map<IPv4, { containerId: string; ifname: string }>();
  readonly lastReserved = new Map<string, IPv4>();
  locked = false;

  async withLock<T>(fn: () => T): Promise<T> {
    if (this.locked) throw new Error('FakeIpamStore: nested lock');
    this.locked = true;
    try {
      return fn();
    } finally {
      this.locked = false;
    }
  }

  reserve(containerId: string, ifname: string, ip: IPv4, rangeId: string): boolean {
    if (this.reservations.has(ip)) return false;
    this.reservations.set(ip, { containerId, ifname });
    this.lastReserved.set(rangeId, ip);
    return true;
  }

  lastReservedIP(rangeId: string): IPv4 | undefined {
    return this.lastReserved.get(rangeId);
  }

  getByID(containerId: string, ifname: string): IPv4[] {
    return [...this.reservations].filter(([, r]) => r.containerId === containerId && r.ifname === ifname).map(([ip]) => ip);
  }

  releaseByID(containerId: string, ifname: string): IPv4[] {
    let ips = this.getByID(containerId, ifname);
    // host-local's fallback to old-format (id-only) files; ifname '' stands for them here.
    if (ips.length === 0) ips = this.getByID(containerId, '');
    for (const ip of ips) this.reservations.delete(ip);
    return ips;
  }

  release(ip: IPv4): void {
    this.reservations.delete(ip);
  }

  flushes = 0;

  async flush(): Promise<void> {
    this.flushes++;
  }

  list(): Reservation[] {
    return [...this.reservations].map(([ip, r]) => ({ ip, ...r }));
  }
}
