import { watch, type FSWatcher } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { delay } from '../../core/async.js';
import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { forEachManifest } from '../model/manifest.js';
import { recordKey, toRecord, type ModelRecord } from '../model/records.js';
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

  /**
   * Reads every manifest file, one at a time, and returns the model's slim
   * records: a file's text and parsed documents are garbage before the next
   * file is read, so the peak is one file's worth, not the directory's.
   * A file with a syntax error is refused whole; later files win over
   * earlier ones for the same object.
   */
  async scan(sink: ProxySink): Promise<ModelRecord[]> {
    const files = (await readdir(this.o.dir).catch(() => [] as string[])).filter((f) => /\.(ya?ml|json)$/.test(f) && !f.startsWith('.')).sort();
    const records = new Map<string, ModelRecord>();
    for (const f of files) {
      // Plain documents first (small next to the YAML syntax tree), validated once the whole file parsed.
      const docs: unknown[] = [];
      try {
        forEachManifest(await readFile(join(this.o.dir, f), 'utf8'), f, (d) => docs.push(d));
      } catch (err) {
        sink.refused(this.name, err);
        this.o.log.warn({ source: this.name, file: f, err: errorMessage(err) }, 'refused manifest file');
        continue;
      }
      for (let i = 0; i < docs.length; i++) {
        const obj = acceptObject(docs[i], `${this.name}:${f}`, sink, this.o.log, { requireAllocated: true });
        docs[i] = undefined; // the full object is garbage once its record exists
        if (!obj) continue;
        const r = toRecord(obj);
        records.set(recordKey(r), r);
      }
    }
    this.scans++;
    return [...records.values()];
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
