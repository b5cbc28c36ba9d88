import { chmodSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { dirname } from 'node:path';
import { silentLogger, type Logger } from '../core/log.js';
import { createCniHandler, type CniHandlerOptions } from './handler.js';
import { ExecCniKernel } from './kernel-exec.js';
import { ShellPool } from './shell-pool.js';
import { NETNS_ID_KEY, WRONG_NETNS, decodeRequest, encodeResponse } from './protocol.js';

export interface CniServerOptions {
  /** Unix socket the shim connects to. Default /run/weft/cni.sock. */
  socketPath?: string;
  /** Default silentLogger. */
  log?: Logger;
  /** Stops the server (open requests finish). */
  signal?: AbortSignal;
  /** Named netns that plays the host (tests). Default: this process's netns. */
  hostNetns?: string;
  /** Bridge state cache lifetime. Default 30 s (a failed ADD batch re-reads at once). */
  bridgeCacheMs?: number;
  /** Warm shells that start `ip` commands (see shell-pool.ts). Default 4. */
  shells?: number;
  /** Passed to the handler (tests). */
  handler?: Omit<CniHandlerOptions, 'log' | 'hostNetns' | 'bridgeCacheMs'>;
}

export interface CniServer {
  readonly socketPath: string;
  /** Requests answered so far (tests, metrics). */
  readonly served: number;
  /** Resolves when the server has stopped. */
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

/** `<dev>:<ino>` of a netns file, as the shim reports its own. */
export function netnsId(path: string): string {
  const st = statSync(path);
  return `${st.dev}:${st.ino}`;
}

/** True when something accepts connections on `path`. */
function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * The long-lived side of the plugin: the shim forwards each call here, so a
 * call costs no Node start-up and the handler keeps its caches. weftd hosts
 * it (`--cni-socket`); `weft-cni.cjs serve` runs it alone.
 */
export async function startCniServer(opts: CniServerOptions = {}): Promise<CniServer> {
  const socketPath = opts.socketPath ?? '/run/weft/cni.sock';
  const log = (opts.log ?? silentLogger).child({ component: 'cni-server' });
  const shells = new ShellPool(opts.shells ?? 4);
  const kernel = opts.handler?.kernel ?? new ExecCniKernel({ hostNetns: opts.hostNetns, shells });
  const handler = createCniHandler({ ...opts.handler, kernel, log, bridgeCacheMs: opts.bridgeCacheMs ?? 30_000 });
  const ownNs = netnsId(opts.hostNetns ? `/var/run/netns/${opts.hostNetns}` : '/proc/self/ns/net');
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o755 });
  if (await listening(socketPath)) throw new Error(`${socketPath}: another server is listening`);
  try {
    unlinkSync(socketPath);
  } catch {
    /* no stale socket */
  }
  let served = 0;
  // allowHalfOpen: the shim shuts its write side after the request; the answer still has to go back.
  const server = createServer({ allowHalfOpen: true }, (sock) => {
    // A client that never finishes its request must not hold a socket forever.
    sock.setTimeout(60_000, () => sock.destroy());
    let buf = Buffer.alloc(0);
    let started = false;
    sock.on('data', (chunk: Buffer) => {
      if (started) return;
      buf = Buffer.concat([buf, chunk]);
      let req;
      try {
        req = decodeRequest(buf);
      } catch (err) {
        log.warn({ err: String(err) }, 'dropped malformed request');
        sock.destroy();
        return;
      }
      if (!req) return;
      started = true;
      const callerNs = req.env[NETNS_ID_KEY];
      if (callerNs !== undefined && callerNs !== ownNs) {
        log.debug({ callerNs, ownNs }, 'request from another netns; shim falls back');
        sock.end(encodeResponse(WRONG_NETNS, '', ''));
        return;
      }
      delete req.env[NETNS_ID_KEY];
      handler(req)
        .then((res) => {
          served++;
          sock.end(encodeResponse(res.exitCode, res.stdout, res.stderr ?? ''));
        })
        .catch((err) => {
          log.error({ err: String(err) }, 'handler threw');
          sock.destroy();
        });
    });
    sock.on('error', () => {});
    // A peer that hangs up before a whole request (another weftd's "is anyone listening?" probe)
    // would stay half-open (allowHalfOpen) and hold server.close() forever.
    sock.once('end', () => {
      if (!started) sock.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(socketPath, 0o600);
  // Warmed only once listening: a start that fails (socket taken) must leave no shells behind.
  shells.warm();
  log.info({ socketPath }, 'cni server listening');
  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  const close = async () => {
    if (!server.listening) return closed;
    server.close(); // libuv unlinks the socket file
    shells.close();
    // Idle keep-alive sockets never happen (one request per connection); open ones finish.
    await closed;
    log.info({ socketPath }, 'cni server stopped');
  };
  if (opts.signal) {
    if (opts.signal.aborted) await close();
    else opts.signal.addEventListener('abort', () => void close(), { once: true });
  }
  return {
    socketPath,
    closed,
    close,
    get served() {
      return served;
    },
  };
}
