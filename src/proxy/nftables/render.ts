import type { HealthCheckPort } from '../backend.js';
import type { EndpointInfo } from '../model/endpoints.js';
import type { ServicePortInfo } from '../model/service-port.js';
import { HAIRPIN_SET, HAIRPIN_SET_DECL, MAP, MAP_TYPES, NFT_FAMILY, NFT_TABLE, OWNED_CHAIN_RE, OWNED_SET_RE, type MapName } from './names.js';
import { expandRules, plainElements, renderNftService, type NftElement, type NftProxyConfig, type NftServiceRules } from './service-rules.js';
import { BASE_CHAINS, fixedChains, pickChainRules } from './static.js';

const T = `${NFT_FAMILY} ${NFT_TABLE}`;
const MAPS = Object.values(MAP) as MapName[];
const BASE = new Map(BASE_CHAINS.map((b) => [b.name, b]));

/**
 * What a sync reads from the model. `services` holds ports grouped by
 * Service; a partial sync looks up only the Services in `changed` (a changed
 * Service missing from the map was deleted), so callers may pass just those.
 */
export interface NftRenderModel {
  services: ReadonlyMap<string, readonly ServicePortInfo[]>;
  endpoints: ReadonlyMap<string, readonly EndpointInfo[]>;
}

/** Objects found in the kernel's table (a full sync removes the stale ones). */
export interface NftExisting {
  chains: ReadonlySet<string>;
  sets: ReadonlySet<string>;
}

/** What the last successful sync wrote; owned by the proxier and updated in place by `commit()`. */
export interface NftRenderState {
  services: Map<string, NftServiceRules>;
  /** "map key" -> the Service that owns the element (its value is in that Service's rules). */
  elements: Map<string, string>;
  /** Endpoint IP -> how many Services DNAT to it (hairpin set elements are shared). */
  hairpin: Map<string, number>;
  /** "proto/n" -> how many ClusterIPs dispatch through pick-<proto>-<n>. */
  picks: Map<string, number>;
  /** Services with health-check node ports. */
  healthCheckServices: Set<string>;
  noLocalEndpoints: number;
  ruleCount: number;
  /** Endpoint entries in the service-endpoints maps (they are not in `elements`). */
  endpointEntries: number;
}

export interface NftRenderInput {
  model: NftRenderModel;
  cfg: NftProxyConfig;
  /** Services to re-render, or 'all' for a full sync. */
  changed: ReadonlySet<string> | 'all';
  /** Absent: full sync. Not modified until `commit()`. */
  previous?: NftRenderState;
  /** What the table holds now; absent on a full sync means "the table does not exist". */
  existing?: NftExisting;
}

export interface NftRenderResult {
  /** `nft -f` input, one transaction; '' when nothing changed. */
  text: string;
  full: boolean;
  /** Map keys claimed by two Services; the first keeps them. */
  conflicts: string[];
  /**
   * Call once `text` has been applied: returns the state to keep (for a
   * partial sync, `previous` updated in place - no copy of 10 000 entries).
   */
  commit(): NftRenderState;
}

/** Counts and health-check ports of a committed state (for the sync result and metrics). */
export function summarize(state: NftRenderState): { ruleCounts: Record<string, number>; healthChecks: HealthCheckPort[]; noLocalEndpoints: number } {
  return {
    ruleCounts: { nftables: state.ruleCount, 'nftables-elements': state.elements.size + state.endpointEntries + state.hairpin.size },
    healthChecks: [...state.healthCheckServices].sort().flatMap((n) => state.services.get(n)?.healthChecks ?? []),
    noLocalEndpoints: state.noLocalEndpoints,
  };
}

/** Element and hairpin changes of a transaction, written after the chains they point to. */
class Elements {
  readonly del = new Map<string, string[]>();
  /** Finished `add element` commands, and the items of the one being filled, per map. */
  private readonly done: string[] = [];
  private readonly open = new Map<string, string[]>();
  addElement(map: string, item: string): void {
    let items = this.open.get(map);
    if (!items) this.open.set(map, (items = []));
    items.push(item);
    // Joined as they fill: 50 000 small strings kept alive to the end made every scavenge copy them.
    if (items.length === ELEMENTS_PER_COMMAND) {
      this.done.push(`add element ${T} ${map} { ${items.join(', ')} }`);
      this.open.set(map, []);
    }
  }
  deleteElement(map: string, key: string): void {
    push(this.del, map, key);
  }
  /** Deletions first, then additions; commands of at most ELEMENTS_PER_COMMAND items. */
  emit(out: string[]): void {
    for (const [m, keys] of this.del) for (const c of chunks(keys)) out.push(`delete element ${T} ${m} { ${c.join(', ')} }`);
    out.push(...this.done);
    for (const [m, items] of this.open) if (items.length) out.push(`add element ${T} ${m} { ${items.join(', ')} }`);
  }
}

