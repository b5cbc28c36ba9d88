import type { EndpointInfo } from '../model/endpoints.js';
import type { ServicePortInfo } from '../model/service-port.js';
import { CHAIN, OWNED_CHAIN_RE } from './names.js';
import { TOP_CHAINS, firewallTail, nodePortJumps, renderServiceRules, staticChains, type IptablesProxyConfig, type ServiceRules, type TopChain } from './service-rules.js';

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
  /**
   * "table/CHAIN" of one of our chains -> rules of someone else's that jump
   * (or goto) to it. Such a chain cannot be deleted (the kernel says busy):
   * it is flushed and kept instead.
   */
  foreignRefs?: ReadonlyMap<string, readonly string[]>;
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
  /** Told of each stale chain that is flushed but kept because rules of someone else's jump to it. */
  onKeptChain?: (table: string, chain: string, refs: readonly string[]) => void;
}

/** What a render tells besides its text. */
export interface IptablesRenderSummary {
  /** State to keep once the text has been applied successfully. */
  state: IptablesRenderState;
  full: boolean;
  /** Rule counts of the whole ruleset (not only what was written), per table. */
  ruleCounts: { nat: number; filter: number };
  /** Local endpoint counts behind ETP=Local health-check node ports. */
  healthChecks: Array<{ service: string; port: number; localEndpoints: number }>;
  noLocalEndpoints: number;
}

export interface IptablesRenderResult extends IptablesRenderSummary {
  /** iptables-restore input; '' when nothing changed. Equals `chunks.join('')`. */
  text: string;
  /**
   * The same rules as consecutive restores, each consistent on its own: every
   * Service's chains sit whole in one chunk (endpoint chains before the chains
   * that jump to them), and the last chunks switch the top-level dispatch
   * chains and delete stale chains, so at every moment a packet sees each
   * Service either as before or as after.
   */
  chunks: string[];
}

const TOP_WRITE_ORDER: readonly TopChain[] = [...TOP_CHAINS].sort((a, b) => (a === 'nat/WEFT-NODEPORTS' ? -1 : b === 'nat/WEFT-NODEPORTS' ? 1 : 0));

/** Yielded by renderIptablesPieces where one consistent restore (a chunk) ends. */
export const CHUNK_END = '';

/** Pieces are handed to the restore tool at about this size, so it parses while we render. */
const PIECE_BYTES = 256 * 1024;

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

/** A host without any weft-proxy chain or jump (what a full sync may assume before iptables-save answers). */
export const NOTHING_OURS: ExistingRules = { chains: new Map(), jumps: new Set(), rules: new Map() };

/**
 * True when `existing` holds none of weft-proxy's chains or jumps, so that a
 * render against it equals one against NOTHING_OURS (other tools' chains,
 * weftd's WEFT-POSTRTG included, do not matter).
 */
export function holdsNoneOfOurs(existing: ExistingRules): boolean {
  for (const [table, chains] of existing.chains) for (const c of chains) if (isOurChain(table, c)) return false;
  return !JUMPS.some((j) => existing.jumps.has(`${j.table}/${j.chain}/${j.target}`));
}

/** A chain weft-proxy made (per-Service or fixed) in `table`; never weftd's or another tool's. */
export function isOurChain(table: string, chain: string): boolean {
  return OWNED_CHAIN_RE.test(chain) || ((FIXED_CHAINS as Record<string, readonly string[]>)[table] ?? []).includes(chain);
}

/** Our fixed chains per table (besides the per-service ones). */
export const FIXED_CHAINS = {
  filter: [CHAIN.SERVICES, CHAIN.EXTERNAL_SERVICES, CHAIN.NODEPORTS, CHAIN.FORWARD, CHAIN.FIREWALL, CHAIN.CANARY],
  nat: [CHAIN.SERVICES, CHAIN.NODEPORTS, CHAIN.POSTROUTING, CHAIN.MARK_MASQ, CHAIN.CANARY],
  mangle: [CHAIN.CANARY],
} as const;

