/**
 * A stand-in for etcd's gRPC server on 127.0.0.1:0 (h2c, no root, no etcd):
 * a small in-memory MVCC store behind the etcdserverpb methods weft's client
 * calls (KV Range/Put/DeleteRange/Txn/Compact, Lease Grant/Revoke/TimeToLive,
 * Watch, Auth Authenticate), answering with etcd's messages, status codes and
 * error texts. The shared conformance cases (conformance.ts) run against it
 * and against a real etcd, which keeps the two honest.
 *
 * Tests can record every call, and intercept a method to hang, reset, fail
 * or answer it their own way. Messages are read with the client's low-level
 * protobuf reader but written field by field here, from etcd's rpc.proto.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { ProtoWriter, int64Of, readFields } from '../../../src/etcd/proto.js';
import { GrpcFrames, frame } from '../../../src/etcd/frames.js';

export const Status = { OK: 0, CANCELED: 1, INVALID_ARGUMENT: 3, NOT_FOUND: 5, FAILED_PRECONDITION: 9, OUT_OF_RANGE: 11, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

export interface SeenCall {
  path: string;
  headers: http2.IncomingHttpHeaders;
  /** The first request message. */
  body: Buffer;
}

/** What an interceptor does with a call instead of (or before) the store. */
export type Intercept =
  | { pass: true }
  | { hang: true }
  | { reset: true }
  | { error: [code: number, message: string] }
  | { answer: ProtoWriter };

export type Interceptor = (body: Buffer, headers: http2.IncomingHttpHeaders) => Intercept | Promise<Intercept>;

/** A watch stream as the test sees it (to write raw WatchResponses or break it). */
export interface FakeWatchStream {
  stream: http2.ServerHttp2Stream;
  send(msg: ProtoWriter): void;
  /** Ends the stream with this status in the trailers (no code: trailers without grpc-status). */
  end(code?: number, message?: string): void;
}

interface Rev {
  key: Buffer;
  /** undefined: a delete. */
  value: Buffer | undefined;
  lease: bigint;
  mod: number;
  create: number;
  version: number;
}

interface Lease {
  ttl: number;
  granted: number;
  at: number;
}

interface Watcher {
  key: Buffer;
  end: Buffer | undefined;
  prevKv: boolean;
  id: number;
  send(msg: ProtoWriter): void;
}

const cmp = Buffer.compare;

/** Whether `k` is in [key, end) as etcd reads a range (no end: just key; end "\0": from key on). */
function inRange(k: Buffer, key: Buffer, end: Buffer | undefined): boolean {
  if (!end || end.length === 0) return k.equals(key);
  if (end.length === 1 && end[0] === 0) return cmp(k, key) >= 0;
  return cmp(k, key) >= 0 && cmp(k, end) < 0;
}

class GrpcFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class FakeEtcd {
  readonly calls: SeenCall[] = [];
  readonly interceptors = new Map<string, Interceptor>();
  /** Raw watch streams, in the order they were opened. */
  readonly watchStreams: FakeWatchStream[] = [];
  endpoint = '';
  /** Watch streams answer create requests from the store (false: the test writes the answers). */
  serveWatches = true;

  private server: http2.Http2Server | undefined;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private history: Rev[] = [];
  private revision = 1;
  private compacted = 0;
  private readonly leases = new Map<bigint, Lease>();
  private nextLease = 7587899075938530000n;
  private readonly watchers = new Set<Watcher>();
  private nextWatch = 0;
  // auth
  private authEnabled = false;
  private readonly users = new Map<string, string>();
  private readonly tokens = new Set<string>();
  private tokenNo = 0;

  async start(port = 0): Promise<this> {
    const server = http2.createServer();
    server.on('session', (s) => {
      this.sessions.add(s);
      s.on('close', () => this.sessions.delete(s));
      s.on('error', () => {});
    });
    server.on('stream', (stream, headers) => this.onStream(stream, headers));
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
    this.server = server;
    this.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this;
  }

  /** Replaces the store's answer for one method ("/etcdserverpb.KV/Range"). */
  on(path: string, i: Interceptor): this {
    this.interceptors.set(path, i);
    return this;
  }

  paths(): string[] {
    return this.calls.map((c) => c.path);
  }

  /** Turns auth on with these users (name -> password). */
  enableAuth(users: Record<string, string>): void {
    for (const [u, p] of Object.entries(users)) this.users.set(u, p);
    this.authEnabled = true;
  }

