import { DEFAULT_MASQ_MARK } from '../iptables/service-rules.js';
import { IPSET, vsKey, type IpsetSpec, type IpvsPlan, type IpvsProxyConfig, type RealServer, type VirtualServer } from './plan.js';

const PROTO_FLAG: Record<VirtualServer['protocol'], string> = { tcp: '-t', udp: '-u', sctp: '--sctp-service' };

function vsArgs(v: VirtualServer): string {
  return `${PROTO_FLAG[v.protocol]} ${v.address}:${v.port} -s ${v.scheduler}${v.persistenceS > 0 ? ` -p ${v.persistenceS}` : ''}`;
}
function rsArgs(v: VirtualServer, r: RealServer): string {
  return `${PROTO_FLAG[v.protocol]} ${v.address}:${v.port} -r ${r.address}:${r.port} -m -w ${r.weight}`;
}

/**
 * `ipvsadm-restore` commands that turn `current` into `desired`: add (-A/-a),
 * edit (-E/-e: scheduler, persistence, weight) and delete (-D/-d) only what
 * differs, so established connections to unchanged real servers are untouched.
 * Only virtual servers on `owned` addresses are ever deleted. Pure.
 */
export function diffIpvs(current: readonly VirtualServer[], desired: readonly VirtualServer[], owned: ReadonlySet<string>): string {
  const out: string[] = [];
  const cur = new Map(current.map((v) => [vsKey(v), v]));
  const want = new Map(desired.map((v) => [vsKey(v), v]));
  for (const [k, v] of cur) {
    if (!want.has(k) && owned.has(v.address)) out.push(`-D ${PROTO_FLAG[v.protocol]} ${v.address}:${v.port}`);
  }
  for (const [k, v] of want) {
    const c = cur.get(k);
    if (!c) out.push(`-A ${vsArgs(v)}`);
    else if (c.scheduler !== v.scheduler || c.persistenceS !== v.persistenceS) out.push(`-E ${vsArgs(v)}`);
    const have = new Map((c?.realServers ?? []).map((r) => [`${r.address}:${r.port}`, r]));
    const need = new Set(v.realServers.map((r) => `${r.address}:${r.port}`));
    for (const r of v.realServers) {
      const h = have.get(`${r.address}:${r.port}`);
      if (!h) out.push(`-a ${rsArgs(v, r)}`);
      else if (h.weight !== r.weight) out.push(`-e ${rsArgs(v, r)}`);
    }
    for (const [id, r] of have) if (!need.has(id)) out.push(`-d ${PROTO_FLAG[v.protocol]} ${v.address}:${v.port} -r ${r.address}:${r.port}`);
  }
  return out.length ? out.join('\n') + '\n' : '';
}

/** Parses `ipvsadm -S -n` output back into virtual servers. */
export function parseIpvsadmSave(text: string): VirtualServer[] {
  const out = new Map<string, VirtualServer>();
  for (const line of text.split('\n')) {
    const m = /^-([Aa]) (-t|-u|--sctp-service) (\S+):(\d+)(.*)$/.exec(line.trim());
    if (!m) continue;
    const protocol = m[2] === '-t' ? 'tcp' : m[2] === '-u' ? 'udp' : 'sctp';
    const key = `${protocol}/${m[3]}:${m[4]}`;
    const rest = m[5]!;
    if (m[1] === 'A') {
      out.set(key, { protocol, address: m[3]!, port: Number(m[4]), scheduler: /-s (\S+)/.exec(rest)?.[1] ?? 'wlc', persistenceS: Number(/-p (\d+)/.exec(rest)?.[1] ?? 0), realServers: [] });
    } else {
      const r = /-r (\S+):(\d+).*?-w (\d+)/.exec(rest);
      if (r) out.get(key)?.realServers.push({ address: r[1]!, port: Number(r[2]), weight: Number(r[3]) });
    }
  }
  return [...out.values()];
}

/**
 * `ipset restore` text: each set refilled atomically through a temporary set
 * and `swap`, so the rules that match on it never see it half-filled.
 */
export function renderIpsets(sets: readonly IpsetSpec[]): string {
  const out: string[] = [];
  for (const s of sets) {
    const opts = s.options ? ` ${s.options}` : '';
    const tmp = `${s.name.slice(0, 26)}-TMP`;
    out.push(`create ${s.name} ${s.type}${opts} -exist`, `create ${tmp} ${s.type}${opts} -exist`, `flush ${tmp}`);
    for (const m of s.members) out.push(`add ${tmp} ${m}`);
    out.push(`swap ${tmp} ${s.name}`, `destroy ${tmp}`);
  }
  return out.join('\n') + '\n';
}

/** ipvs mode's own chains (distinct from iptables mode's so either mode can clean the other). */
export const IPVS_CHAIN = {
  SERVICES: 'WEFT-IPVS-SERVICES',
  NODE_PORT: 'WEFT-IPVS-NODE-PORT',
  LOAD_BALANCER: 'WEFT-IPVS-LB',
  FIREWALL: 'WEFT-IPVS-FW',
  MARK_MASQ: 'WEFT-IPVS-MARK-MASQ',
  POSTROUTING: 'WEFT-IPVS-POSTROUTING',
  FILTER: 'WEFT-IPVS-FILTER',
} as const;

