import type { EndpointInfo } from '../model/endpoints.js';
import type { ServicePortInfo } from '../model/service-port.js';
import { CHAIN, OWNED_CHAIN_RE } from './names.js';
import { TOP_CHAINS, nodePortJumps, renderServiceRules, staticChains, type IptablesProxyConfig, type ServiceRules, type TopChain } from './service-rules.js';

/** What a sync needs from the model: ports grouped by Service, endpoints by port key. */
export interface IptablesRenderModel {
  /** Service "ns/name" -> its ports. */
  services: ReadonlyMap<string, readonly ServicePortInfo[]>;
  endpoints: ReadonlyMap<string, readonly EndpointInfo[]>;
}

/** Rules found on the host (from iptables-save), needed by a full sync. */
export interface ExistingRules {
  /** table -> chain names present. */
  chains: ReadonlyMap<string, ReadonlySet<string>>;
  /** "table/BUILTIN/TARGET" for each jump from a built-in chain to one of ours. */
  jumps: ReadonlySet<string>;
  /**
   * "table/CHAIN" -> normalized rules of our chains. When present, a full sync
   * skips chains that already hold exactly what it would write, so a resync
   * of an unchanged host (or a restart) writes next to nothing.
   */
  rules?: ReadonlyMap<string, readonly string[]>;
}

/** What the previous successful sync wrote; owned by the proxier, opaque to others. */
export interface IptablesRenderState {
  services: Map<string, ServiceRules>;
  /** Top-level chain -> its rules as last written (joined). */
  top: Map<TopChain, string>;
}

export interface IptablesRenderInput {
  model: IptablesRenderModel;
  cfg: IptablesProxyConfig;
  /** Services to re-render, or 'all' for a full sync. */
  changed: ReadonlySet<string> | 'all';
  /** Absent: a full sync is forced. */
  previous?: IptablesRenderState;
  /** Required for a full sync so stale chains are removed and missing jumps added. */
  existing?: ExistingRules;
  /**
   * Split per-service chains into restores of about this many rules. Default 5000.
   * iptables-nft-restore's cost grows faster than linearly with one
   * transaction's size, so many small restores beat one large one.
   */
  maxRulesPerRestore?: number;
}

export interface IptablesRenderResult {
  /** iptables-restore input; '' when nothing changed. Equals `chunks.join('')`. */
  text: string;
  /**
   * The same rules as consecutive restores, each consistent on its own: every
   * Service's chains sit whole in one chunk (endpoint chains before the chains
   * that jump to them), and the last chunk switches the top-level dispatch
   * chains and deletes stale chains, so at every moment a packet sees each
   * Service either as before or as after.
   */
  chunks: string[];
  /** State to keep once `text` has been applied successfully. */
  state: IptablesRenderState;
  full: boolean;
  /** Rule counts of the whole ruleset (not only what was written), per table. */
  ruleCounts: { nat: number; filter: number };
  /** Local endpoint counts behind ETP=Local health-check node ports. */
  healthChecks: Array<{ service: string; port: number; localEndpoints: number }>;
  noLocalEndpoints: number;
}

/** Jumps from built-in chains into ours (kube-proxy's set, with WEFT- chains). */
export const JUMPS: ReadonlyArray<{ table: 'nat' | 'filter'; chain: string; target: string; extra: string; comment: string }> = [
  { table: 'filter', chain: 'INPUT', target: CHAIN.EXTERNAL_SERVICES, extra: '-m conntrack --ctstate NEW', comment: 'weft externally-visible service portals' },
  { table: 'filter', chain: 'FORWARD', target: CHAIN.EXTERNAL_SERVICES, extra: '-m conntrack --ctstate NEW', comment: 'weft externally-visible service portals' },
  { table: 'filter', chain: 'INPUT', target: CHAIN.NODEPORTS, extra: '', comment: 'weft health check service ports' },
  { table: 'filter', chain: 'FORWARD', target: CHAIN.SERVICES, extra: '-m conntrack --ctstate NEW', comment: 'weft service portals' },
  { table: 'filter', chain: 'OUTPUT', target: CHAIN.SERVICES, extra: '-m conntrack --ctstate NEW', comment: 'weft service portals' },
  { table: 'filter', chain: 'FORWARD', target: CHAIN.FORWARD, extra: '', comment: 'weft forwarding rules' },
  { table: 'filter', chain: 'INPUT', target: CHAIN.FIREWALL, extra: '-m conntrack --ctstate NEW', comment: 'weft load balancer firewall' },
  { table: 'filter', chain: 'FORWARD', target: CHAIN.FIREWALL, extra: '-m conntrack --ctstate NEW', comment: 'weft load balancer firewall' },
  { table: 'filter', chain: 'OUTPUT', target: CHAIN.FIREWALL, extra: '-m conntrack --ctstate NEW', comment: 'weft load balancer firewall' },
  { table: 'nat', chain: 'OUTPUT', target: CHAIN.SERVICES, extra: '', comment: 'weft service portals' },
  { table: 'nat', chain: 'PREROUTING', target: CHAIN.SERVICES, extra: '', comment: 'weft service portals' },
  { table: 'nat', chain: 'POSTROUTING', target: CHAIN.POSTROUTING, extra: '', comment: 'weft postrouting rules' },
];

