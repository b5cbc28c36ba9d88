/**
 * EtcdWatch against the fake gRPC etcd's Watch stream: the create request
 * on the wire, events in order across frame boundaries, exactly one end
 * report per watch (compaction, cancel by etcd, stream end, error status),
 * none after cancel(), and PINGs that find a dead connection.
 */
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../src/core/async.js';
import { EtcdClient, type EtcdWatchError, type WatchResponse } from '../../../src/etcd/index.js';
import { frame } from '../../../src/etcd/frames.js';
import { readFields } from '../../../src/etcd/proto.js';
import { FakeEtcd, fieldsOf, kv, watchResponse } from './fake-etcd.js';

const fakes: FakeEtcd[] = [];
const clients: EtcdClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const g of fakes.splice(0)) await g.stop();
});

/** A fake whose Watch streams the test writes itself. */
async function streaming(extra: ConstructorParameters<typeof EtcdClient>[0] = {}): Promise<{ g: FakeEtcd; c: EtcdClient }> {
  const g = await new FakeEtcd().start();
  g.serveWatches = false;
  fakes.push(g);
  const c = new EtcdClient({ endpoints: [g.endpoint], callTimeoutMs: 2000, ...extra });
  clients.push(c);
  return { g, c };
}

function recorder() {
  const events: WatchResponse[] = [];
  const errors: EtcdWatchError[] = [];
  const created: string[] = [];
  return {
    events,
    errors,
    created,
    handlers: { onEvents: (r: WatchResponse) => events.push(r), onError: (e: EtcdWatchError) => errors.push(e), onCreated: (r: string) => created.push(r) },
  };
}

