import { spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { ExecError } from '../core/errors.js';
import { osPipe } from './pipe.js';

export interface RunOptions {
  /** Written to the child's stdin. */
  input?: string;
  /** Run inside this named network namespace (`ip netns exec`). */
  netns?: string;
  /** Resolve instead of throwing on a non-zero exit. */
  allowFail?: boolean;
  /** Kill the child after this long. Default 60 s. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The one place that spawns short-lived processes. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const child = runStreaming(cmd, args, opts);
  if (opts.input) void child.write(opts.input);
  return child.end();
}

/**
 * A child whose stdin is fed piece by piece while the caller is still
 * producing the rest, so the child's parsing overlaps our own CPU work
 * (iptables-restore of 80 000 rules that are still being rendered).
 */
export interface StreamingRun {
  /**
   * Queues text for the child's stdin. The promise resolves after one turn of
   * the event loop, which is when libuv hands queued bytes to the pipe: await
   * it between pieces, or the child waits until the producer is done.
   */
  write(text: string): Promise<void>;
  /** Closes stdin and waits for the exit; rejects with ExecError on a non-zero exit unless allowFail. */
  end(): Promise<RunResult>;
  /** Kills the child: a producer that failed half way must not let it commit what it got so far. */
  abort(): void;
  /** Bytes (UTF-16 units) written so far. */
  readonly written: number;
  /** The child is gone (exited or failed to start). */
  readonly exited: boolean;
}

export interface StreamingOptions extends Omit<RunOptions, 'input'> {
  /**
   * The child's stdin is a real pipe (needs `hasOsPipe()`), so it may open it
   * by path as /dev/fd/0: nft reads a path as it parses, but buffers all of
   * `-f -` first.
   */
  stdinByPath?: boolean;
}

export function runStreaming(cmd: string, args: string[], opts: StreamingOptions = {}): StreamingRun {
  const [file, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, cmd, ...args]] : [cmd, args];
  const pipe = opts.stdinByPath ? osPipe() : undefined;
  let child;
  try {
    child = spawn(file, argv, { stdio: [pipe ? pipe.read : 'pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
  } catch (err) {
    if (pipe) closeSync(pipe.write);
    throw err;
  } finally {
    // The child has its own copy now (or never will).
    if (pipe) closeSync(pipe.read);
  }
  const stdin: Writable = pipe ? new Socket({ fd: pipe.write, readable: false, writable: true }) : child.stdin!;
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // Armed when the input starts, not at spawn: a child may be started ahead of time and wait for its input.
  let timer: NodeJS.Timeout | undefined;
  let exited = false;
  const arm = () => void (exited || (timer ??= setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000)));
  // Settled from spawn on, so a child that fails early is never an unhandled rejection.
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', (err) => {
      exited = true;
      clearTimeout(timer);
      stdin.destroy();
      reject(new ExecError(`${file} ${argv.join(' ')}`, null, err.message));
    });
    child.on('close', (code) => {
      exited = true;
      clearTimeout(timer);
      if (code !== 0 && !opts.allowFail) {
        reject(new ExecError(`${cmd} ${args.join(' ')}`.slice(0, 300), code, stderr || stdout));
      } else {
        resolve({ code, stdout, stderr });
      }
    });
  });
  done.catch(() => {});
  // EPIPE when the child exits early: its exit status tells what went wrong.
  stdin.on('error', () => {});
  let written = 0;
  return {
    write(text: string) {
      arm();
      if (text) {
        written += text.length;
        stdin.write(text);
      }
      return new Promise<void>((r) => setImmediate(r));
    },
    end() {
      arm();
      stdin.end();
      return done;
    },
    abort() {
      child.kill('SIGKILL');
    },
    get written() {
      return written;
    },
    get exited() {
      return exited;
    },
  };
}

/** `ip` with an optional `-n <netns>`. */
export function ipArgs(netns: string | undefined, args: string[]): string[] {
  return netns ? ['-n', netns, ...args] : args;
}

export async function ip(args: string[], opts: { netns?: string; allowFail?: boolean } = {}): Promise<RunResult> {
  return run('ip', ipArgs(opts.netns, args), { allowFail: opts.allowFail });
}

/** `ip -json ...` parsed. */
export async function ipJson<T = unknown>(args: string[], netns?: string): Promise<T[]> {
  const r = await run('ip', ipArgs(netns, ['-json', ...args]));
  const text = r.stdout.trim();
  return text ? (JSON.parse(text) as T[]) : [];
}

/**
 * Many `ip` commands in one process (`ip -batch -`): 1000 routes in tens of
 * milliseconds. Lines must be idempotent (`replace`) so a retry is safe.
 */
export async function ipBatch(lines: string[], opts: { netns?: string; force?: boolean } = {}): Promise<void> {
  if (lines.length === 0) return;
  const args = ipArgs(opts.netns, [...(opts.force ? ['-force'] : []), '-batch', '-']);
  await run('ip', args, { input: lines.join('\n') + '\n' });
}
