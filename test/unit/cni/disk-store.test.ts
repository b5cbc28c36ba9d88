import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCidr, parseIPv4 } from '../../../src/core/ip.js';
import { DiskIpamStore } from '../../../src/cni/ipam/disk-store.js';
import { acquireFlock, type FlockMethod } from '../../../src/cni/ipam/flock.js';
import { staleReservations } from '../../../src/cni/ipam/store.js';
import { addonCandidates, addonFunction, packageRoot } from '../../../src/native/addon.js';
import { spawn, spawnSync } from 'node:child_process';
import { waitFor } from '../../../src/core/async.js';
import { allocate, rangeFor } from '../../../src/cni/ipam/allocator.js';

const root = mkdtempSync(join(tmpdir(), 'weft-cni-disk-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('DiskIpamStore (host-local on-disk format)', () => {
  it('writes <ip> = "<id>\\r\\n<ifname>", last_reserved_ip.0 and lock, and nothing else', async () => {
    const dir = join(root, 'net1');
    const s = new DiskIpamStore(dir);
    const a = await allocate(s, rangeFor(parseCidr('10.244.5.0/24')), 'ctr1', 'eth0');
    expect(readFileSync(join(dir, '10.244.5.2'), 'utf8')).toBe('ctr1\r\neth0');
    expect(readFileSync(join(dir, 'last_reserved_ip.0'), 'utf8')).toBe('10.244.5.2');
    expect(readdirSync(dir).sort()).toEqual(['10.244.5.2', 'last_reserved_ip.0', 'lock']);
    expect(a.fresh).toBe(true);
    expect(s.getByID('ctr1', 'eth0')).toEqual([parseIPv4('10.244.5.2')]);
    expect(s.releaseByID('ctr1', 'eth0')).toEqual([parseIPv4('10.244.5.2')]);
    expect(readdirSync(dir).sort()).toEqual(['last_reserved_ip.0', 'lock']);
  });

  it('reads reservations written by host-local (and id-only files from old versions)', () => {
    const dir = join(root, 'net2');
    mkdirSync(dir);
    writeFileSync(join(dir, '10.244.6.9'), 'abc\r\neth1');
    writeFileSync(join(dir, '10.244.6.10'), 'old');
    writeFileSync(join(dir, 'last_reserved_ip.0'), '10.244.6.10');
    const s = new DiskIpamStore(dir);
    expect(s.getByID('abc', 'eth1')).toEqual([parseIPv4('10.244.6.9')]);
    expect(s.list()).toHaveLength(2);
    expect(s.lastReservedIP('0')).toBe(parseIPv4('10.244.6.10'));
    expect(s.reserve('x', 'eth0', parseIPv4('10.244.6.9'), '0')).toBe(false);
  });

  it('serialises concurrent allocations in one process: 30 distinct addresses', async () => {
    const s = new DiskIpamStore(join(root, 'net3'), { fsync: false });
    const range = rangeFor(parseCidr('10.244.7.0/24'));
    const got = await Promise.all(Array.from({ length: 30 }, (_, i) => allocate(s, range, `c${i}`, 'eth0')));
    expect(new Set(got.map((g) => g.ip)).size).toBe(30);
  });
});

