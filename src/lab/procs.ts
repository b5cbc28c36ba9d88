import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { delay } from '../core/async.js';
import { AbortedError, isWeftError } from '../core/errors.js';
import { LabProcessError } from './errors.js';
import { run } from '../exec/run.js';

/**
 * Long-running processes inside lab namespaces, tracked by PID + start time.
 * src/exec/run.ts spawns short commands and waits for them; the lab also
 * needs daemons that outlive `weftctl lab up`, which is the one extra spawn
 * here.
 */

export interface ProcIdentity {
  pid: number;
  startTime: number;
}

/** Reads /proc/<pid>/stat; undefined when the process is gone. */
export type StatReader = (pid: number) => string | undefined;

export const readProcStat: StatReader = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
};

/**
 * Parses state and start time out of a /proc/<pid>/stat line. The command
 * name (field 2) may contain spaces and parentheses, so fields are counted
 * from the last ')'.
 */
export function parseProcStat(text: string): { state: string; startTime: number } | undefined {
  const end = text.lastIndexOf(')');
  if (end < 0) return undefined;
  const rest = text.slice(end + 2).split(' ');
  // rest[0] is field 3 (state); field 22 (starttime) is rest[19].
  const startTime = Number(rest[19]);
  if (!rest[0] || !Number.isFinite(startTime)) return undefined;
  return { state: rest[0], startTime };
}

export function startTimeOf(pid: number, read: StatReader = readProcStat): number | undefined {
  const text = read(pid);
  return text === undefined ? undefined : parseProcStat(text)?.startTime;
}

/**
 * True when the recorded process still runs: same PID AND same start time
 * (a recycled PID belongs to someone else) and not a zombie.
 */
export function isRunning(proc: ProcIdentity, read: StatReader = readProcStat): boolean {
  const text = read(proc.pid);
  if (text === undefined) return false;
  const st = parseProcStat(text);
  return st !== undefined && st.startTime === proc.startTime && st.state !== 'Z' && st.state !== 'X';
}

export interface SpawnedProc extends ProcIdentity {
  argv: string[];
  log: string;
}

/**
 * Starts `argv` inside `netns` (via `ip netns exec`, which execs in place so
 * the PID is the daemon's), detached into its own session so it survives
 * the caller and a Ctrl-C on it, with stdout+stderr appended to `log`.
 */
export function spawnInNetns(netns: string, argv: string[], log: string, env?: NodeJS.ProcessEnv): SpawnedProc {
  const fd = openSync(log, 'a');
  try {
    const child = spawn('ip', ['netns', 'exec', netns, ...argv], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: env ?? process.env,
    });
    if (child.pid === undefined) throw new Error(`could not start ${argv[0]} in ${netns}`);
    child.on('error', () => {});
    child.unref();
    const startTime = startTimeOf(child.pid);
    if (startTime === undefined) throw new Error(`${argv[0]} in ${netns} exited at once (see ${log})`);
    return { pid: child.pid, startTime, argv, log };
  } finally {
    closeSync(fd);
  }
}

export interface StopOptions {
  /** First signal. Default SIGTERM. */
  signal?: NodeJS.Signals;
  /** How long to wait before SIGKILL. Default 5000 ms. */
  graceMs?: number;
}

async function waitGone(procs: ProcIdentity[], ms: number): Promise<ProcIdentity[]> {
  const deadline = Date.now() + ms;
  let alive = procs.filter((p) => isRunning(p));
  while (alive.length > 0 && Date.now() < deadline) {
    await delay(50);
    alive = alive.filter((p) => isRunning(p));
  }
  return alive;
}

function signal(p: ProcIdentity, sig: NodeJS.Signals): void {
  try {
    process.kill(p.pid, sig);
  } catch {
    /* exited meanwhile */
  }
}

/**
 * Stops recorded processes: the signal, a bounded wait, then SIGKILL. A PID
 * whose start time differs from the record is left alone. Returns the PIDs
 * that were running when called.
 */
export async function stopProcs(procs: ProcIdentity[], opts: StopOptions = {}): Promise<number[]> {
  const running = procs.filter((p) => isRunning(p));
  if (running.length === 0) return [];
  for (const p of running) {
    signal(p, 'SIGCONT'); // a SIGSTOPped process (a paused etcd) must see the signal
    signal(p, opts.signal ?? 'SIGTERM');
  }
  const left = await waitGone(running, opts.graceMs ?? 5000);
  for (const p of left) signal(p, 'SIGKILL');
  await waitGone(left, 2000);
  return running.map((p) => p.pid);
}

/** PIDs of processes whose network namespace is `netns` (`ip netns pids`). */
export async function pidsInNetns(netns: string): Promise<number[]> {
  const r = await run('ip', ['netns', 'pids', netns], { allowFail: true });
  if (r.code !== 0) return [];
  return r.stdout
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n !== process.pid);
}

/** Last `lines` lines of a log file ('' when missing). */
export function tailFile(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * Bounded poll where a throw from `check` is final (unlike core's waitFor,
 * which retries on errors): "the daemon exited" must end the wait at once.
 */
export async function pollUntil<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  opts: { timeoutMs: number; intervalMs?: number; what: string; signal?: AbortSignal },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (opts.signal?.aborted) throw new AbortedError();
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}`);
    await delay(opts.intervalMs ?? 100, opts.signal);
  }
}

export interface WaitAliveOptions {
  /** The process whose exit ends the wait at once. */
  proc: ProcIdentity;
  /** Its name in messages ("weftd on h1"). */
  name: string;
  /** Its log file: the tail goes into the error. */
  log: string;
  /** What is awaited ("/readyz"). */
  what: string;
  /** Default 30 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Extra error details. */
  details?: Record<string, unknown>;
}

/**
 * Bounded wait for a lab daemon to become ready: ends at once when the
 * process exits, and a failure carries the tail of its log.
 */
export async function waitWhileAlive(check: () => Promise<boolean>, o: WaitAliveOptions): Promise<void> {
  try {
    await pollUntil(
      async () => {
        if (!isRunning(o.proc)) throw new LabProcessError(`${o.name} exited`);
        return check();
      },
      { timeoutMs: o.timeoutMs ?? 30_000, intervalMs: 200, what: `${o.what} of ${o.name}`, signal: o.signal },
    );
  } catch (err) {
    if (isWeftError(err, 'ERR_ABORTED')) throw err;
    throw new LabProcessError(`${o.name}: ${(err as Error).message}\n--- ${o.log} ---\n${tailFile(o.log)}`, { log: o.log, ...o.details });
  }
}
