/**
 * gRPC to etcd over node:http2: one HTTP/2 connection per endpoint (h2c for
 * http://, TLS with ALPN h2 and optional client certificate for https://),
 * unary calls and bidirectional streams multiplexed on it, endpoint
 * failover and a per-call deadline.
 *
 * Failover: a call goes to the endpoint that answered last; when it cannot
 * connect there it tries the next one, within the same deadline. Only
 * failures that mean "etcd never saw the request" move a write on (no
 * connection, TLS handshake refused, or a stream the server refused
 * unprocessed, HTTP/2 REFUSED_STREAM), so a write is never sent twice;
 * reads also move on after a broken connection. A timeout or an
 * UNAVAILABLE answer fails the call and makes the next call start at the
 * next endpoint.
 */
import http2 from 'node:http2';
import { EtcdError, GrpcCode, type EtcdFailure } from './errors.js';
import { FrameError, GrpcFrames, frame } from './frames.js';

export interface TlsFiles {
  /** CA certificate(s), PEM. Default: Node's root store. */
  ca?: Buffer;
  /** Client certificate chain, PEM (with key). */
  cert?: Buffer;
  key?: Buffer;
}

export interface TransportOptions {
  /** http:// or https:// URLs. */
  endpoints: string[];
  /** Deadline of each unary call, from the first connect to the last byte. */
  callTimeoutMs: number;
  tls?: TlsFiles;
  /** Largest answer accepted, in bytes. Default 512 MiB. */
  maxResponseBytes?: number;
  /** Concurrent unary calls per endpoint (more queue). Default 16. */
  maxSockets?: number;
  /** HTTP/2 PING interval while streams are open; an unanswered PING closes the connection. Default 30 s. */
  keepaliveMs?: number;
}

export interface CallOptions {
  /** etcd auth token (metadata `token`). */
  token?: string;
  /** Overrides the transport's callTimeoutMs. */
  timeoutMs?: number;
  /** A read: safe to send again to the next endpoint after any connection failure. */
  idempotent?: boolean;
}

export interface StreamHandlers {
  /** Each message off the stream, in order. */
  onMessage(message: Buffer): void;
  /** Called once: the stream ended (err undefined: status OK) or failed. Not called after close(). */
  onEnd(err?: EtcdError): void;
}

export interface StreamHandle {
  /** Sends one message on the stream (ignored once it ended). */
  send(message: Buffer): void;
  /** Stops the stream; no more callbacks. */
  close(): void;
}

/** Errors of the socket / TLS layer after which etcd cannot have seen the request. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/** TCP keepalive on every connection: a peer that vanished without a FIN is found by the kernel's probes. */
const TCP_KEEPALIVE_MS = 30_000;

/** How long a PING may go unanswered before the connection counts as dead (at most the PING interval). */
const PING_TIMEOUT_MS = 20_000;

/** Failures after which etcd cannot have seen the request (safe to send elsewhere). */
const notSent = new WeakSet<EtcdError>();

interface Endpoint {
  url: URL;
  /** Normalised for logs and errors. */
  name: string;
  session: http2.ClientHttp2Session | undefined;
  /** Resolves once `session` is connected (TLS done). */
  ready: Promise<http2.ClientHttp2Session> | undefined;
  /** Unary calls in flight, and those waiting for a slot. */
  inFlight: number;
  waiting: Array<() => void>;
  /** Open streams (the PING timer runs while there are any). */
  streams: number;
  pinger: NodeJS.Timeout | undefined;
}

export class GrpcTransport {
  private readonly eps: Endpoint[];
  private readonly maxResponseBytes: number;
  private readonly maxInFlight: number;
  private readonly keepaliveMs: number;
  /** Index of the endpoint the next call starts at. */
  private current = 0;
  private closed = false;
  /** The endpoints as normalised URLs (for logs and errors). */
  readonly endpoints: string[];

  constructor(private readonly o: TransportOptions) {
    if (o.endpoints.length === 0) throw new RangeError('etcd: no endpoints');
    this.eps = o.endpoints.map((e) => {
      const url = new URL(e);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RangeError(`etcd endpoint "${e}" is not http(s)://`);
      return { url, name: url.origin, session: undefined, ready: undefined, inFlight: 0, waiting: [], streams: 0, pinger: undefined };
    });
    this.endpoints = this.eps.map((e) => e.name);
    this.maxResponseBytes = o.maxResponseBytes ?? 512 * 2 ** 20;
    this.maxInFlight = o.maxSockets ?? 16;
    this.keepaliveMs = o.keepaliveMs ?? 30_000;
  }

