import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { EtcdClient, EtcdWatchError, type WatchHandlers } from '../../src/etcd/index.js';
import { silentLogger } from '../../src/core/log.js';
import { ProxyModel } from '../../src/proxy/model/model.js';
import { EtcdKV } from '../../src/proxy/registry/kv.js';
import { ProxyRegistry } from '../../src/proxy/registry/registry.js';
import { EtcdSource } from '../../src/proxy/sources/etcd.js';
import { SourceMux } from '../../src/proxy/sources/source.js';
import { startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { ep, slice, svc } from '../unit/proxy/fixtures.js';

describe('etcd registry and source against a real etcd', () => {
  let etcd: TestEtcd;
  let client: EtcdClient;
  // An independent gRPC client (the etcd3 package) writes the garbage: the
  // JSON-gateway client must see what a gRPC writer put.
  let grpc: Etcd3;
  beforeAll(async () => {
    etcd = await startEtcd();
    client = new EtcdClient({ endpoints: [etcd.endpoint] });
    grpc = new Etcd3({ hosts: etcd.endpoint });
  });
  afterAll(async () => {
    client?.close();
    grpc?.close();
    await etcd?.stop();
  });

  it('lists, follows puts and deletes, ignores garbage, and allocates atomically under concurrency', async () => {
    const reg = new ProxyRegistry(new EtcdKV(client), { serviceCIDR: '10.96.0.0/28' });
    await reg.apply(svc('web', { clusterIP: undefined }));
    // What the gateway client wrote, a gRPC client reads.
    expect(JSON.parse((await grpc.get('/weft/registry/services/default/web').string())!)).toMatchObject({ kind: 'Service', metadata: { name: 'web' } });
    const model = new ProxyModel();
    let ready = false;
    const mux = new SourceMux(model, ['etcd'], { onChange: () => {}, onReady: () => (ready = true) });
    const ac = new AbortController();
    const source = new EtcdSource({ client, log: silentLogger });
    const running = source.run(mux, ac.signal);
    try {
      await waitFor(() => ready, { what: 'first list' });
      model.applyChanges();
      expect([...model.servicePorts.keys()]).toEqual(['default/web:http']);

      await reg.apply(slice('web', [ep('10.244.1.2')]));
      await grpc.put('/weft/registry/services/default/junk').value('{not json');
      await waitFor(() => (model.applyChanges(), model.endpoints.get('default/web:http')?.length === 1), { what: 'slice via watch' });
      expect(model.servicePorts.has('default/junk:http')).toBe(false);

      await reg.delete('Service', 'default', 'web');
      await waitFor(() => (model.applyChanges(), model.servicePorts.size === 0), { what: 'delete via watch' });

      // Ten writers race for 13 addresses: every one gets a distinct ClusterIP.
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => reg.apply(svc(`s${i}`, { clusterIP: undefined }))));
      const ips = results.map((r) => (r.object as { spec: { clusterIP: string } }).spec.clusterIP);
      expect(new Set(ips).size).toBe(10);
    } finally {
      ac.abort();
      await running;
    }
  });
});

describe('EtcdSource relists when its watch is cancelled (compaction)', () => {
  it('replaces the whole set from a fresh list', async () => {
    const lists: Array<Array<{ key: string; value: string }>> = [
      [{ key: '/weft/registry/services/default/a', value: JSON.stringify(svc('a')) }],
      [{ key: '/weft/registry/services/default/b', value: JSON.stringify(svc('b', { clusterIP: '10.96.0.11' })) }],
    ];
    let listed = 0;
    const watchers: WatchHandlers[] = [];
    const fake = {
      list: async () => {
        const kvs = (lists[Math.min(listed, lists.length - 1)] ?? []).map((e) => ({ key: e.key, value: e.value }));
        listed++;
        return { kvs, revision: String(10 * listed) };
      },
      watch: (_key: string, _opts: unknown, h: WatchHandlers) => {
        watchers.push(h);
        return { cancel: () => {} };
      },
    };
    const model = new ProxyModel();
    const mux = new SourceMux(model, ['etcd'], { onChange: () => {}, onReady: () => {} });
    const ac = new AbortController();
    const source = new EtcdSource({ client: fake as never, log: silentLogger });
    const running = source.run(mux, ac.signal);
    await waitFor(() => watchers.length === 1, { what: 'first watch' });
    model.applyChanges();
    expect([...model.servicePorts.keys()]).toEqual(['default/a:http']);
    watchers[0]!.onError(new EtcdWatchError('compacted', 'required revision has been compacted', { kind: 'grpc', endpoint: 'fake', compactRevision: '15' }));
    await waitFor(() => watchers.length === 2, { what: 'relist and new watch' });
    const c = model.applyChanges();
    expect([...c.changed].sort()).toEqual(['default/a', 'default/b']);
    expect([...model.servicePorts.keys()]).toEqual(['default/b:http']);
    expect(source.relists).toBe(2);
    ac.abort();
    await running;
  });
});
