import { spawn, type ChildProcess } from 'node:child_process';
import { ExecError } from '../core/errors.js';

/**
 * An `ip -batch -` process started before its lines are known. Start-up
 * (exec, dynamic linking, the netns switch of `ip -n`) then overlaps with
 * other work, which is most of an `ip` call's cost.
 *
 * src/exec/run.ts takes stdin as one string up front, so it cannot do this;
 * this is the one other spawn site (candidate to move into src/exec).
 */
export class PendingIpBatch {
  private readonly child: ChildProcess;
  private readonly done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  private used = false;

  constructor(readonly args: string[]) {
    this.child = spawn('ip', [...args, '-batch', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    this.child.stdin!.on('error', () => {});
    this.done = new Promise((resolve) => {
      this.child.on('error', (err) => resolve({ code: null, stdout, stderr: stderr + err.message }));
      this.child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  /** True while the process can still take lines. */
  get usable(): boolean {
    return !this.used && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends the lines, closes stdin, waits; ExecError on a non-zero exit. */
  async run(lines: string[]): Promise<void> {
    this.used = true;
    this.child.stdin!.end(lines.length ? lines.join('\n') + '\n' : '');
    const r = await this.done;
    if (r.code !== 0) throw new ExecError(`ip ${this.args.join(' ')} -batch -`, r.code, r.stderr || r.stdout);
  }

  /** Lets an unused process exit (empty batch). */
  discard(): void {
    if (this.used) return;
    this.used = true;
    this.child.stdin!.end('');
  }
}
