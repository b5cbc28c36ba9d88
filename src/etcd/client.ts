/**
 * A small etcd v3 client over etcd's JSON gateway (the HTTP API every etcd
 * >= 3.4 serves on its client port), built on node:http / node:https. It
 * covers what weft uses: KV (range with consistent paging, put, delete,
 * txn, compaction), leases (grant, revoke, time-to-live) and watches. It
 * replaces the `etcd3` package, whose gRPC and protobuf runtime cost ~30 MB
 * of resident memory per daemon (see docs/etcd-client.md).
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../core/errors.js';
import {
  decodeDelete,
  decodePut,
  decodeRange,
  decodeTxn,
  encodeDelete,
  encodePut,
  encodeRange,
  encodeTxn,
  int64,
  lastRawKey,
  prefixRangeEnd,
  type Bytes,
  type DeleteOptions,
  type DeleteResult,
  type KeyValue,
  type PutOptions,
  type PutResult,
  type RangeOptions,
  type RangeResult,
  type TxnRequest,
  type TxnResult,
} from './codec.js';
import { TokenAuth } from './auth.js';
import { EtcdError, isCompactedError, isInvalidTokenError } from './errors.js';
import { HttpTransport, type StreamHandle, type TlsFiles } from './transport.js';
import { EtcdWatch, type WatchHandlers, type WatchOptions } from './watch.js';

export interface EtcdClientOptions {
  /** http:// or https:// client URLs. Default ["http://127.0.0.1:2379"]. */
  endpoints?: string[];
  /** Deadline of each unary call (connect to last byte), so a hung etcd becomes an error. Default 3000 ms. */
  callTimeoutMs?: number;
  /** CA certificate file (PEM) for https endpoints. Default: Node's root store. */
  caFile?: string;
  /** Client certificate file (PEM), with keyFile, for TLS client auth. */
  certFile?: string;
  keyFile?: string;
  /** etcd user; with it every call carries a token from /v3/auth/authenticate. */
  username?: string;
  password?: string;
  /** Keys per page when listing a prefix. Default 1000. */
  pageSize?: number;
  /** Largest answer accepted, in bytes. Default 512 MiB. */
  maxResponseBytes?: number;
  /** Unary calls in flight per endpoint; more wait for a free socket (watches do not count). Default 16. */
  maxSockets?: number;
}

export interface LeaseGrant {
  /** Lease id, decimal int64. */
  id: string;
  /** Granted TTL in seconds. */
  ttl: number;
}

export interface LeaseTimeToLive {
  id: string;
  /** Seconds left; -1 when the lease is gone (expired or revoked). */
  ttl: number;
  grantedTtl: number;
}

export class EtcdClient {
  readonly endpoints: string[];
  private readonly transport: HttpTransport;
  private readonly auth: TokenAuth | undefined;
  private readonly pageSize: number;
  private readonly watches = new Set<EtcdWatch>();

