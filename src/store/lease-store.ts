/**
 * What the daemon needs from wherever subnets come from: our lease, kept
 * alive, and every peer's lease as snapshots. LeaseManager (etcd, flannel's
 * schema and acquire order) and KubeLeaseStore (Nodes' podCIDRs and
 * annotations) both are one; the backends and subnet.env never know which.
 *
 * The Kubernetes store sits here rather than under Registry because its
 * subnet is assigned (spec.podCIDR), not chosen, and has no TTL or
 * compare-and-swap: the Registry's create/renew operations have no meaning there.
 */
import type { InvalidLease, Lease, LeaseEvent } from './types.js';

export type LeaseSnapshot = ReadonlyMap<string, Lease>;

export interface LeaseStore {
  /** When our lease expires; undefined when it never does (reservation, Kubernetes). */
  readonly expiration: Date | undefined;
  /** Refused peers right now (for /readyz and the gauge). */
  readonly invalidLeases: InvalidLease[];
  /** Our own entry's refused value, if any. */
  readonly ownLeaseInvalid: InvalidLease | undefined;
  /** Resolves with our lease once we hold one (retrying store errors). */
  acquire(signal: AbortSignal): Promise<Lease>;
  /** Keeps our lease (renewal, re-creation, rewrites); resolves when the signal fires. */
  run(signal: AbortSignal): Promise<void>;
  /** Full snapshots (subnetKey -> Lease) on start and after every change; resolves when the signal fires. */
  watch(onChange: (snapshot: LeaseSnapshot, events: LeaseEvent[]) => void, signal: AbortSignal): Promise<void>;
}
