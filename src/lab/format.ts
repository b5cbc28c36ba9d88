import type { LabStatus } from './status.js';

/** Left-aligned columns, two spaces apart. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** Human form of `lab status`: one header line, then one row per host and per pod. */
export function formatStatus(s: LabStatus): string {
  const head = `lab ${s.id} (${s.phase})  backend ${s.backend}  network ${s.network}  etcd ${s.etcd} ${s.etcdRunning ? 'running' : 'NOT RUNNING'}`;
  const cp = s.controlPlane;
  const plane = cp?.kind === 'kubernetes'
    ? `\ncontrol plane kubernetes  ${cp.url ?? '?'}  kube-apiserver ${cp.pid ? `pid ${cp.pid} ` : ''}${cp.running ? 'running' : 'NOT RUNNING'}  subnets from ${cp.subnetManager === 'kubernetes' ? 'Node spec.podCIDR' : 'etcd leases'}  admin kubeconfig ${cp.adminKubeconfig ?? '-'}`
    : '';
  const rows: string[][] = [['NAME', 'NETNS', 'ADDRESS', 'SUBNET', 'MTU', 'WEFTD']];
  for (const h of s.hosts) {
    const weftd = h.weftd ? `pid ${h.weftd.pid} ${h.weftd.running ? 'running' : 'STOPPED'}` : '-';
    rows.push([h.name, h.netns, h.underlayIp, h.subnet ?? '-', h.mtu === null ? '-' : String(h.mtu), weftd]);
    for (const p of h.pods) rows.push([`  ${p.name}`, p.netns, p.ip ?? '-', '', '', '']);
  }
  return `${head}${plane}\n${table(rows).replace(/ +$/gm, '')}\n`;
}
