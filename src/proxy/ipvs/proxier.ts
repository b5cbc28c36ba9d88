import type { Logger } from '../../core/log.js';
import type { IptablesChainClient } from '../../netfilter/iptables.js';
import type { ModeSyncResult, ProxyModeBackend } from '../backend.js';
import { parseSave } from '../iptables/render.js';
import type { ProxyModel } from '../model/model.js';
import type { IpsetClient, IpvsClient, ServiceIPHolder } from './clients.js';
import { IPSET, planIpvs, type IpvsProxyConfig } from './plan.js';
import { ensureIpvsSysctls } from './sysctls.js';
import type { Sysctl } from '../../kernel/sysctl.js';
import { IPVS_CHAIN, IPVS_JUMPS, diffIpvs, renderIpsets, renderIpvsIptables } from './render.js';

export interface IpvsClients {
  ipvs: IpvsClient;
  ipset: IpsetClient;
  holder: ServiceIPHolder;
  ipt: IptablesChainClient;
  /** Kernel parameters; set before the first sync (ensureIpvsSysctls). Absent: left alone (tests with fakes). */
  sysctl?: Sysctl;
}

/**
 * ipvs mode: every sync plans the whole model (cheap: no rule walk to
 * render) and sends only the differences to the kernel - ipsets swapped in
 * atomically, service IPs on the dummy device, ipvsadm commands for the
 * virtual and real servers that changed. The iptables rules are static and
 * written on full syncs. Needs IP_VS and dummy links (checkIpvsKernel).
 */
export class IpvsProxier implements ProxyModeBackend {
  readonly mode = 'ipvs';
  private wroteIptables = false;
  private sysctlsDone = false;

  constructor(
    private readonly c: IpvsClients,
    private readonly cfg: IpvsProxyConfig,
    private readonly log: Logger,
  ) {}

  /** Sets the kernel parameters ipvs mode needs; run once, before anything is written. */
  async start(): Promise<void> {
    if (this.sysctlsDone || !this.c.sysctl) return;
    await ensureIpvsSysctls(this.c.sysctl, this.log, { strictARP: this.cfg.strictARP });
    this.sysctlsDone = true;
  }

  async sync(model: ProxyModel, _changed: ReadonlySet<string>, full: boolean): Promise<ModeSyncResult> {
    await this.start();
    const plan = planIpvs(model.servicePorts.values(), (k) => model.endpoints.get(k), this.cfg);
    // Sets first: the iptables rules refer to them.
    await this.c.ipset.restore(renderIpsets(plan.ipsets));
    const doFull = full || !this.wroteIptables;
    if (doFull) {
      const existing = parseSave(`${await this.c.ipt.save('nat')}\n${await this.c.ipt.save('filter')}`);
      this.wroteIptables = false;
      await this.c.ipt.restore(renderIpvsIptables(this.cfg, existing.jumps));
      this.wroteIptables = true;
    }
    const owned = new Set([...(await this.c.holder.held()), ...plan.boundAddresses, ...this.cfg.nodeIPs]);
    await this.c.holder.sync(plan.boundAddresses);
    const commands = diffIpvs(await this.c.ipvs.list(), plan.virtualServers, owned);
    await this.c.ipvs.restore(commands);
    this.log.debug({ virtualServers: plan.virtualServers.length, commands: commands.split('\n').length - 1 }, 'ipvs synced');
    return {
      wrote: doFull || commands !== '',
      full: doFull,
      ruleCounts: { ipvs: plan.virtualServers.length, ipset: plan.ipsets.reduce((n, s) => n + s.members.length, 0) },
      healthChecks: plan.healthChecks,
      noLocalEndpoints: plan.noLocalEndpoints,
    };
  }

  async healthy(): Promise<boolean> {
    return this.c.ipt.chainExists('nat', IPVS_CHAIN.SERVICES);
  }

  async cleanup(): Promise<void> {
    this.wroteIptables = false;
    await removeIpvsLeftovers(this.c, this.cfg.nodeIPs);
  }
}

/** iptables-restore text that deletes ipvs mode's jumps and chains (from iptables-save output per table). */
export function renderIpvsIptablesCleanup(saves: { nat: string; filter: string }): string {
  const out: string[] = [];
  for (const table of ['nat', 'filter'] as const) {
    const text = saves[table];
    const chains = [...text.matchAll(/^:(WEFT-IPVS-[A-Z-]+) /gm)].map((m) => m[1]!);
    const deletes = text
      .split('\n')
      .filter((l) => IPVS_JUMPS.some((j) => j.table === table && l.startsWith(`-A ${j.chain} `) && l.endsWith(`-j ${j.target}`)))
      .map((l) => `-D ${l.slice(3)}`);
    if (!chains.length && !deletes.length) continue;
    out.push(`*${table}`, ...deletes, ...chains.map((c) => `:${c} - [0:0]`), ...chains.map((c) => `-X ${c}`), 'COMMIT');
  }
  return out.length ? out.join('\n') + '\n' : '';
}

/**
 * Removes everything ipvs mode writes: virtual servers on the addresses the
 * dummy device holds and on the node IPs (node ports), the device, the iptables rules (before the ipsets they
 * match on), then the ipsets. Each step tolerates "not there".
 */
export async function removeIpvsLeftovers(c: Partial<IpvsClients>, nodeIPs: readonly string[] = []): Promise<void> {
  const held = new Set([...((await c.holder?.held().catch(() => [])) ?? []), ...nodeIPs]);
  if (c.ipvs && held.size) {
    const cur = await c.ipvs.list().catch(() => []);
    await c.ipvs.restore(diffIpvs(cur, [], held));
  }
  await c.holder?.remove();
  if (c.ipt) {
    const text = renderIpvsIptablesCleanup({ nat: await c.ipt.save('nat'), filter: await c.ipt.save('filter') });
    if (text) await c.ipt.restore(text);
  }
  if (c.ipset) {
    const ours = new Set<string>(Object.values(IPSET).map((s) => s.name));
    for (const name of await c.ipset.list()) if (ours.has(name) || (name.startsWith('WEFT-') && name.endsWith('-TMP'))) await c.ipset.destroy(name);
  }
}
