import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCidr, parseIPv4 } from '../../../src/core/ip.js';
import { DiskIpamStore } from '../../../src/cni/ipam/disk-store.js';
import { acquireFileLock } from '../../../src/cni/ipam/file-lock.js';
import { acquireFlock, hasFlock } from '../../../src/cni/ipam/flock.js';
import { spawn, spawnSync } from 'node:child_process';
import { waitFor } from '../../../src/core/async.js';
import { allocate, rangeFor } from '../../../src/cni/ipam/allocator.js';

const root = mkdtempSync(join(tmpdir(), 'weft-cni-disk-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('DiskIpamStore (host-local on-disk format)', () => {
  it('writes <ip> = "<id>\\r\\n<ifname>", last_reserved_ip.0 and lock, and nothing else after the lock is released', async () => {
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

describe('acquireFileLock', () => {
  it('breaks a lock whose holder is dead', async () => {
    const p = join(root, 'dead.lock');
    writeFileSync(p, '999999999\n'); // no such pid
    const release = await acquireFileLock(p, { timeoutMs: 1000 });
    expect(readFileSync(p, 'utf8')).toBe(`${process.pid}\n`);
    release();
    expect(existsSync(p)).toBe(false);
  });

  it('waits for a live holder and gives up with code 11', async () => {
    const p = join(root, 'live.lock');
    writeFileSync(p, '1\n'); // pid 1 is alive
    const err = await acquireFileLock(p, { timeoutMs: 50 }).catch((e) => e);
    expect(err.cniCode).toBe(11);
    expect(existsSync(p)).toBe(true);
  });

  it('breaks a lock older than staleMs even with a live holder', async () => {
    const p = join(root, 'old.lock');
    writeFileSync(p, '1\n');
    const past = new Date(Date.now() - 60_000);
    utimesSync(p, past, past);
    const release = await acquireFileLock(p, { timeoutMs: 1000, staleMs: 30_000 });
    release();
    expect(existsSync(p)).toBe(false);
  });
});

// host-local takes flock(2) on <dir>/lock; util-linux `flock` stands in for it here.
describe.skipIf(!hasFlock())('flock on host-local\'s lock file', () => {
  const holdWithFlockTool = (path: string) => {
    // Holds the lock until its stdin closes.
    const child = spawn('flock', [path, 'cat'], { stdio: ['pipe', 'ignore', 'inherit'] });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    return { child, release: async () => (child.stdin!.end(), await exited) };
  };
  const heldByOther = (path: string) => spawnSync('flock', ['-n', path, 'true']).status !== 0;

  it('waits while host-local (flock) holds the directory, gives up with code 11, and goes on once it is released', async () => {
    const dir = join(root, 'flocked');
    mkdirSync(dir, { recursive: true });
    const holder = holdWithFlockTool(join(dir, 'lock'));
    try {
      await waitFor(() => heldByOther(join(dir, 'lock')), { what: 'flock tool holding the lock', intervalMs: 10 });
      const store = new DiskIpamStore(dir, { fsync: false, lock: { timeoutMs: 100 } });
      const err = await store.withLock(() => 'ran').catch((e) => e);
      expect(err.cniCode).toBe(11);
      expect(String(err.message)).toMatch(/flock/);
    } finally {
      await holder.release();
    }
    const store = new DiskIpamStore(dir, { fsync: false, lock: { timeoutMs: 2000 } });
    expect(await store.withLock(() => 'ran')).toBe('ran');
  });

  it('holds the flock while weft works, so host-local waits; releases it after', async () => {
    const dir = join(root, 'flocked2');
    const store = new DiskIpamStore(dir, { fsync: false });
    let seenFromOutside: boolean | undefined;
    await store.withLock(() => {
      seenFromOutside = heldByOther(join(dir, 'lock'));
    });
    expect(seenFromOutside).toBe(true);
    expect(heldByOther(join(dir, 'lock'))).toBe(false);
  });

  it('acquireFlock releases on its own timeout without leaking the descriptor', async () => {
    const path = join(root, 'fl.lock');
    const holder = holdWithFlockTool(path);
    try {
      await waitFor(() => heldByOther(path), { what: 'flock tool holding the lock', intervalMs: 10 });
      const fds = () => readdirSync('/proc/self/fd').length;
      const before = fds();
      await expect(acquireFlock(path, { timeoutMs: 30 })).rejects.toThrow(/held by another process/);
      expect(fds()).toBe(before);
    } finally {
      await holder.release();
    }
  });
});
