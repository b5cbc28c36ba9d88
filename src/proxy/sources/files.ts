import { watch, type FSWatcher } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { delay } from '../../core/async.js';
import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { ProxyObject } from '../model/k8s.js';
import { objectKey } from '../model/k8s.js';
import { parseManifests } from '../model/manifest.js';
import { acceptObject, type ProxySink, type ProxySource } from './source.js';

export interface FileSourceOptions {
  dir: string;
  log: Logger;
  /** Rescan at least this often, in case a change notification was missed. Default 30 s. */
  rescanMs?: number;
  /** Coalesce bursts of file events. Default 100 ms. */
  debounceMs?: number;
}

/**
 * Services and endpoints from `*.yaml|*.yml|*.json` files in a directory
 * (`--manifests DIR`), watched. Each scan replaces the whole set; invalid
 * documents are refused one by one, the rest still apply. Without an API
 * server, Services here must carry their ClusterIP (and node ports).
 */
export class FileSource implements ProxySource {
  readonly name = 'manifests';
  scans = 0;

  constructor(private readonly o: FileSourceOptions) {}

  async scan(sink: ProxySink): Promise<ProxyObject[]> {
    const files = (await readdir(this.o.dir).catch(() => [] as string[])).filter((f) => /\.(ya?ml|json)$/.test(f) && !f.startsWith('.')).sort();
    const objects = new Map<string, ProxyObject>();
    for (const f of files) {
      let docs: unknown[];
      try {
        docs = parseManifests(await readFile(join(this.o.dir, f), 'utf8'), f);
      } catch (err) {
        sink.refused(this.name, err);
        this.o.log.warn({ source: this.name, file: f, err: errorMessage(err) }, 'refused manifest file');
        continue;
      }
      for (const d of docs) {
        const obj = acceptObject(d, `${this.name}:${f}`, sink, this.o.log, { requireAllocated: true });
        if (obj) objects.set(objectKey(obj), obj);
      }
    }
    this.scans++;
    return [...objects.values()];
  }

  async run(sink: ProxySink, signal: AbortSignal): Promise<void> {
    let dirty = true;
    let wake: (() => void) | undefined;
    const poke = () => {
      dirty = true;
      wake?.();
    };
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(this.o.dir, { persistent: false }, poke);
      watcher.on('error', (err) => this.o.log.warn({ source: this.name, err: errorMessage(err) }, 'manifest watch failed; relying on rescans'));
    } catch (err) {
      this.o.log.warn({ source: this.name, dir: this.o.dir, err: errorMessage(err) }, 'cannot watch manifest directory; relying on rescans');
    }
    const rescan = setInterval(poke, this.o.rescanMs ?? 30_000);
    rescan.unref();
    signal.addEventListener('abort', () => wake?.(), { once: true });
    try {
      while (!signal.aborted) {
        if (dirty) {
          dirty = false;
          await delay(this.o.debounceMs ?? 100, signal).catch(() => {});
          if (signal.aborted) break;
          sink.replace(this.name, await this.scan(sink));
          continue;
        }
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    } finally {
      clearInterval(rescan);
      watcher?.close();
    }
  }
}