/** Jumps from built-in chains into ipvs mode's chains. */
export const IPVS_JUMPS = [
  { table: 'nat', chain: 'PREROUTING', target: IPVS_CHAIN.SERVICES },
  { table: 'nat', chain: 'OUTPUT', target: IPVS_CHAIN.SERVICES },
  { table: 'nat', chain: 'POSTROUTING', target: IPVS_CHAIN.POSTROUTING },
  { table: 'filter', chain: 'INPUT', target: IPVS_CHAIN.FILTER },
  { table: 'filter', chain: 'FORWARD', target: IPVS_CHAIN.FILTER },
  { table: 'filter', chain: 'OUTPUT', target: IPVS_CHAIN.FILTER },
] as const;

/**
 * The few iptables rules ipvs needs (kube-proxy's ipvs set, WEFT- names):
 * masquerade off-cluster traffic to ClusterIPs, node ports (except ETP
 * Local ones) and hairpin flows; source ranges for LB IPs; REJECT for
 * service addresses without endpoints. Static: membership lives in ipsets.
 * `existingJumps` ("table/CHAIN/TARGET") are not inserted twice.
 */
export function renderIpvsIptables(cfg: IpvsProxyConfig, existingJumps: ReadonlySet<string> = new Set()): string {
  const mark = cfg.masqueradeMark ?? DEFAULT_MASQ_MARK;
  const C = IPVS_CHAIN;
  const set = (s: { name: string }, dir: string) => `-m set --match-set ${s.name} ${dir}`;
  const srcCheck = cfg.masqueradeAll ? '' : cfg.clusterCIDR ? ` ! -s ${cfg.clusterCIDR}` : null;
  const nat = [
    '*nat',
    ...Object.values(C).filter((c) => c !== C.FILTER).map((c) => `:${c} - [0:0]`),
    ...(srcCheck !== null ? [`-A ${C.SERVICES} ${set(IPSET.CLUSTER_IP, 'dst,dst')}${srcCheck} -j ${C.MARK_MASQ}`] : []),
    `-A ${C.SERVICES} ${set(IPSET.EXTERNAL_IP, 'dst,dst')} -j ${C.MARK_MASQ}`,
    `-A ${C.SERVICES} ${set(IPSET.LOAD_BALANCER, 'dst,dst')} -j ${C.LOAD_BALANCER}`,
    `-A ${C.SERVICES} -m addrtype --dst-type LOCAL -j ${C.NODE_PORT}`,
    `-A ${C.SERVICES} ${set(IPSET.CLUSTER_IP, 'dst,dst')} -j ACCEPT`,
    `-A ${C.LOAD_BALANCER} ${set(IPSET.LB_FW, 'dst,dst')} -j ${C.FIREWALL}`,
    `-A ${C.LOAD_BALANCER} -j ${C.MARK_MASQ}`,
    `-A ${C.FIREWALL} ${set(IPSET.LB_SOURCE_CIDR, 'dst,dst,src')} -j RETURN`,
    // Not from an allowed range: not masqueraded here, dropped by the filter chain's mark check.
    `-A ${C.FIREWALL} -j MARK --or-mark 0x8000`,
    `-A ${C.NODE_PORT} -p tcp ${set(IPSET.NODE_PORT_LOCAL_TCP, 'dst')} -j RETURN`,
    `-A ${C.NODE_PORT} -p udp ${set(IPSET.NODE_PORT_LOCAL_UDP, 'dst')} -j RETURN`,
    `-A ${C.NODE_PORT} -p tcp ${set(IPSET.NODE_PORT_TCP, 'dst')} -j ${C.MARK_MASQ}`,
    `-A ${C.NODE_PORT} -p udp ${set(IPSET.NODE_PORT_UDP, 'dst')} -j ${C.MARK_MASQ}`,
    `-A ${C.MARK_MASQ} -j MARK --or-mark ${mark}`,
    `-A ${C.POSTROUTING} ${set(IPSET.LOOP_BACK, 'dst,dst,src')} -j MASQUERADE`,
    `-A ${C.POSTROUTING} -m mark ! --mark ${mark}/${mark} -j RETURN`,
    `-A ${C.POSTROUTING} -j MARK --xor-mark ${mark}`,
    `-A ${C.POSTROUTING} -j MASQUERADE --random-fully`,
    ...IPVS_JUMPS.filter((j) => j.table === 'nat' && !existingJumps.has(`nat/${j.chain}/${j.target}`)).map((j) => `-I ${j.chain} -j ${j.target}`),
    'COMMIT',
  ];
  const filter = [
    '*filter',
    `:${C.FILTER} - [0:0]`,
    `-A ${C.FILTER} -m conntrack --ctstate NEW ${set(IPSET.NO_ENDPOINTS, 'dst,dst')} -j REJECT`,
    `-A ${C.FILTER} -m mark --mark 0x8000/0x8000 -j DROP`,
    ...IPVS_JUMPS.filter((j) => j.table === 'filter' && !existingJumps.has(`filter/${j.chain}/${j.target}`)).map((j) => `-I ${j.chain} -j ${j.target}`),
    'COMMIT',
  ];
  return [...nat, ...filter].join('\n') + '\n';
}

/** Plan as one stable text (golden tests): ipvsadm commands from nothing, ipsets, addresses. */
export function planText(plan: IpvsPlan): string {
  return [
    '# ipvsadm-restore',
    diffIpvs([], plan.virtualServers, new Set()).trimEnd(),
    '# ipsets',
    ...plan.ipsets.filter((s) => s.members.length).map((s) => `${s.name} ${s.type}: ${s.members.join(' ')}`),
    '# addresses on the dummy device',
    plan.boundAddresses.join(' '),
    '',
  ].join('\n');
}
