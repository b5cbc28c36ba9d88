import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../src/core/async.js';

/** A free TCP port on 127.0.0.1 (for etcd and other test servers). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A real etcd (Debian etcd-server) on 127.0.0.1 with random ports and a
 * temporary data dir. It can be stopped and started again on the same ports
 * and data ("etcd down for 30 s" tests) or paused. Only the process this
 * helper spawned is ever signalled.
 */
export interface TestEtcd {
  endpoint: string;
  /** Starts (again) and waits for /health. */
  start(): Promise<void>;
  /** Stops the process (SIGTERM, then SIGKILL), keeping the data. */
  stop(): Promise<void>;
  /** Stops and removes the data dir. */
  destroy(): Promise<void>;
  /** SIGSTOP / SIGCONT: an outage that loses nothing. */
  /** SIGSTOP, resolved once every thread of it is stopped (the signal lands asynchronously). */
  pause(): Promise<void>;
  resume(): void;
}

export async function createEtcd(): Promise<TestEtcd> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-etcd-'));
  const client = await freePort();
  const peer = await freePort();
  const endpoint = `http://127.0.0.1:${client}`;
  let proc: ChildProcess | undefined;
  let stderr = '';

  const stop = async () => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGCONT');
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  };

  const start = async () => {
    const p = spawn(
      'etcd',
      [
        '--name', 'test',
        '--data-dir', dir,
        '--listen-client-urls', endpoint,
        '--advertise-client-urls', endpoint,
        '--listen-peer-urls', `http://127.0.0.1:${peer}`,
        '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
        '--initial-cluster', `test=http://127.0.0.1:${peer}`,
        '--log-level', 'error',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    proc = p;
    p.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    try {
      await waitFor(
        async () => {
          if (p.exitCode !== null) throw new Error(`etcd exited: ${stderr}`);
          const res = await fetch(`${endpoint}/health`).catch(() => undefined);
          return res?.ok;
        },
        { timeoutMs: 20_000, what: 'etcd health' },
      );
    } catch (err) {
      await stop();
      throw err;
    }
  };

  const destroy = async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await start();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    endpoint,
    start,
    stop,
    destroy,
    pause: async () => {
      const pid = proc?.pid;
      if (!pid || !proc?.kill('SIGSTOP')) return;
      const stopped = () => readdirSync(`/proc/${pid}/task`).every((t) => /\) [Tt] /.test(readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8')));
      await waitFor(stopped, { what: `etcd ${pid} stopped`, intervalMs: 5 });
    },
    resume: () => proc?.kill('SIGCONT'),
  };
}

/** A running test etcd; `stop()` here also removes its data (the common case). */
export async function startEtcd(): Promise<TestEtcd> {
  const etcd = await createEtcd();
  return { ...etcd, stop: etcd.destroy };
}
