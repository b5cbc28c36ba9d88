/**
 * The hostile lease cases of test/helpers/hostile-leases.ts against a real
 * etcd (EtcdRegistry, raw values put with the etcd client exactly as flanneld
 * or a stray tool would), so MemoryRegistry and etcd are held to one behaviour.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EtcdRegistry } from '../../src/store/etcd-registry.js';
import { countingRegistry, hostileLeaseCases, type HostileWorld } from '../helpers/hostile-leases.js';
import { startEtcd, type TestEtcd } from '../helpers/etcd.js';

let etcd: TestEtcd;
let prefixNo = 0;
const aborts: AbortController[] = [];
const registries: EtcdRegistry[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
afterEach(async () => {
  for (const ac of aborts.splice(0)) ac.abort();
  for (const r of registries.splice(0)) await r.close();
});

async function etcdWorld(): Promise<HostileWorld> {
  const prefix = `/weft-hostile-${process.pid}-${++prefixNo}-${Math.random().toString(36).slice(2, 8)}/network`;
  const r = new EtcdRegistry({ endpoints: [etcd.endpoint], prefix, callTimeoutMs: 5000 });
  registries.push(r);
  const counted = countingRegistry(r);
  const key = (name: string) => `${r.keys.subnets}${name}`;
  return {
    registry: counted.registry,
    calls: counted.calls,
    now: () => Date.now(),
    putRaw: async (name, value) => {
      await r.client.put(key(name), value);
    },
    deleteRaw: async (name) => {
      await r.client.delete(key(name));
    },
    getRaw: async (name) => (await r.client.get(key(name)))?.value,
    timeoutMs: 20_000,
  };
}

describe('hostile lease data (etcd)', () => {
  hostileLeaseCases(etcdWorld, (ac) => aborts.push(ac));
});

describe('EtcdRegistry listing in pages', () => {
  it('reads 300 leases and 3 oversized values once each, in small pages around the big ones', async () => {
    const prefix = `/weft-paging-${process.pid}-${Math.random().toString(36).slice(2, 8)}/network`;
    const r = new EtcdRegistry({ endpoints: [etcd.endpoint], prefix, callTimeoutMs: 5000 });
    registries.push(r);
    const big = `{"PublicIP":"192.0.2.99","BackendType":"udp","BackendData":"${'x'.repeat(1024 * 1024)}"}`;
    for (let i = 0; i < 300; i++) {
      const subnet = `10.${10 + Math.floor(i / 256)}.${i % 256}.0-24`;
      await r.client.put(`${r.keys.subnets}${subnet}`, JSON.stringify({ PublicIP: `192.0.2.${1 + (i % 200)}`, PublicIPv6: null }));
    }
    for (const n of [1, 2, 3]) await r.client.put(`${r.keys.subnets}10.9.${n}.0-24`, big);
    const pages: number[] = [];
    const range = r.client.range.bind(r.client);
    r.client.range = async (key, opts) => {
      const res = await range(key, opts);
      pages.push(res.kvs.length);
      return res;
    };
    const { leases, invalid } = await r.listLeases();
    expect(leases).toHaveLength(300);
    expect(new Set(leases.map((l) => l.key)).size).toBe(300);
    expect(invalid.map((i) => [i.key, i.reason])).toEqual([
      ['10.9.1.0-24', 'too-large'],
      ['10.9.2.0-24', 'too-large'],
      ['10.9.3.0-24', 'too-large'],
    ]);
    console.log(`pages: ${pages.join(",")}`);
    // Every key read exactly once, in a bounded number of bounded pages.
    expect(pages.reduce((a, b) => a + b, 0)).toBe(303);
    expect(Math.max(...pages)).toBeLessThanOrEqual(64);
    expect(pages.length).toBeLessThan(12);
  });
});
