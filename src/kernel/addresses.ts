import { ip, ipJson } from '../exec/run.js';

/** An IPv4 address on a link. */
export interface Address {
  dev: string;
  ip: string;
  prefixLen: number;
  /** "global", "link", "host". */
  scope?: string;
}

export interface Addresses {
  /** IPv4 addresses, optionally of one link only, in the kernel's order (primary first). */
  list(dev?: string): Promise<Address[]>;
  /** Adds or refreshes (`ip addr replace`). */
  add(addr: Address): Promise<void>;
  delete(addr: Address): Promise<void>;
}

interface IpAddrJson {
  ifname: string;
  addr_info?: Array<{ family: string; local: string; prefixlen: number; scope?: string }>;
}

export function parseIpAddrs(rows: IpAddrJson[]): Address[] {
  const out: Address[] = [];
  for (const l of rows) {
    for (const a of l.addr_info ?? []) {
      if (a.family !== 'inet') continue;
      out.push({ dev: l.ifname, ip: a.local, prefixLen: a.prefixlen, ...(a.scope ? { scope: a.scope } : {}) });
    }
  }
  return out;
}

export class IpAddresses implements Addresses {
  constructor(private readonly netns?: string) {}

  async list(dev?: string): Promise<Address[]> {
    return parseIpAddrs(await ipJson<IpAddrJson>(['-4', 'addr', 'show', ...(dev ? ['dev', dev] : [])], this.netns));
  }

  async add(a: Address): Promise<void> {
    await ip(['addr', 'replace', `${a.ip}/${a.prefixLen}`, 'dev', a.dev, ...(a.scope ? ['scope', a.scope] : [])], {
      netns: this.netns,
    });
  }

  async delete(a: Address): Promise<void> {
    await ip(['addr', 'del', `${a.ip}/${a.prefixLen}`, 'dev', a.dev], { netns: this.netns });
  }
}
