import { describe, expect, it } from 'vitest';
import { formatCidr, parseCidr, subnetKey } from '../../../src/core/ip.js';
import { acceptLeases, classifyLeaseKv, type LeaseEntry } from '../../../src/store/lease-check.js';
import { LeaseView } from '../../../src/store/lease-view.js';

const config = { network: parseCidr('10.244.0.0/16'), subnetLen: 24 };

/** A tiny deterministic PRNG so a failure can be replayed by its seed. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

const NAMES = [
  '10.244.1.0-24',
  '10.244.2.0-24',
  '10.244.3.0-24',
  '10.244.1.0-24&fd00::-64',
  '10.244.1.128-25',
  '10.244.0.0-16',
  '10.9.0.0-24',
  '10.244.2.0-24&x',
];
/** Only the Network's SubnetLen: the fast paths run most of the time. */
const SAME_LEN = ['10.244.1.0-24', '10.244.2.0-24', '10.244.3.0-24', '10.244.1.0-24&fd00::-64', '10.9.0.0-24', '10.244.2.0-24&x'];
const VALUES = ['{"PublicIP":"192.0.2.1","BackendType":"udp"}', '{"PublicIP":"192.0.2.2"}', 'junk', '{"PublicIP":"0.0.0.0"}'];

describe('LeaseView', () => {
  it.each([
    [1, NAMES],
    [2, NAMES],
    [3, NAMES],
    [4, NAMES],
    [5, SAME_LEN],
    [6, SAME_LEN],
    [7, SAME_LEN],
    [8, SAME_LEN],
  ])('ends where acceptLeases over the raw keys ends, after every step (seed %i)', (seed, names) => {
    const rnd = prng(seed);
    const raw = new Map<string, LeaseEntry>();
    const view = new LeaseView(config);
    let rev = 1;
    const created = new Map<string, number>();
    for (let step = 0; step < 400; step++) {
      const name = names[Math.floor(rnd() * names.length)]!;
      rev++;
      if (rnd() < 0.3) {
        raw.delete(name);
        created.delete(name);
        view.remove(name);
      } else {
        const value = VALUES[Math.floor(rnd() * VALUES.length)]!;
        if (!created.has(name)) created.set(name, rev);
        const e = classifyLeaseKv({ name, value, bytes: value.length, modRevision: rev, createRevision: created.get(name)! });
        raw.set(name, e);
        if ('lease' in e) view.put(name, e.lease);
        else view.refuse(name, e.invalid);
      }
      if (step % 50 === 0) {
        // A relist in the middle: the view starts over from the raw keys.
        const leases = [...raw.values()].flatMap((e) => ('lease' in e ? [e.lease] : []));
        const invalid = [...raw.values()].flatMap((e) => ('invalid' in e ? [e.invalid] : []));
        view.reset(leases, invalid);
      }
      const want = acceptLeases(config, raw.values());
      expect([...view.leases.keys()].sort(), `step ${step}`).toEqual(want.accepted.map((l) => subnetKey(l.subnet)).sort());
      for (const l of want.accepted) expect(view.leases.get(subnetKey(l.subnet))!.key).toBe(l.key);
      expect([...view.invalid.keys()].sort()).toEqual(want.invalid.map((i) => i.key).sort());
    }
  });

  it('takes 1000 new hosts one event at a time on the fast path (same objects, no recompute)', () => {
    let refusals = 0;
    const view = new LeaseView(config, () => refusals++);
    view.reset([], []);
    for (let i = 0; i < 256; i++) {
      const name = `10.244.${i}.0-24`;
      const e = classifyLeaseKv({ name, value: `{"PublicIP":"192.0.2.${1 + (i % 200)}"}`, bytes: 30, modRevision: i + 2, createRevision: i + 2 });
      view.put(name, (e as { lease: never }).lease);
    }
    expect(view.leases.size).toBe(256);
    expect(formatCidr(view.leases.get('10.244.7.0-24')!.subnet)).toBe('10.244.7.0/24');
    expect(refusals).toBe(0);
  });
});