/** Our fixed chains per table (besides the per-service ones). */
export const FIXED_CHAINS = {
  filter: [CHAIN.SERVICES, CHAIN.EXTERNAL_SERVICES, CHAIN.NODEPORTS, CHAIN.FORWARD, CHAIN.FIREWALL, CHAIN.CANARY],
  nat: [CHAIN.SERVICES, CHAIN.NODEPORTS, CHAIN.POSTROUTING, CHAIN.MARK_MASQ, CHAIN.CANARY],
  mangle: [CHAIN.CANARY],
} as const;

class TableWriter {
  readonly decl: string[] = [];
  readonly rules: string[] = [];
  readonly tail: string[] = [];
  /** Returns true when the host already holds `rules` in `name` (full sync diffing). */
  constructor(private readonly holds: (name: string, rules: readonly string[]) => boolean = () => false) {}
  chain(name: string, rules: readonly string[]): void {
    if (this.holds(name, rules)) return;
    this.decl.push(`:${name} - [0:0]`);
    for (const r of rules) this.rules.push(r);
  }
  /** Flush-and-delete: declaring flushes it, -X removes it after the rules that referenced it are rewritten. */
  remove(name: string): void {
    this.decl.push(`:${name} - [0:0]`);
    this.tail.push(`-X ${name}`);
  }
  get empty(): boolean {
    return this.decl.length === 0 && this.rules.length === 0 && this.tail.length === 0;
  }
  emit(table: string, out: string[]): void {
    if (this.empty) return;
    out.push(`*${table}`, ...this.decl, ...this.rules, ...this.tail, 'COMMIT');
  }
}

/**
 * Renders the restore text for a sync. Full sync: every chain the host does
 * not already hold exactly (when `existing.rules` tells), stale chains
 * removed, missing jumps inserted, canaries created. Partial sync: only the
 * chains of changed Services, top-level chains whose content changed, and
 * chains that disappeared - so an unchanged model renders ''. Pure.
 */
