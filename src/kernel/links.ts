import { randomBytes } from 'node:crypto';
import { InvalidArgumentError } from '../core/errors.js';
import { ip, ipJson } from '../exec/run.js';

/** Attributes of a vxlan link that weft decides. */
export interface VxlanAttrs {
  vni: number;
  /** UDP destination port. */
  port: number;
  /** Local (source) VTEP address. */
  local?: string;
  /** Underlay device name. */
  dev?: string;
  learning: boolean;
  gbp: boolean;
  udpCsum: boolean;
}

export interface Link {
  index: number;
  name: string;
  mtu: number;
  /** Lower-case MAC ("aa:bb:..."). */
  mac: string;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** "vxlan", "bridge", "veth"...; absent for physical/loopback. */
  kind?: string;
  /** Bridge this link is a port of. */
  master?: string;
  vxlan?: VxlanAttrs;
}

export interface VxlanSpec extends VxlanAttrs {
  name: string;
  mtu?: number;
  mac?: string;
}

export interface LinkChange {
  up?: boolean;
  mtu?: number;
  mac?: string;
  /** Bridge to enslave the link to. */
  master?: string;
}

export interface Links {
  list(): Promise<Link[]>;
  get(name: string): Promise<Link | undefined>;
  getByIndex(index: number): Promise<Link | undefined>;
  addVxlan(spec: VxlanSpec): Promise<Link>;
  addBridge(name: string, opts?: { mtu?: number }): Promise<Link>;
  /** A veth pair; the peer may be put straight into another namespace. */
  addVeth(name: string, peer: string, opts?: { peerNetns?: string; mtu?: number }): Promise<Link>;
  set(name: string, change: LinkChange): Promise<void>;
  /** Deleting a missing link is not an error (DEL semantics). */
  delete(name: string): Promise<void>;
}

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

/** Linux interface names: at most 15 bytes, no '/', ':' or whitespace. */
export function checkIfName(name: string, field = 'name'): void {
  if (!IFNAME_RE.test(name)) {
    throw new InvalidArgumentError(field, `"${name}" is not a valid interface name (1-15 of [A-Za-z0-9_.-])`);
  }
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function isMac(text: string): boolean {
  return MAC_RE.test(text.toLowerCase());
}

/** A random locally administered unicast MAC (as the kernel makes for new links). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

interface IpLinkJson {
  ifindex: number;
  ifname: string;
  mtu: number;
  address?: string;
  flags?: string[];
  master?: string;
  linkinfo?: {
    info_kind?: string;
    info_data?: {
      id?: number;
      port?: number;
      local?: string;
      link?: string;
      learning?: boolean;
      gbp?: boolean;
      udp_csum?: boolean;
    };
  };
}

export function parseIpLinks(rows: IpLinkJson[]): Link[] {
  return rows.map((r) => {
    const link: Link = {
      index: r.ifindex,
      name: r.ifname,
      mtu: r.mtu,
      mac: (r.address ?? '').toLowerCase(),
      up: r.flags?.includes('UP') ?? false,
    };
    const kind = r.linkinfo?.info_kind;
    if (kind) link.kind = kind;
    if (r.master) link.master = r.master;
    const d = r.linkinfo?.info_data;
    if (kind === 'vxlan' && d) {
      link.vxlan = {
        vni: d.id ?? 0,
        port: d.port ?? 0,
        learning: d.learning ?? false,
        gbp: d.gbp ?? false,
        udpCsum: d.udp_csum ?? false,
        ...(d.local ? { local: d.local } : {}),
        ...(d.link ? { dev: d.link } : {}),
      };
    }
    return link;
  });
}

/** The `ip link add` arguments for a vxlan device. */
export function vxlanAddArgs(s: VxlanSpec): string[] {
  const args = ['link', 'add', s.name];
  if (s.mac) args.push('address', s.mac);
  if (s.mtu) args.push('mtu', String(s.mtu));
  args.push('type', 'vxlan', 'id', String(s.vni), 'dstport', String(s.port));
  if (s.local) args.push('local', s.local);
  if (s.dev) args.push('dev', s.dev);
  args.push(s.learning ? 'learning' : 'nolearning');
  if (s.gbp) args.push('gbp');
  args.push(s.udpCsum ? 'udpcsum' : 'noudpcsum');
  return args;
}

export class IpLinks implements Links {
  constructor(private readonly netns?: string) {}

  async list(): Promise<Link[]> {
    return parseIpLinks(await ipJson<IpLinkJson>(['-d', 'link', 'show'], this.netns));
  }

  async get(name: string): Promise<Link | undefined> {
    checkIfName(name);
    const r = await ip(['-d', '-json', 'link', 'show', 'dev', name], { netns: this.netns, allowFail: true });
    if (r.code !== 0) return undefined;
    return parseIpLinks(JSON.parse(r.stdout) as IpLinkJson[])[0];
  }

  async getByIndex(index: number): Promise<Link | undefined> {
    return (await this.list()).find((l) => l.index === index);
  }

  async addVxlan(spec: VxlanSpec): Promise<Link> {
    checkIfName(spec.name);
    await ip(vxlanAddArgs(spec), { netns: this.netns });
    return this.mustGet(spec.name);
  }

  async addBridge(name: string, opts: { mtu?: number } = {}): Promise<Link> {
    checkIfName(name);
    await ip(['link', 'add', name, ...(opts.mtu ? ['mtu', String(opts.mtu)] : []), 'type', 'bridge'], { netns: this.netns });
    return this.mustGet(name);
  }

  async addVeth(name: string, peer: string, opts: { peerNetns?: string; mtu?: number } = {}): Promise<Link> {
    checkIfName(name);
    checkIfName(peer, 'peer');
    const args = ['link', 'add', name, ...(opts.mtu ? ['mtu', String(opts.mtu)] : []), 'type', 'veth', 'peer', 'name', peer];
    if (opts.mtu) args.push('mtu', String(opts.mtu));
    if (opts.peerNetns) args.push('netns', opts.peerNetns);
    await ip(args, { netns: this.netns });
    return this.mustGet(name);
  }

  async set(name: string, c: LinkChange): Promise<void> {
    const args = ['link', 'set', 'dev', name];
    if (c.mac) args.push('address', c.mac);
    if (c.mtu) args.push('mtu', String(c.mtu));
    if (c.master) args.push('master', c.master);
    if (c.up !== undefined) args.push(c.up ? 'up' : 'down');
    if (args.length > 4) await ip(args, { netns: this.netns });
  }

  async delete(name: string): Promise<void> {
    const r = await ip(['link', 'del', 'dev', name], { netns: this.netns, allowFail: true });
    if (r.code !== 0 && (await this.get(name))) {
      await ip(['link', 'del', 'dev', name], { netns: this.netns });
    }
  }

  private async mustGet(name: string): Promise<Link> {
    const l = await this.get(name);
    if (!l) throw new Error(`link ${name} vanished right after it was created`);
    return l;
  }
}
