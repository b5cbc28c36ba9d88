/**
 * EtcdWatch against a fake gateway stream: events in order across chunk
 * boundaries, and exactly one end report per watch (compaction, cancel by
 * etcd, stream end, error line), none after cancel().
 */
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../src/core/async.js';
import { EtcdClient, type EtcdWatchError, type WatchResponse } from '../../../src/etcd/index.js';
import { FakeGateway, b64, header } from './fake-gateway.js';

const gateways: FakeGateway[] = [];
const clients: EtcdClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const g of gateways.splice(0)) await g.stop();
});

/** A gateway whose /v3/watch hands the open response to the test. */
async function streaming(): Promise<{ g: FakeGateway; c: EtcdClient; streams: ServerResponse[] }> {
  const g = await new FakeGateway().start();
  gateways.push(g);
  const streams: ServerResponse[] = [];
  g.on('/v3/watch', (_b, _req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    streams.push(res);
    return undefined;
  });
  const c = new EtcdClient({ endpoints: [g.endpoint], callTimeoutMs: 2000 });
  clients.push(c);
  return { g, c, streams };
}

const line = (result: unknown) => JSON.stringify({ result }) + '\n';

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
  it('sends one create_request and delivers events in order, across chunk boundaries', async () => {
    const { g, c, streams } = await streaming();
    const r = recorder();
    const w = c.watch('/p/', { prefix: true, startRevision: '8', prevKv: true }, r.handlers);
    await waitFor(() => streams.length === 1, { what: 'watch request' });
    expect(g.requests[0]!.body).toEqual({ create_request: { key: b64('/p/'), range_end: b64('/p0'), start_revision: '8', prev_kv: true } });
    const s = streams[0]!;
    s.write(line({ ...header(7), created: true }));
    const two = line({ ...header(9), events: [{ kv: { key: b64('/p/a'), value: b64('1'), mod_revision: '8' } }, { type: 'DELETE', kv: { key: b64('/p/b'), mod_revision: '9' } }] });
    s.write(two.slice(0, 25));
    s.write(two.slice(25) + line({ ...header(10), events: [{ kv: { key: b64('/p/c'), value: b64('3'), mod_revision: '10' } }] }).slice(0, 40));
    s.write(line({ ...header(10), events: [{ kv: { key: b64('/p/c'), value: b64('3'), mod_revision: '10' } }] }).slice(40));
    await waitFor(() => r.events.length === 2, { what: 'two responses' });
    expect(r.created).toEqual(['7']);
    expect(r.events.flatMap((e) => e.events.map((ev) => `${ev.type} ${ev.kv.key}`))).toEqual(['put /p/a', 'delete /p/b', 'put /p/c']);
    expect(r.events.map((e) => e.revision)).toEqual(['9', '10']);
    w.cancel();
    expect(r.errors).toEqual([]);
  });

  it('a compaction cancel is reported once as "compacted", and the stream is closed', async () => {
    const { c, streams } = await streaming();
    const r = recorder();
    const w = c.watch('/p/', { prefix: true, startRevision: '2' }, r.handlers);
    await waitFor(() => streams.length === 1);
    const s = streams[0]!;
    s.write(line({ ...header(9), created: true }));
    s.write(line({ header: {}, canceled: true, compact_revision: '5' }));
    await waitFor(() => r.errors.length === 1, { what: 'end report' });
    // The gateway leaves its side open; the client must close it.
    await waitFor(() => s.destroyed || s.writableEnded || s.socket === null || s.socket.destroyed, { what: 'stream closed by the client' });
    s.write(line({ header: {}, canceled: true, compact_revision: '5' }));
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.code).toBe('ERR_ETCD_WATCH');
    expect(r.errors[0]!.reason).toBe('compacted');
    expect(r.errors[0]!.compactRevision).toBe('5');
    expect(w.active).toBe(false);
  });

  it('a cancel by etcd for another reason carries the reason and gRPC code', async () => {
    const { c, streams } = await streaming();
    const r = recorder();
    c.watch('/p', {}, r.handlers);
    await waitFor(() => streams.length === 1);
    streams[0]!.write(line({ ...header(2), created: true, canceled: true, cancel_reason: 'rpc error: code = Unauthenticated desc = etcdserver: invalid auth token' }));
    await waitFor(() => r.errors.length === 1);
    expect(r.errors[0]!.reason).toBe('canceled');
    expect(r.errors[0]!.grpcCode).toBe(16);
  });

  it('the stream ending (etcd stopped) is reported once as "closed"', async () => {
    const { c, streams } = await streaming();
    const r = recorder();
    c.watch('/p', {}, r.handlers);
    await waitFor(() => streams.length === 1);
    streams[0]!.write(line({ ...header(2), created: true }));
    await waitFor(() => r.created.length === 1);
    streams[0]!.socket!.destroy();
    await waitFor(() => r.errors.length === 1, { what: 'end report' });
    expect(r.errors[0]!.reason).toBe('closed');
    expect(r.errors[0]!.kind).toBe('unreachable');
  });

  it('an error line on the stream ends the watch as "failed" with its gRPC code; UNAVAILABLE / CANCELED (etcd going away) as "closed"', async () => {
    const { c, streams } = await streaming();
    const failed = recorder();
    const closing = recorder();
    const cancelled = recorder();
    c.watch('/p', {}, failed.handlers);
    c.watch('/q', {}, closing.handlers);
    c.watch('/r', {}, cancelled.handlers);
    await waitFor(() => streams.length === 3);
    streams[0]!.write(JSON.stringify({ error: { grpc_code: 8, http_code: 429, message: 'etcdserver: too many requests' } }) + '\n');
    streams[1]!.write(JSON.stringify({ error: { grpc_code: 14, http_code: 503, message: 'transport is closing' } }) + '\n');
    streams[2]!.write(JSON.stringify({ error: { grpc_code: 1, http_code: 408, message: 'grpc: the client connection is closing' } }) + '\n');
    await waitFor(() => failed.errors.length === 1 && closing.errors.length === 1 && cancelled.errors.length === 1);
    expect([failed.errors[0]!.reason, failed.errors[0]!.grpcCode]).toEqual(['failed', 8]);
    expect([closing.errors[0]!.reason, closing.errors[0]!.grpcCode, closing.errors[0]!.kind]).toEqual(['closed', 14, 'unreachable']);
    expect([cancelled.errors[0]!.reason, cancelled.errors[0]!.grpcCode]).toEqual(['closed', 1]);
  });

  it('after cancel() nothing is reported, not even the stream closing', async () => {
    const { c, streams } = await streaming();
    const r = recorder();
    const w = c.watch('/p', {}, r.handlers);
    await waitFor(() => streams.length === 1);
    streams[0]!.write(line({ ...header(2), created: true }));
    await waitFor(() => r.created.length === 1);
    w.cancel();
    await waitFor(() => streams[0]!.socket === null || streams[0]!.socket.destroyed, { what: 'socket closed' });
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

  it('open watches never hold the sockets unary calls wait for', async () => {
    const { g, streams } = await streaming();
    g.on('/v3/kv/range', () => ({ ...header(3), kvs: [{ key: b64('/k'), value: b64('v') }] }));
    const c = new EtcdClient({ endpoints: [g.endpoint], callTimeoutMs: 2000, maxSockets: 1 });
    clients.push(c);
    const r = recorder();
    c.watch('/a', {}, r.handlers);
    c.watch('/b', {}, r.handlers);
    await waitFor(() => streams.length === 2, { what: 'two watches open' });
    expect((await c.get('/k'))?.value).toBe('v');
    expect((await c.get('/k'))?.value).toBe('v');
    expect(r.errors).toEqual([]);
  });

  it('close() of the client cancels its watches quietly', async () => {
    const { c, streams } = await streaming();
    const r = recorder();
    const w = c.watch('/p', {}, r.handlers);
    await waitFor(() => streams.length === 1);
    c.close();
    expect(w.active).toBe(false);
    await waitFor(() => streams[0]!.socket === null || streams[0]!.socket.destroyed, { what: 'socket closed' });
    expect(r.errors).toEqual([]);
  });
});
