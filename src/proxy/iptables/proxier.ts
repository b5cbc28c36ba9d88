import type { Logger } from '../../core/log.js';
import type { IptablesChainClient, RestoreSession } from '../../netfilter/iptables.js';
import type { ModeSyncResult, ProxyModeBackend } from '../backend.js';
import type { ProxyModel } from '../model/model.js';
import { CHAIN } from './names.js';
import { CHUNK_END, JUMPS, NOTHING_OURS, groupByService, holdsNoneOfOurs, isOurChain, parseSave, renderIptablesPieces, type ExistingRules, type IptablesRenderState, type IptablesRenderSummary } from './render.js';
import { RestoreTranscript } from './restore-error.js';
import type { IptablesProxyConfig } from './service-rules.js';

/** How much speculative full-sync text may wait for iptables-save's answer. */
const MAX_HELD_BYTES = 4 * 1024 * 1024;
/** How often (in held text) the speculative render looks for iptables-save's answer. */
const LOOK_EVERY_BYTES = 1024 * 1024;

/**
 * iptables mode: renders the model with `renderIptablesPieces` and streams
 * the text into one `iptables-restore --noflush -w` as it is produced, so
 * the tool parses (and commits finished COMMIT blocks) while the rest
 * renders. The render state is kept only after a successful restore, so a
 * failed sync leaves the next one full.
 */
export class IptablesProxier implements ProxyModeBackend {
  readonly mode = 'iptables';
  private state: IptablesRenderState | undefined;
  /** Stale chains kept because someone else's rules jump to them (logged once each). */
  private readonly kept = new Set<string>();

  constructor(
    private readonly ipt: IptablesChainClient,
    private readonly cfg: IptablesProxyConfig,
    private readonly log: Logger,
    /**
     * Rules per COMMIT block (see renderIptables). Default: 5000 on nft,
     * whose restore cost grows faster than linearly with a transaction;
     * unlimited on legacy, which rewrites the whole table on every COMMIT.
     */
    private readonly maxRulesPerRestore: number = ipt.backend === 'legacy' ? Infinity : 5000,
  ) {}

  async sync(model: ProxyModel, changed: ReadonlySet<string>, full: boolean): Promise<ModeSyncResult> {
    const doFull = full || !this.state;
    const render = (existing?: ExistingRules) =>
      renderIptablesPieces({
        model: { services: groupByService(model.servicePorts.values()), endpoints: model.endpoints },
        cfg: this.cfg,
        changed: doFull ? 'all' : changed,
        previous: this.state,
        existing,
        maxRulesPerRestore: this.maxRulesPerRestore,
        onKeptChain: (table, chain, refs) => this.noteKept(table, chain, refs),
      });
    let session: RestoreSession | undefined;
    let commits = 0;
    const sent = new RestoreTranscript();
    const send = async (piece: string) => {
      if (piece === CHUNK_END) return;
      if (piece.endsWith('COMMIT\n')) commits++;
      session ??= this.ipt.openRestore();
      sent.add(piece);
      await session.write(piece);
    };
    let r: IptablesRenderSummary;
    try {
      if (doFull) {
        // A full sync reads what the host holds (stale chains go, missing jumps come back, chains that
        // already hold the right rules are not rewritten) while the restore tool starts.
        // The save first: its answer is what the pieces wait for.
        const saving = this.readExisting();
        session = this.ipt.openRestore();
        r = await this.renderFull(render, saving, send);
      } else r = await drain(render(), send);
      if (session) await session.end().catch((err: unknown) => Promise.reject(sent.failure(err)));
    } catch (err) {
      session?.abort();
      this.state = undefined;
      throw err;
    }
    this.state = r.state;
    this.log.debug({ full: r.full, commits, services: r.state.services.size }, 'iptables rules synced');
    return { wrote: commits > 0, full: r.full, ruleCounts: r.ruleCounts, healthChecks: r.healthChecks, noLocalEndpoints: r.noLocalEndpoints };
  }

