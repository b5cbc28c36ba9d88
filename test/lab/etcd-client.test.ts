/**
 * weft's etcd client (gRPC over node:http2) against a real etcd 3.4: the
 * shared conformance cases (test/unit/etcd/conformance.ts, also run against
 * the unit tests' fake), wire compatibility with an independent gRPC client
 * (etcd3), a paused and a stopped etcd, endpoint failover, auth and TLS with
 * client certificates. No namespaces needed (loopback only). The security
 * setups (mTLS, users, both, certificate-CN users) with weftd and
 * weft-proxy are in etcd-security.test.ts.
 */
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { EtcdClient, GrpcCode, type EtcdClientOptions } from '../../src/etcd/index.js';
import { createEtcd, freePort, type TestEtcd } from '../helpers/etcd.js';
import { EtcdAdmin, startCustomEtcd, type CustomEtcd } from '../helpers/etcd-secure.js';
import { failure } from '../helpers/etcd-errors.js';
import { encodeRange } from '../../src/etcd/codec.js';
import { GrpcTransport } from '../../src/etcd/transport.js';
import { conformanceCases, recorder } from '../unit/etcd/conformance.js';

let prefixNo = 0;
const prefix = () => `/etcd-client-${process.pid}-${++prefixNo}/`;

describe('conformance: EtcdClient against etcd 3.4', () => {
  let etcd: TestEtcd;
  let c: EtcdClient;
  beforeAll(async () => {
    etcd = await createEtcd();
    c = new EtcdClient({ endpoints: [etcd.endpoint], callTimeoutMs: 3000 });
  });
  afterAll(async () => {
    c?.close();
    await etcd?.destroy();
  });
  for (const tc of conformanceCases) {
    it(tc.name, async () => {
      const extra: EtcdClient[] = [];
      try {
        await tc.run({
          c,
          prefix: prefix(),
          make: (o: EtcdClientOptions) => {
            const x = new EtcdClient({ endpoints: [etcd.endpoint], callTimeoutMs: 3000, ...o });
            extra.push(x);
            return x;
          },
        });
      } finally {
        for (const x of extra) x.close();
      }
    });
  }
});

describe('EtcdClient on a real etcd', () => {
  let etcd: TestEtcd;
  let c: EtcdClient;
  let grpc: Etcd3;
  beforeAll(async () => {
    etcd = await createEtcd();
    c = new EtcdClient({ endpoints: [etcd.endpoint], callTimeoutMs: 1500 });
    grpc = new Etcd3({ hosts: etcd.endpoint });
  });
  afterAll(async () => {
    etcd?.resume();
    c?.close();
    grpc?.close();
    await etcd?.destroy();
  });

  it('lease ids agree with an independent gRPC client (etcd3) both ways', async () => {
    const p = prefix();
    const lease = await c.leaseGrant(60);
    await c.put(`${p}leased`, 'x', { lease: lease.id });
    // The gRPC client reads the same id (int64 kept exact as a decimal string).
    const viaGrpc = (await grpc.get(`${p}leased`).exec()).kvs[0]!;
    expect(String(viaGrpc.lease)).toBe(lease.id);
    await c.leaseRevoke(lease.id);
    // A lease the gRPC client granted, seen by ours.
    const theirs = grpc.lease(60, { autoKeepAlive: false });
    await theirs.put(`${p}theirs`).value('y');
    expect((await c.get(`${p}theirs`))!.lease).toBe(await theirs.grant());
    await theirs.revoke();
  });

  it('watch: a gRPC writer\'s puts and deletes arrive in order with prev_kv; cancel stops it quietly', async () => {
    const p = prefix();
    const start = Number((await c.range('/')).revision) + 1;
    const r = recorder();
    const w = c.watch(p, { prefix: true, startRevision: start, prevKv: true }, r.handlers);
    await waitFor(() => r.created === 1, { what: 'watch created' });
    await grpc.put(`${p}a`).value('1');
    await grpc.put(`${p}a`).value('2');
    await grpc.delete().key(`${p}a`);
    await c.put(`${p}b`, '3');
    await waitFor(() => r.events().length === 4, { what: 'four events' });
    expect(r.events().map((e) => `${e.type} ${e.kv.key.slice(p.length)} ${e.kv.value} prev=${e.prevKv?.value ?? '-'}`)).toEqual([
      'put a 1 prev=-',
      'put a 2 prev=1',
      'delete a  prev=2',
      'put b 3 prev=-',
    ]);
    w.cancel();
    await c.put(`${p}c`, '4');
    // A second watch from the same start sees the later put: proof that it was written while the first was cancelled.
    const r2 = recorder();
    const w2 = c.watch(p, { prefix: true, startRevision: start }, r2.handlers);
    await waitFor(() => r2.events().length === 5, { what: 'replayed events' });
    w2.cancel();
    expect(r.events()).toHaveLength(4);
    expect(r.errors).toEqual([]);
  });

  it('a paused etcd (SIGSTOP) turns calls into timeouts, and everything works after SIGCONT', async () => {
    const p = prefix();
    const r = recorder();
    const w = c.watch(p, { prefix: true }, r.handlers);
    await waitFor(() => r.created === 1, { what: 'watch created' });
    await etcd.pause();
    try {
      const err = await failure(c.get(`${p}a`));
      expect(err.kind).toBe('timeout');
      expect(err.operation).toBe('range');
    } finally {
      etcd.resume();
    }
    await waitFor(async () => (await c.put(`${p}a`, 'after').catch(() => undefined)) !== undefined, { what: 'put after resume' });
    // The watch survived the pause: a pause loses nothing.
    await waitFor(() => r.events().some((e) => e.kv.value === 'after'), { what: 'event after resume' });
    expect(r.errors).toEqual([]);
    w.cancel();
  });

  it('a stopped etcd ends a watch once with "closed", calls fail as unreachable, and it all works again after a restart', async () => {
    const p = prefix();
    const dead = `http://127.0.0.1:${await freePort()}`;
    // The dead endpoint first: failover must find the live one.
    const fo = new EtcdClient({ endpoints: [dead, etcd.endpoint], callTimeoutMs: 1500 });
    try {
      await fo.put(`${p}a`, '1');
      const r = recorder();
      fo.watch(p, { prefix: true }, r.handlers);
      await waitFor(() => r.created === 1, { what: 'watch created' });
      await etcd.stop();
      await waitFor(() => r.errors.length === 1, { what: 'watch end report' });
      expect(r.errors[0]!.reason).toBe('closed');
      const err = await failure(fo.get(`${p}a`));
      expect(err.kind).toBe('unreachable');
      await etcd.start();
      expect((await fo.get(`${p}a`))!.value).toBe('1');
      expect(r.errors).toHaveLength(1);
    } finally {
      fo.close();
    }
  });
});

