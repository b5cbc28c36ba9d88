/**
 * The hostile lease cases of test/helpers/hostile-leases.ts against a real
 * etcd (EtcdRegistry, raw values put with the etcd client exactly as flanneld
 * or a stray tool would), so MemoryRegistry and etcd are held to one behaviour.
 */
import { afterAll, afterEach, beforeAll, describe } from 'vitest';
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
