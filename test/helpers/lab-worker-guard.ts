import { readFileSync } from 'node:fs';

/**
 * Lab-project setup file (vitest.config.ts setupFiles). About 1 in 3 full lab
 * runs lost a vitest worker ("Worker exited unexpectedly") with no clue in the
 * log. This file makes the cause visible and blocks the suspected one:
 *  - every signal a test (or src/ code it calls) sends with process.kill is
 *    logged to stderr with the target's cmdline;
 *  - a signal aimed at this worker, its parent (the vitest main process), our
 *    own process group, or any process whose cmdline is a vitest worker is
 *    refused (thrown as ESRCH, which every caller already treats as "gone")
 *    and logged - netns sweeps kill `ip netns pids`, which is PID-based and racy;
 *  - SIGTERM/SIGHUP/SIGINT to this worker and its exit code are logged, so
 *    a lost worker without such a line was SIGKILLed or crashed natively
 *    (check dmesg then).
 */
const tag = `[lab-worker ${process.pid}]`;
const say = (msg: string) => {
  try {
    process.stderr.write(`${tag} ${msg}\n`);
  } catch {
    /* stderr gone */
  }
};

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ').slice(0, 200);
  } catch {
    return '?';
  }
}

function pgidOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" that closes comm: state ppid pgrp ...
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  } catch {
    return undefined;
  }
}

const ownPgid = pgidOf(process.pid);
const isVitest = (cmd: string) => /vitest/.test(cmd);

/** Why signalling `pid` would hit vitest itself, or undefined when it is safe. */
export function vitestTargetReason(pid: number): string | undefined {
  if (pid === 0 || pid === -1) return 'whole group / every process';
  if (pid < 0) {
    const g = -pid;
    if (g === ownPgid) return `our own process group ${g}`;
    if (isVitest(cmdlineOf(g))) return `process group of vitest process ${g}`;
    return undefined;
  }
  if (pid === process.pid) return 'this vitest worker';
  if (pid === process.ppid) return 'the vitest main process';
  const cmd = cmdlineOf(pid);
  if (isVitest(cmd)) return `a vitest process (${cmd})`;
  return undefined;
}

const realKill = process.kill.bind(process);
process.kill = ((pid: number, signal?: string | number) => {
  const sig = signal ?? 'SIGTERM';
  if (sig !== 0) {
    const reason = vitestTargetReason(pid);
    if (reason) {
      say(`REFUSED kill(${pid}, ${sig}): target is ${reason}\n${new Error('kill stack').stack}`);
      throw Object.assign(new Error(`kill ESRCH (refused: ${reason})`), { code: 'ESRCH', errno: -3, syscall: 'kill' });
    }
    if (process.env.WEFT_LAB_LOG_KILLS === '1' || sig === 'SIGKILL' || sig === 9) {
      say(`kill(${pid}, ${sig}) -> ${pid > 0 ? cmdlineOf(pid) : `group ${-pid}`}`);
    }
  }
  return realKill(pid, sig);
}) as typeof process.kill;

for (const sig of ['SIGTERM', 'SIGHUP', 'SIGINT'] as const) {
  process.on(sig, () => {
    say(`received ${sig} (ppid ${process.ppid}; vitest itself sends SIGTERM at teardown); exiting as the default action would`);
    process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const)[sig]);
  });
}
process.on('exit', (code) => {
  if (code !== 0) say(`exit code ${code}`);
});
