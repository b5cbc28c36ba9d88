/**
 * weft's etcd client (JSON gateway) against a real etcd 3.4: KV, paging,
 * transactions, leases, watches, compaction, a paused and a stopped etcd,
 * endpoint failover, wire compatibility with a gRPC client (etcd3), auth
 * and TLS with client certificates. No namespaces needed (loopback only).
 */
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { EtcdClient, EtcdError, GrpcCode, type EtcdWatchError, type WatchResponse } from '../../src/etcd/index.js';
import { createEtcd, freePort, type TestEtcd } from '../helpers/etcd.js';
import { startCustomEtcd, type CustomEtcd } from '../helpers/etcd-secure.js';
import { failure } from '../helpers/etcd-errors.js';

let prefixNo = 0;
const prefix = () => `/etcd-client-${process.pid}-${++prefixNo}/`;

function recorder() {
  const responses: WatchResponse[] = [];
  const errors: EtcdWatchError[] = [];
  let created = 0;
  return {
    responses,
    errors,
    get created() {
      return created;
    },
    events: () => responses.flatMap((r) => r.events),
    handlers: { onEvents: (r: WatchResponse) => responses.push(r), onError: (e: EtcdWatchError) => errors.push(e), onCreated: () => created++ },
  };
}

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

  it('put / get / delete with prev_kv, and a paged prefix list in key order', async () => {
    const p = prefix();
    expect(await c.get(`${p}none`)).toBeUndefined();
    await c.put(`${p}a`, 'one');
    const put = await c.put(`${p}a`, 'two', { prevKv: true });
    expect(put.prevKv?.value).toBe('one');
    const kv = (await c.get(`${p}a`))!;
    expect([kv.value, kv.version, kv.lease]).toEqual(['two', '2', '0']);
    // 23 keys in pages of 4, plus a key just outside the prefix that must not show.
    const keys = Array.from({ length: 23 }, (_, i) => `${p}k${String(i).padStart(2, '0')}`);
    for (const k of keys) await c.put(k, k.slice(-3));
    await c.put(p.replace(/\/$/, '0'), 'outside');
    const list = await c.list(`${p}k`, { pageSize: 4 });
    expect(list.kvs.map((x) => x.key)).toEqual(keys);
    expect(Number(list.revision)).toBeGreaterThanOrEqual(Number(list.kvs.at(-1)!.modRevision));
    const del = await c.delete(`${p}k`, { prefix: true, prevKv: true });
    expect(del.deleted).toBe(23);
    expect(del.prevKvs).toHaveLength(23);
    expect((await c.list(p)).kvs.map((x) => x.key)).toEqual([`${p}a`]);
  });

  it('txn compares on version / mod / value with each operator, both branches, response_range', async () => {
    const p = prefix();
    const k = `${p}x`;
    const created = await c.txn({ compare: [{ key: k, target: 'version', op: '==', value: 0 }], success: [{ put: { key: k, value: 'v1' } }] });
    expect(created.succeeded).toBe(true);
    const again = await c.txn({
      compare: [{ key: k, target: 'version', op: '==', value: 0 }],
      success: [{ put: { key: k, value: 'lost' } }],
      failure: [{ range: { key: k } }],
    });
    expect(again.succeeded).toBe(false);
    expect(again.responses[0]!.range!.kvs[0]!.value).toBe('v1');
    const mod = (await c.get(k))!.modRevision;
    const cas = await c.txn({
      compare: [
        { key: k, target: 'mod', op: '==', value: mod },
        { key: k, target: 'value', op: '==', value: 'v1' },
        { key: k, target: 'version', op: '>', value: 0 },
        { key: k, target: 'version', op: '<', value: 5 },
        { key: k, target: 'value', op: '!=', value: 'other' },
      ],
      success: [{ range: { key: k } }, { put: { key: k, value: 'v2' } }, { deleteRange: { key: `${p}nothing` } }],
    });
    expect(cas.succeeded).toBe(true);
    expect(cas.responses[0]!.range!.kvs[0]!.value).toBe('v1');
    expect(cas.responses[2]!.deleteRange!.deleted).toBe(0);
    const stale = await c.txn({ compare: [{ key: k, target: 'mod', op: '==', value: mod }], success: [{ put: { key: k, value: 'v3' } }] });
    expect(stale.succeeded).toBe(false);
    expect((await c.get(k))!.value).toBe('v2');
  });

  it('leases: grant, attach, time-to-live, revoke deletes the key; ids agree with a gRPC client', async () => {
    const p = prefix();
    const lease = await c.leaseGrant(60);
    expect(lease.id).toMatch(/^\d+$/);
    await c.put(`${p}leased`, 'x', { lease: lease.id });
    expect((await c.get(`${p}leased`))!.lease).toBe(lease.id);
    // The gRPC client reads the same id (int64 kept exact as a decimal string).
    const viaGrpc = (await grpc.get(`${p}leased`).exec()).kvs[0]!;
    expect(String(viaGrpc.lease)).toBe(lease.id);
    const ttl = await c.leaseTimeToLive(lease.id);
    expect(ttl.grantedTtl).toBe(60);
    expect(ttl.ttl).toBeGreaterThan(0);
    await c.leaseRevoke(lease.id);
    expect(await c.get(`${p}leased`)).toBeUndefined();
    expect((await c.leaseTimeToLive(lease.id)).ttl).toBe(-1);
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

  it('a watch from a compacted revision ends once with "compacted"; a list after compaction works', async () => {
    const p = prefix();
    const old = Number((await c.put(`${p}a`, '1')).revision);
    const now = (await c.put(`${p}a`, '2')).revision;
    await c.compact(now, { physical: true });
    const r = recorder();
    c.watch(p, { prefix: true, startRevision: old }, r.handlers);
    await waitFor(() => r.errors.length === 1, { what: 'compaction report' });
    expect(r.errors[0]!.reason).toBe('compacted');
    expect(Number(r.errors[0]!.compactRevision)).toBeGreaterThanOrEqual(Number(now));
    expect((await c.list(p)).kvs.map((kv) => kv.value)).toEqual(['2']);
    // Reading at a compacted revision is an OUT_OF_RANGE error.
    const err = await failure(c.range(`${p}a`, { revision: old }));
    expect(err.grpcCode).toBe(GrpcCode.OUT_OF_RANGE);
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
  let rootToken = '';
  const api = async (path: string, body: unknown, token?: string) => {
    const res = await fetch(`${etcd.endpoint}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: token } : {}) },
      body: JSON.stringify(body),
    });
    return (await res.json()) as Record<string, unknown>;
  };
  const token = async () => (await api('/v3/auth/authenticate', { name: 'root', password: 'rootpw' })).token as string;

  beforeAll(async () => {
    etcd = await startCustomEtcd({ ready: async (e) => (await fetch(`${e}/health`)).ok });
    await api('/v3/auth/user/add', { name: 'root', password: 'rootpw' });
    await api('/v3/auth/user/grant', { user: 'root', role: 'root' });
    expect(await api('/v3/auth/enable', {})).toHaveProperty('header');
    rootToken = await token();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('without credentials etcd refuses; with them calls and watches work', async () => {
    const anon = new EtcdClient({ endpoints: [etcd.endpoint] });
    const bad = new EtcdClient({ endpoints: [etcd.endpoint], username: 'root', password: 'wrong' });
    const good = new EtcdClient({ endpoints: [etcd.endpoint], username: 'root', password: 'rootpw' });
    try {
      expect((await failure(anon.get('/x'))).kind).toBe('grpc');
      expect((await failure(bad.get('/x'))).operation).toBe('authenticate');
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
    try {
      await good.put('/auth/b', '1');
      const before = await token();
      await api('/v3/auth/disable', {}, rootToken);
      await api('/v3/auth/enable', {});
      // Every token handed out before is gone now, the client's included.
      expect(await api('/v3/kv/range', { key: Buffer.from('/auth/b').toString('base64') }, before)).toMatchObject({ code: GrpcCode.UNAUTHENTICATED });
      rootToken = await token();
      expect((await good.get('/auth/b'))!.value).toBe('1');
    } finally {
      good.close();
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
