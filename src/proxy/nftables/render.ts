import type { HealthCheckPort } from '../backend.js';
import type { EndpointInfo } from '../model/endpoints.js';
import type { ServicePortInfo } from '../model/service-port.js';
import { HAIRPIN_SET, HAIRPIN_SET_DECL, MAP, MAP_TYPES, NFT_FAMILY, NFT_TABLE, OWNED_CHAIN_RE, OWNED_SET_RE, type MapName } from './names.js';
import { renderNftService, type NftProxyConfig, type NftServiceRules } from './service-rules.js';
import { BASE_CHAINS, baseChainDecl, fixedChains } from './static.js';

const T = `${NFT_FAMILY} ${NFT_TABLE}`;
const MAPS = Object.values(MAP) as MapName[];

/** What a sync reads from the model: ports grouped by Service, endpoints by port key. */
export interface NftRenderModel {
  services: ReadonlyMap<string, readonly ServicePortInfo[]>;
  endpoints: ReadonlyMap<string, readonly EndpointInfo[]>;
}

/** Objects found in the kernel's table (a full sync removes the stale ones). */
export interface NftExisting {
  chains: ReadonlySet<string>;
  sets: ReadonlySet<string>;
}

/** One map element as last written, and the Service that owns it. */
interface ElementState {
  value: string;
  owner: string;
}

/** What the last successful sync wrote; kept by the proxier. */
export interface NftRenderState {
  services: Map<string, NftServiceRules>;
  /** "map key" -> element. */
  elements: Map<string, ElementState>;
  /** Endpoint IP -> how many Services DNAT to it (hairpin set elements are shared). */
  hairpin: Map<string, number>;
  ruleCount: number;
}

export interface NftRenderInput {
  model: NftRenderModel;
  cfg: NftProxyConfig;
  /** Services to re-render, or 'all' for a full sync. */
  changed: ReadonlySet<string> | 'all';
  /** Absent: full sync. */
  previous?: NftRenderState;
  /** What the table holds now; absent on a full sync means "the table does not exist". */
  existing?: NftExisting;
}

export interface NftRenderResult {
  /** `nft -f` input, one transaction; '' when nothing changed. */
  text: string;
  state: NftRenderState;
  full: boolean;
  /** Map keys claimed by two Services; the first (by name) keeps them. */
  conflicts: string[];
  ruleCounts: Record<string, number>;
  healthChecks: HealthCheckPort[];
  noLocalEndpoints: number;
}

/**
 * Commands of one transaction, grouped so that every reference resolves in
 * order: declarations, chain contents, element deletions, element additions,
 * then stale chains flushed and deleted (after nothing points at them).
 */
class Tx {
  readonly decl: string[] = [];
  readonly rules: string[] = [];
  readonly flushMaps: string[] = [];
  readonly delElems = new Map<MapName, string[]>();
  readonly addElems = new Map<MapName, string[]>();
  readonly delHairpin: string[] = [];
  readonly addHairpin: string[] = [];
  readonly staleFlush: string[] = [];
  readonly staleDelete: string[] = [];

