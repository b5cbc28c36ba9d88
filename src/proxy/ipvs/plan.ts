import type { HealthCheckPort } from '../backend.js';
import type { IptablesProxyConfig } from '../iptables/service-rules.js';
import { usableEndpoints, type EndpointInfo } from '../model/endpoints.js';
import type { ServicePortInfo } from '../model/service-port.js';

/** ipvs mode settings on top of the node config shared with the other modes. */
export interface IpvsProxyConfig extends IptablesProxyConfig {
  /** ipvs scheduler (rr, wrr, lc, wlc, sh, dh, ...). Default 'rr'. */
  scheduler?: string;
  /** This node's addresses that answer node ports (one virtual server each). */
  nodeIPs: readonly string[];
  /** ipvs.strictARP: set arp_ignore=1 / arp_announce=2 at start. Default false. */
  strictARP?: boolean;
}

export interface RealServer {
  address: string;
  port: number;
  /** 1 = takes new connections; 0 = terminating, drains the ones it has. */
  weight: number;
}

export interface VirtualServer {
  protocol: 'tcp' | 'udp' | 'sctp';
  address: string;
  port: number;
  scheduler: string;
  /** ClientIP affinity timeout in seconds; 0 = none. */
  persistenceS: number;
  /** Always NAT (masquerading) forwarding. */
  realServers: RealServer[];
}

export interface IpsetSpec {
  name: string;
  type: string;
  /** Extra create options, e.g. "range 0-65535". */
  options: string;
  members: string[];
}

/** Everything ipvs mode writes, as plain data: the applier only sends it. */
export interface IpvsPlan {
  virtualServers: VirtualServer[];
  /** Service IPs held on the dummy device so the kernel accepts them as local. */
  boundAddresses: string[];
  ipsets: IpsetSpec[];
  healthChecks: HealthCheckPort[];
  noLocalEndpoints: number;
}

/** ipsets (names at most 31 characters) and what their members look like. */
export const IPSET = {
  CLUSTER_IP: { name: 'WEFT-CLUSTER-IP', type: 'hash:ip,port', options: '', comment: 'ClusterIP,proto:port' },
  EXTERNAL_IP: { name: 'WEFT-EXTERNAL-IP', type: 'hash:ip,port', options: '', comment: 'externalIP,proto:port' },
  LOAD_BALANCER: { name: 'WEFT-LOAD-BALANCER', type: 'hash:ip,port', options: '', comment: 'LB IP,proto:port' },
  LB_FW: { name: 'WEFT-LOAD-BALANCER-FW', type: 'hash:ip,port', options: '', comment: 'LB IP with source ranges' },
  LB_SOURCE_CIDR: { name: 'WEFT-LOAD-BALANCER-SOURCE-CIDR', type: 'hash:ip,port,net', options: '', comment: 'LB IP,proto:port,allowed source' },
  LOOP_BACK: { name: 'WEFT-LOOP-BACK', type: 'hash:ip,port,ip', options: '', comment: 'endpoint,proto:port,endpoint (hairpin)' },
  NODE_PORT_TCP: { name: 'WEFT-NODE-PORT-TCP', type: 'bitmap:port', options: 'range 0-65535', comment: 'TCP node ports' },
  NODE_PORT_UDP: { name: 'WEFT-NODE-PORT-UDP', type: 'bitmap:port', options: 'range 0-65535', comment: 'UDP node ports' },
  NODE_PORT_LOCAL_TCP: { name: 'WEFT-NODE-PORT-LOCAL-TCP', type: 'bitmap:port', options: 'range 0-65535', comment: 'ETP=Local TCP node ports (no SNAT)' },
  NODE_PORT_LOCAL_UDP: { name: 'WEFT-NODE-PORT-LOCAL-UDP', type: 'bitmap:port', options: 'range 0-65535', comment: 'ETP=Local UDP node ports (no SNAT)' },
  NO_ENDPOINTS: { name: 'WEFT-NO-ENDPOINTS', type: 'hash:ip,port', options: '', comment: 'service addresses without endpoints (REJECT)' },
} as const;

type IpsetKey = keyof typeof IPSET;

/**
 * Real servers for a set of endpoints with kube-proxy's ipvs rule: usable
 * endpoints get weight 1; terminating-but-serving ones are kept at weight 0
 * while ready ones exist (existing connections drain, no new ones).
 */
function realServers(all: readonly EndpointInfo[]): RealServer[] {
  const usable = usableEndpoints(all);
  const out = usable.map((e) => ({ address: e.ip, port: e.port, weight: 1 }));
  if (usable.some((e) => e.ready)) {
    for (const e of all) if (!e.ready && e.serving && e.terminating) out.push({ address: e.ip, port: e.port, weight: 0 });
  }
  return out.sort((a, b) => (a.address === b.address ? a.port - b.port : a.address < b.address ? -1 : 1));
}

