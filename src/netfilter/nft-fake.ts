import { isIPv4 } from '../core/ip.js';
import { NftError, type NftClient, type NftTableObjects } from './nft.js';

interface FakeChain {
  /** Base-chain declaration ("{ type ... }"), '' for a regular chain. */
  decl: string;
  rules: string[];
}
interface FakeTable {
  chains: Map<string, FakeChain>;
  sets: Map<string, { decl: string; elements: Set<string> }>;
  maps: Map<string, { type: string; elements: Map<string, string> }>;
}
type FakeState = Map<string, FakeTable>;

const REF_RE = /\b(?:jump|goto) ([^\s,}]+)/g;
const SET_RE = /@([^\s,}]+)/g;

function clone(s: FakeState): FakeState {
  const out: FakeState = new Map();
  for (const [k, t] of s) {
    out.set(k, {
      chains: new Map([...t.chains].map(([n, c]) => [n, { decl: c.decl, rules: [...c.rules] }])),
      sets: new Map([...t.sets].map(([n, x]) => [n, { decl: x.decl, elements: new Set(x.elements) }])),
      maps: new Map([...t.maps].map(([n, m]) => [n, { type: m.type, elements: new Map(m.elements) }])),
    });
  }
  return out;
}

/** Splits "{ a, b, c }" at top-level commas (values never contain braces here). */
function items(body: string): string[] {
  const m = /^\{(.*)\}$/.exec(body.trim());
  if (!m) throw new Error(`expected "{ ... }", got "${body}"`);
  const out = m[1]!.split(',').map((s) => s.trim()).filter(Boolean);
  // nft: "syntax error, unexpected '}'".
  if (out.length === 0) throw new Error('syntax error (empty element list)');
  return out;
}

/**
 * Turns nft's block syntax ("table ip t {", "chain c {", rules, "}") into the
 * equivalent commands: declarations first, then rules, as nft resolves
 * references to chains declared later in the same block.
 */
