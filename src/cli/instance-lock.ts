/**
 * One weftd per state directory: `<state-dir>/weftd.lock`, held with
 * flock(2) for the process's lifetime (the kernel drops it when the process
 * dies, however it dies), holding the holder's PID for the error message.
 * Without the native addon (no flock from Node), an O_EXCL pid file: a file
 * whose PID is no longer running is stale and taken over.
 */
import { closeSync, constants, ftruncateSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../core/errors.js';
import { addonFunction } from '../native/addon.js';

/** Another process holds the state directory's lock. */
export class InstanceLockedError extends WeftError {
  override readonly code = 'ERR_INSTANCE_LOCKED';
}

export interface InstanceLock {
  readonly path: string;
  /** "flock" or "pidfile" (no native addon). */
  readonly kind: 'flock' | 'pidfile';
  release(): void;
}

type TryFlock = (fd: number) => boolean;

function holderOf(path: string): string {
  try {
    const pid = readFileSync(path, 'utf8').trim();
    return /^\d+$/.test(pid) ? pid : 'unknown';
  } catch {
    return 'unknown';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function locked(path: string, pid: string, program: string): InstanceLockedError {
  return new InstanceLockedError(`${path} is held by PID ${pid}: another ${program} runs with this state directory`, { path, pid });
}

/** Takes the lock or throws InstanceLockedError naming the file and the holder's PID. */
export function acquireInstanceLock(stateDir: string, program = 'weftd', opts: { noFlock?: boolean } = {}): InstanceLock {
  mkdirSync(stateDir, { recursive: true });
  const path = join(stateDir, `${program}.lock`);
  const tryFlock = opts.noFlock ? undefined : addonFunction<TryFlock>('tryFlock');
  if (tryFlock) {
    // libuv opens with O_CLOEXEC: the lock is not inherited by children (shells, ip).
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    let ok = false;
    try {
      ok = tryFlock(fd);
    } finally {
      if (!ok) closeSync(fd);
    }
    if (!ok) throw locked(path, holderOf(path), program);
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
    // Closing the descriptor drops the lock; the file stays (unlinking a flock file races a new holder).
    return { path, kind: 'flock', release: () => closeSync(fd) };
  }
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return {
        path,
        kind: 'pidfile',
        release: () => {
          if (holderOf(path) === String(process.pid)) unlinkSync(path);
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = holderOf(path);
      if (attempt > 0 || (pid !== 'unknown' && alive(Number(pid)))) throw locked(path, pid, program);
      unlinkSync(path); // stale: its holder is gone
    }
  }
}
