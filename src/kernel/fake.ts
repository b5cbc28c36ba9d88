import { contains, parseCidr, parseIPv4, sameNet } from '../core/ip.js';
import type { Address, Addresses } from './addresses.js';
import type { Fdb, FdbEntry, FdbFailure, FdbOp } from './fdb.js';
import type { Kernel } from './kernel.js';
import { checkIfName, isMac, randomMac, type Link, type LinkChange, type Links, type VxlanSpec } from './links.js';
import type { LinkEvent, LinkWatcher } from './monitor.js';
import type { Neighbour, NeighbourFailure, NeighbourOp, Neighbours } from './neighbours.js';
import type { Offloads } from './offload.js';
import type { Route, RouteFailure, RouteOp, Routes } from './routes.js';
import type { Sysctl } from './sysctl.js';

/** Which write a fault applies to. */
export type FakeArea = 'route' | 'neigh' | 'fdb' | 'link' | 'addr';

/** Thrown by the fake for single (non-batch) calls the kernel would refuse. */
export class FakeKernelError extends Error {}

/**
 * An in-memory network namespace: links, addresses, main-table routes,
 * neighbours and fdb entries, with the kernel's rules that weft relies on:
 * no route through a missing or down device, no gateway that is not on-link
 * (unless `onlink`), no neighbour/fdb entry on a missing device, a deleted
 * link takes its addresses, routes, neighbours and fdb entries with it.
 */
export class FakeKernel implements Kernel {
  readonly state = {
    links: [] as Link[],
    addrs: [] as Address[],
    routes: [] as Route[],
    neighs: [] as Neighbour[],
    fdb: [] as FdbEntry[],
    sysctl: new Map<string, string>(),
    /** Devices whose tx checksum offload was turned off (new links start with it on). */
    txCsumOff: new Set<string>(),
  };
  /** Number of write batches per area (a batch = one `ip -batch` in the real adapter). */
  readonly writes: Record<FakeArea, number> = { route: 0, neigh: 0, fdb: 0, link: 0, addr: 0 };
  private nextIndex = 1;
  private readonly faults: Array<{ area: FakeArea; match: (what: unknown) => boolean; message: string }> = [];
  private readonly listeners = new Set<(ev: LinkEvent) => void>();

  readonly links: Links = new FakeLinks(this);
  readonly addrs: Addresses = new FakeAddresses(this);
  readonly routes: Routes = new FakeRoutes(this);
  readonly neighs: Neighbours = new FakeNeighbours(this);
  readonly fdb: Fdb = new FakeFdb(this);
  readonly sysctl: Sysctl = new FakeSysctl(this);
  readonly offloads: Offloads = {
    getTxChecksum: async (dev) => {
      if (!this.link(dev)) throw new FakeKernelError(`Cannot get device features: No such device (${dev})`);
      return !this.state.txCsumOff.has(dev);
    },
    setTxChecksum: async (dev, on) => {
      if (!this.link(dev)) throw new FakeKernelError(`Cannot get device features: No such device (${dev})`);
      if (on) this.state.txCsumOff.delete(dev);
      else this.state.txCsumOff.add(dev);
    },
  };
  readonly linkWatcher: LinkWatcher = {
    watch: (onEvent, signal) => {
      if (signal.aborted) return;
      this.listeners.add(onEvent);
      signal.addEventListener('abort', () => this.listeners.delete(onEvent), { once: true });
    },
  };

  /** Makes writes in `area` whose op/spec matches fail with `message` until cleared. */
  inject(area: FakeArea, match: (what: unknown) => boolean, message = 'injected failure'): void {
    this.faults.push({ area, match, message });
  }

  clearFaults(): void {
    this.faults.length = 0;
  }

  /** Test helper: a physical-like link with an address (e.g. eth0 192.0.2.1/24), up. */
  addHostLink(name: string, cidr?: string, mtu = 1500): Link {
    const link: Link = { index: this.nextIndex++, name, mtu, mac: randomMac(), up: true };
    this.state.links.push(link);
    if (cidr) {
      const [ip, len] = cidr.split('/');
      this.addAddr({ dev: name, ip: ip!, prefixLen: Number(len) });
    }
    return link;
  }

  /** @internal */ fault(area: FakeArea, what: unknown): string | undefined {
    return this.faults.find((f) => f.area === area && f.match(what))?.message;
  }

