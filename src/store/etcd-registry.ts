/**
 * Registry on etcd v3 (weft's own JSON-gateway client, src/etcd/), in
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
import { EtcdClient, type EtcdWatch, type KeyValue, type WatchEvent, type WatchResponse } from '../etcd/index.js';
import {
  RegistryKeys,
  parseLeaseAttrs,
  serializeLeaseAttrs,
  type Registry,
  type RegistryLeaseEvent,
  type RegistryWatchEvent,
  type UpdateLeaseOptions,
  type WatchEnd,
} from './registry.js';
import type { Lease, LeaseAttrs } from './types.js';

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

  async listLeases(): Promise<{ leases: Lease[]; revision: number }> {
    return this.call('list leases', async () => {
      const res = await this.client.list(this.keys.subnets);
      const leases = (await Promise.all(res.kvs.map((kv) => this.toLease(kv)))).filter((l): l is Lease => !!l);
      leases.sort((a, b) => a.subnet.ip - b.subnet.ip);
      return { leases, revision: Number(res.revision) };
    });
  }

  async getLease(subnet: IPv4Net): Promise<Lease | undefined> {
    return this.call(`get lease ${subnetKey(subnet)}`, async () => {
      const kv = await this.client.get(this.keys.lease(subnet));
      return kv ? this.toLease(kv) : undefined;
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
      return this.written(subnet, attrs, Number(res.revision), grant);
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
      const old = res.responses[0]?.range?.kvs[0]?.lease;
      if (old && old !== NO_LEASE && old !== grant?.id) this.revokeQuietly(old);
      return this.written(subnet, attrs, Number(res.revision), grant);
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
      revision,
      ...(grant ? { leaseId: grant.id, expiration: new Date(Date.now() + grant.ttl * 1000) } : {}),
    };
  }

  /** A key/value as a Lease; undefined for foreign keys or values that are not flannel's JSON. */
  private async toLease(kv: KeyValue): Promise<Lease | undefined> {
    const subnet = this.keys.subnetOf(kv.key);
    if (!subnet) return undefined;
    let attrs: LeaseAttrs;
    try {
      attrs = parseLeaseAttrs(kv.value, kv.key);
    } catch {
      return undefined;
    }
    const lease: Lease = { subnet, attrs, revision: Number(kv.modRevision) };
    if (kv.lease !== NO_LEASE) {
      lease.leaseId = kv.lease;
      const expiration = await this.expirationOf(kv.lease);
      if (expiration) lease.expiration = expiration;
    }
    return lease;
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
    const subnet = this.keys.subnetOf(ev.kv.key);
    if (!subnet) return undefined;
    if (ev.type === 'put') {
      const lease = await this.toLease(ev.kv);
      return lease ? { type: 'added', lease, revision: Number(ev.kv.modRevision) || headerRevision } : undefined;
    }
    // A delete carries no value; the previous one (prevKv) says whose it was.
    let attrs: LeaseAttrs = { PublicIP: '', BackendType: '' };
    if (ev.prevKv?.value) {
      try {
        attrs = parseLeaseAttrs(ev.prevKv.value);
      } catch {
        // keep the placeholder: the subnet is what matters for a removal
      }
    }
    return { type: 'removed', lease: { subnet, attrs }, revision: headerRevision };
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
