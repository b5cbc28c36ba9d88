import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { errorMessage } from '../core/errors.js';
import type { KubeConnection } from './config.js';
import { KubeApiError, KubeConnectionError, KubeGoneError, KubeProtocolError } from './errors.js';

export interface RequestOptions {
  /** Query parameters; undefined values are left out. */
  query?: Record<string, string | number | boolean | undefined>;
  signal?: AbortSignal;
  /** Give up when no answer head arrives within this long. Default 30 s. */
  timeoutMs?: number;
  /** Content-Type of a PATCH body. Default strategic merge patch. */
  patchType?: PatchType;
}

export type PatchType = 'application/merge-patch+json' | 'application/strategic-merge-patch+json' | 'application/json-patch+json';

export interface KubeClientOptions {
  /** Sent as User-Agent. Default "weft". */
  userAgent?: string;
  /** Max sockets to the server. Default 8 (watches hold one each). */
  maxSockets?: number;
}

/**
 * A small Kubernetes API client on node:http(s): JSON requests and watch
 * streams over one keep-alive agent. Authentication per KubeConnection:
 * client certificates in the agent, the bearer token read per request (so
 * a rotated token file is picked up on the next request or reconnect).
 */
export class KubeClient {
  readonly server: URL;
  private readonly agent: http.Agent;
  private readonly userAgent: string;

  constructor(
    readonly conn: KubeConnection,
    opts: KubeClientOptions = {},
  ) {
    this.server = new URL(conn.server);
    this.userAgent = opts.userAgent ?? 'weft';
    const common = { keepAlive: true, keepAliveMsecs: 30_000, maxSockets: opts.maxSockets ?? 8 };
    this.agent =
      this.server.protocol === 'https:'
        ? new https.Agent({
            ...common,
            ca: conn.ca,
            cert: conn.cert,
            key: conn.key,
            rejectUnauthorized: !conn.insecureSkipTLSVerify,
            servername: conn.tlsServerName,
          })
        : new http.Agent(common);
  }

  get<T = unknown>(path: string, opts?: RequestOptions): Promise<T> {
    return this.json<T>('GET', path, undefined, opts);
  }
  post<T = unknown>(path: string, body: unknown, opts?: RequestOptions): Promise<T> {
    return this.json<T>('POST', path, body, opts);
  }
  put<T = unknown>(path: string, body: unknown, opts?: RequestOptions): Promise<T> {
    return this.json<T>('PUT', path, body, opts);
  }
  /** PATCH, by default as a strategic merge patch (what kubectl sends); the `status` subresource works too. */
  patch<T = unknown>(path: string, body: unknown, opts?: RequestOptions): Promise<T> {
    return this.json<T>('PATCH', path, body, { ...opts, patchType: opts?.patchType ?? 'application/strategic-merge-patch+json' });
  }
  delete<T = unknown>(path: string, opts?: RequestOptions): Promise<T> {
    return this.json<T>('DELETE', path, undefined, opts);
  }

  /** One request whose answer is a JSON object; non-2xx becomes KubeApiError (KubeGoneError for 410). */
  async json<T>(method: string, path: string, body: unknown, opts: RequestOptions = {}): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const res = await this.open(method, path, opts, payload, method === 'PATCH' ? opts.patchType : 'application/json');
    const text = await readBody(res, path);
    if (res.statusCode! < 200 || res.statusCode! > 299) throw apiError(res.statusCode!, text, `${method} ${path}`);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new KubeProtocolError(`${method} ${path}: answer is not JSON`, { path, status: res.statusCode });
    }
  }

  /**
   * Opens a streaming GET (watch): resolves with the response once a 2xx head
   * arrived; the caller reads and destroys it. Errors as in json().
   */
  async stream(path: string, opts: RequestOptions = {}): Promise<IncomingMessage> {
    const res = await this.open('GET', path, opts, undefined, undefined);
    if (res.statusCode! < 200 || res.statusCode! > 299) throw apiError(res.statusCode!, await readBody(res, path), `GET ${path}`);
    return res;
  }

  /** Closes idle keep-alive sockets (open watches end when their signals fire). */
  close(): void {
    this.agent.destroy();
  }

  private open(method: string, path: string, opts: RequestOptions, payload: Buffer | undefined, contentType: string | undefined): Promise<IncomingMessage> {
    const url = new URL(path, this.server);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { Accept: 'application/json', 'User-Agent': this.userAgent };
    const token = this.conn.token?.get();
    if (token) headers.Authorization = `Bearer ${token}`;
    else if (this.conn.username !== undefined) headers.Authorization = `Basic ${Buffer.from(`${this.conn.username}:${this.conn.password ?? ''}`).toString('base64')}`;
    if (payload) {
      headers['Content-Type'] = contentType ?? 'application/json';
      headers['Content-Length'] = String(payload.length);
    }
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const what = `${method} ${url.pathname}`;
      if (opts.signal?.aborted) return reject(new KubeConnectionError(`${what}: aborted`, { path }));
      const req = mod.request(url, { method, headers, agent: this.agent, signal: opts.signal });
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${opts.timeoutMs ?? 30_000} ms`)), opts.timeoutMs ?? 30_000);
      req.once('response', (res) => {
        clearTimeout(timer);
        resolve(res);
      });
      req.once('error', (err) => {
        clearTimeout(timer);
        reject(new KubeConnectionError(`${what} to ${this.server.host}: ${errorMessage(err)}`, { path, server: this.server.host }, { cause: err }));
      });
      req.end(payload);
    });
  }
}

function readBody(res: IncomingMessage, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.once('error', (err) => reject(new KubeConnectionError(`${path}: answer cut: ${errorMessage(err)}`, { path }, { cause: err })));
    res.once('aborted', () => reject(new KubeConnectionError(`${path}: answer cut`, { path })));
  });
}

/** The API's Status object, when the body is one. */
export interface KubeStatus {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
}

export function apiError(status: number, body: string, path: string): KubeApiError {
  let s: KubeStatus = {};
  try {
    const parsed = JSON.parse(body) as unknown;
    if (parsed && typeof parsed === 'object') s = parsed as KubeStatus;
  } catch {
    // not a Status: keep the text's start
  }
  const reason = typeof s.reason === 'string' ? s.reason : http.STATUS_CODES[status] ?? 'Error';
  const message = typeof s.message === 'string' ? s.message : body.slice(0, 200);
  return status === 410 ? new KubeGoneError(status, reason, message, path) : new KubeApiError(status, reason, message, path);
}
