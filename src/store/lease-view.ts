/**
 * The lease watch's view of `<prefix>/subnets/`: the raw entry per key (a
 * lease or a refusal) and the leases accepted from it by acceptLeases()
 * (lease-check.ts). A relist resets it; watch events update it. Both end in
 * the same state as acceptLeases() over the raw entries, so a relist and the
 * watch never disagree.
 *
 * Recomputing acceptLeases() costs ~1.5 ms at 1000 keys, too much per event
 * when 1000 hosts join at once, so the common events take a fast path: while
 * every candidate has the Network's SubnetLen and no two share a subnet,
 * there can be no overlap, and an add, renewal or delete only touches its own
 * key. Anything else (another prefix length, a shared subnet, a refusal) falls
 * back to the full recompute.
 */
import { containsNet, subnetKey } from '../core/ip.js';
import { acceptLeases, type LeaseEntry } from './lease-check.js';
import type { InvalidLease, Lease, NetworkConfig } from './types.js';

export class LeaseView {
  private readonly raw = new Map<string, LeaseEntry>();
  /** Accepted leases by subnetKey. */
  private accepted = new Map<string, Lease>();
  /** Refused keys by key name. */
  private refused = new Map<string, InvalidLease>();
  /** Candidates (valid, inside the Network) per subnetKey, and how many have another prefix length. */
  private readonly perSubnet = new Map<string, number>();
  private odd = 0;

  constructor(
    private readonly config: Pick<NetworkConfig, 'network' | 'subnetLen'>,
    /** Called for every refusal after each change (the caller dedupes). */
    private readonly onRefused: (inv: InvalidLease) => void = () => {},
  ) {}

  /** Accepted leases by subnetKey (do not mutate). */
  get leases(): ReadonlyMap<string, Lease> {
    return this.accepted;
  }

  /** Refused keys by key name (do not mutate). */
  get invalid(): ReadonlyMap<string, InvalidLease> {
    return this.refused;
  }

  /** Replaces everything with a fresh list. */
  reset(leases: readonly Lease[], invalid: readonly InvalidLease[]): void {
    this.raw.clear();
    this.perSubnet.clear();
    this.odd = 0;
    for (const l of leases) this.setRaw(l.key ?? subnetKey(l.subnet), { lease: l });
    for (const i of invalid) this.setRaw(i.key, { invalid: i });
    this.recompute();
  }

  /** A put of a valid lease. */
  put(key: string, lease: Lease): void {
    const prev = this.raw.get(key);
    const oddBefore = this.odd;
    this.setRaw(key, { lease });
    const sk = subnetKey(lease.subnet);
    const prevSk = prev && 'lease' in prev && this.isCandidate(prev.lease) ? subnetKey(prev.lease.subnet) : undefined;
    // Same prefix length everywhere: only entries on the same subnet can overlap.
    const fast =
      oddBefore === 0 &&
      this.odd === 0 &&
      this.isCandidate(lease) &&
      this.perSubnet.get(sk) === 1 &&
      (prevSk === undefined || prevSk === sk || !this.perSubnet.has(prevSk));
    if (!fast) return this.recompute();
    if (prevSk !== undefined && prev && 'lease' in prev && this.accepted.get(prevSk) === prev.lease) this.accepted.delete(prevSk);
    this.refused.delete(key);
    this.accepted.set(sk, lease);
  }

  /** A put of a value weft refuses (registry-level: key, size, JSON, PublicIP). */
  refuse(key: string, invalid: InvalidLease): void {
    const prev = this.raw.get(key);
    const oddBefore = this.odd;
    this.setRaw(key, { invalid });
    if (prev && 'lease' in prev && this.isCandidate(prev.lease)) {
      const prevSk = subnetKey(prev.lease.subnet);
      if (oddBefore !== 0 || this.perSubnet.has(prevSk)) return this.recompute();
      if (this.accepted.get(prevSk) === prev.lease) this.accepted.delete(prevSk);
    }
    this.refused.set(key, invalid);
    this.onRefused(invalid);
  }

  /** A delete (or expiry) of a key. */
  remove(key: string): void {
    const prev = this.raw.get(key);
    if (!prev) return;
    const oddBefore = this.odd;
    this.deleteRaw(key);
    this.refused.delete(key);
    if ('invalid' in prev || !this.isCandidate(prev.lease)) return;
    const sk = subnetKey(prev.lease.subnet);
    if (oddBefore !== 0 || this.perSubnet.has(sk)) return this.recompute();
    if (this.accepted.get(sk) === prev.lease) this.accepted.delete(sk);
  }

  private isCandidate(l: Lease): boolean {
    return containsNet(this.config.network, l.subnet);
  }

  private setRaw(key: string, e: LeaseEntry): void {
    this.deleteRaw(key);
    this.raw.set(key, e);
    if ('lease' in e && this.isCandidate(e.lease)) {
      const sk = subnetKey(e.lease.subnet);
      this.perSubnet.set(sk, (this.perSubnet.get(sk) ?? 0) + 1);
      if (e.lease.subnet.prefixLen !== this.config.subnetLen) this.odd++;
    }
  }

  private deleteRaw(key: string): void {
    const e = this.raw.get(key);
    if (!e) return;
    this.raw.delete(key);
    if ('lease' in e && this.isCandidate(e.lease)) {
      const sk = subnetKey(e.lease.subnet);
      const n = (this.perSubnet.get(sk) ?? 1) - 1;
      if (n > 0) this.perSubnet.set(sk, n);
      else this.perSubnet.delete(sk);
      if (e.lease.subnet.prefixLen !== this.config.subnetLen) this.odd--;
    }
  }

  private recompute(): void {
    const { accepted, invalid } = acceptLeases(this.config, this.raw.values());
    this.accepted = new Map(accepted.map((l) => [subnetKey(l.subnet), l]));
    this.refused = new Map(invalid.map((i) => [i.key, i]));
    for (const i of invalid) this.onRefused(i);
  }
}
