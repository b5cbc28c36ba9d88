/**
 * One etcd watch over the gateway's streaming POST /v3/watch: a single
 * create_request, then one `{"result": WatchResponse}` per line.
 *
 * The caller gets events in etcd's order, and exactly one onError when the
 * watch ends without being asked (compaction, cancel, stream end or failure);
 * after cancel() nothing more is called. The gateway keeps the HTTP stream
 * open after etcd cancels a watch, so the watch closes it itself.
 */
import { decodeEvents, decodeGatewayError, encodeRange, headerRevision, type Bytes, type WatchEvent } from './codec.js';
import { EtcdError, EtcdWatchError, GrpcCode, type WatchEndReason } from './errors.js';
import { JsonLines } from './lines.js';
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

/** Opens the stream: (body, onData, onEnd) -> handle. Supplied by the client (auth, endpoints). */
export type OpenStream = (
  body: unknown,
  onData: (chunk: string) => void,
  onEnd: (err?: EtcdError) => void,
) => StreamHandle;

/** The create_request body of a watch. */
export function encodeWatchCreate(key: Bytes, o: WatchOptions = {}): Record<string, unknown> {
  const range = encodeRange(key, { ...(o.prefix ? { prefix: true } : {}), ...(o.rangeEnd !== undefined ? { rangeEnd: o.rangeEnd } : {}) });
  const req: Record<string, unknown> = { ...range };
  if (o.startRevision !== undefined && String(o.startRevision) !== '0') {
    const rev = String(o.startRevision);
    if (!/^\d+$/.test(rev)) throw new RangeError(`startRevision: "${rev}" is not a decimal revision`);
    req.start_revision = rev;
  }
  if (o.prevKv) req.prev_kv = true;
  return { create_request: req };
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
  return m ? CODE_NAMES[m[1]!] : undefined;
}

export class EtcdWatch {
  private done = false;
  private readonly lines = new JsonLines();
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
    const body = encodeWatchCreate(key, opts);
    this.handle = open(
      body,
      (chunk) => this.onChunk(chunk),
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

  private onChunk(chunk: string): void {
    if (this.done) return;
    let messages: unknown[];
    try {
      messages = this.lines.push(chunk);
    } catch (err) {
      return this.end('failed', `unreadable watch message: ${(err as Error).message}`, {}, err);
    }
    for (const m of messages) {
      if (this.done) return;
      this.onMessage(m);
    }
  }

  private onMessage(m: unknown): void {
    const msg = (m && typeof m === 'object' ? m : {}) as { result?: Record<string, unknown>; error?: unknown };
    if (msg.error !== undefined) {
      const e = decodeGatewayError(msg);
      const code = e?.grpcCode !== undefined ? { grpcCode: e.grpcCode } : {};
      // etcd shutting down writes "transport is closing" (UNAVAILABLE) or "the
      // client connection is closing" (CANCELED, the gateway's own gRPC link)
      // before the stream ends: that is etcd going away, not a refusal.
      if (e?.grpcCode === GrpcCode.UNAVAILABLE || e?.grpcCode === GrpcCode.CANCELED) {
        return this.end('closed', e.message || 'etcd went away', { ...code, kind: 'unreachable' });
      }
      return this.end('failed', e?.message || 'error on the watch stream', code);
    }
    const r = msg.result ?? {};
    if (r.created === true) this.h.onCreated?.(headerRevision(r));
    const events = decodeEvents(r.events);
    if (events.length > 0) this.h.onEvents({ revision: headerRevision(r), events });
    if (r.canceled === true) {
      const compact = typeof r.compact_revision === 'string' && r.compact_revision !== '0' ? r.compact_revision : undefined;
      if (compact) {
        return this.end('compacted', `required revision has been compacted (oldest kept: ${compact})`, { compactRevision: compact });
      }
      const why = typeof r.cancel_reason === 'string' && r.cancel_reason ? r.cancel_reason : 'cancelled by etcd';
      const code = grpcCodeIn(why);
      return this.end('canceled', why, code !== undefined ? { grpcCode: code } : {});
    }
  }

  private onStreamEnd(err?: EtcdError): void {
    if (this.done) return;
    if (err) {
      this.endpointHint = err.endpoint;
      // Not connected at all, or etcd refused the request: the watch never started.
      const reason: WatchEndReason = err.kind === 'grpc' || err.kind === 'protocol' ? 'failed' : 'closed';
      return this.end(reason, err.message, { kind: err.kind, ...(err.grpcCode !== undefined ? { grpcCode: err.grpcCode } : {}) }, err);
    }
    try {
      for (const m of this.lines.end()) if (!this.done) this.onMessage(m);
    } catch {
      // a torn last line: the stream ended anyway
    }
    this.end('closed', 'watch stream ended');
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