/**
 * One table's block of restore text, written as it is produced: a chain's
 * declaration (which creates or flushes it) right before its rules, chains
 * removed with -X after everything else in the block. The `*table` header
 * is written with the first line, so a block with nothing in it is ''.
 */
class TableWriter {
  /** Lines not yet taken (joined once: no rope of 80 000 concatenations). */
  private lines: string[] = [];
  private bytes = 0;
  private tail: string[] = [];
  private opened = false;
  /** Rules in the current block. */
  rules = 0;
  /** `holds` is true when the host already has exactly `rules` in `name` (full sync diffing). */
  constructor(
    private readonly table: string,
    private readonly holds: (name: string, rules: readonly string[]) => boolean = () => false,
  ) {}
  chain(name: string, rules: readonly string[]): void {
    if (this.holds(name, rules)) return;
    this.open();
    this.lines.push(`:${name} - [0:0]`);
    for (const r of rules) {
      this.lines.push(r);
      this.bytes += r.length;
    }
    this.rules += rules.length;
  }
  rule(line: string): void {
    this.open();
    this.lines.push(line);
    this.rules++;
  }
  /** Flush-and-delete: declaring flushes it, -X removes it after the rules that referenced it are rewritten. */
  remove(name: string): void {
    this.open();
    this.lines.push(`:${name} - [0:0]`);
    this.tail.push(`-X ${name}`);
  }
  /** Roughly the bytes not yet taken. */
  get pending(): number {
    return this.bytes;
  }
  /** Text written so far (the block stays open). */
  take(): string {
    if (this.lines.length === 0) return '';
    const t = this.lines.join('\n') + '\n';
    this.lines = [];
    this.bytes = 0;
    return t;
  }
  /** The rest of the block with its COMMIT; '' when the block is empty. */
  close(): string {
    if (!this.opened) return '';
    for (const l of this.tail) this.lines.push(l);
    this.lines.push('COMMIT');
    const t = this.take();
    this.tail = [];
    this.opened = false;
    this.rules = 0;
    return t;
  }
  private open(): void {
    if (this.opened) return;
    this.opened = true;
    this.lines.push(`*${this.table}`);
  }
}

/**
 * Renders the restore text for a sync, all at once (tests, the fake, and
 * callers that want one string). See renderIptablesPieces.
 */
export function renderIptables(input: IptablesRenderInput): IptablesRenderResult {
  const gen = renderIptablesPieces(input);
  const chunks: string[] = [];
  let cur = '';
  for (;;) {
    const step = gen.next();
    if (step.done) {
      if (cur) chunks.push(cur);
      return {
        ...step.value,
        chunks,
        // Joined on demand: at 10 000 services the text is ~12 MB and appliers only need the chunks.
        get text() {
          return chunks.join('');
        },
      };
    }
    if (step.value === CHUNK_END) {
      if (cur) chunks.push(cur);
      cur = '';
    } else cur += step.value;
  }
}

/**
 * Renders the restore text for a sync as pieces, produced while the caller
 * streams them into iptables-restore. Full sync: every chain the host does
 * not already hold exactly (when `existing.rules` tells), stale chains
 * removed, missing jumps inserted, canaries created. Partial sync: only the
 * chains of changed Services, top-level chains whose content changed, and
 * chains that disappeared - so an unchanged model renders nothing.
 * CHUNK_END marks where one consistent restore ends (see IptablesRenderResult.chunks).
 * Pure: the same input yields the same pieces.
 */
