import { WeftError } from '../core/errors.js';
import { run, runStreaming, type RunResult } from '../exec/run.js';

/** `nft -f` refused a transaction (nothing of it was applied). */
export class NftError extends WeftError {
  override readonly code = 'ERR_NFT';
}

/** Names of the chains and (non-map) sets of one table. */
export interface NftTableObjects {
  chains: Set<string>;
  sets: Set<string>;
}

/** The nftables operations weft-proxy needs; ExecNft runs `nft`, FakeNft keeps state in memory. */
export interface NftClient {
  /**
   * Applies `nft -f` text as one atomic transaction; throws NftError and
   * changes nothing on failure. Given a promise, nft starts at once and gets
   * the text when it is ready ('' or a rejection: nothing is applied).
   */
  apply(text: string | Promise<string>): Promise<void>;
  /** Chains and sets of a table; undefined when the table does not exist. */
  listTable(family: string, table: string): Promise<NftTableObjects | undefined>;
  /** Rule bodies of one chain as nft prints them; undefined when the chain (or table) does not exist. */
  listChain(family: string, table: string, chain: string): Promise<string[] | undefined>;
}

interface NftJsonObj {
  chain?: { table: string; name: string };
  set?: { table: string; name: string };
}

/** Runs the `nft` binary (optionally inside a netns); transactions go through stdin. */
export class ExecNft implements NftClient {
  constructor(private readonly netns?: string) {}

  async apply(text: string | Promise<string>): Promise<void> {
    if (typeof text === 'string') {
      if (text) this.check(await run('nft', ['-f', '-'], { input: text, netns: this.netns, allowFail: true }), text.length);
      return;
    }
    // Started before the text exists: its exec and start-up overlap whatever the caller still waits for.
    const child = runStreaming('nft', ['-f', '-'], { netns: this.netns, allowFail: true });
    // Killed before it read anything: nothing applied.
    const discard = async () => void (child.abort(), await child.end());
    const t = await text.catch(async (err: unknown) => {
      await discard();
      throw err;
    });
    if (!t) return discard();
    void child.write(t);
    this.check(await child.end(), t.length);
  }

  private check(r: RunResult, bytes: number): void {
    if (r.code !== 0) {
      throw new NftError(`nft -f failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(0, 3).join(' | ')}`, { exitCode: r.code, bytes });
    }
  }

  /**
   * Chains from `list chains` and sets from terse `-t list sets` (without
   * elements): near 10 ms at 10 000 Services, where `list tables`, `list
   * chain` or a plain `list sets` take 300+ ms (nft 1.0.6 loads every set
   * element for them). A table without chains counts as absent.
   */
  async listTable(family: string, table: string): Promise<NftTableObjects | undefined> {
    // One process for both lists (a fork of a daemon with a large heap is not free): nft prints one JSON document per command.
    const r = await run('nft', ['-j', '-t', `list chains ${family}; list sets ${family}`], { netns: this.netns, allowFail: true });
    if (r.code !== 0) throw new NftError(`nft -j -t list chains/sets ${family} failed: ${r.stderr.trim()}`);
    const objs = r.stdout
      .split('\n')
      .filter((l) => l.trim())
      .flatMap((l) => (JSON.parse(l) as { nftables: NftJsonObj[] }).nftables);
    const names = (kind: 'chain' | 'set') =>
      new Set(objs.map((o) => o[kind]).filter((o): o is { table: string; name: string } => !!o && o.table === table).map((o) => o.name));
    const chains = names('chain');
    return chains.size ? { chains, sets: names('set') } : undefined;
  }

  async listChain(family: string, table: string, chain: string): Promise<string[] | undefined> {
    const r = await run('nft', ['list', 'chain', family, table, chain], { netns: this.netns, allowFail: true });
    if (r.code !== 0) return undefined;
    const lines = r.stdout.split('\n').map((l) => l.trim());
    const start = lines.findIndex((l) => l.startsWith('chain '));
    return lines.slice(start + 1).filter((l) => l && l !== '}' && !l.startsWith('type ') && !l.startsWith('table '));
  }
}

/**
 * Removes a table if it exists, in one transaction that cannot fail on
 * absence ("add" then "delete": the add is a no-op when it exists).
 */
export function deleteTableText(family: string, table: string): string {
  return `add table ${family} ${table}\ndelete table ${family} ${table}\n`;
}