  chain(name: string, rules: readonly string[], opts: { add?: boolean; flush?: boolean }): void {
    if (opts.add) this.decl.push(`add chain ${T} ${name}`);
    if (opts.flush) this.rules.push(`flush chain ${T} ${name}`);
    for (const r of rules) this.rules.push(`add rule ${T} ${name} ${r}`);
  }
  removeChain(name: string): void {
    this.staleFlush.push(`flush chain ${T} ${name}`);
    this.staleDelete.push(`delete chain ${T} ${name}`);
  }
  removeSet(name: string): void {
    this.staleDelete.push(`delete set ${T} ${name}`);
  }
  addElement(map: MapName, key: string, value: string): void {
    push(this.addElems, map, `${key} : ${value}`);
  }
  deleteElement(map: MapName, key: string): void {
    push(this.delElems, map, key);
  }
  text(): string {
    const out = [...this.decl, ...this.rules, ...this.flushMaps];
    for (const m of MAPS) if (this.delElems.has(m)) out.push(`delete element ${T} ${m} { ${this.delElems.get(m)!.join(', ')} }`);
    for (const m of MAPS) if (this.addElems.has(m)) out.push(`add element ${T} ${m} { ${this.addElems.get(m)!.join(', ')} }`);
    if (this.delHairpin.length) out.push(`delete element ${T} ${HAIRPIN_SET} { ${this.delHairpin.map((ip) => `${ip} . ${ip}`).join(', ')} }`);
    if (this.addHairpin.length) out.push(`add element ${T} ${HAIRPIN_SET} { ${this.addHairpin.map((ip) => `${ip} . ${ip}`).join(', ')} }`);
    out.push(...this.staleFlush, ...this.staleDelete);
    return out.length ? out.join('\n') + '\n' : '';
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

const elemId = (map: string, key: string) => `${map} ${key}`;

/**
 * Renders one sync as a single `nft -f` transaction. Full: every object
 * (idempotent `add`s, chains flushed and refilled, maps flushed and refilled,
 * stale chains and sets removed) - affinity sets keep their entries. Partial:
 * only changed Services' chains, their map elements, and what they no longer
 * need - an unchanged model renders ''. Pure.
 */
export function renderNftables(input: NftRenderInput): NftRenderResult {
  const full = input.changed === 'all' || !input.previous;
  return full ? renderFull(input) : renderPartial(input, input.previous!, input.changed as ReadonlySet<string>);
}

function renderService(input: NftRenderInput, name: string): NftServiceRules | undefined {
  const ports = input.model.services.get(name);
  return ports ? renderNftService(ports, (k) => input.model.endpoints.get(k), input.cfg) : undefined;
}

function renderFull(input: NftRenderInput): NftRenderResult {
  const { cfg, existing } = input;
  const tx = new Tx();
  const state: NftRenderState = { services: new Map(), elements: new Map(), hairpin: new Map(), ruleCount: 0 };
  const conflicts: string[] = [];
  const has = (c: string) => existing?.chains.has(c) ?? false;

  tx.decl.push(`add table ${T} { comment "weft-proxy service rules (nftables mode)"; }`);
  for (const m of MAPS) tx.decl.push(`add map ${T} ${m} { type ${MAP_TYPES[m]}; }`);
  tx.decl.push(`add set ${T} ${HAIRPIN_SET} ${HAIRPIN_SET_DECL}`);
  for (const b of BASE_CHAINS) tx.decl.push(`add chain ${T} ${b.name} ${baseChainDecl(b)}`);
  const fixed = fixedChains(cfg);
  for (const [c, rules] of fixed) {
    tx.chain(c, rules, { add: !BASE_CHAINS.some((b) => b.name === c), flush: has(c) });
    state.ruleCount += rules.length;
  }

  const wantedChains = new Set<string>();
  const wantedSets = new Set<string>();
  for (const name of [...input.model.services.keys()].sort()) {
    const r = renderService(input, name)!;
    state.services.set(name, r);
    for (const [set, decl] of r.sets) (wantedSets.add(set), tx.decl.push(`add set ${T} ${set} ${decl}`));
    for (const [c, rules] of r.chains) {
      wantedChains.add(c);
      tx.chain(c, rules, { add: true, flush: has(c) });
      state.ruleCount += rules.length;
    }
    for (const e of r.elements) {
      const id = elemId(e.map, e.key);
      const other = state.elements.get(id);
      if (other) {
        conflicts.push(`${id} (${other.owner}, ${name})`);
        continue;
      }
      state.elements.set(id, { value: e.value, owner: name });
      tx.addElement(e.map, e.key, e.value);
    }
    for (const ip of r.hairpin) state.hairpin.set(ip, (state.hairpin.get(ip) ?? 0) + 1);
  }
  tx.addHairpin.push(...state.hairpin.keys());
  if (existing) {
    for (const m of MAPS) tx.flushMaps.push(`flush map ${T} ${m}`);
    tx.flushMaps.push(`flush set ${T} ${HAIRPIN_SET}`);
  }
  for (const c of existing?.chains ?? []) if (OWNED_CHAIN_RE.test(c) && !wantedChains.has(c)) tx.removeChain(c);
  for (const s of existing?.sets ?? []) if (OWNED_SET_RE.test(s) && !wantedSets.has(s)) tx.removeSet(s);
  return result(tx, state, true, conflicts);
}

function renderPartial(input: NftRenderInput, prev: NftRenderState, changedIn: ReadonlySet<string>): NftRenderResult {
  const tx = new Tx();
  const state: NftRenderState = { services: new Map(prev.services), elements: new Map(prev.elements), hairpin: new Map(prev.hairpin), ruleCount: prev.ruleCount };
  const conflicts: string[] = [];
  const changed = new Set(changedIn);
  // A Service the previous sync never saw is a change whatever the caller says.
  for (const name of input.model.services.keys()) if (!prev.services.has(name)) changed.add(name);
  const names = [...changed].sort();
  const after = new Map<string, NftServiceRules | undefined>(names.map((n) => [n, renderService(input, n)]));

  for (const name of names) {
    const before = prev.services.get(name);
    const now = after.get(name);
    if (now) state.services.set(name, now);
    else state.services.delete(name);
    const b = before ?? { chains: new Map<string, string[]>(), sets: new Map<string, string>() };
    const a = now ?? { chains: new Map<string, string[]>(), sets: new Map<string, string>() };
    for (const [set, decl] of a.sets) if (!b.sets.has(set)) tx.decl.push(`add set ${T} ${set} ${decl}`);
    for (const [c, rules] of a.chains) {
      const old = b.chains.get(c);
      if (old && sameLines(old, rules)) continue;
      tx.chain(c, rules, { add: !old, flush: !!old });
      state.ruleCount += rules.length - (old?.length ?? 0);
    }
    for (const [c, rules] of b.chains) {
      if (a.chains.has(c)) continue;
      tx.removeChain(c);
      state.ruleCount -= rules.length;
    }
    for (const set of b.sets.keys()) if (!a.sets.has(set)) tx.removeSet(set);
  }

  // Elements: first release what changed Services no longer claim, then claim, so a key may move between Services.
  const wanted = new Map<string, Map<string, { map: MapName; key: string; value: string }>>();
  for (const name of names) {
    const w = new Map<string, { map: MapName; key: string; value: string }>();
    for (const e of after.get(name)?.elements ?? []) w.set(elemId(e.map, e.key), e);
    wanted.set(name, w);
    for (const e of prev.services.get(name)?.elements ?? []) {
      const id = elemId(e.map, e.key);
      const cur = state.elements.get(id);
      if (!cur || cur.owner !== name) continue;
      const next = w.get(id);
      if (next && next.value === cur.value) continue;
      tx.deleteElement(e.map, e.key);
      state.elements.delete(id);
    }
  }
  for (const name of names) {
    for (const [id, e] of wanted.get(name)!) {
      const cur = state.elements.get(id);
      if (cur) {
        if (cur.owner !== name) conflicts.push(`${id} (${cur.owner}, ${name})`);
        continue;
      }
      state.elements.set(id, { value: e.value, owner: name });
      tx.addElement(e.map, e.key, e.value);
    }
  }
  // Hairpin elements are shared: count references, write only the ones that appear or vanish.
  const touched = new Set<string>();
  for (const name of names) {
    for (const ip of prev.services.get(name)?.hairpin ?? []) (state.hairpin.set(ip, state.hairpin.get(ip)! - 1), touched.add(ip));
    for (const ip of after.get(name)?.hairpin ?? []) (state.hairpin.set(ip, (state.hairpin.get(ip) ?? 0) + 1), touched.add(ip));
  }
  for (const ip of touched) {
    const was = prev.hairpin.get(ip) ?? 0;
    const now = state.hairpin.get(ip)!;
    if (now === 0) state.hairpin.delete(ip);
    if (was > 0 && now === 0) tx.delHairpin.push(ip);
    if (was === 0 && now > 0) tx.addHairpin.push(ip);
  }
  return result(tx, state, false, conflicts);
}

function result(tx: Tx, state: NftRenderState, full: boolean, conflicts: string[]): NftRenderResult {
  let noLocal = 0;
  const healthChecks: HealthCheckPort[] = [];
  for (const r of state.services.values()) {
    noLocal += r.noLocalEndpoints;
    if (r.healthChecks.length) healthChecks.push(...r.healthChecks);
  }
  return {
    text: tx.text(),
    state,
    full,
    conflicts,
    ruleCounts: { nftables: state.ruleCount, 'nftables-elements': state.elements.size },
    healthChecks,
    noLocalEndpoints: noLocal,
  };
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
