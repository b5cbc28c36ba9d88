/**
 * Hostile lease data against MemoryRegistry on a fake clock; the same cases
 * run against a real etcd in test/lab/store-hostile.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../src/core/async.js';
import { FakeClock } from '../../../src/core/clock.js';
import { AbortedError, LeaseConflictError } from '../../../src/core/errors.js';
import { LeaseManager } from '../../../src/store/lease-manager.js';
import { MemoryRegistry } from '../../../src/store/memory-registry.js';
import { countingRegistry, hostileConfig, hostileLeaseCases, type HostileWorld } from '../../helpers/hostile-leases.js';

const stops: AbortController[] = [];
afterEach(() => stops.splice(0).forEach((ac) => ac.abort()));

async function memoryWorld(): Promise<HostileWorld> {
  const clock = new FakeClock();
  const mem = new MemoryRegistry({ clock });
  const counted = countingRegistry(mem);
  return {
    registry: counted.registry,
    calls: counted.calls,
    clock,
    now: () => clock.now(),
    // Sleeping advances fake time and yields to real I/O: loops run fast but never spin unseen.
    sleep: async (ms, signal) => {
      if (signal.aborted) throw new AbortedError();
      clock.advance(Math.min(ms, 3_600_000));
      await new Promise((r) => setTimeout(r, 1));
      if (signal.aborted) throw new AbortedError();
    },
    putRaw: async (name, value) => mem.putRaw(name, value),
    deleteRaw: async (name) => mem.deleteRaw(name),
    getRaw: async (name) => mem.rawValue(name),
    timeoutMs: 5000,
  };
}

describe('hostile lease data (MemoryRegistry)', () => {
  hostileLeaseCases(memoryWorld, (ac) => stops.push(ac));
});

describe('keep-alive conflicts back off', () => {
  it('a key that changes under every write is retried with backoff, not in a hot loop', async () => {
    const w = await memoryWorld();
    const m = new LeaseManager({
      registry: w.registry,
      config: hostileConfig,
      publicIp: '192.0.2.1',
      backendType: 'udp',
      ttlSeconds: 60,
      minBackoffMs: 100,
      maxBackoffMs: 1000,
      random: () => 0,
      clock: w.clock!,
      sleep: w.sleep!,
    });
    const ac = new AbortController();
    stops.push(ac);
    await m.acquire(ac.signal);
    // From now on every compare-and-swap loses, as if someone rewrote the key each time.
    const lost: number[] = [];
    w.registry.updateLease = async () => {
      lost.push(w.now());
      throw new LeaseConflictError('lease changed');
    };
    const running = m.run(ac.signal);
    await waitFor(() => lost.length >= 30, { timeoutMs: 5000 });
    // 29 more lost writes took fake time: backoff (100 ms doubling to 1 s), not an immediate retry.
    const gaps = lost.slice(1, 30).map((t, i) => t - lost[i]!);
    expect(gaps.filter((g) => g === 0).length).toBeLessThanOrEqual(1);
    expect(Math.max(...gaps.slice(-10))).toBeGreaterThanOrEqual(800);
    ac.abort();
    await running;
  });
});
