import { Etcd3, type IOptions } from 'etcd3';
import { StoreError } from '../../core/errors.js';

export interface KVEntry {
  key: string;
  value: string;
  /** etcd mod revision as a decimal string. */
  modRevision: string;
}

/** One condition of a transaction. */
export type KVCompare =
  | { key: string; absent: true }
  | { key: string; modRevision: string }
  | { key: string; value: string };

/** The slice of etcd the registry needs; a memory twin sits beside it for unit tests. */
export interface RegistryKV {
  get(key: string): Promise<KVEntry | undefined>;
  /** Entries under a prefix and the store revision they were read at. */
  list(prefix: string): Promise<{ entries: KVEntry[]; revision: string }>;
  /** All compares true -> apply puts and deletes atomically, return true; else change nothing, return false. */
  txn(compares: KVCompare[], puts: Array<{ key: string; value: string }>, deletes: string[]): Promise<boolean>;
}

/**
 * etcd client options for the registry: a full list of 10000 Services and
 * their slices is ~7 MB, over gRPC's 4 MB default receive limit.
 */
export function registryEtcdOptions(endpoints: string[]): IOptions {
  return { hosts: endpoints, dialTimeout: 5000, grpcOptions: { 'grpc.max_receive_message_length': 256 * 1024 * 1024 } };
}

export class EtcdKV implements RegistryKV {
  constructor(readonly client: Etcd3) {}

  static connect(endpoints: string[]): EtcdKV {
    return new EtcdKV(new Etcd3(registryEtcdOptions(endpoints)));
  }

  close(): void {
    this.client.close();
  }

  async get(key: string): Promise<KVEntry | undefined> {
    const r = await this.wrap(() => this.client.get(key).exec(), key);
    const kv = r.kvs[0];
    return kv ? { key, value: kv.value.toString(), modRevision: String(kv.mod_revision) } : undefined;
  }

  async list(prefix: string): Promise<{ entries: KVEntry[]; revision: string }> {
    const r = await this.wrap(() => this.client.getAll().prefix(prefix).exec(), prefix);
    return {
      entries: r.kvs.map((kv) => ({ key: kv.key.toString(), value: kv.value.toString(), modRevision: String(kv.mod_revision) })),
      revision: String(r.header.revision),
    };
  }

  async txn(compares: KVCompare[], puts: Array<{ key: string; value: string }>, deletes: string[]): Promise<boolean> {
    const ops = [...puts.map((p) => this.client.put(p.key).value(p.value)), ...deletes.map((k) => this.client.delete().key(k))];
    const [first, ...rest] = compares;
    if (!first) throw new StoreError('transaction without a condition');
    const add = (b: ReturnType<Etcd3['if']> | undefined, c: KVCompare) => {
      const args: [string, 'Version' | 'Mod' | 'Value', '==', string | number] =
        'absent' in c ? [c.key, 'Version', '==', 0] : 'modRevision' in c ? [c.key, 'Mod', '==', c.modRevision] : [c.key, 'Value', '==', c.value];
      return b ? b.and(...args) : this.client.if(...args);
    };
    let b = add(undefined, first);
    for (const c of rest) b = add(b, c);
    const r = await this.wrap(() => b.then(...ops).commit(), 'txn');
    return r.succeeded;
  }

  private async wrap<T>(fn: () => Promise<T>, what: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new StoreError(`etcd ${what}: ${(err as Error).message}`, { what }, { cause: err });
    }
  }
}

/** In-memory RegistryKV with etcd's revision semantics (unit tests). */
export class MemoryKV implements RegistryKV {
  private rev = 1;
  readonly data = new Map<string, { value: string; mod: number }>();
  /** Called before each txn commits (tests inject a racing writer). */
  beforeTxn?: () => void;

  put(key: string, value: string): void {
    this.data.set(key, { value, mod: ++this.rev });
  }

  async get(key: string): Promise<KVEntry | undefined> {
    const e = this.data.get(key);
    return e ? { key, value: e.value, modRevision: String(e.mod) } : undefined;
  }

  async list(prefix: string): Promise<{ entries: KVEntry[]; revision: string }> {
    const entries = [...this.data]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([key, e]) => ({ key, value: e.value, modRevision: String(e.mod) }));
    return { entries, revision: String(this.rev) };
  }

  async txn(compares: KVCompare[], puts: Array<{ key: string; value: string }>, deletes: string[]): Promise<boolean> {
    const hook = this.beforeTxn;
    this.beforeTxn = undefined;
    hook?.();
    const ok = compares.every((c) => {
      const e = this.data.get(c.key);
      if ('absent' in c) return !e;
      if ('modRevision' in c) return !!e && String(e.mod) === c.modRevision;
      return !!e && e.value === c.value;
    });
    if (!ok) return false;
    this.rev++;
    for (const p of puts) this.data.set(p.key, { value: p.value, mod: this.rev });
    for (const k of deletes) this.data.delete(k);
    return true;
  }
}