  /** Forgets every token handed out (etcd does so when the auth store changes). */
  dropTokens(): void {
    this.tokens.clear();
  }

  /** Open client connections. */
  get connections(): number {
    return this.sessions.size;
  }

  /** Closes every connection gracefully: GOAWAY, in-flight streams finish (etcd restarting). */
  goaway(): void {
    for (const s of this.sessions) s.close();
  }

  /** Drops every connection at once (etcd killed). */
  breakConnections(): void {
    for (const s of this.sessions) s.destroy();
  }

  async stop(): Promise<void> {
    this.breakConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  // ---- gRPC plumbing ----

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => {});
    const path = String(headers[':path']);
    const frames = new GrpcFrames(64 * 2 ** 20);
    let first = true;
    if (path === '/etcdserverpb.Watch/Watch') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      let trailers: http2.OutgoingHttpHeaders = {};
      stream.once('wantTrailers', () => stream.sendTrailers(trailers));
      const ws: FakeWatchStream = {
        stream,
        send: (m) => !stream.destroyed && stream.write(frame(m.finish())),
        end: (code, message) => {
          if (code !== undefined) trailers = { 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message ?? '') };
          if (!stream.destroyed) stream.end();
        },
      };
      this.watchStreams.push(ws);
      const mine: Watcher[] = [];
      stream.on('close', () => mine.forEach((w) => this.watchers.delete(w)));
      stream.on('data', async (chunk: Buffer) => {
        for (const m of frames.push(chunk)) {
          if (first) {
            first = false;
            this.calls.push({ path, headers, body: m });
            const i = this.interceptors.get(path);
            const act = i ? await i(m, headers) : { pass: true as const };
            if ('error' in act) return ws.end(act.error[0], act.error[1]);
            if (this.act(stream, act)) return;
          }
          if (!this.serveWatches) continue;
          try {
            this.checkAuth(headers);
            const w = this.watchCreate(m, ws);
            if (w) mine.push(w);
          } catch (err) {
            if (err instanceof GrpcFailure) ws.end(err.status, err.message);
          }
        }
      });
      return;
    }
    stream.on('data', (chunk: Buffer) => {
      for (const m of frames.push(chunk)) void this.unary(stream, path, headers, m);
    });
  }

  /** Carries out an interception; true when the call is handled. */
  private act(stream: http2.ServerHttp2Stream, a: Intercept): boolean {
    if ('pass' in a) return false;
    if ('hang' in a) return true;
    if ('reset' in a) {
      stream.session?.destroy();
      return true;
    }
    if ('error' in a) {
      this.trailersOnly(stream, a.error[0], a.error[1]);
      return true;
    }
    this.answer(stream, a.answer);
    return true;
  }

  private async unary(stream: http2.ServerHttp2Stream, path: string, headers: http2.IncomingHttpHeaders, body: Buffer): Promise<void> {
    this.calls.push({ path, headers, body });
    const i = this.interceptors.get(path);
    if (i && this.act(stream, await i(body, headers))) return;
    try {
      if (path !== '/etcdserverpb.Auth/Authenticate') this.checkAuth(headers);
      this.answer(stream, this.handle(path, body));
    } catch (err) {
      if (!(err instanceof GrpcFailure)) throw err;
      this.trailersOnly(stream, err.status, err.message);
    }
  }

  private answer(stream: http2.ServerHttp2Stream, m: ProtoWriter): void {
    if (stream.destroyed) return;
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(frame(m.finish()));
  }

  private trailersOnly(stream: http2.ServerHttp2Stream, code: number, message: string): void {
    if (stream.destroyed) return;
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) }, { endStream: true });
  }

  private checkAuth(headers: http2.IncomingHttpHeaders): void {
    if (!this.authEnabled) return;
    const token = headers.token;
    if (!token) throw new GrpcFailure(Status.INVALID_ARGUMENT, 'etcdserver: user name is empty');
    if (!this.tokens.has(String(token))) throw new GrpcFailure(Status.UNAUTHENTICATED, 'etcdserver: invalid auth token');
  }

  // ---- the store ----

  private handle(path: string, b: Buffer): ProtoWriter {
    switch (path) {
      case '/etcdserverpb.KV/Range':
        return this.range(b);
      case '/etcdserverpb.KV/Put':
        return this.put(b);
      case '/etcdserverpb.KV/DeleteRange':
        return this.deleteRange(b);
      case '/etcdserverpb.KV/Txn':
        return this.txn(b);
      case '/etcdserverpb.KV/Compact':
        return this.compact(b);
      case '/etcdserverpb.Lease/LeaseGrant':
        return this.leaseGrant(b);
      case '/etcdserverpb.Lease/LeaseRevoke':
        return this.leaseRevoke(b);
      case '/etcdserverpb.Lease/LeaseTimeToLive':
        return this.leaseTimeToLive(b);
      case '/etcdserverpb.Auth/Authenticate':
        return this.authenticate(b);
      default:
        throw new GrpcFailure(12, `unknown method ${path}`);
    }
  }

  private header(): ProtoWriter {
    return new ProtoWriter().int(1, 14841639068965178418n).int(2, 10276657743932975437n).int(3, this.revision).int(4, 2);
  }

  private expireLeases(): void {
    const now = Date.now();
    for (const [id, l] of this.leases) if (l.at + l.ttl * 1000 <= now) this.revokeLease(id);
  }

  /** Live keys at `rev` (latest when 0), sorted. */
  private stateAt(rev: number): Map<string, Rev> {
    const m = new Map<string, Rev>();
    for (const r of this.history) {
      if (rev && r.mod > rev) break;
      const k = r.key.toString('latin1');
      if (r.value === undefined) m.delete(k);
      else m.set(k, r);
    }
    return m;
  }

  private kvMessage(r: Rev, keysOnly = false): ProtoWriter {
    return new ProtoWriter()
      .bytes(1, r.key)
      .int(2, r.create)
      .int(3, r.mod)
      .int(4, r.version)
      .bytes(5, keysOnly ? undefined : r.value)
      .int(6, r.lease);
  }

  private rangeOf(b: Buffer): { key: Buffer; end: Buffer | undefined } {
    let key = Buffer.alloc(0);
    let end: Buffer | undefined;
    for (const f of readFields(b)) {
      if (f.field === 1 && f.bytes) key = f.bytes;
      if (f.field === 2 && f.bytes) end = f.bytes;
    }
    return { key, end };
  }

  private range(b: Buffer): ProtoWriter {
    const { key, end } = this.rangeOf(b);
    let limit = 0;
    let rev = 0;
    let keysOnly = false;
    let countOnly = false;
    for (const f of readFields(b)) {
      if (f.field === 3 && f.varint !== undefined) limit = Number(f.varint);
      if (f.field === 4 && f.varint !== undefined) rev = Number(f.varint);
      if (f.field === 8 && f.varint !== undefined) keysOnly = f.varint !== 0n;
      if (f.field === 9 && f.varint !== undefined) countOnly = f.varint !== 0n;
    }
    if (rev > this.revision) throw new GrpcFailure(Status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision');
    if (rev && rev < this.compacted) throw new GrpcFailure(Status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted');
    this.expireLeases();
    const match = [...this.stateAt(rev).values()].filter((r) => inRange(r.key, key, end)).sort((a, c) => cmp(a.key, c.key));
    const page = limit > 0 ? match.slice(0, limit) : match;
    const w = new ProtoWriter().message(1, this.header());
    if (!countOnly) for (const r of page) w.message(2, this.kvMessage(r, keysOnly));
    return w.int(3, !countOnly && page.length < match.length).int(4, match.length);
  }

  private write(key: Buffer, value: Buffer | undefined, lease: bigint, rev: number, prior: Map<string, Rev>): Rev | undefined {
    const prev = prior.get(key.toString('latin1'));
    if (value === undefined && !prev) return undefined;
    const r: Rev =
      value === undefined
        ? { key, value: undefined, lease: 0n, mod: rev, create: 0, version: 0 }
        : { key, value, lease, mod: rev, create: prev ? prev.create : rev, version: prev ? prev.version + 1 : 1 };
    this.history.push(r);
    if (value === undefined) prior.delete(key.toString('latin1'));
    else prior.set(key.toString('latin1'), r);
    return prev;
  }

  private putIn(b: Buffer, rev: number, state: Map<string, Rev>, events: Array<{ r: Rev; prev: Rev | undefined }>): ProtoWriter {
    let key = Buffer.alloc(0);
    let value = Buffer.alloc(0);
    let lease = 0n;
    let prevKv = false;
    for (const f of readFields(b)) {
      if (f.field === 1 && f.bytes) key = Buffer.from(f.bytes);
      if (f.field === 2 && f.bytes) value = Buffer.from(f.bytes);
      if (f.field === 3 && f.varint !== undefined) lease = BigInt.asIntN(64, f.varint);
      if (f.field === 4 && f.varint !== undefined) prevKv = f.varint !== 0n;
    }
    if (lease !== 0n && !this.leases.has(lease)) throw new GrpcFailure(Status.NOT_FOUND, 'etcdserver: requested lease not found');
    const prev = this.write(key, value, lease, rev, state);
    events.push({ r: this.history.at(-1)!, prev });
    const w = new ProtoWriter().message(1, this.header());
    if (prevKv && prev) w.message(2, this.kvMessage(prev));
    return w;
  }

  private deleteIn(b: Buffer, rev: number, state: Map<string, Rev>, events: Array<{ r: Rev; prev: Rev | undefined }>): ProtoWriter {
    const { key, end } = this.rangeOf(b);
    let prevKv = false;
    for (const f of readFields(b)) if (f.field === 3 && f.varint !== undefined) prevKv = f.varint !== 0n;
    const victims = [...state.values()].filter((r) => inRange(r.key, key, end)).sort((a, c) => cmp(a.key, c.key));
    for (const v of victims) {
      this.write(v.key, undefined, 0n, rev, state);
      events.push({ r: this.history.at(-1)!, prev: v });
    }
    const w = new ProtoWriter().message(1, this.header()).int(2, victims.length);
    if (prevKv) for (const v of victims) w.message(3, this.kvMessage(v));
    return w;
  }

  /** Runs `fn` as one revision: committed (and watchers told) only if it wrote something. */
  private mutate(fn: (rev: number, state: Map<string, Rev>, events: Array<{ r: Rev; prev: Rev | undefined }>) => ProtoWriter): ProtoWriter {
    this.expireLeases();
    const rev = this.revision + 1;
    const state = this.stateAt(0);
    const events: Array<{ r: Rev; prev: Rev | undefined }> = [];
    const mark = this.history.length;
    // The header inside the answer reports the new revision when something changed.
    const before = this.revision;
    this.revision = rev;
    let out: ProtoWriter;
    try {
      out = fn(rev, state, events);
    } catch (err) {
      this.history.length = mark;
      this.revision = before;
      throw err;
    }
    if (events.length === 0) {
      this.revision = before;
      // Answers were built with the tentative revision; rebuild with the real one.
      return fn(before, this.stateAt(0), []);
    }
    this.notify(events);
    return out;
  }

  private put(b: Buffer): ProtoWriter {
    return this.mutate((rev, state, events) => this.putIn(b, rev, state, events));
  }

  private deleteRange(b: Buffer): ProtoWriter {
    return this.mutate((rev, state, events) => this.deleteIn(b, rev, state, events));
  }

  private compare(c: Buffer, state: Map<string, Rev>): boolean {
    let result = 0;
    let target = 0;
    let key = Buffer.alloc(0);
    let num = 0n;
    let value = Buffer.alloc(0);
    for (const f of readFields(c)) {
      if (f.field === 1 && f.varint !== undefined) result = Number(f.varint);
      else if (f.field === 2 && f.varint !== undefined) target = Number(f.varint);
      else if (f.field === 3 && f.bytes) key = f.bytes;
      else if (f.field >= 4 && f.field <= 8 && f.field !== 7 && f.varint !== undefined) num = BigInt.asIntN(64, f.varint);
      else if (f.field === 7 && f.bytes) value = f.bytes;
    }
    const r = state.get(key.toString('latin1'));
    let d: number;
    if (target === 3) {
      if (!r) return false;
      d = cmp(r.value!, value);
    } else {
      const have = BigInt(target === 0 ? (r?.version ?? 0) : target === 1 ? (r?.create ?? 0) : target === 2 ? (r?.mod ?? 0) : (r?.lease ?? 0n));
      d = have < num ? -1 : have > num ? 1 : 0;
    }
    return [d === 0, d > 0, d < 0, d !== 0][result] ?? false;
  }

  private txn(b: Buffer): ProtoWriter {
    return this.mutate((rev, state, events) => {
      const compares: Buffer[] = [];
      const success: Buffer[] = [];
      const failure: Buffer[] = [];
      for (const f of readFields(b)) {
        if (!f.bytes) continue;
        (f.field === 1 ? compares : f.field === 2 ? success : failure).push(f.bytes);
      }
      const ok = compares.every((c) => this.compare(c, state));
      const w = new ProtoWriter().message(1, this.header()).int(2, ok);
      for (const op of ok ? success : failure) {
        for (const f of readFields(op)) {
          if (!f.bytes) continue;
          const res =
            f.field === 1
              ? this.rangeInState(f.bytes, state)
              : f.field === 2
                ? this.putIn(f.bytes, rev, state, events)
                : this.deleteIn(f.bytes, rev, state, events);
          w.message(3, new ProtoWriter().message(f.field, res));
        }
      }
      return w;
    });
  }

  /** A range inside a txn: it sees the txn's own earlier writes. */
  private rangeInState(b: Buffer, state: Map<string, Rev>): ProtoWriter {
    const { key, end } = this.rangeOf(b);
    const match = [...state.values()].filter((r) => inRange(r.key, key, end)).sort((a, c) => cmp(a.key, c.key));
    const w = new ProtoWriter().message(1, this.header());
    for (const r of match) w.message(2, this.kvMessage(r));
    return w.int(4, match.length);
  }

  private compact(b: Buffer): ProtoWriter {
    let rev = 0;
    for (const f of readFields(b)) if (f.field === 1 && f.varint !== undefined) rev = Number(f.varint);
    if (rev > this.revision) throw new GrpcFailure(Status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision');
    if (rev <= this.compacted) throw new GrpcFailure(Status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted');
    this.compacted = rev;
    return new ProtoWriter().message(1, this.header());
  }

  private leaseId(b: Buffer, field: number): bigint {
    for (const f of readFields(b)) if (f.field === field && f.varint !== undefined) return BigInt.asIntN(64, f.varint);
    return 0n;
  }

  private leaseGrant(b: Buffer): ProtoWriter {
    const ttl = Number(this.leaseId(b, 1));
    let id = this.leaseId(b, 2);
    if (id === 0n) id = this.nextLease++;
    else if (this.leases.has(id)) throw new GrpcFailure(Status.FAILED_PRECONDITION, 'etcdserver: lease already exists');
    this.leases.set(id, { ttl, granted: ttl, at: Date.now() });
    return new ProtoWriter().message(1, this.header()).int(2, id).int(3, ttl);
  }

  private revokeLease(id: bigint): void {
    this.leases.delete(id);
    const state = this.stateAt(0);
    const keys = [...state.values()].filter((r) => r.lease === id);
    if (keys.length === 0) return;
    const rev = ++this.revision;
    const events = keys.map((k) => {
      this.write(k.key, undefined, 0n, rev, state);
      return { r: this.history.at(-1)!, prev: k };
    });
    this.notify(events);
  }

  private leaseRevoke(b: Buffer): ProtoWriter {
    const id = this.leaseId(b, 1);
    this.expireLeases();
    if (!this.leases.has(id)) throw new GrpcFailure(Status.NOT_FOUND, 'etcdserver: requested lease not found');
    this.revokeLease(id);
    return new ProtoWriter().message(1, this.header());
  }

  private leaseTimeToLive(b: Buffer): ProtoWriter {
    const id = this.leaseId(b, 1);
    this.expireLeases();
    const l = this.leases.get(id);
    const w = new ProtoWriter().message(1, this.header()).int(2, id);
    if (!l) return w.int(3, -1n);
    const left = Math.max(0, Math.ceil((l.at + l.ttl * 1000 - Date.now()) / 1000) - 1);
    return w.int(3, left).int(4, l.granted);
  }

  private authenticate(b: Buffer): ProtoWriter {
    let name = '';
    let password = '';
    for (const f of readFields(b)) {
      if (f.field === 1 && f.bytes) name = f.bytes.toString();
      if (f.field === 2 && f.bytes) password = f.bytes.toString();
    }
    if (!this.authEnabled) throw new GrpcFailure(Status.FAILED_PRECONDITION, 'etcdserver: authentication is not enabled');
    if (this.users.get(name) !== password) throw new GrpcFailure(Status.INVALID_ARGUMENT, 'etcdserver: authentication failed, invalid user ID or password');
    const token = `fake.${++this.tokenNo}`;
    this.tokens.add(token);
    return new ProtoWriter().message(1, this.header()).bytes(2, token);
  }

  // ---- watches ----

  private watchCreate(m: Buffer, ws: FakeWatchStream): Watcher | undefined {
    let create: Buffer | undefined;
    for (const f of readFields(m)) if (f.field === 1 && f.bytes) create = f.bytes;
    if (!create) return undefined;
    const { key, end } = this.rangeOf(create);
    let start = 0;
    let prevKv = false;
    for (const f of readFields(create)) {
      if (f.field === 3 && f.varint !== undefined) start = Number(f.varint);
      if (f.field === 6 && f.varint !== undefined) prevKv = f.varint !== 0n;
    }
    const id = this.nextWatch++;
    ws.send(new ProtoWriter().message(1, this.header()).int(2, id, true).int(3, true));
    if (start && start < this.compacted) {
      ws.send(new ProtoWriter().message(1, this.header()).int(2, id, true).int(4, true).int(5, this.compacted));
      return undefined;
    }
    const w: Watcher = { key, end, prevKv, id, send: ws.send };
    if (start) {
      // Replay history from `start`, one response per revision.
      for (let rev = start; rev <= this.revision; rev++) {
        const evs = this.history
          .filter((r) => r.mod === rev)
          .map((r) => ({ r, prev: this.prevOf(r) }));
        if (evs.length) this.deliver(w, evs);
      }
    }
    this.watchers.add(w);
    return w;
  }

  private prevOf(r: Rev): Rev | undefined {
    const i = this.history.indexOf(r);
    for (let j = i - 1; j >= 0; j--) {
      const h = this.history[j]!;
      if (h.key.equals(r.key)) return h.value === undefined ? undefined : h;
    }
    return undefined;
  }

  private notify(events: Array<{ r: Rev; prev: Rev | undefined }>): void {
    for (const w of this.watchers) this.deliver(w, events);
  }

  private deliver(w: Watcher, events: Array<{ r: Rev; prev: Rev | undefined }>): void {
    const mine = events.filter((e) => inRange(e.r.key, w.key, w.end));
    if (mine.length === 0) return;
    const msg = new ProtoWriter().message(1, this.header()).int(2, w.id, true);
    for (const e of mine) {
      const ev = new ProtoWriter().int(1, e.r.value === undefined ? 1 : 0).message(2, this.kvMessage(e.r));
      if (w.prevKv && e.prev) ev.message(3, this.kvMessage(e.prev));
      msg.message(11, ev);
    }
    w.send(msg);
  }
}

// ---- helpers for tests that write raw answers ----

export function kv(key: string, value: string, extra: { mod?: number; create?: number; version?: number; lease?: bigint } = {}): ProtoWriter {
  return new ProtoWriter()
    .bytes(1, key)
    .int(2, extra.create ?? 0)
    .int(3, extra.mod ?? 0)
    .int(4, extra.version ?? 0)
    .bytes(5, value)
    .int(6, extra.lease ?? 0n);
}

export function header(revision: number): ProtoWriter {
  return new ProtoWriter().int(1, 1).int(2, 2).int(3, revision).int(4, 2);
}

/** A WatchResponse as etcd writes it. */
export function watchResponse(o: {
  revision: number;
  created?: boolean;
  canceled?: boolean;
  compactRevision?: number;
  cancelReason?: string;
  events?: Array<{ type?: 'put' | 'delete'; kv: ProtoWriter; prevKv?: ProtoWriter }>;
}): ProtoWriter {
  const w = new ProtoWriter()
    .message(1, header(o.revision))
    .int(3, o.created === true)
    .int(4, o.canceled === true)
    .int(5, o.compactRevision ?? 0)
    .bytes(6, o.cancelReason);
  for (const e of o.events ?? []) {
    const ev = new ProtoWriter().int(1, e.type === 'delete' ? 1 : 0).message(2, e.kv);
    if (e.prevKv) ev.message(3, e.prevKv);
    w.message(11, ev);
  }
  return w;
}

/** Decodes a request's fields into {field: value} for assertions (bytes as UTF-8 text, varints as decimal strings; repeated fields as arrays). */
export function fieldsOf(b: Buffer): Record<number, string | string[]> {
  const out: Record<number, string | string[]> = {};
  for (const f of readFields(b)) {
    const v = f.bytes ? f.bytes.toString('utf8') : int64Of(f.varint);
    const have = out[f.field];
    out[f.field] = have === undefined ? v : Array.isArray(have) ? [...have, v] : [have, v];
  }
  return out;
}
