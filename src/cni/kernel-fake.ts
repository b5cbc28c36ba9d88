import { ExecError } from '../core/errors.js';
import type { IptablesClient } from '../netfilter/iptables.js';
import { InvalidEnvError, UnknownContainerError } from './errors.js';
import type { BridgePort, BridgeState, CniKernel, ContainerLinkState, NetnsRef } from './kernel.js';

/**
 * How `ip -batch` reads a line (iproute2 getcmdline + makeargs): '#' starts a
 * comment, words are split on blanks, a word opened by ' or " runs to the
 * same quote (no escapes). A line break inside a "line" is a second command:
 * the fake refuses it outright.
 */
export function batchWords(line: string): string[] {
  if (/[\0\n\r]/.test(line)) throw new ExecError('ip -batch -', 1, `fake kernel: line holds a line break (ip would run a second command): ${JSON.stringify(line)}`);
  const text = line.includes('#') ? line.slice(0, line.indexOf('#')) : line;
  const words: string[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /[ \t]/.test(text[i]!)) i++;
    if (i >= text.length) break;
    const q = text[i];
    if (q === '"' || q === "'") {
      const end = text.indexOf(q, i + 1);
      if (end < 0) throw new ExecError('ip -batch -', 1, 'Unterminated quoted string');
      words.push(text.slice(i + 1, end));
      i = end + 1;
    } else {
      let j = i;
      while (j < text.length && !/[ \t]/.test(text[j]!)) j++;
      words.push(text.slice(i, j));
      i = j;
    }
  }
  return words;
}

interface HostLink {
  master?: string;
  alias?: string;
  peer?: { netns: string; ifname: string };
}

/** iptables fake that keeps the nat table as save text (enough for the masquerade code). */
export class FakeIptables implements IptablesClient {
  readonly backend = 'nft' as const;
  chains = new Map<string, string[]>([['POSTROUTING', []]]);
  failRestore = false;

  async restore(text: string): Promise<void> {
    if (this.failRestore) throw new ExecError('iptables-restore', 1, 'fake failure');
    for (const line of text.split('\n')) {
      let m: RegExpExecArray | null;
      if ((m = /^:(\S+) /.exec(line))) this.chains.set(m[1]!, []);
      else if ((m = /^-A (\S+) (.*)$/.exec(line))) this.chain(m[1]!).push(`-A ${m[1]} ${m[2]}`);
      else if ((m = /^-D (\S+) (.*)$/.exec(line))) {
        const rules = this.chain(m[1]!);
        const i = rules.indexOf(`-A ${m[1]} ${m[2]}`);
        if (i < 0) throw new ExecError('iptables-restore', 1, `no such rule: ${line}`);
        rules.splice(i, 1);
      } else if ((m = /^-F (\S+)$/.exec(line))) this.chains.set(m[1]!, []);
      else if ((m = /^-X (\S+)$/.exec(line))) {
        for (const rules of this.chains.values()) if (rules.some((r) => r.endsWith(`-j ${m![1]}`))) throw new ExecError('iptables-restore', 1, 'chain in use');
        this.chains.delete(m[1]!);
      }
    }
  }

  private chain(name: string): string[] {
    const c = this.chains.get(name);
    if (!c) throw new ExecError('iptables-restore', 1, `no chain ${name}`);
    return c;
  }

  async save(): Promise<string> {
    const heads = [...this.chains.keys()].map((c) => `:${c} ${c === 'POSTROUTING' ? 'ACCEPT' : '-'} [0:0]`);
    return ['*nat', ...heads, ...[...this.chains.values()].flat(), 'COMMIT', ''].join('\n');
  }
}

/**
 * A kernel in memory that understands the `ip -batch` lines the plugin emits
 * and rejects what the kernel would (duplicate names, a missing netns, a
 * duplicate route). `failOn` makes a matching line fail, after the earlier
 * lines of its batch took effect, as `ip -batch` does.
 */
