import { readFileSync, readdirSync } from 'node:fs';
import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * The process_* and nodejs_* metrics dashboards expect, read when scraped.
 * prom-client's collectDefaultMetrics() keeps a monitorEventLoopDelay
 * histogram running at 10 ms resolution: an idle daemon woke ~95 times a
 * second for it. Every value here is read inside collect(), so an idle
 * process that nobody scrapes never wakes for its metrics.
 */
export function registerProcessMetrics(registry: Registry): void {
  const registers = [registry];
  const startTime = Math.round(Date.now() / 1000 - process.uptime());

  const cpuTotal = (name: string, help: string, pick: (u: NodeJS.CpuUsage) => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(pick(process.cpuUsage()) / 1e6);
      },
    });
  cpuTotal('process_cpu_user_seconds_total', 'Total user CPU time spent in seconds.', (u) => u.user);
  cpuTotal('process_cpu_system_seconds_total', 'Total system CPU time spent in seconds.', (u) => u.system);
  cpuTotal('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.', (u) => u.user + u.system);

  new Gauge({ name: 'process_start_time_seconds', help: 'Start time of the process since unix epoch in seconds.', registers, collect() { this.set(startTime); } });

  const status = (key: string) => {
    try {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
      return m ? Number(m[1]) * 1024 : undefined;
    } catch {
      return undefined;
    }
  };
  const procGauge = (name: string, help: string, read: () => number | undefined) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const v = read();
        if (v !== undefined) this.set(v);
      },
    });
  procGauge('process_resident_memory_bytes', 'Resident memory size in bytes.', () => status('VmRSS') ?? process.memoryUsage.rss());
  procGauge('process_virtual_memory_bytes', 'Virtual memory size in bytes.', () => status('VmSize'));
  procGauge('process_heap_bytes', 'Process heap size in bytes.', () => status('VmData'));
  procGauge('process_open_fds', 'Number of open file descriptors.', () => {
    try {
      return readdirSync('/proc/self/fd').length - 1; // minus the one readdir holds
    } catch {
      return undefined;
    }
  });
  procGauge('process_max_fds', 'Maximum number of open file descriptors.', () => {
    try {
      const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
      return m ? Number(m[1]) : undefined;
    } catch {
      return undefined;
    }
  });
  procGauge('nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', () => process.memoryUsage().heapTotal);
  procGauge('nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.', () => process.memoryUsage().heapUsed);
  procGauge('nodejs_external_memory_bytes', 'Node.js external memory size in bytes.', () => process.memoryUsage().external);
  const [major, minor, patch] = process.versions.node.split('.').map(Number);
  new Gauge({
    name: 'nodejs_version_info',
    help: 'Node.js version info.',
    labelNames: ['version', 'major', 'minor', 'patch'],
    registers,
    collect() {
      this.set({ version: process.version, major: String(major), minor: String(minor), patch: String(patch) }, 1);
    },
  });
  // Event loop lag, measured as prom-client's older versions did: how late a
  // setImmediate queued at scrape time runs. One callback per scrape, no timer.
  new Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Lag of event loop in seconds, measured at scrape time.',
    registers,
    async collect() {
      const start = process.hrtime.bigint();
      await new Promise<void>((r) => setImmediate(r));
      this.set(Number(process.hrtime.bigint() - start) / 1e9);
    },
  });
}