  /** @internal */ link(name: string): Link | undefined {
    return this.state.links.find((l) => l.name === name);
  }

  /** @internal */ newLink(l: Omit<Link, 'index' | 'mac'> & { mac?: string }): Link {
    checkIfName(l.name);
    if (this.link(l.name)) throw new FakeKernelError(`RTNETLINK answers: File exists (${l.name})`);
    if (l.mac !== undefined && !isMac(l.mac)) throw new FakeKernelError(`invalid address ${l.mac}`);
    const link: Link = { ...l, index: this.nextIndex++, mac: (l.mac ?? randomMac()).toLowerCase() };
    this.state.links.push(link);
    return link;
  }

  /** @internal */ removeLink(name: string): void {
    const link = this.link(name);
    if (!link) return;
    this.state.links = this.state.links.filter((l) => l !== link);
    this.state.addrs = this.state.addrs.filter((a) => a.dev !== name);
    this.state.routes = this.state.routes.filter((r) => r.dev !== name);
    this.state.neighs = this.state.neighs.filter((n) => n.dev !== name);
    this.state.fdb = this.state.fdb.filter((e) => e.dev !== name);
    this.state.txCsumOff.delete(name);
    this.dropUnreachableGateways();
    this.emit({ type: 'deleted', index: link.index, name, up: false, mtu: link.mtu });
  }

  /** @internal */ setUp(link: Link, up: boolean): void {
    if (link.up === up) return;
    link.up = up;
    if (up) {
      for (const a of this.state.addrs.filter((x) => x.dev === link.name)) this.addConnected(a);
    } else {
      // Taking a link down flushes every route through it.
      this.state.routes = this.state.routes.filter((r) => r.dev !== link.name);
      this.dropUnreachableGateways();
    }
    this.emit({ type: 'changed', index: link.index, name: link.name, up, mtu: link.mtu });
  }

  /** @internal */ addAddr(a: Address): void {
    if (!this.link(a.dev)) throw new FakeKernelError(`Cannot find device "${a.dev}"`);
    const i = this.state.addrs.findIndex((x) => x.dev === a.dev && x.ip === a.ip);
    if (i >= 0) this.state.addrs[i] = { ...a };
    else this.state.addrs.push({ ...a });
    if (this.link(a.dev)!.up) this.addConnected(a);
  }

  /** @internal */ delAddr(a: Address): void {
    const i = this.state.addrs.findIndex((x) => x.dev === a.dev && x.ip === a.ip && x.prefixLen === a.prefixLen);
    if (i < 0) throw new FakeKernelError('RTNETLINK answers: Cannot assign requested address');
    this.state.addrs.splice(i, 1);
    const net = parseCidr(`${a.ip}/${a.prefixLen}`);
    this.state.routes = this.state.routes.filter((r) => !(r.proto === 'kernel' && r.dev === a.dev && sameNet(r.dst, net)));
    this.dropUnreachableGateways();
  }

  private addConnected(a: Address): void {
    if (a.prefixLen >= 32) return;
    const dst = parseCidr(`${a.ip}/${a.prefixLen}`);
    if (this.state.routes.some((r) => r.dev === a.dev && sameNet(r.dst, dst) && r.proto === 'kernel')) return;
    this.state.routes.push({ dst, dev: a.dev, proto: 'kernel', scope: 'link', prefsrc: a.ip });
  }

  /** The kernel drops routes whose gateway lost its connected route (not `onlink` ones). */
  private dropUnreachableGateways(): void {
    this.state.routes = this.state.routes.filter((r) => !r.gateway || r.onlink || this.onLink(r.dev, r.gateway));
  }

  /** @internal */ onLink(dev: string, gateway: string): boolean {
    const gw = parseIPv4(gateway);
    return this.state.routes.some((r) => !r.gateway && r.dev === dev && r.scope === 'link' && contains(r.dst, gw));
  }

  private emit(ev: LinkEvent): void {
    for (const l of [...this.listeners]) queueMicrotask(() => l(ev));
  }
}

class FakeLinks implements Links {
  constructor(private readonly k: FakeKernel) {}

