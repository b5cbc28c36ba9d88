import type { Logger } from '../../core/log.js';
import type { IptablesChainClient } from '../../netfilter/iptables.js';
import type { ModeSyncResult, ProxyModeBackend } from '../backend.js';
import type { ProxyModel } from '../model/model.js';
import { CHAIN, OWNED_CHAIN_RE } from './names.js';
import { CHUNK_END, FIXED_CHAINS, JUMPS, groupByService, parseSave, renderIptablesPieces, type ExistingRules, type IptablesRenderState, type IptablesRenderSummary } from './render.js';
import type { IptablesProxyConfig } from './service-rules.js';

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
    // A full sync reads what the host holds (stale chains go, missing jumps come back, chains that
    // already hold the right rules are not rewritten) while the restore tool starts.
    const existing = doFull ? this.readExisting() : undefined;
    let session = doFull ? this.ipt.openRestore() : undefined;
    let commits = 0;
    let r: IptablesRenderSummary;
    try {
      const pieces = renderIptablesPieces({
        model: { services: groupByService(model.servicePorts.values()), endpoints: model.endpoints },
        cfg: this.cfg,
        changed: doFull ? 'all' : changed,
        previous: this.state,
        existing: existing && (await existing),
        maxRulesPerRestore: this.maxRulesPerRestore,
      });
      for (;;) {
        const step = pieces.next();
        if (step.done) {
          r = step.value;
          break;
        }
        if (step.value === CHUNK_END) continue;
        if (step.value.endsWith('COMMIT\n')) commits++;
        session ??= this.ipt.openRestore();
        await session.write(step.value);
      }
      if (session) await session.end();
    } catch (err) {
      session?.abort();
      this.state = undefined;
      throw err;
    }
    this.state = r.state;
    this.log.debug({ full: r.full, commits, services: r.state.services.size }, 'iptables rules synced');
    return { wrote: commits > 0, full: r.full, ruleCounts: r.ruleCounts, healthChecks: r.healthChecks, noLocalEndpoints: r.noLocalEndpoints };
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
    const text = await renderCleanup(this.ipt);
    if (text) await this.ipt.restore(text);
  }

  /** One iptables-save of every table: iptables-nft dumps the whole ruleset for each call anyway. */
  private async readExisting(): Promise<ExistingRules> {
    return parseSave(await this.ipt.save());
  }
}

/**
 * Restore text that removes every weft-proxy rule: jumps from built-in chains
 * (deleted by rewriting them without ours is not possible with --noflush, so
 * they are deleted rule by rule with -D), then our chains flushed and deleted.
 */
export async function renderCleanup(ipt: { save(table: string): Promise<string> }): Promise<string> {
  const out: string[] = [];
  for (const table of ['filter', 'nat', 'mangle'] as const) {
    const save = await ipt.save(table);
    const existing = parseSave(save);
    const chains = [...(existing.chains.get(table) ?? [])].filter(
      (c) => OWNED_CHAIN_RE.test(c) || (FIXED_CHAINS[table] as readonly string[]).includes(c),
    );
    const deletes = save
      .split('\n')
      .filter((l) => l.startsWith('-A ') && /^[A-Z]+$/.test(l.split(' ')[1]!) && JUMPS.some((j) => l.includes(`-j ${j.target}`) || l.endsWith(`-j ${j.target}`)))
      .filter((l) => chains.includes(/ -j (\S+)/.exec(l)?.[1] ?? ''))
      .map((l) => `-D ${l.slice(3)}`);
    if (chains.length === 0 && deletes.length === 0) continue;
    out.push(`*${table}`, ...deletes, ...chains.map((c) => `:${c} - [0:0]`), ...chains.map((c) => `-X ${c}`), 'COMMIT');
  }
  return out.length ? out.join('\n') + '\n' : '';
}
