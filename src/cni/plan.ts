import { createHash, randomBytes } from 'node:crypto';
import { WeftError } from '../core/errors.js';
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

/** The kernel keeps at most 255 bytes of an interface alias (IFALIASZ 256). */
export const MAX_ALIAS = 255;

/**
 * `@<32 hex>`: stands for a network name or container ID too long for a
 * bounded label (alias, iptables comment). '@' is in neither charset, so a
 * token never collides with a real value (and it is a plain ip -batch word).
 */
export function nameToken(value: string): string {
  return `@${hex(value, 32)}`;
}

/** True when `token` (from a label) stands for `value`: equal, or its hash token. */
export function tokenMatches(token: string, value: string): boolean {
  return token === value || (token.startsWith('@') && token === nameToken(value));
}

/**
 * A label naming the attachment, at most `max` characters: the full values
 * when they fit (readable, and what GC matches), else the long ones hashed.
 * IDs of any length are valid (spec, reference plugins); the full ID stays in
 * the IPAM files.
 */
export function boundedLabel(max: number, render: (network: string, containerId: string) => string, network: string, containerId: string): string {
  const full = render(network, containerId);
  if (full.length <= max) return full;
  const shortId = render(network, nameToken(containerId));
  return shortId.length <= max ? shortId : render(nameToken(network), nameToken(containerId));
}

export function attachmentAlias(network: string, containerId: string, ifname: string): string {
  return boundedLabel(MAX_ALIAS, (n, id) => `weft:${n}:${id}:${ifname}`, network, containerId);
}

/** Network and container ID may be hash tokens (see boundedLabel); compare with tokenMatches. */
export function parseAttachmentAlias(alias: string | undefined): { network: string; containerId: string; ifname: string } | undefined {
  const m = alias ? /^weft:([^:]+):([^:]+):([^:]+)$/.exec(alias) : null;
  return m ? { network: m[1]!, containerId: m[2]!, ifname: m[3]! } : undefined;
}

/**
 * One word of an `ip -batch` line. ip splits lines on blanks, takes a word in
 * '...' or "..." literally (no escapes), cuts everything from '#' (a comment)
 * and joins a line ending in a backslash with the next. So: bare when plain,
 * else quoted; what cannot be written (NUL, newline, '#', both quotes) is
 * refused rather than pasted.
 */
export function batchWord(value: string): string {
  if (/^[A-Za-z0-9_.:/@+=,%-]+$/.test(value)) return value;
  if (value === '' || /[\0\n\r#]/.test(value)) throw new BatchWordError(value);
  if (!value.includes('"')) return `"${value}"`;
  if (!value.includes("'")) return `'${value}'`;
  throw new BatchWordError(value);
}

/** A value that cannot be written as one `ip -batch` word. */
export class BatchWordError extends WeftError {
  override readonly code = 'ERR_CNI_BATCH_WORD';
  constructor(value: string) {
    super(`${JSON.stringify(value)} cannot be passed to ip -batch as one word`, { value });
  }
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
  const br = batchWord(plan.bridge);
  // `addr replace` and `link set up` succeed when another ADD got there first
  // (first ADDs at once on a fresh host); `link add` and `addr del` cannot, so
  // a failed batch is re-read and re-rendered (handler).
  if (!state) {
    return [`link add name ${br} address ${newMac} mtu ${plan.mtu} type bridge`, `addr replace ${plan.gatewayCidr} dev ${br}`, `link set dev ${br} up`];
  }
  const lines: string[] = [];
  for (const a of state.addrs) if (a !== plan.gatewayCidr) lines.push(`addr del ${batchWord(a)} dev ${br}`);
  if (!state.addrs.includes(plan.gatewayCidr)) lines.push(`addr replace ${plan.gatewayCidr} dev ${br}`);
  if (!state.up) lines.push(`link set dev ${br} up`);
  return lines;
}

/** The veth pair, created from the host side with its peer straight into the container netns. */
export function renderVethLines(plan: AttachPlan): string[] {
  const w = batchWord;
  const lines = [
    `link add name ${w(plan.hostVeth)} mtu ${plan.mtu} address ${w(plan.hostMac)} type veth peer name ${w(plan.ifname)} mtu ${plan.mtu} address ${w(plan.containerMac)} netns ${w(plan.netnsPath)}`,
    `link set dev ${w(plan.hostVeth)} master ${w(plan.bridge)} alias ${w(plan.alias)}`,
  ];
  if (plan.hairpin) lines.push(`link set dev ${plan.hostVeth} type bridge_slave hairpin on`);
  lines.push(`link set dev ${plan.hostVeth} up`);
  return lines;
}

/**
 * Inside the container: address, up, then routes (the gateway is on-link only
 * once the link is up). Routes are appended: a second interface of the same
 * pod (eth1 beside eth0) finds the network route already there via eth0, and
 * a route to the same destination through another device is not an error;
 * the kernel still refuses an exact duplicate. The default route is only
 * rendered when the plan says so (isDefaultGateway).
 */
export function renderContainerLines(plan: AttachPlan): string[] {
  const dev = batchWord(plan.ifname);
  const lines = [`addr add ${batchWord(plan.address)} dev ${dev}`, `link set dev ${dev} up`];
  if (plan.network) lines.push(`route append ${batchWord(plan.network)} via ${batchWord(plan.gateway)} dev ${dev}`);
  if (plan.defaultRoute) lines.push(`route append default via ${batchWord(plan.gateway)} dev ${dev}`);
  for (const r of plan.extraRoutes ?? []) lines.push(`route append ${batchWord(r.dst)} via ${batchWord(r.gw)} dev ${dev}`);
  return lines;
}
