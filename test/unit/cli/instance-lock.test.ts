import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireInstanceLock } from '../../../src/cli/instance-lock.js';
import { addonFunction } from '../../../src/native/addon.js';

const dir = mkdtempSync(join(tmpdir(), 'weft-lock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('instance lock on the state directory', () => {
  it.skipIf(!addonFunction('tryFlock'))('flock: a second holder is refused naming the file and the PID; release lets the next in', () => {
    const state = join(dir, 'a', 'state');
    const first = acquireInstanceLock(state);
    expect(first.kind).toBe('flock');
    expect(first.path).toBe(join(state, 'weftd.lock'));
    expect(readFileSync(first.path, 'utf8')).toBe(`${process.pid}\n`);
    // flock(2) locks belong to the open file: a second open in this process conflicts too.
    let err: { code?: string; message?: string } = {};
    try {
      acquireInstanceLock(state);
    } catch (e) {
      err = e as never;
    }
    expect(err.code).toBe('ERR_INSTANCE_LOCKED');
    expect(err.message).toContain(join(state, 'weftd.lock'));
    expect(err.message).toContain(`PID ${process.pid}`);
    first.release();
    const again = acquireInstanceLock(state);
    again.release();
  });

  it('pid file fallback: a live holder is refused, a stale file is taken over, release removes it', () => {
    const state = join(dir, 'b');
    const first = acquireInstanceLock(state, 'weftd', { noFlock: true });
    expect(first.kind).toBe('pidfile');
    expect(() => acquireInstanceLock(state, 'weftd', { noFlock: true })).toThrow(/weftd\.lock is held by PID \d+/);
    first.release();
    expect(existsSync(first.path)).toBe(false);
    // A PID that cannot be running (above pid_max) is stale.
    writeFileSync(first.path, '4194305\n');
    const second = acquireInstanceLock(state, 'weftd', { noFlock: true });
    expect(readFileSync(second.path, 'utf8')).toBe(`${process.pid}\n`);
    second.release();
  });
});
