import type { HealthCheckPort } from '../backend.js';
import { endpointString, usableEndpoints, type EndpointInfo } from '../model/endpoints.js';
import type { ServicePortInfo } from '../model/service-port.js';
import type { IptablesProxyConfig } from '../iptables/service-rules.js';
import { FIXED, MAP, affinitySet, endpointsMap, pickChain, portChains, sepChain, type MapName } from './names.js';

/** Node-level settings: the same as iptables mode's (node name, cluster CIDR, mark, node port addresses). */
export type NftProxyConfig = IptablesProxyConfig;

/** One verdict-map element a Service contributes. */
export interface NftElement {
  map: MapName;
  /** e.g. "10.96.0.10 . tcp . 80" or "tcp . 30080". */
  key: string;
  /** e.g. "goto svc-...", "goto reject-chain", "drop". */
  value: string;
  /**
   * For a ClusterIP's endpoint entries: the id ("map key") of its
   * service-ips element. They belong to whoever owns that element, so they
   * need no bookkeeping of their own (20 000 of them at 10 000 Services).
   */
  parent?: string;
}

/**
 * What one Service (all its ports) contributes to the table: chains it owns,
 * affinity sets, and elements of the shared verdict maps. Cached per Service
 * between syncs so that a partial sync renders only changed Services.
 */
export interface NftServiceRules {
  /** Owned chains in write order: name -> rule bodies. */
  chains: Map<string, string[]>;
  /** Owned affinity sets: name -> declaration ("{ type ...; }"). */
  sets: Map<string, string>;
  elements: NftElement[];
  /** Endpoint IPs DNATed to by this Service (shared set: a pod reaching itself is masqueraded). */
  hairpin: string[];
  /** "proto/n" of the shared pick-<proto>-<n> chains this Service's ClusterIP dispatch uses. */
  picks: string[];
  noLocalEndpoints: number;
  healthChecks: HealthCheckPort[];
  /**
   * Ports that are plain ClusterIPs (cluster endpoints, no affinity, not
   * external): kept as references to the model's own data, their elements
   * made only when written (`plainElements`) or diffed (`expandRules`). Most
   * Services are like this; keeping 30 000 element objects alive instead
   * made a 10 000-Service full sync spend more time in the GC than in nft.
   */
  plain: PlainPort[];
}

export interface PlainPort {
  /** "clusterIP . proto . port": the service-ips key. */
  key: string;
  clusterIP: string;
  port: number;
  proto: string;
  /** The port's endpoints as the model holds them (all conditions). */
  all: readonly EndpointInfo[];
}

const REJECT = `goto ${FIXED.REJECT}`;

function ipPortKey(ip: string, p: ServicePortInfo, port = p.port): string {
  return `${ip} . ${p.protocol.toLowerCase()} . ${port}`;
}

/**
 * Renders one Service with the iptables mode's semantics (kube-proxy's):
 * dispatch through verdict maps instead of a rule walk. Pure.
 */
export function renderNftService(
  ports: readonly ServicePortInfo[],
  endpointsOf: (key: string) => readonly EndpointInfo[] | undefined,
  cfg: NftProxyConfig,
): NftServiceRules {
  // Plain ClusterIP Services own no chains or sets: they share empty maps (10 000 Services render
  // in tens of milliseconds only when little is allocated per Service).
  const out: NftServiceRules = { chains: NONE as Map<string, string[]>, sets: NONE as Map<string, string>, elements: EMPTY, hairpin: EMPTY, picks: EMPTY, noLocalEndpoints: 0, healthChecks: EMPTY, plain: EMPTY };
  for (const p of ports) renderPort(p, endpointsOf(p.key) ?? [], cfg, out);
  return out;
}

const NONE = new Map<string, never>();
/** Shared empty list: copied on the first `add` (most Services fill only `plain`). */
const EMPTY: never[] = [];

type ListKey = 'elements' | 'hairpin' | 'picks' | 'healthChecks' | 'plain';
function add<K extends ListKey>(out: NftServiceRules, key: K, value: NftServiceRules[K][number]): void {
  if ((out[key] as unknown[]) === EMPTY) (out[key] as unknown[]) = [];
  (out[key] as unknown[]).push(value);
}

function addChain(out: NftServiceRules, name: string, rules: string[]): void {
  if ((out.chains as Map<string, unknown>) === NONE) out.chains = new Map();
  out.chains.set(name, rules);
}
function addSet(out: NftServiceRules, name: string, decl: string): void {
  if ((out.sets as Map<string, unknown>) === NONE) out.sets = new Map();
  out.sets.set(name, decl);
}

