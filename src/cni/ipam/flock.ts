import { spawn } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { addonFunction } from '../../native/addon.js';
import { IoFailureError } from '../errors.js';

/**
 * How the lock is taken:
 * - `addon`: the native addon's flock(2), waiting on a libuv worker thread
 *   (the event loop keeps running);
 * - `flock-tool`: util-linux flock(1) locks our open file description (it
 *   inherits the descriptor as fd 3, blocks in flock(2), exits holding
 *   nothing of its own), for a plugin without the addon.
 */
export type FlockMethod = 'addon' | 'flock-tool';

type TryFlock = (fd: number) => boolean;
type FlockAsync = (fd: number) => Promise<void>;

/** The method used when none is asked for: the addon when it is loadable (loadAddon caches it), else flock(1). */
export function defaultFlockMethod(): FlockMethod {
  return addonFunction<FlockAsync>('flockAsync') && addonFunction<TryFlock>('tryFlock') ? 'addon' : 'flock-tool';
}

async function lockWithAddon(fd: number): Promise<void> {
  const tryFlock = addonFunction<TryFlock>('tryFlock');
  const flockAsync = addonFunction<FlockAsync>('flockAsync');
  if (!tryFlock || !flockAsync) throw new IoFailureError('flock: the native addon (with flockAsync) is not loadable');
  // Uncontended: taken at once, no thread hop.
  if (tryFlock(fd)) return;
  await flockAsync(fd);
}

function lockWithTool(fd: number, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('flock', ['--exclusive', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d.slice(0, 500)));
    child.once('error', (err) => reject(new IoFailureError(`flock ${path}: cannot run util-linux flock(1) and the native addon is not loadable (${err.message})`, { path })));
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new IoFailureError(`flock ${path}: flock(1) ${signal ?? `exited ${code}`}: ${stderr.trim()}`, { path }));
    });
  });
}

/**
 * An exclusive flock(2) on `path` (created if missing, as host-local opens
 * it: read-only), the lock host-local takes on `<dataDir>/<network>/lock`,
 * so weft and host-local working on one directory exclude each other, and
 * weft's own processes too. Waits in the kernel until the lock is free, with
 * no timeout (as host-local). Resolves to the release function: closing the
 * file drops the lock, also when the process dies.
 */
export async function acquireFlock(path: string, method: FlockMethod = defaultFlockMethod()): Promise<() => void> {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_CREAT, 0o644);
  } catch (err) {
    throw new IoFailureError(`flock ${path}: ${(err as Error).message}`, { path });
  }
  try {
    if (method === 'addon') await lockWithAddon(fd);
    else await lockWithTool(fd, path);
  } catch (err) {
    closeSync(fd);
    if (err instanceof IoFailureError) throw err;
    throw new IoFailureError(`flock ${path}: ${(err as Error).message}`, { path });
  }
  let open = true;
  return () => {
    if (!open) return;
    open = false;
    closeSync(fd);
  };
}
