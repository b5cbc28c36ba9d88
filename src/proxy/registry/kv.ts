import { StoreError } from '../../core/errors.js';
import { EtcdClient, type Compare, type EtcdClientOptions, type TxnOp } from '../../etcd/index.js';

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
 * etcd client options for the registry. A full list of 10000 Services and
 * their slices is ~7 MB: the client reads it in pages of 1000 keys at one
 * revision, so no answer comes near its size limit.
 */
export function registryEtcdOptions(endpoints: string[]): EtcdClientOptions {
  return { endpoints };
}

export class EtcdKV implements RegistryKV {
  constructor(readonly client: EtcdClient) {}

  static connect(endpoints: string[]): EtcdKV {
    return new EtcdKV(new EtcdClient(registryEtcdOptions(endpoints)));
  }

  close(): void {
    this.client.close();
  }

  async get(key: string): Promise<KVEntry | undefined> {
    const kv = await this.wrap(() => this.client.get(key), key);
    return kv ? { key, value: kv.value, modRevision: kv.modRevision } : undefined;
  }

  async list(prefix: string): Promise<{ entries: KVEntry[]; revision: string }> {
    const r = await this.wrap(() => this.client.list(prefix), prefix);
    return {
      entries: r.kvs.map((kv) => ({ key: kv.key, value: kv.value, modRevision: kv.modRevision })),
      revision: r.revision,
    };
  }

  async txn(compares: KVCompare[], puts: Array<{ key: string; value: string }>, deletes: string[]): Promise<boolean> {
    if (compares.length === 0) throw new StoreError('transaction without a condition');
    const compare = compares.map(
      (c): Compare =>
        'absent' in c
          ? { key: c.key, target: 'version', op: '==', value: 0 }
          : 'modRevision' in c
            ? { key: c.key, target: 'mod', op: '==', value: c.modRevision }
            : { key: c.key, target: 'value', op: '==', value: c.value },
    );
    const success: TxnOp[] = [...puts.map((p) => ({ put: { key: p.key, value: p.value } })), ...deletes.map((k) => ({ deleteRange: { key: k } }))];
    const r = await this.wrap(() => this.client.txn({ compare, success }), 'txn');
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
