import type { NativeStats } from './native.js';

/**
 * One metric sample, independent of any metrics library: the daemon's
 * /metrics renders these (prom-client or plain text exposition).
 */
export interface MetricSample {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  labels: Record<string, string>;
  value: number;
}

const COUNTER_HELP: Record<string, string> = {
  tun_read_packets: 'Packets read from the TUN device (a TSO super-packet counts once).',
  tun_read_bytes: 'Bytes read from the TUN device.',
  tso_packets: 'TSO super-packets split into MTU-sized packets in user space.',
  udp_sent_packets: 'Encapsulated packets sent to peers.',
  udp_sent_bytes: 'Bytes of encapsulated packets sent to peers (UDP payload).',
  udp_send_errors: 'sendmmsg failures (message dropped).',
  icmp_sent: 'ICMP net-unreachable answers for destinations without a peer.',
  udp_recv_packets: 'Datagrams received on the udp port, before validation.',
  udp_recv_bytes: 'Bytes received on the udp port, before validation.',
  tun_write_packets: 'Packets delivered into the TUN device.',
  tun_write_bytes: 'Bytes delivered into the TUN device.',
  tun_write_errors: 'Writes to the TUN device that failed.',
  tx_wakeups: 'Times the TUN reader thread slept and woke (packets per wake-up = batching).',
  rx_wakeups: 'Times the UDP receiver thread slept and woke.',
};

/**
 * Renders native counters as samples:
 * - `weft_udp_<counter>_total` for each data path counter;
 * - `weft_udp_dropped_packets_total{direction="rx"|"tx", reason}` per drop reason
 *   (rx = received from the network, tx = read from the TUN);
 * - `weft_udp_peers` (gauge).
 */
export function udpMetrics(stats: NativeStats, peers: number): MetricSample[] {
  const out: MetricSample[] = [];
  for (const [key, value] of Object.entries(stats.counters)) {
    out.push({
      name: `weft_udp_${key}_total`,
      help: COUNTER_HELP[key] ?? key,
      type: 'counter',
      labels: {},
      value,
    });
  }
  for (const [direction, drops] of [
    ['rx', stats.rxDrops],
    ['tx', stats.txDrops],
  ] as const) {
    for (const [reason, value] of Object.entries(drops)) {
      out.push({
        name: 'weft_udp_dropped_packets_total',
        help: 'Packets dropped by the udp data path, by direction and reason.',
        type: 'counter',
        labels: { direction, reason },
        value,
      });
    }
  }
  out.push({ name: 'weft_udp_peers', help: 'Remote udp subnets in the peer table.', type: 'gauge', labels: {}, value: peers });
  return out;
}

/** Prometheus text exposition of samples (for tests and a plain /metrics). */
export function renderSamples(samples: MetricSample[]): string {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const s of samples) {
    if (!seen.has(s.name)) {
      seen.add(s.name);
      lines.push(`# HELP ${s.name} ${s.help}`, `# TYPE ${s.name} ${s.type}`);
    }
    const labels = Object.entries(s.labels)
      .map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`)
      .join(',');
    lines.push(`${s.name}${labels ? `{${labels}}` : ''} ${s.value}`);
  }
  return lines.join('\n') + '\n';
}
