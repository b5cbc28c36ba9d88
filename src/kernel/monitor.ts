import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { silentLogger, type Logger } from '../core/log.js';

/** A link appeared/changed, or was deleted. */
export interface LinkEvent {
  type: 'changed' | 'deleted';
  index: number;
  name: string;
  up: boolean;
  mtu?: number;
}

export interface LinkWatcher {
  /**
   * Calls `onEvent` for every link change until `signal` aborts. Returns at
   * once; the watch runs in the background (and restarts itself if it dies).
   */
  watch(onEvent: (ev: LinkEvent) => void, signal: AbortSignal): void;
}

/**
 * One line of `ip -o monitor link`, e.g.
 * `Deleted 5: weft.1: <BROADCAST,MULTICAST> mtu 1450 qdisc noop state DOWN ...`
 * or `7: veth1@if6: <...,UP,LOWER_UP> mtu 1500 ...`.
 */
export function parseMonitorLine(line: string): LinkEvent | undefined {
  const m = /^(Deleted )?(\d+): ([^:@\s]+)(?:@[^:\s]+)?: <([^>]*)>(?:.*?\bmtu (\d+))?/.exec(line.trim());
  if (!m) return undefined;
  const ev: LinkEvent = {
    type: m[1] ? 'deleted' : 'changed',
    index: Number(m[2]),
    name: m[3]!,
    up: m[4]!.split(',').includes('UP'),
  };
  if (m[5]) ev.mtu = Number(m[5]);
  return ev;
}

export interface IpLinkWatcherOptions {
  netns?: string;
  log?: Logger;
  /** Pause before restarting a monitor process that exited. Default 1000 ms. */
  restartDelayMs?: number;
}

/**
 * Link notifications from a long-lived `ip -o monitor link` child. It is the
 * one long-running process outside src/exec/run.ts (run() is for commands
 * that finish); it is killed when the signal aborts.
 */
export class IpLinkWatcher implements LinkWatcher {
  private readonly log: Logger;
  constructor(private readonly opts: IpLinkWatcherOptions = {}) {
    this.log = opts.log ?? silentLogger;
  }

  watch(onEvent: (ev: LinkEvent) => void, signal: AbortSignal): void {
    if (signal.aborted) return;
    const args = [...(this.opts.netns ? ['-n', this.opts.netns] : []), '-o', 'monitor', 'link'];
    const child = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const onAbort = () => child.kill('SIGTERM');
    signal.addEventListener('abort', onAbort, { once: true });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const ev = parseMonitorLine(line);
      if (ev) onEvent(ev);
    });
    child.stderr.resume();
    child.on('error', (err) => this.log.warn({ err }, 'link monitor failed to start'));
    child.on('close', (code) => {
      signal.removeEventListener('abort', onAbort);
      if (signal.aborted) return;
      this.log.warn({ code, netns: this.opts.netns }, 'link monitor exited; restarting');
      const t = setTimeout(() => this.watch(onEvent, signal), this.opts.restartDelayMs ?? 1000);
      signal.addEventListener('abort', () => clearTimeout(t), { once: true });
    });
  }
}
