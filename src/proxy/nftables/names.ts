import { hash16 } from '../iptables/names.js';
import type { ServicePortInfo } from '../model/service-port.js';

/** The one table weft-proxy owns in nftables mode (IPv4 only for now). */
export const NFT_FAMILY = 'ip';
export const NFT_TABLE = 'weft-proxy';

/** Verdict maps that dispatch traffic; keys are `ip . proto . port` or `proto . port`. */
export const MAP = {
  /** ClusterIP / external IP / LB IP . proto . port -> goto the service's chain. */
  SERVICE_IPS: 'service-ips',
  /** proto . node port -> goto the service's external chain. */
  SERVICE_NODEPORTS: 'service-nodeports',
  /** Service IP . proto . port of services without (local) endpoints -> reject / drop. */
  NO_ENDPOINT_SERVICES: 'no-endpoint-services',
  /** proto . node port of services without (local) endpoints -> reject / drop. */
  NO_ENDPOINT_NODEPORTS: 'no-endpoint-nodeports',
  /** LB IP . proto . port of services with loadBalancerSourceRanges -> goto the firewall chain. */
  FIREWALL_IPS: 'firewall-ips',
  /** ClusterIP . port . index -> endpoint IP . port, one map per protocol, read by the pick-<proto>-<n> chains. */
  SERVICE_ENDPOINTS_TCP: 'service-endpoints-tcp',
  SERVICE_ENDPOINTS_UDP: 'service-endpoints-udp',
  SERVICE_ENDPOINTS_SCTP: 'service-endpoints-sctp',
} as const;

/** The endpoint map of a protocol ("tcp", "udp", "sctp"). */
export function endpointsMap(proto: string): MapName {
  return `service-endpoints-${proto}` as MapName;
}

export type MapName = (typeof MAP)[keyof typeof MAP];

/** "endpoint IP . endpoint IP" of every endpoint in use: a pod that reached itself through a service is masqueraded. */
export const HAIRPIN_SET = 'hairpin-endpoints';
export const HAIRPIN_SET_DECL = '{ type ipv4_addr . ipv4_addr; }';

export const MAP_TYPES: Record<MapName, string> = {
  'service-ips': 'ipv4_addr . inet_proto . inet_service : verdict',
  'service-nodeports': 'inet_proto . inet_service : verdict',
  'no-endpoint-services': 'ipv4_addr . inet_proto . inet_service : verdict',
  'no-endpoint-nodeports': 'inet_proto . inet_service : verdict',
  'firewall-ips': 'ipv4_addr . inet_proto . inet_service : verdict',
  // `typeof` because numgen's integer has no named type (the modulus in it is only for printing).
  // One map per protocol: nft derives the DNAT rule's protocol dependency from the data type, so
  // "ip daddr . tcp dport" data makes `dnat ... map` match TCP only (and "th dport" data is
  // refused in later transactions by nft 1.0.6: "conflicting protocols specified: ip vs. th").
  'service-endpoints-tcp': 'typeof ip daddr . th dport . numgen random mod 1 : ip daddr . tcp dport',
  'service-endpoints-udp': 'typeof ip daddr . th dport . numgen random mod 1 : ip daddr . udp dport',
  'service-endpoints-sctp': 'typeof ip daddr . th dport . numgen random mod 1 : ip daddr . sctp dport',
};

/** Fixed regular chains (base chains are listed in static.ts). */
export const FIXED = {
  SERVICES: 'services',
  MARK_MASQ: 'mark-for-masquerade',
  MASQUERADING: 'masquerading',
  SERVICE_ENDPOINTS_CHECK: 'service-endpoints-check',
  NODEPORT_ENDPOINTS_CHECK: 'nodeport-endpoints-check',
  REJECT: 'reject-chain',
} as const;

/** Per-service-port and per-endpoint objects weft-proxy owns (and may delete when stale). */
export const OWNED_CHAIN_RE = /^((svc|svl|ext|fw|sep)-[A-Z2-7]{8}-|pick-(tcp|udp|sctp)-\d+$)/;

/**
 * The shared chain that DNATs ClusterIP traffic of every plain Service of a
 * protocol with `n` endpoints: one random draw, the endpoint looked up in
 * that protocol's service-endpoints map.
 */
export function pickChain(proto: string, n: number): string {
  return `pick-${proto}-${n}`;
}
export const OWNED_SET_RE = /^aff-[A-Z2-7]{8}-/;

/**
 * Readable, unique chain names: a hash (so that prefixes never collide) then
 * "ns/name/proto/port" (nft identifiers may hold '/', '.', '-', '_').
 */
function portPart(p: Pick<ServicePortInfo, 'service' | 'protocol' | 'portName' | 'port'>): string {
  return `${p.service}/${p.protocol.toLowerCase()}/${p.portName || `p${p.port}`}`;
}
const h8 = (text: string) => hash16(text).slice(0, 8);
type PortId = Pick<ServicePortInfo, 'key' | 'service' | 'protocol' | 'portName' | 'port'>;

/** The four per-port chain names (service, local, external, firewall) with one hash. */
export function portChains(p: PortId): { svc: string; svl: string; ext: string; fw: string } {
  const tail = `${h8(`${p.key}${p.protocol}`)}-${portPart(p)}`;
  return { svc: `svc-${tail}`, svl: `svl-${tail}`, ext: `ext-${tail}`, fw: `fw-${tail}` };
}
/** `ep` is "ip:port". */
export function sepChain(p: PortId, ep: string): string {
  return `sep-${h8(`${p.key}${p.protocol}${ep}`)}-${portPart(p)}__${ep.replace(':', '/')}`;
}
/** The affinity set of one endpoint; the timeout is part of the hash so a changed timeout makes a new set. */
export function affinitySet(p: PortId, ep: string, timeoutS: number): string {
  return `aff-${h8(`${p.key}${p.protocol}${ep}${timeoutS}`)}-${portPart(p)}__${ep.replace(':', '/')}`;
}
