import type { Command } from 'commander';
import { isWeftError, errorMessage } from '../core/errors.js';
import { UsageError } from './env.js';

/**
 * Parses argv and runs the command; the only place (with the other cli/
 * files) that sets exit codes. WeftErrors print as `error [CODE]: message`;
 * usage errors exit 2, other failures 1, `--help` and `--version` 0.
 */
export async function runCli(program: Command, argv = process.argv): Promise<void> {
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) {
      // Help and --version exit 0; commander's usage errors (unknown option, missing value) 2.
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    const code = isWeftError(err) ? ` [${err.code}]` : '';
    process.stderr.write(`error${code}: ${errorMessage(err)}\n`);
    // A bad flag or environment value is a usage error: 2, as Go's flag package (and flanneld) exit.
    process.exitCode = err instanceof UsageError ? 2 : 1;
  }
}

/**
 * Holds the event loop open until `signal` aborts: daemons unref their own
 * timers, so without a server listening nothing else would keep them alive.
 */
export function keepAliveUntil(signal: AbortSignal): void {
  const timer = setInterval(() => {}, 1 << 30);
  signal.addEventListener('abort', () => clearInterval(timer), { once: true });
}

/**
 * Called when a daemon's command has returned (stopped or failed): everything
 * it started has been closed, so the process should end by itself. If a
 * leaked handle still holds it, it exits anyway after `graceMs` instead of
 * hanging on as a zombie daemon that no longer does anything.
 */
export function exitWhenDone(graceMs = 5000): void {
  setTimeout(() => {
    process.stderr.write(`weft: still running ${graceMs} ms after stopping (a leaked handle); exiting\n`);
    process.exit(process.exitCode ?? 1);
  }, graceMs).unref();
}
