import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { ProxyObject } from '../model/k8s.js';
import type { ProxyModel } from '../model/model.js';
import { recordKey, sameRecord, toRecord, type ModelInput, type ModelRecord } from '../model/records.js';
import { validateObject, type ValidateOptions } from '../model/validate.js';

/**
 * Where sources report what they see. Objects may be handed over whole or
 * as the model's slim records (toRecord); the sink keeps only records.
 */
export interface ProxySink {
  /** A complete listing from one source (first list, relist after compaction or a rescan). */
  replace(source: string, objects: readonly ModelInput[]): void;
  upsert(source: string, obj: ModelInput): void;
  /** `key` is objectKey(): "Kind/ns/name". */
  remove(source: string, key: string): void;
  /** Counts an object the source refused (metrics). */
  refused(source: string, err: unknown): void;
}

/** A producer of Services and endpoints (etcd, a manifest directory, later a Kubernetes API). */
export interface ProxySource {
  readonly name: string;
  /** Lists, then follows changes until the signal fires. Calls `replace` once listed. */
  run(sink: ProxySink, signal: AbortSignal): Promise<void>;
}

/**
 * Validates untrusted input from a source: the object, or undefined after
 * logging which object and field was wrong.
 */
export function acceptObject(raw: unknown, source: string, sink: ProxySink, log: Logger, opts: ValidateOptions & { requireAllocated?: boolean } = {}): ProxyObject | undefined {
  try {
    return validateObject(raw, opts);
  } catch (err) {
    sink.refused(source, err);
    log.warn({ source, err: errorMessage(err) }, 'refused invalid object');
    return undefined;
  }
}

/**
 * Merges several sources into the model. An object present in more than one
 * source is taken from the earliest source in `order`. Rules are written only
 * after every source has listed once (`onReady`); every change pokes `onChange`.
 * Per source it remembers each object's slim record (the model's own), never
 * the whole object.
 */
export class SourceMux implements ProxySink {
  private readonly bySource = new Map<string, Map<string, ModelRecord>>();
  private readonly synced = new Set<string>();

  constructor(
    private readonly model: ProxyModel,
    private readonly order: string[],
    private readonly hooks: { onChange: () => void; onReady: () => void; onRefused?: (source: string) => void },
  ) {
    for (const s of order) this.bySource.set(s, new Map());
  }

  get ready(): boolean {
    return this.order.every((s) => this.synced.has(s));
  }

  replace(source: string, objects: readonly ModelInput[]): void {
    const mine = this.bySource.get(source)!;
    const next = new Map<string, ModelRecord>();
    for (const o of objects) {
      const r = toRecord(o);
      next.set(recordKey(r), r);
    }
    let changed = false;
    for (const key of [...mine.keys()]) if (!next.has(key)) changed = this.set(source, key, undefined) || changed;
    for (const [key, r] of next) changed = this.set(source, key, r) || changed;
    const first = !this.synced.has(source);
    const wasReady = this.ready;
    this.synced.add(source);
    if (!wasReady && this.ready) this.hooks.onReady();
    // A rescan or relist that found nothing new is no change (no sync, no work).
    if (changed || first) this.hooks.onChange();
  }

  upsert(source: string, obj: ModelInput): void {
    const r = toRecord(obj);
    this.set(source, recordKey(r), r);
    this.hooks.onChange();
  }

  remove(source: string, key: string): void {
    this.set(source, key, undefined);
    this.hooks.onChange();
  }

  refused(source: string): void {
    this.hooks.onRefused?.(source);
  }

  private effective(key: string): ModelRecord | undefined {
    for (const s of this.order) {
      const o = this.bySource.get(s)!.get(key);
      if (o) return o;
    }
    return undefined;
  }

  /** Records `obj` (undefined: removed) for `source`; true when the source's view changed. */
  private set(source: string, key: string, obj: ModelRecord | undefined): boolean {
    const mine = this.bySource.get(source)!;
    const have = mine.get(key);
    if (obj === undefined && have === undefined) return false;
    // Unchanged: keep the record the model already holds.
    if (obj !== undefined && have !== undefined && sameRecord(have, obj)) return false;
    const before = this.effective(key);
    if (obj) mine.set(key, obj);
    else mine.delete(key);
    const after = this.effective(key);
    if (after === before) return true;
    if (after) this.model.upsert(after);
    else {
      const [kind, ...rest] = key.split('/');
      this.model.remove(kind as ProxyObject['kind'], rest.join('/'));
    }
    return true;
  }
}