  async list(): Promise<Link[]> {
    return this.k.state.links.map((l) => structuredClone(l));
  }
  async get(name: string): Promise<Link | undefined> {
    const l = this.k.link(name);
    return l && structuredClone(l);
  }
  async getByIndex(index: number): Promise<Link | undefined> {
    const l = this.k.state.links.find((x) => x.index === index);
    return l && structuredClone(l);
  }
  async addVxlan(s: VxlanSpec): Promise<Link> {
    this.k.writes.link++;
    const msg = this.k.fault('link', s);
    if (msg) throw new FakeKernelError(msg);
    if (s.dev && !this.k.link(s.dev)) throw new FakeKernelError(`Cannot find device "${s.dev}"`);
    if (s.vni < 0 || s.vni > 0xffffff) throw new FakeKernelError('vxlan: VNI out of range');
    if (this.k.state.links.some((l) => l.vxlan && l.vxlan.vni === s.vni && l.vxlan.port === s.port)) {
      throw new FakeKernelError('Error: A VXLAN device with the specified VNI already exists.');
    }
    const { name, mtu, mac, ...vx } = s;
    return structuredClone(this.k.newLink({ name, mtu: mtu ?? 1450, up: false, kind: 'vxlan', vxlan: vx, ...(mac ? { mac } : {}) }));
  }
  async addBridge(name: string, opts: { mtu?: number } = {}): Promise<Link> {
    this.k.writes.link++;
    return structuredClone(this.k.newLink({ name, mtu: opts.mtu ?? 1500, up: false, kind: 'bridge' }));
  }
  async addVeth(name: string, peer: string, opts: { peerNetns?: string; mtu?: number } = {}): Promise<Link> {
    this.k.writes.link++;
    checkIfName(peer);
    const l = this.k.newLink({ name, mtu: opts.mtu ?? 1500, up: false, kind: 'veth' });
    if (!opts.peerNetns) this.k.newLink({ name: peer, mtu: opts.mtu ?? 1500, up: false, kind: 'veth' });
    return structuredClone(l);
  }
  async set(name: string, c: LinkChange): Promise<void> {
    this.k.writes.link++;
    const l = this.k.link(name);
    if (!l) throw new FakeKernelError(`Cannot find device "${name}"`);
    if (c.mac !== undefined) {
      if (!isMac(c.mac)) throw new FakeKernelError(`"${c.mac}" is invalid lladdr`);
      l.mac = c.mac.toLowerCase();
    }
    if (c.mtu !== undefined) {
      if (c.mtu < 68 || c.mtu > 65535) throw new FakeKernelError('Error: mtu out of range');
      l.mtu = c.mtu;
    }
    if (c.master !== undefined) {
      if (this.k.link(c.master)?.kind !== 'bridge') throw new FakeKernelError(`Cannot find bridge "${c.master}"`);
      l.master = c.master;
    }
    if (c.up !== undefined) this.k.setUp(l, c.up);
  }
  async delete(name: string): Promise<void> {
    this.k.writes.link++;
    this.k.removeLink(name);
  }
}

class FakeAddresses implements Addresses {
  constructor(private readonly k: FakeKernel) {}
  async list(dev?: string): Promise<Address[]> {
    return this.k.state.addrs.filter((a) => !dev || a.dev === dev).map((a) => ({ ...a }));
  }
  async add(a: Address): Promise<void> {
    this.k.writes.addr++;
    const msg = this.k.fault('addr', a);
    if (msg) throw new FakeKernelError(msg);
    this.k.addAddr(a);
  }
  async delete(a: Address): Promise<void> {
    this.k.writes.addr++;
    this.k.delAddr(a);
  }
}

class FakeRoutes implements Routes {
  constructor(private readonly k: FakeKernel) {}

  async list(): Promise<Route[]> {
    return this.k.state.routes.map((r) => ({ ...r, dst: { ...r.dst } }));
  }

  async apply(ops: RouteOp[]): Promise<RouteFailure[]> {
    if (ops.length === 0) return [];
    this.k.writes.route++;
    const failed: RouteFailure[] = [];
    for (const op of ops) {
      const message = this.k.fault('route', op) ?? (op.op === 'replace' ? this.replace(op.route) : this.del(op.route));
      if (message) failed.push({ op, message });
    }
    return failed;
  }

  private replace(r: Route): string | undefined {
    const link = this.k.link(r.dev);
    if (!link) return `Cannot find device "${r.dev}"`;
    if (!link.up) return 'Error: Nexthop device is not up.';
    if (r.gateway && !r.onlink && !this.k.onLink(r.dev, r.gateway)) return 'Error: Nexthop has invalid gateway.';
    const routes = this.k.state.routes;
    // The kernel keys a main-table route by destination and metric.
    const i = routes.findIndex((x) => sameNet(x.dst, r.dst) && (x.metric ?? 0) === (r.metric ?? 0));
    const stored: Route = { ...r, dst: { ...r.dst }, proto: r.proto ?? 'boot' };
    if (i >= 0) routes[i] = stored;
    else routes.push(stored);
    return undefined;
  }

