import { ExecError, WeftError, errorMessage } from '../../core/errors.js';

/** A sync's iptables-restore failed; the message names the table, the size and the refused line. */
export class IptablesRestoreError extends WeftError {
  override readonly code = 'ERR_IPTABLES_RESTORE';
}

/** What one restore session was fed, kept so a failure can say where it broke. */
export class RestoreTranscript {
  private readonly pieces: string[] = [];
  bytes = 0;
  /** The table of the last `*table` header sent. */
  table = '';
  readonly startedAt = Date.now();

  add(piece: string): void {
    this.pieces.push(piece);
    this.bytes += Buffer.byteLength(piece);
    const at = piece.lastIndexOf('\n*');
    const header = at >= 0 ? piece.slice(at + 2) : piece.startsWith('*') ? piece.slice(1) : '';
    if (header) this.table = header.slice(0, header.indexOf('\n') < 0 ? undefined : header.indexOf('\n')).trim();
  }

  /** Line `n` (1-based) of what was sent, and the table it sits in. */
  line(n: number): { text: string; table: string } | undefined {
    let seen = 0;
    let table = '';
    for (const p of this.pieces) {
      const lines = p.split('\n');
      // A piece ends with '\n': its last element is empty, not a line.
      const count = p.endsWith('\n') ? lines.length - 1 : lines.length;
      for (let i = 0; i < count; i++) {
        const l = lines[i]!;
        if (l.startsWith('*')) table = l.slice(1).trim();
        if (++seen === n) return { text: l, table };
      }
    }
    return undefined;
  }

  /**
   * The error to throw for a failed restore: iptables-restore's own words and
   * the line it refused, or, when it said nothing (killed at its timeout),
   * how long it ran while loading which table and how much.
   */
  failure(err: unknown): IptablesRestoreError {
    const seconds = (Date.now() - this.startedAt) / 1000;
    const stderr = err instanceof ExecError ? err.stderr.trim() : '';
    const where = `${this.table || 'no table'} (${this.bytes} bytes sent)`;
    if (err instanceof ExecError && err.exitCode === null && !stderr) {
      return new IptablesRestoreError(`iptables-restore timed out after ${seconds.toFixed(1)} s (killed) while loading ${where}`, { table: this.table, bytes: this.bytes, seconds }, { cause: err });
    }
    const said = stderr ? stderr.split('\n').slice(-3).join(' ').replace(/\s+/g, ' ') : errorMessage(err);
    const n = /line (\d+)/.exec(stderr)?.[1];
    const refused = n ? this.line(Number(n)) : undefined;
    const detail = refused ? `; line ${n} (table ${refused.table || '?'}): ${refused.text.slice(0, 300)}` : '';
    return new IptablesRestoreError(`iptables-restore failed while loading ${where}: ${said}${detail}`, { table: refused?.table ?? this.table, bytes: this.bytes, line: n ? Number(n) : undefined, rule: refused?.text }, { cause: err });
  }
}
