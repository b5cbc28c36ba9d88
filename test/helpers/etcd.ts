import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { delay, waitFor } from '../../src/core/async.js';

/**
 * A free TCP port on 127.0.0.1 (for etcd and other test servers), below the
 * kernel's ephemeral range: a port from `listen(0)` is in that range, and
 * between our check and the server's bind any outgoing connection of a
 * parallel test may take it as its local port.
 */
export async function freePort(): Promise<number> {
  const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const top = Math.min(low && low > 12000 ? low : 32768, 65536);
  for (let i = 0; i < 50; i++) {
    const port = 10000 + Math.floor(Math.random() * (top - 10000));
    if (await canListen(port)) return port;
  }
  throw new Error('freePort: no free port below the ephemeral range after 50 tries');
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
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
  // Another test may still bind a port between freePort() and etcd's bind: a first start that finds
  // its port taken is retried on new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await createEtcdOn(await freePort(), await freePort());
    } catch (err) {
      if (attempt >= 3 || !/address already in use/.test((err as Error).message)) throw err;
    }
  }
}

export async function createEtcdOn(client: number, peer: number): Promise<TestEtcd> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-etcd-'));
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
      // A bounded poll that ends at once when etcd exits (a port taken meanwhile), with all it said.
      const deadline = Date.now() + 20_000;
      for (;;) {
        if (p.exitCode !== null || p.signalCode !== null) {
          if (!p.stderr!.closed) await new Promise((r) => p.stderr!.once('close', r));
          throw new Error(`etcd exited: ${stderr}`);
        }
        // Bounded: whoever holds the port may accept and never answer.
        const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
        if (res?.ok) break;
        if (Date.now() > deadline) throw new Error(`timed out waiting for etcd health: ${stderr}`);
        await delay(100);
      }
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