export function* renderIptablesPieces(input: IptablesRenderInput): Generator<string, IptablesRenderSummary> {
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
  const nat = new TableWriter('nat', holds('nat'));
  const filter = new TableWriter('filter', holds('filter'));
  const mangle = new TableWriter('mangle', holds('mangle'));
  const maxRules = input.maxRulesPerRestore ?? 5000;
  // Unlimited: one restore, one nat transaction (legacy rewrites the whole table per COMMIT).
  const single = !Number.isFinite(maxRules);
  const svc = single ? nat : new TableWriter('nat', holds('nat'));
  /** After each Service: close the chunk when it is big enough, else hand over what is pending. */
  function* serviceDone(): Generator<string> {
    if (!single && svc.rules >= maxRules) {
      yield svc.close();
      yield CHUNK_END;
    } else if (svc.pending >= PIECE_BYTES) yield svc.take();
  }
  const changed = full ? undefined : new Set(input.changed as ReadonlySet<string>);
  const epOf = (k: string) => model.endpoints.get(k);

  // Service chains jump to WEFT-MARK-MASQ: it goes first.
  const fixed = staticChains(cfg);
  if (full) for (const [c, rules] of fixed.nat) svc.chain(c, rules);

  // Per-service rules: reuse the cached render unless the Service changed.
  // A full sync writes each Service's chains as soon as they are rendered.
  const names = [...model.services.keys()].sort();
  // A Service the previous sync never saw is a change whatever the caller says.
  if (changed) for (const name of names) if (!prev!.services.has(name)) changed.add(name);
  for (const name of names) {
    const cached = prev?.services.get(name);
    const rules = cached && !changed!.has(name) ? cached : renderServiceRules(model.services.get(name)!, epOf, cfg);
    state.services.set(name, rules);
    if (full) {
      writeServiceChains(svc, rules.chains);
      yield* serviceDone();
    }
  }
  if (!full) {
    // Owned chains: write those of changed Services, remove those that disappeared.
    for (const name of changed!) {
      const before = prev!.services.get(name)?.chains ?? new Map<string, string[]>();
      const after = state.services.get(name)?.chains ?? new Map<string, string[]>();
      const write = new Map([...after].filter(([c, rules]) => !sameLines(before.get(c), rules)));
      writeServiceChains(svc, write);
      yield* serviceDone();
      for (const c of before.keys()) if (!after.has(c)) nat.remove(c);
    }
  }
  if (!single) {
    const last = svc.close();
    if (last) yield last;
    yield CHUNK_END;
  }

  // Top-level chains: concatenation of every Service's fragment, plus fixed tails.
  let noLocal = 0;
  const healthChecks: IptablesRenderSummary['healthChecks'] = [];
  const topRules = new Map<TopChain, string[]>(TOP_CHAINS.map((t) => [t, []]));
  for (const name of names) {
    const r = state.services.get(name)!;
    for (const t of TOP_CHAINS) for (const line of r.top[t] ?? []) topRules.get(t)!.push(line);
    noLocal += r.noLocalEndpoints;
    for (const h of r.healthChecks) healthChecks.push(h);
  }
  for (const line of nodePortJumps(cfg)) topRules.get('nat/WEFT-SERVICES')!.push(line);
  for (const line of firewallTail(cfg)) topRules.get('filter/WEFT-PROXY-FIREWALL')!.push(line);
  // WEFT-SERVICES jumps to WEFT-NODEPORTS: the target is written first.
  for (const t of TOP_WRITE_ORDER) {
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
  yield nat.close();
  yield filter.close();
  yield mangle.close();
  yield CHUNK_END;
  if (full && input.existing) {
    yield renderFullSyncFinish(input.existing, state, input.onKeptChain);
    yield CHUNK_END;
  }

  let natCount = 0;
  let filterCount = 0;
  for (const r of state.services.values()) for (const rules of r.chains.values()) natCount += rules.length;
  for (const [t, rules] of topRules) {
    if (t.startsWith('nat/')) natCount += rules.length;
    else filterCount += rules.length;
  }
  return { state, full, ruleCounts: { nat: natCount, filter: filterCount }, healthChecks, noLocalEndpoints: noLocal };
}

/**
 * The tail of a full sync, which needs to know what the host holds (from
 * iptables-save, read while the rest is rendered and restored): owned
 * chains no Service wants any more are flushed and deleted, and jumps from
 * built-in chains that are missing are inserted. Both come after the
 * top-level chains were rewritten, so nothing references a deleted chain.
 */
export function renderFullSyncFinish(existing: ExistingRules, state: IptablesRenderState, onKept?: RenderOnKept): string {
  const nat = new TableWriter('nat');
  const filter = new TableWriter('filter');
  const owned = [...(existing.chains.get('nat') ?? [])].filter((c) => OWNED_CHAIN_RE.test(c));
  if (owned.length > 0) {
    const wanted = new Set<string>();
    for (const r of state.services.values()) for (const c of r.chains.keys()) wanted.add(c);
    for (const c of owned) {
      if (wanted.has(c)) continue;
      const refs = existing.foreignRefs?.get(`nat/${c}`);
      if (refs?.length) {
        // Deleting it would fail the whole block (busy) on every sync: empty it, keep it.
        if (!existing.rules || existing.rules.has(`nat/${c}`)) nat.chain(c, []);
        onKept?.('nat', c, refs);
      } else nat.remove(c);
    }
  }
  for (const j of JUMPS) {
    if (existing.jumps.has(`${j.table}/${j.chain}/${j.target}`)) continue;
    (j.table === 'nat' ? nat : filter).rule(`-I ${j.chain} ${j.extra ? j.extra + ' ' : ''}-m comment --comment "${j.comment}" -j ${j.target}`);
  }
  return filter.close() + nat.close();
}

type RenderOnKept = (table: string, chain: string, refs: readonly string[]) => void;

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
  // Tested before replacing: a full resync normalizes 80 000 rules, most with none of these.
  if (line.includes('--probability ')) {
    // The kernel keeps the probability as a 31-bit fraction and save prints 11 digits of it.
    line = line.replace(/--probability (\S+)/, (_m, p: string) => `--probability ${Number(p).toFixed(9)}`);
  }
  if (line.includes('-mark ')) line = line.replace(/--or-mark (\S+)/, '--set-xmark $1/$1').replace(/--xor-mark (\S+)/, '--set-xmark $1/0x0');
  if (line.includes(' -j REJECT --reject-with icmp-port-unreachable')) line = line.replace(/ -j REJECT --reject-with icmp-port-unreachable$/, ' -j REJECT');
  return line.includes('"') ? line.replaceAll('"', '') : line;
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
  const foreignRefs = new Map<string, string[]>();
  const refer = (table: string, target: string, line: string) => {
    const key = `${table}/${target}`;
    const list = foreignRefs.get(key);
    if (list) list.push(line);
    else foreignRefs.set(key, [line]);
  };
  let table = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      table = line.slice(1).trim();
      if (!chains.has(table)) chains.set(table, new Set());
    } else if (line.startsWith(':')) {
      chains.get(table)?.add(line.slice(1).split(' ')[0]!);
    } else if (line.startsWith('-A ')) {
      const end = line.indexOf(' ', 3);
      const chain = line.slice(3, end < 0 ? undefined : end);
      const ours = chain.startsWith('WEFT-') && isOurChain(table, chain);
      if (ours) {
        const key = `${table}/${chain}`;
        const list = rules.get(key);
        if (list) list.push(normalizeRule(line));
        else rules.set(key, [normalizeRule(line)]);
        continue;
      }
      if (!line.includes('WEFT-')) continue;
      const m = / -[jg] (WEFT-[A-Z0-9-]+)(\s|$)/.exec(line);
      if (!m || !isOurChain(table, m[1]!)) continue;
      const builtin = /^[A-Z]+$/.test(chain);
      const mine = builtin && JUMPS.some((j) => j.table === table && j.chain === chain && j.target === m[1] && line.includes(j.comment));
      if (builtin) jumps.add(`${table}/${chain}/${m[1]}`);
      if (!mine) refer(table, m[1]!, line);
    }
  }
  return { chains, jumps, rules, foreignRefs };
}
