/**
 * Hostile lease data against MemoryRegistry on a fake clock; the same cases
 * run against a real etcd in test/lab/store-hostile.test.ts.
 */
import { afterEach, describe } from 'vitest';
import { FakeClock } from '../../../src/core/clock.js';
import { AbortedError } from '../../../src/core/errors.js';
import { MemoryRegistry } from '../../../src/store/memory-registry.js';
import { countingRegistry, hostileLeaseCases, type HostileWorld } from '../../helpers/hostile-leases.js';

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
