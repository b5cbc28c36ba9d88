/**
 * Which subnet a host should lease: pure functions over a lease list, in
 * flannel's order (FACTS.md §1): our own lease (matched by PublicIP), else the
 * subnet of the old subnet.env if free, else a random free subnet among the
 * first ~100 free ones from SubnetMin. No I/O here; lease-manager.ts does that.
 */
import { formatCidr, overlaps, sameNet, subnetKey, type IPv4Net } from '../core/ip.js';
import { isSubnetCompatible, subnetsOf } from './netconfig.js';
import type { Lease, NetworkConfig } from './types.js';

export type SubnetChoice =
  | { kind: 'own'; lease: Lease }
  | { kind: 'previous'; subnet: IPv4Net }
  | { kind: 'random'; subnet: IPv4Net }
  | { kind: 'exhausted' };

export interface ChooseSubnetInput {
  config: NetworkConfig;
  leases: readonly Lease[];
  publicIp: string;
  /** Subnet named in the old subnet.env, if any. */
  previousSubnet?: IPv4Net;
  /** Subnets not to pick (e.g. just lost a create race on them), by subnetKey. */
  exclude?: ReadonlySet<string>;
  /** Random source in [0, 1). Default Math.random. */
  random?: () => number;
  /** How many free subnets to pick among. Default 100 (flannel's spread). */
  maxCandidates?: number;
}

/** Our leases (PublicIP = ours), split by whether they still fit the config. */
export function splitOwnLeases(
  config: NetworkConfig,
  leases: readonly Lease[],
  publicIp: string,
): { compatible: Lease[]; incompatible: Lease[] } {
  const compatible: Lease[] = [];
  const incompatible: Lease[] = [];
  for (const l of leases) {
    if (l.attrs.PublicIP !== publicIp) continue;
    (isSubnetCompatible(config, l.subnet) ? compatible : incompatible).push(l);
  }
  return { compatible, incompatible };
}

/** True when no lease holds (or overlaps) `subnet` and it is not excluded. */
export function isSubnetFree(subnet: IPv4Net, leases: readonly Lease[], exclude?: ReadonlySet<string>): boolean {
  if (exclude?.has(subnetKey(subnet))) return false;
  return !leases.some((l) => sameNet(l.subnet, subnet) || overlaps(l.subnet, subnet));
}

/** Up to `max` free subnets from SubnetMin upwards. */
export function freeSubnets(
  config: NetworkConfig,
  leases: readonly Lease[],
  max: number,
  exclude?: ReadonlySet<string>,
): IPv4Net[] {
  // Exact matches by key make the common case O(1); leases of another size
  // (SubnetLen changed) are checked for overlap.
  const taken = new Set(leases.filter((l) => l.subnet.prefixLen === config.subnetLen).map((l) => subnetKey(l.subnet)));
  const odd = leases.filter((l) => l.subnet.prefixLen !== config.subnetLen);
  const out: IPv4Net[] = [];
  for (const sn of subnetsOf(config)) {
    const key = subnetKey(sn);
    if (taken.has(key) || exclude?.has(key) || odd.some((l) => overlaps(l.subnet, sn))) continue;
    out.push(sn);
    if (out.length >= max) break;
  }
  return out;
}

export function chooseSubnet(input: ChooseSubnetInput): SubnetChoice {
  const { config, leases, publicIp, previousSubnet, exclude } = input;
  const { compatible } = splitOwnLeases(config, leases, publicIp);
  if (compatible.length > 0) {
    // Several leases for one IP (e.g. a reservation plus an old lease): prefer the one pods already use.
    const prev = previousSubnet && compatible.find((l) => sameNet(l.subnet, previousSubnet));
    return { kind: 'own', lease: prev ?? compatible[0]! };
  }
  if (previousSubnet && isSubnetCompatible(config, previousSubnet) && isSubnetFree(previousSubnet, leases, exclude)) {
    return { kind: 'previous', subnet: previousSubnet };
  }
  const free = freeSubnets(config, leases, input.maxCandidates ?? 100, exclude);
  if (free.length === 0) return { kind: 'exhausted' };
  const random = input.random ?? Math.random;
  return { kind: 'random', subnet: free[Math.min(free.length - 1, Math.floor(random() * free.length))]! };
}

export function describeChoice(c: SubnetChoice): string {
  switch (c.kind) {
    case 'own':
      return `own lease ${formatCidr(c.lease.subnet)}`;
    case 'previous':
      return `previous subnet ${formatCidr(c.subnet)}`;
    case 'random':
      return `free subnet ${formatCidr(c.subnet)}`;
    case 'exhausted':
      return 'no free subnet';
  }
}
