import type { IncomingMessage } from 'node:http';
import { delay } from '../core/async.js';
import { AbortedError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import type { KubeClient } from './client.js';
import { KubeApiError, KubeGoneError, KubeProtocolError, KubeWatchTimeoutError } from './errors.js';
import { LineSplitter } from './lines.js';

/** The part of every API object the informer reads. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; [k: string]: unknown };
  [k: string]: unknown;
}

interface KubeList {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: unknown[];
}

interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: KubeObject & { code?: number; reason?: string; message?: string };
}

export type InformerEvent<T> =
  | { type: 'added'; key: string; obj: T }
  | { type: 'updated'; key: string; obj: T; old: T }
  | { type: 'deleted'; key: string; old: T };

export interface InformerOptions<T> {
  client: KubeClient;
  /** Collection path: /api/v1/services, /apis/discovery.k8s.io/v1/endpointslices, /api/v1/nodes. */
  path: string;
  /** Stamped on list items (the API leaves kind/apiVersion out of a list's items). */
  kind?: string;
  apiVersion?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Page size of lists (limit/continue). Default 500; 0: one page. */
  pageSize?: number;
  /** Server-side watch length (timeoutSeconds). Default 300 s +-20 %, as client-go spreads them. */
  watchTimeoutSeconds?: number;
  /** No byte on a watch (events, bookmarks) for this long: reconnect. Default watchTimeout + 30 s. */
  idleTimeoutMs?: number;
  backoff?: BackoffOptions;
  /**
   * What the store keeps of an object (a slim record, a converted form);
   * undefined: the object is ignored (treated as absent). Default: the object.
   */
  transform?: (obj: KubeObject) => T | undefined;
  /** Called for every change; after a relist, only for what differs from the store. */
  onEvent?: (ev: InformerEvent<T>) => void;
  /** Called after every complete list (first and relists), after its events. */
  onListed?: (info: { objects: number; resourceVersion: string; relist: boolean }) => void;
  log?: Logger;
}

interface Entry<T> {
  rv: string;
  obj: T | undefined;
}

/** "ns/name" or "name": client-go's MetaNamespaceKeyFunc. */
export function objectKeyOf(o: { metadata: { name: string; namespace?: string } }): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

/** The watch ended and should be opened again from the same resourceVersion (not an error). */
class WatchEnded extends Error {
  constructor(readonly gotData: boolean) {
    super('watch ended');
  }
}

/**
 * client-go's reflector + store, reduced: list (paged) then watch from the
 * list's resourceVersion, following bookmarks. 410 Gone - as the status of
 * a list or watch, or as an ERROR event - relists, and the relist is
 * diffed against the store by resourceVersion, so objects that did not
 * change raise no event (no rule rewrite). Errors back off exponentially
 * with jitter; a watch silent for longer than the idle timeout is
 * reconnected. Independent of its users (weft-proxy's source, weftd's Node
 * watcher).
 */
export class Informer<T = KubeObject> {
  private readonly store = new Map<string, Entry<T>>();
  private rv = '';
  private listedOnce = false;
  private resolveSynced!: () => void;
  private rejectSynced!: (err: unknown) => void;
  /** Resolves after the first complete list (rejects if stopped before). */
  readonly synced: Promise<void>;
  readonly stats = { lists: 0, relists: 0, watches: 0, errors: 0, events: 0, bookmarks: 0 };
  private readonly backoff: Backoff;

  constructor(private readonly o: InformerOptions<T>) {
    this.synced = new Promise<void>((res, rej) => {
      this.resolveSynced = res;
      this.rejectSynced = rej;
    });
    this.synced.catch(() => {});
    this.backoff = new Backoff(o.backoff);
  }

  get hasSynced(): boolean {
    return this.listedOnce;
  }

  get resourceVersion(): string {
    return this.rv;
  }

  get(key: string): T | undefined {
    return this.store.get(key)?.obj;
  }

  /** The objects kept (transform's values). */
  list(): T[] {
    const out: T[] = [];
    for (const e of this.store.values()) if (e.obj !== undefined) out.push(e.obj);
    return out;
  }

  keys(): string[] {
    return [...this.store.keys()].filter((k) => this.store.get(k)!.obj !== undefined);
  }

