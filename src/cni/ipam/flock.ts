import { closeSync, openSync } from 'node:fs';
import { delay } from '../../core/async.js';
import { addonFunction } from '../../native/addon.js';
import { TryAgainLaterError } from '../errors.js';
import type { FileLockOptions } from './file-lock.js';

type TryFlock = (fd: number) => boolean;

/** The addon's non-blocking flock (loadAddon caches the addon); undefined without it, as in the standalone plugin bundle. */
const flockFn = () => addonFunction<TryFlock>('tryFlock');

/** Whether `acquireFlock` can take flock(2) locks here (the native addon is built and loadable). */
export function hasFlock(): boolean {
  return flockFn() !== undefined;
}

/**
 * An exclusive flock(2) on `path` (created if missing), the lock host-local
 * takes on `<dataDir>/<network>/lock`, so weft and host-local working on one
 * directory exclude each other. Polled without blocking until
 * `opts.timeoutMs` (CNI code 11 after). Resolves to the release function, or
 * to undefined when flock is not available (no native addon): the caller's
 * own lock still serialises weft's processes.
 */
export async function acquireFlock(path: string, opts: FileLockOptions = {}): Promise<(() => void) | undefined> {
  const fn = flockFn();
  if (!fn) return undefined;
  const fd = openSync(path, 'a', 0o600);
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  try {
    while (!fn(fd)) {
      if (Date.now() > deadline) throw new TryAgainLaterError(`lock ${path} is held by another process (flock)`, { path });
      await delay(opts.retryMs ?? 2);
    }
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  // Closing the file drops the lock.
  return () => closeSync(fd);
}
