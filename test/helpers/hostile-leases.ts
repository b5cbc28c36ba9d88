/**
 * Hostile lease data, as one set of cases run against MemoryRegistry (unit,
 * fake clock) and EtcdRegistry (lab, real etcd), so the fake keeps behaving
 * like etcd: flanneld's udp leases, unparseable updates, junk on our own key,
 * alias keys, bad PublicIPs, overlaps, oversized values.
 */
import { expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import type { Clock } from '../../src/core/clock.js';
import { formatCidr, parseCidr, subnetKey } from '../../src/core/ip.js';
import type { LogFields, Logger } from '../../src/core/log.js';
import { planPeers } from '../../src/backends/udp/peers.js';
import { LeaseManager, type LeaseManagerOptions, type LeaseSnapshot } from '../../src/store/lease-manager.js';
import { parseNetworkConfig } from '../../src/store/netconfig.js';
import type { Registry } from '../../src/store/registry.js';
import type { InvalidLease, LeaseAttrs } from '../../src/store/types.js';

export interface HostileWorld {
  registry: Registry;
  /** Writes `value` under `<prefix>/subnets/<name>`, bypassing weft's serializer. */
  putRaw(name: string, value: string): Promise<void>;
  deleteRaw(name: string): Promise<void>;
  /** The raw value stored under a name, undefined when absent. */
  getRaw(name: string): Promise<string | undefined>;
  /** Registry calls so far (each is at least one etcd request). */
  calls(): number;
  /** ms on the clock the manager runs on. */
  now(): number;
  clock?: Clock;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Generous poll deadline for this world. */
  timeoutMs: number;
}

/** Counts every Registry call, whatever the implementation. */
export function countingRegistry(inner: Registry): { registry: Registry; calls: () => number; byMethod: Record<string, number> } {
  const byMethod: Record<string, number> = {};
  let n = 0;
  const registry = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || prop === 'close') return v;
      return (...args: unknown[]) => {
        n++;
        byMethod[String(prop)] = (byMethod[String(prop)] ?? 0) + 1;
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { registry, calls: () => n, byMethod };
}

export const hostileConfig = parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'udp' } });
export const ME = '192.0.2.1';
const PEER: LeaseAttrs = { PublicIP: '192.0.2.2', BackendType: 'udp' };
/** Exactly what flanneld v0.20.2's udp backend writes. */
export const FLANNEL_UDP_VALUE = '{"PublicIP":"192.0.2.3","PublicIPv6":null}';

export interface CapturedLog {
  log: Logger;
  warnings: Array<{ fields: LogFields; msg: string }>;
}

export function captureLog(): CapturedLog {
  const warnings: CapturedLog['warnings'] = [];
  const log: Logger = {
    debug() {},
    info() {},
    warn(fields, msg) {
      warnings.push({ fields, msg });
    },
    error(fields, msg) {
      warnings.push({ fields, msg });
    },
    child() {
      return log;
    },
  };
  return { log, warnings };
}

function makeManager(w: HostileWorld, extra: Partial<LeaseManagerOptions> = {}) {
  const cap = captureLog();
  const invalid: InvalidLease[] = [];
  const m = new LeaseManager({
    registry: w.registry,
    config: hostileConfig,
    publicIp: ME,
    backendType: 'udp',
    ttlSeconds: 60,
    minBackoffMs: 100,
    maxBackoffMs: 1000,
    random: () => 0,
    log: cap.log,
    onInvalid: (i) => invalid.push(i),
    ...(w.clock ? { clock: w.clock } : {}),
    ...(w.sleep ? { sleep: w.sleep } : {}),
    ...extra,
  });
  return { m, cap, invalid };
}

function watchInto(m: LeaseManager, signal: AbortSignal): { last: () => LeaseSnapshot | undefined; reports: () => number; done: Promise<void> } {
  let snap: LeaseSnapshot | undefined;
  let n = 0;
  const done = m.watch((s) => {
    snap = s;
    n++;
  }, signal);
  return { last: () => snap, reports: () => n, done };
}

