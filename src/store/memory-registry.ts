/**
 * A stateful in-memory Registry for unit tests. It keeps what etcd keeps
 * (revisions, key versions, leases with TTLs on an injectable clock, a watch
 * history that can be compacted) and rejects what etcd rejects (create over
 * an existing key, compare-and-swap on a stale revision). Tests can make the
 * next calls fail and can compact the history under a running watch.
 */
import { systemClock, type Clock } from '../core/clock.js';
import { LeaseConflictError, StoreError } from '../core/errors.js';
import { parseSubnetKey, subnetKey, type IPv4Net } from '../core/ip.js';
import {
  parseLeaseAttrs,
  serializeLeaseAttrs,
  type Registry,
  type RegistryLeaseEvent,
  type RegistryWatchEvent,
  type UpdateLeaseOptions,
  type WatchEnd,
} from './registry.js';
import type { Lease, LeaseAttrs } from './types.js';

interface Entry {
  value: string;
  leaseId?: number;
  /** ms on the clock; undefined for a reservation. */
  expiresAt?: number;
  modRevision: number;
  version: number;
}

interface ActiveWatch {
  onEvents: (events: RegistryWatchEvent[]) => void;
  end: (why: WatchEnd) => void;
}

export interface MemoryRegistryOptions {
  /** Time source for TTL expiry. Default: the system clock. */
  clock?: Clock;
}

export class MemoryRegistry implements Registry {
  readonly clock: Clock;
  private revision = 1;
  private compactedAt = 0;
  private nextLeaseId = 0x1000;
  private config: string | undefined;
  private readonly entries = new Map<string, Entry>();
  private readonly history: RegistryLeaseEvent[] = [];
  private readonly watches = new Set<ActiveWatch>();
  private readonly failures: Error[] = [];
  /** Calls per method, for tests that check what the manager did. */
  readonly calls: Record<string, number> = {};

  constructor(opts: MemoryRegistryOptions = {}) {
    this.clock = opts.clock ?? systemClock;
  }

  // ---- test controls ----

  /** The next `n` registry calls reject with `err` (default: a StoreError, like etcd down). */
  failNext(n: number, err: Error = new StoreError('injected store failure')): void {
    for (let i = 0; i < n; i++) this.failures.push(err);
  }

  /** Drops history up to now; running watches get `resync` and end, as etcd cancels them. */
  compact(): void {
    this.compactedAt = this.revision;
    this.history.length = 0;
    for (const w of [...this.watches]) {
      // Like etcd: delivered asynchronously, and nothing more after the cancel.
      this.watches.delete(w);
      queueMicrotask(() => {
        w.onEvents([{ type: 'resync', reason: `revision ${this.compactedAt} compacted` }]);
        w.end('resync');
      });
    }
  }

  /** Removes keys whose TTL has passed on the clock (etcd's lessor does this on its own). */
  expire(): void {
    const now = this.clock.now();
    for (const [key, e] of this.entries) {
      if (e.expiresAt !== undefined && e.expiresAt <= now) this.remove(key, e);
    }
  }

  /** Writes an arbitrary value under a lease key (e.g. garbage another tool left behind). */
  putRaw(subnet: IPv4Net, value: string): void {
    this.write(subnetKey(subnet), value, undefined);
  }

  /** Current store revision. */
  get currentRevision(): number {
    return this.revision;
  }

  /** Number of watches running. */
  get watchCount(): number {
    return this.watches.size;
  }

  // ---- Registry ----

  async getConfig(): Promise<string | undefined> {
    await this.enter('getConfig');
    return this.config;
  }

  async putConfig(json: string): Promise<void> {
    await this.enter('putConfig');
    this.config = json;
    this.revision++;
  }

  async listLeases(): Promise<{ leases: Lease[]; revision: number }> {
    await this.enter('listLeases');
    const leases: Lease[] = [];
    for (const [key, e] of this.entries) {
      const lease = this.toLease(key, e);
      if (lease) leases.push(lease);
    }
    leases.sort((a, b) => a.subnet.ip - b.subnet.ip);
    return { leases, revision: this.revision };
  }

  async getLease(subnet: IPv4Net): Promise<Lease | undefined> {
    await this.enter('getLease');
    const key = subnetKey(subnet);
    const e = this.entries.get(key);
    return e ? this.toLease(key, e) : undefined;
  }

