import { InvalidArgumentError } from '../core/errors.js';

/**
 * Every name the lab gives to a namespace or link, in one place. Names carry
 * the lab id so two labs (and parallel tests) never collide; link names stay
 * within the kernel's 15-character limit (IFNAMSIZ - 1).
 */

/** Longest lab id: keeps `<id>-h250` and `<id>-p50` within 15 characters. */
export const MAX_ID_LEN = 8;
/** Kernel limit on interface names. */
export const MAX_IFNAME_LEN = 15;
/** Most hosts a lab may have (192.0.2.1 .. 192.0.2.N; .254 is etcd). */
export const MAX_HOSTS = 50;
/** Most pods per host. */
export const MAX_PODS_PER_HOST = 50;

/** Underlay network shared by all hosts (a documentation range). */
export const UNDERLAY_PREFIX = 24;
export const ETCD_IP = '192.0.2.254';
export const ETCD_PORT = 2379;
export const ETCD_ENDPOINT = `http://${ETCD_IP}:${ETCD_PORT}`;
/** Bridge in each host that pods are attached to. */
export const POD_BRIDGE = 'weft0';
/** Underlay interface inside each host. */
export const HOST_IFACE = 'eth0';
/** Interface inside each pod. */
export const POD_IFACE = 'eth0';

const ID_RE = /^[a-z][a-z0-9]*$/;

/** Checks a lab id: lower-case letters and digits, starting with a letter, at most 8 characters. */
export function validateLabId(id: string): string {
  if (typeof id !== 'string' || id.length === 0) throw new InvalidArgumentError('id', 'must not be empty');
  if (id.length > MAX_ID_LEN) throw new InvalidArgumentError('id', `"${id}" is longer than ${MAX_ID_LEN} characters`);
  if (!ID_RE.test(id)) {
    throw new InvalidArgumentError('id', `"${id}" must be lower-case letters and digits, starting with a letter`);
  }
  return id;
}

export const switchNetns = (id: string): string => `${id}-sw`;
/** Short host name used by `lab exec` and status: h1, h2, ... */
export const hostName = (n: number): string => `h${n}`;
export const hostNetns = (id: string, n: number): string => `${id}-h${n}`;
/** Short pod name: h1-p1. */
export const podName = (n: number, k: number): string => `h${n}-p${k}`;
export const podNetns = (id: string, n: number, k: number): string => `${id}-h${n}-p${k}`;
export const underlayIp = (n: number): string => `192.0.2.${n}`;
/** Underlay bridge inside the switch namespace. */
export const switchBridge = (id: string): string => `${id}-br`;
/** Switch-side end of host N's underlay veth (inside the switch namespace). */
export const switchPort = (id: string, n: number): string => `${id}-h${n}`;
/** Host-side end of pod K's veth (inside the host namespace). */
export const podHostVeth = (id: string, k: number): string => `${id}-p${k}`;

/** Throws when a link name would be refused by the kernel. */
export function checkIfname(name: string): string {
  if (name.length > MAX_IFNAME_LEN) {
    throw new InvalidArgumentError('ifname', `"${name}" is longer than ${MAX_IFNAME_LEN} characters`);
  }
  return name;
}

/** Parses `h3` -> 3, `h3-p2` -> [3, 2]; undefined when the text is neither. */
export function parseShortTarget(target: string): { host: number; pod?: number } | undefined {
  const m = /^h(\d+)(?:-p(\d+))?$/.exec(target);
  if (!m) return undefined;
  return { host: Number(m[1]), pod: m[2] === undefined ? undefined : Number(m[2]) };
}

/**
 * Turns a `lab exec` target into a namespace name: `sw`/`switch`, `h1`,
 * `h1-p1`, or a full namespace name. `known` is the list of namespaces the
 * lab recorded; anything else is refused so exec never enters a stranger's
 * namespace.
 */
export function resolveTarget(id: string, target: string, known: readonly string[]): string {
  let ns: string;
  if (target === 'sw' || target === 'switch') ns = switchNetns(id);
  else {
    const short = parseShortTarget(target);
    if (short) ns = short.pod === undefined ? hostNetns(id, short.host) : podNetns(id, short.host, short.pod);
    else ns = target;
  }
  if (!known.includes(ns)) {
    throw new InvalidArgumentError('target', `"${target}" is not a namespace of lab "${id}" (try h1, h1-p1 or sw)`);
  }
  return ns;
}