describe('EtcdClient with auth', () => {
  let etcd: CustomEtcd;
  let admin: EtcdAdmin;

  beforeAll(async () => {
    etcd = await startCustomEtcd({ ready: async (e) => (await fetch(`${e}/health`)).ok });
    admin = new EtcdAdmin(etcd.endpoint);
    await admin.userAdd('root', 'rootpw');
    await admin.userGrantRole('root', 'root');
    await admin.authEnable();
    await admin.login('root', 'rootpw');
  });
  afterAll(async () => {
    admin?.close();
    await etcd?.stop();
  });

  it('without credentials etcd refuses; with them calls and watches work', async () => {
    const anon = new EtcdClient({ endpoints: [etcd.endpoint] });
    const bad = new EtcdClient({ endpoints: [etcd.endpoint], username: 'root', password: 'wrong' });
    const good = new EtcdClient({ endpoints: [etcd.endpoint], username: 'root', password: 'rootpw' });
    try {
      const refused = await failure(anon.get('/x'));
      expect([refused.kind, refused.grpcCode]).toEqual(['grpc', GrpcCode.INVALID_ARGUMENT]);
      expect(refused.message).toMatch(/user name is empty/);
      const wrong = await failure(bad.get('/x'));
      expect([wrong.operation, wrong.endpoint]).toEqual(['authenticate', etcd.endpoint]);
      expect(wrong.message).toMatch(/authentication failed/);
      const r = recorder();
      good.watch('/auth/', { prefix: true }, r.handlers);
      await waitFor(() => r.created === 1, { what: 'authorized watch created' });
      await good.put('/auth/a', '1');
      expect((await good.get('/auth/a'))!.value).toBe('1');
      await waitFor(() => r.events().length === 1, { what: 'event on the authorized watch' });
    } finally {
      anon.close();
      bad.close();
      good.close();
    }
  });

  it('re-authenticates when etcd drops its tokens (auth disabled and enabled again)', async () => {
    const good = new EtcdClient({ endpoints: [etcd.endpoint], username: 'root', password: 'rootpw' });
    const probe = new GrpcTransport({ endpoints: [etcd.endpoint], callTimeoutMs: 3000 });
    const before = new EtcdAdmin(etcd.endpoint);
    try {
      await good.put('/auth/b', '1');
      await before.login('root', 'rootpw');
      await admin.authDisable();
      await admin.authEnable();
      await admin.login('root', 'rootpw');
      // Every token handed out before is gone now, the client's included.
      const stale = await failure(probe.unary('range', '/etcdserverpb.KV/Range', encodeRange('/auth/b').finish(), { token: before.currentToken! }));
      expect(stale.grpcCode).toBe(GrpcCode.UNAUTHENTICATED);
      expect((await good.get('/auth/b'))!.value).toBe('1');
    } finally {
      good.close();
      probe.close();
      before.close();
    }
  });
});

describe('EtcdClient over TLS with client certificates', () => {
  let etcd: CustomEtcd;
  beforeAll(async () => {
    etcd = await startCustomEtcd({
      tls: true,
      ready: async (e, tls) => {
        const probe = new EtcdClient({ endpoints: [e], caFile: tls!.ca, certFile: tls!.clientCert, keyFile: tls!.clientKey, callTimeoutMs: 1000 });
        try {
          await probe.range('/');
          return true;
        } finally {
          probe.close();
        }
      },
    });
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('talks https with a CA and a client certificate; without the certificate etcd refuses', async () => {
    const tls = etcd.tls!;
    const ok = new EtcdClient({ endpoints: [etcd.endpoint], caFile: tls.ca, certFile: tls.clientCert, keyFile: tls.clientKey });
    const noCert = new EtcdClient({ endpoints: [etcd.endpoint], caFile: tls.ca, callTimeoutMs: 1500 });
    const noCa = new EtcdClient({ endpoints: [etcd.endpoint], certFile: tls.clientCert, keyFile: tls.clientKey, callTimeoutMs: 1500 });
    try {
      expect(etcd.endpoint.startsWith('https://')).toBe(true);
      await ok.put('/tls/a', 'secret');
      expect((await ok.get('/tls/a'))!.value).toBe('secret');
      const r = recorder();
      ok.watch('/tls/', { prefix: true }, r.handlers);
      await waitFor(() => r.created === 1, { what: 'watch over TLS' });
      await ok.put('/tls/b', '2');
      await waitFor(() => r.events().length === 1, { what: 'event over TLS' });
      expect((await failure(noCert.get('/tls/a'))).kind).toBe('unreachable');
      expect((await failure(noCa.get('/tls/a'))).kind).toBe('unreachable');
    } finally {
      ok.close();
      noCert.close();
      noCa.close();
    }
  });
});
