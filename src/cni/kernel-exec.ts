import { readFileSync, writeFileSync } from 'node:fs';
import { run, type RunResult } from '../exec/run.js';
import { ExecIptables, detectIptablesBackend, type IptablesClient } from '../netfilter/iptables.js';
import type { ShellPool } from './shell-pool.js';
import type { BridgePort, BridgeState, CniKernel, ContainerLinkState, NetnsRef } from './kernel.js';
import { openContainerNetns } from './netns.js';

export interface ExecKernelOptions {
  /** Named netns for host-side work (tests, the lab). Default: this process's netns. */
  hostNetns?: string;
  /** Start commands through these warm shells instead of from Node (long-lived server). Default: src/exec run(). */
  shells?: ShellPool;
}

interface IpAddrJson {
  ifname: string;
  address?: string;
  mtu?: number;
  flags?: string[];
  ifalias?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: Array<{ family: string; local: string; prefixlen: number }>;
}

interface IpRouteJson {
  dst: string;
  gateway?: string;
  dev?: string;
}

/** `/run/netns/<plain name>` (or /var/run/...) can use `ip -n`, which is cheaper than nsenter. */
export function namedNetns(path: string): string | undefined {
  const m = /^\/(?:var\/)?run\/netns\/([A-Za-z0-9_.-]+)$/.exec(path);
  return m ? m[1] : undefined;
}

/** Batch text is built from checked words (plan.ts); a line break inside a line would be a second command. */
function batchText(lines: string[]): string {
  for (const l of lines) if (/[\0\n\r]/.test(l)) throw new Error(`refusing an ip -batch line holding a line break or NUL: ${JSON.stringify(l)}`);
  return lines.join('\n') + '\n';
}

function notFound(r: RunResult): boolean {
  return /does not exist|Cannot find device|No such device/i.test(r.stderr);
}

/** CniKernel over iproute2 via src/exec/run.ts. */
export class ExecCniKernel implements CniKernel {
  private ipForwardDone = false;
  private readonly iptablesClients = new Map<string, Promise<IptablesClient>>();

  constructor(private readonly opts: ExecKernelOptions = {}) {}

  /** Ends the shell pool, if any (server shutdown). */
  close(): void {
    this.opts.shells?.close();
  }

  /** Every process start goes through here: the shell pool when given, else src/exec run(). */
  private exec(cmd: string, args: string[], input?: string, allowFail = false): Promise<RunResult> {
    if (this.opts.shells) return this.opts.shells.run(cmd, args, { input, allowFail });
    return run(cmd, args, { input, allowFail });
  }

  private hostIp(args: string[], allowFail = false, input?: string): Promise<RunResult> {
    const ns = this.opts.hostNetns;
    return this.exec('ip', ns ? ['-n', ns, ...args] : args, input, allowFail);
  }

  /** `ip` inside a netns path: `ip -n` for named ones, else `nsenter --net=<path> ip`. */
  private nsIp(netnsPath: string, args: string[], input?: string, allowFail = false): Promise<RunResult> {
    const name = namedNetns(netnsPath);
    if (name) return this.exec('ip', ['-n', name, ...args], input, allowFail);
    return this.exec('nsenter', [`--net=${netnsPath}`, 'ip', ...args], input, allowFail);
  }

