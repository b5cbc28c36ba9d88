import { createHash } from 'node:crypto';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 (upper case, no padding needed for a prefix). */
export function base32(buf: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

const cache = new Map<string, string>();
/** Bound on remembered names; past it the cache starts over (names are cheap to recompute). */
const CACHE_MAX = 500_000;

/** kube-proxy's scheme: first 16 base32 chars of sha256(text); keeps names under iptables' 28-char limit. */
export function hash16(text: string): string {
  let h = cache.get(text);
  if (h === undefined) {
    h = base32(createHash('sha256').update(text).digest()).slice(0, 16);
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(text, h);
  }
  return h;
}

/** Fixed chains; every name starts with WEFT- so weft never touches kube-proxy's or flannel's. */
export const CHAIN = {
  SERVICES: 'WEFT-SERVICES',
  EXTERNAL_SERVICES: 'WEFT-EXTERNAL-SERVICES',
  NODEPORTS: 'WEFT-NODEPORTS',
  POSTROUTING: 'WEFT-POSTROUTING',
  MARK_MASQ: 'WEFT-MARK-MASQ',
  FORWARD: 'WEFT-FORWARD',
  FIREWALL: 'WEFT-PROXY-FIREWALL',
  CANARY: 'WEFT-PROXY-CANARY',
} as const;

/** Per-service and per-endpoint chains: the prefixes weft-proxy owns (and may delete). */
export const OWNED_CHAIN_RE = /^WEFT-(SVC|SVL|EXT|FW|SEP)-[A-Z2-7]{16}$/;

const proto = (p: string) => p.toLowerCase();

/** The hash part of a port's chain names (WEFT-SVC-, -SVL-, -EXT- and -FW- share it). */
export function portHash(key: string, protocol: string): string {
  return hash16(key + proto(protocol));
}
export function svcChain(key: string, protocol: string): string {
  return `WEFT-SVC-${portHash(key, protocol)}`;
}
/** `endpoint` is "ip:port". */
export function sepChain(key: string, protocol: string, endpoint: string): string {
  return `WEFT-SEP-${hash16(key + proto(protocol) + endpoint)}`;
}
