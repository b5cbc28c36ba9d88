import type { TokenSource } from './token.js';

/**
 * Everything needed to talk to one API server, whatever it came from
 * (kubeconfig, --master, in-cluster). PEM material is held in memory; token
 * files are re-read through their TokenSource.
 */
export interface KubeConnection {
  /** Base URL, e.g. https://10.96.0.1:443 (no trailing slash). */
  server: string;
  /** PEM CA bundle; undefined: the system's CAs. */
  ca?: string;
  /** PEM client certificate and key (both or neither). */
  cert?: string;
  key?: string;
  insecureSkipTLSVerify?: boolean;
  /** Server name to verify instead of the URL's host (kubeconfig tls-server-name). */
  tlsServerName?: string;
  token?: TokenSource;
  /** Basic auth (kubeconfig username/password; old clusters). */
  username?: string;
  password?: string;
  /** Where this came from, for logs: "kubeconfig /path (context x)", "in-cluster", "--master". */
  origin: string;
}

/** The server URL without a trailing slash; only http and https. */
export function normalizeServer(url: string, field: string, fail: (field: string, reason: string) => never): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return fail(field, `not a URL: ${JSON.stringify(url)}`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') fail(field, `must be an http:// or https:// URL (got ${JSON.stringify(url)})`);
  if (u.search || u.hash) fail(field, 'must not carry a query or fragment');
  return u.toString().replace(/\/+$/, '');
}
