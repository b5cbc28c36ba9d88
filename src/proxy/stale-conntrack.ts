import type { ConntrackFilter } from '../netfilter/conntrack.js';
import { endpointString, usableEndpoints, type EndpointInfo } from './model/endpoints.js';
import type { ModelChanges, ProxyModel } from './model/model.js';
import type { ServicePortInfo } from './model/service-port.js';

/**
 * UDP has no connection end, so conntrack keeps sending a client's datagrams
 * to an endpoint that is gone (stale DNS answers: kubernetes 19029). After a
 * sync, delete: flows DNATed to endpoints that stopped being usable; flows to
 * a service IP or node port that had no endpoints and now has (they were
 * cached un-NATed); flows to the IPs of deleted UDP service ports. Pure.
 */
export function staleConntrackFilters(changes: ModelChanges, model: Pick<ProxyModel, 'servicePorts' | 'endpoints'>): ConntrackFilter[] {
  const out: ConntrackFilter[] = [];
  const seen = new Set<string>();
  const add = (f: ConntrackFilter) => {
    const k = JSON.stringify(f);
    if (!seen.has(k)) (seen.add(k), out.push(f));
  };
  let bySvc: Map<string, ServicePortInfo[]> | undefined;
  const portsOf = (svc: string): ServicePortInfo[] => {
    if (!bySvc) {
      bySvc = new Map();
      for (const p of model.servicePorts.values()) bySvc.set(p.service, [...(bySvc.get(p.service) ?? []), p]);
    }
    return bySvc.get(svc) ?? [];
  };
  for (const svc of changes.changed) {
    const svcChange = changes.services.get(svc);
    const epChange = changes.endpoints.get(svc);
    // Without an endpoint change, before and after are the snapshot's endpoints.
    const epsBefore = (k: string) => usableEndpoints((epChange ? epChange.previous.get(k) : model.endpoints.get(k)) ?? []);
    const epsAfter = (k: string) => usableEndpoints((epChange ? epChange.current.get(k) : model.endpoints.get(k)) ?? []);
    const prevPorts = svcChange?.previous ?? portsOf(svc);
    const curPorts = svcChange?.current ?? portsOf(svc);
    for (const prev of prevPorts) {
      if (prev.protocol !== 'UDP') continue;
      const cur = curPorts.find((p) => p.key === prev.key && p.protocol === 'UDP');
      const before = epsBefore(prev.key);
      const after = cur ? epsAfter(prev.key) : [];
      const still = new Set(after.map(endpointString));
      for (const ep of before) {
        if (still.has(endpointString(ep))) continue;
        for (const ip of serviceIPs(prev)) add({ protocol: 'udp', origDst: ip, dstNat: ep.ip });
        if (prev.nodePort) add({ protocol: 'udp', origDstPort: prev.nodePort, dstNat: ep.ip });
      }
    }
    for (const cur of curPorts) {
      if (cur.protocol !== 'UDP') continue;
      const prev = prevPorts.find((p) => p.key === cur.key && p.protocol === 'UDP');
      const before: readonly EndpointInfo[] = prev ? epsBefore(cur.key) : [];
      const after = epsAfter(cur.key);
      if (before.length === 0 && after.length > 0) {
        for (const ip of serviceIPs(cur)) add({ protocol: 'udp', origDst: ip });
        if (cur.nodePort) add({ protocol: 'udp', origDstPort: cur.nodePort });
      }
    }
  }
  return out;
}

function serviceIPs(p: ServicePortInfo): string[] {
  return [p.clusterIP, ...p.externalIPs, ...p.loadBalancerIPs];
}

