/**
 * The host's subnet lease: acquire it in flannel's order, keep it alive, and
 * get the SAME subnet back when etcd loses it (expiry during an outage, key
 * deleted by hand) without restarting anything. Also the lease watch that
 * hands the daemon a full snapshot after every change.
 *
 * Policy (which subnet) is subnet-policy.ts; the store is a Registry, so all
 * of this runs against MemoryRegistry and a FakeClock in unit tests.
 */
import { systemClock, type Clock } from '../core/clock.js';
import { delay } from '../core/async.js';
import {
  AbortedError,
  ConfigError,
  LeaseConflictError,
  SubnetExhaustedError,
  WeftError,
  errorMessage,
  isWeftError,
} from '../core/errors.js';
import { formatCidr, sameNet, subnetKey, type IPv4Net } from '../core/ip.js';
import { silentLogger, type Logger } from '../core/log.js';
import { Backoff } from './backoff.js';
import { LeaseInvalidError } from './errors.js';
import { LeaseView } from './lease-view.js';
import { Wakeup } from './wakeup.js';
import { subnetCount } from './netconfig.js';
import { isReservation, sameAttrs, type Registry } from './registry.js';
import { chooseSubnet, describeChoice, splitOwnLeases } from './subnet-policy.js';
import type { InvalidLease, InvalidReason, Lease, LeaseAttrs, LeaseEvent, NetworkConfig } from './types.js';

/** flannel's lease TTL: 24 h. */
export const DEFAULT_LEASE_TTL_SECONDS = 24 * 3600;

export interface LeaseManagerOptions {
  registry: Registry;
  config: NetworkConfig;
  /** The address other hosts reach us on (the lease's PublicIP). */
  publicIp: string;
  /** "host-gw" | "vxlan" | "udp". */
  backendType: string;
  /** Backend-specific data published in the lease (vxlan: {VNI, VtepMAC}). Default: none. */
  backendData?: unknown;
  /** Lease TTL. Default 86400 s (flannel). */
  ttlSeconds?: number;
  /** Renew this long before expiry. Default min(3600 s, ttl / 3). */
  renewMarginSeconds?: number;
  /** Subnet from the old subnet.env, tried second. */
  previousSubnet?: IPv4Net;
  /** Default: the system clock. */
  clock?: Clock;
  /** Default: silent. */
  log?: Logger;
  /** Random source for the free-subnet pick. Default Math.random. */
  random?: () => number;
  /** First retry delay after an etcd error. Default 500 ms (doubles, jittered). */
  minBackoffMs?: number;
  /** Longest retry delay. Default 10 000 ms. */
  maxBackoffMs?: number;
  /** Re-read our key at least this often even without watch events. Default 60 000 ms. */
  recheckIntervalMs?: number;
  /** Sleep used between attempts (tests advance a FakeClock in it). Default: a real timer. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Our lease was acquired, re-created or moved to another subnet. */
  onLeaseChanged?: (lease: Lease) => void;
  /** An etcd error or a conflict the manager is working around. */
  onError?: (err: Error) => void;
  /** A key weft refuses, once per key, revision and reason (after it was logged). */
  onInvalid?: (invalid: InvalidLease) => void;
}

export interface LeaseCounters {
  /** Successful renewals of our TTL. */
  renewals: number;
  /** Times our key was gone (expired / deleted) and we re-created the same subnet. */
  reacquisitions: number;
  /** Times another host held our subnet and we had to take a different one. */
  subnetChanges: number;
  /** Failed registry calls. */
  etcdErrors: number;
  /** Create races lost. */
  conflicts: number;
  /** Lease watches restarted from a fresh list (compaction, cancel). */
  resyncs: number;
  /** Keys refused (once per key, revision and reason), by reason. */
  invalid: Partial<Record<InvalidReason, number>>;
}

export type LeaseSnapshot = ReadonlyMap<string, Lease>;

const MAX_CONFLICTS_BEFORE_BACKOFF = 10;

export class LeaseManager {
  readonly counters: LeaseCounters = {
    renewals: 0,
    reacquisitions: 0,
    subnetChanges: 0,
    etcdErrors: 0,
    conflicts: 0,
    resyncs: 0,
    invalid: {},
  };
  private lease: Lease | undefined;
  /** key -> "revision:reason" last reported, so each refusal is logged and counted once. */
  private readonly reported = new Map<string, string>();
  /** Keys refused in the current lease view (watch), by key name. */
  private invalidNow = new Map<string, InvalidLease>();
  /** Our own key holds a value weft refuses (set by the keep-alive loop). */
  private ownInvalid: InvalidLease | undefined;
  private readonly registry: Registry;
  private readonly config: NetworkConfig;
  private readonly ttlSeconds: number;
  private readonly marginMs: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly wakeup = new Wakeup();

