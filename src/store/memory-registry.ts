/**
 * A stateful in-memory Registry for unit tests. It keeps what etcd keeps
 * (revisions, key versions, leases with TTLs on an injectable clock, a watch
 * history that can be compacted) and rejects what etcd rejects (create over
 * an existing key, compare-and-swap on a stale revision). Tests can make the
 * next calls fail and can compact the history under a running watch.
 */
import { systemClock, type Clock } from '../core/clock.js';
import { LeaseConflictError, StoreError } from '../core/errors.js';
import { subnetKey, type IPv4Net } from '../core/ip.js';
import { MAX_LEASE_VALUE_BYTES, classifyLeaseKv, parseLeaseKeyName } from './lease-check.js';
import {
  parseLeaseAttrs,
  serializeLeaseAttrs,
  type LeaseRead,
  type Registry,
  type RegistryLeaseEvent,
  type RegistryWatchEvent,
  type UpdateLeaseOptions,
  type WatchEnd,
} from './registry.js';
import type { InvalidLease, Lease, LeaseAttrs } from './types.js';

interface Entry {
  value: string;
  createRevision: number;
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

  /**
   * Writes an arbitrary value under a lease key (e.g. garbage another tool
   * left behind); a string is a raw key name under `subnets/` (e.g. an alias
   * like `10.244.41.0-24&x`). `ttlSeconds` attaches a lease.
   */
  putRaw(subnet: IPv4Net | string, value: string, ttlSeconds?: number): void {
    this.write(typeof subnet === 'string' ? subnet : subnetKey(subnet), value, ttlSeconds);
  }

  /** The stored value under a raw key name, undefined when absent. */
  rawValue(name: string): string | undefined {
    return this.entries.get(name)?.value;
  }

  /** Deletes a raw key name under `subnets/` (no error when absent). */
  deleteRaw(name: string): void {
    const e = this.entries.get(name);
    if (e) this.remove(name, e);
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

  async listLeases(): Promise<{ leases: Lease[]; invalid: InvalidLease[]; revision: number }> {
    await this.enter('listLeases');
    const leases: Lease[] = [];
    const invalid: InvalidLease[] = [];
    for (const [key, e] of [...this.entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const r = this.classify(key, e);
      if ('lease' in r) leases.push(r.lease);
      else invalid.push(r.invalid);
    }
    leases.sort((a, b) => a.subnet.ip - b.subnet.ip);
    return { leases, invalid, revision: this.revision };
  }

  async getLease(subnet: IPv4Net): Promise<Lease | undefined> {
    const r = await this.readLease(subnet);
    return r.kind === 'lease' ? r.lease : undefined;
  }

  async readLease(subnet: IPv4Net): Promise<LeaseRead> {
    await this.enter('getLease');
    const key = subnetKey(subnet);
    const e = this.entries.get(key);
    if (!e) return { kind: 'absent' };
    const r = this.classify(key, e);
    return 'lease' in r ? { kind: 'lease', lease: r.lease } : { kind: 'invalid', invalid: r.invalid };
  }

  async createLease(subnet: IPv4Net, attrs: LeaseAttrs, ttlSeconds: number | undefined): Promise<Lease> {
    await this.enter('createLease');
    const key = subnetKey(subnet);
    if (this.entries.has(key)) throw new LeaseConflictError(`lease ${key} already exists`, { subnet: key });
    return this.leaseOf(key, this.write(key, serializeLeaseAttrs(attrs), ttlSeconds));
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
    return this.leaseOf(key, this.write(key, serializeLeaseAttrs(attrs), ttlSeconds));
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
      createRevision: prev?.createRevision ?? this.revision,
      modRevision: this.revision,
      version: (prev?.version ?? 0) + 1,
      ...(ttlSeconds !== undefined
        ? { leaseId: this.nextLeaseId++, expiresAt: this.clock.now() + ttlSeconds * 1000 }
        : {}),
    };
    this.entries.set(key, e);
    const r = this.classify(key, e);
    this.emit(
      'lease' in r
        ? { type: 'added', key, lease: r.lease, revision: this.revision }
        : { type: 'invalid', key, invalid: r.invalid, revision: this.revision },
    );
    return e;
  }

  private remove(key: string, e: Entry): void {
    this.entries.delete(key);
    this.revision++;
    const subnet = parseLeaseKeyName(key);
    if (!subnet) {
      this.emit({ type: 'gone', key, revision: this.revision });
      return;
    }
    // Like etcd's prevKv: the old value says whose it was when it parses.
    let attrs: LeaseAttrs = { PublicIP: '', BackendType: '' };
    if (e.value.length <= MAX_LEASE_VALUE_BYTES) {
      try {
        attrs = parseLeaseAttrs(e.value);
      } catch {
        // the subnet is what matters for a removal
      }
    }
    this.emit({ type: 'removed', key, lease: { subnet, attrs, key }, revision: this.revision });
  }

  private emit(ev: RegistryLeaseEvent): void {
    this.history.push(ev);
    for (const w of this.watches) queueMicrotask(() => this.watches.has(w) && w.onEvents([ev]));
  }

  /** The same rules as EtcdRegistry (lease-check.ts). */
  private classify(key: string, e: Entry): { lease: Lease } | { invalid: InvalidLease } {
    const bytes = Buffer.byteLength(e.value);
    const r = classifyLeaseKv({
      name: key,
      value: bytes > MAX_LEASE_VALUE_BYTES ? undefined : e.value,
      bytes,
      modRevision: e.modRevision,
      createRevision: e.createRevision,
      ...(e.leaseId !== undefined ? { leaseId: String(e.leaseId) } : {}),
    });
    if ('lease' in r && e.expiresAt !== undefined) r.lease.expiration = new Date(e.expiresAt);
    return r;
  }

  /** A key weft itself just wrote, as a Lease. */
  private leaseOf(key: string, e: Entry): Lease {
    const r = this.classify(key, e);
    if (!('lease' in r)) throw new StoreError(`wrote a lease weft cannot read back: ${r.invalid.detail}`);
    return r.lease;
  }
}
