import { afterAll, describe, expect, it } from 'vitest';
import { labDown, labExec, labStatus, labUp } from '../../src/lab/index.js';
import { isRoot } from '../helpers/netns.js';
import { netnsOf, uniqueLabId } from '../helpers/lab-util.js';

describe.skipIf(!isRoot)('two labs side by side', () => {
  const a = uniqueLabId('ta');
  const b = uniqueLabId('tb');
  const same = uniqueLabId('ts');
  afterAll(async () => {
    await labDown(a);
    await labDown(b);
    await labDown(same);
  });

  it('two ups of one id at once: one wins, the other fails without touching it', async () => {
    const results = await Promise.allSettled([
      labUp({ id: same, hosts: 1, podsPerHost: 1, startWeftd: false }),
      labUp({ id: same, hosts: 1, podsPerHost: 1, startWeftd: false }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toMatchObject({ code: 'ERR_LAB_EXISTS' });
    expect(labStatus(same).phase).toBe('ready');
    expect(await netnsOf(same)).toHaveLength(3);
    await labDown(same);
  });

  it('use the same addresses without touching each other, and one goes down alone', async () => {
    await Promise.all([
      labUp({ id: a, hosts: 2, podsPerHost: 1, startWeftd: false }),
      labUp({ id: b, hosts: 2, podsPerHost: 1, startWeftd: false }),
    ]);
    for (const id of [a, b]) {
      expect(labStatus(id).hosts[1]!.pods[0]!.ip).toBe('10.244.2.2');
      // etcd in each lab holds its own config: write a marker into one only.
    }
    await labExec(a, 'sw', ['curl', '-sS', '-X', 'POST', '--data-binary', '{"key":"bWFya2Vy","value":"YQ=="}', 'http://192.0.2.254:2379/v3/kv/put']);
    const inB = await labExec(b, 'sw', ['curl', '-sS', '-X', 'POST', '--data-binary', '{"key":"bWFya2Vy"}', 'http://192.0.2.254:2379/v3/kv/range']);
    expect(JSON.parse(inB.stdout).kvs).toBeUndefined();

    await labDown(a);
    expect(await netnsOf(a)).toEqual([]);
    expect(await netnsOf(b)).toHaveLength(5);
    const ping = await labExec(b, 'h1-p1', ['ping', '-c', '1', '-W', '2', '10.244.2.2'], { allowFail: true });
    expect(ping.stdout).toContain('1 received');
  });
});
