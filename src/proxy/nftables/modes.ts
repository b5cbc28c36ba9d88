import { access } from 'node:fs/promises';
import { errorMessage } from '../../core/errors.js';
import { ExecIptables, type IptablesChainClient } from '../../netfilter/iptables.js';
import { ExecNft, deleteTableText, type NftClient } from '../../netfilter/nft.js';
import type { ProxyModeBackend } from '../backend.js';
import type { ModeOptions, ProxyMode } from '../mode-options.js';
import { IptablesProxier } from '../iptables/proxier.js';
import type { IptablesProxyConfig } from '../iptables/service-rules.js';
import { DummyHolder, ExecIpset, ExecIpvsadm } from '../ipvs/clients.js';
import { ProcSysctl } from '../../kernel/sysctl.js';
import { checkIpvsKernel } from '../ipvs/kernel.js';
import { IpvsProxier, removeIpvsLeftovers } from '../ipvs/proxier.js';
import { NFT_FAMILY, NFT_TABLE } from './names.js';
import { NftablesProxier } from './proxier.js';

/**
 * Builds the nftables or ipvs mode backend; what the other modes left
 * behind is removed after its first successful sync (a host switched from
 * one mode to another must not keep two sets of rules, nor go without rules
 * while the sources list). ipvs refuses to start without IP_VS and dummy links.
 */
export async function createMode(mode: 'nftables' | 'ipvs', o: ModeOptions, cfg: IptablesProxyConfig): Promise<ProxyModeBackend> {
  if (mode === 'ipvs') {
    await checkIpvsKernel();
    const ipt = o.iptables ?? (await ExecIptables.create({ netns: o.netns, backend: o.iptablesBackend }));
    const clients = { ipvs: new ExecIpvsadm(o.netns), ipset: new ExecIpset(o.netns), holder: new DummyHolder(o.netns), ipt, sysctl: o.sysctl ?? new ProcSysctl(o.netns) };
    const px = new IpvsProxier(clients, { ...cfg, scheduler: o.ipvsScheduler ?? 'rr', nodeIPs: o.nodeIP ? [o.nodeIP] : [], strictARP: o.ipvsStrictARP }, o.log);
    return new RemovingLeftovers(px, 'ipvs', o, cfg);
  }
  return new RemovingLeftovers(new NftablesProxier(o.nft ?? new ExecNft(o.netns, { keepReady: true }), cfg, o.log), 'nftables', o, cfg);
}

/** A mode backend that removes the other modes' rules once its own are in place. */
export class RemovingLeftovers implements ProxyModeBackend {
  private done = false;
  constructor(
    readonly inner: ProxyModeBackend,
    private readonly keep: ProxyMode,
    private readonly o: ModeOptions,
    private readonly cfg: IptablesProxyConfig,
  ) {}
  get mode(): string {
    return this.inner.mode;
  }
  async sync(...args: Parameters<ProxyModeBackend['sync']>): ReturnType<ProxyModeBackend['sync']> {
    const r = await this.inner.sync(...args);
    if (!this.done) {
      this.done = true;
      await removeLeftovers(this.keep, this.o, this.cfg);
    }
    return r;
  }
  healthy(): Promise<boolean> {
    return this.inner.healthy();
  }
  cleanup(): Promise<void> {
    return this.inner.cleanup();
  }
  async close(): Promise<void> {
    await this.inner.close?.();
  }
}

const exists = (p: string) => access(p).then(() => true, () => false);

function iptablesClients(o: ModeOptions): IptablesChainClient[] {
  return o.iptables ? [o.iptables] : [new ExecIptables('legacy', o.netns), new ExecIptables('nft', o.netns)];
}

/**
 * Removes the rules of every mode except `keep` (all of them for
 * `--cleanup`). Each part is best effort: a missing tool or table is not an
 * error, and one failing part does not stop the others.
 */
export async function removeLeftovers(keep: ProxyMode | 'none', o: ModeOptions, cfg: IptablesProxyConfig): Promise<void> {
  const step = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      o.log.warn({ mode: what, err: errorMessage(err) }, 'could not remove leftover proxy rules');
    }
  };
  if (keep !== 'iptables') {
    for (const ipt of iptablesClients(o)) {
      await step('iptables', () => new IptablesProxier(ipt, cfg, o.log).cleanup());
    }
  }
  if (keep !== 'nftables') {
    const nft: NftClient = o.nft ?? new ExecNft(o.netns);
    await step('nftables', async () => {
      if (await nft.listTable(NFT_FAMILY, NFT_TABLE)) {
        await nft.apply(deleteTableText(NFT_FAMILY, NFT_TABLE));
        o.log.info({ table: `${NFT_FAMILY} ${NFT_TABLE}` }, 'removed nftables mode table');
      }
    });
  }
  if (keep !== 'ipvs') {
    const ipvsLoaded = (await exists('/proc/net/ip_vs')) || (await exists('/sys/module/ip_vs'));
    for (const ipt of iptablesClients(o)) {
      await step('ipvs', () =>
        removeIpvsLeftovers(
          { ipt, ipset: new ExecIpset(o.netns), holder: new DummyHolder(o.netns), ...(ipvsLoaded ? { ipvs: new ExecIpvsadm(o.netns) } : {}) },
          o.nodeIP ? [o.nodeIP] : [],
        ),
      );
    }
  }
}
