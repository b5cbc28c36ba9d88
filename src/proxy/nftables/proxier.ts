import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { deleteTableText, type NftClient } from '../../netfilter/nft.js';
import type { ModeSyncResult, ProxyModeBackend } from '../backend.js';
import { groupByService } from '../iptables/render.js';
import type { ProxyModel } from '../model/model.js';
import type { ServicePortInfo } from '../model/service-port.js';
import { FIXED, NFT_FAMILY, NFT_TABLE } from './names.js';
import { BASE_CHAINS } from './static.js';
import { renderNftables, streamFullSync, summarize, type NftExisting, type NftFullSyncResult, type NftRenderInput, type NftRenderResult, type NftRenderState } from './render.js';
import type { NftProxyConfig } from './service-rules.js';

/**
 * nftables mode: renders the model with `renderNftables` and applies each
 * sync as one `nft -f` transaction. The render state is kept only after a
 * successful apply, so a failed sync leaves the next one full. A full sync
 * that the kernel refuses (e.g. a table left by another weft version with
 * other base-chain priorities) is retried once on a recreated table.
 */
export class NftablesProxier implements ProxyModeBackend {
  readonly mode = 'nftables';
  private state: NftRenderState | undefined;

  constructor(
    private readonly nft: NftClient,
    private readonly cfg: NftProxyConfig,
    private readonly log: Logger,
  ) {}

  async sync(model: ProxyModel, changed: ReadonlySet<string>, full: boolean): Promise<ModeSyncResult> {
    const doFull = full || !this.state;
    const input = {
      model: { services: doFull ? groupByService(model.servicePorts.values()) : portsOf(model, changed), endpoints: model.endpoints },
      cfg: this.cfg,
      changed: doFull ? ('all' as const) : changed,
      previous: this.state,
      existing: undefined as NftExisting | undefined,
    };
    // Rendered as one text (partial syncs, the retry): applied after `prefix`.
    const applyText = async (p: NftRenderResult, prefix = '') => (await this.nft.apply(prefix + p.text), { ...p, bytes: p.text.length });
    let r: { full: boolean; conflicts: string[]; bytes: number; commit(): NftRenderState };
    try {
      r = doFull ? await this.applyFull(input) : await applyText(renderNftables(input));
    } catch (err) {
      this.state = undefined;
      if (!doFull || !input.existing) throw err;
      this.log.warn({ err: errorMessage(err) }, 'full nftables sync refused; recreating the table');
      r = await applyText(renderNftables({ ...input, existing: undefined }), deleteTableText(NFT_FAMILY, NFT_TABLE));
    }
    this.state = r.commit();
    if (r.conflicts.length) this.log.warn({ conflicts: r.conflicts.slice(0, 5), count: r.conflicts.length }, 'service addresses claimed twice; first service keeps them');
    this.log.debug({ full: r.full, bytes: r.bytes, services: this.state.services.size }, 'nftables rules synced');
    return { wrote: r.bytes > 0, full: r.full, ...summarize(this.state) };
  }

  /**
   * One streamed transaction: nft starts first and parses each piece while
   * the next renders; the table listing (a child process) runs meanwhile and
   * is needed only for the last piece, the stale removals. `input.existing`
   * is what it found.
   */
  private async applyFull(input: NftRenderInput & { existing: NftExisting | undefined }): Promise<NftFullSyncResult> {
    const sync = streamFullSync(input);
    let result: NftFullSyncResult | undefined;
    let listing: Promise<NftExisting | undefined> | undefined;
    const nft = this.nft;
    async function* transaction(): AsyncGenerator<string> {
      // Spawned after nft, whose start-up is on the critical path.
      listing = nft.listTable(NFT_FAMILY, NFT_TABLE);
      yield* sync.pieces();
      input.existing = await listing;
      result = sync.finish(input.existing);
      yield result.tail;
    }
    try {
      await this.nft.applyStream(transaction());
    } finally {
      // A failed apply may leave the listing unread: settle it before the retry looks at input.existing.
      if (listing && !result) input.existing = await listing.catch(() => undefined);
    }
    return result!;
  }

  /**
   * The canary: our base chain is there. `nft flush ruleset` (firewall
   * reloads) removes it; listing chains stays cheap at 10 000 Services, where
   * listing a chain's rules costs 300 ms. A `flush table` of ours alone is
   * repaired by the next periodic full sync.
   */
  async healthy(): Promise<boolean> {
    const t = await this.nft.listTable(NFT_FAMILY, NFT_TABLE);
    return !!t && t.chains.has(BASE_CHAINS[0]!.name) && t.chains.has(FIXED.MARK_MASQ);
  }

  reset(): void {
    this.state = undefined;
  }

  async close(): Promise<void> {
    await this.nft.close?.();
  }

  async cleanup(): Promise<void> {
    this.state = undefined;
    await this.nft.apply(deleteTableText(NFT_FAMILY, NFT_TABLE));
  }
}

/** Ports of the given Services only (a partial sync must not walk 10 000 Services). */
function portsOf(model: ProxyModel, services: ReadonlySet<string>): Map<string, ServicePortInfo[]> {
  const out = new Map<string, ServicePortInfo[]>();
  if (services.size === 0) return out;
  for (const p of model.servicePorts.values()) {
    if (!services.has(p.service)) continue;
    const list = out.get(p.service);
    if (list) list.push(p);
    else out.set(p.service, [p]);
  }
  for (const list of out.values()) list.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return out;
}
