import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../src/core/async.js';
import { freePort } from './etcd.js';

/**
 * An etcd that can be stopped and started again on the same ports and data
 * dir (startEtcd() deletes its data on stop): for "etcd down for 30 s, then
 * back" tests. Only the process this helper spawned is ever signalled.
 */
export interface RestartableEtcd {
  endpoint: string;
  /** Starts (again) and waits for /health. */
  start(): Promise<void>;
  /** Stops the process (SIGTERM, then SIGKILL), keeping the data. */
  stop(): Promise<void>;
  /** Stops and removes the data dir. */
  destroy(): Promise<void>;
}

export async function createRestartableEtcd(): Promise<RestartableEtcd> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-store-etcd-'));
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
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  };

  const start = async () => {
    const p = spawn(
      'etcd',
      [
        '--name', 'store',
        '--data-dir', dir,
        '--listen-client-urls', endpoint,
        '--advertise-client-urls', endpoint,
        '--listen-peer-urls', `http://127.0.0.1:${peer}`,
        '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
        '--initial-cluster', `store=http://127.0.0.1:${peer}`,
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

  await start();
  return {
    endpoint,
    start,
    stop,
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
