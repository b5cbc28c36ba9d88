/**
 * Registry on etcd v3 (the `etcd3` client), in flannel's key schema.
 *
 * TTLs: each write of a TTL lease grants a fresh etcd lease and attaches the
 * key to it, as flanneld does; renewal is a re-put by the lease manager, so
 * there is no library keepalive whose `lost` event could go unhandled. The
 * lease the key held before is revoked afterwards (it holds nothing any more).
 * A reservation is written with no lease at all, on create AND on update.
 */
import { readFileSync } from 'node:fs';
import { Etcd3, type IKeyValue, type IOptions, type IWatchResponse, type Watcher } from 'etcd3';
import { LeaseConflictError, StoreError, errorMessage } from '../core/errors.js';
import type { IPv4Net } from '../core/ip.js';
import { subnetKey } from '../core/ip.js';
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
  /** Longest pause between reconnect attempts to a dead endpoint. Default 3000 ms. */
  maxReconnectBackoffMs?: number;
  /** Dial timeout. Default 5000 ms. */
  dialTimeoutMs?: number;
}

/** etcd says "no lease" with id 0. */
const NO_LEASE = '0';

export class EtcdRegistry implements Registry {
  readonly client: Etcd3;
  readonly keys: RegistryKeys;

  constructor(opts: EtcdRegistryOptions = {}) {
    const callTimeoutMs = opts.callTimeoutMs ?? 3000;
    const options: IOptions = {
      hosts: opts.endpoints?.length ? opts.endpoints : ['http://127.0.0.1:2379'],
      dialTimeout: opts.dialTimeoutMs ?? 5000,
      // Streams (watch) stay open; unary calls get a deadline so a paused etcd
      // turns into a StoreError the lease manager can retry, not a hang.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
      // grpc's reconnect backoff grows to 120 s by default: after a 30 s etcd
      // restart we would sit idle for a minute. Cap it at a few seconds.
      grpcOptions: {
        'grpc.initial_reconnect_backoff_ms': 500,
        'grpc.max_reconnect_backoff_ms': opts.maxReconnectBackoffMs ?? 3000,
      },
    };
    if (opts.caFile || opts.certFile || opts.keyFile) {
      options.credentials = {
        rootCertificate: opts.caFile ? readFileSync(opts.caFile) : Buffer.alloc(0),
        ...(opts.keyFile ? { privateKey: readFileSync(opts.keyFile) } : {}),
        ...(opts.certFile ? { certChain: readFileSync(opts.certFile) } : {}),
      };
    }
    if (opts.username) options.auth = { username: opts.username, password: opts.password ?? '' };
    this.client = new Etcd3(options);
    this.keys = new RegistryKeys(opts.prefix);
  }

  async getConfig(): Promise<string | undefined> {
    return this.call('get config', async () => (await this.client.get(this.keys.config).string()) ?? undefined);
  }

  async putConfig(json: string): Promise<void> {
    await this.call('put config', () => this.client.put(this.keys.config).value(json).exec());
  }

  async listLeases(): Promise<{ leases: Lease[]; revision: number }> {
    return this.call('list leases', async () => {
      const res = await this.client.getAll().prefix(this.keys.subnets).exec();
      const leases = (await Promise.all(res.kvs.map((kv) => this.toLease(kv)))).filter((l): l is Lease => !!l);
      leases.sort((a, b) => a.subnet.ip - b.subnet.ip);
      return { leases, revision: Number(res.header.revision) };
    });
  }

  async getLease(subnet: IPv4Net): Promise<Lease | undefined> {
    return this.call(`get lease ${subnetKey(subnet)}`, async () => {
      const res = await this.client.get(this.keys.lease(subnet)).exec();
      const kv = res.kvs[0];
      return kv ? this.toLease(kv) : undefined;
    });
  }

  async createLease(subnet: IPv4Net, attrs: LeaseAttrs, ttlSeconds: number | undefined): Promise<Lease> {
    const key = this.keys.lease(subnet);
    return this.call(`create lease ${subnetKey(subnet)}`, async () => {
      const grant = await this.grant(ttlSeconds);
      const put = this.client.put(key).value(serializeLeaseAttrs(attrs));
      if (grant) put.lease(grant.id);
      const res = await this.client.if(key, 'Version', '==', 0).then(put).commit();
      if (!res.succeeded) {
        if (grant) this.revokeQuietly(grant.id);
        throw new LeaseConflictError(`lease ${subnetKey(subnet)} already exists`, { subnet: subnetKey(subnet) });
      }
      return this.written(subnet, attrs, Number(res.header.revision), grant);
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
      // Without a lease id the put detaches the key from any lease: this is
      // what keeps a reservation a reservation (flannel 1329 re-attaches one).
      const put = this.client.put(key).value(serializeLeaseAttrs(attrs));
      if (grant) put.lease(grant.id);
      // Read-then-put in one transaction tells us which lease the key left.
      const txn =
        opts.ifRevision !== undefined
          ? this.client.if(key, 'Mod', '==', opts.ifRevision)
          : this.client.if(key, 'Version', '>', -1);
      const res = await txn.then(this.client.get(key), put).commit();
      if (!res.succeeded) {
        if (grant) this.revokeQuietly(grant.id);
        throw new LeaseConflictError(`lease ${subnetKey(subnet)} changed since revision ${opts.ifRevision}`, {
          subnet: subnetKey(subnet),
        });
      }
      const old = res.responses[0]?.response_range?.kvs?.[0]?.lease;
      if (old && old !== NO_LEASE && old !== grant?.id) this.revokeQuietly(old);
      return this.written(subnet, attrs, Number(res.header.revision), grant);
    });
  }

