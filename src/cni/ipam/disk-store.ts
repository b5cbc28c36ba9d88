import { open } from 'node:fs/promises';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { formatIPv4, isIPv4, parseIPv4, type IPv4 } from '../../core/ip.js';
import { acquireFlock, type FlockMethod } from './flock.js';
import { KeyedMutex } from './mutex.js';
import type { IpamStore, Reservation } from './store.js';

/** host-local writes `<containerID>\r\n<ifname>`; older versions wrote the id alone. */
const LINE_BREAK = '\r\n';

const processMutex = new KeyedMutex();

export interface DiskStoreOptions {
  /** fsync each reservation and last_reserved_ip (a zero-byte file after power loss breaks DEL: flannel cni-plugin 43). Default true. */
  fsync?: boolean;
  /** How flock(2) is taken (tests). Default: the addon when loadable, else util-linux flock(1). */
  flock?: FlockMethod;
}

/**
 * host-local's on-disk store, file for file: `<dir>/<ip>`,
 * `<dir>/last_reserved_ip.<range>`, `<dir>/lock`. The mutual exclusion is
 * flock(2) on `<dir>/lock`, taken blocking as host-local takes it, which
 * serialises weft's processes and host-local alike (flock.ts); inside one
 * process a keyed mutex queues callers first.
 */
export class DiskIpamStore implements IpamStore {
  private readonly fsync: boolean;

  constructor(
    readonly dir: string,
    private readonly opts: DiskStoreOptions = {},
  ) {
    this.fsync = opts.fsync ?? true;
  }

  async withLock<T>(fn: () => T): Promise<T> {
    return processMutex.run(this.dir, async () => {
      mkdirSync(this.dir, { recursive: true, mode: 0o755 });
      const release = await acquireFlock(join(this.dir, 'lock'), this.opts.flock);
      try {
        return fn();
      } finally {
        release();
      }
    });
  }

  private readonly unsynced = new Set<string>();

  private write(path: string, data: string, flags: string): void {
    const fd = openSync(path, flags, 0o644);
    try {
      writeSync(fd, data);
    } finally {
      closeSync(fd);
    }
  }

  reserve(containerId: string, ifname: string, ip: IPv4, rangeId: string): boolean {
    const path = join(this.dir, formatIPv4(ip));
    try {
      this.write(path, `${containerId.trim()}${LINE_BREAK}${ifname}`, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
    if (this.fsync) this.unsynced.add(path);
    try {
      // A hint for round robin only (losing it costs nothing), so it is not fsynced.
      this.write(join(this.dir, `last_reserved_ip.${rangeId}`), formatIPv4(ip), 'w');
    } catch (err) {
      // Without the marker the reservation must not stand half-made.
      unlinkSync(path);
      this.unsynced.delete(path);
      throw err;
    }
    return true;
  }

  /** fsyncs new reservation files and the directory (so the new names survive a power loss too). */
  async flush(): Promise<void> {
    if (this.unsynced.size === 0) return;
    const paths = [...this.unsynced, this.dir];
    this.unsynced.clear();
    await Promise.all(
      paths.map(async (p) => {
        let fh;
        try {
          fh = await open(p, 'r');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // released meanwhile
          throw err;
        }
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }),
    );
  }

  lastReservedIP(rangeId: string): IPv4 | undefined {
    try {
      const text = readFileSync(join(this.dir, `last_reserved_ip.${rangeId}`), 'utf8').trim();
      return isIPv4(text) ? parseIPv4(text) : undefined;
    } catch {
      return undefined;
    }
  }

  list(): Reservation[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: Reservation[] = [];
    for (const name of names) {
      if (!isIPv4(name)) continue;
      let text: string;
      try {
        text = readFileSync(join(this.dir, name), 'utf8');
      } catch {
        continue; // released meanwhile
      }
      const [id = '', ifn = ''] = text.split(LINE_BREAK);
      out.push({ ip: parseIPv4(name), containerId: id.trim(), ifname: ifn.trim() });
    }
    return out;
  }

  getByID(containerId: string, ifname: string): IPv4[] {
    return this.list()
      .filter((r) => r.containerId === containerId && r.ifname === ifname)
      .map((r) => r.ip);
  }

  /**
   * As host-local: the attachment's `<id>\r\n<ifname>` files; when there
   * are none, the files of old host-local versions that hold the container
   * ID alone (their ifname is unknown, so they are the container's).
   */
  releaseByID(containerId: string, ifname: string): IPv4[] {
    const all = this.list();
    const id = containerId.trim();
    let ips = all.filter((r) => r.containerId === id && r.ifname === ifname).map((r) => r.ip);
    if (ips.length === 0) ips = all.filter((r) => r.containerId === id && r.ifname === '').map((r) => r.ip);
    for (const ip of ips) this.release(ip);
    return ips;
  }

  release(ip: IPv4): void {
    try {
      unlinkSync(join(this.dir, formatIPv4(ip)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}