  constructor(private readonly opts: LeaseManagerOptions) {
    if (opts.ttlSeconds !== undefined && !(Number.isInteger(opts.ttlSeconds) && opts.ttlSeconds >= 1)) {
      throw new ConfigError('ttlSeconds', `must be a whole number of seconds >= 1, got ${opts.ttlSeconds}`);
    }
    this.registry = opts.registry;
    this.config = opts.config;
    this.ttlSeconds = opts.ttlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    this.marginMs = 1000 * (opts.renewMarginSeconds ?? Math.min(3600, this.ttlSeconds / 3));
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? silentLogger;
    this.sleep = opts.sleep ?? delay;
  }

  /** The lease we hold, once acquired. */
  get current(): Lease | undefined {
    return this.lease;
  }

  /** When our lease expires (undefined: none yet, or a reservation). For the daemon's metric. */
  get expiration(): Date | undefined {
    return this.lease?.expiration;
  }

  /**
   * Keys weft refuses right now: those of the last lease view plus our own
   * key when it holds a refused value. For /readyz and the gauge.
   */
  get invalidLeases(): InvalidLease[] {
    const all = new Map(this.invalidNow);
    if (this.ownInvalid) all.set(this.ownInvalid.key, this.ownInvalid);
    return [...all.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Our own key's refused value, if it holds one (we keep our subnet and do not write over it). */
  get ownLeaseInvalid(): InvalidLease | undefined {
    return this.ownInvalid;
  }

  /** The lease value we publish. */
  get attrs(): LeaseAttrs {
    const a: LeaseAttrs = { PublicIP: this.opts.publicIp, PublicIPv6: null, BackendType: this.opts.backendType };
    if (this.opts.backendData !== undefined) a.BackendData = this.opts.backendData;
    return a;
  }

  /**
   * Gets a lease: ours (by PublicIP), else the previous subnet if free, else a
   * random free one. Retries lost races and etcd errors (with backoff) until
   * the signal fires.
   * @throws SubnetExhaustedError when every subnet is held
   * @throws AbortedError when the signal fires first
   */
  async acquire(signal: AbortSignal): Promise<Lease> {
    const backoff = this.backoff();
    const exclude = new Set<string>();
    let conflictsInRow = 0;
    for (;;) {
      if (signal.aborted) throw new AbortedError();
      try {
        const lease = await this.tryAcquire(exclude);
        this.setLease(lease, true);
        return lease;
      } catch (err) {
        if (signal.aborted) throw new AbortedError();
        if (isWeftError(err, 'ERR_LEASE_CONFLICT')) {
          this.counters.conflicts++;
          if (++conflictsInRow < MAX_CONFLICTS_BEFORE_BACKOFF) continue;
          conflictsInRow = 0;
          exclude.clear();
        } else if (err instanceof SubnetExhaustedError || err instanceof ConfigError || err instanceof AbortedError) {
          throw err;
        } else {
          this.storeError(err, 'acquiring lease failed, retrying');
        }
        await this.pause(backoff.next(), signal);
      }
    }
  }

  /** One pass of flannel's acquire order; LeaseConflictError when a race was lost. */
  private async tryAcquire(exclude: Set<string>): Promise<Lease> {
    const { leases: listed, invalid } = await this.registry.listLeases();
    for (const inv of invalid) this.reportInvalid(inv);
    const stale = splitOwnLeases(this.config, listed, this.opts.publicIp).incompatible;
    for (const old of stale) {
      // flannel does the same: a lease outside the current Network/SubnetLen is useless to us.
      this.log.info({ subnet: formatCidr(old.subnet), network: formatCidr(this.config.network) }, 'deleting our lease that no longer fits the network config');
      await this.registry.deleteLease(old.subnet);
    }
    // A key weft cannot read still occupies its subnet: it is never created over.
    const occupied: Lease[] = invalid
      .filter((i) => i.subnet !== undefined)
      .map((i) => ({ subnet: i.subnet!, attrs: { PublicIP: '', BackendType: '' }, key: i.key }));
    const leases = [...listed.filter((l) => !stale.includes(l)), ...occupied];
    const choice = chooseSubnet({
      config: this.config,
      leases,
      publicIp: this.opts.publicIp,
      ...(this.opts.previousSubnet ? { previousSubnet: this.opts.previousSubnet } : {}),
      exclude,
      ...(this.opts.random ? { random: this.opts.random } : {}),
    });
    switch (choice.kind) {
      case 'exhausted':
        throw new SubnetExhaustedError(
          `no free subnet: all ${subnetCount(this.config)} subnets of ${formatCidr(this.config.network)} are leased`,
          { network: formatCidr(this.config.network), leases: leases.length },
        );
      case 'own': {
        // Keep a reservation a reservation; a TTL lease gets a fresh TTL and our current attrs.
        const ttl = isReservation(choice.lease) ? undefined : this.ttlSeconds;
        const lease = await this.registry.updateLease(choice.lease.subnet, this.attrs, ttl, {
          ...(choice.lease.revision !== undefined ? { ifRevision: choice.lease.revision } : {}),
        });
        this.log.info({ subnet: formatCidr(lease.subnet), publicIp: this.opts.publicIp, reservation: ttl === undefined }, 'reusing our existing lease');
        return lease;
      }
      case 'previous':
      case 'random': {
        try {
          const lease = await this.registry.createLease(choice.subnet, this.attrs, this.ttlSeconds);
          this.log.info({ subnet: formatCidr(lease.subnet), publicIp: this.opts.publicIp, via: choice.kind }, `acquired ${describeChoice(choice)}`);
          return lease;
        } catch (err) {
          if (isWeftError(err, 'ERR_LEASE_CONFLICT')) exclude.add(subnetKey(choice.subnet));
          throw err;
        }
      }
    }
  }

  /**
   * Keeps the lease: renews it before expiry (reservations are left without
   * TTL), re-creates the same subnet when the key disappears, and moves to a
   * new subnet only when another host holds ours. etcd errors are retried with
   * backoff forever. Resolves when the signal fires.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (!this.lease) {
      try {
        await this.acquire(signal);
      } catch (err) {
        if (err instanceof AbortedError) return;
        throw err;
      }
    }
    const watching = this.watchOwnKey(signal);
    const backoff = this.backoff();
    let conflictsInRow = 0;
    try {
      while (!signal.aborted) {
        let waitMs: number;
        try {
          await this.maintain(signal);
          backoff.reset();
          conflictsInRow = 0;
          waitMs = Math.min(this.msUntilRenewal(), this.opts.recheckIntervalMs ?? 60_000);
        } catch (err) {
          if (signal.aborted) break;
          if (err instanceof SubnetExhaustedError) throw err;
          if (isWeftError(err, 'ERR_LEASE_CONFLICT')) {
            // Someone wrote our key between our read and our write: look again
            // at once, but a key that keeps changing under us gets backoff.
            this.counters.conflicts++;
            waitMs = conflictsInRow++ === 0 ? 0 : backoff.next();
          } else if (isWeftError(err, 'ERR_LEASE_INVALID')) {
            // Already logged and counted (once per revision); look again later.
            waitMs = backoff.next();
          } else {
            this.storeError(err, 'keeping lease failed, retrying');
            waitMs = backoff.next();
          }
        }
        await this.wakeup.wait(waitMs, signal, this.sleep);
      }
    } finally {
      await watching;
    }
  }

  /** One check of our key: re-create, renew, rewrite or move, as needed. */
  private async maintain(signal: AbortSignal): Promise<void> {
    const held = this.lease!;
    const read = await this.registry.readLease(held.subnet);
    if (read.kind === 'invalid') {
      // Not ours to overwrite or delete (it may be a hand-written value): keep
      // our subnet, say so once per revision, and look again with backoff.
      this.ownInvalid = read.invalid;
      this.reportInvalid(read.invalid);
      throw new LeaseInvalidError(`our lease key ${read.invalid.key} holds a value weft refuses: ${read.invalid.detail}`, {
        key: read.invalid.key,
        reason: read.invalid.reason,
      });
    }
    this.ownInvalid = undefined;
    const stored = read.kind === 'lease' ? read.lease : undefined;
    if (!stored) {
      // Expired (e.g. etcd unreachable longer than the TTL) or deleted by hand:
      // take the same subnet back so pods keep their addresses (flannel 904, 1240).
      const lease = await this.registry.createLease(held.subnet, this.attrs, this.ttlSeconds);
      this.counters.reacquisitions++;
      this.log.warn({ subnet: formatCidr(lease.subnet) }, 'our lease was gone from etcd; re-created the same subnet');
      this.setLease(lease, true);
      return;
    }
    if (stored.attrs.PublicIP !== this.opts.publicIp) {
      // Another host holds our subnet now. Sharing it would break both hosts, so move.
      const err = new LeaseConflictError(
        `subnet ${formatCidr(held.subnet)} is now leased by ${stored.attrs.PublicIP}; acquiring another one`,
        { subnet: formatCidr(held.subnet), holder: stored.attrs.PublicIP },
      );
      this.log.error({ subnet: formatCidr(held.subnet), holder: stored.attrs.PublicIP }, 'our subnet was taken by another host');
      this.opts.onError?.(err);
      this.counters.subnetChanges++;
      this.lease = undefined;
      await this.acquire(signal);
      return;
    }
    const reservation = isReservation(stored);
    const due =
      !reservation && (stored.expiration === undefined || stored.expiration.getTime() - this.clock.now() <= this.marginMs);
    if (due || !sameAttrs(stored.attrs, this.attrs)) {
      const lease = await this.registry.updateLease(held.subnet, this.attrs, reservation ? undefined : this.ttlSeconds, {
        ...(stored.revision !== undefined ? { ifRevision: stored.revision } : {}),
      });
      if (due) {
        this.counters.renewals++;
        this.log.debug({ subnet: formatCidr(lease.subnet), expires: lease.expiration?.toISOString() }, 'renewed lease');
      } else {
        this.log.info({ subnet: formatCidr(lease.subnet) }, 'rewrote our lease value (it had been changed)');
      }
      this.setLease(lease, false);
      return;
    }
    this.setLease(stored, false);
  }

  private msUntilRenewal(): number {
    const exp = this.lease?.expiration;
    if (!exp || isReservation(this.lease!)) return Number.POSITIVE_INFINITY;
    return Math.max(0, exp.getTime() - this.marginMs - this.clock.now());
  }

  /** Pokes the run loop when our key changes under us (delete, expiry, foreign write). */
  private async watchOwnKey(signal: AbortSignal): Promise<void> {
    const backoff = this.backoff();
    while (!signal.aborted) {
      try {
        const { leases, revision } = await this.registry.listLeases();
        // Whatever happened before this list (a delete while we were not
        // watching yet, or during a resync) is seen here, not as an event.
        const mine = this.lease;
        const listed = mine && leases.find((l) => sameNet(l.subnet, mine.subnet));
        if (mine && (!listed || listed.revision !== mine.revision)) this.wakeup.wake();
        const end = await this.registry.watchLeases(
          revision + 1,
          (events) => {
            const mine = this.lease;
            const ownKey = mine && subnetKey(mine.subnet);
            const touched = events.some(
              (ev) =>
                ev.type === 'resync' ||
                (ev.key === ownKey &&
                  // our own writes come back as events too; only others' matter
                  !(ev.type === 'added' && ev.revision === mine!.revision)),
            );
            if (touched) this.wakeup.wake();
          },
          signal,
        );
        if (end === 'aborted') return;
        backoff.reset();
        await this.pause(backoff.next(), signal);
      } catch (err) {
        if (signal.aborted) return;
        // run() counts etcd errors from its own calls; a failed list here is the same outage.
        this.log.debug({ err: errorMessage(err) }, 'own-lease watch failed, retrying');
        await this.pause(backoff.next(), signal).catch(() => {});
      }
    }
  }

  /**
   * Reports every lease: a full snapshot (subnetKey -> Lease) on start and after
   * every change, plus the events since the last report. After a compaction or
   * a broken watch it relists and reports the new snapshot (the events then
   * being the difference), so the caller can always reconcile from the
   * snapshot alone. Resolves when the signal fires.
   */
  async watch(onChange: (snapshot: LeaseSnapshot, events: LeaseEvent[]) => void, signal: AbortSignal): Promise<void> {
    const backoff = this.backoff();
    let snapshot = new Map<string, Lease>();
    const view = new LeaseView(this.config, (inv) => this.reportInvalid(inv));
    while (!signal.aborted) {
      try {
        const { leases, invalid, revision } = await this.registry.listLeases();
        // The raw view, per key: a relist and the watch events after it go
        // through the same rules (LeaseView), so both always agree.
        view.reset(leases, invalid);
        const publish = (): LeaseEvent[] => {
          const next = new Map(view.leases);
          const diff = diffSnapshots(snapshot, next);
          snapshot = next;
          this.noteInvalid(view.invalid);
          return diff;
        };
        const diff = publish();
        onChange(snapshot, diff);
        let sawEvents = false;
        const end = await this.registry.watchLeases(
          revision + 1,
          (events) => {
            let changed = false;
            for (const ev of events) {
              if (ev.type === 'resync') continue;
              changed = true;
              if (ev.type === 'added') view.put(ev.key, ev.lease);
              else if (ev.type === 'invalid') view.refuse(ev.key, ev.invalid);
              else view.remove(ev.key);
            }
            if (!changed) return;
            const out = publish();
            if (out.length > 0) {
              sawEvents = true;
              onChange(snapshot, out);
            }
          },
          signal,
        );
        if (end === 'aborted') return;
        this.counters.resyncs++;
        this.log.info({ revision }, 'lease watch ended (compaction or cancel); relisting');
        // A watch that worked for a while starts over fast; repeated immediate
        // failures back off, so a compacted revision can never cause a hot loop.
        if (sawEvents) backoff.reset();
        await this.pause(backoff.next(), signal);
      } catch (err) {
        if (signal.aborted || err instanceof AbortedError) return;
        this.storeError(err, 'listing leases failed, retrying');
        await this.pause(backoff.next(), signal).catch(() => {});
      }
    }
  }

  /** Keeps the refused keys of the watch's view (for /readyz); a key fine again may be reported again later. */
  private noteInvalid(now: ReadonlyMap<string, InvalidLease>): void {
    for (const key of this.invalidNow.keys()) if (!now.has(key) && key !== this.ownInvalid?.key) this.reported.delete(key);
    this.invalidNow = new Map(now);
  }

  /** Logs and counts a refused key once per key, revision and reason. */
  private reportInvalid(inv: InvalidLease): void {
    const tag = `${inv.revision}:${inv.reason}`;
    if (this.reported.get(inv.key) === tag) return;
    this.reported.set(inv.key, tag);
    this.counters.invalid[inv.reason] = (this.counters.invalid[inv.reason] ?? 0) + 1;
    this.log.warn(
      { key: inv.key, reason: inv.reason, detail: inv.detail, revision: inv.revision },
      'refused lease key (not a peer; the key is left alone)',
    );
    this.opts.onInvalid?.(inv);
  }

  // ---- internals ----

  private setLease(lease: Lease, announce: boolean): void {
    const prev = this.lease;
    this.lease = lease;
    if (announce || !prev || !sameNet(prev.subnet, lease.subnet)) this.opts.onLeaseChanged?.(lease);
  }

  private storeError(err: unknown, what: string): void {
    this.counters.etcdErrors++;
    const e = err instanceof Error ? err : new WeftError(String(err));
    this.log.warn({ err: errorMessage(e), subnet: this.lease ? formatCidr(this.lease.subnet) : undefined }, what);
    this.opts.onError?.(e);
  }

  private backoff(): Backoff {
    return new Backoff({
      minMs: this.opts.minBackoffMs ?? 500,
      maxMs: this.opts.maxBackoffMs ?? 10_000,
      ...(this.opts.random ? { random: this.opts.random } : {}),
    });
  }

  /** Sleep that turns an abort into AbortedError (callers check the signal). */
  private async pause(ms: number, signal: AbortSignal): Promise<void> {
    await this.sleep(ms, signal);
  }
}

/** Events that turn snapshot `a` into `b` (changed values count as added). */
export function diffSnapshots(a: ReadonlyMap<string, Lease>, b: ReadonlyMap<string, Lease>): LeaseEvent[] {
  const out: LeaseEvent[] = [];
  for (const [k, l] of a) if (!b.has(k)) out.push({ type: 'removed', lease: l });
  for (const [k, l] of b) {
    const old = a.get(k);
    if (old === l) continue; // the view keeps unchanged leases as the same objects
    if (!old || !sameAttrs(old.attrs, l.attrs) || old.revision !== l.revision || !sameLeaseTtl(old, l)) {
      out.push({ type: 'added', lease: l });
    }
  }
  return out;
}

function sameLeaseTtl(a: Lease, b: Lease): boolean {
  return isReservation(a) === isReservation(b);
}