export function renderIptables(input: IptablesRenderInput): IptablesRenderResult {
  const { model, cfg } = input;
  const full = input.changed === 'all' || !input.previous;
  const prev = full ? undefined : input.previous!;
  const state: IptablesRenderState = { services: new Map(), top: new Map() };
  const held = full ? input.existing?.rules : undefined;
  const holds = (table: string) => (name: string, rules: readonly string[]) => {
    if (!held) return false;
    const have = held.get(`${table}/${name}`);
    if (!have) return rules.length === 0 && !!input.existing?.chains.get(table)?.has(name);
    return sameNormalized(have, rules);
  };
  const nat = new TableWriter(holds('nat'));
  const filter = new TableWriter(holds('filter'));
  const maxRules = input.maxRulesPerRestore ?? 5000;
  // Unlimited: one restore, one nat transaction (legacy rewrites the whole table per COMMIT).
  const single = !Number.isFinite(maxRules);
  const svcChunks: TableWriter[] = single ? [] : [new TableWriter(holds('nat'))];
  let cur = single ? nat : svcChunks[0]!;
  const serviceDone = () => {
    if (!single && cur.rules.length >= maxRules) svcChunks.push((cur = new TableWriter(holds('nat'))));
  };
  const mangle = new TableWriter(holds('mangle'));
  const changed = full ? undefined : new Set(input.changed as ReadonlySet<string>);
  const epOf = (k: string) => model.endpoints.get(k);

  // Per-service rules: reuse the cached render unless the Service changed.
  const names = [...model.services.keys()].sort();
  // A Service the previous sync never saw is a change whatever the caller says.
  if (changed) for (const name of names) if (!prev!.services.has(name)) changed.add(name);
  for (const name of names) {
    const cached = prev?.services.get(name);
    const rules = cached && !changed!.has(name) ? cached : renderServiceRules(model.services.get(name)!, epOf, cfg);
    state.services.set(name, rules);
  }

  const fixed = staticChains(cfg);
  // Owned chains: write those of changed Services, remove those that disappeared.
  if (full) {
    // Service chains jump to WEFT-MARK-MASQ: it goes first.
    for (const [c, rules] of fixed.nat) cur.chain(c, rules);
    for (const r of state.services.values()) {
      writeServiceChains(cur, r.chains);
      serviceDone();
    }
  } else {
    for (const name of changed!) {
      const before = prev!.services.get(name)?.chains ?? new Map<string, string[]>();
      const after = state.services.get(name)?.chains ?? new Map<string, string[]>();
      const write = new Map([...after].filter(([c, rules]) => !sameLines(before.get(c), rules)));
      writeServiceChains(cur, write);
      serviceDone();
      for (const c of before.keys()) if (!after.has(c)) nat.remove(c);
    }
  }

  // Top-level chains: concatenation of every Service's fragment, plus fixed tails.
  let noLocal = 0;
  const healthChecks: IptablesRenderResult['healthChecks'] = [];
  const topRules = new Map<TopChain, string[]>(TOP_CHAINS.map((t) => [t, []]));
  for (const name of names) {
    const r = state.services.get(name)!;
    for (const t of TOP_CHAINS) for (const line of r.top[t]) topRules.get(t)!.push(line);
    noLocal += r.noLocalEndpoints;
    healthChecks.push(...r.healthChecks);
  }
  topRules.get('nat/WEFT-SERVICES')!.push(...nodePortJumps(cfg));
  for (const t of TOP_CHAINS) {
    const rules = topRules.get(t)!;
    const joined = rules.join('\n');
    state.top.set(t, joined);
    if (!full && prev!.top.get(t) === joined) continue;
    const [table, chain] = t.split('/') as ['nat' | 'filter', string];
    (table === 'nat' ? nat : filter).chain(chain, rules);
  }

  if (full) {
    for (const [c, rules] of fixed.filter) filter.chain(c, rules);
    for (const [w, t] of [[nat, 'nat'], [filter, 'filter'], [mangle, 'mangle']] as const) {
      if (!input.existing?.chains.get(t)?.has(CHAIN.CANARY)) w.chain(CHAIN.CANARY, []);
    }
  }

  const chunks: string[] = [];
  for (const w of svcChunks) {
    const out: string[] = [];
    w.emit('nat', out);
    if (out.length) chunks.push(out.join('\n') + '\n');
  }
  const out: string[] = [];
  filter.emit('filter', out);
  nat.emit('nat', out);
  mangle.emit('mangle', out);
  if (out.length) chunks.push(out.join('\n') + '\n');
  if (full && input.existing) {
    const extra = renderFullSyncFinish(input.existing, state);
    if (extra) chunks.push(extra);
  }

  let natCount = 0;
  let filterCount = 0;
  for (const r of state.services.values()) for (const rules of r.chains.values()) natCount += rules.length;
  for (const [t, rules] of topRules) {
    if (t.startsWith('nat/')) natCount += rules.length;
    else filterCount += rules.length;
  }
  return {
    // Joined on demand: at 10 000 services the text is ~12 MB and the applier only needs the chunks.
    get text() {
      return chunks.join('');
    },
    chunks,
    state,
    full,
    ruleCounts: { nat: natCount, filter: filterCount },
    healthChecks,
    noLocalEndpoints: noLocal,
  };
}