  /** Lists and watches until the signal fires. Never throws for API errors: retries. */
  async run(signal: AbortSignal): Promise<void> {
    const log = this.o.log;
    let needList = true;
    try {
      while (!signal.aborted) {
        try {
          if (needList) {
            await this.listAll(signal);
            needList = false;
            this.backoff.reset();
          }
          await this.watchOnce(signal);
        } catch (err) {
          if (signal.aborted) break;
          if (err instanceof WatchEnded) {
            // Ended at once without a byte, again and again (a proxy cutting watches): do not spin.
            if (!err.gotData) await delay(this.backoff.next(), signal).catch(() => {});
            continue;
          }
          // 410 on a watch: relist at once. (410 on the list itself falls through to the backoff: no tight loop.)
          if (err instanceof KubeGoneError && !needList) {
            log?.info({ path: this.o.path, resourceVersion: this.rv }, 'resourceVersion too old (410 Gone); relisting');
            needList = true;
            continue;
          }
          this.stats.errors++;
          const wait = this.backoff.next();
          log?.warn({ path: this.o.path, err: errorMessage(err), code: (err as { code?: string }).code, retryMs: wait, attempt: this.backoff.attempts }, needList ? 'list failed; retrying' : 'watch failed; reconnecting');
          // A watch refused for a reason other than 410 (e.g. 500 after a restart) resumes from our RV;
          // a list failure lists again.
          await delay(wait, signal).catch(() => {});
        }
      }
    } finally {
      if (!this.listedOnce) this.rejectSynced(new AbortedError());
    }
  }

  private query(extra: Record<string, string | number | boolean | undefined>): Record<string, string | number | boolean | undefined> {
    return { labelSelector: this.o.labelSelector, fieldSelector: this.o.fieldSelector, ...extra };
  }

  /** A complete (paged) list; folds it into the store as a diff. */
  private async listAll(signal: AbortSignal): Promise<void> {
    const pageSize = this.o.pageSize ?? 500;
    let paged = pageSize > 0;
    for (;;) {
      const seen = new Map<string, Entry<T>>();
      let cont: string | undefined;
      let rv = '';
      try {
        do {
          const page = await this.o.client.get<KubeList>(this.o.path, { signal, query: this.query({ limit: paged ? pageSize : undefined, continue: cont }) });
          if (!page || !Array.isArray(page.items)) throw new KubeProtocolError(`GET ${this.o.path}: answer has no items list`, { path: this.o.path });
          for (const raw of page.items) {
            const obj = this.stamp(raw);
            if (!obj) continue;
            const key = objectKeyOf(obj);
            const rvObj = obj.metadata.resourceVersion ?? '';
            const have = this.store.get(key);
            // Unchanged since we saw it: keep the stored value (no transform, no event).
            seen.set(key, have && have.rv === rvObj && rvObj !== '' ? have : { rv: rvObj, obj: this.transform(obj) });
          }
          rv = page.metadata?.resourceVersion ?? '';
          cont = page.metadata?.continue || undefined;
        } while (cont);
      } catch (err) {
        // An expired continue token: list again in one piece (client-go does the same).
        if (err instanceof KubeGoneError && cont !== undefined && paged) {
          this.o.log?.info({ path: this.o.path }, 'list continue token expired; listing in one page');
          paged = false;
          continue;
        }
        throw err;
      }
      if (!rv) throw new KubeProtocolError(`GET ${this.o.path}: list has no resourceVersion`, { path: this.o.path });
      const relist = this.listedOnce;
      this.applyList(seen);
      this.rv = rv;
      this.stats.lists++;
      if (relist) this.stats.relists++;
      this.o.log?.debug({ path: this.o.path, objects: seen.size, resourceVersion: rv, relist }, 'listed');
      if (!this.listedOnce) {
        this.listedOnce = true;
        this.o.onListed?.({ objects: this.list().length, resourceVersion: rv, relist });
        this.resolveSynced();
      } else this.o.onListed?.({ objects: this.list().length, resourceVersion: rv, relist });
      return;
    }
  }

  /** Makes the store hold `next`, emitting only the differences. */
  private applyList(next: Map<string, Entry<T>>): void {
    for (const [key, have] of this.store) {
      if (next.has(key)) continue;
      this.store.delete(key);
      if (have.obj !== undefined) this.emit({ type: 'deleted', key, old: have.obj });
    }
    for (const [key, e] of next) {
      const have = this.store.get(key);
      if (have === e) continue;
      this.put(key, e, have);
    }
  }

  private put(key: string, e: Entry<T>, have: Entry<T> | undefined): void {
    this.store.set(key, e);
    if (e.obj === undefined) {
      if (have?.obj !== undefined) this.emit({ type: 'deleted', key, old: have.obj });
      return;
    }
    if (have?.obj !== undefined) this.emit({ type: 'updated', key, obj: e.obj, old: have.obj });
    else this.emit({ type: 'added', key, obj: e.obj });
  }

  private emit(ev: InformerEvent<T>): void {
    this.stats.events++;
    try {
      this.o.onEvent?.(ev);
    } catch (err) {
      this.o.log?.error({ path: this.o.path, key: ev.key, err: errorMessage(err) }, 'informer handler threw; event dropped');
    }
  }

  private transform(obj: KubeObject): T | undefined {
    if (!this.o.transform) return obj as unknown as T;
    try {
      return this.o.transform(obj);
    } catch (err) {
      this.o.log?.warn({ path: this.o.path, key: objectKeyOf(obj), err: errorMessage(err) }, 'object refused by transform; ignored');
      return undefined;
    }
  }

