import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { deleteTableText, type NftClient } from '../../netfilter/nft.js';
import type { ModeSyncResult, ProxyModeBackend } from '../backend.js';
import { groupByService } from '../iptables/render.js';
import type { ProxyModel } from '../model/model.js';
import type { ServicePortInfo } from '../model/service-port.js';
import { FIXED, NFT_FAMILY, NFT_TABLE } from './names.js';
import { BASE_CHAINS } from './static.js';
import { prepareFullSync, renderNftables, summarize, type NftExisting, type NftRenderInput, type NftRenderResult, type NftRenderState } from './render.js';
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
    let r: NftRenderResult;
    try {
      if (doFull) {
        const rendering = this.renderFull(input);
        // nft starts while the listing is awaited (after the render: spawning costs this thread a
        // few ms) and reads the transaction when it is ready.
        await this.nft.apply(rendering.then((x) => x.text));
        r = await rendering;
      } else {
        r = renderNftables(input);
        await this.nft.apply(r.text);
      }
    } catch (err) {
      this.state = undefined;
      if (!doFull || !input.existing) throw err;
      this.log.warn({ err: errorMessage(err) }, 'full nftables sync refused; recreating the table');
      r = renderNftables({ ...input, existing: undefined });
      await this.nft.apply(deleteTableText(NFT_FAMILY, NFT_TABLE) + r.text);
    }
    this.state = r.commit();
    if (r.conflicts.length) this.log.warn({ conflicts: r.conflicts.slice(0, 5), count: r.conflicts.length }, 'service addresses claimed twice; first service keeps them');
    this.log.debug({ full: r.full, bytes: r.text.length, services: this.state.services.size }, 'nftables rules synced');
    return { wrote: r.text !== '', full: r.full, ...summarize(this.state) };
  }

  /** Lists the table (a child process) while the CPU-heavy part renders; `input.existing` is what it found. */
  private async renderFull(input: NftRenderInput & { existing: NftExisting | undefined }): Promise<NftRenderResult> {
    const listing = this.nft.listTable(NFT_FAMILY, NFT_TABLE);
    const prepared = prepareFullSync(input);
    input.existing = await listing;
    return prepared.finish(input.existing);
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