  async readBridge(name: string): Promise<BridgeState | undefined> {
    const r = await this.hostIp(['-j', '-d', 'addr', 'show', 'dev', name], true);
    if (r.code !== 0) {
      if (notFound(r)) return undefined;
      throw new Error(`ip addr show dev ${name}: ${r.stderr.trim()}`);
    }
    const [l] = JSON.parse(r.stdout) as IpAddrJson[];
    if (!l) return undefined;
    return {
      name,
      isBridge: l.linkinfo?.info_kind === 'bridge',
      mac: l.address ?? '',
      up: (l.flags ?? []).includes('UP'),
      mtu: l.mtu ?? 0,
      addrs: (l.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
    };
  }

  async hostBatch(lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    await this.hostIp(['-batch', '-'], false, batchText(lines));
  }

  async containerBatch(netnsRef: string, lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    await this.nsIp(netnsRef, ['-batch', '-'], batchText(lines));
  }

  async deleteHostLink(name: string): Promise<boolean> {
    const r = await this.hostIp(['link', 'del', 'dev', name], true);
    if (r.code === 0) return true;
    if (notFound(r)) return false;
    throw new Error(`ip link del ${name}: ${r.stderr.trim()}`);
  }

  openNetns(netnsPath: string): NetnsRef {
    const host = this.opts.hostNetns;
    return openContainerNetns(netnsPath, ['/proc/self/ns/net', ...(host ? [`/run/netns/${host}`] : []), '/proc/1/ns/net']);
  }

  async ensureIpForward(): Promise<void> {
    if (this.ipForwardDone) return;
    if (this.opts.hostNetns) {
      await this.exec('ip', ['netns', 'exec', this.opts.hostNetns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    } else {
      const path = '/proc/sys/net/ipv4/ip_forward';
      if (readFileSync(path, 'utf8').trim() !== '1') writeFileSync(path, '1');
    }
    this.ipForwardDone = true;
  }

  async readContainerLink(netnsPath: string, ifname: string): Promise<ContainerLinkState | undefined> {
    const a = await this.nsIp(netnsPath, ['-j', 'addr', 'show', 'dev', ifname], undefined, true);
    if (a.code !== 0) {
      if (notFound(a)) return undefined;
      throw new Error(`ip addr show dev ${ifname} in ${netnsPath}: ${a.stderr.trim()}`);
    }
    const [l] = JSON.parse(a.stdout) as IpAddrJson[];
    if (!l) return undefined;
    const r = await this.nsIp(netnsPath, ['-j', '-4', 'route', 'show']);
    const routes = (JSON.parse(r.stdout || '[]') as IpRouteJson[]).map((x) => ({
      dst: x.dst === 'default' ? '0.0.0.0/0' : x.dst.includes('/') ? x.dst : `${x.dst}/32`,
      gw: x.gateway,
      dev: x.dev,
    }));
    return {
      name: l.ifname,
      mac: l.address ?? '',
      mtu: l.mtu ?? 0,
      up: (l.flags ?? []).includes('UP'),
      addrs: (l.addr_info ?? []).filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`),
      routes,
    };
  }

  async listBridgePorts(bridge: string): Promise<BridgePort[]> {
    const r = await this.hostIp(['-j', 'link', 'show', 'master', bridge], true);
    if (r.code !== 0) {
      if (notFound(r)) return [];
      throw new Error(`ip link show master ${bridge}: ${r.stderr.trim()}`);
    }
    return (JSON.parse(r.stdout || '[]') as IpAddrJson[]).map((l) => ({ name: l.ifname, alias: l.ifalias }));
  }

  iptables(backend?: 'legacy' | 'nft'): Promise<IptablesClient> {
    const key = backend ?? 'detect';
    let p = this.iptablesClients.get(key);
    if (!p) {
      p = this.makeIptables(backend);
      this.iptablesClients.set(key, p);
      p.catch(() => this.iptablesClients.delete(key));
    }
    return p;
  }

  private async makeIptables(backend?: 'legacy' | 'nft'): Promise<IptablesClient> {
    const ns = this.opts.hostNetns;
    if (!this.opts.shells) return ExecIptables.create({ netns: ns, backend });
    // Same commands as ExecIptables, started through the shell pool.
    const b = backend ?? (await detectIptablesBackend(ns));
    const wrap = (tool: string, args: string[]): [string, string[]] => (ns ? ['ip', ['netns', 'exec', ns, tool, ...args]] : [tool, args]);
    return {
      backend: b,
      restore: async (text: string) => {
        const [cmd, args] = wrap(`iptables-${b}-restore`, ['--noflush', '-w', '5']);
        await this.exec(cmd, args, text);
      },
      save: async (table: string) => {
        const [cmd, args] = wrap(`iptables-${b}-save`, ['-t', table]);
        return (await this.exec(cmd, args)).stdout;
      },
    };
  }
}
