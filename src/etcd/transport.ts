/**
 * HTTP(S) to etcd's JSON gateway: one POST per call over keep-alive agents,
 * endpoint failover, a per-call deadline, and streamed answers for watches.
 *
 * Failover: a call goes to the endpoint that answered last; when it cannot
 * connect there it tries the next one, within the same deadline. Only
 * failures that mean "etcd never saw the request" move a call on (refused,
 * unresolvable, unreachable, or a reset on a reused keep-alive socket), so
 * a write is never sent twice. A timeout or an "unavailable" answer fails
 * the call and makes the next call start at the next endpoint.
 */
import http from 'node:http';
import https from 'node:https';
import { decodeGatewayError } from './codec.js';
import { EtcdError, GrpcCode, type EtcdFailure } from './errors.js';

export interface TlsFiles {
  /** CA certificate(s), PEM. Default: Node's root store. */
  ca?: Buffer;
  /** Client certificate chain, PEM (with key). */
  cert?: Buffer;
  key?: Buffer;
}

export interface TransportOptions {
  /** http:// or https:// URLs (a path prefix is kept). */
  endpoints: string[];
  /** Deadline of each unary call, from the first connect to the last byte. */
  callTimeoutMs: number;
  tls?: TlsFiles;
  /** Largest answer accepted, in bytes. Default 512 MiB. */
  maxResponseBytes?: number;
  /** Concurrent unary calls per endpoint (more wait for a socket). Default 16. */
  maxSockets?: number;
}

export interface CallOptions {
  /** Extra headers (Authorization). */
  headers?: Record<string, string>;
  /** Overrides the transport's callTimeoutMs. */
  timeoutMs?: number;
  /** A read: safe to send again to the next endpoint after any connection failure. */
  idempotent?: boolean;
}

export interface StreamHandlers {
  /** Each chunk of the answer body (UTF-8, split anywhere). */
  onData(chunk: string): void;
  /** Called once: the body ended (err undefined) or the stream failed. Not called after close(). */
  onEnd(err?: EtcdError): void;
}

export interface StreamHandle {
  /** Stops the stream; no more callbacks. */
  close(): void;
}

const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);
const RESET = new Set(['ECONNRESET', 'EPIPE']);

/**
 * TCP keepalive on watch sockets: a peer that vanished without a FIN (host
 * down, partition) is found by the kernel's probes after this idle time plus
 * its probe interval, instead of never. A paused etcd still answers probes:
 * its watch simply resumes.
 */
const STREAM_KEEPALIVE_MS = 30_000;

/** Thrown into a request by the deadline timer. */
class Deadline extends Error {}

/** Connection failures after which etcd cannot have seen the request (safe to send elsewhere). */
const notSent = new WeakSet<EtcdError>();

interface Attempt {
  req: http.ClientRequest;
  endpoint: string;
}

export class HttpTransport {
  private readonly urls: URL[];
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent | undefined;
  private readonly streamHttpAgent: http.Agent;
  private readonly streamHttpsAgent: https.Agent | undefined;
  private readonly maxResponseBytes: number;
  /** Index of the endpoint the next call starts at. */
  private current = 0;
  private closed = false;

  constructor(private readonly o: TransportOptions) {
    if (o.endpoints.length === 0) throw new RangeError('etcd: no endpoints');
    this.urls = o.endpoints.map((e) => {
      const u = new URL(e);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new RangeError(`etcd endpoint "${e}" is not http(s)://`);
      return u;
    });
    // Keep-alive saves a TCP (and TLS) handshake per call. gRPC multiplexed
    // every call over one connection; here a burst (a relist looks up 1000
    // lease TTLs at once) queues for a bounded set of sockets instead of
    // opening one each. Watches hold their socket for hours, so they get
    // agents of their own and never take a slot from unary calls.
    const maxSockets = o.maxSockets ?? 16;
    this.httpAgent = new http.Agent({ keepAlive: true, scheduling: 'lifo', maxSockets });
    this.streamHttpAgent = new http.Agent();
    if (this.urls.some((u) => u.protocol === 'https:')) {
      this.httpsAgent = new https.Agent({ keepAlive: true, scheduling: 'lifo', maxSockets, ...(o.tls ?? {}) });
      this.streamHttpsAgent = new https.Agent({ ...(o.tls ?? {}) });
    }
    this.maxResponseBytes = o.maxResponseBytes ?? 512 * 2 ** 20;
    this.endpoints = this.urls.map((u) => u.origin + u.pathname.replace(/\/+$/, ''));
  }