  /** Checks the minimum shape of an item and adds kind/apiVersion when the list left them out. */
  private stamp(raw: unknown): KubeObject | undefined {
    const o = raw as KubeObject;
    if (!o || typeof o !== 'object' || !o.metadata || typeof o.metadata.name !== 'string' || !o.metadata.name) {
      this.o.log?.warn({ path: this.o.path }, 'object without metadata.name ignored');
      return undefined;
    }
    if (this.o.kind && o.kind === undefined) o.kind = this.o.kind;
    if (this.o.apiVersion && o.apiVersion === undefined) o.apiVersion = this.o.apiVersion;
    return o;
  }

  /** One watch connection from this.rv; returns/throws when it ends. */
  private async watchOnce(signal: AbortSignal): Promise<void> {
    const base = this.o.watchTimeoutSeconds ?? 300;
    const timeoutSeconds = this.o.watchTimeoutSeconds !== undefined ? base : Math.round(base * (0.8 + 0.4 * Math.random()));
    const idleMs = this.o.idleTimeoutMs ?? timeoutSeconds * 1000 + 30_000;
    const ac = new AbortController();
    const stop = () => ac.abort();
    signal.addEventListener('abort', stop, { once: true });
    let res: IncomingMessage | undefined;
    try {
      res = await this.o.client.stream(this.o.path, {
        signal: ac.signal,
        timeoutMs: Math.min(idleMs, 30_000),
        query: this.query({ watch: 1, resourceVersion: this.rv, allowWatchBookmarks: true, timeoutSeconds }),
      });
      this.stats.watches++;
      await this.readEvents(res, idleMs);
    } finally {
      signal.removeEventListener('abort', stop);
      ac.abort();
      res?.destroy();
    }
  }

  private readEvents(res: IncomingMessage, idleMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const lines = new LineSplitter();
      let done = false;
      let gotData = false;
      const finish = (err?: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(idle);
        res.destroy();
        if (err) reject(err);
        // A clean end (server timeoutSeconds): open the next watch at once.
        else reject(new WatchEnded(gotData));
      };
      let idle = setTimeout(onIdle, idleMs);
      function onIdle() {
        finish(new KubeWatchTimeoutError(`watch silent for ${idleMs} ms; reconnecting`, { idleMs }));
      }
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (done) return;
        clearTimeout(idle);
        idle = setTimeout(onIdle, idleMs);
        if (!gotData) {
          gotData = true;
          this.backoff.reset();
        }
        for (const line of lines.push(chunk)) {
          try {
            this.handle(line);
          } catch (err) {
            return finish(err);
          }
        }
      });
      res.once('end', () => finish());
      res.once('aborted', () => finish(new KubeProtocolError('watch connection cut', { pending: lines.pending })));
      res.once('error', (err) => finish(err));
      res.once('close', () => finish(lines.pending ? new KubeProtocolError('watch connection cut mid-event', { pending: lines.pending }) : undefined));
      void resolve;
    });
  }

  private handle(line: string): void {
    let ev: WatchEvent;
    try {
      ev = JSON.parse(line) as WatchEvent;
    } catch {
      throw new KubeProtocolError(`watch ${this.o.path}: event is not JSON`, { path: this.o.path });
    }
    if (!ev || typeof ev !== 'object' || !ev.object || typeof ev.object !== 'object') throw new KubeProtocolError(`watch ${this.o.path}: event without object`, { path: this.o.path });
    switch (ev.type) {
      case 'BOOKMARK': {
        this.stats.bookmarks++;
        const rv = ev.object.metadata?.resourceVersion;
        if (rv) this.rv = rv;
        return;
      }
      case 'ERROR': {
        const s = ev.object;
        const code = typeof s.code === 'number' ? s.code : 500;
        const reason = typeof s.reason === 'string' ? s.reason : 'Error';
        const msg = typeof s.message === 'string' ? s.message : 'watch error';
        if (code === 410) throw new KubeGoneError(code, reason, msg, this.o.path);
        throw new KubeApiError(code, reason, msg, this.o.path);
      }
      case 'ADDED':
      case 'MODIFIED':
      case 'DELETED': {
        const obj = this.stamp(ev.object);
        if (!obj) return;
        const key = objectKeyOf(obj);
        const rvObj = obj.metadata.resourceVersion ?? '';
        const have = this.store.get(key);
        if (ev.type === 'DELETED') {
          if (have) {
            this.store.delete(key);
            if (have.obj !== undefined) this.emit({ type: 'deleted', key, old: have.obj });
          }
        } else if (!(have && have.rv === rvObj && rvObj !== '')) {
          // The same resourceVersion again (a replayed event) is no change.
          this.put(key, { rv: rvObj, obj: this.transform(obj) }, have);
        }
        if (rvObj) this.rv = rvObj;
        return;
      }
      default:
        this.o.log?.warn({ path: this.o.path, type: (ev as { type?: unknown }).type }, 'unknown watch event type ignored');
    }
  }
}