  async createLease(subnet: IPv4Net, attrs: LeaseAttrs, ttlSeconds: number | undefined): Promise<Lease> {
    await this.enter('createLease');
    const key = subnetKey(subnet);
    if (this.entries.has(key)) throw new LeaseConflictError(`lease ${key} already exists`, { subnet: key });
    return this.toLease(key, this.write(key, serializeLeaseAttrs(attrs), ttlSeconds))!;
  }

  async updateLease(
    subnet: IPv4Net,
    attrs: LeaseAttrs,
    ttlSeconds: number | undefined,
    opts: UpdateLeaseOptions = {},
  ): Promise<Lease> {
    await this.enter('updateLease');
    const key = subnetKey(subnet);
    if (opts.ifRevision !== undefined && this.entries.get(key)?.modRevision !== opts.ifRevision) {
      throw new LeaseConflictError(`lease ${key} changed since revision ${opts.ifRevision}`, { subnet: key });
    }
    return this.toLease(key, this.write(key, serializeLeaseAttrs(attrs), ttlSeconds))!;
  }

  async deleteLease(subnet: IPv4Net): Promise<void> {
    await this.enter('deleteLease');
    const key = subnetKey(subnet);
    const e = this.entries.get(key);
    if (e) this.remove(key, e);
  }

  async watchLeases(
    fromRevision: number,
    onEvents: (events: RegistryWatchEvent[]) => void,
    signal: AbortSignal,
  ): Promise<WatchEnd> {
    await this.enter('watchLeases');
    if (signal.aborted) return 'aborted';
    if (fromRevision <= this.compactedAt) {
      onEvents([{ type: 'resync', reason: `revision ${fromRevision} compacted (at ${this.compactedAt})` }]);
      return 'resync';
    }
    return new Promise<WatchEnd>((resolve) => {
      const w: ActiveWatch = {
        onEvents,
        end: (why) => {
          this.watches.delete(w);
          signal.removeEventListener('abort', onAbort);
          resolve(why);
        },
      };
      const onAbort = () => w.end('aborted');
      signal.addEventListener('abort', onAbort, { once: true });
      this.watches.add(w);
      const backlog = this.history.filter((ev) => ev.revision >= fromRevision);
      if (backlog.length > 0) onEvents(backlog);
    });
  }

  async close(): Promise<void> {
    for (const w of [...this.watches]) w.end('aborted');
  }

  // ---- internals ----

  /** Every call: lets other tasks run (etcd is remote), expires leases, injects failures. */
  private async enter(method: string): Promise<void> {
    this.calls[method] = (this.calls[method] ?? 0) + 1;
    await Promise.resolve();
    this.expire();
    const err = this.failures.shift();
    if (err) throw err;
  }

  private write(key: string, value: string, ttlSeconds: number | undefined): Entry {
    const prev = this.entries.get(key);
    this.revision++;
    const e: Entry = {
      value,
      modRevision: this.revision,
      version: (prev?.version ?? 0) + 1,
      ...(ttlSeconds !== undefined
        ? { leaseId: this.nextLeaseId++, expiresAt: this.clock.now() + ttlSeconds * 1000 }
        : {}),
    };
    this.entries.set(key, e);
    const lease = this.toLease(key, e);
    if (lease) this.emit({ type: 'added', lease, revision: this.revision });
    return e;
  }

  private remove(key: string, e: Entry): void {
    this.entries.delete(key);
    this.revision++;
    const lease = this.toLease(key, e) ?? {
      subnet: parseSubnetKey(key)!,
      attrs: { PublicIP: '', BackendType: '' },
    };
    this.emit({ type: 'removed', lease: { subnet: lease.subnet, attrs: lease.attrs }, revision: this.revision });
  }

  private emit(ev: RegistryLeaseEvent): void {
    this.history.push(ev);
    for (const w of this.watches) queueMicrotask(() => this.watches.has(w) && w.onEvents([ev]));
  }

  private toLease(key: string, e: Entry): Lease | undefined {
    const subnet = parseSubnetKey(key);
    if (!subnet) return undefined;
    let attrs: LeaseAttrs;
    try {
      attrs = parseLeaseAttrs(e.value, key);
    } catch {
      return undefined;
    }
    return {
      subnet,
      attrs,
      revision: e.modRevision,
      ...(e.leaseId !== undefined ? { leaseId: String(e.leaseId), expiration: new Date(e.expiresAt!) } : {}),
    };
  }
}
