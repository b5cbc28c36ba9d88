/**
 * Signals of the long-running daemons (weftd, weft-proxy), in one place.
 *
 * - SIGTERM / SIGINT: stop (the daemon's AbortSignal). A second one while
 *   stopping exits at once, so a stuck shutdown never ignores the operator.
 * - SIGUSR1: log a state dump. Node's default for SIGUSR1 is to open the
 *   inspector on 127.0.0.1:9229 - in a root daemon any local user could then
 *   attach and run code as root. A JS listener replaces Node's handler
 *   (test/lab/daemon-signals.test.ts proves no port opens), and this module
 *   installs one as soon as it is imported: the CLIs import it first, so the
 *   window before start-up is as short as module loading allows.
 * - SIGHUP: run what the daemon can reload (a resync); options come from
 *   flags and the environment, read only at start, so the log says to restart.
 *   Node's default for SIGHUP is to exit.
 */
import type { Logger } from '../core/log.js';

const early = (sig: NodeJS.Signals) => () => {
  process.stderr.write(`weft: ${sig} ignored (daemon not running yet)\n`);
};
const earlyUsr1 = early('SIGUSR1');
const earlyHup = early('SIGHUP');
process.on('SIGUSR1', earlyUsr1);
process.on('SIGHUP', earlyHup);

export interface DaemonSignalOptions {
  log: Logger;
  /** Aborted on the first SIGTERM/SIGINT. */
  stop: AbortController;
  /** What to say when stopping, e.g. "stopping (rules stay in place)". */
  stopMessage: string;
  /** SIGUSR1: fields of the state dump (cheap; called at the signal). */
  dump: () => Record<string, unknown>;
  /** SIGHUP: reloads what can be, resolves to a word for what it did (undefined = nothing). */
  reload?: () => Promise<string | undefined> | string | undefined;
  /** Called instead of process.exit on a second stop signal (tests). */
  exit?: (code: number) => void;
}

/** Installs the daemon's signal handlers; returns a function that removes them. */
export function installDaemonSignals(o: DaemonSignalOptions): () => void {
  const { log } = o;
  const exit = o.exit ?? ((code: number) => process.exit(code));
  const onStop = (sig: NodeJS.Signals) => {
    if (o.stop.signal.aborted) {
      log.warn({ signal: sig }, 'second stop signal while stopping; exiting now');
      exit(1);
      return;
    }
    log.info({ signal: sig }, o.stopMessage);
    o.stop.abort();
  };
  const onTerm = () => onStop('SIGTERM');
  const onInt = () => onStop('SIGINT');
  const onUsr1 = () => {
    let fields: Record<string, unknown>;
    try {
      fields = o.dump();
    } catch (err) {
      fields = { dumpError: String(err) };
    }
    const known = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
    const rssMB = Math.round(process.memoryUsage.rss() / 2 ** 20);
    log.info({ signal: 'SIGUSR1', pid: process.pid, uptimeS: Math.round(process.uptime()), rssMB, ...known }, 'state dump');
  };
  const onHup = () => {
    void (async () => {
      let did: string | undefined;
      try {
        did = await o.reload?.();
      } catch (err) {
        log.warn({ signal: 'SIGHUP', err: String(err) }, 'reload failed');
        return;
      }
      if (did) log.info({ signal: 'SIGHUP', reloaded: did }, 'SIGHUP: reloaded what can be; flags and environment apply only at start: restart to apply changes');
      else log.info({ signal: 'SIGHUP' }, 'SIGHUP ignored: restart to apply changes');
    })();
  };
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  process.on('SIGUSR1', onUsr1);
  process.on('SIGHUP', onHup);
  process.off('SIGUSR1', earlyUsr1);
  process.off('SIGHUP', earlyHup);
  return () => {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    // Keep a listener for SIGUSR1/SIGHUP until exit: removing the last one would give them back to Node.
    process.on('SIGUSR1', earlyUsr1);
    process.on('SIGHUP', earlyHup);
    process.off('SIGUSR1', onUsr1);
    process.off('SIGHUP', onHup);
  };
}
