import { Counter, Gauge, Registry } from 'prom-client';
import { INVALID_REASONS } from '../store/lease-check.js';
import { registerProcessMetrics } from '../core/process-metrics.js';

/** weftd's Prometheus metrics; one instance per daemon (tests run several). */
export class WeftdMetrics {
  readonly registry = new Registry();
  /** process_* and nodejs_* families, read at scrape time: no timer wakes an idle weftd for them. */
  constructor() {
    registerProcessMetrics(this.registry);
  }
  /** Where the lease expiry is read from at scrape time (renewals do not announce themselves). */
  leaseExpiration: () => Date | undefined = () => undefined;
  readonly leaseExpiry: Gauge = (() => {
    const self = this;
    return new Gauge({
      name: 'weftd_lease_expiration_timestamp_seconds',
      help: 'Unix time when our subnet lease expires (0 for a reservation without TTL)',
      registers: [this.registry],
      collect() {
        const exp = self.leaseExpiration();
        this.set(exp ? exp.getTime() / 1000 : 0);
      },
    });
  })();
  readonly leaseInfo = new Gauge({
    name: 'weftd_lease_info',
    help: 'The subnet this host holds (value 1)',
    labelNames: ['subnet', 'public_ip', 'backend'],
    registers: [this.registry],
  });
  readonly peers = new Gauge({
    name: 'weftd_peers',
    help: 'Remote leases currently programmed into the data path',
    registers: [this.registry],
  });
  readonly reconcileRuns = new Counter({
    name: 'weftd_reconcile_runs_total',
    help: 'Data path reconcile passes, by result',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly reconcileFixes = new Counter({
    name: 'weftd_reconcile_fixes_total',
    help: 'Kernel objects added, changed or removed by reconcile passes',
    registers: [this.registry],
  });
  readonly reconcileDuration = new Gauge({
    name: 'weftd_reconcile_last_duration_seconds',
    help: 'Duration of the last reconcile pass',
    registers: [this.registry],
  });
  readonly etcdErrors = new Counter({
    name: 'weftd_etcd_errors_total',
    help: 'Errors talking to etcd',
    labelNames: ['op'],
    registers: [this.registry],
  });
  readonly leaseRenewals = new Counter({
    name: 'weftd_lease_writes_total',
    help: 'Times our lease was written (acquire, renewal, re-acquisition)',
    registers: [this.registry],
  });
  /** Where the keys refused right now are read from at scrape time. */
  invalidLeaseKeys: () => number = () => 0;
  readonly leaseInvalid: Counter = (() => {
    const c = new Counter({
      name: 'weftd_lease_invalid_total',
      help: 'Lease keys refused (bad key, value too large or not a lease, bad PublicIP, outside the Network, overlapping), once per key and revision',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    for (const reason of INVALID_REASONS) c.inc({ reason }, 0);
    return c;
  })();
  readonly leaseInvalidKeys: Gauge = (() => {
    const self = this;
    return new Gauge({
      name: 'weftd_lease_invalid_keys',
      help: 'Keys under <prefix>/subnets/ refused right now (listed in /readyz)',
      registers: [this.registry],
      collect() {
        this.set(self.invalidLeaseKeys());
      },
    });
  })();
  readonly masqFixes = new Counter({
    name: 'weftd_masq_rule_fixes_total',
    help: 'Times the masquerade/forward jump rules had to be recreated',
    registers: [this.registry],
  });
  readonly cniRefused = new Counter({
    name: 'weftd_cni_requests_refused_total',
    help: 'CNI socket connections answered or dropped without handling, by reason (busy, oversized, malformed, peer)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly cniTimedOut = new Counter({
    name: 'weftd_cni_requests_timed_out_total',
    help: 'CNI requests that missed a deadline, by phase (receive: not sent in time; handle: not answered in time)',
    labelNames: ['phase'],
    registers: [this.registry],
  });
}