  /**
   * Renders a full sync while iptables-save runs, betting that the host holds
   * none of our rules (a fresh host): pieces are held back until the save
   * answers, then sent if the bet holds, or dropped and rendered again
   * against what the host holds (a restart, a resync).
   */
  private async renderFull(
    render: (existing: ExistingRules) => Generator<string, IptablesRenderSummary>,
    saving: Promise<ExistingRules>,
    send: (piece: string) => Promise<void>,
  ): Promise<IptablesRenderSummary> {
    // A holder, not a variable: the answer arrives in a callback.
    const answer: { saved?: { existing: ExistingRules } | { err: unknown } } = {};
    const settled = saving.then(
      (existing) => void (answer.saved = { existing }),
      (err: unknown) => void (answer.saved = { err }),
    );
    const bet = render(NOTHING_OURS);
    const held: string[] = [];
    let heldBytes = 0;
    let done: IptablesRenderSummary | undefined;
    while (!answer.saved) {
      const step = bet.next();
      if (step.done) {
        done = step.value;
        await settled;
        break;
      }
      const before = heldBytes;
      held.push(step.value);
      heldBytes += step.value.length;
      // Now and then a turn of the event loop lets the save's answer in (each turn costs the
      // render time: not after every piece); past a few MB of text (a host full of rules answers
      // slowly, and probably holds ours) stop betting and wait for it.
      if (heldBytes > MAX_HELD_BYTES) await settled;
      else if (Math.floor(heldBytes / LOOK_EVERY_BYTES) > Math.floor(before / LOOK_EVERY_BYTES)) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const saved = answer.saved!;
    if ('err' in saved) throw saved.err;
    if (!holdsNoneOfOurs(saved.existing)) return drain(render(saved.existing), send);
    // Written in one go (in order; one turn of the event loop for all, not one per piece).
    await Promise.all(held.map(send));
    return done ?? drain(bet, send);
  }

  private noteKept(table: string, chain: string, refs: readonly string[]): void {
    const key = `${table}/${chain}`;
    if (this.kept.has(key)) return;
    this.kept.add(key);
    this.log.warn({ table, chain, rule: refs[0], rules: refs.length }, 'stale chain is referenced by a rule that is not ours: flushed it and kept it (delete that rule to let it go)');
  }

  /** Stale chains flushed but kept because someone else's rules jump to them ("table/CHAIN"). */
  get keptChains(): ReadonlySet<string> {
    return this.kept;
  }

  async healthy(): Promise<boolean> {
    for (const table of ['mangle', 'nat', 'filter']) if (!(await this.ipt.chainExists(table, CHAIN.CANARY))) return false;
    return true;
  }

  /** Forgets what was written, so the next sync is full (after a flush by someone else). */
  reset(): void {
    this.state = undefined;
  }

  async cleanup(): Promise<void> {
    this.state = undefined;
    const text = await renderCleanup(this.ipt, (table, chain, refs) =>
      this.log.warn({ table, chain, rule: refs[0], rules: refs.length }, 'chain is referenced by a rule that is not ours: flushed it and kept it'),
    );
    if (text) await this.ipt.restore(text);
  }

  /** One iptables-save of every table: iptables-nft dumps the whole ruleset for each call anyway. */
  private async readExisting(): Promise<ExistingRules> {
    return parseSave(await this.ipt.save());
  }
}

/** Sends every piece of a render, in order, and returns what the render tells besides its text. */
async function drain(pieces: Generator<string, IptablesRenderSummary>, send: (piece: string) => Promise<void>): Promise<IptablesRenderSummary> {
  for (;;) {
    const step = pieces.next();
    if (step.done) return step.value;
    await send(step.value);
  }
}

/**
 * Restore text that removes every weft-proxy rule: jumps from built-in chains
 * (deleted by rewriting them without ours is not possible with --noflush, so
 * they are deleted rule by rule with -D), then our chains flushed and deleted
 * - except those someone else's rules still jump to, which are only flushed.
 */
export async function renderCleanup(ipt: { save(table: string): Promise<string> }, onKept?: (table: string, chain: string, refs: readonly string[]) => void): Promise<string> {
  const out: string[] = [];
  for (const table of ['filter', 'nat', 'mangle'] as const) {
    const save = await ipt.save(table);
    const existing = parseSave(save);
    const chains = [...(existing.chains.get(table) ?? [])].filter((c) => isOurChain(table, c));
    const deleted = save
      .split('\n')
      .filter((l) => l.startsWith('-A ') && /^[A-Z]+$/.test(l.split(' ')[1]!) && JUMPS.some((j) => l.includes(`-j ${j.target}`) || l.endsWith(`-j ${j.target}`)))
      .filter((l) => chains.includes(/ -j (\S+)/.exec(l)?.[1] ?? ''));
    const deletes = deleted.map((l) => `-D ${l.slice(3)}`);
    // A chain some other rule (not deleted above, not in our chains) still jumps to cannot be deleted: flush it, keep it.
    const gone = new Set(deleted);
    const refs = (c: string) => (existing.foreignRefs?.get(`${table}/${c}`) ?? []).filter((l) => !gone.has(l));
    const kept = chains.filter((c) => refs(c).length > 0);
    for (const c of kept) onKept?.(table, c, refs(c));
    if (chains.length === 0 && deletes.length === 0) continue;
    out.push(`*${table}`, ...deletes, ...chains.map((c) => `:${c} - [0:0]`), ...chains.filter((c) => !kept.includes(c)).map((c) => `-X ${c}`), 'COMMIT');
  }
  return out.length ? out.join('\n') + '\n' : '';
}
