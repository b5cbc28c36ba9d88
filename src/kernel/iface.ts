import { InterfaceNotFoundError } from '../core/errors.js';
import { isIPv4 } from '../core/ip.js';
import type { ExternalInterface } from '../backends/backend.js';
import type { Address, Addresses } from './addresses.js';
import type { Link, Links } from './links.js';
import type { Route, Routes } from './routes.js';

export interface IfaceOptions {
  /** `--iface` values: names or IPv4 addresses, first match wins. Default none. */
  ifaces?: string[];
  /** `--iface-regex` values, matched against IPv4 addresses, then names. Default none. */
  ifaceRegex?: string[];
  /** `--public-ip`: the address peers use to reach us. Default: the interface's address. */
  publicIp?: string;
}

/** What interface selection looks at, read once. */
export interface IfaceSnapshot {
  links: Link[];
  addrs: Address[];
  routes: Route[];
}

function ipv4Of(snap: IfaceSnapshot, link: Link): Address[] {
  return snap.addrs.filter((a) => a.dev === link.name);
}

function pick(snap: IfaceSnapshot, link: Link, addr: string | undefined, opts: IfaceOptions, tried: string): ExternalInterface {
  const ifaceAddr = addr ?? ipv4Of(snap, link)[0]?.ip;
  if (!ifaceAddr) {
    throw new InterfaceNotFoundError(`interface ${link.name} (${tried}) has no IPv4 address`, { iface: link.name });
  }
  return { name: link.name, index: link.index, mtu: link.mtu, ifaceAddr, publicIp: opts.publicIp ?? ifaceAddr };
}

/**
 * flannel's order: each --iface (name or IP), else each --iface-regex (over
 * every interface's IPs, then names), else the interface of the default
 * route; then its first IPv4 address; --public-ip overrides the public one.
 */
export function chooseInterface(opts: IfaceOptions, snap: IfaceSnapshot): ExternalInterface {
  const ifaces = opts.ifaces ?? [];
  const regexes = opts.ifaceRegex ?? [];
  if (opts.publicIp !== undefined && !isIPv4(opts.publicIp)) {
    throw new InterfaceNotFoundError(`--public-ip "${opts.publicIp}" is not an IPv4 address`, { publicIp: opts.publicIp });
  }
  if (ifaces.length > 0) {
    for (const want of ifaces) {
      if (isIPv4(want)) {
        const a = snap.addrs.find((x) => x.ip === want);
        const link = a && snap.links.find((l) => l.name === a.dev);
        if (link) return pick(snap, link, want, opts, `--iface ${want}`);
      } else {
        const link = snap.links.find((l) => l.name === want);
        if (link) return pick(snap, link, undefined, opts, `--iface ${want}`);
      }
    }
    throw new InterfaceNotFoundError(
      `no interface matches --iface ${ifaces.join(', ')} (have: ${snap.links.map((l) => l.name).join(', ')})`,
      { ifaces },
    );
  }
  if (regexes.length > 0) {
    for (const text of regexes) {
      const re = new RegExp(text);
      for (const a of snap.addrs) {
        const link = snap.links.find((l) => l.name === a.dev);
        if (link && re.test(a.ip)) return pick(snap, link, a.ip, opts, `--iface-regex ${text}`);
      }
      for (const link of snap.links) {
        if (re.test(link.name) && ipv4Of(snap, link).length > 0) return pick(snap, link, undefined, opts, `--iface-regex ${text}`);
      }
    }
    throw new InterfaceNotFoundError(
      `no interface with an IPv4 address matches --iface-regex ${regexes.join(', ')} (have: ${snap.links.map((l) => l.name).join(', ')})`,
      { ifaceRegex: regexes },
    );
  }
  const def = snap.routes.find((r) => r.dst.prefixLen === 0);
  const link = def && snap.links.find((l) => l.name === def.dev);
  if (!link) {
    throw new InterfaceNotFoundError('no --iface or --iface-regex given and there is no default route; pass --iface <name|ip>', {});
  }
  return pick(snap, link, undefined, opts, 'default route');
}

/** Reads links, addresses and routes, then chooses (see chooseInterface). */
export async function selectInterface(
  opts: IfaceOptions,
  k: { links: Links; addrs: Addresses; routes: Routes },
): Promise<ExternalInterface> {
  const [links, addrs, routes] = await Promise.all([k.links.list(), k.addrs.list(), k.routes.list()]);
  return chooseInterface(opts, { links, addrs, routes });
}
