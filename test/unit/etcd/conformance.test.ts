/**
 * The shared etcd conformance cases (conformance.ts) against the fake gRPC
 * server; test/lab/etcd-client.test.ts runs the same cases against etcd 3.4.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { EtcdClient, type EtcdClientOptions } from '../../../src/etcd/index.js';
import { conformanceCases } from './conformance.js';
import { FakeEtcd } from './fake-etcd.js';

describe('conformance: EtcdClient against the fake etcd', () => {
  let fake: FakeEtcd;
  let c: EtcdClient;
  let n = 0;
  beforeAll(async () => {
    fake = await new FakeEtcd().start();
    c = new EtcdClient({ endpoints: [fake.endpoint], callTimeoutMs: 2000 });
  });
  afterAll(async () => {
    c?.close();
    await fake?.stop();
  });
  for (const tc of conformanceCases) {
    it(tc.name, async () => {
      const extra: EtcdClient[] = [];
      try {
        await tc.run({
          c,
          prefix: `/conformance-${++n}/`,
          make: (o: EtcdClientOptions) => {
            const x = new EtcdClient({ endpoints: [fake.endpoint], callTimeoutMs: 2000, ...o });
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