export class FakeCniKernel implements CniKernel {
  readonly bridges = new Map<string, BridgeState>();
  readonly hostLinks = new Map<string, HostLink>();
  readonly netns = new Map<string, Map<string, ContainerLinkState>>();
  readonly lines: string[] = [];
  readonly ipt = new FakeIptables();
  failOn?: RegExp;
  ipForward = false;
  /** Paths that are "the host's own" namespace (openNetns refuses them). */
  readonly hostNetnsPaths = new Set(['/proc/self/ns/net', '/proc/1/ns/net']);
  /** Test hook: runs before each host batch (e.g. another ADD creating the bridge first). */
  beforeHostBatch?: () => void;
  private readonly refs = new Map<string, string>();
  private nextFd = 3;

  addNetns(path: string): void {
    this.netns.set(path, new Map());
  }

  /** The netns map entry a command ref names (refs from openNetns, or plain paths). */
  private resolve(ref: string): string {
    return this.refs.get(ref) ?? ref;
  }

  /** Words of a line, re-joined by single blanks for the patterns below (a word holding a blank matches none). */
  private words(line: string): string {
    return batchWords(line)
      .map((w) => (w === '' ? '""' : w))
      .join(' ');
  }

  private fail(line: string, why: string): never {
    throw new ExecError('ip -batch -', 1, `${why}\nCommand failed -:1 (${line})`);
  }

  async readBridge(name: string): Promise<BridgeState | undefined> {
    const b = this.bridges.get(name);
    return b ? { ...b, addrs: [...b.addrs] } : undefined;
  }

  async hostBatch(lines: string[]): Promise<void> {
    this.beforeHostBatch?.();
    for (const raw of lines) {
      this.lines.push(raw);
      if (this.failOn?.test(raw)) this.fail(raw, 'RTNETLINK answers: fake failure');
      const line = this.words(raw);
      let m: RegExpExecArray | null;
      if ((m = /^link add name (\S+) address (\S+) mtu (\d+) type bridge$/.exec(line))) {
        if (this.bridges.has(m[1]!) || this.hostLinks.has(m[1]!)) this.fail(line, 'RTNETLINK answers: File exists');
        this.bridges.set(m[1]!, { name: m[1]!, isBridge: true, mac: m[2]!, up: false, mtu: Number(m[3]), addrs: [] });
      } else if ((m = /^addr (add|replace|del) (\S+) dev (\S+)$/.exec(line))) {
        const b = this.bridges.get(m[3]!) ?? this.fail(line, 'Cannot find device');
        const i = b.addrs.indexOf(m[2]!);
        if (m[1] === 'replace') {
          if (i < 0) b.addrs.push(m[2]!);
        } else if (m[1] === 'add') {
          if (i >= 0) this.fail(line, 'RTNETLINK answers: File exists');
          b.addrs.push(m[2]!);
        } else {
          if (i < 0) this.fail(line, 'RTNETLINK answers: Cannot assign requested address');
          b.addrs.splice(i, 1);
        }
      } else if ((m = /^link set dev (\S+) up$/.exec(line))) {
        const b = this.bridges.get(m[1]!);
        if (b) b.up = true;
        else if (!this.hostLinks.has(m[1]!)) this.fail(line, 'Cannot find device');
      } else if ((m = /^link add name (\S+) mtu (\d+) address (\S+) type veth peer name (\S+) mtu \d+ address (\S+) netns (\S+)$/.exec(line))) {
        const [, host, mtu, , peer, peerMac, nsRef] = m;
        if (this.hostLinks.has(host!) || this.bridges.has(host!)) this.fail(line, 'RTNETLINK answers: File exists');
        const ns = this.resolve(nsRef!);
        const links = this.netns.get(ns) ?? this.fail(line, `Cannot open network namespace "${nsRef}"`);
        if (links.has(peer!)) this.fail(line, 'RTNETLINK answers: File exists');
        this.hostLinks.set(host!, { peer: { netns: ns!, ifname: peer! } });
        links.set(peer!, { name: peer!, mac: peerMac!, mtu: Number(mtu), up: false, addrs: [], routes: [] });
      } else if ((m = /^link set dev (\S+) master (\S+) alias (\S+)$/.exec(line))) {
        const l = this.hostLinks.get(m[1]!) ?? this.fail(line, 'Cannot find device');
        if (!this.bridges.has(m[2]!)) this.fail(line, 'Cannot find device');
        l.master = m[2]!;
        l.alias = m[3]!;
      } else if (/^link set dev \S+ type bridge_slave hairpin on$/.test(line)) {
        // accepted
      } else {
        this.fail(line, 'fake kernel: unknown line');
      }
    }
  }

