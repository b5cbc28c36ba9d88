import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { WeftError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { addonFunction } from '../native/addon.js';
import { createCniHandler, type CniHandlerOptions } from './handler.js';
import { ExecCniKernel } from './kernel-exec.js';
import { ShellPool } from './shell-pool.js';
import {
  MAX_REQUEST,
  NETNS_ID_KEY,
  WRONG_NETNS,
  WireError,
  decodeRequest,
  encodeCniError,
  encodeResponse,
  requestFrameLength,
  type WireRequest,
} from './protocol.js';

/** Why the server answered (or dropped) a connection without running the handler. */
export type CniRefusal = 'busy' | 'oversized' | 'malformed' | 'peer';
/** Which deadline a request missed: receiving it whole, or getting it handled. */
export type CniTimeoutPhase = 'receive' | 'handle';

/** Where the server reports refusals and timeouts (weftd passes its prom-client counters). */
export interface CniServerMetrics {
  refused(reason: CniRefusal): void;
  timedOut(phase: CniTimeoutPhase): void;
}

export interface CniServerLimits {
  /**
   * Connections open at once (receiving, queued or being handled); more get code 11. Default 512: every
   * open connection is read at once (a small request never waits behind a large or slow one), memory is
   * bounded by `largeBudget`, and this bounds the file descriptors.
   */
  maxConnections: number;
  /** Requests in the handler at once; complete requests beyond it wait in order. Default 16. */
  maxInFlight: number;
  /** From accept to the last byte of the request. Default 10 s. */
  receiveTimeoutMs: number;
  /** From the last byte of the request to the answer, queue wait included; then code 11. Default 60 s. */
  handleTimeoutMs: number;
  /**
   * Bytes for requests over 64 KiB (receiving, queued or handled), reserved MAX_REQUEST at a time: a large
   * request past the budget waits, paused, for an earlier one to finish. Default 16 MiB (16 at once).
   */
  largeBudget: number;
}

export const DEFAULT_CNI_LIMITS: CniServerLimits = {
  maxConnections: 512,
  maxInFlight: 16,
  receiveTimeoutMs: 10_000,
  handleTimeoutMs: 60_000,
  largeBudget: 16 * 1024 * 1024,
};

/** A request up to this size never waits for the budget (real requests are a few KiB). */
const SMALL_REQUEST = 64 * 1024;
/**
 * What a large request reserves: the most it can hold. Reserving it whole up front (not byte by byte)
 * means a request that got a reservation always completes: many partial requests cannot each hold
 * a share of the budget and wait for each other.
 */
const LARGE_RESERVATION = MAX_REQUEST + 12;

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
  /** Caps and deadlines; defaults DEFAULT_CNI_LIMITS. */
  limits?: Partial<CniServerLimits>;
  metrics?: CniServerMetrics;
  /** Passed to the handler (tests). */
  handler?: Omit<CniHandlerOptions, 'log' | 'hostNetns' | 'bridgeCacheMs'>;
}

export interface CniServerStats {
  /** Requests answered by the handler. */
  served: number;
  refused: Record<CniRefusal, number>;
  timedOut: Record<CniTimeoutPhase, number>;
  open: number;
  inFlight: number;
  queued: number;
  /** Bytes reserved by large requests now. */
  reserved: number;
  /** Large requests paused, waiting for a reservation. */
  waiting: number;
}