function renderPort(p: ServicePortInfo, all: readonly EndpointInfo[], cfg: NftProxyConfig, out: NftServiceRules): void {
  const proto = p.protocol.toLowerCase();
  const clusterEps = usableEndpoints(all);
  const needLocal = p.internalPolicyLocal || p.externalPolicyLocal || p.healthCheckNodePort > 0;
  const localEps = needLocal ? usableEndpoints(all.filter((e) => e.nodeName !== '' && e.nodeName === cfg.nodeName)) : [];
  const external = p.nodePort > 0 || p.externalIPs.length > 0 || p.loadBalancerIPs.length > 0;
  // Chain names cost a hash; plain ClusterIP services (most of them) never need one.
  let names: ReturnType<typeof portChains> | undefined;
  const chainNames = () => (names ??= portChains(p));

  const hasEndpoints = clusterEps.length > 0;
  // As in iptables mode: the cluster chain also serves ETP=Local's short-circuit for pods and the host.
  const usesCluster = hasEndpoints && (!p.internalPolicyLocal || external);
  const usesLocal = localEps.length > 0 && (p.internalPolicyLocal || p.externalPolicyLocal);
  const hasInternalEndpoints = p.internalPolicyLocal ? localEps.length > 0 : hasEndpoints;
  const hasExternalEndpoints = p.externalPolicyLocal ? localEps.length > 0 : hasEndpoints;
  const usesExt = external && hasEndpoints;
  const usesFw = usesExt && p.loadBalancerIPs.length > 0 && p.loadBalancerSourceRanges.length > 0;
  // No endpoints at all: refuse at once; endpoints elsewhere only (Local policy): drop.
  const noEndpointVerdict = hasEndpoints ? 'drop' : REJECT;
  if (p.externalPolicyLocal && external && localEps.length === 0) out.noLocalEndpoints++;
  const el = (map: MapName, key: string, value: string, parent?: string) => add(out, 'elements', parent ? { map, key, value, parent } : { map, key, value });

  // Plain ClusterIP dispatch (cluster endpoints, no affinity) needs no chain of its own: the shared
  // pick-<proto>-<n> chain draws an index and looks the endpoint up in service-endpoints-<proto>, so an endpoint
  // change rewrites map elements only, never rules (nft reloads every rule of the table first).
  const picked = usesCluster && !p.internalPolicyLocal && p.affinityTimeoutS === 0;
  if (picked && !external) {
    add(out, 'plain', { key: ipPortKey(p.clusterIP, p), clusterIP: p.clusterIP, port: p.port, proto, all });
    return;
  }

  // ClusterIP.
  if (picked) {
    const key = ipPortKey(p.clusterIP, p);
    el(MAP.SERVICE_IPS, key, `goto ${pickChain(proto, clusterEps.length)}`);
    add(out, 'picks', `${proto}/${clusterEps.length}`);
    const parent = `${MAP.SERVICE_IPS} ${key}`;
    clusterEps.forEach((e, i) => el(endpointsMap(proto), `${p.clusterIP} . ${p.port} . ${i}`, `${e.ip} . ${e.port}`, parent));
  } else if (hasInternalEndpoints) {
    el(MAP.SERVICE_IPS, ipPortKey(p.clusterIP, p), `goto ${p.internalPolicyLocal ? chainNames().svl : chainNames().svc}`);
  }
  else el(MAP.NO_ENDPOINT_SERVICES, ipPortKey(p.clusterIP, p), noEndpointVerdict);
  // externalIPs and LoadBalancer ingress IPs enter through the external chain.
  for (const ip of external ? [...p.externalIPs, ...p.loadBalancerIPs] : []) {
    if (hasEndpoints) el(MAP.SERVICE_IPS, ipPortKey(ip, p), `goto ${chainNames().ext}`);
    if (!hasExternalEndpoints) el(MAP.NO_ENDPOINT_SERVICES, ipPortKey(ip, p), noEndpointVerdict);
  }
  if (usesFw) for (const ip of p.loadBalancerIPs) el(MAP.FIREWALL_IPS, ipPortKey(ip, p), `goto ${chainNames().fw}`);
  // NodePort.
  if (p.nodePort > 0) {
    if (hasEndpoints) el(MAP.SERVICE_NODEPORTS, `${proto} . ${p.nodePort}`, `goto ${chainNames().ext}`);
    if (!hasExternalEndpoints) el(MAP.NO_ENDPOINT_NODEPORTS, `${proto} . ${p.nodePort}`, noEndpointVerdict);
  }
  if (p.healthCheckNodePort > 0) add(out, 'healthChecks', { service: p.service, port: p.healthCheckNodePort, localEndpoints: localEps.length });

  if (!hasEndpoints) return;
  const { svc, svl, ext, fw } = chainNames();
  // The service chain is still needed for external entry points (they go through the ext chain).
  if (usesCluster && (!picked || usesExt)) {
    const rules: string[] = [];
    const cip = `ip daddr ${p.clusterIP} ${proto} dport ${p.port}`;
    if (cfg.masqueradeAll) rules.push(`${cip} jump ${FIXED.MARK_MASQ}`);
    else if (cfg.clusterCIDR) rules.push(`${cip} ip saddr != ${cfg.clusterCIDR} jump ${FIXED.MARK_MASQ}`);
    rules.push(...endpointDispatch(p, clusterEps));
    addChain(out, svc, rules);
  }
  if (usesLocal) addChain(out, svl, endpointDispatch(p, localEps));
  if (usesExt) {
    const rules: string[] = [];
    if (!p.externalPolicyLocal) {
      rules.push(`jump ${FIXED.MARK_MASQ}`, `goto ${svc}`);
    } else {
      // Pods and the node itself reach ETP=Local services through all endpoints (kubernetes 75262).
      if (cfg.clusterCIDR) rules.push(`ip saddr ${cfg.clusterCIDR} goto ${svc}`);
      rules.push(`fib saddr type local jump ${FIXED.MARK_MASQ}`, `fib saddr type local goto ${svc}`);
      // Without local endpoints nothing matches: not DNATed, dropped by no-endpoint-services after DNAT.
      if (usesLocal) rules.push(`goto ${svl}`);
    }
    addChain(out, ext, rules);
  }
  if (usesFw) {
    // Checked before DNAT; the LB may hairpin traffic back with its own address as source.
    const allowed = [...p.loadBalancerSourceRanges, ...p.loadBalancerIPs].join(', ');
    addChain(out, fw, [`ip saddr != { ${allowed} } drop`]);
  }
  const used = new Map<string, EndpointInfo>();
  if (usesCluster) for (const e of clusterEps) used.set(endpointString(e), e);
  if (usesLocal) for (const e of localEps) used.set(endpointString(e), e);
  for (const e of used.values()) {
    if (!out.hairpin.includes(e.ip)) add(out, 'hairpin', e.ip);
    if (p.affinityTimeoutS <= 0) continue;
    // Affinity needs to remember the choice, so each endpoint gets a chain that records the client.
    const eps = endpointString(e);
    const set = affinitySet(p, eps, p.affinityTimeoutS);
    addSet(out, set, `{ type ipv4_addr; flags dynamic,timeout; timeout ${p.affinityTimeoutS}s; }`);
    addChain(out, sepChain(p, eps), [`update @${set} { ip saddr }`, `meta l4proto ${proto} dnat to ${eps}`]);
  }
}

