import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { delay } from '../../core/async.js';
import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { ProxyObject } from '../model/k8s.js';
import { REGISTRY_PREFIX, parseObjectPath } from '../registry/registry.js';
import { acceptObject, type ProxySink, type ProxySource } from './source.js';

export interface EtcdSourceOptions {
  client: Etcd3;
  log: Logger;
  /** Pause before relisting after an error. Default 1000 ms. */
  retryMs?: number;
}

/**
 * Services and endpoints from /weft/registry/ in etcd: list, then watch from
 * the list's revision + 1. When the watch is cancelled (compaction past our
 * revision) or fails, list again - a relist replaces the whole set, so
 * nothing missed survives (flannel's bug 2470 was the opposite).
 */
export class EtcdSource implements ProxySource {
  readonly name = 'etcd';
  relists = 0;

  constructor(private readonly o: EtcdSourceOptions) {}

  async run(sink: ProxySink, signal: AbortSignal): Promise<void> {
    const { client, log } = this.o;
    while (!signal.aborted) {
      let watcher: Watcher | undefined;
      try {
        const res = await client.getAll().prefix(REGISTRY_PREFIX).exec();
        const objects: ProxyObject[] = [];
        for (const kv of res.kvs) {
          const o = this.parse(kv, sink);
          if (o) objects.push(o);
        }
        sink.replace(this.name, objects);
        this.relists++;
        log.info({ source: this.name, objects: objects.length, revision: res.header.revision }, 'listed registry');
        const start = (BigInt(res.header.revision) + 1n).toString();
        watcher = await client.watch().prefix(REGISTRY_PREFIX).startRevision(start).create();
        await new Promise<void>((resolve) => {
          const w = watcher!;
          w.on('put', (kv) => {
            const o = this.parse(kv, sink);
            const id = parseObjectPath(kv.key.toString());
            if (o) sink.upsert(this.name, o);
            else if (id) sink.remove(this.name, `${id.kind}/${id.namespace}/${id.name}`);
          });
          w.on('delete', (kv) => {
            const id = parseObjectPath(kv.key.toString());
            if (id) sink.remove(this.name, `${id.kind}/${id.namespace}/${id.name}`);
          });
          w.on('error', (err) => {
            log.warn({ source: this.name, err: errorMessage(err) }, 'registry watch cancelled (compaction?); relisting');
            resolve();
          });
          signal.addEventListener('abort', () => resolve(), { once: true });
        });
      } catch (err) {
        if (signal.aborted) break;
        log.warn({ source: this.name, err: errorMessage(err) }, 'registry list/watch failed; retrying');
        await delay(this.o.retryMs ?? 1000, signal).catch(() => {});
      } finally {
        await watcher?.cancel().catch(() => {});
      }
    }
  }

  private parse(kv: IKeyValue, sink: ProxySink): ProxyObject | undefined {
    const key = kv.key.toString();
    const id = parseObjectPath(key);
    if (!id) return undefined;
    let raw: unknown;
    try {
      raw = JSON.parse(kv.value.toString());
    } catch (err) {
      sink.refused(this.name, err);
      this.o.log.warn({ source: this.name, key, err: errorMessage(err) }, 'registry value is not JSON');
      return undefined;
    }
    const o = acceptObject(raw, this.name, sink, this.o.log);
    if (o && (o.metadata.name !== id.name || (o.metadata.namespace ?? 'default') !== id.namespace || o.kind !== id.kind)) {
      this.o.log.warn({ source: this.name, key }, 'registry key does not match the object it holds; ignored');
      return undefined;
    }
    return o;
  }
}
