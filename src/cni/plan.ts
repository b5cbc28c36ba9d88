import { createHash, randomBytes } from 'node:crypto';
import type { BridgeState } from './kernel.js';

/** What one ADD puts in place; rendered into `ip -batch` lines by the functions below. */
export interface AttachPlan {
  bridge: string;
  /** "10.244.1.1/24": the gateway lives on the bridge. */
  gatewayCidr: string;
  gateway: string;
  mtu: number;
  hostVeth: string;
  hostMac: string;
  containerMac: string;
  ifname: string;
  netnsPath: string;
  hairpin: boolean;
  /** Host veth alias that names the attachment (GC finds leaked veths by it). */
  alias: string;
  /** "10.244.1.5/24" */
  address: string;
  /** "10.244.0.0/16": a route via the gateway. */
  network: string;
  defaultRoute: boolean;
  /** Further routes (the conf's `ipam.routes`), after the network and default routes. */
  extraRoutes?: ReadonlyArray<{ dst: string; gw: string }>;
}

function hex(text: string, n: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, n);
}

/**
 * `veth<8 hex>` derived from the attachment, so a retry, DEL and GC find the
 * host end without state (the reference plugin names it at random).
 */
export function hostVethName(network: string, containerId: string, ifname: string): string {
  return `veth${hex(`${network}/${containerId}/${ifname}`, 8)}`;
}

export function attachmentAlias(network: string, containerId: string, ifname: string): string {
  return `weft:${network}:${containerId}:${ifname}`;
}

export function parseAttachmentAlias(alias: string | undefined): { network: string; containerId: string; ifname: string } | undefined {
  const m = alias ? /^weft:([^:]+):([^:]+):([^:]+)$/.exec(alias) : null;
  return m ? { network: m[1]!, containerId: m[2]!, ifname: m[3]! } : undefined;
}

/** A random unicast, locally administered MAC (set at creation so no read-back is needed). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * Lines that make the bridge right: create it if absent, drop IPv4 addresses
 * of another subnet (flannel 1850: the reference plugin fails instead and the
 * node stays broken after a subnet change), add the gateway, bring it up.
 */
export function renderBridgeLines(state: BridgeState | undefined, plan: Pick<AttachPlan, 'bridge' | 'gatewayCidr' | 'mtu'>, newMac: string): string[] {
  if (!state) {
    return [`link add name ${plan.bridge} address ${newMac} mtu ${plan.mtu} type bridge`, `addr add ${plan.gatewayCidr} dev ${plan.bridge}`, `link set dev ${plan.bridge} up`];
  }
  const lines: string[] = [];
  for (const a of state.addrs) if (a !== plan.gatewayCidr) lines.push(`addr del ${a} dev ${plan.bridge}`);
  if (!state.addrs.includes(plan.gatewayCidr)) lines.push(`addr add ${plan.gatewayCidr} dev ${plan.bridge}`);
  if (!state.up) lines.push(`link set dev ${plan.bridge} up`);
  return lines;
}

/** The veth pair, created from the host side with its peer straight into the container netns. */
export function renderVethLines(plan: AttachPlan): string[] {
  const lines = [
    `link add name ${plan.hostVeth} mtu ${plan.mtu} address ${plan.hostMac} type veth peer name ${plan.ifname} mtu ${plan.mtu} address ${plan.containerMac} netns ${plan.netnsPath}`,
    `link set dev ${plan.hostVeth} master ${plan.bridge} alias ${plan.alias}`,
  ];
  if (plan.hairpin) lines.push(`link set dev ${plan.hostVeth} type bridge_slave hairpin on`);
  lines.push(`link set dev ${plan.hostVeth} up`);
  return lines;
}

/** Inside the container: address, up, then routes (the gateway is on-link only once the link is up). */
export function renderContainerLines(plan: AttachPlan): string[] {
  const lines = [`addr add ${plan.address} dev ${plan.ifname}`, `link set dev ${plan.ifname} up`];
  if (plan.network) lines.push(`route add ${plan.network} via ${plan.gateway} dev ${plan.ifname}`);
  if (plan.defaultRoute) lines.push(`route add default via ${plan.gateway} dev ${plan.ifname}`);
  for (const r of plan.extraRoutes ?? []) lines.push(`route add ${r.dst} via ${r.gw} dev ${plan.ifname}`);
  return lines;
}
