import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: string;
}

export type FakeHandler = (req: FakeRequest, res: ServerResponse) => void;

/**
 * A scripted stand-in for an API server: each request to a path takes the
 * next handler queued for "list" (no watch=1) or "watch"; a request with
 * nothing queued is left hanging (like a quiet watch) until close().
 * Every request is recorded.
 */
export class FakeApiServer {
  readonly requests: FakeRequest[] = [];
  private readonly queues = new Map<string, FakeHandler[]>();
  private readonly open = new Set<ServerResponse>();
  private server!: Server;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        const u = new URL(req.url!, 'http://x');
        const r: FakeRequest = { method: req.method!, path: u.pathname, query: u.searchParams, headers: req.headers, body };
        this.requests.push(r);
        const q = this.queues.get(this.qkey(r.method, r.path, u.searchParams.get('watch') === '1'));
        const h = q?.shift();
        this.open.add(res);
        res.on('close', () => this.open.delete(res));
        if (h) h(r, res);
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  private qkey(method: string, path: string, watch: boolean): string {
    return `${method} ${path} ${watch ? 'watch' : 'plain'}`;
  }

  /** Queue handlers for the next requests to `path` (plain GET, or watch). */
  on(path: string, kind: 'list' | 'watch', ...handlers: FakeHandler[]): void {
    const k = this.qkey('GET', path, kind === 'watch');
    this.queues.set(k, [...(this.queues.get(k) ?? []), ...handlers]);
  }

  onMethod(method: string, path: string, ...handlers: FakeHandler[]): void {
    const k = this.qkey(method, path, false);
    this.queues.set(k, [...(this.queues.get(k) ?? []), ...handlers]);
  }

  watches(path: string): FakeRequest[] {
    return this.requests.filter((r) => r.path === path && r.query.get('watch') === '1');
  }

  lists(path: string): FakeRequest[] {
    return this.requests.filter((r) => r.path === path && r.query.get('watch') !== '1' && r.method === 'GET');
  }

  async close(): Promise<void> {
    for (const r of this.open) r.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** A list answer. */
export function listOf(items: unknown[], resourceVersion: string, cont?: string): FakeHandler {
  return (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ kind: 'List', apiVersion: 'v1', metadata: { resourceVersion, ...(cont ? { continue: cont } : {}) }, items }));
  };
}

/** A Status error answer. */
export function status(code: number, reason: string, message = reason): FakeHandler {
  return (_req, res) => {
    res.writeHead(code, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message, reason, code }));
  };
}

export interface WatchScript {
  /** Lines written at once (events as objects; strings written raw). */
  events: Array<object | string>;
  /** After the events: 'end' the response cleanly, 'cut' the socket, or 'hang' (stay open, silent). */
  then: 'end' | 'cut' | 'hang';
}

export function watchOf(script: WatchScript): FakeHandler {
  return (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    for (const e of script.events) res.write(typeof e === 'string' ? e : `${JSON.stringify(e)}\n`);
    if (script.then === 'end') res.end();
    else if (script.then === 'cut') setImmediate(() => res.socket?.destroy());
  };
}

export function svc(name: string, rv: string, port = 80, ns = 'default'): Record<string, unknown> {
  return { metadata: { name, namespace: ns, resourceVersion: rv }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port, protocol: 'TCP' }] } };
}

export function ev(type: string, object: object): object {
  return { type, object };
}
