/**
 * etcd's token auth: Auth/Authenticate {name, password} gives a token that
 * every call then sends as the gRPC metadata header `token`. Tokens expire
 * (etcd's --auth-token-ttl, 300 s by default) or go stale when the auth
 * store changes; the client then asks once for a new one. The empty token
 * stands for "etcd has auth off: send none".
 */
export class TokenAuth {
  private token: Promise<string> | undefined;

  /** `authenticate` does the HTTP call and returns the token. */
  constructor(private readonly authenticate: () => Promise<string>) {}

  /** The current token; the first caller (or the first after invalidate) fetches one, concurrent callers share it. */
  current(): Promise<string> {
    if (!this.token) {
      const p = this.authenticate();
      this.token = p;
      // A failed authentication is not cached: the next call tries again.
      p.catch(() => {
        if (this.token === p) this.token = undefined;
      });
    }
    return this.token;
  }

  /** Forgets `token` (if it is still the current one) so the next call authenticates again. */
  async invalidate(token: string): Promise<void> {
    const p = this.token;
    if (!p) return;
    const held = await p.catch(() => undefined);
    if (held === token && this.token === p) this.token = undefined;
  }
}
