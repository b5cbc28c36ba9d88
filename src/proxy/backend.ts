import type { ProxyModel } from './model/model.js';

/** Per ETP=Local service: the health-check node port and how many local endpoints answer. */
export interface HealthCheckPort {
  service: string;
  port: number;
  localEndpoints: number;
}

export interface ModeSyncResult {
  /** False when nothing had to be written. */
  wrote: boolean;
  full: boolean;
  /** Rule (or element) counts per table, for metrics. */
  ruleCounts: Record<string, number>;
  healthChecks: HealthCheckPort[];
  noLocalEndpoints: number;
}

/**
 * What each proxy mode (iptables now; nftables and ipvs later) plugs into the
 * mode-independent sync loop: render the model's snapshot into the kernel.
 * Implementations keep what they last wrote so that a partial sync writes
 * only the Services in `changed`.
 */
export interface ProxyModeBackend {
  readonly mode: string;
  sync(model: ProxyModel, changed: ReadonlySet<string>, full: boolean): Promise<ModeSyncResult>;
  /** False when our rules were flushed by someone else (the canary is gone). */
  healthy(): Promise<boolean>;
  /** Removes everything this mode ever wrote. */
  cleanup(): Promise<void>;
  /** Releases processes or sockets kept open between syncs; the rules stay. */
  close?(): Promise<void>;
}