const ELEMENTS_PER_COMMAND = 1000;

function* chunks<V>(list: readonly V[]): Generator<V[]> {
  for (let i = 0; i < list.length; i += ELEMENTS_PER_COMMAND) yield list.slice(i, i + ELEMENTS_PER_COMMAND);
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

const elemId = (e: NftElement) => `${e.map} ${e.key}`;
const mapType = (m: MapName) => (MAP_TYPES[m].startsWith('typeof ') ? MAP_TYPES[m] : `type ${MAP_TYPES[m]}`);
const hairpinItem = (ip: string) => `${ip} . ${ip}`;

/**
 * Renders one sync as a single `nft -f` transaction. Full: the text of
 * `streamFullSync` in one string (the table flushed, maps and the hairpin
 * set flushed and refilled, stale chains and sets removed; affinity sets
 * keep their entries). Partial: commands for the changed Services' chains,
 * their map elements, and what they no longer need - an unchanged model
 * renders ''. Order inside a partial transaction: declarations, chain
 * contents, element deletions, element additions, stale chains flushed,
 * then deleted (nothing points at them any more). Pure.
 */
export function renderNftables(input: NftRenderInput): NftRenderResult {
  const full = input.changed === 'all' || !input.previous;
  return full ? renderFull(input) : renderPartial(input, input.previous!, input.changed as ReadonlySet<string>);
}

function renderService(input: Pick<NftRenderInput, 'model' | 'cfg'>, name: string): NftServiceRules | undefined {
  const ports = input.model.services.get(name);
  return ports && ports.length ? renderNftService(ports, (k) => input.model.endpoints.get(k), input.cfg) : undefined;
}

function renderFull(input: NftRenderInput): NftRenderResult {
  const sync = streamFullSync(input);
  let text = '';
  for (const piece of sync.pieces()) text += piece;
  const { tail, bytes: _bytes, ...result } = sync.finish(input.existing);
  return { ...result, text: text + tail };
}

/** A streamed full sync's outcome: the stale removals that end the transaction, and what `renderNftables` returns but the text. */
export interface NftFullSyncResult extends Omit<NftRenderResult, 'text'> {
  /** Removal of stale chains and sets; the last piece of the transaction. */
  tail: string;
  /** Length of the whole transaction text. */
  bytes: number;
}

/**
 * A full sync as a stream, so nft parses the first pieces while the rest
 * renders. Nothing in `pieces()` depends on what the kernel holds: the table
 * is flushed (`flush table` empties every chain, keeping sets and their
 * affinity entries), maps and the hairpin set are flushed, everything is
 * refilled. Only the removal of stale chains and sets needs the listing:
 * `finish(existing)` renders it once the pieces are exhausted.
 */
export interface NftFullSync {
  pieces(): Generator<string, void>;
  finish(existing: NftExisting | undefined): NftFullSyncResult;
}

/** Text per piece: small enough that nft starts parsing early at 1000 Services, large enough to keep the pieces few. */
const PIECE_CHARS = 32 * 1024;

export function streamFullSync(input: Omit<NftRenderInput, 'existing' | 'changed' | 'previous'>): NftFullSync {
  return new FullSyncRender(input);
}

/**
 * The state of one streamed full sync. A class rather than closures made
 * anew per sync, so every sync calls the same functions and reuses their
 * optimised code (recompiling them costs ~200 ms of compiler threads at
 * 10 000 Services, which then compete with nft for the CPU).
 */
class FullSyncRender implements NftFullSync {
  private readonly state: NftRenderState = { services: new Map(), elements: new Map(), hairpin: new Map(), picks: new Map(), healthCheckServices: new Set(), noLocalEndpoints: 0, ruleCount: 0, endpointEntries: 0 };
  private readonly conflicts: string[] = [];
  private readonly written = new Set<string>();
  private readonly wantedSets = new Set<string>();
  private bytes = 0;
  private finished = false;
  // The piece being filled: a table block (sets and chains) and the elements that point into it.
  private block: string[] = [`table ${T} {`];
  private els = new Elements();
  private size = 0;
  // The Service whose plain ports are being written, and whether the ClusterIP element of the current port was (`plainElement`).
  private current = '';
  private parentOk = false;

  constructor(private readonly input: Omit<NftRenderInput, 'existing' | 'changed' | 'previous'>) {}

  *pieces(): Generator<string, void> {
    const { input, state } = this;
    const head = [`add table ${T} { comment "weft-proxy service rules (nftables mode)"; }`, `flush table ${T}`, `table ${T} {`];
    for (const m of MAPS) head.push(`map ${m} { ${mapType(m)}; }`);
    head.push(`set ${HAIRPIN_SET} ${HAIRPIN_SET_DECL}`, '}');
    for (const m of MAPS) head.push(`flush map ${T} ${m}`);
    head.push(`flush set ${T} ${HAIRPIN_SET}`);
    for (const [c, rules] of fixedChains(input.cfg)) this.chain(c, rules);
    const headText = `${head.join('\n')}\n`;
    this.bytes += headText.length;
    yield headText + this.take();

    for (const name of [...input.model.services.keys()].sort()) {
      const r = renderService(input, name);
      if (!r) continue;
      state.services.set(name, r);
      for (const n of r.picks) this.usePick(n);
      for (const [set, decl] of r.sets) (this.wantedSets.add(set), this.block.push(`set ${set} ${decl}`));
      for (const [c, rules] of r.chains) this.chain(c, rules);
      // Endpoint entries follow their ClusterIP's element: written when it was.
      let parentWritten = false;
      for (const e of r.elements) {
        if (e.parent) {
          if (parentWritten) (this.element(e.map, `${e.key} : ${e.value}`), state.endpointEntries++);
          continue;
        }
        parentWritten = this.claim(elemId(e), name);
        if (parentWritten) this.element(e.map, `${e.key} : ${e.value}`);
      }
      // Plain ClusterIP ports: elements written straight from the model's data (nothing kept per element).
      let hairpin = r.hairpin;
      this.current = name;
      for (const pp of r.plain) {
        this.parentOk = false;
        const eps = plainElements(pp, this);
        // The element above points at this chain: declared in the same piece, whose block comes first.
        this.usePick(`${pp.proto}/${eps.length}`);
        // Counted once per Service, as expandRules does for partial syncs.
        for (const e of eps) {
          if (hairpin.includes(e.ip)) continue;
          if (hairpin === r.hairpin) hairpin = [...r.hairpin];
          hairpin.push(e.ip);
        }
      }
      for (const ip of hairpin) this.useHairpin(ip);
      if (r.healthChecks.length) state.healthCheckServices.add(name);
      state.noLocalEndpoints += r.noLocalEndpoints;
      if (this.size >= PIECE_CHARS) yield this.take();
    }
    const last = this.take();
    if (last) yield last;
    this.finished = true;
  }

  finish(existing: NftExisting | undefined): NftFullSyncResult {
    if (!this.finished) throw new Error('streamFullSync: finish() before the pieces were exhausted');
    const tail: string[] = [];
    if (existing) {
      // `flush table` emptied them; nothing refilled points at them.
      for (const c of existing.chains) if (OWNED_CHAIN_RE.test(c) && !this.written.has(c)) tail.push(`delete chain ${T} ${c}`);
      for (const x of existing.sets) if (OWNED_SET_RE.test(x) && !this.wantedSets.has(x)) tail.push(`delete set ${T} ${x}`);
    }
    const text = tail.length ? tail.join('\n') + '\n' : '';
    const state = this.state;
    return { tail: text, bytes: this.bytes + text.length, full: true, conflicts: this.conflicts, commit: () => state };
  }

  /** `plainElements`' sink: one element of the current plain port. */
  emit(map: MapName, key: string, value: string): void {
    if (map === MAP.SERVICE_IPS) {
      this.parentOk = this.claim(`${map} ${key}`, this.current);
      if (!this.parentOk) return;
    } else if (!this.parentOk) return;
    else this.state.endpointEntries++;
    this.element(map, `${key} : ${value}`);
  }

  /** Records `id` as the Service's; false (and a conflict) when another Service has it. */
  private claim(id: string, name: string): boolean {
    const other = this.state.elements.get(id);
    if (other) {
      this.conflicts.push(`${id} (${other}, ${name})`);
      return false;
    }
    this.state.elements.set(id, name);
    return true;
  }

  private chain(name: string, rules: readonly string[]): void {
    this.written.add(name);
    const b = BASE.get(name);
    const block = this.block;
    block.push(`chain ${name} {`);
    if (b) block.push(`type ${b.type} hook ${b.hook} priority ${b.priority}; policy accept;`);
    for (const r of rules) (block.push(r), (this.size += r.length));
    block.push('}');
    this.state.ruleCount += rules.length;
  }

  private element(map: string, item: string): void {
    this.els.addElement(map, item);
    this.size += item.length;
  }

  private usePick(pick: string): void {
    const picks = this.state.picks;
    const n = picks.get(pick) ?? 0;
    picks.set(pick, n + 1);
    if (n > 0) return;
    const [proto, count] = pick.split('/') as [string, string];
    this.chain(...pickChainRules(proto, Number(count), this.input.cfg));
  }

  private useHairpin(ip: string): void {
    const hairpin = this.state.hairpin;
    const n = hairpin.get(ip) ?? 0;
    hairpin.set(ip, n + 1);
    if (n === 0) this.element(HAIRPIN_SET, hairpinItem(ip));
  }

  /** The piece filled so far, as text; starts the next one. */
  private take(): string {
    const out = this.block.length > 1 ? (this.block.push('}'), this.block) : [];
    this.els.emit(out);
    this.block = [`table ${T} {`];
    this.els = new Elements();
    this.size = 0;
    const piece = out.length ? out.join('\n') + '\n' : '';
    this.bytes += piece.length;
    return piece;
  }
}

function renderPartial(input: NftRenderInput, prev: NftRenderState, changed: ReadonlySet<string>): NftRenderResult {
  const decl: string[] = [];
  const rules: string[] = [];
  const staleFlush: string[] = [];
  const staleDelete: string[] = [];
  const els = new Elements();
  const conflicts: string[] = [];
  const names = [...changed].sort();
  const rendered = new Map<string, NftServiceRules | undefined>(names.map((n) => [n, renderService(input, n)]));
  // Diffs work on spelled-out rules; the compact ones are what is kept.
  const after = new Map<string, NftServiceRules | undefined>(names.map((n) => [n, rendered.get(n) && expandRules(rendered.get(n)!)]));
  const before = new Map<string, NftServiceRules | undefined>(names.map((n) => [n, prev.services.get(n) && expandRules(prev.services.get(n)!)]));
  let ruleDelta = 0;

  for (const name of names) {
    const b = before.get(name) ?? EMPTY;
    const a = after.get(name) ?? EMPTY;
    for (const [set, d] of a.sets) if (!b.sets.has(set)) decl.push(`add set ${T} ${set} ${d}`);
    for (const [c, rs] of a.chains) {
      const old = b.chains.get(c);
      if (old && sameLines(old, rs)) continue;
      if (old) rules.push(`flush chain ${T} ${c}`);
      else decl.push(`add chain ${T} ${c}`);
      for (const r of rs) rules.push(`add rule ${T} ${c} ${r}`);
      ruleDelta += rs.length - (old?.length ?? 0);
    }
    for (const [c, rs] of b.chains) {
      if (a.chains.has(c)) continue;
      staleFlush.push(`flush chain ${T} ${c}`);
      staleDelete.push(`delete chain ${T} ${c}`);
      ruleDelta -= rs.length;
    }
    for (const set of b.sets.keys()) if (!a.sets.has(set)) staleDelete.push(`delete set ${T} ${set}`);
  }

  // Elements, seen through an overlay on the previous state (committed later):
  // first release what changed Services no longer claim, then claim, so a key may move between Services.
  const removed = new Set<string>();
  const added = new Map<string, string>();
  /** Endpoint entries deleted in this transaction (they are not in `elements`: their parent owns them). */
  const removedDeps = new Set<string>();
  let entryDelta = 0;
  const owner = (id: string) => added.get(id) ?? (removed.has(id) ? undefined : prev.elements.get(id));
  for (const name of names) {
    const want = new Map((after.get(name)?.elements ?? []).map((e) => [elemId(e), e]));
    for (const e of before.get(name)?.elements ?? []) {
      const id = elemId(e);
      if (prev.elements.get(e.parent ?? id) !== name || removed.has(id)) continue;
      if (want.get(id)?.value === e.value) continue;
      els.deleteElement(e.map, e.key);
      if (e.parent) (removedDeps.add(id), entryDelta--);
      else removed.add(id);
    }
  }
  for (const name of names) {
    const deps = new Map((before.get(name)?.elements ?? []).filter((e) => e.parent).map((e) => [elemId(e), e]));
    for (const e of after.get(name)?.elements ?? []) {
      const id = elemId(e);
      if (e.parent) {
        if (owner(e.parent) !== name) continue;
        // Still there when it was written before under a parent we owned, and not deleted above.
        const old = deps.get(id);
        if (old && old.value === e.value && prev.elements.get(old.parent!) === name && !removedDeps.has(id)) continue;
        els.addElement(e.map, `${e.key} : ${e.value}`);
        entryDelta++;
        continue;
      }
      const cur = owner(id);
      if (cur) {
        if (cur !== name) conflicts.push(`${id} (${cur}, ${name})`);
        continue;
      }
      added.set(id, name);
      els.addElement(e.map, `${e.key} : ${e.value}`);
    }
  }

  // Hairpin elements are shared: count references, write only the ones that appear or vanish.
  const counts = new Map<string, number>();
  const count = (ip: string) => counts.get(ip) ?? prev.hairpin.get(ip) ?? 0;
  for (const name of names) {
    for (const ip of before.get(name)?.hairpin ?? []) counts.set(ip, count(ip) - 1);
    for (const ip of after.get(name)?.hairpin ?? []) counts.set(ip, count(ip) + 1);
  }
  for (const [ip, now] of counts) {
    const was = prev.hairpin.get(ip) ?? 0;
    if (was > 0 && now === 0) els.deleteElement(HAIRPIN_SET, hairpinItem(ip));
    if (was === 0 && now > 0) els.addElement(HAIRPIN_SET, hairpinItem(ip));
  }

  // Shared pick-<proto>-<n> chains: created when a first ClusterIP needs them, removed after the last one left.
  const pickCounts = new Map<string, number>();
  const pickCount = (n: string) => pickCounts.get(n) ?? prev.picks.get(n) ?? 0;
  for (const name of names) {
    for (const n of before.get(name)?.picks ?? []) pickCounts.set(n, pickCount(n) - 1);
    for (const n of after.get(name)?.picks ?? []) pickCounts.set(n, pickCount(n) + 1);
  }
  for (const [pick, now] of pickCounts) {
    const was = prev.picks.get(pick) ?? 0;
    const [proto, n] = pick.split('/') as [string, string];
    const [c, rs] = pickChainRules(proto, Number(n), input.cfg);
    if (was === 0 && now > 0) {
      decl.push(`add chain ${T} ${c}`);
      for (const r of rs) rules.push(`add rule ${T} ${c} ${r}`);
      ruleDelta += rs.length;
    } else if (was > 0 && now === 0) {
      staleFlush.push(`flush chain ${T} ${c}`);
      staleDelete.push(`delete chain ${T} ${c}`);
      ruleDelta -= rs.length;
    }
  }

  const out = [...decl, ...rules];
  els.emit(out);
  out.push(...staleFlush, ...staleDelete);

  let committed = false;
  const commit = () => {
    if (committed) return prev;
    committed = true;
    for (const name of names) {
      const b = prev.services.get(name);
      const a = rendered.get(name);
      prev.noLocalEndpoints += (a?.noLocalEndpoints ?? 0) - (b?.noLocalEndpoints ?? 0);
      if (a) prev.services.set(name, a);
      else prev.services.delete(name);
      if (a?.healthChecks.length) prev.healthCheckServices.add(name);
      else prev.healthCheckServices.delete(name);
    }
    for (const id of removed) prev.elements.delete(id);
    for (const [id, e] of added) prev.elements.set(id, e);
    for (const [ip, n] of counts) {
      if (n > 0) prev.hairpin.set(ip, n);
      else prev.hairpin.delete(ip);
    }
    for (const [k, n] of pickCounts) {
      if (n > 0) prev.picks.set(k, n);
      else prev.picks.delete(k);
    }
    prev.ruleCount += ruleDelta;
    prev.endpointEntries += entryDelta;
    return prev;
  };
  return { text: out.length ? out.join('\n') + '\n' : '', full: false, conflicts, commit };
}

const EMPTY: NftServiceRules = { chains: new Map(), sets: new Map(), elements: [], hairpin: [], picks: [], noLocalEndpoints: 0, healthChecks: [], plain: [] };

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