describe('old-format reservations (host-local before ifname: the file holds the container ID alone)', () => {
  it('DEL frees them when the container ID matches and the attachment has no new-format file, as host-local does', () => {
    const dir = join(root, 'old1');
    mkdirSync(dir);
    writeFileSync(join(dir, '10.244.8.5'), 'oldctr');
    writeFileSync(join(dir, '10.244.8.6'), 'oldctr\n'); // trailing blank trimmed, as host-local trims
    writeFileSync(join(dir, '10.244.8.7'), 'otherctr');
    const s = new DiskIpamStore(dir, { fsync: false });
    expect(s.list().find((r) => r.ip === parseIPv4('10.244.8.5'))).toEqual({ ip: parseIPv4('10.244.8.5'), containerId: 'oldctr', ifname: '' });
    expect(s.getByID('oldctr', 'eth0')).toEqual([]); // never reused by an ADD (its ifname is unknown)
    expect(s.releaseByID('oldctr', 'eth0').sort()).toEqual([parseIPv4('10.244.8.5'), parseIPv4('10.244.8.6')]);
    expect(readdirSync(dir)).toEqual(['10.244.8.7']);
  });

  it('a new-format file of the attachment is freed alone; the old-format one waits for its own DEL', () => {
    const dir = join(root, 'old2');
    mkdirSync(dir);
    writeFileSync(join(dir, '10.244.8.5'), 'ctr');
    writeFileSync(join(dir, '10.244.8.9'), 'ctr\r\neth1');
    const s = new DiskIpamStore(dir, { fsync: false });
    expect(s.releaseByID('ctr', 'eth1')).toEqual([parseIPv4('10.244.8.9')]);
    expect(readdirSync(dir)).toEqual(['10.244.8.5']);
    expect(s.releaseByID('ctr', 'eth0')).toEqual([parseIPv4('10.244.8.5')]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('GC keeps an old-format reservation while its container has a valid attachment and frees it with the container', () => {
    const all = [
      { ip: 1, containerId: 'a', ifname: '' },
      { ip: 2, containerId: 'a', ifname: 'eth1' },
      { ip: 3, containerId: 'b', ifname: '' },
      { ip: 4, containerId: 'b', ifname: 'eth0' },
    ];
    expect(staleReservations(all, [{ containerID: 'a', ifname: 'eth0' }]).map((r) => r.ip)).toEqual([2, 3, 4]);
    expect(staleReservations(all, [{ containerID: 'b', ifname: 'eth0' }, { containerID: 'a', ifname: 'eth1' }]).map((r) => r.ip)).toEqual([]);
  });
});

// host-local takes flock(2) on <dir>/lock, blocking; util-linux `flock` stands in for it here.
const hasFlockTool = spawnSync('flock', ['--version']).status === 0;
const holdWithFlockTool = (path: string) => {
  // Holds the lock until its stdin closes.
  const child = spawn('flock', [path, 'cat'], { stdio: ['pipe', 'ignore', 'inherit'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { child, release: async () => (child.stdin!.end(), await exited) };
};
const heldByOther = (path: string) => spawnSync('flock', ['-n', path, 'true']).status !== 0;
/** A process blocked in flock(2) on the file shows in /proc/locks as a "->" line with its inode. */
const someoneWaits = (path: string) => {
  const ino = statSync(path).ino;
  return readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .some((l) => l.includes('->') && l.includes('FLOCK') && new RegExp(`:${ino} `).test(l));
};

const methods: Array<{ method: FlockMethod; available: boolean }> = [
  { method: 'addon', available: addonFunction('flockAsync') !== undefined },
  { method: 'flock-tool', available: hasFlockTool },
];

describe('where the addon is looked for', () => {
  it('beside the module first (the installed bundle: weft-cni.node), then the package build output', () => {
    expect(addonCandidates('/opt/cni/bin')).toEqual(['/opt/cni/bin/weft-cni.node']);
    const pkgDist = join(packageRoot(), 'dist/cni');
    expect(addonCandidates(pkgDist)).toEqual([join(pkgDist, 'weft-cni.node'), join(packageRoot(), 'native/build/Release/weft_native.node')]);
  });
});

describe.skipIf(!hasFlockTool)('flock(2) on host-local\'s lock file', () => {
  it('is the one lock: no lock.weft or other file besides <dir>/lock', async () => {
    const dir = join(root, 'onelock');
    const s = new DiskIpamStore(dir, { fsync: false });
    let inside: string[] = [];
    await s.withLock(() => (inside = readdirSync(dir)));
    expect(inside).toEqual(['lock']);
    expect(readdirSync(dir)).toEqual(['lock']);
  });

  for (const { method, available } of methods) {
    describe.skipIf(!available)(`taken with ${method}`, () => {
      it('waits in the kernel while host-local (flock) holds the directory, without blocking the event loop, and goes on once it is released', async () => {
        const dir = join(root, `flocked-${method}`);
        mkdirSync(dir, { recursive: true });
        const lock = join(dir, 'lock');
        const holder = holdWithFlockTool(lock);
        let ran = false;
        let pending: Promise<string> | undefined;
        try {
          await waitFor(() => heldByOther(lock), { what: 'flock tool holding the lock', intervalMs: 10 });
          const store = new DiskIpamStore(dir, { fsync: false, flock: method });
          pending = store.withLock(() => ((ran = true), 'ran'));
          await waitFor(() => someoneWaits(lock), { what: 'weft blocked in flock(2)', intervalMs: 10 });
          // The loop still runs timers while weft waits (a blocked main thread would not get here).
          let ticks = 0;
          await waitFor(() => ++ticks >= 5, { what: 'timer ticks while waiting', intervalMs: 5 });
          expect(ran).toBe(false);
        } finally {
          await holder.release();
        }
        expect(await pending).toBe('ran');
        expect(ran).toBe(true);
      });

      it('holds the flock while weft works, so host-local waits; releases it after, leaking no descriptor', async () => {
        const dir = join(root, `flocked2-${method}`);
        const store = new DiskIpamStore(dir, { fsync: false, flock: method });
        await store.withLock(() => {}); // creates the dir and lock file
        const fds = () => readdirSync('/proc/self/fd').length;
        const before = fds();
        let seenFromOutside: boolean | undefined;
        await store.withLock(() => {
          seenFromOutside = heldByOther(join(dir, 'lock'));
        });
        expect(seenFromOutside).toBe(true);
        expect(heldByOther(join(dir, 'lock'))).toBe(false);
        expect(fds()).toBe(before);
      });

      it('a release function is idempotent and a second holder in this process waits for the first', async () => {
        const path = join(root, `fl-${method}.lock`);
        const r1 = await acquireFlock(path, method);
        const second = acquireFlock(path, method);
        await waitFor(() => someoneWaits(path), { what: 'second holder blocked', intervalMs: 10 });
        r1();
        r1();
        const r2 = await second;
        expect(heldByOther(path)).toBe(true);
        r2();
        expect(heldByOther(path)).toBe(false);
      });
    });
  }

  it('without util-linux flock(1) on PATH and without the addon, a clear code 5 error', async () => {
    const path = join(root, 'nopath.lock');
    const saved = process.env.PATH;
    process.env.PATH = join(root, 'empty-bin');
    try {
      const err = await acquireFlock(path, 'flock-tool').catch((e) => e);
      expect(err.cniCode).toBe(5);
      expect(String(err.message)).toMatch(/flock\(1\)/);
    } finally {
      process.env.PATH = saved;
    }
  });
});