/**
 * Turns the model into ipvs virtual servers, the ipset members and the
 * addresses to hold, with the iptables mode's semantics where ipvs can
 * express them (Local traffic policies choose local real servers; no real
 * servers for a Local policy without local endpoints drops). Pure.
 */
export function planIpvs(
  ports: Iterable<ServicePortInfo>,
  endpointsOf: (key: string) => readonly EndpointInfo[] | undefined,
  cfg: IpvsProxyConfig,
): IpvsPlan {
  const scheduler = cfg.scheduler ?? 'rr';
  const vs = new Map<string, VirtualServer>();
  const sets = new Map<IpsetKey, Set<string>>();
  const bound = new Set<string>();
  const healthChecks: HealthCheckPort[] = [];
  let noLocal = 0;
  const member = (k: IpsetKey, m: string) => (sets.get(k) ?? sets.set(k, new Set()).get(k)!).add(m);

  for (const p of ports) {
    const proto = p.protocol.toLowerCase() as VirtualServer['protocol'];
    const all = endpointsOf(p.key) ?? [];
    const local = all.filter((e) => e.nodeName !== '' && e.nodeName === cfg.nodeName);
    const cluster = realServers(all);
    const localRs = realServers(local);
    const hasEndpoints = cluster.some((r) => r.weight > 0);
    const external = p.nodePort > 0 || p.externalIPs.length > 0 || p.loadBalancerIPs.length > 0;
    if (p.externalPolicyLocal && external && !localRs.some((r) => r.weight > 0)) noLocal++;
    const add = (address: string, port: number, rs: RealServer[]) => {
      const key = `${proto}/${address}:${port}`;
      if (!vs.has(key)) vs.set(key, { protocol: proto, address, port, scheduler, persistenceS: p.affinityTimeoutS, realServers: rs });
    };
    const ipPort = (ip: string) => `${ip},${proto}:${p.port}`;

    add(p.clusterIP, p.port, p.internalPolicyLocal ? localRs : cluster);
    bound.add(p.clusterIP);
    member('CLUSTER_IP', ipPort(p.clusterIP));
    if (!hasEndpoints) member('NO_ENDPOINTS', ipPort(p.clusterIP));
    const extRs = p.externalPolicyLocal ? localRs : cluster;
    for (const ip of p.externalIPs) {
      add(ip, p.port, extRs);
      bound.add(ip);
      member('EXTERNAL_IP', ipPort(ip));
      if (!hasEndpoints) member('NO_ENDPOINTS', ipPort(ip));
    }
    for (const ip of p.loadBalancerIPs) {
      add(ip, p.port, extRs);
      bound.add(ip);
      member('LOAD_BALANCER', ipPort(ip));
      if (!hasEndpoints) member('NO_ENDPOINTS', ipPort(ip));
      if (p.loadBalancerSourceRanges.length > 0) {
        member('LB_FW', ipPort(ip));
        for (const src of [...p.loadBalancerSourceRanges, `${ip}/32`]) member('LB_SOURCE_CIDR', `${ipPort(ip)},${src}`);
      }
    }
    if (p.nodePort > 0) {
      for (const nip of cfg.nodeIPs) add(nip, p.nodePort, extRs);
      if (proto !== 'sctp') {
        member(proto === 'tcp' ? 'NODE_PORT_TCP' : 'NODE_PORT_UDP', String(p.nodePort));
        if (p.externalPolicyLocal) member(proto === 'tcp' ? 'NODE_PORT_LOCAL_TCP' : 'NODE_PORT_LOCAL_UDP', String(p.nodePort));
      }
    }
    // A pod that reaches itself through the service must be masqueraded (hairpin).
    for (const r of cluster) member('LOOP_BACK', `${r.address},${proto}:${r.port},${r.address}`);
    if (p.healthCheckNodePort > 0) healthChecks.push({ service: p.service, port: p.healthCheckNodePort, localEndpoints: localRs.filter((r) => r.weight > 0).length });
  }

  const ipsets = (Object.keys(IPSET) as IpsetKey[]).map((k) => ({
    name: IPSET[k].name,
    type: IPSET[k].type,
    options: IPSET[k].options,
    members: [...(sets.get(k) ?? [])].sort(),
  }));
  const virtualServers = [...vs.values()].sort((a, b) => vsKey(a).localeCompare(vsKey(b)));
  return { virtualServers, boundAddresses: [...bound].sort(), ipsets, healthChecks, noLocalEndpoints: noLocal };
}

export function vsKey(v: Pick<VirtualServer, 'protocol' | 'address' | 'port'>): string {
  return `${v.protocol}/${v.address}:${v.port}`;
}

