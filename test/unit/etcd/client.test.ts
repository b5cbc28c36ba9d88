/**
 * EtcdClient against a fake JSON gateway on 127.0.0.1:0: request shaping,
 * paging, failover, deadlines, auth and errors, without etcd.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TokenAuth } from '../../../src/etcd/auth.js';
import { EtcdClient, EtcdError, GrpcCode } from '../../../src/etcd/index.js';
import { FakeGateway, b64, error, header, rangeOver, unb64 } from './fake-gateway.js';
import { failure } from '../../helpers/etcd-errors.js';

const gateways: FakeGateway[] = [];
const clients: EtcdClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const g of gateways.splice(0)) await g.stop();
});

async function gateway(): Promise<FakeGateway> {
  const g = await new FakeGateway().start();
  gateways.push(g);
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
  it('get / put / delete / lease calls go to the gateway paths with its JSON', async () => {
    const g = await gateway();
    g.on('/v3/kv/put', () => ({ ...header(5), prev_kv: { key: b64('/k'), value: b64('old'), lease: '9' } }))
      .on('/v3/kv/range', () => ({ ...header(5), kvs: [{ key: b64('/k'), value: b64('v'), mod_revision: '5', version: '1' }], count: '1' }))
      .on('/v3/kv/deleterange', () => ({ ...header(6), deleted: '1' }))
      .on('/v3/lease/grant', () => ({ ...header(6), ID: '7587899075938530831', TTL: '30' }))
      .on('/v3/lease/timetolive', () => ({ ...header(6), ID: '7587899075938530831', TTL: '29', grantedTTL: '30' }))
      .on('/v3/lease/revoke', () => header(6))
      .on('/v3/kv/compaction', () => header(6));
    const c = client([g.endpoint]);
    const put = await c.put('/k', 'v', { lease: '7587899075938530831', prevKv: true });
    expect(put).toEqual({ revision: '5', prevKv: expect.objectContaining({ value: 'old', lease: '9' }) });
    expect((await c.get('/k'))?.value).toBe('v');
    expect((await c.delete('/k')).deleted).toBe(1);
    const lease = await c.leaseGrant(30);
    expect(lease).toEqual({ id: '7587899075938530831', ttl: 30 });
    expect((await c.leaseTimeToLive(lease.id)).ttl).toBe(29);
    await c.leaseRevoke(lease.id);
    await c.compact(5, { physical: true });
    expect(g.paths()).toEqual(['/v3/kv/put', '/v3/kv/range', '/v3/kv/deleterange', '/v3/lease/grant', '/v3/lease/timetolive', '/v3/lease/revoke', '/v3/kv/compaction']);
    expect(g.requests[0]!.body).toEqual({ key: b64('/k'), value: b64('v'), lease: '7587899075938530831', prev_kv: true });
    expect(g.requests[0]!.headers['content-type']).toBe('application/json');
    expect(g.requests[3]!.body).toEqual({ TTL: '30' });
    expect(g.requests[5]!.body).toEqual({ ID: '7587899075938530831' });
    expect(g.requests[6]!.body).toEqual({ revision: '5', physical: true });
    expect(g.requests.every((r) => r.headers.authorization === undefined)).toBe(true);
  });

  it('an error body becomes an EtcdError with the gRPC code, operation and endpoint', async () => {
    const g = await gateway();
    g.on('/v3/kv/compaction', (_b, _req, res) => error(res, 400, 11, 'etcdserver: mvcc: required revision is a future revision'));
    const err = await failure(client([g.endpoint]).compact(99));
    expect(err.code).toBe('ERR_ETCD');
    expect(err.kind).toBe('grpc');
    expect(err.grpcCode).toBe(GrpcCode.OUT_OF_RANGE);
    expect(err.httpStatus).toBe(400);
    expect(err.operation).toBe('compact');
    expect(err.endpoint).toBe(g.endpoint);
  });

  it('rejects endpoints that are not http(s) URLs, naming the field', () => {
    expect(() => new EtcdClient({ endpoints: ['127.0.0.1:2379'] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'endpoints' }));
  });
});

describe('list paging', () => {
  it('reads a prefix in pages at the first page\'s revision, continuing after the last raw key', async () => {
    const g = await gateway();
    const data = new Map<string, string>();
    for (let i = 0; i < 7; i++) data.set(`/p/k${i}`, `v${i}`);
    data.set('/p/k1\u00e9', 'utf8'); // a multi-byte key between k1 and k2
    data.set('/q/other', 'x');
    let revision = 100;
    // Every answer reports a newer store revision, as a busy etcd would.
    g.on('/v3/kv/range', (body) => rangeOver(data, body, revision++));
    const res = await client([g.endpoint], { pageSize: 3 }).list('/p/');
    expect(res.kvs.map((kv) => kv.key)).toEqual(['/p/k0', '/p/k1', '/p/k1\u00e9', '/p/k2', '/p/k3', '/p/k4', '/p/k5', '/p/k6']);
    expect(res.revision).toBe('100');
    const bodies = g.requests.map((r) => r.body);
    expect(bodies).toHaveLength(3);
    expect(bodies[0]).toEqual({ key: b64('/p/'), range_end: b64('/p0'), limit: '3' });
    // Pages 2 and 3: pinned to revision 100, starting just after the previous last key.
    expect(bodies[1]).toEqual({ key: b64(Buffer.concat([Buffer.from('/p/k1\u00e9'), Buffer.from([0])])), range_end: b64('/p0'), limit: '3', revision: '100' });
    expect(unb64(bodies[2]!.key).toString()).toBe('/p/k4\0');
    expect(bodies[2]!.revision).toBe('100');
  });

  it('starts over when the pinned revision is compacted mid-list', async () => {
    const g = await gateway();
    const data = new Map([['/p/a', '1'], ['/p/b', '2'], ['/p/c', '3']]);
    let calls = 0;
    g.on('/v3/kv/range', (body, _req, res) => {
      calls++;
      if (calls === 2) return error(res, 400, 11, 'etcdserver: mvcc: required revision has been compacted');
      return rangeOver(data, body, 10 + calls);
    });
    const res = await client([g.endpoint], { pageSize: 2 }).list('/p/');
    expect(res.kvs.map((kv) => kv.value)).toEqual(['1', '2', '3']);
    expect(res.revision).toBe('13');
    expect(calls).toBe(4);
  });
});

describe('endpoints and deadlines', () => {
  it('moves on from an endpoint that refuses connections and then stays on the one that works', async () => {
    const g = await gateway();
    g.on('/v3/kv/put', () => header(2));
    const c = client([await deadEndpoint(), g.endpoint]);
    await c.put('/k', 'v');
    await c.put('/k', 'w');
    expect(g.paths()).toEqual(['/v3/kv/put', '/v3/kv/put']);
  });

  it('reports "unreachable" when no endpoint accepts a connection', async () => {
    const err = await failure(client([await deadEndpoint(), await deadEndpoint()]).get('/k'));
    expect(err.kind).toBe('unreachable');
  });

  it('a server that never answers becomes a timeout error, not a hang', async () => {
    const g = await gateway();
    g.on('/v3/kv/range', () => new Promise(() => {}));
    const err = await failure(client([g.endpoint], { callTimeoutMs: 150 }).get('/k'));
    expect(err.kind).toBe('timeout');
    expect(err.grpcCode).toBe(GrpcCode.DEADLINE_EXCEEDED);
  });

  it('a write whose connection broke after sending is not sent again to the next endpoint', async () => {
    const a = await gateway();
    const b = await gateway();
    a.on('/v3/kv/put', (_b, req) => void req.socket.destroy());
    b.on('/v3/kv/put', () => header(3));
    const err = await failure(client([a.endpoint, b.endpoint]).put('/k', 'v'));
    expect(err.kind).toBe('unreachable');
    expect(b.requests).toHaveLength(0);
    expect(a.requests).toHaveLength(1);
  });

  it('a read whose connection broke is asked again at the next endpoint', async () => {
    const a = await gateway();
    const b = await gateway();
    a.on('/v3/kv/range', (_b, req) => void req.socket.destroy());
    b.on('/v3/kv/range', () => ({ ...header(3), kvs: [{ key: b64('/k'), value: b64('from-b') }] }));
    expect((await client([a.endpoint, b.endpoint]).get('/k'))?.value).toBe('from-b');
  });
});

describe('auth', () => {
  it('authenticates once, sends the token, and re-authenticates once on an invalid token', async () => {
    const g = await gateway();
    let tokens = 0;
    let valid = '';
    g.on('/v3/auth/authenticate', (body) => {
      expect(body).toEqual({ name: 'weft', password: 'secret' });
      valid = `tok${++tokens}`;
      return { ...header(1), token: valid };
    });
    g.on('/v3/kv/range', (_b, req, res) => (req.headers.authorization === valid ? header(1) : error(res, 401, 16, 'etcdserver: invalid auth token')));
    const c = client([g.endpoint], { username: 'weft', password: 'secret' });
    await Promise.all([c.get('/a'), c.get('/b')]);
    expect(tokens).toBe(1);
    valid = 'expired-on-the-server';
    await c.get('/c');
    expect(tokens).toBe(2);
    const seen = g.requests.filter((r) => r.path === '/v3/kv/range').map((r) => r.headers.authorization);
    expect(seen).toEqual(['tok1', 'tok1', 'tok1', 'tok2']);
  });

  it('gives up after one re-authentication', async () => {
    const g = await gateway();
    g.on('/v3/auth/authenticate', () => ({ ...header(1), token: 't' }));
    g.on('/v3/kv/range', (_b, _req, res) => error(res, 401, 16, 'etcdserver: invalid auth token'));
    const err = await failure(client([g.endpoint], { username: 'u', password: 'p' }).get('/k'));
    expect(err.grpcCode).toBe(GrpcCode.UNAUTHENTICATED);
    expect(g.paths().filter((p) => p === '/v3/auth/authenticate')).toHaveLength(2);
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