export interface CniServer {
  readonly socketPath: string;
  /** Requests answered so far (tests, metrics). */
  readonly served: number;
  /** Counters and gauges of the limits (tests). */
  readonly stats: CniServerStats;
  /** True when callers' uids are checked (SO_PEERCRED through the native addon). */
  readonly checksPeer: boolean;
  /** Resolves when the server has stopped. */
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

/** The socket cannot be set up safely where asked. */
export class CniSocketError extends WeftError {
  override readonly code = 'ERR_CNI_SOCKET';
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

const euid = () => (typeof process.geteuid === 'function' ? process.geteuid() : 0);

/**
 * The socket's directory: created 0700, or an existing one owned by root (or
 * us) that nobody else can write to (else a user could replace the socket or
 * the directory's entries). Returns its mode.
 */
function prepareSocketDir(dir: string): number {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) throw new CniSocketError(`${dir}: the CNI socket's directory is not a directory`, { dir });
  if (st.uid !== 0 && st.uid !== euid()) {
    throw new CniSocketError(`${dir}: the CNI socket's directory is owned by uid ${st.uid}, not root`, { dir, uid: st.uid });
  }
  if ((st.mode & 0o022) !== 0) {
    throw new CniSocketError(`${dir}: the CNI socket's directory is writable by group or others (mode ${(st.mode & 0o7777).toString(8)})`, {
      dir,
      mode: st.mode & 0o7777,
    });
  }
  return st.mode & 0o777;
}

/** Removes a stale socket; refuses to replace anything that is not a socket, or a live server's. */
async function clearStaleSocket(socketPath: string): Promise<void> {
  let st;
  try {
    st = lstatSync(socketPath);
  } catch {
    return; // nothing there
  }
  if (!st.isSocket()) throw new CniSocketError(`${socketPath}: exists and is not a socket; not replacing it`, { socketPath });
  if (await listening(socketPath)) throw new CniSocketError(`${socketPath}: another server is listening`, { socketPath });
  unlinkSync(socketPath);
}

/** Sets the umask for the bind only (synchronous inside listen()); false where the process cannot (worker threads). */
function withUmask(mask: number, fn: () => void): boolean {
  let old: number;
  try {
    old = process.umask(mask);
  } catch {
    fn();
    return false;
  }
  try {
    fn();
  } finally {
    process.umask(old);
  }
  return true;
}

type PeerCred = (fd: number) => [number, number, number];

interface Job {
  sock: Socket;
  req: WireRequest;
  /** Holds a large-request reservation until settled. */
  reserved: boolean;
  answered: boolean;
  timer: NodeJS.Timeout;
}

/**
 * The long-lived side of the plugin: the shim forwards each call here, so a
 * call costs no Node start-up and the handler keeps its caches. weftd hosts
 * it (`--cni-socket`); `weft-cni.cjs serve` runs it alone.
 *
 * Hostile or broken clients are bounded: at most `maxConnections` open,
 * `maxInFlight` in the handler, MAX_REQUEST bytes per request (refused from
 * its header), `largeBudget` bytes for requests over 64 KiB, and a deadline for
 * receiving a request and one for handling it.
 */
export async function startCniServer(opts: CniServerOptions = {}): Promise<CniServer> {
  const socketPath = opts.socketPath ?? '/run/weft/cni.sock';
  const log = (opts.log ?? silentLogger).child({ component: 'cni-server' });
  const limits: CniServerLimits = { ...DEFAULT_CNI_LIMITS, ...opts.limits };
  const dirMode = prepareSocketDir(dirname(socketPath));
  await clearStaleSocket(socketPath);
  const peerCred = addonFunction<PeerCred>('peerCred');
  const ownUid = euid();

  const shells = new ShellPool(opts.shells ?? 4);
  const kernel = opts.handler?.kernel ?? new ExecCniKernel({ hostNetns: opts.hostNetns, shells });
  const handler = createCniHandler({ ...opts.handler, kernel, log, bridgeCacheMs: opts.bridgeCacheMs ?? 30_000 });
  const ownNs = netnsId(opts.hostNetns ? `/var/run/netns/${opts.hostNetns}` : '/proc/self/ns/net');

  const stats: CniServerStats = {
    served: 0,
    refused: { busy: 0, oversized: 0, malformed: 0, peer: 0 },
    timedOut: { receive: 0, handle: 0 },
    open: 0,
    inFlight: 0,
    queued: 0,
    reserved: 0,
    waiting: 0,
  };
  const queue: Job[] = [];
  /** Large requests paused until a reservation is free, in arrival order. */
  const waiting: Array<{ sock: Socket; grant: () => void }> = [];
  const tryReserve = (): boolean => {
    if (waiting.length > 0 || stats.reserved + LARGE_RESERVATION > limits.largeBudget) return false;
    stats.reserved += LARGE_RESERVATION;
    return true;
  };

  const refuse = (sock: Socket, reason: CniRefusal, answer: Buffer | undefined, fields: Record<string, unknown>, msg: string) => {
    stats.refused[reason]++;
    opts.metrics?.refused(reason);
    log.warn({ reason, ...fields }, msg);
    if (answer && !sock.destroyed) sock.end(answer, () => sock.destroy());
    else sock.destroy();
  };

  const unreserve = () => {
    stats.reserved -= LARGE_RESERVATION;
    while (waiting.length > 0 && stats.reserved + LARGE_RESERVATION <= limits.largeBudget) {
      stats.reserved += LARGE_RESERVATION;
      waiting.shift()!.grant();
    }
    stats.waiting = waiting.length;
  };

  /** Marks a job answered and takes it out of the queue if it is still there (a stuck handler cannot grow it). */
  const settle = (job: Job) => {
    job.answered = true;
    clearTimeout(job.timer);
    if (job.reserved) unreserve();
    job.reserved = false;
    const i = queue.indexOf(job);
    if (i >= 0) queue.splice(i, 1);
    stats.queued = queue.length;
  };

  const answer = (job: Job, buf: Buffer) => {
    if (job.answered) return;
    settle(job);
    if (!job.sock.destroyed) job.sock.end(buf);
  };

  const pump = () => {
    while (stats.inFlight < limits.maxInFlight && queue.length > 0) {
      const job = queue.shift()!;
      stats.queued = queue.length;
      stats.inFlight++;
      handler(job.req)
        .then((res) => {
          if (job.answered) {
            log.warn({ command: job.req.env.CNI_COMMAND, container: job.req.env.CNI_CONTAINERID, exitCode: res.exitCode }, 'CNI request finished after its deadline or after its caller left; answer dropped');
            return;
          }
          stats.served++;
          answer(job, encodeResponse(res.exitCode, res.stdout, res.stderr ?? ''));
        })
        .catch((err) => {
          log.error({ err: String(err), command: job.req.env.CNI_COMMAND }, 'handler threw');
          settle(job);
          job.sock.destroy();
        })
        .finally(() => {
          // The slot is held until the handler settles, also past a deadline: its kernel work cannot be cancelled.
          stats.inFlight--;
          pump();
        });
    }
  };

  const enqueue = (sock: Socket, req: WireRequest, reserved: boolean) => {
    const job: Job = { sock, req, reserved, answered: false, timer: undefined as unknown as NodeJS.Timeout };
    job.timer = setTimeout(() => {
      stats.timedOut.handle++;
      opts.metrics?.timedOut('handle');
      log.warn(
        { command: req.env.CNI_COMMAND, container: req.env.CNI_CONTAINERID, timeoutMs: limits.handleTimeoutMs, started: !queue.includes(job) },
        'CNI request not handled in time; answered try again later',
      );
      answer(job, encodeCniError(11, `weft server: request not handled within ${limits.handleTimeoutMs} ms (server busy); try again`));
    }, limits.handleTimeoutMs);
    // A caller that left before its turn (the runtime killed the shim) needs no handling.
    sock.once('close', () => {
      if (!job.answered) settle(job);
    });
    queue.push(job);
    stats.queued = queue.length;
    pump();
  };

  const onConnection = (sock: Socket) => {
    sock.on('error', () => {});
    if (stats.open >= limits.maxConnections) {
      refuse(sock, 'busy', encodeCniError(11, `weft server: ${limits.maxConnections} connections open; try again`), { open: stats.open }, 'refused CNI connection: too many open');
      return;
    }
    if (peerCred) {
      const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
      try {
        const [pid, uid] = peerCred(fd ?? -1);
        if (uid !== 0 && uid !== ownUid) {
          refuse(sock, 'peer', undefined, { pid, uid }, 'refused CNI connection from an unprivileged process');
          return;
        }
      } catch (err) {
        refuse(sock, 'peer', undefined, { err: String(err) }, 'refused CNI connection: peer credentials unreadable');
        return;
      }
    }
    stats.open++;
    let chunks: Buffer[] = [];
    let size = 0;
    let need = 8;
    let done = false;
    /** Holds a large-request reservation; `waitEntry` while paused for one. */
    let reserved = false;
    let waitEntry: { sock: Socket; grant: () => void } | undefined;
    /** Stops receiving; a queued request keeps its reservation (`keep`) until it is answered. */
    const finishReceive = (keep = false) => {
      done = true;
      clearTimeout(deadline);
      if (waitEntry) {
        const i = waiting.indexOf(waitEntry);
        if (i >= 0) waiting.splice(i, 1);
        stats.waiting = waiting.length;
        waitEntry = undefined;
      }
      chunks = [];
      size = 0;
      if (reserved && !keep) {
        reserved = false;
        unreserve();
      }
    };
    sock.once('close', () => {
      stats.open--;
      if (!done) finishReceive();
    });
    // A peer that hangs up before a whole request (another weftd's "is anyone listening?" probe)
    // would stay half-open (allowHalfOpen) and hold server.close() until the receive deadline.
    sock.once('end', () => {
      if (!done) {
        finishReceive();
        sock.destroy();
      }
    });
    // One deadline for the whole request: a byte now and then does not extend it. It does not run while the
    // request waits, paused by the server, for a large-request reservation: that wait is ours, not the caller's.
    const onDeadline = () => {
      const received = size;
      finishReceive();
      stats.timedOut.receive++;
      opts.metrics?.timedOut('receive');
      log.warn({ received, timeoutMs: limits.receiveTimeoutMs }, 'dropped CNI connection: request not received in time');
      if (!sock.destroyed) sock.end(encodeCniError(11, `weft server: request not received within ${limits.receiveTimeoutMs} ms`), () => sock.destroy());
    };
    let deadline = setTimeout(onDeadline, limits.receiveTimeoutMs);
    let deadlineAt = Date.now() + limits.receiveTimeoutMs;

    // Past 64 KiB a request needs a reservation; without one it waits, paused (the rest stays in the kernel's buffer).
    const maybePause = () => {
      if (reserved || waitEntry || size <= SMALL_REQUEST) return;
      if (tryReserve()) {
        reserved = true;
        return;
      }
      sock.pause();
      // The receive deadline stops while we hold the caller back, and gets the time it had left once granted.
      clearTimeout(deadline);
      const left = Math.max(0, deadlineAt - Date.now());
      waitEntry = {
        sock,
        grant: () => {
          waitEntry = undefined;
          reserved = true;
          if (!done) {
            deadline = setTimeout(onDeadline, left);
            deadlineAt = Date.now() + left;
          }
          sock.resume();
        },
      };
      waiting.push(waitEntry);
      stats.waiting = waiting.length;
    };

    sock.on('data', (chunk: Buffer) => {
      if (done) return; // bytes after the request (or after a refusal): ignored
      chunks.push(chunk);
      size += chunk.length;
      if (size < need) return maybePause();
      // Only whole-frame progress joins the chunks, so a large request is not copied once per chunk.
      const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      chunks = [buf];
      let frame;
      try {
        frame = requestFrameLength(buf);
      } catch (err) {
        const fields = { received: size, ...(err instanceof WireError ? err.details : { err: String(err) }) };
        finishReceive();
        if (err instanceof WireError && err.reason === 'oversized') {
          // Code 4 when the variables alone are too large, 6 (cannot decode) when the config makes it so.
          const cniCode = 'stdinLen' in err.details ? 6 : 4;
          refuse(sock, 'oversized', encodeCniError(cniCode, `weft server: ${err.message}`), fields, 'refused oversized CNI request');
        } else {
          refuse(sock, 'malformed', undefined, fields, 'dropped malformed CNI request');
        }
        return;
      }
      need = frame.length;
      if (!frame.known || size < need) return maybePause();
      const req = decodeRequest(buf.subarray(0, need))!;
      const holds = reserved;
      finishReceive(true);
      const callerNs = req.env[NETNS_ID_KEY];
      if (callerNs !== undefined && callerNs !== ownNs) {
        if (holds) unreserve();
        log.debug({ callerNs, ownNs }, 'request from another netns; shim falls back');
        sock.end(encodeResponse(WRONG_NETNS, '', ''));
        return;
      }
      delete req.env[NETNS_ID_KEY];
      enqueue(sock, req, holds);
    });
  };

  // allowHalfOpen: the shim shuts its write side after the request; the answer still has to go back.
  const server = createServer({ allowHalfOpen: true }, onConnection);
  const bound = new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve();
    });
  });
  // umask 077 while bind() creates the socket file (synchronously inside listen()): it is born 0600, so no other
  // user can connect in the moment before the chmod below, whatever umask the daemon was started with.
  const masked = withUmask(0o077, () => server.listen(socketPath));
  try {
    await bound;
  } catch (err) {
    shells.close();
    throw err;
  }
  chmodSync(socketPath, 0o600);
  // Warmed only once listening: a start that fails (socket taken) must leave no shells behind.
  shells.warm();
  if (!masked && (dirMode & 0o077) !== 0) {
    // Without a umask the socket was briefly reachable through the directory: say so rather than pretend.
    log.warn({ socketPath, dirMode: dirMode.toString(8) }, 'cni socket bound without a umask in a directory others can enter');
  }
  if (!peerCred) log.info({ socketPath }, 'native addon lacks peerCred: callers are not checked, the socket permissions are the guard');
  log.info({ socketPath, maxRequest: MAX_REQUEST, ...limits }, 'cni server listening');

  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  const close = async () => {
    if (!server.listening) return closed;
    server.close(); // libuv unlinks the socket file
    shells.close();
    // Idle keep-alive sockets never happen (one request per connection); open ones finish or hit their deadline.
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
    checksPeer: peerCred !== undefined,
    stats,
    get served() {
      return stats.served;
    },
  };
}
