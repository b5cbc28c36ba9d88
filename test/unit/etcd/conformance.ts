/**
 * One table of etcd behaviours, run by the unit project against the fake
 * gRPC server (fake-etcd.ts, conformance.test.ts) and by the lab project
 * against a real etcd 3.4 (test/lab/etcd-client.test.ts). A case that
 * passes on one and fails on the other means the fake lies.
 */
import { expect } from 'vitest';
import { waitFor } from '../../../src/core/async.js';
import { EtcdClient, EtcdError, GrpcCode, type EtcdClientOptions, type EtcdWatchError, type WatchResponse } from '../../../src/etcd/index.js';

export interface ConformanceContext {
  /** A client on the server under test (closed by the runner). */
  c: EtcdClient;
  /** Another client with extra options (closed by the runner). */
  make(extra: EtcdClientOptions): EtcdClient;
  /** A fresh key prefix for this case. */
  prefix: string;
}

export interface ConformanceCase {
  name: string;
  run(ctx: ConformanceContext): Promise<void>;
}

export function recorder() {
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

async function failure(p: Promise<unknown>): Promise<EtcdError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EtcdError);
  return err as EtcdError;
}

export const conformanceCases: ConformanceCase[] = [
  {
    name: 'put / get / delete with prev_kv, and a paged prefix list in key order',
    async run({ c, prefix: p }) {
      expect(await c.get(`${p}none`)).toBeUndefined();
      const first = await c.put(`${p}a`, 'one');
      expect(first.prevKv).toBeUndefined();
      const put = await c.put(`${p}a`, 'two', { prevKv: true });
      expect(put.prevKv?.value).toBe('one');
      expect(Number(put.revision)).toBe(Number(first.revision) + 1);
      const kv = (await c.get(`${p}a`))!;
      expect([kv.value, kv.version, kv.lease, kv.createRevision, kv.modRevision]).toEqual(['two', '2', '0', first.revision, put.revision]);
      // 23 keys in pages of 4, plus a key just outside the prefix that must not show.
      const keys = Array.from({ length: 23 }, (_, i) => `${p}k${String(i).padStart(2, '0')}`);
      for (const k of keys) await c.put(k, k.slice(-3));
      await c.put(`${p}k\u00e9`, 'multi-byte key');
      await c.put(p.replace(/\/$/, '0'), 'outside');
      const list = await c.list(`${p}k`, { pageSize: 4 });
      expect(list.kvs.map((x) => x.key)).toEqual([...keys, `${p}k\u00e9`]);
      expect(Number(list.revision)).toBeGreaterThanOrEqual(Number(list.kvs.at(-1)!.modRevision));
      const counted = await c.range(`${p}k`, { prefix: true, countOnly: true });
      expect([counted.count, counted.kvs.length]).toEqual([24, 0]);
      const limited = await c.range(`${p}k`, { prefix: true, limit: 5, keysOnly: true });
      expect([limited.kvs.length, limited.more, limited.count, limited.kvs[0]!.value]).toEqual([5, true, 24, '']);
      const del = await c.delete(`${p}k`, { prefix: true, prevKv: true });
      expect(del.deleted).toBe(24);
      expect(del.prevKvs).toHaveLength(24);
      expect((await c.delete(`${p}nothing`)).deleted).toBe(0);
      expect((await c.list(p)).kvs.map((x) => x.key)).toEqual([`${p}a`]);
    },
  },
  {
    name: 'txn compares on version / mod / value / create / lease with each operator, both branches',
    async run({ c, prefix: p }) {
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
      const cur = (await c.get(k))!;
      const cas = await c.txn({
        compare: [
          { key: k, target: 'mod', op: '==', value: cur.modRevision },
          { key: k, target: 'create', op: '==', value: cur.createRevision },
          { key: k, target: 'value', op: '==', value: 'v1' },
          { key: k, target: 'version', op: '>', value: 0 },
          { key: k, target: 'version', op: '<', value: 5 },
          { key: k, target: 'value', op: '!=', value: 'other' },
          { key: k, target: 'lease', op: '==', value: 0 },
        ],
        success: [{ range: { key: k } }, { put: { key: k, value: 'v2', prevKv: true } }, { deleteRange: { key: `${p}nothing` } }],
      });
      expect(cas.succeeded).toBe(true);
      expect(cas.responses[0]!.range!.kvs[0]!.value).toBe('v1');
      expect(cas.responses[1]!.put!.prevKv?.value).toBe('v1');
      expect(cas.responses[2]!.deleteRange!.deleted).toBe(0);
      const stale = await c.txn({ compare: [{ key: k, target: 'mod', op: '==', value: cur.modRevision }], success: [{ put: { key: k, value: 'v3' } }] });
      expect(stale.succeeded).toBe(false);
      expect(stale.responses).toEqual([]);
      expect((await c.get(k))!.value).toBe('v2');
      // A value compare on a missing key is false whatever the operator.
      const missing = await c.txn({ compare: [{ key: `${p}gone`, target: 'value', op: '!=', value: 'x' }], success: [{ put: { key: k, value: 'no' } }] });
      expect(missing.succeeded).toBe(false);
    },
  },
  {
    name: 'leases: grant, attach, time-to-live, revoke deletes the key; an unknown lease is NOT_FOUND',
    async run({ c, prefix: p }) {
      const lease = await c.leaseGrant(60);
      expect(lease.id).toMatch(/^\d+$/);
      expect(lease.ttl).toBe(60);
      await c.put(`${p}leased`, 'x', { lease: lease.id });
      expect((await c.get(`${p}leased`))!.lease).toBe(lease.id);
      const txn = await c.txn({ compare: [{ key: `${p}leased`, target: 'lease', op: '==', value: lease.id }], success: [] });
      expect(txn.succeeded).toBe(true);
      const ttl = await c.leaseTimeToLive(lease.id);
      expect([ttl.id, ttl.grantedTtl]).toEqual([lease.id, 60]);
      expect(ttl.ttl).toBeGreaterThan(0);
      await c.leaseRevoke(lease.id);
      expect(await c.get(`${p}leased`)).toBeUndefined();
      expect((await c.leaseTimeToLive(lease.id)).ttl).toBe(-1);
      const err = await failure(c.put(`${p}orphan`, 'x', { lease: lease.id }));
      expect([err.kind, err.grpcCode, err.operation]).toEqual(['grpc', GrpcCode.NOT_FOUND, 'put']);
      expect(err.message).toMatch(/lease not found/);
      expect((await failure(c.leaseRevoke(lease.id))).grpcCode).toBe(GrpcCode.NOT_FOUND);
      // A chosen id beyond 2^53 stays exact.
      const big = await c.leaseGrant(30, { id: '7587899075938530831' }).catch(async (e: unknown) => {
        // a previous run on the same etcd may hold it
        if (e instanceof EtcdError && /exists/.test(e.message)) return { id: '7587899075938530831', ttl: 30 };
        throw e;
      });
      expect(big.id).toBe('7587899075938530831');
      await c.leaseRevoke(big.id);
    },
  },
  {
    name: 'watch: puts and deletes arrive in order with prev_kv; cancel stops it quietly; a watch from a revision replays',
    async run({ c, prefix: p }) {
      const start = Number((await c.range('/')).revision) + 1;
      const r = recorder();
      const w = c.watch(p, { prefix: true, startRevision: start, prevKv: true }, r.handlers);
      await waitFor(() => r.created === 1, { what: 'watch created' });
      await c.put(`${p}a`, '1');
      await c.put(`${p}a`, '2');
      await c.delete(`${p}a`);
      await c.put(p.replace(/\/$/, '0'), 'outside the prefix');
      await c.txn({ compare: [], success: [{ put: { key: `${p}b`, value: '3' } }, { put: { key: `${p}c`, value: '4' } }] });
      await waitFor(() => r.events().length === 5, { what: 'five events' });
      expect(r.events().map((e) => `${e.type} ${e.kv.key.slice(p.length)} ${e.kv.value} prev=${e.prevKv?.value ?? '-'}`)).toEqual([
        'put a 1 prev=-',
        'put a 2 prev=1',
        'delete a  prev=2',
        'put b 3 prev=-',
        'put c 4 prev=-',
      ]);
      // One txn, one response with both events, at its revision.
      expect(r.responses.at(-1)!.events).toHaveLength(2);
      expect(r.responses.at(-1)!.revision).toBe(r.responses.at(-1)!.events[1]!.kv.modRevision);
      w.cancel();
      await c.put(`${p}d`, '5');
      const r2 = recorder();
      const w2 = c.watch(p, { prefix: true, startRevision: start }, r2.handlers);
      await waitFor(() => r2.events().length === 6, { what: 'replayed events' });
      w2.cancel();
      expect(r.events()).toHaveLength(5);
      expect(r.errors).toEqual([]);
      expect(r2.errors).toEqual([]);
    },
  },
  {
    name: 'compaction: a watch from a compacted revision ends once with "compacted"; reads there are OUT_OF_RANGE',
    async run({ c, prefix: p }) {
      const old = Number((await c.put(`${p}a`, '1')).revision);
      const now = (await c.put(`${p}a`, '2')).revision;
      await c.compact(now, { physical: true });
      const r = recorder();
      c.watch(p, { prefix: true, startRevision: old }, r.handlers);
      await waitFor(() => r.errors.length === 1, { what: 'compaction report' });
      expect(r.errors[0]!.reason).toBe('compacted');
      expect(r.errors[0]!.code).toBe('ERR_ETCD_WATCH');
      expect(Number(r.errors[0]!.compactRevision)).toBeGreaterThanOrEqual(Number(now));
      expect((await c.list(p)).kvs.map((kv) => kv.value)).toEqual(['2']);
      const err = await failure(c.range(`${p}a`, { revision: old }));
      expect([err.kind, err.grpcCode]).toEqual(['grpc', GrpcCode.OUT_OF_RANGE]);
      expect(err.message).toMatch(/compacted/);
      const future = await failure(c.compact(Number(now) + 1000));
      expect(future.grpcCode).toBe(GrpcCode.OUT_OF_RANGE);
      expect(future.message).toMatch(/future revision/);
    },
  },
  {
    name: 'credentials on an etcd without auth: Authenticate says "not enabled", calls proceed without a token',
    async run({ make, prefix: p }) {
      const u = make({ username: 'weft', password: 'whatever' });
      await u.put(`${p}k`, 'v');
      expect((await u.get(`${p}k`))!.value).toBe('v');
      const r = recorder();
      u.watch(p, { prefix: true }, r.handlers);
      await waitFor(() => r.created === 1, { what: 'watch created without a token' });
      await u.put(`${p}k`, 'w');
      await waitFor(() => r.events().length === 1, { what: 'event' });
    },
  },
];
