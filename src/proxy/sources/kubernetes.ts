import { delay } from '../../core/async.js';
import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { Backoff, type BackoffOptions } from '../../kube/backoff.js';
import type { KubeClient } from '../../kube/client.js';
import { servedVersions } from '../../kube/discovery.js';
import { Informer, type InformerEvent, type InformerOptions, type KubeObject } from '../../kube/informer.js';
import { recordKey, toRecord, type ModelRecord } from '../model/records.js';
import { isHeadless, nodeAddresses, sliceV1beta1ToV1, type NodeAddress } from './kubernetes-convert.js';
import { acceptObject, type ProxySink, type ProxySource } from './source.js';

/**
 * kube-proxy's informer label selector: Services (and their slices/Endpoints,
 * which the controllers label alike) meant for another proxy, and headless
 * ones, are not listed at all.
 */
export const PROXY_LABEL_SELECTOR = '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless';

/** Where endpoints come from, chosen by discovery. */
export type EndpointsApi = 'discovery.k8s.io/v1' | 'discovery.k8s.io/v1beta1' | 'v1/endpoints';

export interface KubernetesSourceOptions {
  client: KubeClient;
  /** This node's name: its Node object is watched (fieldSelector metadata.name). */
  nodeName: string;
  log: Logger;
  /** Tuning passed to every informer (tests shorten the timeouts). */
  informer?: Pick<InformerOptions<unknown>, 'pageSize' | 'watchTimeoutSeconds' | 'idleTimeoutMs' | 'backoff'>;
  /** Backoff of the discovery request. */
  discoveryBackoff?: BackoffOptions;
  /** Called with this node's Node object whenever it changes (undefined: deleted / absent). */
  onNode?: (node: KubeObject | undefined) => void;
}

/**
 * Services, EndpointSlices (or v1 Endpoints where slices are not served) and
 * this node's Node from a Kubernetes API server, one informer each. The
 * first replace() happens once every informer has listed, so rules are
 * written from a complete view; after that, informer events (relists as
 * differences only) become upserts and removes.
 */
export class KubernetesSource implements ProxySource {
  readonly name = 'kubernetes';
  endpointsApi: EndpointsApi | undefined;
  private services: Informer<ModelRecord> | undefined;
  private endpoints: Informer<ModelRecord> | undefined;
  private nodeInformer: Informer<KubeObject> | undefined;
  private ready = false;

  constructor(private readonly o: KubernetesSourceOptions) {}

  /** This node's Node object as last seen. */
  get node(): KubeObject | undefined {
    return this.nodeInformer?.list()[0];
  }

  /** This node's status.addresses (InternalIP, ExternalIP, Hostname). */
  nodeAddresses(): NodeAddress[] {
    return nodeAddresses(this.node);
  }

  /** The informers' counters (lists, relists, watches, events), for tests and dumps. */
  get informers(): Array<{ stats: Informer['stats']; hasSynced: boolean; resourceVersion: string }> {
    const out: Array<{ stats: Informer['stats']; hasSynced: boolean; resourceVersion: string }> = [];
    for (const i of [this.services, this.endpoints, this.nodeInformer]) if (i) out.push(i);
    return out;
  }

  get synced(): boolean {
    return this.ready;
  }

  async run(sink: ProxySink, signal: AbortSignal): Promise<void> {
    const { client, log } = this.o;
    const api = await this.discover(signal);
    if (!api) return;
    this.endpointsApi = api;
    log.info({ source: this.name, server: client.conn.server, origin: client.conn.origin, endpoints: api, node: this.o.nodeName }, 'reading Services from the Kubernetes API');

    const forward = (ev: InformerEvent<ModelRecord>) => {
      if (!this.ready) return; // the first replace() takes the stores whole
      if (ev.type === 'deleted') sink.remove(this.name, recordKey(ev.old));
      else sink.upsert(this.name, ev.obj);
    };
    const accept = (raw: KubeObject): ModelRecord | undefined => {
      const o = acceptObject(raw, this.name, sink, log);
      return o ? toRecord(o) : undefined;
    };
    const common = { client, log, ...this.o.informer, labelSelector: PROXY_LABEL_SELECTOR, onEvent: forward };
    this.services = new Informer<ModelRecord>({
      ...common,
      path: '/api/v1/services',
      kind: 'Service',
      apiVersion: 'v1',
      transform: (s) => (isHeadless(s) ? undefined : accept(s)),
    });
    this.endpoints =
      api === 'v1/endpoints'
        ? new Informer<ModelRecord>({ ...common, path: '/api/v1/endpoints', kind: 'Endpoints', apiVersion: 'v1', transform: accept })
        : new Informer<ModelRecord>({
            ...common,
            path: `/apis/${api}/endpointslices`,
            kind: 'EndpointSlice',
            apiVersion: api,
            transform: (s) => accept(api === 'discovery.k8s.io/v1beta1' ? sliceV1beta1ToV1(s) : s),
          });
    this.nodeInformer = new Informer<KubeObject>({
      client,
      log,
      ...this.o.informer,
      path: '/api/v1/nodes',
      kind: 'Node',
      apiVersion: 'v1',
      fieldSelector: `metadata.name=${this.o.nodeName}`,
      onEvent: (ev) => this.o.onNode?.(ev.type === 'deleted' ? undefined : ev.obj),
    });
    const all = [this.services, this.endpoints, this.nodeInformer];
    const running = all.map((i) => i.run(signal));
    try {
      await Promise.all(all.map((i) => i.synced));
      const objects = [...this.services.list(), ...this.endpoints.list()];
      this.ready = true;
      sink.replace(this.name, objects);
      log.info({ source: this.name, services: this.services.list().length, endpoints: this.endpoints.list().length, node: this.node ? this.o.nodeName : undefined }, 'listed Services and endpoints');
      if (!this.node) log.warn({ source: this.name, node: this.o.nodeName }, 'no Node object with this name (--hostname-override?); node addresses unknown');
      this.o.onNode?.(this.node);
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      await Promise.all(running);
    }
  }

  /** EndpointSlices v1 where served, else v1beta1 (1.17-1.20), else v1 Endpoints. Retries until answered. */
  private async discover(signal: AbortSignal): Promise<EndpointsApi | undefined> {
    const backoff = new Backoff(this.o.discoveryBackoff);
    while (!signal.aborted) {
      try {
        const versions = await servedVersions(this.o.client, 'discovery.k8s.io', signal);
        if (versions.includes('v1')) return 'discovery.k8s.io/v1';
        if (versions.includes('v1beta1')) return 'discovery.k8s.io/v1beta1';
        return 'v1/endpoints';
      } catch (err) {
        if (signal.aborted) break;
        const wait = backoff.next();
        this.o.log.warn({ source: this.name, server: this.o.client.conn.server, err: errorMessage(err), retryMs: wait }, 'API discovery failed; retrying');
        await delay(wait, signal).catch(() => {});
      }
    }
    return undefined;
  }
}
