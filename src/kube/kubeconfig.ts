import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { normalizeServer, type KubeConnection } from './config.js';
import { KubeAuthUnsupportedError, KubeConfigError } from './errors.js';
import { FileTokenSource, staticToken } from './token.js';

export interface KubeconfigOptions {
  /** Use this context instead of current-context. */
  context?: string;
  /** Overrides the cluster's server (`--master` given with `--kubeconfig`). */
  server?: string;
}

type Rec = Record<string, unknown>;

const fail = (field: string, reason: string): never => {
  throw new KubeConfigError(field, reason);
};

function isRec(v: unknown): v is Rec {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

function str(o: Rec, key: string, field: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') fail(`${field}.${key}`, 'must be a string');
  return v as string;
}

/** Finds the named entry of a kubeconfig list (clusters, users, contexts). */
function named(doc: Rec, list: string, name: string, inner: string): Rec {
  const arr = doc[list];
  if (arr !== undefined && arr !== null && !Array.isArray(arr)) fail(list, 'must be a list');
  const entry = ((arr as unknown[] | undefined) ?? []).find((e) => isRec(e) && e.name === name) as Rec | undefined;
  if (!entry) return fail(list, `no entry named ${JSON.stringify(name)}`);
  const v = entry[inner] ?? {};
  if (!isRec(v)) fail(`${list}[${name}].${inner}`, 'must be a mapping');
  return v as Rec;
}

/** Inline base64 data (`*-data`) or a file (relative to the kubeconfig's directory). */
function material(o: Rec, key: string, field: string, base: string): string | undefined {
  const data = str(o, `${key}-data`, field);
  if (data !== undefined) {
    const text = Buffer.from(data, 'base64').toString('utf8');
    if (!text.includes('-----BEGIN')) fail(`${field}.${key}-data`, 'is not base64 of a PEM block');
    return text;
  }
  const file = str(o, key, field);
  if (file === undefined) return undefined;
  const path = isAbsolute(file) ? file : resolve(base, file);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    return fail(`${field}.${key}`, `cannot read ${path}: ${(err as Error).message}`);
  }
}

/**
 * Loads a kubeconfig file as kube-proxy and kubectl read it: the current
 * context (or `opts.context`), its cluster (server, certificate-authority
 * (-data), insecure-skip-tls-verify, tls-server-name) and user
 * (client-certificate(-data)/client-key(-data), token, tokenFile,
 * username/password). `exec` and `auth-provider` users are refused with a
 * typed error naming the user: running credential plugins is out of scope.
 */
export function loadKubeconfig(path: string, opts: KubeconfigOptions = {}): KubeConnection {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new KubeConfigError('--kubeconfig', `cannot read ${path}: ${(err as Error).message}`, { path });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new KubeConfigError('--kubeconfig', `${path} is not YAML: ${(err as Error).message}`, { path });
  }
  if (!isRec(doc)) throw new KubeConfigError('--kubeconfig', `${path} is not a kubeconfig (no mapping at the top)`, { path });
  return fromKubeconfig(doc, dirname(resolve(path)), `kubeconfig ${path}`, opts);
}

/** The parsed-document half of loadKubeconfig (tests, embedded configs). */
export function fromKubeconfig(doc: Rec, base: string, origin: string, opts: KubeconfigOptions = {}): KubeConnection {
  const ctxName = opts.context ?? str(doc, 'current-context', 'kubeconfig');
  if (!ctxName) return fail('current-context', 'is not set (and no context was chosen)');
  const ctx = named(doc, 'contexts', ctxName, 'context');
  const clusterName = str(ctx, 'cluster', `contexts[${ctxName}].context`) ?? fail(`contexts[${ctxName}].context.cluster`, 'is required');
  const cluster = named(doc, 'clusters', clusterName, 'cluster');
  const cf = `clusters[${clusterName}].cluster`;
  const userName = str(ctx, 'user', `contexts[${ctxName}].context`);
  const user = userName ? named(doc, 'users', userName, 'user') : {};
  const uf = `users[${userName}].user`;
  if (userName && user.exec !== undefined && user.exec !== null) throw new KubeAuthUnsupportedError(userName, 'exec');
  if (userName && user['auth-provider'] !== undefined && user['auth-provider'] !== null) throw new KubeAuthUnsupportedError(userName, 'auth-provider');

  const rawServer = opts.server ?? str(cluster, 'server', cf) ?? fail(`${cf}.server`, 'is required');
  const server = normalizeServer(rawServer, opts.server ? '--master' : `${cf}.server`, fail);
  const insecure = cluster['insecure-skip-tls-verify'];
  if (insecure !== undefined && typeof insecure !== 'boolean') fail(`${cf}.insecure-skip-tls-verify`, 'must be true or false');
  const ca = material(cluster, 'certificate-authority', cf, base);
  const cert = material(user, 'client-certificate', uf, base);
  const key = material(user, 'client-key', uf, base);
  if (!!cert !== !!key) fail(uf, 'client-certificate and client-key must be given together');
  const token = str(user, 'token', uf);
  const tokenFile = str(user, 'tokenFile', uf);
  const username = str(user, 'username', uf);
  const password = str(user, 'password', uf);
  return {
    server,
    ca,
    cert,
    key,
    insecureSkipTLSVerify: insecure === true,
    tlsServerName: str(cluster, 'tls-server-name', cf),
    // An inline token wins over tokenFile, as in client-go.
    token: token !== undefined ? staticToken(token) : tokenFile !== undefined ? new FileTokenSource(isAbsolute(tokenFile) ? tokenFile : resolve(base, tokenFile)) : undefined,
    username,
    password,
    origin: `${origin} (context ${ctxName})`,
  };
}