/**
 * The tail of a full sync, which needs to know what the host holds (from
 * iptables-save, read while the rest is rendered and restored): owned
 * chains no Service wants any more are flushed and deleted, and jumps from
 * built-in chains that are missing are inserted. Both come after the
 * top-level chains were rewritten, so nothing references a deleted chain.
 */
export function renderFullSyncFinish(existing: ExistingRules, state: IptablesRenderState): string {
  const wanted = new Set<string>();
  for (const r of state.services.values()) for (const c of r.chains.keys()) wanted.add(c);
  const nat = new TableWriter();
  const filter = new TableWriter();
  for (const c of existing.chains.get('nat') ?? []) if (OWNED_CHAIN_RE.test(c) && !wanted.has(c)) nat.remove(c);
  for (const j of JUMPS) {
    if (existing.jumps.has(`${j.table}/${j.chain}/${j.target}`)) continue;
    (j.table === 'nat' ? nat : filter).rules.push(`-I ${j.chain} ${j.extra ? j.extra + ' ' : ''}-m comment --comment "${j.comment}" -j ${j.target}`);
  }
  const out: string[] = [];
  filter.emit('filter', out);
  nat.emit('nat', out);
  return out.length ? out.join('\n') + '\n' : '';
}

/** Endpoint chains first, so that no chain of the Service jumps to one not yet written. */
function writeServiceChains(w: TableWriter, chains: ReadonlyMap<string, readonly string[]>): void {
  for (const [c, rules] of chains) if (c.startsWith('WEFT-SEP-')) w.chain(c, rules);
  for (const [c, rules] of chains) if (!c.startsWith('WEFT-SEP-')) w.chain(c, rules);
}

/**
 * iptables-save prints a rule slightly differently from how it was written
 * (probabilities with 11 decimals, quotes only where needed); compare in a
 * form both agree on.
 */
export function normalizeRule(line: string): string {
  return line
    // The kernel keeps the probability as a 31-bit fraction and save prints 11 digits of it.
    .replace(/--probability (\S+)/, (_m, p: string) => `--probability ${Number(p).toFixed(9)}`)
    .replace(/--or-mark (\S+)/, '--set-xmark $1/$1')
    .replace(/--xor-mark (\S+)/, '--set-xmark $1/0x0')
    .replace(/ -j REJECT --reject-with icmp-port-unreachable$/, ' -j REJECT')
    .replace(/"/g, '');
}

function sameNormalized(have: readonly string[], want: readonly string[]): boolean {
  if (have.length !== want.length) return false;
  for (let i = 0; i < have.length; i++) if (have[i] !== normalizeRule(want[i]!)) return false;
  return true;
}

function sameLines(a: readonly string[] | undefined, b: readonly string[]): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Groups a model snapshot's ports by Service. */
export function groupByService(ports: Iterable<ServicePortInfo>): Map<string, ServicePortInfo[]> {
  const m = new Map<string, ServicePortInfo[]>();
  for (const p of ports) {
    const list = m.get(p.service);
    if (list) list.push(p);
    else m.set(p.service, [p]);
  }
  for (const list of m.values()) list.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return m;
}

/** Parses `iptables-save` output into chain names and jumps from built-in chains to ours. */
export function parseSave(text: string): ExistingRules {
  const chains = new Map<string, Set<string>>();
  const jumps = new Set<string>();
  const rules = new Map<string, string[]>();
  let table = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      table = line.slice(1).trim();
      if (!chains.has(table)) chains.set(table, new Set());
    } else if (line.startsWith(':')) {
      chains.get(table)?.add(line.slice(1).split(' ')[0]!);
    } else if (line.startsWith('-A ')) {
      const chain = line.split(' ')[1]!;
      if (chain.startsWith('WEFT-')) {
        const key = `${table}/${chain}`;
        const list = rules.get(key);
        if (list) list.push(normalizeRule(line));
        else rules.set(key, [normalizeRule(line)]);
        continue;
      }
      const m = / -j (WEFT-[A-Z-]+)(\s|$)/.exec(line);
      if (m && /^[A-Z]+$/.test(chain)) jumps.add(`${table}/${chain}/${m[1]}`);
    }
  }
  return { chains, jumps, rules };
}
