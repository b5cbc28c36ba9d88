import { contains, formatCidr, formatIPv4, lastIP, nthIP, parseIPv4, type IPv4, type IPv4Net } from '../../core/ip.js';
import { InvalidNetworkConfigError, RangeExhaustedError, RequestedIpUnavailableError } from '../errors.js';
import type { IpamStore } from './store.js';

/** One host-local range: the subnet, its gateway and the usable span. */
export interface IpRange {
  subnet: IPv4Net;
  /** Never handed out (it lives on the bridge). */
  gateway: IPv4;
  /** First usable address. Default: network + 1. */
  start: IPv4;
  /** Last usable address. Default: broadcast - 1. */
  end: IPv4;
  /** Suffix of `last_reserved_ip.<id>`. host-local numbers range sets from 0. */
  id: string;
}

/** host-local's defaults for a subnet: gateway .1, usable .1 .. broadcast-1 (gateway skipped). */
export function rangeFor(subnet: IPv4Net, gateway = nthIP(subnet, 1)): IpRange {
  if (subnet.prefixLen > 30) throw new InvalidNetworkConfigError('subnet', `${formatCidr(subnet)} is too small for containers (need /30 or larger)`);
  return { subnet, gateway, start: nthIP(subnet, 1), end: (lastIP(subnet) - 1) >>> 0, id: '0' };
}

export interface Allocation {
  ip: IPv4;
  /** False when the attachment already held this address (repeated ADD): undo must not free it. */
  fresh: boolean;
}

/**
 * Picks an address for (containerId, ifname), under the store's lock:
 * - an address this attachment already holds is returned again (repeated ADD);
 * - a requested address must be in range, not the gateway, and free;
 * - otherwise round robin from last_reserved_ip + 1, wrapping once, gateway skipped.
 */
export async function allocate(store: IpamStore, range: IpRange, containerId: string, ifname: string, requested?: string): Promise<Allocation> {
  return store.withLock(() => {
    const held = store.getByID(containerId, ifname).filter((ip) => contains(range.subnet, ip));
    if (requested !== undefined) {
      const want = parseIPv4(requested, 'IP');
      if (held.includes(want)) return { ip: want, fresh: false };
      if (!contains(range.subnet, want) || want < range.start || want > range.end || want === range.gateway) {
        throw new RequestedIpUnavailableError(`requested IP ${requested} is not a usable address of ${formatCidr(range.subnet)}`, { requested });
      }
      if (!store.reserve(containerId, ifname, want, range.id)) {
        throw new RequestedIpUnavailableError(`requested IP ${requested} is already reserved`, { requested });
      }
      return { ip: want, fresh: true };
    }
    if (held.length > 0) return { ip: held[0]!, fresh: false };

    const size = range.end - range.start + 1;
    const last = store.lastReservedIP(range.id);
    // Start after the last reservation, as host-local does, so a just-freed
    // address is not handed to the next container at once (stale ARP, conntrack).
    let first = last !== undefined && last >= range.start && last <= range.end ? last + 1 : range.start;
    if (first > range.end) first = range.start;
    for (let i = 0; i < size; i++) {
      const ip = (range.start + ((first - range.start + i) % size)) >>> 0;
      if (ip === range.gateway) continue;
      if (store.reserve(containerId, ifname, ip, range.id)) return { ip, fresh: true };
    }
    throw new RangeExhaustedError(`no free address left in ${formatCidr(range.subnet)} (${formatIPv4(range.start)}-${formatIPv4(range.end)})`, {
      subnet: formatCidr(range.subnet),
    });
  });
}
