/**
 * A stand-in for etcd's JSON gateway on 127.0.0.1:0 (no root, no etcd):
 * each test installs a handler per path and reads back the requests it got.
 * Keeps a small sorted KV so range paging is served as etcd would.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface SeenRequest {
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}

export type Handler = (body: Record<string, unknown>, req: IncomingMessage, res: ServerResponse) => unknown | Promise<unknown>;

export class FakeGateway {
  readonly requests: SeenRequest[] = [];
  readonly handlers = new Map<string, Handler>();
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  endpoint = '';

  async start(): Promise<this> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
        this.requests.push({ path: req.url ?? '', headers: req.headers, body });
        const h = this.handlers.get(req.url ?? '');
        if (!h) return error(res, 404, 5, `no handler for ${req.url}`);
        const out = await h(body, req, res);
        // A handler that wrote the answer itself (streams, resets) returns undefined.
        if (out !== undefined && !res.headersSent) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(out));
        }
      });
    });
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    this.server = server;
    this.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this;
  }

  on(path: string, h: Handler): this {
    this.handlers.set(path, h);
    return this;
  }

  paths(): string[] {
    return this.requests.map((r) => r.path);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

/** The gateway's unary error answer. */
export function error(res: ServerResponse, status: number, code: number, message: string): undefined {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: message, code, message }));
  return undefined;
}

export const header = (revision: number | string) => ({ header: { cluster_id: '1', member_id: '2', revision: String(revision), raft_term: '2' } });

export const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
export const unb64 = (s: unknown) => Buffer.from(String(s ?? ''), 'base64');

/**
 * etcd's range over a sorted in-memory map: key / range_end / limit / revision
 * as the gateway takes them (base64, decimal strings), "more" when cut short.
 */
export function rangeOver(data: Map<string, string>, body: Record<string, unknown>, revision: number): unknown {
  const from = unb64(body.key);
  const end = body.range_end ? unb64(body.range_end) : undefined;
  const keys = [...data.keys()].map((k) => Buffer.from(k)).sort(Buffer.compare);
  const match = keys.filter((k) =>
    end === undefined ? k.equals(from) : Buffer.compare(k, from) >= 0 && (end.equals(Buffer.from([0])) || Buffer.compare(k, end) < 0),
  );
  const limit = Number(body.limit ?? 0);
  const page = limit > 0 ? match.slice(0, limit) : match;
  return {
    ...header(revision),
    ...(page.length
      ? { kvs: page.map((k) => ({ key: b64(k), value: b64(data.get(k.toString())!), create_revision: '2', mod_revision: '3', version: '1' })) }
      : {}),
    ...(page.length < match.length ? { more: true } : {}),
    ...(match.length ? { count: String(match.length) } : {}),
  };
}
