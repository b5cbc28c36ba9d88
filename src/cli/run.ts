import type { Command } from 'commander';
import { isWeftError, errorMessage } from '../core/errors.js';

/**
 * Parses argv and runs the command; the only place (with the other cli/
 * files) that sets exit codes. WeftErrors print as `error [CODE]: message`.
 */
export async function runCli(program: Command, argv = process.argv): Promise<void> {
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) {
      process.exitCode = e.exitCode ?? 2;
      return;
    }
    const code = isWeftError(err) ? ` [${err.code}]` : '';
    process.stderr.write(`error${code}: ${errorMessage(err)}\n`);
    process.exitCode = 1;
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
