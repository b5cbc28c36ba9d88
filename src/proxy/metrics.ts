import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from '../core/process-metrics.js';

const SYNC_BUCKETS = [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384];
const PROGRAMMING_BUCKETS = [0.25, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 45, 60, 120, 180, 240, 300];

/** kube-proxy's metric names, so its dashboards and alerts work on weft-proxy. */
export class ProxyMetrics {
  readonly registry = new Registry();
  readonly syncDuration = new Histogram({ name: 'kubeproxy_sync_proxy_rules_duration_seconds', help: 'SyncProxyRules latency in seconds', buckets: SYNC_BUCKETS, registers: [this.registry] });
  readonly fullSyncDuration = new Histogram({ name: 'kubeproxy_sync_full_proxy_rules_duration_seconds', help: 'Full SyncProxyRules latency in seconds', buckets: SYNC_BUCKETS, registers: [this.registry] });
  readonly partialSyncDuration = new Histogram({ name: 'kubeproxy_sync_partial_proxy_rules_duration_seconds', help: 'Partial SyncProxyRules latency in seconds', buckets: SYNC_BUCKETS, registers: [this.registry] });
  readonly lastSync = new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds', help: 'The last time proxy rules were successfully synced', registers: [this.registry] });
  readonly lastQueued = new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds', help: 'The last time a sync of proxy rules was queued', registers: [this.registry] });
  readonly programming = new Histogram({ name: 'kubeproxy_network_programming_duration_seconds', help: 'In Cluster Network Programming Latency in seconds', buckets: PROGRAMMING_BUCKETS, registers: [this.registry] });
  readonly restoreFailures = new Counter({ name: 'kubeproxy_sync_proxy_rules_iptables_restore_failures_total', help: 'Cumulative proxy iptables restore failures', registers: [this.registry] });
  readonly partialRestoreFailures = new Counter({ name: 'kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total', help: 'Cumulative proxy iptables partial restore failures', registers: [this.registry] });
  readonly rulesTotal = new Gauge({ name: 'kubeproxy_sync_proxy_rules_iptables_total', help: 'Total number of iptables rules owned by weft-proxy', labelNames: ['table'], registers: [this.registry] });
  readonly serviceChanges = new Counter({ name: 'kubeproxy_sync_proxy_rules_service_changes_total', help: 'Cumulative service changes', registers: [this.registry] });
  readonly endpointChanges = new Counter({ name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total', help: 'Cumulative endpoint changes', registers: [this.registry] });
  readonly noLocalEndpoints = new Gauge({ name: 'kubeproxy_sync_proxy_rules_no_local_endpoints_total', help: 'Number of services with a Local traffic policy and no endpoints', labelNames: ['traffic_policy'], registers: [this.registry] });
  readonly conntrackDeleted = new Counter({ name: 'weft_proxy_stale_conntrack_flows_deleted_total', help: 'UDP conntrack flows deleted because their endpoint went away', registers: [this.registry] });
  readonly healthzTotal = new Counter({ name: 'kubeproxy_proxy_healthz_total', help: 'Cumulative proxy healthz HTTP status', labelNames: ['code'], registers: [this.registry] });
  readonly livezTotal = new Counter({ name: 'kubeproxy_proxy_livez_total', help: 'Cumulative proxy livez HTTP status', labelNames: ['code'], registers: [this.registry] });
  /** Read at scrape time: changes recorded but not yet written (kube-proxy's *_changes_pending). */
  pendingChanges: () => { services: number; endpoints: number } = () => ({ services: 0, endpoints: 0 });
  readonly servicesPending = (() => {
    const self = this;
    return new Gauge({ name: 'kubeproxy_sync_proxy_rules_service_changes_pending', help: 'Pending proxy rules Service changes', registers: [this.registry], collect() { this.set(self.pendingChanges().services); } });
  })();
  readonly endpointsPending = (() => {
    const self = this;
    return new Gauge({ name: 'kubeproxy_sync_proxy_rules_endpoint_changes_pending', help: 'Pending proxy rules Endpoint changes', registers: [this.registry], collect() { this.set(self.pendingChanges().endpoints); } });
  })();
  readonly truncatedObjects = new Counter({ name: 'weft_proxy_truncated_objects_total', help: 'Objects whose endpoints were cut to a cap (see docs/proxy.md, limits), per object', labelNames: ['object'], registers: [this.registry] });
  readonly invalidObjects = new Counter({ name: 'weft_proxy_invalid_objects_total', help: 'Objects refused by validation, per source', labelNames: ['source'], registers: [this.registry] });

  /** processMetrics: process_* and nodejs_* read at scrape time (no timers: see core/process-metrics.ts). */
  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics) registerProcessMetrics(this.registry);
  }
}
