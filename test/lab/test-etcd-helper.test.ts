import { createServer, type Server } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { createEtcdOn, freePort } from '../helpers/etcd.js';

// The helper every etcd test starts from: a port taken between the check and etcd's bind
// must fail at once and say so (createEtcd then retries on new ports), not after a 20 s poll.
describe('test etcd helper', () => {
  let holder: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((r) => (holder ? holder.close(() => r()) : r()));
    holder = undefined;
  });

  it('picks ports below the ephemeral range, where outgoing connections do not land', async () => {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    for (let i = 0; i < 20; i++) {
      const p = await freePort();
      expect(p).toBeGreaterThanOrEqual(10000);
      expect(p).toBeLessThan(low!);
    }
  });

  it('fails at once, naming the taken port, when etcd cannot bind', async () => {
    const taken = await freePort();
    // Connections (the helper's health checks) are dropped at once, so close() does not wait on them.
    holder = createServer((sock) => sock.destroy());
    await new Promise<void>((r) => holder!.listen(taken, '127.0.0.1', () => r()));
    const started = Date.now();
    await expect(createEtcdOn(taken, await freePort())).rejects.toThrow(/address already in use/);
    // Well inside the helper's 20 s health poll: the exit ended it.
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
