/**
 * flanneld's Kubernetes schema (pkg/subnet/kube): a Node's subnet is its
 * spec.podCIDR, its lease value lives in annotations under a prefix
 * (default flannel.alpha.coreos.com/). This module names the annotations,
 * turns a Node into a Lease (or a refusal saying why not) and computes the
 * annotations a node must carry. Everything from the API is untrusted.
 */
import { isIP } from 'node:net';
import { errorMessage } from '../core/errors.js';
import { containsNet, formatCidr, parseCidr, type IPv4Net } from '../core/ip.js';
import { KubeSubnetError } from './kube-errors.js';
import { MAX_LEASE_VALUE_BYTES, publicIpProblem } from './lease-check.js';
import type { InvalidLease, Lease, LeaseAttrs } from './types.js';

export const DEFAULT_KUBE_ANNOTATION_PREFIX = 'flannel.alpha.coreos.com';

/** The annotation names flanneld uses under one prefix. */
export interface KubeAnnotations {
  prefix: string;
  kubeSubnetManager: string;
  backendData: string;
  backendType: string;
  publicIp: string;
  publicIpOverwrite: string;
  nodePublicIp: string;
}

/**
 * flanneld's newAnnotations: at most one slash; no slash gets "/" appended;
 * a prefix ending in neither "/" nor "-" gets "-"; then it must look like
 * `fqdn/[a-z0-9_-]*-`.
 * @throws KubeSubnetError (ERR_KUBE_SUBNET) naming the prefix
 */
export function kubeAnnotations(prefix = DEFAULT_KUBE_ANNOTATION_PREFIX): KubeAnnotations {
  const slashes = prefix.split('/').length - 1;
  if (slashes > 1) throw new KubeSubnetError(`--kube-annotation-prefix ${JSON.stringify(prefix)}: at most one "/" is allowed`, { prefix });
  let p = slashes === 0 ? `${prefix}/` : prefix;
  if (!p.endsWith('/') && !p.endsWith('-')) p += '-';
  if (!/^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+\/(?:[a-z0-9_-]+-)?$/.test(p)) {
    throw new KubeSubnetError(`--kube-annotation-prefix ${JSON.stringify(prefix)}: must be fqdn/[0-9a-z-_]* (lower case)`, { prefix });
  }
  return {
    prefix: p,
    kubeSubnetManager: `${p}kube-subnet-manager`,
    backendData: `${p}backend-data`,
    backendType: `${p}backend-type`,
    publicIp: `${p}public-ip`,
    publicIpOverwrite: `${p}public-ip-overwrite`,
    nodePublicIp: `${p}node-public-ip`,
  };
}

/** What weft keeps of a Node (the informer's transform). */
export interface NodeRecord {
  name: string;
  resourceVersion: string;
  /** metadata.creationTimestamp in ms (the older Node wins an overlap); 0 when absent. */
  created: number;
  podCIDR?: string;
  podCIDRs?: string[];
  /** Only the annotations under our prefix. */
  annotations: Record<string, string>;
  /** status.conditions[type=NetworkUnavailable].status, when present. */
  networkUnavailable?: string;
}

/** The informer transform: a Node object as a NodeRecord; throws (-> ignored, logged) when it is not a Node. */
export function nodeRecordOf(obj: { metadata: Record<string, unknown>; [k: string]: unknown }, ann: KubeAnnotations): NodeRecord {
  const md = obj.metadata;
  if (typeof md.name !== 'string') throw new Error('Node without metadata.name');
  const annotations: Record<string, string> = {};
  const raw = md.annotations;
  if (raw && typeof raw === 'object') {
    for (const [k, v] of Object.entries(raw as Record<string, unknown>)) if (k.startsWith(ann.prefix) && typeof v === 'string') annotations[k] = v;
  }
  const spec = (obj.spec ?? {}) as Record<string, unknown>;
  const rec: NodeRecord = {
    name: md.name,
    resourceVersion: typeof md.resourceVersion === 'string' ? md.resourceVersion : '',
    created: typeof md.creationTimestamp === 'string' ? Date.parse(md.creationTimestamp) || 0 : 0,
    annotations,
  };
  if (typeof spec.podCIDR === 'string' && spec.podCIDR !== '') rec.podCIDR = spec.podCIDR;
  if (Array.isArray(spec.podCIDRs)) rec.podCIDRs = spec.podCIDRs.filter((c): c is string => typeof c === 'string');
  const conds = ((obj.status ?? {}) as Record<string, unknown>).conditions;
  if (Array.isArray(conds)) {
    const c = conds.find((x) => x && typeof x === 'object' && (x as Record<string, unknown>).type === 'NetworkUnavailable') as Record<string, unknown> | undefined;
    if (c && typeof c.status === 'string') rec.networkUnavailable = c.status;
  }
  return rec;
}

/**
 * The node's IPv4 pod CIDR as flanneld picks it (spec.podCIDRs when given,
 * at most two, the first IPv4 one; else spec.podCIDR). Undefined when the
 * node has none yet; a string saying what is wrong when it is unusable.
 */