/**
 * Affinity lookups first (a client seen recently goes back to its endpoint),
 * then a uniform random pick: endpoint i of n is taken with probability
 * 1/(n-i). Without affinity the DNAT is inline (dnat is a terminal
 * statement), so a Service costs one chain, not one per endpoint: nft loads
 * every chain of the table before each transaction, so the chain count sets
 * the price of a one-endpoint change. One rule per endpoint rather than
 * `numgen random mod n vmap { ... }`: each such vmap is an anonymous set and
 * the kernel's loop check walks every set of the table on each jump (a
 * 10 000-service load took 60 s instead of 1 s; docs/proxy-nftables.md).
 */
function endpointDispatch(p: ServicePortInfo, eps: readonly EndpointInfo[]): string[] {
  const rules: string[] = [];
  const proto = p.protocol.toLowerCase();
  const aff = p.affinityTimeoutS > 0;
  if (aff) {
    for (const e of eps) rules.push(`ip saddr @${affinitySet(p, endpointString(e), p.affinityTimeoutS)} goto ${sepChain(p, endpointString(e))}`);
  }
  eps.forEach((e, i) => {
    const n = eps.length - i;
    const pick = n > 1 ? `numgen random mod ${n} == 0 ` : '';
    rules.push(aff ? `${pick}goto ${sepChain(p, endpointString(e))}` : `${pick}meta l4proto ${proto} dnat to ${endpointString(e)}`);
  });
  return rules;
}

/**
 * Calls `emit` for each element of a plain port, endpoints after the
 * ClusterIP element they belong to; returns the endpoints used.
 */
/** Receives a plain port's elements (an object, not a callback: one stable call target for the optimising compiler). */
export interface ElementSink {
  emit(map: MapName, key: string, value: string): void;
}

export function plainElements(pp: PlainPort, sink: ElementSink): readonly EndpointInfo[] {
  const eps = usableEndpoints(pp.all);
  sink.emit(MAP.SERVICE_IPS, pp.key, `goto ${pickChain(pp.proto, eps.length)}`);
  for (let i = 0; i < eps.length; i++) sink.emit(endpointsMap(pp.proto), `${pp.clusterIP} . ${pp.port} . ${i}`, `${eps[i]!.ip} . ${eps[i]!.port}`);
  return eps;
}

/** The rules with plain ports spelled out as elements, hairpin IPs and picks (for diffs of a few Services). */
export function expandRules(r: NftServiceRules): NftServiceRules {
  if (r.plain.length === 0) return r;
  const out: NftServiceRules = { ...r, elements: [...r.elements], hairpin: [...r.hairpin], picks: [...r.picks], plain: [] };
  for (const pp of r.plain) {
    const parent = `${MAP.SERVICE_IPS} ${pp.key}`;
    const eps = plainElements(pp, { emit: (map, key, value) => void out.elements.push(map === MAP.SERVICE_IPS ? { map, key, value } : { map, key, value, parent }) });
    out.picks.push(`${pp.proto}/${eps.length}`);
    for (const e of eps) if (!out.hairpin.includes(e.ip)) out.hairpin.push(e.ip);
  }
  return out;
}