  private del(r: Route): string | undefined {
    const routes = this.k.state.routes;
    const i = routes.findIndex(
      (x) =>
        sameNet(x.dst, r.dst) &&
        x.dev === r.dev &&
        (r.gateway === undefined || x.gateway === r.gateway) &&
        (r.metric === undefined || (x.metric ?? 0) === r.metric),
    );
    // Already gone counts as done, as in the real adapter.
    if (i >= 0) routes.splice(i, 1);
    return undefined;
  }
}

class FakeNeighbours implements Neighbours {
  constructor(private readonly k: FakeKernel) {}

  async list(dev: string): Promise<Neighbour[]> {
    if (!this.k.link(dev)) throw new FakeKernelError(`Cannot find device "${dev}"`);
    return this.k.state.neighs.filter((n) => n.dev === dev).map((n) => ({ ...n }));
  }

  async apply(ops: NeighbourOp[]): Promise<NeighbourFailure[]> {
    if (ops.length === 0) return [];
    this.k.writes.neigh++;
    const failed: NeighbourFailure[] = [];
    for (const op of ops) {
      const message = this.k.fault('neigh', op) ?? this.one(op);
      if (message) failed.push({ op, message });
    }
    return failed;
  }

  private one(op: NeighbourOp): string | undefined {
    const n = op.neigh;
    if (!this.k.link(n.dev)) return op.op === 'delete' ? undefined : `Cannot find device "${n.dev}"`;
    const list = this.k.state.neighs;
    const i = list.findIndex((x) => x.dev === n.dev && x.ip === n.ip);
    if (op.op === 'delete') {
      if (i >= 0) list.splice(i, 1);
      return undefined;
    }
    if (!isMac(op.neigh.mac)) return `"${op.neigh.mac}" is invalid lladdr.`;
    const entry = { dev: n.dev, ip: n.ip, mac: op.neigh.mac.toLowerCase(), state: ['PERMANENT'] };
    if (i >= 0) list[i] = entry;
    else list.push(entry);
    return undefined;
  }
}

class FakeFdb implements Fdb {
  constructor(private readonly k: FakeKernel) {}

  async list(dev: string): Promise<FdbEntry[]> {
    if (!this.k.link(dev)) throw new FakeKernelError(`Cannot find device "${dev}"`);
    return this.k.state.fdb.filter((e) => e.dev === dev).map((e) => ({ ...e }));
  }

  async apply(ops: FdbOp[]): Promise<FdbFailure[]> {
    if (ops.length === 0) return [];
    this.k.writes.fdb++;
    const failed: FdbFailure[] = [];
    for (const op of ops) {
      const message = this.k.fault('fdb', op) ?? this.one(op);
      if (message) failed.push({ op, message });
    }
    return failed;
  }

  private one(op: FdbOp): string | undefined {
    const e = op.entry;
    const link = this.k.link(e.dev);
    if (!link) return op.op === 'delete' ? undefined : `Cannot find device "${e.dev}"`;
    const list = this.k.state.fdb;
    const mac = e.mac.toLowerCase();
    const i = list.findIndex((x) => x.dev === e.dev && x.mac === mac);
    if (op.op === 'delete') {
      if (i >= 0) list.splice(i, 1);
      return undefined;
    }
    if (!isMac(mac)) return `invalid mac address ${e.mac}`;
    if (link.kind !== 'vxlan') return 'RTNETLINK answers: Operation not supported';
    const entry: FdbEntry = { dev: e.dev, mac, dst: op.entry.dst, state: 'permanent' };
    if (i >= 0) list[i] = entry;
    else list.push(entry);
    return undefined;
  }
}

class FakeSysctl implements Sysctl {
  constructor(private readonly k: FakeKernel) {}
  async get(key: string): Promise<string> {
    const v = this.k.state.sysctl.get(key);
    if (v === undefined) throw new FakeKernelError(`sysctl: cannot stat /proc/sys/${key.replaceAll('.', '/')}`);
    return v;
  }
  async set(key: string, value: string): Promise<void> {
    this.k.state.sysctl.set(key, value);
  }
}
