import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../src/core/async.js';
import { KubeClient } from '../../../src/kube/client.js';
import { Backoff } from '../../../src/kube/backoff.js';
import { Informer, type InformerEvent, type KubeObject } from '../../../src/kube/informer.js';
import { FakeApiServer, ev, listOf, status, svc, watchOf } from './fake-apiserver.js';

const PATH = '/api/v1/services';

describe('Informer list/watch state machine (recorded API answers)', () => {
  let api: FakeApiServer;
  let client: KubeClient;
  let ac: AbortController;
  let events: InformerEvent<KubeObject>[];
  let run: Promise<void> | undefined;

  beforeEach(async () => {
    api = await new FakeApiServer().start();
    client = new KubeClient({ server: api.url, origin: 'test' });
    ac = new AbortController();
    events = [];
    run = undefined;
  });
  afterEach(async () => {
    ac.abort();
    await run;
    client.close();
    await api.close();
  });

  function start(extra: Partial<ConstructorParameters<typeof Informer>[0]> = {}): Informer<KubeObject> {
    const inf = new Informer<KubeObject>({
      client,
      path: PATH,
      kind: 'Service',
      apiVersion: 'v1',
      pageSize: 2,
      watchTimeoutSeconds: 30,
      backoff: { initialMs: 5, maxMs: 20, random: () => 0.5 },
      onEvent: (e) => events.push(e),
      ...extra,
    } as ConstructorParameters<typeof Informer<KubeObject>>[0]);
    run = inf.run(ac.signal);
    return inf;
  }

  const summary = () => events.map((e) => `${e.type} ${e.key}`);

  it('pages a list with limit/continue, stamps kind, then watches from the list resourceVersion with bookmarks', async () => {
    api.on(PATH, 'list', listOf([svc('a', '5'), svc('b', '6')], '9', 'tok1'), listOf([svc('c', '7')], '9'));
    api.on(PATH, 'watch', watchOf({ events: [ev('ADDED', { kind: 'Service', apiVersion: 'v1', ...svc('d', '10') }), ev('BOOKMARK', { kind: 'Service', metadata: { resourceVersion: '12' } })], then: 'end' }));
    const inf = start({ labelSelector: '!service.kubernetes.io/headless' });
    await inf.synced;
    expect(inf.hasSynced).toBe(true);
    expect(inf.keys().sort()).toEqual(['default/a', 'default/b', 'default/c']);
    expect(inf.get('default/a')!.kind).toBe('Service');
    const lists = api.lists(PATH);
    expect(lists[0]!.query.get('limit')).toBe('2');
    expect(lists[0]!.query.get('continue')).toBeNull();
    expect(lists[1]!.query.get('continue')).toBe('tok1');
    expect(lists[0]!.query.get('labelSelector')).toBe('!service.kubernetes.io/headless');
    // Second watch resumes from the bookmark's resourceVersion.
    await waitFor(() => api.watches(PATH).length >= 2, { what: 'second watch' });
    const [w1, w2] = api.watches(PATH);
    expect(w1!.query.get('resourceVersion')).toBe('9');
    expect(w1!.query.get('allowWatchBookmarks')).toBe('true');
    expect(w1!.query.get('timeoutSeconds')).toBe('30');
    expect(w1!.query.get('labelSelector')).toBe('!service.kubernetes.io/headless');
    expect(w2!.query.get('resourceVersion')).toBe('12');
    expect(summary()).toEqual(['added default/a', 'added default/b', 'added default/c', 'added default/d']);
    expect(inf.stats.bookmarks).toBe(1);
  });

  it('410 Gone as the watch status relists and emits only the difference (no flap)', async () => {
    api.on(PATH, 'list', listOf([svc('a', '5'), svc('b', '6'), svc('c', '7')], '9'));
    api.on(PATH, 'watch', status(410, 'Expired', 'too old resource version: 9 (20)'));
    // Relist: a unchanged, b changed, c gone, e new.
    api.on(PATH, 'list', listOf([svc('a', '5'), svc('b', '15', 8080), svc('e', '16')], '20'));
    const inf = start();
    await waitFor(() => inf.stats.relists === 1, { what: 'relist' });
    expect(summary()).toEqual(['added default/a', 'added default/b', 'added default/c', 'deleted default/c', 'updated default/b', 'added default/e']);
    const upd = events.find((e) => e.type === 'updated')!;
    expect(upd.type === 'updated' && (upd.old.spec as { ports: Array<{ port: number }> }).ports[0]!.port).toBe(80);
    await waitFor(() => api.watches(PATH).length >= 2);
    expect(api.watches(PATH)[1]!.query.get('resourceVersion')).toBe('20');
  });

  it('410 as an ERROR event in the stream relists; an unchanged relist emits nothing', async () => {
    api.on(PATH, 'list', listOf([svc('a', '5')], '9'), listOf([svc('a', '5')], '30'));
    api.on(PATH, 'watch', watchOf({ events: [ev('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old' })], then: 'hang' }));
    const inf = start();
    await waitFor(() => inf.stats.relists === 1, { what: 'relist after ERROR 410' });
    expect(summary()).toEqual(['added default/a']);
    await waitFor(() => api.watches(PATH).length >= 2);
    expect(api.watches(PATH)[1]!.query.get('resourceVersion')).toBe('30');
  });

  it('a connection dropped mid-event (half a JSON line) reconnects from the last resourceVersion; the event arrives once', async () => {
    const full = JSON.stringify(ev('MODIFIED', { kind: 'Service', apiVersion: 'v1', ...svc('a', '11', 81) }));
    api.on(PATH, 'list', listOf([svc('a', '5')], '9'));
    api.on(
      PATH,
      'watch',
      watchOf({ events: [ev('ADDED', { kind: 'Service', apiVersion: 'v1', ...svc('b', '10') }), full.slice(0, 40)], then: 'cut' }),
      watchOf({ events: [full + '\n'], then: 'hang' }),
    );
    const inf = start();
    await waitFor(() => events.length === 3, { what: 'three events' });
    expect(summary()).toEqual(['added default/a', 'added default/b', 'updated default/a']);
    const [w1, w2] = api.watches(PATH);
    expect(w1!.query.get('resourceVersion')).toBe('9');
    expect(w2!.query.get('resourceVersion')).toBe('10');
    expect(api.lists(PATH)).toHaveLength(1); // no relist for a cut connection
    expect(inf.stats.errors).toBe(1);
  });

  it('a watch that goes silent is noticed by the idle timeout and reconnected', async () => {
    api.on(PATH, 'list', listOf([svc('a', '5')], '9'));
    api.on(PATH, 'watch', watchOf({ events: [], then: 'hang' }), watchOf({ events: [ev('DELETED', { kind: 'Service', apiVersion: 'v1', ...svc('a', '12') })], then: 'hang' }));
    const inf = start({ idleTimeoutMs: 150 });
    await waitFor(() => events.length === 2, { what: 'delete after reconnect' });
    expect(summary()).toEqual(['added default/a', 'deleted default/a']);
    expect(api.watches(PATH).length).toBeGreaterThanOrEqual(2);
    expect(inf.list()).toEqual([]);
    expect(inf.resourceVersion).toBe('12');
  });

  it('a replayed event (same resourceVersion) raises nothing; DELETED of an unknown object raises nothing', async () => {
    api.on(PATH, 'list', listOf([svc('a', '5')], '9'));
    api.on(PATH, 'watch', watchOf({ events: [ev('MODIFIED', { kind: 'Service', ...svc('a', '5') }), ev('DELETED', { kind: 'Service', ...svc('zz', '10') }), ev('ADDED', { kind: 'Service', ...svc('b', '11') })], then: 'hang' }));
    const inf = start();
    await waitFor(() => inf.resourceVersion === '11');
    expect(summary()).toEqual(['added default/a', 'added default/b']);
  });

  it('list errors back off and retry; an expired continue token lists again in one page', async () => {
    api.on(PATH, 'list', status(500, 'InternalError'), status(503, 'ServiceUnavailable'), listOf([svc('a', '5')], '9', 'tok'), status(410, 'Expired'), listOf([svc('a', '5'), svc('b', '6')], '9'));
    const inf = start();
    await inf.synced;
    expect(inf.stats.errors).toBe(2);
    const lists = api.lists(PATH);
    expect(lists).toHaveLength(5);
    expect(lists[3]!.query.get('continue')).toBe('tok');
    expect(lists[4]!.query.get('limit')).toBeNull();
    expect(summary()).toEqual(['added default/a', 'added default/b']);
  });

  it('a transform keeps a slim value and can refuse objects (treated as absent)', async () => {
    api.on(PATH, 'list', listOf([svc('a', '5'), svc('bad', '6')], '9'));
    api.on(PATH, 'watch', watchOf({ events: [ev('MODIFIED', { ...svc('bad', '7') })], then: 'hang' }));
    const slim: string[] = [];
    const inf = new Informer<string>({
      client,
      path: PATH,
      watchTimeoutSeconds: 30,
      transform: (o) => {
        if (o.metadata.name === 'bad' && o.metadata.resourceVersion === '6') throw new Error('refused');
        return `${o.metadata.name}@${o.metadata.resourceVersion}`;
      },
      onEvent: (e) => slim.push(`${e.type} ${e.type === 'deleted' ? e.old : e.obj}`),
    });
    run = inf.run(ac.signal);
    await waitFor(() => slim.length === 2);
    expect(slim).toEqual(['added a@5', 'added bad@7']);
    expect(inf.list().sort()).toEqual(['a@5', 'bad@7']);
  });

  it('stops on abort: run resolves, synced rejects when never listed', async () => {
    const inf = start();
    await waitFor(() => api.lists(PATH).length === 1);
    ac.abort();
    await run;
    await expect(inf.synced).rejects.toMatchObject({ code: 'ERR_ABORTED' });
  });
});

describe('Backoff', () => {
  it('doubles up to the cap with jitter around each step', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0.2, random: () => 1 });
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([120, 240, 480, 960, 1200]);
    b.reset();
    const low = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0.2, random: () => 0 });
    expect(low.next()).toBe(80);
    expect(b.next()).toBe(120);
  });
});