function expandBlocks(lines: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const t = /^table (\S+) (\S+) \{$/.exec(lines[i]!);
    if (!t) {
      out.push(lines[i]!);
      continue;
    }
    const tbl = `${t[1]} ${t[2]}`;
    const decls = [`add table ${tbl}`];
    const rules: string[] = [];
    for (i++; i < lines.length && lines[i] !== '}'; i++) {
      const line = lines[i]!;
      const obj = /^(map|set) (\S+) (\{.*\})$/.exec(line);
      if (obj) {
        decls.push(`add ${obj[1]} ${tbl} ${obj[2]} ${obj[3]}`);
        continue;
      }
      const c = /^chain (\S+) \{$/.exec(line);
      if (!c) throw new NftError(`nft -f failed: syntax error in table block: ${line}`);
      let decl = '';
      for (i++; i < lines.length && lines[i] !== '}'; i++) {
        if (lines[i]!.startsWith('type ')) decl = ` { ${lines[i]} }`;
        else rules.push(`add rule ${tbl} ${c[1]} ${lines[i]}`);
      }
      decls.push(`add chain ${tbl} ${c[1]}${decl}`);
    }
    out.push(...decls, ...rules);
  }
  return out;
}

/**
 * A stateful nftables stand-in for unit tests. It understands the command
 * subset weft-proxy writes and refuses what the kernel refuses: rules and
 * map elements pointing at missing chains, sets or maps; deleting chains
 * that have rules or are referenced; adding an existing map key with
 * another value; deleting a missing element. A transaction is atomic: any
 * error leaves the state as it was. `dump()` prints a sorted, stable text.
 */
export class FakeNft implements NftClient {
  private state: FakeState = new Map();
  /** Every transaction text applied successfully (tests inspect sizes). */
  readonly applied: string[] = [];
  /** Make the next apply fail (tests of the failure path). */
  failNext = false;

  async applyStream(pieces: AsyncIterable<string> | Iterable<string>): Promise<void> {
    let text = '';
    for await (const piece of pieces) text += piece;
    await this.apply(text);
  }

  async apply(text: string): Promise<void> {
    if (!text) return;
    if (this.failNext) {
      this.failNext = false;
      throw new NftError('nft -f failed (injected)');
    }
    const next = clone(this.state);
    const lines = expandBlocks(text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')));
    lines.forEach((line, i) => {
      try {
        this.exec(next, line.trim());
      } catch (err) {
        throw new NftError(`nft -f failed at line ${i + 1}: ${(err as Error).message}: ${line.slice(0, 200)}`);
      }
    });
    this.state = next;
    this.applied.push(text);
  }

  async listTable(family: string, table: string): Promise<NftTableObjects | undefined> {
    const t = this.state.get(`${family} ${table}`);
    return t ? { chains: new Set(t.chains.keys()), sets: new Set([...t.sets.keys(), ...t.maps.keys()]) } : undefined;
  }

  async listChain(family: string, table: string, chain: string): Promise<string[] | undefined> {
    return this.state.get(`${family} ${table}`)?.chains.get(chain)?.rules.slice();
  }

  /** Someone else's `nft flush ruleset`. */
  flushRuleset(): void {
    this.state.clear();
  }

  /** Test access: the value of one map element. */
  element(family: string, table: string, map: string, key: string): string | undefined {
    return this.state.get(`${family} ${table}`)?.maps.get(map)?.elements.get(key);
  }

  /**
   * Follows a verdict from a chain through jumps, gotos and numgen vmaps and
   * returns every `dnat to` target reachable (mark-for-masquerade ignored),
   * including map-based DNAT for the packet's `key` ("ip . proto . port"):
   * a small tracer for semantic tests.
   */
  reachable(family: string, table: string, verdict: string, key?: string): string[] {
    const t = this.state.get(`${family} ${table}`);
    const out = new Set<string>();
    const seen = new Set<string>();
    const walk = (chain: string) => {
      if (seen.has(chain) || chain === 'mark-for-masquerade') return;
      seen.add(chain);
      for (const r of t?.chains.get(chain)?.rules ?? []) {
        const d = / dnat to (\S+)/.exec(` ${r}`);
        if (d) out.add(d[1]!);
        // `dnat ip to ip daddr . th dport . numgen random mod n map @m`: entries "<ip> . <port> . i", i < n.
        const mapped = /numgen random mod (\d+) map @(\S+)/.exec(r);
        if (mapped && key) {
          const elements = t?.maps.get(mapped[2]!)?.elements;
          const [ip, , port] = key.split(' . ');
          for (let i = 0; i < Number(mapped[1]); i++) {
            const v = elements?.get(`${ip} . ${port} . ${i}`);
            if (v) out.add(v.replace(' . ', ':'));
          }
        }
        for (const m of r.matchAll(REF_RE)) walk(m[1]!);
      }
    };
    const m = /^(?:goto|jump) (\S+)$/.exec(verdict);
    if (m) walk(m[1]!);
    return [...out].sort();
  }

  /** Stable text of the whole state: tables, maps (sorted elements), sets, chains (sorted by name). */
  dump(): string {
    const out: string[] = [];
    for (const name of [...this.state.keys()].sort()) {
      const t = this.state.get(name)!;
      out.push(`table ${name}`);
      for (const m of [...t.maps.keys()].sort()) {
        const map = t.maps.get(m)!;
        out.push(`  map ${m} { ${map.type} }`);
        for (const k of [...map.elements.keys()].sort()) out.push(`    ${k} : ${map.elements.get(k)}`);
      }
      for (const s of [...t.sets.keys()].sort()) {
        out.push(`  set ${s} ${t.sets.get(s)!.decl}`);
        for (const k of [...t.sets.get(s)!.elements].sort()) out.push(`    ${k}`);
      }
      for (const c of [...t.chains.keys()].sort()) {
        const chain = t.chains.get(c)!;
        out.push(`  chain ${c}${chain.decl ? ` ${chain.decl}` : ''}`);
        for (const r of chain.rules) out.push(`    ${r}`);
      }
    }
    return out.join('\n') + '\n';
  }

  private exec(s: FakeState, line: string): void {
    if (line === 'flush ruleset') return void s.clear();
    const m = /^(add|delete|flush) (table|chain|rule|map|set|element) (\S+) (\S+)(?: (\S+))?(?: (.*))?$/.exec(line);
    if (!m) throw new Error('syntax error');
    const [, verb, what, family, table, name = '', rest = ''] = m;
    const tkey = `${family} ${table}`;
    if (what === 'table') {
      if (verb === 'add') {
        if (!s.has(tkey)) s.set(tkey, { chains: new Map(), sets: new Map(), maps: new Map() });
      } else if (verb === 'delete') {
        if (!s.delete(tkey)) throw new Error('No such file or directory (table)');
      } else this.table(s, tkey).chains.forEach((c) => (c.rules = []));
      return;
    }
    const t = this.table(s, tkey);
    switch (`${verb} ${what}`) {
      case 'add chain': {
        const have = t.chains.get(name);
        if (have && have.decl !== rest) throw new Error(`File exists (chain ${name} declared differently)`);
        if (!have) t.chains.set(name, { decl: rest, rules: [] });
        return;
      }
      case 'flush chain':
        this.chain(t, name).rules = [];
        return;
      case 'delete chain': {
        const c = this.chain(t, name);
        if (c.rules.length > 0) throw new Error(`Device or resource busy (chain ${name} has rules)`);
        if (this.referenced(t, name, REF_RE)) throw new Error(`Device or resource busy (chain ${name} is referenced)`);
        t.chains.delete(name);
        return;
      }
      case 'add rule': {
        const c = this.chain(t, name);
        this.checkRefs(t, rest);
        c.rules.push(rest);
        return;
      }
      case 'add map': {
        const type = /(?:^|[{;]\s*)(typeof [^;]+|type [^;]+);/.exec(rest)?.[1]?.trim() ?? '';
        const have = t.maps.get(name);
        if (have && have.type !== type) throw new Error(`File exists (map ${name} has another type)`);
        if (!have) t.maps.set(name, { type, elements: new Map() });
        return;
      }
      case 'flush map':
        this.map(t, name).elements.clear();
        return;
      case 'add set': {
        const have = t.sets.get(name);
        if (have !== undefined && have.decl !== rest) throw new Error(`File exists (set ${name} declared differently)`);
        if (!have) t.sets.set(name, { decl: rest, elements: new Set() });
        return;
      }
      case 'flush set':
        this.set(t, name).elements.clear();
        return;
      case 'delete set':
        if (!t.sets.has(name)) throw new Error(`No such file or directory (set ${name})`);
        if (this.referenced(t, name, SET_RE)) throw new Error(`Device or resource busy (set ${name} is referenced)`);
        t.sets.delete(name);
        return;
      case 'add element': {
        if (t.sets.has(name)) {
          const set = t.sets.get(name)!;
          // nft accepts an element given twice, or already present, in a plain set.
          for (const key of items(rest)) {
            if (/\btype ipv4_addr\s*;/.test(set.decl) && !isIPv4(key)) throw new Error(`Could not resolve hostname (element ${key})`);
            set.elements.add(key);
          }
          return;
        }
        const map = this.map(t, name);
        const seen = new Set<string>();
        for (const it of items(rest)) {
          const [key, value] = it.split(' : ').map((x) => x.trim()) as [string, string];
          if (value === undefined) throw new Error(`map element without a value: ${it}`);
          this.checkRefs(t, value);
          const have = map.elements.get(key);
          if (seen.has(key) || (have !== undefined && have !== value)) throw new Error(`File exists (element ${key})`);
          seen.add(key);
          map.elements.set(key, value);
        }
        return;
      }
      case 'delete element': {
        if (t.sets.has(name)) {
          for (const key of items(rest)) if (!t.sets.get(name)!.elements.delete(key)) throw new Error(`No such file or directory (element ${key})`);
          return;
        }
        const map = this.map(t, name);
        for (const key of items(rest)) if (!map.elements.delete(key)) throw new Error(`No such file or directory (element ${key})`);
        return;
      }
      default:
        throw new Error(`unsupported command "${verb} ${what}"`);
    }
  }

  private table(s: FakeState, key: string): FakeTable {
    const t = s.get(key);
    if (!t) throw new Error(`No such file or directory (table ${key})`);
    return t;
  }
  private chain(t: FakeTable, name: string): FakeChain {
    const c = t.chains.get(name);
    if (!c) throw new Error(`No such file or directory (chain ${name})`);
    return c;
  }
  private set(t: FakeTable, name: string) {
    const x = t.sets.get(name);
    if (!x) throw new Error(`No such file or directory (set ${name})`);
    return x;
  }
  private map(t: FakeTable, name: string) {
    const m = t.maps.get(name);
    if (!m) throw new Error(`No such file or directory (map ${name})`);
    return m;
  }
  private checkRefs(t: FakeTable, text: string): void {
    for (const m of text.matchAll(REF_RE)) if (!t.chains.has(m[1]!)) throw new Error(`No such file or directory (chain ${m[1]})`);
    for (const m of text.matchAll(SET_RE)) {
      if (!t.sets.has(m[1]!) && !t.maps.has(m[1]!)) throw new Error(`No such file or directory (set ${m[1]})`);
    }
  }
  private referenced(t: FakeTable, name: string, re: RegExp): boolean {
    for (const c of t.chains.values()) for (const r of c.rules) for (const m of r.matchAll(re)) if (m[1] === name) return true;
    if (re === REF_RE) for (const m of t.maps.values()) for (const v of m.elements.values()) if (v === `goto ${name}` || v === `jump ${name}`) return true;
    return false;
  }
}
