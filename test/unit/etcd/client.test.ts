/**
 * EtcdClient against the fake gRPC etcd on 127.0.0.1:0: request shaping on
 * the wire, paging, failover, deadlines, never resending a write, auth and
 * errors, without etcd. The behaviour the fake shares with etcd is in the
 * conformance table (conformance.ts).
 */
import http2 from 'node:http2';
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TokenAuth } from '../../../src/etcd/auth.js';
import { EtcdClient, GrpcCode } from '../../../src/etcd/index.js';
import { ProtoWriter } from '../../../src/etcd/proto.js';
import { FakeEtcd, Status, fieldsOf, header, kv } from './fake-etcd.js';
import { failure } from '../../helpers/etcd-errors.js';

const fakes: FakeEtcd[] = [];
const clients: EtcdClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const g of fakes.splice(0)) await g.stop();
});

async function fake(): Promise<FakeEtcd> {
  const g = await new FakeEtcd().start();
  fakes.push(g);
  return g;
}

function client(endpoints: string[], extra: ConstructorParameters<typeof EtcdClient>[0] = {}): EtcdClient {
  const c = new EtcdClient({ endpoints, callTimeoutMs: 2000, ...extra });
  clients.push(c);
  return c;
}

/** A port with nothing listening (bound, then closed). */
async function deadEndpoint(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

describe('EtcdClient requests', () => {
  it('each call goes to its gRPC method with etcd\'s protobuf fields, application/grpc and no token', async () => {
    const g = await fake();
    const c = client([g.endpoint]);
    const lease = await c.leaseGrant(30);
    await c.put('/k', 'v', { lease: lease.id, prevKv: true });
    expect((await c.get('/k'))?.value).toBe('v');
    await c.range('/p/', { prefix: true, limit: 10, keysOnly: true, countOnly: true });
    expect((await c.delete('/k', { prevKv: true })).prevKvs[0]!.value).toBe('v');
    expect((await c.leaseTimeToLive(lease.id)).grantedTtl).toBe(30);
    await c.leaseRevoke(lease.id);
    await c.compact(2, { physical: true });
    await c.txn({
      compare: [{ key: '/k', target: 'mod', op: '>', value: '17' }, { key: '/k', target: 'version', op: '==', value: 0 }, { key: '/k', target: 'value', op: '!=', value: '' }],
      success: [{ put: { key: '/k', value: 'w' } }],
      failure: [{ deleteRange: { key: '/k', prefix: true } }, { range: { key: '/k' } }],
    });
    expect(g.paths()).toEqual([
      '/etcdserverpb.Lease/LeaseGrant',
      '/etcdserverpb.KV/Put',
      '/etcdserverpb.KV/Range',
      '/etcdserverpb.KV/Range',
      '/etcdserverpb.KV/DeleteRange',
      '/etcdserverpb.Lease/LeaseTimeToLive',
      '/etcdserverpb.Lease/LeaseRevoke',
      '/etcdserverpb.KV/Compact',
      '/etcdserverpb.KV/Txn',
    ]);
    const [grant, put, get, range, del, ttl, revoke, compact, txn] = g.calls.map((x) => fieldsOf(x.body));
    expect(grant).toEqual({ 1: '30' });
    expect(put).toEqual({ 1: '/k', 2: 'v', 3: lease.id, 4: '1' });
    expect(get).toEqual({ 1: '/k' });
    expect(range).toEqual({ 1: '/p/', 2: '/p0', 3: '10', 8: '1', 9: '1' });
    expect(del).toEqual({ 1: '/k', 3: '1' });
    expect(ttl).toEqual({ 1: lease.id });
    expect(revoke).toEqual({ 1: lease.id });
    expect(compact).toEqual({ 1: '2', 2: '1' });
    // Compare: result 1, target 2, key 3, then the target's own field; a zero / empty oneof member is still sent.
    const compares = (txn![1] as string[]).map((c) => fieldsOf(Buffer.from(c, 'utf8')));
    expect(compares).toEqual([
      { 1: '1', 2: '2', 3: '/k', 6: '17' },
      { 3: '/k', 4: '0' },
      { 1: '3', 2: '3', 3: '/k', 7: '' },
    ]);
    expect(fieldsOf(Buffer.from(txn![2] as string, 'utf8'))).toEqual({ 2: '\n\x02/k\x12\x01w' });
    for (const call of g.calls) {
      expect(call.headers['content-type']).toBe('application/grpc');
      expect(call.headers.te).toBe('trailers');
      expect(call.headers['grpc-timeout']).toMatch(/^\d+m$/);
      expect(call.headers.token).toBeUndefined();
    }
  });

  it('an error status becomes an EtcdError with the gRPC code, message, operation and endpoint', async () => {
    const g = await fake();
    g.on('/etcdserverpb.KV/Compact', () => ({ error: [11, 'etcdserver: mvcc: required revision is a future revision'] }));
    const err = await failure(client([g.endpoint]).compact(99));
    expect(err.code).toBe('ERR_ETCD');
    expect(err.kind).toBe('grpc');
    expect(err.grpcCode).toBe(GrpcCode.OUT_OF_RANGE);
    expect(err.message).toBe(`etcd compact at ${g.endpoint}: etcdserver: mvcc: required revision is a future revision`);
    expect(err.operation).toBe('compact');
    expect(err.endpoint).toBe(g.endpoint);
  });

  it('a server that is not gRPC is a protocol error naming its HTTP status', async () => {
    const srv = http2.createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('404 page not found');
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const c = client([`http://127.0.0.1:${(srv.address() as { port: number }).port}`]);
    try {
      const err = await failure(c.get('/k'));
      expect([err.kind, err.httpStatus]).toEqual(['protocol', 404]);
    } finally {
      c.close();
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });

  it('an answer larger than maxResponseBytes is refused', async () => {
    const g = await fake();
    await client([g.endpoint]).put('/big', 'x'.repeat(20_000));
    const err = await failure(client([g.endpoint], { maxResponseBytes: 10_000 }).get('/big'));
    expect(err.kind).toBe('protocol');
    expect(err.message).toMatch(/larger than/);
  });

  it('rejects endpoints that are not http(s) URLs, naming the field', () => {
    expect(() => new EtcdClient({ endpoints: ['127.0.0.1:2379'] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'endpoints' }));
  });
});

describe('list paging', () => {
  it('reads a prefix in pages at the first page\'s revision, continuing after the last raw key', async () => {
    const g = await fake();
    const c = client([g.endpoint], { pageSize: 3 });
    for (let i = 0; i < 7; i++) await c.put(`/p/k${i}`, `v${i}`);
    await c.put('/p/k1\u00e9', 'utf8'); // a multi-byte key between k1 and k2
    await c.put('/q/other', 'x');
    const rev = (await c.range('/')).revision;
    g.calls.length = 0;
    const res = await c.list('/p/');
    expect(res.kvs.map((x) => x.key)).toEqual(['/p/k0', '/p/k1', '/p/k1\u00e9', '/p/k2', '/p/k3', '/p/k4', '/p/k5', '/p/k6']);
    expect(res.revision).toBe(rev);
    const bodies = g.calls.map((r) => fieldsOf(r.body));
    expect(bodies).toHaveLength(3);
    expect(bodies[0]).toEqual({ 1: '/p/', 2: '/p0', 3: '3' });
    // Pages 2 and 3: pinned to the first page's revision, starting just after the previous last key.
    expect(bodies[1]).toEqual({ 1: '/p/k1\u00e9\0', 2: '/p0', 3: '3', 4: rev });
    expect(bodies[2]).toEqual({ 1: '/p/k4\0', 2: '/p0', 3: '3', 4: rev });
  });

  it('starts over when the pinned revision is compacted mid-list', async () => {
    const g = await fake();
    const c = client([g.endpoint], { pageSize: 2 });
    for (const [k, v] of [['/p/a', '1'], ['/p/b', '2'], ['/p/c', '3']]) await c.put(k!, v!);
    let calls = 0;
    g.on('/etcdserverpb.KV/Range', () => (++calls === 2 ? { error: [11, 'etcdserver: mvcc: required revision has been compacted'] } : { pass: true }));
    const res = await c.list('/p/');
    expect(res.kvs.map((kv) => kv.value)).toEqual(['1', '2', '3']);
    expect(calls).toBe(4);
  });
});

describe('endpoints and deadlines', () => {
  it('moves on from an endpoint that refuses connections and then stays on the one that works', async () => {
    const g = await fake();
    const c = client([await deadEndpoint(), g.endpoint]);
    await c.put('/k', 'v');
    await c.put('/k', 'w');
    expect(g.paths()).toEqual(['/etcdserverpb.KV/Put', '/etcdserverpb.KV/Put']);
  });

  it('reports "unreachable" naming the endpoint when no endpoint accepts a connection', async () => {
    const dead = await deadEndpoint();
    const err = await failure(client([await deadEndpoint(), dead]).get('/k'));
    expect(err.kind).toBe('unreachable');
    expect(err.endpoint).toBe(dead);
    expect(err.message).toMatch(/ECONNREFUSED/);
  });

  it('a server that never answers becomes a timeout error, not a hang; grpc-timeout tells etcd the deadline', async () => {
    const g = await fake();
    g.on('/etcdserverpb.KV/Range', () => ({ hang: true }));
    const err = await failure(client([g.endpoint], { callTimeoutMs: 150 }).get('/k'));
    expect(err.kind).toBe('timeout');
    expect(err.grpcCode).toBe(GrpcCode.DEADLINE_EXCEEDED);
    expect(Number(String(g.calls[0]!.headers['grpc-timeout']).slice(0, -1))).toBeLessThanOrEqual(150);
  });

  it('a write whose connection broke after sending is not sent again to the next endpoint', async () => {
    const a = await fake();
    const b = await fake();
    a.on('/etcdserverpb.KV/Put', () => ({ reset: true }));
    const err = await failure(client([a.endpoint, b.endpoint]).put('/k', 'v'));
    expect(err.kind).toBe('unreachable');
    expect(b.calls).toHaveLength(0);
    expect(a.calls).toHaveLength(1);
  });

  it('a read whose connection broke is asked again at the next endpoint', async () => {
    const a = await fake();
    const b = await fake();
    a.on('/etcdserverpb.KV/Range', () => ({ reset: true }));
    await client([b.endpoint]).put('/k', 'from-b');
    expect((await client([a.endpoint, b.endpoint]).get('/k'))?.value).toBe('from-b');
    expect(a.calls).toHaveLength(1);
  });

  it('a dropped connection is made again for the next call', async () => {
    const g = await fake();
    const c = client([g.endpoint]);
    await c.put('/k', '1');
    g.breakConnections();
    await expect.poll(async () => (await c.get('/k').catch(() => undefined))?.value, { timeout: 5000 }).toBe('1');
  });

  it('after a GOAWAY (etcd closing the connection gracefully) the next write opens a new connection and is sent once', async () => {
    const g = await fake();
    const c = client([g.endpoint]);
    await c.put('/k', '1');
    g.goaway();
    await expect.poll(() => g.connections, { timeout: 5000 }).toBe(0);
    await c.put('/k', '2');
    expect(g.paths().filter((p) => p.endsWith('/Put'))).toHaveLength(2);
    expect((await c.get('/k'))?.value).toBe('2');
  });

    it('more concurrent calls than maxSockets queue for a slot instead of failing', async () => {
    const g = await fake();
    const c = client([g.endpoint], { maxSockets: 2 });
    let inFlight = 0;
    let most = 0;
    g.on('/etcdserverpb.KV/Range', async () => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setImmediate(r));
      inFlight--;
      return { answer: new ProtoWriter().message(1, header(3)).message(2, kv('/k', 'v')) };
    });
    const got = await Promise.all(Array.from({ length: 8 }, () => c.get('/k')));
    expect(got.every((x) => x?.value === 'v')).toBe(true);
    expect(most).toBeLessThanOrEqual(2);
  });
});

