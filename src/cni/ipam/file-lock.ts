import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { delay } from '../../core/async.js';
import { TryAgainLaterError } from '../errors.js';

export interface FileLockOptions {
  /** Give up (CNI code 11) after this long. Default 10 s. */
  timeoutMs?: number;
  /** A lock older than this is stale whatever its holder. Default 30 s (critical sections take ms). */
  staleMs?: number;
  /** Pause between attempts. Default 2 ms. */
  retryMs?: number;
}

function holderAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return false; // our own critical sections never yield, so a lock with our pid is a dead predecessor's
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function createExclusive(path: string): boolean {
  try {
    const fd = openSync(path, 'wx', 0o644);
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/** True when the lock at `path` belongs to a dead process or is older than staleMs. */
function isStale(path: string, staleMs: number): { stale: boolean; content?: string } {
  try {
    const content = readFileSync(path, 'utf8');
    const age = Date.now() - statSync(path).mtimeMs;
    if (age > staleMs) return { stale: true, content };
    // An empty file is a holder between create and write: not stale yet.
    if (content === '') return { stale: false };
    return { stale: !holderAlive(Number(content.trim())), content };
  } catch {
    return { stale: false };
  }
}

/**
 * Removes a stale lock. A second exclusive file guards the removal, so two
 * processes that both saw the same dead holder cannot delete each other's
 * fresh lock (the second re-reads and finds a live holder).
 */
function breakStale(path: string, content: string | undefined, staleMs: number): void {
  const guard = `${path}.steal`;
  if (!createExclusive(guard)) {
    // A stealer killed inside this tiny window leaves the guard behind.
    if (isStale(guard, staleMs).stale) {
      try {
        unlinkSync(guard);
      } catch {
        /* someone else removed it */
      }
    }
    return;
  }
  try {
    let now: string | undefined;
    try {
      now = readFileSync(path, 'utf8');
    } catch {
      now = undefined;
    }
    if (now !== undefined && now === content) unlinkSync(path);
  } finally {
    unlinkSync(guard);
  }
}

/**
 * Cross-process lock without flock(2) (Node has none): an O_EXCL file holding
 * the holder's pid; a lock whose holder died (SIGKILL mid-ADD) is broken.
 * Returns the release function.
 */
export async function acquireFileLock(path: string, opts: FileLockOptions = {}): Promise<() => void> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const staleMs = opts.staleMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (createExclusive(path)) {
      return () => {
        try {
          unlinkSync(path);
        } catch {
          /* already gone (broken as stale): nothing to release */
        }
      };
    }
    const s = isStale(path, staleMs);
    if (s.stale) {
      breakStale(path, s.content, staleMs);
      continue;
    }
    if (Date.now() > deadline) throw new TryAgainLaterError(`lock ${path} is held by another process`, { path });
    await delay(opts.retryMs ?? 2);
  }
}

/** Serialises async sections per key inside this process (the file lock serialises processes). */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
