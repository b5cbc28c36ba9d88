import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isIPv6 } from 'node:net';
import type { KubeConnection } from './config.js';
import { KubeConfigError } from './errors.js';
import { FileTokenSource } from './token.js';

/** Where a pod finds its service account. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface InClusterOptions {
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Default SERVICE_ACCOUNT_DIR (tests: a temp dir with token and ca.crt). */
  dir?: string;
  /** How often the token file's mtime is checked. Default 10 s. */
  tokenCheckMs?: number;
}

/** True when KUBERNETES_SERVICE_HOST and _PORT are set, i.e. we run in a pod. */
export function isInCluster(env: NodeJS.ProcessEnv = process.env): boolean {
  return !!env.KUBERNETES_SERVICE_HOST && !!env.KUBERNETES_SERVICE_PORT;
}

/**
 * client-go's rest.InClusterConfig: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT,
 * the service account's ca.crt and token (re-read when the kubelet rotates it).
 */
export function inClusterConfig(opts: InClusterOptions = {}): KubeConnection {
  const env = opts.env ?? process.env;
  const dir = opts.dir ?? SERVICE_ACCOUNT_DIR;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new KubeConfigError('KUBERNETES_SERVICE_HOST', 'in-cluster configuration needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT');
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) throw new KubeConfigError('KUBERNETES_SERVICE_PORT', `not a port: ${JSON.stringify(port)}`);
  if (!/^[A-Za-z0-9.:-]+$/.test(host)) throw new KubeConfigError('KUBERNETES_SERVICE_HOST', `not a host: ${JSON.stringify(host)}`);
  const caPath = join(dir, 'ca.crt');
  let ca: string;
  try {
    ca = readFileSync(caPath, 'utf8');
  } catch (err) {
    throw new KubeConfigError('in-cluster ca.crt', `cannot read ${caPath}: ${(err as Error).message}`, { path: caPath });
  }
  return {
    server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
    ca,
    token: new FileTokenSource(join(dir, 'token'), opts.tokenCheckMs ?? 10_000),
    origin: 'in-cluster',
  };
}