  /** The endpoints as normalised URLs (for logs and errors). */
  readonly endpoints: string[];

  /** POSTs `body` as JSON to `path` (e.g. "/v3/kv/range") and returns the parsed answer. */
  async post(operation: string, path: string, body: unknown, opts: CallOptions = {}): Promise<unknown> {
    const payload = JSON.stringify(body);
    const deadline = Date.now() + (opts.timeoutMs ?? this.o.callTimeoutMs);
    let last: EtcdError | undefined;
    const n = this.urls.length;
    const first = this.current;
    for (let i = 0; i < n; i++) {
      const idx = (first + i) % n;
      const remaining = deadline - Date.now();
      if (remaining <= 0 && last) break;
      try {
        const res = await this.once(operation, idx, path, payload, opts.headers, Math.max(remaining, 1));
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
   * POSTs `body` and hands the answer body to `h` as it arrives. Connecting
   * (up to the response headers) has the call deadline and fails over like
   * post(); the stream itself has none.
   */
  stream(operation: string, path: string, body: unknown, h: StreamHandlers, opts: CallOptions = {}): StreamHandle {
    const payload = JSON.stringify(body);
    const deadline = Date.now() + (opts.timeoutMs ?? this.o.callTimeoutMs);
    let done = false;
    let attempt: Attempt | undefined;
    let timer: NodeJS.Timeout | undefined;
    const first = this.current;
    const finish = (err?: EtcdError) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      attempt?.req.destroy();
      h.onEnd(err);
    };
    const tryEndpoint = (i: number, last?: EtcdError): void => {
      const n = this.urls.length;
      if (done) return;
      if (i >= n || (last && Date.now() >= deadline)) return finish(last ?? this.fail('unreachable', operation, '', 'no endpoint tried'));
      const idx = (first + i) % n;
      const { req, endpoint } = (attempt = this.request(idx, path, payload, opts.headers, true));
      clearTimeout(timer);
      timer = setTimeout(() => req.destroy(new Deadline()), Math.max(deadline - Date.now(), 1));
      req.on('socket', (sock) => sock.setKeepAlive(true, STREAM_KEEPALIVE_MS));
      req.on('error', (err) => {
        if (done) return;
        clearTimeout(timer);
        const e = this.mapError(operation, endpoint, req, err);
        // Once etcd answered, a broken stream is reported, never replayed elsewhere.
        if (!responded && e.kind === 'unreachable' && notSent.has(e)) {
          this.current = (idx + 1) % n;
          return tryEndpoint(i + 1, e);
        }
        if (e.kind === 'timeout') this.current = (idx + 1) % n;
        finish(e);
      });
      let responded = false;
      req.on('response', (res) => {
        responded = true;
        clearTimeout(timer);
        this.current = idx;
        res.setEncoding('utf8');
        if (res.statusCode !== 200) {
          let text = '';
          res.on('data', (c: string) => (text = (text + c).slice(0, 64 * 1024)));
          res.on('end', () => finish(this.statusError(operation, endpoint, res.statusCode ?? 0, text)));
          res.on('error', () => finish(this.statusError(operation, endpoint, res.statusCode ?? 0, text)));
          return;
        }
        res.on('data', (c: string) => {
          if (!done) h.onData(c);
        });
        res.on('end', () => finish());
        // 'aborted'/'error' when etcd goes away mid-stream; 'close' without 'end' too.
        res.on('error', (err) => finish(this.fail('unreachable', operation, endpoint, `stream broke: ${err.message}`, err)));
        res.on('close', () => {
          if (!res.complete) finish(this.fail('unreachable', operation, endpoint, 'stream closed by the server'));
        });
      });
      req.end(payload);
    };
    if (this.closed) queueMicrotask(() => finish(this.fail('aborted', operation, '', 'client closed')));
    else tryEndpoint(0);
    return {
      close: () => {
        done = true;
        clearTimeout(timer);
        attempt?.req.destroy();
      },
    };
  }

  /** Closes idle keep-alive sockets; open streams are the caller's to close. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.httpAgent.destroy();
    this.httpsAgent?.destroy();
    this.streamHttpAgent.destroy();
    this.streamHttpsAgent?.destroy();
  }

  // ---- internals ----

  private request(idx: number, path: string, payload: string, headers: Record<string, string> = {}, stream = false): Attempt {
    const u = this.urls[idx]!;
    const endpoint = this.endpoints[idx]!;
    const https_ = u.protocol === 'https:';
    const mod = https_ ? https : http;
    const req = mod.request({
      method: 'POST',
      protocol: u.protocol,
      hostname: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port || (https_ ? 443 : 80),
      path: u.pathname.replace(/\/+$/, '') + path,
      agent: stream ? (https_ ? this.streamHttpsAgent : this.streamHttpAgent) : https_ ? this.httpsAgent : this.httpAgent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...headers },
    });
    return { req, endpoint };
  }

  private once(
    operation: string,
    idx: number,
    path: string,
    payload: string,
    headers: Record<string, string> | undefined,
    timeoutMs: number,
  ): Promise<unknown> {
    if (this.closed) return Promise.reject(this.fail('aborted', operation, '', 'client closed'));
    return new Promise((resolve, reject) => {
      const { req, endpoint } = this.request(idx, path, payload, headers);
      const timer = setTimeout(() => req.destroy(new Deadline()), timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(this.mapError(operation, endpoint, req, err));
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > this.maxResponseBytes) {
            req.destroy(this.fail('protocol', operation, endpoint, `answer larger than ${this.maxResponseBytes} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', (err) => req.destroy(err));
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) return reject(this.statusError(operation, endpoint, res.statusCode ?? 0, text));
          try {
            resolve(JSON.parse(text));
          } catch {
            reject(this.fail('protocol', operation, endpoint, `answer is not JSON: ${text.slice(0, 200)}`));
          }
        });
      });
      req.end(payload);
    });
  }

  private statusError(operation: string, endpoint: string, status: number, text: string): EtcdError {
    let parsed: { grpcCode?: number; message?: string } | undefined;
    try {
      parsed = decodeGatewayError(JSON.parse(text));
    } catch {
      parsed = undefined;
    }
    if (!parsed) return this.fail('protocol', operation, endpoint, `HTTP ${status}: ${text.slice(0, 200)}`, undefined, { httpStatus: status });
    return new EtcdError(parsed.message || `HTTP ${status}`, {
      kind: 'grpc',
      operation,
      endpoint,
      httpStatus: status,
      ...(parsed.grpcCode !== undefined ? { grpcCode: parsed.grpcCode } : {}),
    });
  }

  private mapError(operation: string, endpoint: string, req: http.ClientRequest, err: Error): EtcdError {
    if (err instanceof EtcdError) return err;
    if (err instanceof Deadline) return this.fail('timeout', operation, endpoint, 'deadline exceeded', undefined, { grpcCode: GrpcCode.DEADLINE_EXCEEDED });
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const e = this.fail('unreachable', operation, endpoint, err.message || code, err);
    // A reset on a socket that sat idle in the pool: the server closed it before
    // reading our request (Node's documented keep-alive race), so it is safe to resend.
    if (NOT_SENT.has(code) || (RESET.has(code) && (req.reusedSocket || !req.writableFinished))) notSent.add(e);
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