/** A fresh manager's first snapshot (a relist) must equal the running watch's view. */
async function expectRelistAgrees(w: HostileWorld, running: LeaseSnapshot, runningInvalid: InvalidLease[], signal: AbortSignal): Promise<void> {
  const { m } = makeManager(w);
  const fresh = watchInto(m, signal);
  await waitFor(() => fresh.last(), { timeoutMs: w.timeoutMs });
  expect([...fresh.last()!.keys()].sort()).toEqual([...running.keys()].sort());
  for (const [k, l] of running) expect(fresh.last()!.get(k)?.attrs).toEqual(l.attrs);
  expect(m.invalidLeases.map((i) => [i.key, i.reason])).toEqual(runningInvalid.map((i) => [i.key, i.reason]));
}

/** Defines the hostile cases as `it`s; `make` builds a fresh world (own prefix) per case. */
export function hostileLeaseCases(make: () => Promise<HostileWorld>, track: (ac: AbortController) => void): void {
  const controller = () => {
    const ac = new AbortController();
    track(ac);
    return ac;
  };

  it("flanneld's udp lease (no BackendType) is a lease: listed, a udp peer, and a taken subnet", async () => {
    const w = await make();
    await w.putRaw('10.244.3.0-24', FLANNEL_UDP_VALUE);
    const { leases, invalid } = await w.registry.listLeases();
    expect(invalid).toEqual([]);
    expect(leases.map((l) => [formatCidr(l.subnet), l.attrs.PublicIP, l.attrs.BackendType])).toEqual([['10.244.3.0/24', '192.0.2.3', '']]);
    const plan = planPeers(leases, undefined, 8285);
    expect(plan.peers).toHaveLength(1);
    // The subnet of the old subnet.env is taken by it: we get another one.
    const { m } = makeManager(w, { previousSubnet: parseCidr('10.244.3.0/24') });
    const ac = controller();
    const mine = await m.acquire(ac.signal);
    expect(formatCidr(mine.subnet)).not.toBe('10.244.3.0/24');
    expect(await w.getRaw('10.244.3.0-24')).toBe(FLANNEL_UDP_VALUE);
  });

  it('an unparseable update drops the peer, is logged and counted once per revision, and a relist agrees', async () => {
    const w = await make();
    await w.registry.createLease(parseCidr('10.244.4.0/24'), PEER, undefined);
    await w.registry.createLease(parseCidr('10.244.5.0/24'), { PublicIP: '192.0.2.5', BackendType: 'udp' }, undefined);
    const { m, cap, invalid } = makeManager(w);
    const ac = controller();
    const watch = watchInto(m, ac.signal);
    await waitFor(() => watch.last()?.size === 2, { timeoutMs: w.timeoutMs });
    await w.putRaw('10.244.4.0-24', '{"PublicIP":"192.0.2.2","BackendTy');
    await waitFor(() => watch.last()?.size === 1, { timeoutMs: w.timeoutMs });
    expect([...watch.last()!.keys()]).toEqual(['10.244.5.0-24']);
    expect(invalid.map((i) => [i.key, i.reason])).toEqual([['10.244.4.0-24', 'value']]);
    const logged = cap.warnings.filter((x) => x.fields.key === '10.244.4.0-24');
    expect(logged).toHaveLength(1);
    expect(String(logged[0]!.fields.reason)).toBe('value');
    expect(m.invalidLeases.map((i) => i.key)).toEqual(['10.244.4.0-24']);
    // A relist sees the same; later events do not count the key again.
    await expectRelistAgrees(w, watch.last()!, m.invalidLeases, ac.signal);
    await w.registry.createLease(parseCidr('10.244.6.0/24'), { PublicIP: '192.0.2.6', BackendType: 'udp' }, undefined);
    await waitFor(() => watch.last()?.size === 2, { timeoutMs: w.timeoutMs });
    expect([...watch.last()!.keys()].sort()).toEqual(['10.244.5.0-24', '10.244.6.0-24']);
    expect(m.counters.invalid.value).toBe(1);
    // Fixed by hand: the peer is back and the key no longer listed as invalid.
    await w.registry.updateLease(parseCidr('10.244.4.0/24'), PEER, undefined);
    await waitFor(() => watch.last()?.size === 3, { timeoutMs: w.timeoutMs });
    expect(m.invalidLeases).toEqual([]);
  });

  it('junk on our own key while running: kept as occupied, no create storm, our subnet kept, a peer route kept', async () => {
    const w = await make();
    await w.registry.createLease(parseCidr('10.244.9.0/24'), PEER, undefined);
    const { m, cap } = makeManager(w);
    const ac = controller();
    const running = m.run(ac.signal);
    const watch = watchInto(m, ac.signal);
    await waitFor(() => m.current && watch.last()?.size === 2, { timeoutMs: w.timeoutMs });
    const mine = m.current!.subnet;
    const name = subnetKey(mine);
    const junk = `{"PublicIP":"${ME}","Backe`;
    await w.putRaw(name, junk);
    await waitFor(() => m.ownLeaseInvalid?.key === name, { timeoutMs: w.timeoutMs });
    const c0 = w.calls();
    const t0 = w.now();
    // Let the loops run for a while (at least 5 s on the manager's clock).
    await waitFor(() => w.now() - t0 >= 5000, { timeoutMs: w.timeoutMs });
    const calls = w.calls() - c0;
    const seconds = (w.now() - t0) / 1000;
    // Backoff 100 ms doubling to 1 s: a few calls per second at most; the storm was ~150/s.
    expect(calls).toBeLessThanOrEqual(10 + 5 * seconds);
    expect(await w.getRaw(name)).toBe(junk);
    expect(formatCidr(m.current!.subnet)).toBe(formatCidr(mine));
    expect(cap.warnings.filter((x) => x.fields.key === name)).toHaveLength(1);
    expect(watch.last()!.has('10.244.9.0-24')).toBe(true);
    ac.abort();
    await running;
  });

  it('junk on the old subnet.env subnet at start: never created over, another subnet taken', async () => {
    const w = await make();
    await w.putRaw('10.244.7.0-24', 'garbage');
    const { m, invalid } = makeManager(w, { previousSubnet: parseCidr('10.244.7.0/24') });
    const ac = controller();
    const c0 = w.calls();
    const mine = await m.acquire(ac.signal);
    expect(formatCidr(mine.subnet)).not.toBe('10.244.7.0/24');
    expect(w.calls() - c0).toBeLessThan(10);
    expect(await w.getRaw('10.244.7.0-24')).toBe('garbage');
    expect(invalid.map((i) => i.reason)).toEqual(['value']);
  });

  it('a hand-written reservation without BackendType carrying our PublicIP is reused as a reservation', async () => {
    const w = await make();
    await w.putRaw('10.244.8.0-24', `{"PublicIP":"${ME}"}`);
    const { m } = makeManager(w);
    const ac = controller();
    const c0 = w.calls();
    const mine = await m.acquire(ac.signal);
    expect(formatCidr(mine.subnet)).toBe('10.244.8.0/24');
    expect(w.calls() - c0).toBeLessThan(10);
    const stored = (await w.registry.getLease(mine.subnet))!;
    expect(stored.leaseId).toBeUndefined();
    expect(stored.attrs.BackendType).toBe('udp');
  });

  it('an alias key (10.244.41.0-24&x) neither reroutes nor removes the real lease', async () => {
    const w = await make();
    await w.registry.createLease(parseCidr('10.244.41.0/24'), PEER, undefined);
    const { m, invalid } = makeManager(w);
    const ac = controller();
    const watch = watchInto(m, ac.signal);
    await waitFor(() => watch.last()?.size === 1, { timeoutMs: w.timeoutMs });
    for (const alias of ['10.244.41.0-24&x', '10.244.041.0-24', '10.244.41.1-24', '10.244.41.0-024']) {
      await w.putRaw(alias, '{"PublicIP":"192.0.2.66","BackendType":"udp"}');
    }
    await waitFor(() => invalid.length === 4, { timeoutMs: w.timeoutMs });
    expect(invalid.every((i) => i.reason === 'key')).toBe(true);
    expect(watch.last()!.get('10.244.41.0-24')?.attrs.PublicIP).toBe('192.0.2.2');
    await expectRelistAgrees(w, watch.last()!, m.invalidLeases, ac.signal);
    const reports = watch.reports();
    await w.deleteRaw('10.244.41.0-24&x');
    await waitFor(() => m.invalidLeases.length === 3, { timeoutMs: w.timeoutMs });
    expect(watch.reports()).toBe(reports);
    expect(watch.last()!.get('10.244.41.0-24')?.attrs.PublicIP).toBe('192.0.2.2');
    // flannel's dual-stack form is a lease key.
    await w.putRaw('10.244.42.0-24&fd00:42::-64', '{"PublicIP":"192.0.2.42","BackendType":"udp"}');
    await waitFor(() => watch.last()?.size === 2, { timeoutMs: w.timeoutMs });
  });

  it('a 0.0.0.0 (or multicast, loopback, broadcast) PublicIP is refused and its subnet stays taken', async () => {
    const w = await make();
    await w.registry.createLease(parseCidr('10.244.9.0/24'), PEER, undefined);
    const { m, invalid } = makeManager(w, { previousSubnet: parseCidr('10.244.10.0/24') });
    const ac = controller();
    const watch = watchInto(m, ac.signal);
    await waitFor(() => watch.last()?.size === 1, { timeoutMs: w.timeoutMs });
    const bad = ['0.0.0.0', '224.0.0.1', '127.0.0.1', '255.255.255.255', '240.0.0.1', 'x'];
    for (const [i, ip] of bad.entries()) await w.putRaw(`10.244.${10 + i}.0-24`, `{"PublicIP":"${ip}","BackendType":"udp"}`);
    await waitFor(() => invalid.length === bad.length, { timeoutMs: w.timeoutMs });
    expect(new Set(invalid.map((i) => i.reason))).toEqual(new Set(['public-ip']));
    expect([...watch.last()!.keys()]).toEqual(['10.244.9.0-24']);
    const mine = await m.acquire(ac.signal);
    expect(formatCidr(mine.subnet)).not.toBe('10.244.10.0/24');
  });

  it('an overlapping lease is refused (the older one wins) the same way on a relist; outside the Network too', async () => {
    const w = await make();
    await w.registry.createLease(parseCidr('10.244.50.0/24'), PEER, undefined);
    const { m, invalid } = makeManager(w);
    const ac = controller();
    const watch = watchInto(m, ac.signal);
    await waitFor(() => watch.last()?.size === 1, { timeoutMs: w.timeoutMs });
    await w.putRaw('10.244.50.128-25', '{"PublicIP":"192.0.2.77","BackendType":"udp"}');
    await w.putRaw('10.244.0.0-16', '{"PublicIP":"192.0.2.78","BackendType":"udp"}');
    await w.putRaw('10.9.0.0-24', '{"PublicIP":"192.0.2.79","BackendType":"udp"}');
    await waitFor(() => invalid.length === 3, { timeoutMs: w.timeoutMs });
    expect(Object.fromEntries(invalid.map((i) => [i.key, i.reason]))).toEqual({
      '10.244.50.128-25': 'overlap',
      '10.244.0.0-16': 'overlap',
      '10.9.0.0-24': 'outside-network',
    });
    expect(watch.last()!.get('10.244.50.0-24')?.attrs.PublicIP).toBe('192.0.2.2');
    expect(watch.last()!.size).toBe(1);
    await expectRelistAgrees(w, watch.last()!, m.invalidLeases, ac.signal);
    // The older lease goes: the newcomer /25 is now the only lease there, on every host alike.
    await w.registry.deleteLease(parseCidr('10.244.50.0/24'));
    await waitFor(() => watch.last()?.has('10.244.50.128-25'), { timeoutMs: w.timeoutMs });
    await expectRelistAgrees(w, watch.last()!, m.invalidLeases, ac.signal);
  });

  it('a 1 MB value is refused unparsed and costs no working route', async () => {
    const w = await make();
    await w.registry.createLease(parseCidr('10.244.9.0/24'), PEER, undefined);
    const { m, invalid } = makeManager(w, { previousSubnet: parseCidr('10.244.20.0/24') });
    const ac = controller();
    const watch = watchInto(m, ac.signal);
    await waitFor(() => watch.last()?.size === 1, { timeoutMs: w.timeoutMs });
    const big = `{"PublicIP":"192.0.2.20","BackendType":"udp","BackendData":"${'x'.repeat(1024 * 1024)}"}`;
    await w.putRaw('10.244.20.0-24', big);
    await w.putRaw('10.244.21.0-24', big);
    await waitFor(() => invalid.length === 2, { timeoutMs: w.timeoutMs });
    expect(invalid.map((i) => i.reason)).toEqual(['too-large', 'too-large']);
    expect([...watch.last()!.keys()]).toEqual(['10.244.9.0-24']);
    const listed = await w.registry.listLeases();
    expect(listed.invalid.map((i) => [i.key, i.reason])).toEqual([
      ['10.244.20.0-24', 'too-large'],
      ['10.244.21.0-24', 'too-large'],
    ]);
    const mine = await m.acquire(ac.signal);
    expect(['10.244.20.0/24', '10.244.21.0/24']).not.toContain(formatCidr(mine.subnet));
  });
}
