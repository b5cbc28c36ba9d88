import { delay } from '../../core/async.js';
import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { EtcdClient, EtcdWatch, KeyValue } from '../../etcd/index.js';
import type { ProxyObject } from '../model/k8s.js';
import { toRecord, type ModelRecord } from '../model/records.js';
import { REGISTRY_PREFIX, parseObjectPath } from '../registry/registry.js';
import { acceptObject, type ProxySink, type ProxySource } from './source.js';

export interface EtcdSourceOptions {
  client: EtcdClient;
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
      let watch: EtcdWatch | undefined;
      let onAbort: (() => void) | undefined;
      try {
        const res = await client.list(REGISTRY_PREFIX);
        // Slim records as they are parsed: 20 000 whole objects are not kept for the replace.
        const objects: ModelRecord[] = [];
        for (const kv of res.kvs) {
          const o = this.parse(kv, sink);
          if (o) objects.push(toRecord(o));
        }
        sink.replace(this.name, objects);
        this.relists++;
        log.info({ source: this.name, objects: objects.length, revision: res.revision }, 'listed registry');
        const start = (BigInt(res.revision) + 1n).toString();
        await new Promise<void>((resolve) => {
          onAbort = () => resolve();
          signal.addEventListener('abort', onAbort, { once: true });
          watch = client.watch(
            REGISTRY_PREFIX,
            { prefix: true, startRevision: start },
            {
              onEvents: (r) => {
                for (const ev of r.events) {
                  const id = parseObjectPath(ev.kv.key);
                  if (ev.type === 'delete') {
                    if (id) sink.remove(this.name, `${id.kind}/${id.namespace}/${id.name}`);
                    continue;
                  }
                  const o = this.parse(ev.kv, sink);
                  if (o) sink.upsert(this.name, o);
                  else if (id) sink.remove(this.name, `${id.kind}/${id.namespace}/${id.name}`);
                }
              },
              onError: (err) => {
                log.warn({ source: this.name, err: errorMessage(err) }, 'registry watch ended (compaction, cancel or etcd gone); relisting');
                resolve();
              },
            },
          );
        });
      } catch (err) {
        if (signal.aborted) break;
        log.warn({ source: this.name, err: errorMessage(err) }, 'registry list/watch failed; retrying');
        await delay(this.o.retryMs ?? 1000, signal).catch(() => {});
      } finally {
        if (onAbort) signal.removeEventListener('abort', onAbort);
        watch?.cancel();
      }
    }
  }

  private parse(kv: KeyValue, sink: ProxySink): ProxyObject | undefined {
    const key = kv.key;
    const id = parseObjectPath(key);
    if (!id) return undefined;
    let raw: unknown;
    try {
      raw = JSON.parse(kv.value);
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