  async containerBatch(netnsRef: string, lines: string[]): Promise<void> {
    const netnsPath = this.resolve(netnsRef);
    const links = this.netns.get(netnsPath);
    for (const raw of lines) {
      this.lines.push(`[${netnsPath}] ${raw}`);
      if (!links) this.fail(raw, 'Cannot open network namespace');
      if (this.failOn?.test(raw)) this.fail(raw, 'RTNETLINK answers: fake failure');
      const line = this.words(raw);
      let m: RegExpExecArray | null;
      if ((m = /^addr add (\S+) dev (\S+)$/.exec(line))) {
        const l = links.get(m[2]!) ?? this.fail(line, 'Cannot find device');
        l.addrs.push(m[1]!);
      } else if ((m = /^link set dev (\S+) up$/.exec(line))) {
        const l = links.get(m[1]!) ?? this.fail(line, 'Cannot find device');
        l.up = true;
      } else if ((m = /^route (add|append) (\S+) via (\S+) dev (\S+)$/.exec(line))) {
        const [, verb, to, gw, dev] = m;
        const l = links.get(dev!) ?? this.fail(line, 'Cannot find device');
        if (!l.up) this.fail(line, 'RTNETLINK answers: Network is down');
        const dst = to === 'default' ? '0.0.0.0/0' : to!;
        const all = [...links.values()].flatMap((x) => x.routes);
        // add (NLM_F_EXCL) refuses any route to dst; append only an exact duplicate.
        if (all.some((r) => r.dst === dst && (verb === 'add' || (r.gw === gw && r.dev === dev)))) this.fail(line, 'RTNETLINK answers: File exists');
        l.routes.push({ dst, gw: gw!, dev: dev! });
      } else {
        this.fail(line, 'fake kernel: unknown line');
      }
    }
  }

  async deleteHostLink(name: string): Promise<boolean> {
    const l = this.hostLinks.get(name);
    if (!l) return false;
    this.hostLinks.delete(name);
    if (l.peer) this.netns.get(l.peer.netns)?.delete(l.peer.ifname);
    return true;
  }

  /** As the real one: 3 for a missing netns, 4 for the host's; plain paths are their own ref, others get an fd-like one. */
  openNetns(netnsPath: string): NetnsRef {
    if (this.hostNetnsPaths.has(netnsPath)) throw new InvalidEnvError('CNI_NETNS', `${JSON.stringify(netnsPath)} is the host's own network namespace; refusing to configure it`);
    if (!this.netns.has(netnsPath)) throw new UnknownContainerError(`netns ${netnsPath} does not exist`, { netns: netnsPath });
    if (/^[A-Za-z0-9_.:/@+=,%-]+$/.test(netnsPath)) return { path: netnsPath, ref: netnsPath, close: () => {} };
    const ref = `/proc/fake/fd/${this.nextFd++}`;
    this.refs.set(ref, netnsPath);
    return { path: netnsPath, ref, close: () => this.refs.delete(ref) };
  }

  /** Refs currently open (a test checks every call closes its netns). */
  get openRefs(): number {
    return this.refs.size;
  }

  async ensureIpForward(): Promise<void> {
    this.ipForward = true;
  }

  async readContainerLink(netnsRef: string, ifname: string): Promise<ContainerLinkState | undefined> {
    const l = this.netns.get(this.resolve(netnsRef))?.get(ifname);
    if (!l) return undefined;
    const connected = l.addrs.map((a) => {
      const [ip, len] = a.split('/');
      const n = ip!.split('.').map(Number);
      const mask = Number(len) === 0 ? 0 : (0xffffffff << (32 - Number(len))) >>> 0;
      const v = (((n[0]! << 24) | (n[1]! << 16) | (n[2]! << 8) | n[3]!) & mask) >>> 0;
      return { dst: `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}/${len}`, dev: ifname };
    });
    return { ...l, addrs: [...l.addrs], routes: [...l.routes, ...connected] };
  }

  async listBridgePorts(bridge: string): Promise<BridgePort[]> {
    return [...this.hostLinks].filter(([, l]) => l.master === bridge).map(([name, l]) => ({ name, alias: l.alias }));
  }

  async iptables(): Promise<IptablesClient> {
    return this.ipt;
  }
}
