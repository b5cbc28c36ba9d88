import { WeftError } from '../core/errors.js';
import { hasOsPipe } from '../exec/pipe.js';
import { addonFunction } from '../native/addon.js';
import { run, runStreaming, type RunResult, type StreamingRun } from '../exec/run.js';

/** `nft -f` refused a transaction (nothing of it was applied). */
export class NftError extends WeftError {
  override readonly code = 'ERR_NFT';
}

/** Names of the chains and sets (maps included, as the kernel counts them) of one table. */
export interface NftTableObjects {
  chains: Set<string>;
  sets: Set<string>;
}

/** The nftables operations weft-proxy needs; ExecNft runs `nft`, FakeNft keeps state in memory. */
export interface NftClient {
  /** Applies `nft -f` text as one atomic transaction; throws NftError and changes nothing on failure. */
  apply(text: string): Promise<void>;
  /**
   * The same for a transaction still being produced: nft starts at once and
   * parses each piece as it comes. A producer that throws aborts it (nothing
   * applied) and the error is rethrown.
   */
  applyStream(pieces: AsyncIterable<string> | Iterable<string>): Promise<void>;
  /** Releases what the client keeps open between transactions (nothing is removed). */
  close?(): Promise<void>;
  /** Chains and sets of a table; undefined when the table does not exist. */
  listTable(family: string, table: string): Promise<NftTableObjects | undefined>;
  /** Rule bodies of one chain as nft prints them; undefined when the chain (or table) does not exist. */
  listChain(family: string, table: string, chain: string): Promise<string[] | undefined>;
}

interface NftJsonObj {
  chain?: { table: string; name: string };
  set?: { table: string; name: string };
  map?: { table: string; name: string };
}

/** Address families by nft's name (linux/netfilter.h NFPROTO_*). */
const NFPROTO: Record<string, number> = { inet: 1, ip: 2, arp: 3, netdev: 5, bridge: 7, ip6: 10 };

/** The addon's netlink listing (native/src/nftlist.c), when built. */
const nftList = addonFunction<(netns: string, family: number, table: string) => Promise<{ chains: string[]; sets: string[] }>>('nftList');

/** nft's location prefix: "<input>:<line>:<first column>-<last column>: Error: ...". */
const NFT_LOCATION = /^(\S+):(\d+):(\d+)-(\d+): (.*)$/;

/**
 * nft's error lines, each followed by the input line it points at (quoted,
 * with the columns it names), as nft itself does for stdin but cannot for a
 * pipe it has already read. Lines nft quoted itself, and caret lines, are
 * dropped: the quote replaces them. Pure.
 */
export function quoteNftErrors(stderr: string, input: string): string[] {
  const out: string[] = [];
  let lines: string[] | undefined;
  for (const raw of stderr.split('\n')) {
    const line = raw.trimEnd();
    const m = NFT_LOCATION.exec(line);
    if (!m) continue;
    lines ??= input.split('\n');
    const [, , ln, from, to, what] = m;
    const text = lines[Number(ln) - 1];
    out.push(text === undefined ? line : `line ${ln}: ${what}: ${excerpt(text, Number(from), Number(to))}`);
  }
  // Not in nft's located form (a crash, a missing binary): the first lines as they are.
  return out.length ? out : stderr.trim().split('\n').filter(Boolean);
}

/** The columns nft names (1-based, inclusive) in brackets, with some context: an `add element` line can hold 40 KB. */
function excerpt(text: string, from: number, to: number, context = 60): string {
  const start = Math.max(0, from - 1 - context);
  const end = Math.min(text.length, to + context);
  const pre = start > 0 ? '…' : '';
  const post = end < text.length ? '…' : '';
  return `${pre}${text.slice(start, from - 1)}[${text.slice(from - 1, to)}]${text.slice(to, end)}${post}`.trimEnd();
}

export interface ExecNftOptions {
  /**
   * Keep the next transaction's `nft` started and waiting for its input, so
   * a sync does not wait for a process to start (~5 ms, a third of a small
   * sync). For long-lived users (the proxy daemon); `close()` ends it.
   */
  keepReady?: boolean;
  /** How `listTable` reads the kernel: over netlink in-process (default when the addon is built) or with an `nft` child. */
  lister?: 'netlink' | 'nft';
}

/** Runs the `nft` binary (optionally inside a netns); transactions go through a pipe. */
export class ExecNft implements NftClient {
  private ready: StreamingRun | undefined;
  private closed = false;

