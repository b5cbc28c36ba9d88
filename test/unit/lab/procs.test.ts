import { describe, expect, it } from 'vitest';
import { isRunning, parseProcStat, startTimeOf, type StatReader } from '../../../src/lab/procs.js';

// Field 22 (starttime) is the 20th field after the ')' that closes the command name.
function stat(pid: number, comm: string, state: string, start: number): string {
  const after = [state, ...Array.from({ length: 18 }, (_, i) => String(i + 1)), String(start), '0', '0'];
  return `${pid} (${comm}) ${after.join(' ')}\n`;
}

describe('process identity', () => {
  it('reads state and start time even when the command name holds spaces and parentheses', () => {
    expect(parseProcStat(stat(42, 'we ird) (name', 'S', 123456))).toEqual({ state: 'S', startTime: 123456 });
    expect(parseProcStat('garbage')).toBeUndefined();
  });

  it('treats a recycled PID (other start time), a zombie and a missing PID as not running', () => {
    const table = new Map<number, string>([
      [10, stat(10, 'etcd', 'S', 500)],
      [11, stat(11, 'node', 'Z', 600)],
    ]);
    const read: StatReader = (pid) => table.get(pid);
    expect(isRunning({ pid: 10, startTime: 500 }, read)).toBe(true);
    expect(isRunning({ pid: 10, startTime: 499 }, read)).toBe(false);
    expect(isRunning({ pid: 11, startTime: 600 }, read)).toBe(false);
    expect(isRunning({ pid: 12, startTime: 1 }, read)).toBe(false);
    expect(startTimeOf(10, read)).toBe(500);
  });

  it('reads this very process from /proc', () => {
    const st = startTimeOf(process.pid);
    expect(st).toBeGreaterThan(0);
    expect(isRunning({ pid: process.pid, startTime: st! })).toBe(true);
  });
});