describe('auth', () => {
  it('authenticates once, sends the token as metadata, and re-authenticates once on an invalid token', async () => {
    const g = await fake();
    g.enableAuth({ weft: 'secret' });
    const c = client([g.endpoint], { username: 'weft', password: 'secret' });
    await Promise.all([c.get('/a'), c.get('/b')]);
    expect(g.paths().filter((p) => p.endsWith('/Authenticate'))).toHaveLength(1);
    expect(fieldsOf(g.calls[0]!.body)).toEqual({ 1: 'weft', 2: 'secret' });
    g.dropTokens();
    await c.get('/c');
    expect(g.paths().filter((p) => p.endsWith('/Authenticate'))).toHaveLength(2);
    const seen = g.calls.filter((r) => r.path === '/etcdserverpb.KV/Range').map((r) => r.headers.token);
    expect(seen).toEqual(['fake.1', 'fake.1', 'fake.1', 'fake.2']);
  });

  it('gives up after one re-authentication', async () => {
    const g = await fake();
    g.enableAuth({ u: 'p' });
    g.on('/etcdserverpb.KV/Range', () => ({ error: [Status.UNAUTHENTICATED, 'etcdserver: invalid auth token'] }));
    const err = await failure(client([g.endpoint], { username: 'u', password: 'p' }).get('/k'));
    expect(err.grpcCode).toBe(GrpcCode.UNAUTHENTICATED);
    expect(g.paths().filter((p) => p.endsWith('/Authenticate'))).toHaveLength(2);
  });

  it('"authentication is not enabled" means no token, asked once; auth turned on later makes it authenticate', async () => {
    const g = await fake();
    const c = client([g.endpoint], { username: 'weft', password: 'secret' });
    await c.put('/k', '1');
    await c.get('/k');
    expect(g.paths()).toEqual(['/etcdserverpb.Auth/Authenticate', '/etcdserverpb.KV/Put', '/etcdserverpb.KV/Range']);
    expect(g.calls.every((x) => x.headers.token === undefined)).toBe(true);
    g.enableAuth({ weft: 'secret' });
    expect((await c.get('/k'))?.value).toBe('1');
    expect(g.paths().slice(3)).toEqual(['/etcdserverpb.KV/Range', '/etcdserverpb.Auth/Authenticate', '/etcdserverpb.KV/Range']);
    expect(g.calls.at(-1)!.headers.token).toBe('fake.1');
  });

  it('without a username there is no Authenticate call (certificate-CN users): etcd\'s refusal is the error', async () => {
    const g = await fake();
    g.enableAuth({ weft: 'secret' });
    const err = await failure(client([g.endpoint]).get('/k'));
    expect([err.kind, err.grpcCode]).toEqual(['grpc', GrpcCode.INVALID_ARGUMENT]);
    expect(err.message).toMatch(/user name is empty/);
    expect(g.paths()).toEqual(['/etcdserverpb.KV/Range']);
  });

  it('a wrong password fails the call as an authenticate error', async () => {
    const g = await fake();
    g.enableAuth({ weft: 'secret' });
    const err = await failure(client([g.endpoint], { username: 'weft', password: 'nope' }).get('/k'));
    expect([err.operation, err.grpcCode]).toEqual(['authenticate', GrpcCode.INVALID_ARGUMENT]);
  });

  it('TokenAuth shares one authentication and does not cache a failure', async () => {
    let n = 0;
    const auth = new TokenAuth(async () => {
      n++;
      if (n === 1) throw new Error('down');
      return `t${n}`;
    });
    await expect(auth.current()).rejects.toThrow('down');
    const [a, b] = await Promise.all([auth.current(), auth.current()]);
    expect([a, b, n]).toEqual(['t2', 't2', 2]);
    await auth.invalidate('not-the-current-one');
    expect(await auth.current()).toBe('t2');
    await auth.invalidate('t2');
    expect(await auth.current()).toBe('t3');
  });
});
