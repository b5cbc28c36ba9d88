import { randomBytes } from 'node:crypto';
import { run } from '../../src/exec/run.js';

/**
 * Throwaway network namespaces for kernel tests. Names carry a random tag so
 * parallel test files never collide; `cleanup()` removes everything made here.
 */
export class NetnsSandbox {
  readonly tag = randomBytes(3).toString('hex');
  private readonly made: string[] = [];

  /** Creates `wt-<tag>-<name>` with lo up; returns its name. */
  async create(name: string): Promise<string> {
    const ns = `wt-${this.tag}-${name}`;
    await run('ip', ['netns', 'add', ns]);
    this.made.push(ns);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Runs a command inside a namespace. */
  exec(ns: string, cmd: string, args: string[], allowFail = false) {
    return run(cmd, args, { netns: ns, allowFail });
  }

  /** veth pair between two namespaces, addressed and up. */
  async link(a: { ns: string; ifname: string; cidr?: string }, b: { ns: string; ifname: string; cidr?: string }): Promise<void> {
    const tmp = `wt${this.tag}${randomBytes(2).toString('hex')}`;
    await run('ip', ['link', 'add', tmp, 'netns', a.ns, 'type', 'veth', 'peer', 'name', `${tmp}p`, 'netns', b.ns]);
    await run('ip', ['-n', a.ns, 'link', 'set', tmp, 'name', a.ifname]);
    await run('ip', ['-n', b.ns, 'link', 'set', `${tmp}p`, 'name', b.ifname]);
    for (const end of [a, b]) {
      if (end.cidr) await run('ip', ['-n', end.ns, 'addr', 'add', end.cidr, 'dev', end.ifname]);
      await run('ip', ['-n', end.ns, 'link', 'set', end.ifname, 'up']);
    }
  }

  async cleanup(): Promise<void> {
    for (const ns of this.made.reverse()) {
      // Kill anything still running inside before deleting the namespace.
      const pids = await run('ip', ['netns', 'pids', ns], { allowFail: true });
      for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      await run('ip', ['netns', 'del', ns], { allowFail: true });
    }
    this.made.length = 0;
  }
}

/** True when running as root (kernel tests skip otherwise). */
export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