  async deleteLease(subnet: IPv4Net): Promise<void> {
    await this.call(`delete lease ${subnetKey(subnet)}`, () => this.client.delete().key(this.keys.lease(subnet)).exec());
  }

  async watchLeases(
    fromRevision: number,
    onEvents: (events: RegistryWatchEvent[]) => void,
    signal: AbortSignal,
  ): Promise<WatchEnd> {
    if (signal.aborted) return 'aborted';
    let watcher: Watcher | undefined;
    return new Promise<WatchEnd>((resolve) => {
      let done = false;
      // Events are converted in order (expiry lookups are async) and dropped once we end.
      let chain = Promise.resolve();
      const finish = (why: WatchEnd, reason?: string) => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        const w = watcher;
        watcher = undefined;
        void w?.cancel().catch(() => {});
        chain = chain.then(() => {
          if (why === 'resync') onEvents([{ type: 'resync', reason: reason ?? 'watch cancelled' }]);
          resolve(why);
        });
      };
      const onAbort = () => finish('aborted');
      signal.addEventListener('abort', onAbort, { once: true });

      const onData = (res: IWatchResponse) => {
        if (!res.events?.length) return;
        chain = chain.then(async () => {
          const events = await this.toEvents(res);
          if (!done && events.length > 0) onEvents(events);
        });
      };
      this.client
        .watch()
        .prefix(this.keys.subnets)
        .startRevision(String(fromRevision))
        .withPreviousKV()
        .create()
        .then((w) => {
          if (done) return void w.cancel().catch(() => {});
          watcher = w;
          w.on('data', onData);
          // etcd cancels a watch whose start revision was compacted (and the
          // client cannot resume one that falls behind compaction while
          // disconnected): either way the caller must relist.
          w.on('error', (err) => finish('resync', errorMessage(err) || 'watch cancelled'));
        })
        .catch((err: unknown) => finish('resync', `watch could not start: ${errorMessage(err)}`));
    });
  }

  async close(): Promise<void> {
    this.client.close();
  }

  /** Compacts etcd's history up to `revision` (tests and `weftctl` maintenance). */
  async compact(revision: number): Promise<void> {
    await this.call('compact', () => this.client.kv.compact({ revision, physical: true }));
  }

  // ---- internals ----

  private async grant(ttlSeconds: number | undefined): Promise<{ id: string; ttl: number } | undefined> {
    if (ttlSeconds === undefined) return undefined;
    const res = await this.client.leaseClient.leaseGrant({ TTL: ttlSeconds });
    return { id: String(res.ID), ttl: Number(res.TTL) };
  }

  private revokeQuietly(id: string): void {
    this.client.leaseClient.leaseRevoke({ ID: id }).catch(() => {});
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
  private async toLease(kv: IKeyValue): Promise<Lease | undefined> {
    const key = kv.key.toString();
    const subnet = this.keys.subnetOf(key);
    if (!subnet) return undefined;
    let attrs: LeaseAttrs;
    try {
      attrs = parseLeaseAttrs(kv.value.toString(), key);
    } catch {
      return undefined;
    }
    const lease: Lease = { subnet, attrs, revision: Number(kv.mod_revision) };
    if (kv.lease && kv.lease !== NO_LEASE) {
      lease.leaseId = kv.lease;
      const expiration = await this.expirationOf(kv.lease);
      if (expiration) lease.expiration = expiration;
    }
    return lease;
  }

  private async expirationOf(id: string): Promise<Date | undefined> {
    try {
      const res = await this.client.leaseClient.leaseTimeToLive({ ID: id });
      const ttl = Number(res.TTL);
      return ttl >= 0 ? new Date(Date.now() + ttl * 1000) : new Date(Date.now());
    } catch {
      // Informational only: the key itself is what counts.
      return undefined;
    }
  }

  private async toEvents(res: IWatchResponse): Promise<RegistryLeaseEvent[]> {
    // One response can hold hundreds of puts (a burst of new hosts): their
    // expiry lookups run concurrently, and the events keep etcd's order.
    const converted = await Promise.all(res.events.map((ev) => this.toEvent(ev, Number(res.header.revision))));
    return converted.filter((e): e is RegistryLeaseEvent => e !== undefined);
  }

  private async toEvent(ev: IWatchResponse['events'][number], headerRevision: number): Promise<RegistryLeaseEvent | undefined> {
    const subnet = this.keys.subnetOf(ev.kv.key.toString());
    if (!subnet) return undefined;
    if (ev.type === 'Put') {
      const lease = await this.toLease(ev.kv);
      return lease ? { type: 'added', lease, revision: Number(ev.kv.mod_revision) || headerRevision } : undefined;
    }
    // A delete carries no value; the previous one (withPreviousKV) says whose it was.
    let attrs: LeaseAttrs = { PublicIP: '', BackendType: '' };
    if (ev.prev_kv?.value) {
      try {
        attrs = parseLeaseAttrs(ev.prev_kv.value.toString());
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
