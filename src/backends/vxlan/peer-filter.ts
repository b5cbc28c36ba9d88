/**
 * The vxlan peer filter: the kernel's vxlan device takes a frame from any
 * sender (flannel's too), so a host on the underlay could inject frames with
 * spoofed inner sources. This keeps an nftables table of its own,
 *
 *   table ip weft-vxlan {
 *     set peers { type ipv4_addr; elements = { <peer PublicIPs> } }
 *     chain input { type filter hook input priority -10; policy accept;
 *       udp dport <port> ip saddr != @peers counter drop }
 *   }
 *
 * so VXLAN UDP is accepted only from current peers, and drops are counted.
 * Every value in the text is validated first (peer addresses come from etcd).
 */
import { formatIPv4, parseIPv4 } from '../../core/ip.js';
import type { Logger } from '../../core/log.js';
import { InvalidArgumentError } from '../../core/errors.js';
import { deleteTableText, type NftClient } from '../../netfilter/nft.js';
import type { MetricSample } from '../udp/metrics.js';

export const PEER_FILTER_FAMILY = 'ip';
export const PEER_FILTER_TABLE = 'weft-vxlan';
export const PEER_FILTER_CHAIN = 'input';
export const PEER_FILTER_SET = 'peers';
const T = `${PEER_FILTER_FAMILY} ${PEER_FILTER_TABLE}`;

/** A canonical dotted IPv4 unicast address; only peerAddress() makes one. */
export type PeerAddress = string & { readonly __peerAddress: unique symbol };

/** Validates a peer's PublicIP for the set: an IPv4 unicast address, returned in canonical form. */
export function peerAddress(value: unknown): { ok: true; addr: PeerAddress } | { ok: false; reason: string } {
  if (typeof value !== 'string') return { ok: false, reason: `not a string (${value === null ? 'null' : typeof value})` };
  let ip: number;
  try {
    ip = parseIPv4(value);
  } catch {
    return { ok: false, reason: `"${value.slice(0, 40)}" is not an IPv4 address` };
  }
  const first = ip >>> 24;
  if (ip === 0 || first === 0) return { ok: false, reason: `${formatIPv4(ip)} is in 0.0.0.0/8` };
  if (first >= 224) return { ok: false, reason: `${formatIPv4(ip)} is multicast, reserved or broadcast` };
  if (first === 127) return { ok: false, reason: `${formatIPv4(ip)} is a loopback address` };
  return { ok: true, addr: formatIPv4(ip) as PeerAddress };
}

function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError('port', `must be an integer from 1 to 65535 (got ${port})`);
  return port;
}

/** The rule (as `nft list` prints it, counter values aside) that does the filtering. */
export function peerFilterRule(port: number): string {
  return `udp dport ${checkPort(port)} ip saddr != @${PEER_FILTER_SET} counter drop`;
}

function elementsText(peers: readonly PeerAddress[]): string[] {
  return peers.length ? [`add element ${T} ${PEER_FILTER_SET} { ${peers.join(', ')} }`] : [];
}

/**
 * The whole table in one transaction; `replace` first removes what is there
 * (a changed port or a damaged table), in the same transaction, so there is
 * no moment without the filter.
 */
export function renderPeerFilter(port: number, peers: readonly PeerAddress[], replace: boolean): string {
  const rule = peerFilterRule(port);
  return [
    ...(replace ? deleteTableText(PEER_FILTER_FAMILY, PEER_FILTER_TABLE).trimEnd().split('\n') : []),
    `add table ${T}`,
    `add set ${T} ${PEER_FILTER_SET} { type ipv4_addr; }`,
    ...elementsText(peers),
    `add chain ${T} ${PEER_FILTER_CHAIN} { type filter hook input priority -10; policy accept; }`,
    `add rule ${T} ${PEER_FILTER_CHAIN} ${rule}`,
    '',
  ].join('\n');
}

/** A new peer list for an intact table: the set's elements replaced in one transaction (the counter is kept). */
export function renderPeerUpdate(peers: readonly PeerAddress[]): string {
  return [`flush set ${T} ${PEER_FILTER_SET}`, ...elementsText(peers), ''].join('\n');
}

/** Removes the table if present (`weftd --cleanup`, filter turned off, backend no longer vxlan). */
export async function removePeerFilter(nft: NftClient): Promise<void> {
  await nft.apply(deleteTableText(PEER_FILTER_FAMILY, PEER_FILTER_TABLE));
}

