import { readFile, writeFile } from 'node:fs/promises';
import { run } from '../exec/run.js';

/** Kernel parameters by their dotted name ("net.ipv4.ip_forward"). */
export interface Sysctl {
  get(key: string): Promise<string>;
  set(key: string, value: string): Promise<void>;
}

function procPath(key: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(key) || key.includes('..')) throw new Error(`bad sysctl key "${key}"`);
  return '/proc/sys/' + key.replaceAll('.', '/');
}

/**
 * Without a netns: /proc/sys directly. With one: `sysctl` run inside it,
 * because /proc/sys/net shows the namespace of the process that reads it,
 * not of the namespace named.
 */
export class ProcSysctl implements Sysctl {
  constructor(private readonly netns?: string) {}

  async get(key: string): Promise<string> {
    if (this.netns) {
      procPath(key);
      return (await run('sysctl', ['-n', key], { netns: this.netns })).stdout.trim();
    }
    return (await readFile(procPath(key), 'utf8')).trim();
  }

  async set(key: string, value: string): Promise<void> {
    if (this.netns) {
      procPath(key);
      await run('sysctl', ['-q', '-w', `${key}=${value}`], { netns: this.netns });
      return;
    }
    await writeFile(procPath(key), value);
  }
}
