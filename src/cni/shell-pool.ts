import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { ExecError } from '../core/errors.js';
import type { RunResult } from '../exec/run.js';

/**
 * A few long-lived /bin/sh processes that start commands for us. Starting a
 * process from Node forks the whole (large) Node process and blocks the event
 * loop until exec: 6-8 ms each on this machine under load. Asking a small,
 * already running shell to fork instead costs about half (measured in
 * docs/cni.md). The CNI server runs every `ip` call through here.
 *
 * Protocol per command: the command line (arguments single-quoted) with
 * stdin from a quoted here-document, stdout+stderr merged, then a marker line
 * with the exit status. One command per shell at a time; callers queue for a
 * free shell.
 *
 * This is a second spawn site besides src/exec/run.ts (which takes stdin as a
 * string and spawns from Node each time): a candidate to move into src/exec.
 */
export class ShellPool {
  private readonly shells: Shell[] = [];
  private readonly waiting: Array<(s: Shell) => void> = [];
  private closed = false;

  /** `size` shells (default 4: enough for concurrent ADDs on a small host). */
  constructor(private readonly size = 4) {}

  private acquire(): Promise<Shell> {
    for (let i = this.shells.length - 1; i >= 0; i--) if (!this.shells[i]!.alive) this.shells.splice(i, 1);
    const idle = this.shells.find((s) => !s.busy);
    if (idle) {
      idle.busy = true;
      return Promise.resolve(idle);
    }
    if (this.shells.length < this.size) {
      const s = new Shell();
      s.busy = true;
      this.shells.push(s);
      return Promise.resolve(s);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private releaseShell(s: Shell): void {
    const next = this.waiting.shift();
    if (next && s.alive) next(s);
    else if (next) void this.acquireAgain(next);
    else s.busy = false;
  }

  private async acquireAgain(cb: (s: Shell) => void): Promise<void> {
    const s = new Shell();
    s.busy = true;
    this.shells.push(s);
    cb(s);
  }

  /** Runs `cmd args` with optional stdin; like src/exec run() (stdout carries stderr too). */
  async run(cmd: string, args: string[], opts: { input?: string; allowFail?: boolean } = {}): Promise<RunResult> {
    if (this.closed) throw new ExecError(cmd, null, 'shell pool closed');
    const shell = await this.acquire();
    try {
      const r = await shell.run(cmd, args, opts.input);
      if (r.code !== 0 && !opts.allowFail) throw new ExecError(`${cmd} ${args.join(' ')}`.slice(0, 300), r.code, r.stdout);
      return r;
    } finally {
      this.releaseShell(shell);
    }
  }

  /** Starts the shells now (so the first requests do not pay for it). */
  warm(): void {
    while (this.shells.length < this.size) this.shells.push(new Shell());
  }

  close(): void {
    this.closed = true;
    for (const s of this.shells) s.close();
    this.shells.length = 0;
  }
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

class Shell {
  busy = false;
  private readonly proc: ChildProcess;
  private readonly nonce = randomBytes(6).toString('hex');
  private out = '';
  private pending: ((r: RunResult) => void) | undefined;
  private dead = false;

  constructor() {
    this.proc = spawn('/bin/sh', [], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.proc.stdin!.on('error', () => {});
    this.proc.stdout!.setEncoding('utf8').on('data', (d: string) => this.onData(d));
    this.proc.on('close', () => {
      this.dead = true;
      this.pending?.({ code: null, stdout: this.out + '\n(shell exited)', stderr: '' });
      this.pending = undefined;
    });
    this.proc.on('error', () => {
      this.dead = true;
    });
  }

  get alive(): boolean {
    return !this.dead;
  }

  private onData(d: string): void {
    this.out += d;
    const marker = `WEFT-DONE-${this.nonce} `;
    const i = this.out.indexOf(marker);
    if (i < 0) return;
    const nl = this.out.indexOf('\n', i);
    if (nl < 0) return;
    const code = Number(this.out.slice(i + marker.length, nl));
    const stdout = this.out.slice(0, i);
    this.out = this.out.slice(nl + 1);
    const p = this.pending;
    this.pending = undefined;
    p?.({ code, stdout, stderr: stdout });
  }

  run(cmd: string, args: string[], input?: string): Promise<RunResult> {
    if (this.dead) return Promise.resolve({ code: null, stdout: 'shell exited', stderr: 'shell exited' });
    return new Promise((resolve) => {
      this.pending = resolve;
      const eof = `WEFTEOF_${this.nonce}`;
      const line = [cmd, ...args].map(quote).join(' ');
      const body = input === undefined ? `${line} </dev/null 2>&1\n` : `${line} 2>&1 <<'${eof}'\n${input.endsWith('\n') || input === '' ? input : input + '\n'}${eof}\n`;
      this.proc.stdin!.write(`${body}echo "WEFT-DONE-${this.nonce} $?"\n`);
    });
  }

  close(): void {
    this.proc.stdin!.end();
  }
}