/** Packets and bytes the rule has dropped, parsed from `nft list chain`; undefined when the rule is absent. */
export function parseFilterCounter(rules: readonly string[], port: number): { packets: number; bytes: number } | undefined {
  const want = peerFilterRule(port);
  for (const r of rules) {
    const m = / counter(?: packets (\d+) bytes (\d+))? drop$/.exec(r);
    if (!m || r.replace(/ packets \d+ bytes \d+/, '') !== want) continue;
    return { packets: Number(m[1] ?? 0), bytes: Number(m[2] ?? 0) };
  }
  return undefined;
}

export interface PeerFilterStats {
  /** Dropped by the rule since the table was (re)made, as of the last sync. */
  droppedPackets: number;
  droppedBytes: number;
  /** Addresses in the set. */
  peers: number;
  /** Syncs of the filter that failed (nft missing or refusing). */
  errors: number;
  /** Table (re)created because it was missing or not as written. */
  repairs: number;
}

/** Keeps the table in step with the peer list; one `nft list chain` per sync, one transaction when something changed. */
export class VxlanPeerFilter {
  private applied: string | undefined;
  /** Syncs since the set was last written. */
  private sinceWrite = 0;
  private readonly invalidSeen = new Set<string>();
  readonly stats: PeerFilterStats = { droppedPackets: 0, droppedBytes: 0, peers: 0, errors: 0, repairs: 0 };

  constructor(
    private readonly nft: NftClient,
    private readonly port: number,
    private readonly log: Logger,
    /**
     * Rewrite an unchanged set every this many syncs (about a minute at the
     * default 10 s reconcile): reading the elements back costs as much as
     * writing them, and a set emptied by hand would otherwise drop every
     * peer until the peer list changes.
     */
    private readonly refreshEvery = 6,
  ) {
    checkPort(port);
  }

  /** Makes the set hold exactly the valid addresses of `publicIps`; returns whether nftables was changed. */
  async sync(publicIps: readonly unknown[]): Promise<boolean> {
    const peers = new Set<PeerAddress>();
    for (const ip of publicIps) {
      const r = peerAddress(ip);
      if (r.ok) peers.add(r.addr);
      else if (!this.invalidSeen.has(String(ip))) {
        this.invalidSeen.add(String(ip));
        this.log.warn({ publicIp: String(ip).slice(0, 40), reason: r.reason }, 'peer address left out of the vxlan peer filter');
      }
    }
    const sorted = [...peers].sort();
    const key = sorted.join(',');
    const rules = await this.nft.listChain(PEER_FILTER_FAMILY, PEER_FILTER_TABLE, PEER_FILTER_CHAIN);
    const counter = rules && parseFilterCounter(rules, this.port);
    let changed = false;
    if (!counter || rules!.length !== 1) {
      // Missing (first start, flushed ruleset) or not as we write it (port changed, edited by hand): rewrite it whole.
      await this.nft.apply(renderPeerFilter(this.port, sorted, rules !== undefined));
      if (rules !== undefined || this.applied !== undefined) this.stats.repairs++;
      this.log.info({ table: T, port: this.port, peers: sorted.length, replaced: rules !== undefined }, 'vxlan peer filter installed');
      this.stats.droppedPackets = 0;
      this.stats.droppedBytes = 0;
      changed = true;
    } else {
      this.stats.droppedPackets = counter.packets;
      this.stats.droppedBytes = counter.bytes;
      if (key !== this.applied || this.sinceWrite + 1 >= this.refreshEvery) {
        await this.nft.apply(renderPeerUpdate(sorted));
        if (key !== this.applied) this.log.info({ table: T, peers: sorted.length }, 'vxlan peer filter updated');
        changed = true;
      }
    }
    this.sinceWrite = changed ? 0 : this.sinceWrite + 1;
    this.applied = key;
    this.stats.peers = sorted.length;
    return changed;
  }

  /** Removes the table. */
  async remove(): Promise<void> {
    await removePeerFilter(this.nft);
    this.applied = undefined;
  }

  metrics(): MetricSample[] {
    const s = this.stats;
    const c = (name: string, help: string, value: number, type: 'counter' | 'gauge' = 'counter'): MetricSample => ({ name, help, type, labels: {}, value });
    return [
      c('weft_vxlan_peer_filter_dropped_packets_total', 'VXLAN packets from non-peers dropped by the peer filter (as of the last reconcile).', s.droppedPackets),
      c('weft_vxlan_peer_filter_dropped_bytes_total', 'Bytes of VXLAN packets from non-peers dropped by the peer filter (as of the last reconcile).', s.droppedBytes),
      c('weft_vxlan_peer_filter_peers', 'Peer addresses the vxlan peer filter accepts.', s.peers, 'gauge'),
      c('weft_vxlan_peer_filter_errors_total', 'Peer filter updates that failed.', s.errors),
      c('weft_vxlan_peer_filter_repairs_total', 'Times the peer filter table was missing or altered and was rewritten.', s.repairs),
    ];
  }
}
