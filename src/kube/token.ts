import { statSync, readFileSync } from 'node:fs';
import { KubeConfigError } from './errors.js';

/** Where a bearer token comes from: a fixed string or a file that may rotate. */
export interface TokenSource {
  /** The token to send now; undefined when there is none. */
  get(): string | undefined;
}

export function staticToken(token: string): TokenSource {
  return { get: () => token };
}

/**
 * A token file (kubeconfig `tokenFile`, the service-account token). Projected
 * service-account tokens rotate (the kubelet rewrites the file about hourly):
 * the file's mtime is checked at most every `checkMs` and the token re-read
 * when it changed, so each (re)connect uses a fresh one. A read failure keeps
 * the last good token (a rotation in progress) after the first success.
 */
export class FileTokenSource implements TokenSource {
  private token: string | undefined;
  private mtimeMs = -1;
  private checkedAt = -Infinity;

  constructor(
    readonly path: string,
    private readonly checkMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {
    this.load(true);
  }

  get(): string | undefined {
    if (this.now() - this.checkedAt >= this.checkMs) this.load(false);
    return this.token;
  }

  private load(first: boolean): void {
    this.checkedAt = this.now();
    try {
      const st = statSync(this.path);
      if (st.mtimeMs === this.mtimeMs && this.token !== undefined) return;
      const t = readFileSync(this.path, 'utf8').trim();
      if (!t) throw new Error('file is empty');
      this.token = t;
      this.mtimeMs = st.mtimeMs;
    } catch (err) {
      if (first) throw new KubeConfigError('tokenFile', `cannot read ${this.path}: ${(err as Error).message}`, { path: this.path });
    }
  }
}