export function nodePodCidr(n: NodeRecord, network: IPv4Net): { subnet: IPv4Net } | { problem: string } | undefined {
  const list = n.podCIDRs && n.podCIDRs.length > 0 ? n.podCIDRs : n.podCIDR ? [n.podCIDR] : [];
  if (list.length === 0) return undefined;
  if (list.length > 2) return { problem: `spec.podCIDRs has ${list.length} entries (IPv4, IPv6 or one of each)` };
  const v4 = list.find((c) => isIP(c.split('/')[0] ?? '') === 4);
  if (!v4) return list.some((c) => isIP(c.split('/')[0] ?? '') === 6) ? { problem: 'only an IPv6 podCIDR (weft has no IPv6 yet)' } : { problem: `podCIDR ${JSON.stringify(list[0]!.slice(0, 64))} is not a CIDR` };
  let subnet: IPv4Net;
  try {
    subnet = parseCidr(v4, 'spec.podCIDR', true);
  } catch (err) {
    return { problem: errorMessage(err) };
  }
  if (subnet.prefixLen > 30) return { problem: `podCIDR ${v4} is smaller than a /30` };
  if (!containsNet(network, subnet)) return { problem: `podCIDR ${v4} is not inside the Network ${formatCidr(network)}` };
  return { subnet };
}

/**
 * A Node as a peer's lease. Undefined: not a flannel node (no
 * kube-subnet-manager: "true" annotation, as flanneld ignores it) or no
 * podCIDR yet. An InvalidLease: annotations or podCIDR weft refuses.
 */
export function nodeToLease(n: NodeRecord, ann: KubeAnnotations, network: IPv4Net): { lease: Lease } | { invalid: InvalidLease } | undefined {
  if (n.annotations[ann.kubeSubnetManager] !== 'true') return undefined;
  const revision = Number(n.resourceVersion) || 0;
  const base = { key: n.name, revision, createRevision: n.created };
  const cidr = nodePodCidr(n, network);
  if (cidr === undefined) return undefined;
  if ('problem' in cidr) {
    const reason = /not inside the Network/.test(cidr.problem) ? 'outside-network' : 'key';
    return { invalid: { ...base, reason, detail: `Node ${n.name}: ${cidr.problem}` } };
  }
  const subnet = cidr.subnet;
  const ip = n.annotations[ann.publicIp];
  const ipProblem = ip === undefined ? `no ${ann.publicIp} annotation` : publicIpProblem(ip);
  if (ipProblem) return { invalid: { ...base, subnet, reason: 'public-ip', detail: `Node ${n.name}: ${ipProblem}` } };
  const rawData = n.annotations[ann.backendData] ?? 'null';
  if (Buffer.byteLength(rawData) > MAX_LEASE_VALUE_BYTES) {
    return { invalid: { ...base, subnet, reason: 'too-large', detail: `Node ${n.name}: ${ann.backendData} is over ${MAX_LEASE_VALUE_BYTES} bytes` } };
  }
  let data: unknown;
  try {
    data = JSON.parse(rawData);
  } catch {
    return { invalid: { ...base, subnet, reason: 'value', detail: `Node ${n.name}: ${ann.backendData} is not JSON` } };
  }
  if (data !== null && (typeof data !== 'object' || Array.isArray(data))) {
    return { invalid: { ...base, subnet, reason: 'value', detail: `Node ${n.name}: ${ann.backendData} is not a JSON object` } };
  }
  const attrs: LeaseAttrs = { PublicIP: ip!, PublicIPv6: null, BackendType: n.annotations[ann.backendType] ?? '' };
  // host-gw writes "null": the same as an etcd lease without BackendData.
  if (data !== null) attrs.BackendData = data;
  return { lease: { subnet, attrs, ...base } };
}

/** What our own node's annotations must say (flanneld's AcquireLease). */
export interface OwnAttrs {
  publicIp: string;
  backendType: string;
  backendData?: unknown;
}

/**
 * The annotations our node must carry and which of them differ now (the
 * PATCH body's annotations; empty when nothing is to be written), plus the
 * PublicIP peers will use: `public-ip-overwrite` when set to a valid
 * address, as flanneld does, else ours.
 */
export function ownAnnotationsPatch(
  n: NodeRecord,
  ann: KubeAnnotations,
  own: OwnAttrs,
): { patch: Record<string, string>; publicIp: string; overwriteProblem?: string } {
  const overwrite = n.annotations[ann.publicIpOverwrite];
  let publicIp = own.publicIp;
  let overwriteProblem: string | undefined;
  if (overwrite !== undefined && overwrite !== '') {
    overwriteProblem = publicIpProblem(overwrite);
    if (!overwriteProblem) publicIp = overwrite;
  }
  // Go's json.Marshal of a nil RawMessage is "null" (host-gw, udp).
  const want: Record<string, string> = {
    [ann.backendType]: own.backendType,
    [ann.backendData]: JSON.stringify(own.backendData ?? null),
    [ann.publicIp]: publicIp,
    [ann.kubeSubnetManager]: 'true',
  };
  const patch: Record<string, string> = {};
  for (const [k, v] of Object.entries(want)) if (n.annotations[k] !== v) patch[k] = v;
  return { patch, publicIp, ...(overwriteProblem ? { overwriteProblem } : {}) };
}
