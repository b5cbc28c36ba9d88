import { ExecError } from '../core/errors.js';
import type { IptablesBackend, IptablesChainClient, RestoreSession } from './iptables.js';

const BUILTIN: Record<string, string[]> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
};
/** Targets that are extensions, not chains. */
const TARGETS = new Set(['ACCEPT', 'DROP', 'RETURN', 'REJECT', 'MARK', 'DNAT', 'SNAT', 'MASQUERADE', 'LOG', 'CONNMARK', 'NOTRACK', 'CT']);

interface Table {
  chains: Map<string, string[]>;
}

/**
 * A stateful iptables that speaks `iptables-restore --noflush` and
 * `iptables-save`, and refuses what the kernel refuses: rules in or jumps to
 * missing chains, deleting a chain still referenced or a built-in one.
 * Each table commits atomically at COMMIT, like the real tool.
 */
export class FakeIptables implements IptablesChainClient {
  readonly backend: IptablesBackend = 'nft';
  private readonly tables = new Map<string, Table>();
  /** Every restore text received, in order (tests inspect what was written). */
  readonly restores: string[] = [];
  /** Make the next restore fail (tests of retry and full resync). */
  failNext = false;

  constructor() {
    for (const [t, chains] of Object.entries(BUILTIN)) this.tables.set(t, { chains: new Map(chains.map((c) => [c, []])) });
  }

  async restore(text: string): Promise<void> {
    this.restores.push(text);
    if (this.failNext) {
      this.failNext = false;
      throw new ExecError('iptables-restore (fake)', 1, 'injected failure');
    }
    let work: Table | undefined;
    let name = '';
    const fail = (line: string, why: string): never => {
      throw new ExecError('iptables-restore (fake)', 2, `line "${line}": ${why}`);
    };
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      if (line.startsWith('*')) {
        name = line.slice(1);
        const t = this.tables.get(name) ?? fail(line, 'unknown table');
        work = { chains: new Map([...t.chains].map(([c, r]) => [c, [...r]])) };
        continue;
      }
      if (!work) fail(line, 'no table');
      const w = work!;
      if (line === 'COMMIT') {
        this.tables.set(name, w);
        work = undefined;
        continue;
      }
      if (line.startsWith(':')) {
        const chain = line.slice(1).split(' ')[0]!;
        if (BUILTIN[name]!.includes(chain)) continue; // --noflush keeps built-in chains' rules
        w.chains.set(chain, []); // create or flush
        continue;
      }
      const [op, chain, ...rest] = line.split(' ');
      if (op === '-X') {
        if (!w.chains.has(chain!)) fail(line, 'no such chain');
        if (BUILTIN[name]!.includes(chain!)) fail(line, 'cannot delete a built-in chain');
        if ((w.chains.get(chain!) ?? []).length > 0) fail(line, 'chain not empty');
        for (const [c, rules] of w.chains) if (rules.some((r) => jumpTarget(r) === chain)) fail(line, `chain still referenced from ${c}`);
        w.chains.delete(chain!);
        continue;
      }
      if (op === '-D') {
        const rules = w.chains.get(chain!) ?? fail(line, `no chain ${chain}`);
        const i = rules.indexOf(`-A ${chain} ${rest.join(' ')}`);
        if (i < 0) fail(line, 'no such rule');
        rules.splice(i, 1);
        continue;
      }
      if (op !== '-A' && op !== '-I') fail(line, `unsupported operation ${op}`);
      const rules = w.chains.get(chain!) ?? fail(line, `no chain ${chain}`);
      const rule = `-A ${chain} ${rest.join(' ')}`;
      const target = jumpTarget(rule);
      if (target && !TARGETS.has(target) && !w.chains.has(target)) fail(line, `jump to missing chain ${target}`);
      if (op === '-A') rules.push(rule);
      else rules.unshift(rule);
    }
    if (work) throw new ExecError('iptables-restore (fake)', 2, `table ${name} without COMMIT`);
  }

  /** Collects the streamed text and applies it as one restore at end(). */
  openRestore(): RestoreSession {
    const parts: string[] = [];
    let aborted = false;
    return {
      write: async (text) => void parts.push(text),
      end: async () => {
        const text = parts.join('');
        // The real tool with empty input changes nothing either.
        if (!aborted && text) await this.restore(text);
      },
      abort: () => void (aborted = true),
    };
  }

  async save(table?: string): Promise<string> {
    if (table === undefined) return (await Promise.all([...this.tables.keys()].map((t) => this.save(t)))).join('');
    const t = this.tables.get(table);
    if (!t) return '';
    const out = [`*${table}`];
    for (const c of t.chains.keys()) out.push(`:${c} ${BUILTIN[table]!.includes(c) ? 'ACCEPT' : '-'} [0:0]`);
    for (const rules of t.chains.values()) out.push(...rules);
    out.push('COMMIT', '');
    return out.join('\n');
  }

  async chainExists(table: string, chain: string): Promise<boolean> {
    return this.tables.get(table)?.chains.has(chain) ?? false;
  }

  /** Rules of one chain (tests). */
  rules(table: string, chain: string): string[] | undefined {
    return this.tables.get(table)?.chains.get(chain);
  }

  chains(table: string): string[] {
    return [...(this.tables.get(table)?.chains.keys() ?? [])];
  }

  /** Simulates another tool flushing and deleting our chains (`iptables -F/-X`). */
  wipe(table: string, prefix: string): void {
    const t = this.tables.get(table)!;
    for (const [c, rules] of t.chains) {
      if (BUILTIN[table]!.includes(c)) t.chains.set(c, rules.filter((r) => !(jumpTarget(r) ?? '').startsWith(prefix)));
    }
    for (const c of [...t.chains.keys()]) if (c.startsWith(prefix)) t.chains.delete(c);
  }
}

function jumpTarget(rule: string): string | undefined {
  const m = / -j (\S+)/.exec(rule);
  return m?.[1];
}