  constructor(
    private readonly netns?: string,
    private readonly opts: ExecNftOptions = {},
  ) {
    if (opts.keepReady) this.prepare();
  }

  async apply(text: string): Promise<void> {
    if (text) await this.applyStream([text]);
  }

  async applyStream(pieces: AsyncIterable<string> | Iterable<string>): Promise<void> {
    if (this.closed) throw new NftError('nft client closed');
    // One started ahead of time may have died meanwhile (killed by someone): start another.
    const child = this.ready && !this.ready.exited ? this.ready : this.start();
    this.ready = undefined;
    // Kept until nft exits: it cannot quote a line of a pipe it has consumed, so an error does it from these.
    const sent: string[] = [];
    try {
      try {
        for await (const piece of pieces) (sent.push(piece), await child.write(piece));
      } catch (err) {
        // Killed before its input ended: nft commits nothing.
        child.abort();
        await child.end();
        throw err;
      }
      this.check(await child.end(), child.written, sent);
    } finally {
      // After the caller resumes: a spawn forks this process (3-5 ms with a large heap), which the sync need not wait for.
      if (this.opts.keepReady) setImmediate(() => this.prepare());
    }
  }

  /** Starts the next transaction's nft unless one waits already or the client is closed. */
  private prepare(): void {
    if (!this.closed && !this.ready) this.ready = this.start();
  }

  /** Ends the waiting `nft` (empty input: it applies nothing and exits). */
  async close(): Promise<void> {
    this.closed = true;
    const r = this.ready;
    this.ready = undefined;
    await r?.end();
  }

  /**
   * nft reads all of `-f -` before it parses any of it, but parses a file as
   * it reads it: a real pipe opened as /dev/fd/0 lets it parse while the
   * rest is rendered (without the native addon: plain stdin).
   */
  private start(): StreamingRun {
    const byPath = hasOsPipe();
    return runStreaming('nft', ['-f', byPath ? '/dev/fd/0' : '-'], { netns: this.netns, allowFail: true, stdinByPath: byPath });
  }

  private check(r: RunResult, bytes: number, sent: readonly string[]): void {
    if (r.code !== 0) {
      const errors = quoteNftErrors(r.stderr, sent.join(''));
      throw new NftError(`nft -f failed (exit ${r.code}): ${errors.slice(0, 3).join(' | ')}`, { exitCode: r.code, bytes, errors });
    }
  }

  /**
   * Chains and sets (maps included) of one table. In-process over netlink
   * when the native addon is built (under a millisecond, and no process
   * competing with the render for the CPU); otherwise `nft -j -t list chains;
   * list sets`, ~10 ms at 10 000 Services (`list tables`, `list chain` or a
   * plain `list sets` take 300+ ms: nft 1.0.6 loads every set element for
   * them). A table without chains counts as absent.
   */
  async listTable(family: string, table: string): Promise<NftTableObjects | undefined> {
    const proto = NFPROTO[family];
    const netlink = nftList && proto !== undefined && this.opts.lister !== 'nft';
    const found = netlink ? await this.listNetlink(proto, family, table) : await this.listWithNft(family, table);
    return found.chains.size ? found : undefined;
  }

  private async listNetlink(proto: number, family: string, table: string): Promise<NftTableObjects> {
    try {
      const r = await nftList!(this.netns ?? '', proto, table);
      return { chains: new Set(r.chains), sets: new Set(r.sets) };
    } catch (err) {
      throw new NftError(`listing nftables table ${family} ${table} over netlink failed: ${(err as Error).message}`);
    }
  }

  private async listWithNft(family: string, table: string): Promise<NftTableObjects> {
    // One process for both lists (a fork of a daemon with a large heap is not free): nft prints one JSON document per command.
    const r = await run('nft', ['-j', '-t', `list chains ${family}; list sets ${family}; list maps ${family}`], { netns: this.netns, allowFail: true });
    if (r.code !== 0) throw new NftError(`nft -j -t list chains/sets/maps ${family} failed: ${r.stderr.trim()}`);
    const objs = r.stdout
      .split('\n')
      .filter((l) => l.trim())
      .flatMap((l) => (JSON.parse(l) as { nftables: NftJsonObj[] }).nftables);
    const names = (kinds: readonly ('chain' | 'set' | 'map')[]) =>
      new Set(
        objs
          .flatMap((o) => kinds.map((k) => o[k]))
          .filter((o): o is { table: string; name: string } => !!o && o.table === table)
          .map((o) => o.name),
      );
    return { chains: names(['chain']), sets: names(['set', 'map']) };
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
