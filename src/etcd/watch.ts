/**
 * One etcd watch on its own gRPC stream (etcdserverpb.Watch/Watch): a single
 * create_request, then one WatchResponse message per batch of events.
 *
 * The caller gets events in etcd's order, and exactly one onError when the
 * watch ends without being asked (compaction, cancel, stream end or failure);
 * after cancel() nothing more is called. etcd keeps the stream open after it
 * cancels a watch, so the watch closes it itself.
 */
import { ProtoWriter } from './proto.js';
import { decodeWatchResponse, encodeRange, type Bytes, type WatchEvent, type WatchMessage } from './codec.js';
import { EtcdError, EtcdWatchError, GrpcCode, type WatchEndReason } from './errors.js';
import { ProtoError } from './proto.js';
import type { StreamHandle } from './transport.js';

export interface WatchOptions {
  /** Watch every key with `key` as prefix. */
  prefix?: boolean;
  /** Explicit range end (exclusive); overrides `prefix`. */
  rangeEnd?: Bytes;
  /** First revision to report (decimal). Default: the next change. */
  startRevision?: string | number;
  /** Report the previous key/value with each event. Default false. */
  prevKv?: boolean;
}

export interface WatchResponse {
  /** Store revision of this response. */
  revision: string;
  events: WatchEvent[];
}

export interface WatchHandlers {
  /** Each response holding events, in order. */
  onEvents(res: WatchResponse): void;
  /** Once, when the watch ends by itself; not after cancel(). */
  onError(err: EtcdWatchError): void;
  /** etcd confirmed the watch (revision = the store's at that moment). */
  onCreated?(revision: string): void;
}

/** Opens the stream with its first message: (request, onMessage, onEnd) -> handle. Supplied by the client (auth, endpoints). */
export type OpenStream = (request: Buffer, onMessage: (message: Buffer) => void, onEnd: (err?: EtcdError) => void) => StreamHandle;

/**
 * WatchRequest {create_request 1: WatchCreateRequest {key 1, range_end 2,
 * start_revision 3, prev_kv 6}}. The range fields are RangeRequest's 1 and 2.
 */
export function encodeWatchCreate(key: Bytes, o: WatchOptions = {}): Buffer {
  const create = encodeRange(key, { ...(o.prefix ? { prefix: true } : {}), ...(o.rangeEnd !== undefined ? { rangeEnd: o.rangeEnd } : {}) });
  if (o.startRevision !== undefined && String(o.startRevision) !== '0') {
    const rev = String(o.startRevision);
    if (!/^\d+$/.test(rev)) throw new RangeError(`startRevision: "${rev}" is not a decimal revision`);
    create.int(3, BigInt(rev));
  }
  create.int(6, o.prevKv === true);
  return new ProtoWriter().message(1, create).finish();
}

/** gRPC code names as they appear in a cancel_reason ("rpc error: code = Unauthenticated desc = ..."). */
const CODE_NAMES: Record<string, number> = {
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  OutOfRange: 11,
  Unavailable: 14,
  Unauthenticated: 16,
};

export function grpcCodeIn(reason: string): number | undefined {
  const m = /code = (\w+)/.exec(reason);
  if (m) return CODE_NAMES[m[1]!];
  // etcd 3.4 writes some reasons as bare etcdserver errors.
  if (/permission denied/.test(reason)) return 7;
  if (/invalid auth token|auth store is old/.test(reason)) return 16;
  return undefined;
}

export class EtcdWatch {
  private done = false;
  private readonly handle: StreamHandle;
  private endpointHint = '';

  constructor(
    key: Bytes,
    opts: WatchOptions,
    private readonly h: WatchHandlers,
    open: OpenStream,
    /** Told when the watch ends either way (the client forgets it). */
    private readonly onClosed: (w: EtcdWatch) => void = () => {},
  ) {
    this.handle = open(
      encodeWatchCreate(key, opts),
      (m) => this.onMessage(m),
      (err) => this.onStreamEnd(err),
    );
  }

  get active(): boolean {
    return !this.done;
  }

  /** Stops watching; no callback follows. */
  cancel(): void {
    if (this.done) return;
    this.done = true;
    this.handle.close();
    this.onClosed(this);
  }

  private onMessage(raw: Buffer): void {
    if (this.done) return;
    let r: WatchMessage;
    try {
      r = decodeWatchResponse(raw);
    } catch (err) {
      if (!(err instanceof ProtoError)) throw err;
      return this.end('failed', `unreadable watch message: ${err.message}`, { kind: 'protocol' }, err);
    }
    if (r.created) this.h.onCreated?.(r.revision);
    if (r.events.length > 0) this.h.onEvents({ revision: r.revision, events: r.events });
    if (this.done || !r.canceled) return;
    if (r.compactRevision !== '0') {
      return this.end('compacted', `required revision has been compacted (oldest kept: ${r.compactRevision})`, { compactRevision: r.compactRevision });
    }
    const why = r.cancelReason || 'cancelled by etcd';
    const code = grpcCodeIn(why);
    return this.end('canceled', why, code !== undefined ? { grpcCode: code } : {});
  }

  private onStreamEnd(err?: EtcdError): void {
    if (this.done) return;
    if (!err) return this.end('closed', 'watch stream ended');
    this.endpointHint = err.endpoint;
    const code = err.grpcCode !== undefined ? { grpcCode: err.grpcCode } : {};
    // etcd shutting down ends streams UNAVAILABLE ("transport is closing") or CANCELED: etcd going away, not a refusal.
    if (err.kind === 'grpc' && (err.grpcCode === GrpcCode.UNAVAILABLE || err.grpcCode === GrpcCode.CANCELED)) {
      return this.end('closed', err.message, { ...code, kind: 'unreachable' }, err);
    }
    // Not connected at all, or etcd refused the request: the watch never started.
    const reason: WatchEndReason = err.kind === 'grpc' || err.kind === 'protocol' ? 'failed' : 'closed';
    return this.end(reason, err.message, { kind: err.kind, ...code }, err);
  }

  private end(
    reason: WatchEndReason,
    message: string,
    extra: { grpcCode?: number; compactRevision?: string; kind?: EtcdError['kind'] } = {},
    cause?: unknown,
  ): void {
    if (this.done) return;
    this.done = true;
    this.handle?.close();
    this.onClosed(this);
    const kind = extra.kind ?? (reason === 'closed' ? 'unreachable' : 'grpc');
    const err = new EtcdWatchError(
      reason,
      message,
      {
        kind,
        endpoint: this.endpointHint,
        ...(extra.grpcCode !== undefined ? { grpcCode: extra.grpcCode } : {}),
        ...(extra.compactRevision !== undefined ? { compactRevision: extra.compactRevision } : {}),
      },
      cause === undefined ? undefined : { cause },
    );
    this.h.onError(err);
  }
}
