import { ExecError } from '../core/errors.js';
import { run } from '../exec/run.js';

/** One line of a batch that the kernel refused. */
export interface BatchFailure {
  /** 0-based index into the lines given. */
  index: number;
  /** The tool's error text for that line (e.g. "Error: Nexthop has invalid gateway."). */
  message: string;
}

/**
 * Runs `ip` or `bridge` with `-force -batch -`: every line is tried even when
 * an earlier one fails, and the failures come back by line. A batch of 1000
 * routes costs one process (~35 ms) instead of 1000.
 *
 * Throws ExecError only when the tool itself could not run (so callers never
 * mistake "nothing happened" for success).
 */
export async function runBatch(
  tool: 'ip' | 'bridge',
  lines: string[],
  netns?: string,
): Promise<BatchFailure[]> {
  if (lines.length === 0) return [];
  return runChunk(tool, lines, 0, netns);
}

async function runChunk(tool: 'ip' | 'bridge', lines: string[], offset: number, netns?: string): Promise<BatchFailure[]> {
  const args = [...(netns ? ['-n', netns] : []), '-force', '-batch', '-'];
  const r = await run(tool, args, { input: lines.join('\n') + '\n', allowFail: true });
  if (r.code === 0) return [];
  const failures = parseBatchErrors(r.stderr);
  if (failures.length > 0) return failures.map((f) => ({ ...f, index: f.index + offset }));
  // Some commands (e.g. `ip neigh` on a netlink error) exit the whole batch
  // without naming the line. Lines are idempotent, so split and retry to
  // find the failing ones: O(failures * log n) processes, only on failure.
  if (lines.length === 1) {
    if (r.code === null) throw new ExecError(`${tool} ${args.join(' ')}`, r.code, r.stderr);
    return [{ index: offset, message: r.stderr.trim() || r.stdout.trim() || `exit ${r.code}` }];
  }
  const half = Math.ceil(lines.length / 2);
  const a = await runChunk(tool, lines.slice(0, half), offset, netns);
  const b = await runChunk(tool, lines.slice(half), offset + half, netns);
  return [...a, ...b];
}

/** True for the errors a delete gets when the thing is already gone. */
export function isAbsentError(message: string): boolean {
  return /No such (file or directory|process|device)|Cannot find device/i.test(message);
}

/**
 * iproute2 prints the error of a line first, then "Command failed -:<line>"
 * (1-based). Everything since the previous marker belongs to that line.
 */
export function parseBatchErrors(stderr: string): BatchFailure[] {
  const failures: BatchFailure[] = [];
  let pending: string[] = [];
  for (const raw of stderr.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const m = /^Command failed [^:]*:(\d+)$/.exec(line);
    if (m) {
      failures.push({ index: Number(m[1]) - 1, message: pending.join(' ') || 'failed' });
      pending = [];
    } else {
      pending.push(line);
    }
  }
  return failures;
}
