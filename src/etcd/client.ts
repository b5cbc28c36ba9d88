/**
 * A small etcd v3 client speaking etcd's gRPC API over node:http2, with the
 * protobuf messages encoded by hand (codec.ts). It covers what weft uses:
 * KV (range with consistent paging, put, delete, txn, compaction), leases
 * (grant, revoke, time-to-live), watches and password auth; TLS client
 * certificates work with or without etcd users (certificate-CN users). It
 * replaces the `etcd3` package, whose gRPC and protobuf runtime cost ~30 MB
 * of resident memory per daemon (see docs/etcd-client.md).
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../core/errors.js';
import {
  decodeAuthenticate,
  decodeDelete,
  decodeLeaseGrant,
  decodeLeaseTimeToLive,
  decodePut,
  decodeRange,
  decodeTxn,
  encodeAuthenticate,
  encodeCompact,
  encodeDelete,
  encodeLeaseGrant,
  encodeLeaseId,
  encodePut,
  encodeRange,
  encodeTxn,
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
import { EtcdError, isAuthNotEnabledError, isCompactedError, isInvalidTokenError } from './errors.js';
import type { ProtoWriter } from './proto.js';
import { GrpcTransport, type StreamHandle, type TlsFiles } from './transport.js';
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
  /**
   * etcd user; with it every call carries a token from Auth/Authenticate
   * (none when etcd says auth is not enabled). Without it no token is sent:
   * with a client certificate etcd takes the user from its CN.
   */
  username?: string;
  password?: string;
  /** Keys per page when listing a prefix. Default 1000. */
  pageSize?: number;
  /** Largest answer accepted, in bytes. Default 512 MiB. */
  maxResponseBytes?: number;
  /** Unary calls in flight per endpoint; more wait for a free slot (watches do not count). Default 16. */
  maxSockets?: number;
  /** HTTP/2 PING interval while watches are open (an unanswered PING ends them as "closed"). Default 30000 ms. */
  keepaliveMs?: number;
}

const KV_RANGE = '/etcdserverpb.KV/Range';

/** "etcdserver: user name is empty": etcd has auth on, and the call carried no token. */
function isUserEmptyError(err: unknown): boolean {
  return err instanceof EtcdError && err.kind === 'grpc' && /user name is empty/.test(err.message);
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
  private readonly transport: GrpcTransport;
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
    this.transport = new GrpcTransport({
      endpoints,
      callTimeoutMs,
      ...(Object.keys(tls).length ? { tls } : {}),
      ...(opts.maxResponseBytes ? { maxResponseBytes: opts.maxResponseBytes } : {}),
      ...(opts.maxSockets ? { maxSockets: opts.maxSockets } : {}),
      ...(opts.keepaliveMs ? { keepaliveMs: opts.keepaliveMs } : {}),
    });
    this.endpoints = this.transport.endpoints;
    if (opts.username) {
      const request = encodeAuthenticate(opts.username, opts.password ?? '').finish();
      this.auth = new TokenAuth(async () => {
        let answer: Buffer;
        try {
          answer = await this.transport.unary('authenticate', '/etcdserverpb.Auth/Authenticate', request, { idempotent: true });
        } catch (err) {
          // etcd's Go client does the same: an etcd without auth needs no token.
          if (isAuthNotEnabledError(err)) return '';
          throw err;
        }
        const token = decodeAuthenticate(answer);
        if (!token) throw new EtcdError('no token in the answer', { kind: 'protocol', operation: 'authenticate', endpoint: '' });
        return token;
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
    const { lastKey: _, ...r } = decodeRange(await this.call('range', KV_RANGE, encodeRange(key, opts), true));
    return r;
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
    return decodePut(await this.call('put', '/etcdserverpb.KV/Put', encodePut(key, value, opts)));
  }

  /** Deletes a key (or a prefix / range); no error when nothing matched. */
  async delete(key: Bytes, opts: DeleteOptions = {}): Promise<DeleteResult> {
    return decodeDelete(await this.call('delete', '/etcdserverpb.KV/DeleteRange', encodeDelete(key, opts)));
  }

  /** If every compare holds, runs `success`, else `failure`; atomically. */
  async txn(req: TxnRequest): Promise<TxnResult> {
    return decodeTxn(await this.call('txn', '/etcdserverpb.KV/Txn', encodeTxn(req)));
  }

  /** Drops history before `revision`; physical: wait until it is gone from disk too. */
  async compact(revision: string | number, opts: { physical?: boolean } = {}): Promise<void> {
    await this.call('compact', '/etcdserverpb.KV/Compact', encodeCompact(revision, opts.physical === true));
  }

  // ---- leases ----

  async leaseGrant(ttlSeconds: number, opts: { id?: string } = {}): Promise<LeaseGrant> {
    const res = decodeLeaseGrant(await this.call('lease grant', '/etcdserverpb.Lease/LeaseGrant', encodeLeaseGrant(ttlSeconds, opts.id)));
    if (res.error || res.id === '0') {
      throw new EtcdError(res.error || 'no lease id in the answer', { kind: 'grpc', operation: 'lease grant', endpoint: '' });
    }
    return { id: res.id, ttl: res.ttl };
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call('lease revoke', '/etcdserverpb.Lease/LeaseRevoke', encodeLeaseId(id));
  }

  async leaseTimeToLive(id: string): Promise<LeaseTimeToLive> {
    const res = decodeLeaseTimeToLive(await this.call('lease timetolive', '/etcdserverpb.Lease/LeaseTimeToLive', encodeLeaseId(id), true));
    return { id: res.id === '0' ? id : res.id, ttl: res.ttl, grantedTtl: res.grantedTtl };
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
      (request, onMessage, onEnd) => this.openStream(request, onMessage, onEnd, (t) => (token = t)),
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

  private async call(operation: string, path: string, request: ProtoWriter, idempotent = false): Promise<Buffer> {
    const bytes = request.finish();
    for (let attempt = 1; ; attempt++) {
      const token = this.auth ? await this.auth.current() : undefined;
      try {
        return await this.transport.unary(operation, path, bytes, { idempotent, ...(token ? { token } : {}) });
      } catch (err) {
        // An expired token, or auth enabled since we learned it was off (no token): authenticate again, once.
        if (this.auth && attempt === 1 && (token ? isInvalidTokenError(err) : isUserEmptyError(err))) {
          await this.auth.invalidate(token ?? '');
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
      const page = decodeRange(await this.call('range', KV_RANGE, encodeRange(from, { rangeEnd: end, limit: pageSize, ...(revision ? { revision } : {}) }), true));
      // Later pages read at the first page's revision: one snapshot, whatever changes meanwhile.
      revision ??= page.revision;
      for (const kv of page.kvs) kvs.push(kv);
      const last = page.lastKey;
      if (!page.more || !last) return { kvs, revision };
      // The smallest key after the last one: its raw bytes plus a zero byte.
      from = Buffer.concat([last, Buffer.from([0])]);
    }
  }

  private openStream(
    request: Buffer,
    onMessage: (message: Buffer) => void,
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
      handle = this.transport.stream('watch', '/etcdserverpb.Watch/Watch', request, { onMessage, onEnd }, token ? { token } : {});
    };
    void start();
    return {
      send: (m) => handle?.send(m),
      close: () => {
        closed = true;
        handle?.close();
      },
    };
  }
}
