import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { objectKey, type ProxyObject } from '../model/k8s.js';
import type { ProxyModel } from '../model/model.js';
import { validateObject, type ValidateOptions } from '../model/validate.js';

/** Where sources report what they see. */
export interface ProxySink {
  /** A complete listing from one source (first list, relist after compaction or a rescan). */
  replace(source: string, objects: ProxyObject[]): void;
  upsert(source: string, obj: ProxyObject): void;
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
 */
export class SourceMux implements ProxySink {
  private readonly bySource = new Map<string, Map<string, ProxyObject>>();
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

  replace(source: string, objects: ProxyObject[]): void {
    const mine = this.bySource.get(source)!;
    const next = new Map(objects.map((o) => [objectKey(o), o]));
    const keys = new Set([...mine.keys(), ...next.keys()]);
    for (const key of keys) this.set(source, key, next.get(key));
    const wasReady = this.ready;
    this.synced.add(source);
    if (!wasReady && this.ready) this.hooks.onReady();
    this.hooks.onChange();
  }

  upsert(source: string, obj: ProxyObject): void {
    this.set(source, objectKey(obj), obj);
    this.hooks.onChange();
  }

  remove(source: string, key: string): void {
    this.set(source, key, undefined);
    this.hooks.onChange();
  }

  refused(source: string): void {
    this.hooks.onRefused?.(source);
  }

  private effective(key: string): ProxyObject | undefined {
    for (const s of this.order) {
      const o = this.bySource.get(s)!.get(key);
      if (o) return o;
    }
    return undefined;
  }

  private set(source: string, key: string, obj: ProxyObject | undefined): void {
    const mine = this.bySource.get(source)!;
    if (obj === undefined && !mine.has(key)) return;
    const before = this.effective(key);
    if (obj) mine.set(key, obj);
    else mine.delete(key);
    const after = this.effective(key);
    if (after === before) return;
    if (after) this.model.upsert(after);
    else {
      const [kind, ...rest] = key.split('/');
      this.model.remove(kind as ProxyObject['kind'], rest.join('/'));
    }
  }
}
