import { usableEndpoints, endpointString, type EndpointInfo } from '../model/endpoints.js';
import type { ServicePortInfo } from '../model/service-port.js';
import { CHAIN, portHash, sepChain } from './names.js';

/** Node-level settings the rules depend on. */
export interface IptablesProxyConfig {
  /** This node's name: endpoints with this nodeName are local. */
  nodeName: string;
  /** Pod network; traffic from outside it to a ClusterIP is masqueraded. Empty: no such rule. */
  clusterCIDR?: string;
  /** Masquerade all traffic to ClusterIPs. Default false. */
  masqueradeAll?: boolean;
  /** Masquerade mark bit as hex. Default 0x2000 (bit 13; kube-proxy uses 0x4000). */
  masqueradeMark?: string;
  /** CIDRs whose local addresses answer node ports. Empty: every local address. */
  nodePortAddresses?: readonly string[];
  /**
   * Answer node ports on 127.0.0.1 from the node itself (kube-proxy's
   * --iptables-localhost-nodeports; needs net.ipv4.conf.all.route_localnet=1).
   * Default true. Only in effect when nodePortAddresses is empty or covers 127.0.0.1.
   */
  localhostNodePorts?: boolean;
}

const LOOPBACK = '127.0.0.0/8';

function ipNum(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

/** True when `cidr` ("a.b.c.d/n", validated) and 127.0.0.0/8 share an address. */
function overlapsLoopback(cidr: string): boolean {
  const [ip, len] = cidr.split('/') as [string, string];
  const bits = Math.min(Number(len), 8);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return ((ipNum(ip) & mask) >>> 0) === ((ipNum('127.0.0.0') & mask) >>> 0);
}

/** True when `cidr` lies inside 127.0.0.0/8. */
function insideLoopback(cidr: string): boolean {
  return Number(cidr.split('/')[1]) >= 8 && cidr.startsWith('127.');
}

/**
 * Whether 127.0.0.1:<nodePort> is answered: the flag is on (default) and the
 * node port addresses include loopback (empty = every local address), as in
 * kube-proxy. Decides both the rules and whether route_localnet is set.
 */
export function localhostNodePortsOn(cfg: IptablesProxyConfig): boolean {
  if (cfg.localhostNodePorts === false) return false;
  const cidrs = cfg.nodePortAddresses ?? [];
  return cidrs.length === 0 || cidrs.some(overlapsLoopback);
}

export const DEFAULT_MASQ_MARK = '0x2000';

/**
 * The rules one Service contributes: lines for the shared top-level chains
 * (in service order) and the chains it owns. Cached per Service between
 * syncs so a partial sync re-renders only changed Services.
 */
export interface ServiceRules {
  /** Lines for the shared top-level chains; absent when the Service has none there. */
  top: Partial<Record<TopChain, string[]>>;
  /** nat chains owned by this Service, in write order: name -> rules. */
  chains: Map<string, string[]>;
  /** Endpoints with no usable local endpoint for ETP Local (metrics). */
  noLocalEndpoints: number;
  /** Local endpoint count per health-check node port. */
  healthChecks: Array<{ service: string; port: number; localEndpoints: number }>;
}

export type TopChain =
  | 'nat/WEFT-SERVICES'
  | 'nat/WEFT-NODEPORTS'
  | 'filter/WEFT-SERVICES'
  | 'filter/WEFT-EXTERNAL-SERVICES'
  | 'filter/WEFT-NODEPORTS'
  | 'filter/WEFT-PROXY-FIREWALL';

export const TOP_CHAINS: TopChain[] = [
  'filter/WEFT-SERVICES',
  'filter/WEFT-EXTERNAL-SERVICES',
  'filter/WEFT-NODEPORTS',
  'filter/WEFT-PROXY-FIREWALL',
  'nat/WEFT-SERVICES',
  'nat/WEFT-NODEPORTS',
];

const q = (s: string) => `"${s}"`;

function dest(p: ServicePortInfo, ip: string, port = p.port): string {
  const proto = p.protocol.toLowerCase();
  return `-d ${ip}/32 -p ${proto} -m ${proto} --dport ${port}`;
}

function dport(p: ServicePortInfo, port: number): string {
  const proto = p.protocol.toLowerCase();
  return `-p ${proto} -m ${proto} --dport ${port}`;
}

/**
 * Renders one Service (all its ports) with kube-proxy's iptables semantics.
 * Pure: same input, same lines. Options are written in the order and form
 * iptables-save prints them, so a full sync can tell an unchanged chain.
 */
export function renderServiceRules(
  ports: readonly ServicePortInfo[],
  endpointsOf: (key: string) => readonly EndpointInfo[] | undefined,
  cfg: IptablesProxyConfig,
): ServiceRules {
  const out: ServiceRules = {
    top: {},
    chains: new Map(),
    noLocalEndpoints: 0,
    healthChecks: [],
  };
  for (const p of ports) renderPort(p, endpointsOf(p.key) ?? [], cfg, out);
  // Kept until the Service changes: flat strings, not the concatenation trees templates build.
  for (const lines of Object.values(out.top)) flattenAll(lines);
  for (const rules of out.chains.values()) flattenAll(rules);
  return out;
}

/**
 * V8 builds a template string as a tree of pieces (~30 bytes per node) and
 * flattens it only when something reads it; 80 000 cached rules kept as
 * trees cost tens of MB and slow every garbage collection. Converting to a
 * number makes V8 flatten the string in place (the trick the flatstr package uses).
 */
function addTop(out: ServiceRules, chain: TopChain, line: string): void {
  const lines = out.top[chain];
  if (lines) lines.push(line);
  else out.top[chain] = [line];
}

function flattenAll(lines: string[]): void {
  for (const l of lines) Number(l);
}

function renderPort(p: ServicePortInfo, all: readonly EndpointInfo[], cfg: IptablesProxyConfig, out: ServiceRules): void {
  const key = p.key;
  const clusterEps = usableEndpoints(all);
  const localEps = usableEndpoints(all.filter((e) => e.nodeName !== '' && e.nodeName === cfg.nodeName));
  const external = p.nodePort > 0 || p.externalIPs.length > 0 || p.loadBalancerIPs.length > 0;
  const h = portHash(key, p.protocol);
  const svc = `WEFT-SVC-${h}`;
  const svl = `WEFT-SVL-${h}`;
  const ext = `WEFT-EXT-${h}`;
  const fw = `WEFT-FW-${h}`;
  // Each endpoint's "ip:port" and chain name, computed once for the jumps and the chains.
  const sepOf = new Map<EndpointInfo, { ep: string; sep: string }>();
  const sep = (e: EndpointInfo) => {
    let s = sepOf.get(e);
    if (!s) {
      const ep = endpointString(e);
      sepOf.set(e, (s = { ep, sep: sepChain(key, p.protocol, ep) }));
    }
    return s;
  };

  const hasEndpoints = clusterEps.length > 0;
  // kube: the cluster chain also serves the ETP=Local short-circuit for pod and host traffic.
  const usesCluster = hasEndpoints && (!p.internalPolicyLocal || external);
  const usesLocal = localEps.length > 0 && (p.internalPolicyLocal || p.externalPolicyLocal);
  const internalChain = p.internalPolicyLocal ? svl : svc;
  const externalPolicyChain = p.externalPolicyLocal ? svl : svc;
  const hasInternalEndpoints = p.internalPolicyLocal ? localEps.length > 0 : hasEndpoints;
  const hasExternalEndpoints = p.externalPolicyLocal ? localEps.length > 0 : hasEndpoints;
  const usesExt = external && hasEndpoints;
  const usesFw = usesExt && p.loadBalancerIPs.length > 0 && p.loadBalancerSourceRanges.length > 0;
  const lbChain = usesFw ? fw : ext;

  const noEpComment = q(`${key} has no endpoints`);
  const noLocalComment = q(`${key} has no local endpoints`);
  const [intTarget, intComment] = !hasEndpoints ? ['REJECT', noEpComment] : ['DROP', noLocalComment];
  const [extTarget, extComment] = !hasEndpoints ? ['REJECT', noEpComment] : ['DROP', noLocalComment];
  if (p.externalPolicyLocal && external && localEps.length === 0) out.noLocalEndpoints++;

  // ClusterIP.
  if (hasInternalEndpoints) {
    addTop(out, 'nat/WEFT-SERVICES', `-A WEFT-SERVICES ${dest(p, p.clusterIP)} -m comment --comment ${q(`${key} cluster IP`)} -j ${internalChain}`);
  } else {
    addTop(out, 'filter/WEFT-SERVICES', `-A WEFT-SERVICES ${dest(p, p.clusterIP)} -m comment --comment ${intComment} -j ${intTarget}`);
  }
  // externalIPs.
  for (const ip of p.externalIPs) {
    if (hasEndpoints) addTop(out, 'nat/WEFT-SERVICES', `-A WEFT-SERVICES ${dest(p, ip)} -m comment --comment ${q(`${key} external IP`)} -j ${ext}`);
    if (!hasExternalEndpoints) {
      addTop(out, 'filter/WEFT-EXTERNAL-SERVICES', `-A WEFT-EXTERNAL-SERVICES ${dest(p, ip)} -m comment --comment ${extComment} -j ${extTarget}`);
    }
  }
  // LoadBalancer ingress IPs.
  for (const ip of p.loadBalancerIPs) {
    if (hasEndpoints) addTop(out, 'nat/WEFT-SERVICES', `-A WEFT-SERVICES ${dest(p, ip)} -m comment --comment ${q(`${key} loadbalancer IP`)} -j ${lbChain}`);
    if (usesFw) {
      // Sources the FW chain did not accept are not DNATed and land here.
      addTop(out, 'filter/WEFT-PROXY-FIREWALL', `-A WEFT-PROXY-FIREWALL ${dest(p, ip)} -m comment --comment ${q(`${key} traffic not accepted by ${fw}`)} -j DROP`);
    }
    if (!hasExternalEndpoints) {
      addTop(out, 'filter/WEFT-EXTERNAL-SERVICES', `-A WEFT-EXTERNAL-SERVICES ${dest(p, ip)} -m comment --comment ${extComment} -j ${extTarget}`);
    }
  }
  // NodePort.
  if (p.nodePort > 0) {
    if (hasEndpoints) addTop(out, 'nat/WEFT-NODEPORTS', `-A WEFT-NODEPORTS ${dport(p, p.nodePort)} -m comment --comment ${q(key)} -j ${ext}`);
    if (!hasExternalEndpoints) {
      addTop(out, 'filter/WEFT-EXTERNAL-SERVICES', 
        `-A WEFT-EXTERNAL-SERVICES -p ${p.protocol.toLowerCase()} -m addrtype --dst-type LOCAL -m ${p.protocol.toLowerCase()} --dport ${p.nodePort} -m comment --comment ${extComment} -j ${extTarget}`,
      );
    }
  }
  // Health-check node port (ETP Local): open it in filter for hosts whose INPUT policy drops.
  if (p.healthCheckNodePort > 0) {
    addTop(out, 'filter/WEFT-NODEPORTS', 
      `-A WEFT-NODEPORTS -p tcp -m tcp --dport ${p.healthCheckNodePort} -m comment --comment ${q(`${key} health check node port`)} -j ACCEPT`,
    );
    out.healthChecks.push({ service: p.service, port: p.healthCheckNodePort, localEndpoints: localEps.length });
  }

  if (!hasEndpoints) return;
  const chains = out.chains;
  if (usesCluster) {
    const rules: string[] = [];
    const cip = dest(p, p.clusterIP);
    if (cfg.masqueradeAll) rules.push(`-A ${svc} ${cip} -m comment --comment ${q(`${key} cluster IP`)} -j WEFT-MARK-MASQ`);
    else if (cfg.clusterCIDR) rules.push(`-A ${svc} ! -s ${cfg.clusterCIDR} ${cip} -m comment --comment ${q(`${key} cluster IP`)} -j WEFT-MARK-MASQ`);
    rules.push(...endpointJumps(svc, p, clusterEps, sep));
    chains.set(svc, rules);
  }
  if (usesLocal) chains.set(svl, endpointJumps(svl, p, localEps, sep));
  if (usesExt) {
    const rules: string[] = [];
    if (!p.externalPolicyLocal) {
      rules.push(`-A ${ext} -m comment --comment ${q(`masquerade traffic for ${key} external destinations`)} -j WEFT-MARK-MASQ`);
      rules.push(`-A ${ext} -j ${svc}`);
    } else {
      // Pods and the node itself reach ETP=Local services through all endpoints (kubernetes 75262).
      if (cfg.clusterCIDR) rules.push(`-A ${ext} -s ${cfg.clusterCIDR} -m comment --comment ${q(`pod traffic for ${key} external destinations`)} -j ${svc}`);
      rules.push(`-A ${ext} -m addrtype --src-type LOCAL -m comment --comment ${q(`masquerade LOCAL traffic for ${key} external destinations`)} -j WEFT-MARK-MASQ`);
      rules.push(`-A ${ext} -m addrtype --src-type LOCAL -m comment --comment ${q(`route LOCAL traffic for ${key} external destinations`)} -j ${svc}`);
      if (usesLocal) rules.push(`-A ${ext} -j ${externalPolicyChain}`);
    }
    chains.set(ext, rules);
  }
  if (usesFw) {
    const rules: string[] = [];
    for (const src of p.loadBalancerSourceRanges) rules.push(`-A ${fw} -s ${src} -m comment --comment ${q(`${key} loadbalancer IP`)} -j ${ext}`);
    // The LB may hairpin traffic back with its own address as source.
    for (const ip of p.loadBalancerIPs) rules.push(`-A ${fw} -s ${ip}/32 -m comment --comment ${q(`${key} loadbalancer IP`)} -j ${ext}`);
    chains.set(fw, rules);
  }
  const proto = p.protocol.toLowerCase();
  const comment = q(key);
  const writeSep = (e: EndpointInfo) => {
    const { ep, sep: name } = sep(e);
    if (chains.has(name)) return;
    const affinity = p.affinityTimeoutS > 0 ? ` -m recent --set --name ${name} --mask 255.255.255.255 --rsource` : '';
    chains.set(name, [
      `-A ${name} -s ${e.ip}/32 -m comment --comment ${comment} -j WEFT-MARK-MASQ`,
      `-A ${name} -p ${proto} -m ${proto} -m comment --comment ${comment}${affinity} -j DNAT --to-destination ${ep}`,
    ]);
  };
  if (usesCluster) for (const e of clusterEps) writeSep(e);
  if (usesLocal) for (const e of localEps) writeSep(e);
}

/** Affinity checks first, then random choice: endpoint i of n gets probability 1/(n-i). */
function endpointJumps(chain: string, p: ServicePortInfo, eps: readonly EndpointInfo[], sepOf: (e: EndpointInfo) => { ep: string; sep: string }): string[] {
  const rules: string[] = [];
  const seps = eps.map(sepOf);
  if (p.affinityTimeoutS > 0) {
    for (const { ep, sep } of seps) {
      rules.push(
        `-A ${chain} -m comment --comment ${q(`${p.key} -> ${ep}`)} -m recent --rcheck --seconds ${p.affinityTimeoutS} --reap --name ${sep} --mask 255.255.255.255 --rsource -j ${sep}`,
      );
    }
  }
  const n = seps.length;
  for (let i = 0; i < n; i++) {
    const { ep, sep } = seps[i]!;
    const stat = i < n - 1 ? ` -m statistic --mode random --probability ${(1 / (n - i)).toFixed(10)}` : '';
    rules.push(`-A ${chain} -m comment --comment ${q(`${p.key} -> ${ep}`)}${stat} -j ${sep}`);
  }
  return rules;
}

/** Rules of the fixed chains that do not depend on Services. */
export function staticChains(cfg: IptablesProxyConfig): { nat: Map<string, string[]>; filter: Map<string, string[]> } {
  const mark = cfg.masqueradeMark ?? DEFAULT_MASQ_MARK;
  const nat = new Map<string, string[]>([
    [
      CHAIN.POSTROUTING,
      [
        `-A ${CHAIN.POSTROUTING} -m mark ! --mark ${mark}/${mark} -j RETURN`,
        // Clear the bit so a re-traversal (e.g. another netns on a veth) is not masqueraded twice.
        `-A ${CHAIN.POSTROUTING} -j MARK --xor-mark ${mark}`,
        `-A ${CHAIN.POSTROUTING} -m comment --comment "weft service traffic requiring SNAT" -j MASQUERADE --random-fully`,
      ],
    ],
    [CHAIN.MARK_MASQ, [`-A ${CHAIN.MARK_MASQ} -j MARK --or-mark ${mark}`]],
  ]);
  const filter = new Map<string, string[]>([
    [
      CHAIN.FORWARD,
      [
        `-A ${CHAIN.FORWARD} -m comment --comment "weft forwarding rules" -m mark --mark ${mark}/${mark} -j ACCEPT`,
        `-A ${CHAIN.FORWARD} -m comment --comment "weft forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      ],
    ],
  ]);
  return { nat, filter };
}

/** The last rule of nat WEFT-SERVICES: hand locally addressed traffic to the node port chain. */
export function nodePortJumps(cfg: IptablesProxyConfig): string[] {
  const comment = '-m comment --comment "weft service nodeports; must be the last rule in this chain"';
  const cidrs = cfg.nodePortAddresses ?? [];
  // Off: loopback destinations are left alone (without route_localnet they could not be routed to a pod anyway).
  const noLoopback = cfg.localhostNodePorts === false;
  if (cidrs.length === 0) return [`-A WEFT-SERVICES ${noLoopback ? `! -d ${LOOPBACK} ` : ''}${comment} -m addrtype --dst-type LOCAL -j WEFT-NODEPORTS`];
  return cidrs.filter((c) => !(noLoopback && insideLoopback(c))).map((c) => `-A WEFT-SERVICES -d ${c} ${comment} -m addrtype --dst-type LOCAL -j WEFT-NODEPORTS`);
}

/**
 * The tail of filter WEFT-PROXY-FIREWALL (jumped to for NEW connections from
 * INPUT, FORWARD and OUTPUT). With route_localnet on, the kernel would accept
 * packets for 127.0.0.0/8 arriving from outside (CVE-2020-8558): drop those
 * that are not ours (DNATed) or part of a known connection, as kube-proxy does.
 */
export function firewallTail(cfg: IptablesProxyConfig): string[] {
  if (!localhostNodePortsOn(cfg)) return [];
  return [`-A ${CHAIN.FIREWALL} ! -s ${LOOPBACK} -d ${LOOPBACK} -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`];
}