  /** One unary call: `path` is "/etcdserverpb.KV/Range" etc.; returns the answer message. */
  async unary(operation: string, path: string, request: Buffer, opts: CallOptions = {}): Promise<Buffer> {
    const deadline = Date.now() + (opts.timeoutMs ?? this.o.callTimeoutMs);
    let last: EtcdError | undefined;
    const n = this.eps.length;
    const first = this.current;
    for (let i = 0; i < n; i++) {
      const idx = (first + i) % n;
      const remaining = deadline - Date.now();
      if (remaining <= 0 && last) break;
      try {
        const res = await this.unaryOnce(operation, idx, path, request, opts.token, deadline);
        this.current = idx;
        return res;
      } catch (err) {
        const e = err as EtcdError;
        last = e;
        const movable = e.kind === 'unreachable' && (notSent.has(e) || opts.idempotent);
        if (!movable) {
          if (e.kind === 'timeout' || e.grpcCode === GrpcCode.UNAVAILABLE) this.current = (idx + 1) % n;
          throw e;
        }
        this.current = (idx + 1) % n;
      }
    }
    throw last ?? this.fail('unreachable', operation, '', 'no endpoint tried');
  }

  /**
   * Opens a bidirectional stream and sends `first` on it. Connecting (up to
   * etcd's response headers) has the call deadline and fails over like
   * unary(); the stream itself has none (PINGs watch the connection).
   */
  stream(operation: string, path: string, first: Buffer, h: StreamHandlers, opts: CallOptions = {}): StreamHandle {
    const deadline = Date.now() + (opts.timeoutMs ?? this.o.callTimeoutMs);
    let done = false;
    let req: http2.ClientHttp2Stream | undefined;
    let ep: Endpoint | undefined;
    let timer: NodeJS.Timeout | undefined;
    const start = this.current;
    const release = () => {
      if (ep) this.streamClosed(ep);
      ep = undefined;
    };
    const finish = (err?: EtcdError) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req?.close(http2.constants.NGHTTP2_CANCEL);
      release();
      h.onEnd(err);
    };
    const tryEndpoint = async (i: number, last?: EtcdError): Promise<void> => {
      const n = this.eps.length;
      if (done) return;
      if (i >= n || (last && Date.now() >= deadline)) return finish(last ?? this.fail('unreachable', operation, '', 'no endpoint tried'));
      const idx = (start + i) % n;
      const e = this.eps[idx]!;
      let session: http2.ClientHttp2Session;
      try {
        session = await this.connect(operation, idx, deadline);
      } catch (err) {
        this.current = (idx + 1) % n;
        return tryEndpoint(i + 1, err as EtcdError);
      }
      if (done) return;
      let call: http2.ClientHttp2Stream;
      try {
        call = this.request(operation, session, e, path, opts.token);
      } catch (err) {
        this.current = (idx + 1) % n;
        return tryEndpoint(i + 1, err as EtcdError);
      }
      req = call;
      ep = e;
      this.streamOpened(e);
      let responded = false;
      let status: http2.IncomingHttpHeaders | undefined;
      // After a failover the abandoned attempt's late events are ignored.
      const stale = () => done || req !== call;
      const frames = new GrpcFrames(this.maxResponseBytes);
      timer = setTimeout(() => {
        if (responded || stale()) return;
        this.current = (idx + 1) % n;
        finish(this.fail('timeout', operation, e.name, 'deadline exceeded', undefined, { grpcCode: GrpcCode.DEADLINE_EXCEEDED }));
      }, Math.max(deadline - Date.now(), 1));
      call.on('response', (headers) => {
        if (stale()) return;
        responded = true;
        clearTimeout(timer);
        this.current = idx;
        const bad = this.headersError(operation, e.name, headers);
        if (bad) finish(bad);
        else if (headers['grpc-status'] !== undefined) status = headers;
      });
      call.on('data', (chunk: Buffer) => {
        if (stale()) return;
        let messages: Buffer[];
        try {
          messages = frames.push(chunk);
        } catch (err) {
          return finish(this.fail('protocol', operation, e.name, (err as Error).message, err));
        }
        for (const m of messages) {
          if (stale()) return;
          h.onMessage(m);
        }
      });
      call.on('trailers', (trailers) => (status = trailers));
      call.on('end', () => {
        if (stale()) return;
        // Status OK: etcd ended the stream itself (the owner reports that as an end).
        finish(this.statusError(operation, e.name, status ?? {}));
      });
      call.on('close', () => {
        if (stale()) return;
        finish(this.fail('unreachable', operation, e.name, 'stream closed without a status'));
      });
      call.on('error', (err) => {
        if (stale()) return;
        clearTimeout(timer);
        const mapped = this.mapError(operation, e.name, err, call.rstCode);
        // Once etcd answered, a broken stream is reported, never replayed elsewhere.
        if (!responded && notSent.has(mapped)) {
          release();
          this.current = (idx + 1) % n;
          return void tryEndpoint(i + 1, mapped);
        }
        finish(mapped);
      });
      call.write(frame(first));
    };
    if (this.closed) queueMicrotask(() => finish(this.fail('aborted', operation, '', 'client closed')));
    else void tryEndpoint(0);
    return {
      send: (message) => {
        if (!done && req && !req.destroyed) req.write(frame(message));
      },
      close: () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        req?.close(http2.constants.NGHTTP2_CANCEL);
        release();
      },
    };
  }

  /** Closes every connection (open streams end without callbacks only if their owner closed them first). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const e of this.eps) {
      this.dropSession(e, e.session);
      for (const w of e.waiting.splice(0)) w();
    }
  }

  // ---- internals ----

  /** The endpoint's connection, connected (TLS done) within `deadline`. */
  private async connect(operation: string, idx: number, deadline: number): Promise<http2.ClientHttp2Session> {
    if (this.closed) throw this.fail('aborted', operation, '', 'client closed');
    const e = this.eps[idx]!;
    if (!e.ready || !e.session || e.session.destroyed || e.session.closed) {
      const tls = e.url.protocol === 'https:' ? (this.o.tls ?? {}) : undefined;
      const session = http2.connect(e.url.origin, {
        ...(tls ?? {}),
        // Room for etcd's large answers before flow control waits for our window updates.
        settings: { initialWindowSize: 4 * 2 ** 20 },
      });
      e.session = session;
      e.ready = new Promise((resolve, reject) => {
        session.once('connect', () => {
          try {
            session.socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
          } catch {
            // not every socket type takes keepalive (the session proxies it)
          }
          resolve(session);
        });
        session.once('error', (err) => reject(err));
      });
      // A rejection nobody awaits yet must not become an unhandled one.
      e.ready.catch(() => {});
      session.on('error', () => this.dropSession(e, session));
      session.on('close', () => this.dropSession(e, session));
      session.on('goaway', () => this.dropSession(e, session, false));
    }
    const ready = e.ready;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        ready,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ConnectTimeout()), Math.max(deadline - Date.now(), 1));
        }),
      ]);
    } catch (err) {
      if (err instanceof ConnectTimeout) {
        throw this.fail('timeout', operation, e.name, 'deadline exceeded while connecting', undefined, { grpcCode: GrpcCode.DEADLINE_EXCEEDED });
      }
      const mapped = this.mapError(operation, e.name, err as Error);
      // No connection (or no TLS session): etcd saw nothing.
      if (mapped.kind === 'unreachable') notSent.add(mapped);
      throw mapped;
    } finally {
      clearTimeout(timer);
    }
  }

  private dropSession(e: Endpoint, session: http2.ClientHttp2Session | undefined, destroy = true): void {
    if (!session) return;
    if (e.session === session) {
      e.session = undefined;
      e.ready = undefined;
    }
    // After GOAWAY the session finishes its streams by itself; otherwise it is gone anyway.
    if (destroy && !session.destroyed) session.destroy();
  }

  /**
   * A new stream on the session. A session that is closing (GOAWAY seen, or
   * destroyed meanwhile) refuses synchronously: nothing was sent, so that is
   * a not-sent unreachable error.
   */
  private request(
    operation: string,
    session: http2.ClientHttp2Session,
    e: Endpoint,
    path: string,
    token: string | undefined,
    timeoutMs?: number,
  ): http2.ClientHttp2Stream {
    let req: http2.ClientHttp2Stream;
    try {
      req = this.openRequest(session, e, path, token, timeoutMs);
    } catch (err) {
      this.dropSession(e, session, false);
      const mapped = this.fail('unreachable', operation, e.name, `connection closing: ${(err as Error).message}`, err);
      notSent.add(mapped);
      throw mapped;
    }
    // A connection in use keeps the process alive; an idle one does not (as Node's keep-alive agents do).
    session.ref();
    return req;
  }

  private openRequest(session: http2.ClientHttp2Session, e: Endpoint, path: string, token: string | undefined, timeoutMs?: number): http2.ClientHttp2Stream {
    return session.request(
      {
        ':method': 'POST',
        ':path': path,
        ':authority': e.url.host,
        'content-type': 'application/grpc',
        te: 'trailers',
        ...(timeoutMs !== undefined ? { 'grpc-timeout': `${Math.ceil(timeoutMs)}m` } : {}),
        ...(token ? { token } : {}),
      },
      { endStream: false },
    );
  }

  private async unaryOnce(operation: string, idx: number, path: string, request: Buffer, token: string | undefined, deadline: number): Promise<Buffer> {
    const e = this.eps[idx]!;
    const session = await this.connect(operation, idx, deadline);
    await this.acquire(e, operation, deadline);
    try {
      return await new Promise<Buffer>((resolve, reject) => {
        const remaining = Math.max(deadline - Date.now(), 1);
        // grpc-timeout: etcd drops the call itself once our deadline passed.
        const req = this.request(operation, session, e, path, token, remaining);
        const frames = new GrpcFrames(this.maxResponseBytes);
        const messages: Buffer[] = [];
        let settled = false;
        let received = 0;
        const settle = (err: EtcdError | undefined, value?: Buffer) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          if (!req.closed) req.close(http2.constants.NGHTTP2_CANCEL);
          if (err) reject(err);
          else resolve(value!);
        };
        const timer = setTimeout(
          () => settle(this.fail('timeout', operation, e.name, 'deadline exceeded', undefined, { grpcCode: GrpcCode.DEADLINE_EXCEEDED })),
          remaining,
        );
        const finishWith = (status: http2.IncomingHttpHeaders) => {
          const err = this.statusError(operation, e.name, status);
          if (err) return settle(err);
          if (messages.length !== 1) return settle(this.fail('protocol', operation, e.name, `expected one answer message, got ${messages.length}`));
          settle(undefined, messages[0]!);
        };
        let status: http2.IncomingHttpHeaders | undefined;
        req.on('response', (headers) => {
          const bad = this.headersError(operation, e.name, headers);
          if (bad) return settle(bad);
          // A trailers-only answer (an error) carries the status in the headers.
          if (headers['grpc-status'] !== undefined) status = headers;
        });
        req.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received > this.maxResponseBytes) {
            return settle(this.fail('protocol', operation, e.name, `answer larger than ${this.maxResponseBytes} bytes`));
          }
          try {
            for (const m of frames.push(chunk)) messages.push(m);
          } catch (err) {
            settle(this.fail('protocol', operation, e.name, (err as FrameError).message, err));
          }
        });
        req.on('trailers', (trailers) => (status = trailers));
        // 'end': every DATA frame has been read (trailers may be announced before the last one is).
        req.on('end', () => finishWith(status ?? {}));
        req.on('close', () => settle(this.fail('unreachable', operation, e.name, 'stream closed without a status')));
        req.on('error', (err) => settle(this.mapError(operation, e.name, err, req.rstCode)));
        req.end(frame(request));
      });
    } finally {
      this.releaseSlot(e);
    }
  }

  /** Waits for one of the endpoint's unary slots (bounded by the deadline). */
  private acquire(e: Endpoint, operation: string, deadline: number): Promise<void> {
    if (e.inFlight < this.maxInFlight) {
      e.inFlight++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const wake = () => {
        clearTimeout(timer);
        if (this.closed) return reject(this.fail('aborted', operation, '', 'client closed'));
        e.inFlight++;
        resolve();
      };
      const timer = setTimeout(() => {
        const i = e.waiting.indexOf(wake);
        if (i >= 0) e.waiting.splice(i, 1);
        this.unrefIfIdle(e);
        reject(this.fail('timeout', operation, e.name, `deadline exceeded waiting for one of ${this.maxInFlight} call slots`, undefined, { grpcCode: GrpcCode.DEADLINE_EXCEEDED }));
      }, Math.max(deadline - Date.now(), 1));
      e.waiting.push(wake);
    });
  }

  private releaseSlot(e: Endpoint): void {
    e.inFlight--;
    e.waiting.shift()?.();
    this.unrefIfIdle(e);
  }

  private unrefIfIdle(e: Endpoint): void {
    if (e.inFlight === 0 && e.streams === 0 && e.session && !e.session.destroyed) e.session.unref();
  }

  private streamOpened(e: Endpoint): void {
    if (e.streams++ === 0) this.startPinger(e);
  }

  private streamClosed(e: Endpoint): void {
    if (--e.streams === 0) {
      clearInterval(e.pinger);
      e.pinger = undefined;
      this.unrefIfIdle(e);
    }
  }

  /** PINGs the connection while streams are open: a connection that stopped answering is closed, which ends its streams. */
  private startPinger(e: Endpoint): void {
    clearInterval(e.pinger);
    e.pinger = setInterval(() => {
      const s = e.session;
      if (!s || s.destroyed || !e.ready) return;
      let answered = false;
      const wait = Math.min(PING_TIMEOUT_MS, this.keepaliveMs);
      const t = setTimeout(() => {
        if (!answered) s.destroy(new Error(`no answer to an HTTP/2 PING within ${wait} ms: connection closed`));
      }, wait);
      t.unref();
      try {
        s.ping((err) => {
          answered = !err;
          clearTimeout(t);
        });
      } catch {
        clearTimeout(t);
      }
    }, this.keepaliveMs);
    e.pinger.unref();
  }

  /** A non-gRPC answer (wrong :status or content-type: not etcd's gRPC server). */
  private headersError(operation: string, endpoint: string, headers: http2.IncomingHttpHeaders): EtcdError | undefined {
    const status = Number(headers[':status'] ?? 0);
    const type = String(headers['content-type'] ?? '');
    if (status === 200 && type.startsWith('application/grpc')) return undefined;
    if (headers['grpc-status'] !== undefined) return this.statusError(operation, endpoint, headers);
    return this.fail('protocol', operation, endpoint, `HTTP ${status} ${type || '(no content-type)'}: not a gRPC answer`, undefined, { httpStatus: status });
  }

  /** grpc-status / grpc-message of trailers (or a trailers-only answer); undefined for OK. */
  private statusError(operation: string, endpoint: string, t: http2.IncomingHttpHeaders): EtcdError | undefined {
    const raw = t['grpc-status'];
    // etcd shutting down ends its streams without a status: the connection went away, not a bad answer.
    if (raw === undefined) return this.fail('unreachable', operation, endpoint, 'stream ended without a gRPC status (etcd went away)');
    const code = Number(raw);
    if (code === 0) return undefined;
    let message = String(t['grpc-message'] ?? '');
    try {
      message = decodeURIComponent(message);
    } catch {
      // not percent-encoded after all
    }
    if (code === GrpcCode.DEADLINE_EXCEEDED) return this.fail('timeout', operation, endpoint, message || 'deadline exceeded', undefined, { grpcCode: code });
    return new EtcdError(message || `gRPC status ${code}`, { kind: 'grpc', operation, endpoint, grpcCode: code });
  }

  private mapError(operation: string, endpoint: string, err: Error, streamRstCode?: number): EtcdError {
    if (err instanceof EtcdError) return err;
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const rst = streamRstCode ?? (err as { rstCode?: unknown }).rstCode;
    const tls = /SSL|CERT|TLS|_SIGNATURE|ALERT/.test(code) || /certificate|handshake/i.test(err.message);
    const e = this.fail('unreachable', operation, endpoint, `${tls ? 'TLS: ' : ''}${err.message || code}${code && !err.message.includes(code) ? ` (${code})` : ''}`, err);
    // Refused before it was processed: etcd did nothing with it.
    if (NOT_SENT_CODES.has(code) || rst === http2.constants.NGHTTP2_REFUSED_STREAM) notSent.add(e);
    return e;
  }

  private fail(
    kind: EtcdFailure,
    operation: string,
    endpoint: string,
    message: string,
    cause?: unknown,
    extra: { grpcCode?: number; httpStatus?: number } = {},
  ): EtcdError {
    return new EtcdError(message, { kind, operation, endpoint, ...extra }, cause === undefined ? undefined : { cause });
  }
}

/** The connect wait ran out. */
class ConnectTimeout extends Error {}