describe('EtcdWatch', () => {
  it('sends one create_request and delivers events in order, across frame boundaries', async () => {
    const { g, c } = await streaming();
    const r = recorder();
    const w = c.watch('/p/', { prefix: true, startRevision: '8', prevKv: true }, r.handlers);
    await waitFor(() => g.watchStreams.length === 1, { what: 'watch request' });
    const req = g.calls[0]!;
    expect(req.path).toBe('/etcdserverpb.Watch/Watch');
    const create = [...readFields(req.body)];
    expect(create.map((f) => f.field)).toEqual([1]);
    expect(fieldsOf(create[0]!.bytes!)).toEqual({ 1: '/p/', 2: '/p0', 3: '8', 6: '1' });
    const s = g.watchStreams[0]!.stream;
    s.write(frame(watchResponse({ revision: 7, created: true }).finish()));
    const two = frame(
      watchResponse({ revision: 9, events: [{ kv: kv('/p/a', '1', { mod: 8 }) }, { type: 'delete', kv: kv('/p/b', '', { mod: 9 }), prevKv: kv('/p/b', 'old') }] }).finish(),
    );
    const three = frame(watchResponse({ revision: 10, events: [{ kv: kv('/p/c', '3', { mod: 10 }) }] }).finish());
    s.write(two.subarray(0, 3));
    s.write(Buffer.concat([two.subarray(3), three.subarray(0, 12)]));
    s.write(three.subarray(12));
    await waitFor(() => r.events.length === 2, { what: 'two responses' });
    expect(r.created).toEqual(['7']);
    expect(r.events.flatMap((e) => e.events.map((ev) => `${ev.type} ${ev.kv.key} ${ev.prevKv?.value ?? '-'}`))).toEqual(['put /p/a -', 'delete /p/b old', 'put /p/c -']);
    expect(r.events.map((e) => e.revision)).toEqual(['9', '10']);
    w.cancel();
    expect(r.errors).toEqual([]);
  });

  it('a compaction cancel is reported once as "compacted", and the stream is closed', async () => {
    const { g, c } = await streaming();
    const r = recorder();
    const w = c.watch('/p/', { prefix: true, startRevision: '2' }, r.handlers);
    await waitFor(() => g.watchStreams.length === 1);
    const s = g.watchStreams[0]!;
    s.send(watchResponse({ revision: 9, created: true }));
    s.send(watchResponse({ revision: 9, canceled: true, compactRevision: 5 }));
    await waitFor(() => r.errors.length === 1, { what: 'end report' });
    // etcd leaves its side open; the client must close it.
    await waitFor(() => s.stream.destroyed || s.stream.closed, { what: 'stream closed by the client' });
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.code).toBe('ERR_ETCD_WATCH');
    expect(r.errors[0]!.reason).toBe('compacted');
    expect(r.errors[0]!.compactRevision).toBe('5');
    expect(w.active).toBe(false);
  });

  it('a cancel by etcd for another reason carries the reason and gRPC code', async () => {
    const { g, c } = await streaming();
    const r = recorder();
    c.watch('/p', {}, r.handlers);
    await waitFor(() => g.watchStreams.length === 1);
    g.watchStreams[0]!.send(watchResponse({ revision: 2, created: true, canceled: true, cancelReason: 'rpc error: code = Unauthenticated desc = etcdserver: invalid auth token' }));
    await waitFor(() => r.errors.length === 1);
    expect(r.errors[0]!.reason).toBe('canceled');
    expect(r.errors[0]!.grpcCode).toBe(16);
  });

  it('the connection dropping (etcd stopped) is reported once as "closed"', async () => {
    const { g, c } = await streaming();
    const r = recorder();
    c.watch('/p', {}, r.handlers);
    await waitFor(() => g.watchStreams.length === 1);
    g.watchStreams[0]!.send(watchResponse({ revision: 2, created: true }));
    await waitFor(() => r.created.length === 1);
    g.breakConnections();
    await waitFor(() => r.errors.length === 1, { what: 'end report' });
    expect(r.errors[0]!.reason).toBe('closed');
    expect(r.errors[0]!.kind).toBe('unreachable');
  });

  it('an error status ends the watch as "failed" with its gRPC code; UNAVAILABLE / CANCELED (etcd going away) and no status as "closed"', async () => {
    const { g, c } = await streaming();
    const failed = recorder();
    const closing = recorder();
    const cancelled = recorder();
    const bare = recorder();
    c.watch('/p', {}, failed.handlers);
    c.watch('/q', {}, closing.handlers);
    c.watch('/r', {}, cancelled.handlers);
    c.watch('/s', {}, bare.handlers);
    await waitFor(() => g.watchStreams.length === 4);
    const [a, b, d, e] = g.watchStreams;
    a!.end(8, 'etcdserver: too many requests');
    b!.end(14, 'transport is closing');
    d!.end(1, 'context canceled');
    e!.end();
    await waitFor(() => [failed, closing, cancelled, bare].every((x) => x.errors.length === 1));
    expect([failed.errors[0]!.reason, failed.errors[0]!.grpcCode, failed.errors[0]!.message]).toEqual(['failed', 8, expect.stringContaining('too many requests')]);
    expect([closing.errors[0]!.reason, closing.errors[0]!.grpcCode, closing.errors[0]!.kind]).toEqual(['closed', 14, 'unreachable']);
    expect([cancelled.errors[0]!.reason, cancelled.errors[0]!.grpcCode]).toEqual(['closed', 1]);
    expect([bare.errors[0]!.reason, bare.errors[0]!.kind]).toEqual(['closed', 'unreachable']);
  });

  it('after cancel() nothing is reported, not even the stream closing', async () => {
    const { g, c } = await streaming();
    const r = recorder();
    const w = c.watch('/p', {}, r.handlers);
    await waitFor(() => g.watchStreams.length === 1);
    const s = g.watchStreams[0]!;
    s.send(watchResponse({ revision: 2, created: true }));
    await waitFor(() => r.created.length === 1);
    w.cancel();
    await waitFor(() => s.stream.closed || s.stream.destroyed, { what: 'stream closed' });
    expect(r.errors).toEqual([]);
    expect(r.events).toEqual([]);
  });

  it('a watch that cannot connect is reported as "closed" (the caller relists and retries)', async () => {
    const c = new EtcdClient({ endpoints: ['http://127.0.0.1:1'], callTimeoutMs: 2000 });
    clients.push(c);
    const r = recorder();
    c.watch('/p', {}, r.handlers);
    await waitFor(() => r.errors.length === 1);
    expect(r.errors[0]!.reason).toBe('closed');
    expect(r.errors[0]!.kind).toBe('unreachable');
  });

  it('a watch moves on from an endpoint that refuses connections and works on the next', async () => {
    const g = await new FakeEtcd().start();
    fakes.push(g);
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', () => r()));
    const deadPort = (dead.address() as AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const c = new EtcdClient({ endpoints: [`http://127.0.0.1:${deadPort}`, g.endpoint], callTimeoutMs: 2000 });
    clients.push(c);
    const r = recorder();
    c.watch('/p/', { prefix: true }, r.handlers);
    await waitFor(() => r.created.length === 1, { what: 'watch created on the second endpoint' });
    await c.put('/p/a', '1');
    await waitFor(() => r.events.length === 1, { what: 'event' });
    expect(r.errors).toEqual([]);
  });

    it('open watches never take the slots unary calls wait for (one connection, multiplexed)', async () => {
    const { g } = await streaming();
    const c = new EtcdClient({ endpoints: [g.endpoint], callTimeoutMs: 2000, maxSockets: 1 });
    clients.push(c);
    await c.put('/k', 'v');
    const r = recorder();
    c.watch('/a', {}, r.handlers);
    c.watch('/b', {}, r.handlers);
    await waitFor(() => g.watchStreams.length === 2, { what: 'two watches open' });
    expect((await c.get('/k'))?.value).toBe('v');
    expect((await c.get('/k'))?.value).toBe('v');
    expect(new Set(g.watchStreams.map((s) => s.stream.session))).toHaveProperty('size', 1);
    expect(r.errors).toEqual([]);
  });

  it('close() of the client cancels its watches quietly', async () => {
    const { g, c } = await streaming();
    const r = recorder();
    const w = c.watch('/p', {}, r.handlers);
    await waitFor(() => g.watchStreams.length === 1);
    c.close();
    expect(w.active).toBe(false);
    await waitFor(() => g.watchStreams[0]!.stream.closed || g.watchStreams[0]!.stream.destroyed, { what: 'stream closed' });
    expect(r.errors).toEqual([]);
  });

  it('a connection that stops answering PINGs ends its watches as "closed"', async () => {
    const g = await new FakeEtcd().start();
    fakes.push(g);
    // A TCP relay in front of the fake that can go dark: connections stay open, nothing passes (a host gone, no FIN).
    let dark = false;
    const conns = new Set<Socket>();
    const relay = createServer((down) => {
      const up = connect(Number(new URL(g.endpoint).port), '127.0.0.1');
      for (const s of [down, up]) {
        conns.add(s);
        s.on('error', () => {});
      }
      down.on('data', (d) => !dark && up.write(d));
      up.on('data', (d) => !dark && down.write(d));
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
    try {
      const c = new EtcdClient({ endpoints: [`http://127.0.0.1:${(relay.address() as AddressInfo).port}`], callTimeoutMs: 2000, keepaliveMs: 200 });
      clients.push(c);
      const r = recorder();
      c.watch('/p', {}, r.handlers);
      await waitFor(() => r.created.length === 1, { what: 'watch created' });
      dark = true;
      await waitFor(() => r.errors.length === 1, { what: 'end report after unanswered PINGs', timeoutMs: 30_000 });
      expect(r.errors[0]!.reason).toBe('closed');
      expect(r.errors[0]!.kind).toBe('unreachable');
      expect(r.errors[0]!.message).toMatch(/PING/);
    } finally {
      for (const s of conns) s.destroy();
      await new Promise<void>((r) => relay.close(() => r()));
    }
  }, 40_000);
});
