import { formatCidr, isIPv4, parseIPv4, sameNet } from '../../core/ip.js';
import type { Lease } from '../../store/types.js';
import type { NativePeer } from './native.js';

export interface PeerPlan {
  /** One entry per remote udp subnet, sorted by subnet. */
  peers: NativePeer[];
  /** Leases skipped and why (other backend type, bad PublicIP, our own subnet). */
  skipped: { subnet: string; reason: string }[];
}

/**
 * Turns the remote leases into the native peer table. Pure: the same leases
 * always give the same table, so sync() can compare plans to count changes.
 * `BackendType: "udp"` and `""` leases are carried: flanneld's udp backend
 * writes no BackendType at all (and takes every lease as a peer); a vxlan or
 * host-gw host does not listen on our port, so those are skipped.
 */
export function planPeers(remote: Lease[], own: Lease | undefined, port: number): PeerPlan {
  const peers = new Map<string, NativePeer>();
  const skipped: PeerPlan['skipped'] = [];
  for (const lease of remote) {
    const subnet = formatCidr(lease.subnet);
    if (own && sameNet(lease.subnet, own.subnet)) {
      skipped.push({ subnet, reason: 'own subnet' });
      continue;
    }
    const type = lease.attrs.BackendType ?? '';
    if (type !== 'udp' && type !== '') {
      skipped.push({ subnet, reason: `backend ${lease.attrs.BackendType}` });
      continue;
    }
    if (!isIPv4(lease.attrs.PublicIP ?? '')) {
      skipped.push({ subnet, reason: `bad PublicIP ${JSON.stringify(lease.attrs.PublicIP)}` });
      continue;
    }
    peers.set(subnet, {
      net: lease.subnet.ip >>> 0,
      prefixLen: lease.subnet.prefixLen,
      ip: parseIPv4(lease.attrs.PublicIP),
      port,
    });
  }
  const sorted = [...peers.values()].sort((a, b) => a.net - b.net || a.prefixLen - b.prefixLen);
  return { peers: sorted, skipped };
}

function peerKey(p: NativePeer): string {
  return `${p.net}/${p.prefixLen}@${p.ip}:${p.port}`;
}

/** Entries added, removed or changed between two plans. */
export function diffPeers(before: NativePeer[], after: NativePeer[]): { added: number; removed: number } {
  const a = new Set(before.map(peerKey));
  const b = new Set(after.map(peerKey));
  let added = 0;
  let removed = 0;
  for (const k of b) if (!a.has(k)) added++;
  for (const k of a) if (!b.has(k)) removed++;
  return { added, removed };
}
