/**
 * Registry on etcd v3 (weft's own gRPC client, src/etcd/), in
 * flannel's key schema.
 *
 * TTLs: each write of a TTL lease grants a fresh etcd lease and attaches the
 * key to it, as flanneld does; renewal is a re-put by the lease manager, so
 * there is no library keepalive whose `lost` event could go unhandled. The
 * lease the key held before is revoked afterwards (it holds nothing any more).
 * A reservation is written with no lease at all, on create AND on update.
 */
import { LeaseConflictError, StoreError, errorMessage } from '../core/errors.js';
import type { IPv4Net } from '../core/ip.js';
import { subnetKey } from '../core/ip.js';
import { EtcdClient, isCompactedError, type EtcdWatch, type KeyValue, type WatchEvent, type WatchResponse } from '../etcd/index.js';
import { MAX_LEASE_VALUE_BYTES, classifyLeaseKv, type RawLeaseKv } from './lease-check.js';
import {
  RegistryKeys,
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

export interface EtcdRegistryOptions {
  /** etcd endpoints. Default ["http://127.0.0.1:2379"]. */
  endpoints?: string[];
  /** Key prefix. Default "/coreos.com/network". */
  prefix?: string;
  /** CA file for TLS (https endpoints). */
  caFile?: string;
  /** Client certificate file (with keyFile) for TLS client auth. */
  certFile?: string;
  keyFile?: string;
  username?: string;
  password?: string;
  /** Deadline for each unary call, so a hung etcd becomes an error. Default 3000 ms. */
  callTimeoutMs?: number;
}

/** etcd says "no lease" with id 0. */
const NO_LEASE = '0';

/**
 * Listing reads pages of keys, sized by what the last page weighed: a few
 * keys first, doubling while values are flannel-sized (~150 bytes), back to
 * one key as soon as a page carries a big value. etcd cannot say how big a
 * value is without sending it, so this bounds one page to LIST_PAGE_MAX
 * values at worst and, in practice, to one oversized value at a time; each
 * is dropped (unparsed) as soon as its page is read.
 */
const LIST_PAGE_FIRST = 4;
const LIST_PAGE_MAX = 64;
const LIST_PAGE_GROW_BELOW_BYTES = 64 * 1024;
const LIST_PAGE_SHRINK_ABOVE_BYTES = 256 * 1024;

export class EtcdRegistry implements Registry {
  readonly client: EtcdClient;
  readonly keys: RegistryKeys;

  constructor(opts: EtcdRegistryOptions = {}) {
    this.client = new EtcdClient({
      endpoints: opts.endpoints?.length ? opts.endpoints : ['http://127.0.0.1:2379'],
      callTimeoutMs: opts.callTimeoutMs ?? 3000,
      ...(opts.caFile ? { caFile: opts.caFile } : {}),
      ...(opts.certFile ? { certFile: opts.certFile } : {}),
      ...(opts.keyFile ? { keyFile: opts.keyFile } : {}),
      ...(opts.username ? { username: opts.username, password: opts.password ?? '' } : {}),
    });
    this.keys = new RegistryKeys(opts.prefix);
  }

  async getConfig(): Promise<string | undefined> {
    return this.call('get config', async () => (await this.client.get(this.keys.config))?.value);
  }

  async putConfig(json: string): Promise<void> {
    await this.call('put config', () => this.client.put(this.keys.config, json));
  }

  async listLeases(): Promise<{ leases: Lease[]; invalid: InvalidLease[]; revision: number }> {
    return this.call('list leases', async () => {
      for (let attempt = 1; ; attempt++) {
        const leases: Lease[] = [];
        const invalid: InvalidLease[] = [];
        try {
          const revision = await this.listPaged(async (kvs) => {
            const read = await Promise.all(kvs.map((kv) => this.toEntry(kv)));
            for (const r of read) {
              if (!r) continue;
              if ('lease' in r) leases.push(r.lease);
              else invalid.push(r.invalid);
            }
          });
          leases.sort((a, b) => a.subnet.ip - b.subnet.ip);
          return { leases, invalid, revision };
        } catch (err) {
          // The first page's revision was compacted between pages: list again from the top.
          if (attempt < 3 && isCompactedError(err)) continue;
          throw err;
        }
      }
    });
  }

  async getLease(subnet: IPv4Net): Promise<Lease | undefined> {
    const r = await this.readLease(subnet);
    return r.kind === 'lease' ? r.lease : undefined;
  }

  async readLease(subnet: IPv4Net): Promise<LeaseRead> {
    return this.call(`get lease ${subnetKey(subnet)}`, async () => {
      const kv = await this.client.get(this.keys.lease(subnet));
      const r = kv ? await this.toEntry(kv) : undefined;
      if (!r) return { kind: 'absent' };
      return 'lease' in r ? { kind: 'lease', lease: r.lease } : { kind: 'invalid', invalid: r.invalid };
    });
  }

  async createLease(subnet: IPv4Net, attrs: LeaseAttrs, ttlSeconds: number | undefined): Promise<Lease> {
    const key = this.keys.lease(subnet);
    return this.call(`create lease ${subnetKey(subnet)}`, async () => {
      const grant = await this.grant(ttlSeconds);
      const res = await this.client.txn({
        compare: [{ key, target: 'version', op: '==', value: 0 }],
        success: [{ put: { key, value: serializeLeaseAttrs(attrs), ...(grant ? { lease: grant.id } : {}) } }],
      });
      if (!res.succeeded) {
        if (grant) this.revokeQuietly(grant.id);
        throw new LeaseConflictError(`lease ${subnetKey(subnet)} already exists`, { subnet: subnetKey(subnet) });
      }
      return { ...this.written(subnet, attrs, Number(res.revision), grant), createRevision: Number(res.revision) };
    });
  }

  async updateLease(
    subnet: IPv4Net,
    attrs: LeaseAttrs,
    ttlSeconds: number | undefined,
    opts: UpdateLeaseOptions = {},
  ): Promise<Lease> {
    const key = this.keys.lease(subnet);
    return this.call(`update lease ${subnetKey(subnet)}`, async () => {
      const grant = await this.grant(ttlSeconds);
      // Read-then-put in one transaction tells us which lease the key left.
      // Without a lease id the put detaches the key from any lease: this is
      // what keeps a reservation a reservation (flannel 1329 re-attaches one).
      const res = await this.client.txn({
        compare: [
          opts.ifRevision !== undefined
            ? { key, target: 'mod', op: '==', value: opts.ifRevision }
            : { key, target: 'version', op: '>', value: -1 },
        ],
        success: [{ range: { key } }, { put: { key, value: serializeLeaseAttrs(attrs), ...(grant ? { lease: grant.id } : {}) } }],
      });
      if (!res.succeeded) {
        if (grant) this.revokeQuietly(grant.id);
        throw new LeaseConflictError(`lease ${subnetKey(subnet)} changed since revision ${opts.ifRevision}`, {
          subnet: subnetKey(subnet),
        });
      }
      const before = res.responses[0]?.range?.kvs[0];
      const old = before?.lease;
      if (old && old !== NO_LEASE && old !== grant?.id) this.revokeQuietly(old);
      const created = Number(before?.createRevision);
      return { ...this.written(subnet, attrs, Number(res.revision), grant), createRevision: created > 0 ? created : Number(res.revision) };
    });
  }

  async deleteLease(subnet: IPv4Net): Promise<void> {
    await this.call(`delete lease ${subnetKey(subnet)}`, () => this.client.delete(this.keys.lease(subnet)));
  }

  async watchLeases(
    fromRevision: number,
    onEvents: (events: RegistryWatchEvent[]) => void,
    signal: AbortSignal,
  ): Promise<WatchEnd> {
    if (signal.aborted) return 'aborted';
    return new Promise<WatchEnd>((resolve) => {
      let done = false;
      let watch: EtcdWatch | undefined;
      // Events are converted in order (expiry lookups are async) and dropped once we end.
      let chain = Promise.resolve();
      const finish = (why: WatchEnd, reason?: string) => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        watch?.cancel();
        chain = chain.then(() => {
          if (why === 'resync') onEvents([{ type: 'resync', reason: reason ?? 'watch cancelled' }]);
          resolve(why);
        });
      };
      const onAbort = () => finish('aborted');
      signal.addEventListener('abort', onAbort, { once: true });
      // etcd cancels a watch whose start revision was compacted; a stream that
      // ends (etcd stopped, connection lost) may have missed events: either way
      // the caller relists.
      watch = this.client.watch(
        this.keys.subnets,
        { prefix: true, startRevision: String(fromRevision), prevKv: true },
        {
          onEvents: (res) => {
            chain = chain.then(async () => {
              const events = await this.toEvents(res);
              if (!done && events.length > 0) onEvents(events);
            });
          },
          onError: (err) => finish('resync', errorMessage(err)),
        },
      );
    });
  }

  async close(): Promise<void> {
    this.client.close();
  }

  /** Compacts etcd's history up to `revision` (tests and `weftctl` maintenance). */
  async compact(revision: number): Promise<void> {
    await this.call('compact', () => this.client.compact(revision, { physical: true }));
  }

  // ---- internals ----

  private async grant(ttlSeconds: number | undefined): Promise<{ id: string; ttl: number } | undefined> {
    if (ttlSeconds === undefined) return undefined;
    return this.client.leaseGrant(ttlSeconds);
  }

  private revokeQuietly(id: string): void {
    this.client.leaseRevoke(id).catch(() => {});
  }

  private written(subnet: IPv4Net, attrs: LeaseAttrs, revision: number, grant: { id: string; ttl: number } | undefined): Lease {
    return {
      subnet,
      attrs,
      key: subnetKey(subnet),
      revision,
      ...(grant ? { leaseId: grant.id, expiration: new Date(Date.now() + grant.ttl * 1000) } : {}),
    };
  }

  /**
   * Reads `<prefix>/subnets/` in pages at the first page's revision (one
   * consistent snapshot), handing each page to `onPage` before the next is
   * read; returns that revision. Page size adapts to the bytes of the last
   * page (see LIST_PAGE_*).
   */
  private async listPaged(onPage: (kvs: KeyValue[]) => Promise<void>): Promise<number> {
    const prefix = this.keys.subnets;
    const end = prefixEnd(prefix);
    let from = prefix;
    let limit = LIST_PAGE_FIRST;
    let revision: string | undefined;
    for (;;) {
      const page = await this.client.range(from, { rangeEnd: end, limit, ...(revision ? { revision } : {}) });
      revision ??= page.revision;
      let bytes = 0;
      for (const kv of page.kvs) bytes += kv.key.length + kv.value.length;
      await onPage(page.kvs);
      const last = page.kvs.at(-1)?.key;
      // The smallest key after the last one is the key plus a zero byte.
      if (!page.more || last === undefined || last + '\0' <= from) return Number(revision);
      from = last + '\0';
      if (bytes > LIST_PAGE_SHRINK_ABOVE_BYTES) limit = 1;
      else if (bytes < LIST_PAGE_GROW_BELOW_BYTES) limit = Math.min(LIST_PAGE_MAX, limit * 2);
    }
  }

  /** The raw form lease-check.ts classifies; oversized values are dropped here, unparsed. */
  private rawOf(kv: KeyValue): RawLeaseKv | undefined {
    const name = this.keys.nameOf(kv.key);
    if (name === undefined) return undefined;
    const bytes = Buffer.byteLength(kv.value);
    return {
      name,
      value: bytes > MAX_LEASE_VALUE_BYTES ? undefined : kv.value,
      bytes,
      modRevision: Number(kv.modRevision),
      createRevision: Number(kv.createRevision),
      ...(kv.lease && kv.lease !== NO_LEASE ? { leaseId: kv.lease } : {}),
    };
  }

  /** A key/value as a lease or a refused key; undefined for keys outside `subnets/`. */
  private async toEntry(kv: KeyValue): Promise<{ lease: Lease } | { invalid: InvalidLease } | undefined> {
    const raw = this.rawOf(kv);
    if (!raw) return undefined;
    const r = classifyLeaseKv(raw);
    if ('lease' in r && r.lease.leaseId !== undefined) {
      const expiration = await this.expirationOf(r.lease.leaseId);
      if (expiration) r.lease.expiration = expiration;
    }
    return r;
  }

  private async expirationOf(id: string): Promise<Date | undefined> {
    try {
      const { ttl } = await this.client.leaseTimeToLive(id);
      return ttl >= 0 ? new Date(Date.now() + ttl * 1000) : new Date(Date.now());
    } catch {
      // Informational only: the key itself is what counts.
      return undefined;
    }
  }

  private async toEvents(res: WatchResponse): Promise<RegistryLeaseEvent[]> {
    // One response can hold hundreds of puts (a burst of new hosts): their
    // expiry lookups run concurrently, and the events keep etcd's order.
    const converted = await Promise.all(res.events.map((ev) => this.toEvent(ev, Number(res.revision))));
    return converted.filter((e): e is RegistryLeaseEvent => e !== undefined);
  }

  private async toEvent(ev: WatchEvent, headerRevision: number): Promise<RegistryLeaseEvent | undefined> {
    const key = this.keys.nameOf(ev.kv.key);
    if (key === undefined) return undefined;
    if (ev.type === 'put') {
      const revision = Number(ev.kv.modRevision) || headerRevision;
      const r = await this.toEntry(ev.kv);
      if (!r) return undefined;
      return 'lease' in r ? { type: 'added', key, lease: r.lease, revision } : { type: 'invalid', key, invalid: r.invalid, revision };
    }
    const subnet = this.keys.subnetOf(ev.kv.key);
    if (!subnet) return { type: 'gone', key, revision: headerRevision };
    // A delete carries no value; the previous one (prevKv) says whose it was.
    let attrs: LeaseAttrs = { PublicIP: '', BackendType: '' };
    if (ev.prevKv?.value && ev.prevKv.value.length <= MAX_LEASE_VALUE_BYTES) {
      try {
        attrs = parseLeaseAttrs(ev.prevKv.value);
      } catch {
        // keep the placeholder: the subnet is what matters for a removal
      }
    }
    return { type: 'removed', key, lease: { subnet, attrs, key }, revision: headerRevision };
  }

  /** Runs an etcd call; anything but a lease conflict becomes a StoreError naming what failed. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof LeaseConflictError) throw err;
      throw new StoreError(`etcd: ${what} failed: ${errorMessage(err)}`, { what }, { cause: err });
    }
  }
}

/** The range end covering every key that starts with `prefix` (etcd's prefix rule). */
function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i]!++;
      return end;
    }
  }
  return Buffer.from([0]);
}
