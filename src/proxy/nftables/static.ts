import { DEFAULT_MASQ_MARK } from '../iptables/service-rules.js';
import { FIXED, HAIRPIN_SET, MAP, endpointsMap, pickChain } from './names.js';
import type { NftProxyConfig } from './service-rules.js';

/** A base chain: where it hooks into netfilter. */
export interface BaseChain {
  name: string;
  type: 'filter' | 'nat';
  hook: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';
  /** Numeric (named priorities are refused for some hooks by nft 1.0). */
  priority: number;
}

/**
 * Base chains and their priorities (kube-proxy's nftables layout, except
 * that the no-endpoint checks run after DNAT like iptables mode's filter
 * rules, so pods short-circuited to an ETP=Local service are not dropped):
 * - firewall-* at -110 (before DNAT at -100): loadBalancerSourceRanges see the LB IP;
 * - nat-* at dstnat (-100) / srcnat (100);
 * - filter-* at filter (0), after DNAT: only traffic nothing DNATed is
 *   rejected (no endpoints) or dropped (no local endpoints).
 */
export const BASE_CHAINS: readonly BaseChain[] = [
  { name: 'firewall-prerouting', type: 'filter', hook: 'prerouting', priority: -110 },
  { name: 'firewall-output', type: 'filter', hook: 'output', priority: -110 },
  { name: 'nat-prerouting', type: 'nat', hook: 'prerouting', priority: -100 },
  { name: 'nat-output', type: 'nat', hook: 'output', priority: -100 },
  { name: 'nat-postrouting', type: 'nat', hook: 'postrouting', priority: 100 },
  { name: 'filter-input', type: 'filter', hook: 'input', priority: 0 },
  { name: 'filter-forward', type: 'filter', hook: 'forward', priority: 0 },
  { name: 'filter-output', type: 'filter', hook: 'output', priority: 0 },
];

export function baseChainDecl(c: BaseChain): string {
  return `{ type ${c.type} hook ${c.hook} priority ${c.priority}; policy accept; }`;
}

/** Rules of the fixed chains (base and regular); they depend only on the node config. */
export function fixedChains(cfg: NftProxyConfig): Map<string, string[]> {
  const mark = cfg.masqueradeMark ?? DEFAULT_MASQ_MARK;
  const dispatch = `ip daddr . meta l4proto . th dport`;
  // Node ports answer on local addresses (optionally only some), never on 127/8 (needs route_localnet: kubernetes 90259).
  const npAddrs = (cfg.nodePortAddresses ?? []).length ? `ip daddr { ${cfg.nodePortAddresses!.join(', ')} } ` : '';
  const local = `${npAddrs}fib daddr type local ip daddr != 127.0.0.0/8`;
  return new Map<string, string[]>([
    ['firewall-prerouting', [`ct state new ${dispatch} vmap @${MAP.FIREWALL_IPS}`]],
    ['firewall-output', [`ct state new ${dispatch} vmap @${MAP.FIREWALL_IPS}`]],
    ['nat-prerouting', [`jump ${FIXED.SERVICES}`]],
    ['nat-output', [`jump ${FIXED.SERVICES}`]],
    ['nat-postrouting', [`jump ${FIXED.MASQUERADING}`]],
    ['filter-input', [`ct state new jump ${FIXED.SERVICE_ENDPOINTS_CHECK}`, `ct state new jump ${FIXED.NODEPORT_ENDPOINTS_CHECK}`]],
    ['filter-forward', [`ct state new jump ${FIXED.SERVICE_ENDPOINTS_CHECK}`]],
    ['filter-output', [`ct state new jump ${FIXED.SERVICE_ENDPOINTS_CHECK}`]],
    [FIXED.SERVICES, [`${dispatch} vmap @${MAP.SERVICE_IPS}`, `${local} meta l4proto . th dport vmap @${MAP.SERVICE_NODEPORTS}`]],
    [FIXED.MARK_MASQ, [`meta mark set meta mark | ${mark}`]],
    [
      FIXED.MASQUERADING,
      [
        // Hairpin: the DNAT sent a pod to itself; without SNAT it would answer itself directly.
        `ct status dnat ip saddr . ip daddr @${HAIRPIN_SET} masquerade fully-random`,
        `meta mark & ${mark} == 0 return`,
        // Clear the bit so that a second traversal (another netns behind a veth) is not masqueraded twice.
        `meta mark set meta mark ^ ${mark}`,
        `masquerade fully-random`,
      ],
    ],
    [FIXED.SERVICE_ENDPOINTS_CHECK, [`${dispatch} vmap @${MAP.NO_ENDPOINT_SERVICES}`]],
    [FIXED.NODEPORT_ENDPOINTS_CHECK, [`${local} meta l4proto . th dport vmap @${MAP.NO_ENDPOINT_NODEPORTS}`]],
    [FIXED.REJECT, ['reject']],
  ]);
}

/**
 * The shared chain for plain ClusterIP dispatch to `n` endpoints of one
 * protocol: masquerade traffic from outside the cluster (as the service
 * chains do), then DNAT to the endpoint at a random index of this
 * ClusterIP:port's entries.
 */
export function pickChainRules(proto: string, n: number, cfg: NftProxyConfig): [string, string[]] {
  const rules: string[] = [];
  if (cfg.masqueradeAll) rules.push(`jump ${FIXED.MARK_MASQ}`);
  else if (cfg.clusterCIDR) rules.push(`ip saddr != ${cfg.clusterCIDR} jump ${FIXED.MARK_MASQ}`);
  rules.push(`meta l4proto ${proto} dnat ip to ip daddr . th dport . numgen random mod ${n} map @${endpointsMap(proto)}`);
  return [pickChain(proto, n), rules];
}
