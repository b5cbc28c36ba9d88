import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { run } from '../../src/exec/run.js';

/** A lab id unique to this test run: up to 4 chars of `prefix` + 4 hex chars. */
export function uniqueLabId(prefix: string): string {
  return `${prefix.slice(0, 4)}${randomBytes(2).toString('hex')}`;
}

/** Namespaces whose names start with `<id>-`. */
export async function netnsOf(id: string): Promise<string[]> {
  const r = await run('ip', ['netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(`${id}-`));
}

/**
 * Root-namespace links that carry the lab id, and routes in lab ranges. The
 * machine itself may sit on 192.0.2.0/24, so compare a snapshot taken before
 * `up` with one taken after.
 */
export async function rootTraces(id: string): Promise<string[]> {
  const links = await run('ip', ['-o', 'link', 'show']);
  const routes = await run('ip', ['route', 'show', 'table', 'all']);
  return [
    ...links.stdout.split('\n').filter((l) => l.includes(`${id}-`)),
    ...routes.stdout.split('\n').filter((l) => /192\.0\.2\.|10\.244\./.test(l)),
  ].sort();
}

/** True while a PID exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  try {
    return !/\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Stops a child this test started (SIGTERM, SIGKILL after `graceMs`) and waits for it to exit. */
export async function stopChild(p: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}
