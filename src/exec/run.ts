import { spawn } from 'node:child_process';
import { ExecError } from '../core/errors.js';

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
  const [file, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, cmd, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new ExecError(`${file} ${argv.join(' ')}`, null, err.message));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0 && !opts.allowFail) {
        reject(new ExecError(`${cmd} ${args.join(' ')}`.slice(0, 300), code, stderr || stdout));
      } else {
        resolve({ code, stdout, stderr });
      }
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
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
