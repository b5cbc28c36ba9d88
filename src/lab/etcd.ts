import { join } from 'node:path';
import { run } from '../exec/run.js';
import { ETCD_ENDPOINT, ETCD_IP } from './names.js';
import { LabProcessError } from './errors.js';
import { type ProcIdentity, waitWhileAlive } from './procs.js';

/**
 * etcd inside the switch namespace. The root namespace has no route to
 * 192.0.2.254 (the lab adds none), so the lab talks to etcd from inside the
 * switch namespace with curl and etcd's v3 JSON gateway.
 */

/** argv for a single-member etcd on the underlay; peers stay on the switch's loopback. */
export function etcdArgv(id: string, dataDir: string): string[] {
  return [
    '/usr/bin/etcd',
    '--name', `lab-${id}`,
    '--data-dir', dataDir,
    '--listen-client-urls', `${ETCD_ENDPOINT},http://127.0.0.1:2379`,
    '--advertise-client-urls', ETCD_ENDPOINT,
    '--listen-peer-urls', 'http://127.0.0.1:2380',
    '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
    '--initial-cluster', `lab-${id}=http://127.0.0.1:2380`,
    '--log-level', 'warn',
  ];
}

export const etcdDataDir = (labDir: string): string => join(labDir, 'etcd');

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');

/** POST to etcd's JSON gateway from inside the switch namespace. */
async function gateway(switchNetns: string, path: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await run(
    'curl',
    ['-sS', '--max-time', '5', '-X', 'POST', '-H', 'Content-Type: application/json', '--data-binary', '@-', `${ETCD_ENDPOINT}${path}`],
    { netns: switchNetns, input: JSON.stringify(body), timeoutMs: 10_000 },
  );
  const parsed = JSON.parse(r.stdout || '{}') as Record<string, unknown>;
  if (typeof parsed.error === 'string' || typeof parsed.code === 'number') {
    throw new LabProcessError(`etcd ${path}: ${String(parsed.error ?? parsed.message)}`, { path });
  }
  return parsed;
}

/** Client for the lab's etcd, usable from the root namespace (tests, weftctl). */
export interface LabEtcd {
  readonly endpoint: string;
  put(key: string, value: string): Promise<void>;
  get(key: string): Promise<string | undefined>;
  /** Keys and values under a prefix. */
  list(prefix: string): Promise<Array<{ key: string; value: string }>>;
  /** Deletes a key (or every key under it with `prefix: true`); returns how many went. */
  del(key: string, opts?: { prefix?: boolean }): Promise<number>;
  healthy(): Promise<boolean>;
}

/** etcd's range_end for "every key starting with prefix". */
export function prefixEnd(prefix: string): string {
  const buf = Buffer.from(prefix, 'utf8');
  for (let i = buf.length - 1; i >= 0; i--) {
    if (buf[i]! < 0xff) {
      buf[i] = buf[i]! + 1;
      return buf.subarray(0, i + 1).toString('base64');
    }
  }
  return Buffer.from([0]).toString('base64');
}

export function labEtcdClient(switchNetns: string): LabEtcd {
  return {
    endpoint: ETCD_ENDPOINT,
    async put(key, value) {
      await gateway(switchNetns, '/v3/kv/put', { key: b64(key), value: b64(value) });
    },
    async get(key) {
      const r = await gateway(switchNetns, '/v3/kv/range', { key: b64(key) });
      const kvs = (r.kvs ?? []) as Array<{ value?: string }>;
      return kvs[0] ? unb64(kvs[0].value ?? '') : undefined;
    },
    async list(prefix) {
      const r = await gateway(switchNetns, '/v3/kv/range', { key: b64(prefix), range_end: prefixEnd(prefix) });
      const kvs = (r.kvs ?? []) as Array<{ key: string; value?: string }>;
      return kvs.map((kv) => ({ key: unb64(kv.key), value: unb64(kv.value ?? '') }));
    },
    async del(key, opts = {}) {
      const body: Record<string, string> = { key: b64(key) };
      if (opts.prefix) body.range_end = prefixEnd(key);
      const r = await gateway(switchNetns, '/v3/kv/deleterange', body);
      return Number(r.deleted ?? 0);
    },
    async healthy() {
      const r = await run('curl', ['-sS', '--max-time', '2', `http://${ETCD_IP}:2379/health`], {
        netns: switchNetns,
        allowFail: true,
        timeoutMs: 5000,
      });
      return r.code === 0 && /"health"\s*:\s*"true"/.test(r.stdout);
    },
  };
}

/** Bounded poll of etcd's /health; the error carries the log tail. */
export async function waitEtcdHealthy(
  etcd: LabEtcd,
  proc: ProcIdentity,
  log: string,
  timeoutMs = 30_000,
  signal?: AbortSignal,
): Promise<void> {
  await waitWhileAlive(() => etcd.healthy(), { proc, name: 'etcd', log, what: 'health', timeoutMs, signal });
}