  constructor(opts: EtcdClientOptions = {}) {
    const endpoints = opts.endpoints?.length ? opts.endpoints : ['http://127.0.0.1:2379'];
    for (const e of endpoints) {
      let u: URL | undefined;
      try {
        u = new URL(e);
      } catch {
        u = undefined;
      }
      if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
        throw new InvalidArgumentError('endpoints', `"${e}" is not an http(s)://host:port URL`);
      }
    }
    const callTimeoutMs = opts.callTimeoutMs ?? 3000;
    if (!(callTimeoutMs > 0)) throw new InvalidArgumentError('callTimeoutMs', `${callTimeoutMs} is not a positive number of milliseconds`);
    this.pageSize = opts.pageSize ?? 1000;
    if (!Number.isInteger(this.pageSize) || this.pageSize < 1) throw new InvalidArgumentError('pageSize', `${opts.pageSize} is not a positive integer`);
    if (Boolean(opts.certFile) !== Boolean(opts.keyFile)) throw new InvalidArgumentError('certFile', 'certFile and keyFile go together');
    const tls: TlsFiles = {
      ...(opts.caFile ? { ca: readFileSync(opts.caFile) } : {}),
      ...(opts.certFile ? { cert: readFileSync(opts.certFile) } : {}),
      ...(opts.keyFile ? { key: readFileSync(opts.keyFile) } : {}),
    };
    this.transport = new HttpTransport({
      endpoints,
      callTimeoutMs,
      ...(Object.keys(tls).length ? { tls } : {}),
      ...(opts.maxResponseBytes ? { maxResponseBytes: opts.maxResponseBytes } : {}),
      ...(opts.maxSockets ? { maxSockets: opts.maxSockets } : {}),
    });
    this.endpoints = this.transport.endpoints;
    if (opts.username) {
      const body = { name: opts.username, password: opts.password ?? '' };
      this.auth = new TokenAuth(async () => {
        const res = (await this.transport.post('authenticate', '/v3/auth/authenticate', body, { idempotent: true })) as { token?: unknown };
        if (typeof res.token !== 'string' || !res.token) {
          throw new EtcdError('no token in the answer (is auth enabled?)', { kind: 'protocol', operation: 'authenticate', endpoint: '' });
        }
        return res.token;
      });
    }
  }

  // ---- KV ----

  /** One key, or undefined. */
  async get(key: Bytes): Promise<KeyValue | undefined> {
    return (await this.range(key)).kvs[0];
  }

  /** One range call as etcd answers it (no paging: see list()). */
  async range(key: Bytes, opts: RangeOptions = {}): Promise<RangeResult> {
    return decodeRange(await this.call('range', '/v3/kv/range', encodeRange(key, opts), true));
  }

  /**
   * Every key under `prefix`, in key order, read in pages of `pageSize` keys
   * all at the revision of the first page, so the list is one consistent
   * snapshot. If that revision is compacted mid-way the list starts over.
   */
  async list(prefix: Bytes, opts: { pageSize?: number } = {}): Promise<{ kvs: KeyValue[]; revision: string }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.listOnce(prefix, opts.pageSize ?? this.pageSize);
      } catch (err) {
        if (attempt < 3 && isCompactedError(err)) continue;
        throw err;
      }
    }
  }

  async put(key: Bytes, value: Bytes, opts: PutOptions = {}): Promise<PutResult> {
    return decodePut(await this.call('put', '/v3/kv/put', encodePut(key, value, opts)));
  }

  /** Deletes a key (or a prefix / range); no error when nothing matched. */
  async delete(key: Bytes, opts: DeleteOptions = {}): Promise<DeleteResult> {
    return decodeDelete(await this.call('delete', '/v3/kv/deleterange', encodeDelete(key, opts)));
  }

  /** If every compare holds, runs `success`, else `failure`; atomically. */
  async txn(req: TxnRequest): Promise<TxnResult> {
    return decodeTxn(await this.call('txn', '/v3/kv/txn', encodeTxn(req)));
  }

  /** Drops history before `revision`; physical: wait until it is gone from disk too. */
  async compact(revision: string | number, opts: { physical?: boolean } = {}): Promise<void> {
    await this.call('compact', '/v3/kv/compaction', {
      revision: int64(revision, 'revision'),
      ...(opts.physical ? { physical: true } : {}),
    });
  }

  // ---- leases ----

  async leaseGrant(ttlSeconds: number, opts: { id?: string } = {}): Promise<LeaseGrant> {
    const res = (await this.call('lease grant', '/v3/lease/grant', {
      TTL: int64(ttlSeconds, 'ttlSeconds'),
      ...(opts.id ? { ID: int64(opts.id, 'id') } : {}),
    })) as { ID?: string; TTL?: string; error?: string };
    if (res.error || !res.ID) {
      throw new EtcdError(res.error || 'no lease id in the answer', { kind: 'grpc', operation: 'lease grant', endpoint: '' });
    }
    return { id: String(res.ID), ttl: Number(res.TTL ?? ttlSeconds) };
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call('lease revoke', '/v3/lease/revoke', { ID: int64(id, 'id') });
  }

  async leaseTimeToLive(id: string): Promise<LeaseTimeToLive> {
    const res = (await this.call('lease timetolive', '/v3/lease/timetolive', { ID: int64(id, 'id') }, true)) as {
      ID?: string;
      TTL?: string;
      grantedTTL?: string;
    };
    return { id: String(res.ID ?? id), ttl: Number(res.TTL ?? -1), grantedTtl: Number(res.grantedTTL ?? 0) };
  }

  // ---- watch ----

  /**
   * Watches `key` (or a prefix). Events arrive in order; when the watch ends
   * by itself, `onError` is called once (EtcdWatchError with a reason) and
   * the caller relists. cancel() ends it quietly.
   */
  watch(key: Bytes, opts: WatchOptions, handlers: WatchHandlers): EtcdWatch {
    let token: string | undefined;
    const w = new EtcdWatch(
      key,
      opts,
      {
        ...handlers,
        onError: (err) => {
          // A stream cannot re-authenticate in place; dropping the token makes the relist that follows do it.
          if (token && isInvalidTokenError(err)) void this.auth?.invalidate(token);
          handlers.onError(err);
        },
      },
      (body, onData, onEnd) => this.openStream(body, onData, onEnd, (t) => (token = t)),
      (watch) => this.watches.delete(watch),
    );
    if (w.active) this.watches.add(w);
    return w;
  }

  /** Cancels open watches and closes idle connections. Later calls fail. */
  close(): void {
    for (const w of [...this.watches]) w.cancel();
    this.transport.close();
  }

  // ---- internals ----

  private async call(operation: string, path: string, body: unknown, idempotent = false): Promise<unknown> {
    for (let attempt = 1; ; attempt++) {
      const token = this.auth ? await this.auth.current() : undefined;
      try {
        return await this.transport.post(operation, path, body, {
          idempotent,
          ...(token ? { headers: { authorization: token } } : {}),
        });
      } catch (err) {
        if (token && attempt === 1 && isInvalidTokenError(err)) {
          await this.auth!.invalidate(token);
          continue;
        }
        throw err;
      }
    }
  }

  private async listOnce(prefix: Bytes, pageSize: number): Promise<{ kvs: KeyValue[]; revision: string }> {
    const end = prefixRangeEnd(prefix);
    let from: Bytes = prefix;
    let revision: string | undefined;
    const kvs: KeyValue[] = [];
    for (;;) {
      const raw = await this.call('range', '/v3/kv/range', encodeRange(from, { rangeEnd: end, limit: pageSize, ...(revision ? { revision } : {}) }), true);
      const page = decodeRange(raw);
      // Later pages read at the first page's revision: one snapshot, whatever changes meanwhile.
      revision ??= page.revision;
      for (const kv of page.kvs) kvs.push(kv);
      const last = lastRawKey(raw);
      if (!page.more || !last) return { kvs, revision };
      // The smallest key after the last one: its raw bytes plus a zero byte.
      from = Buffer.concat([last, Buffer.from([0])]);
    }
  }

  private openStream(
    body: unknown,
    onData: (chunk: string) => void,
    onEnd: (err?: EtcdError) => void,
    usedToken: (token: string) => void,
  ): StreamHandle {
    let handle: StreamHandle | undefined;
    let closed = false;
    const start = async () => {
      let token: string | undefined;
      try {
        token = this.auth ? await this.auth.current() : undefined;
      } catch (err) {
        if (!closed) onEnd(err instanceof EtcdError ? err : new EtcdError(String(err), { kind: 'unreachable', operation: 'authenticate', endpoint: '' }));
        return;
      }
      if (closed) return;
      if (token) usedToken(token);
      handle = this.transport.stream('watch', '/v3/watch', body, { onData, onEnd }, token ? { headers: { authorization: token } } : {});
    };
    void start();
    return {
      close: () => {
        closed = true;
        handle?.close();
      },
    };
  }
}
