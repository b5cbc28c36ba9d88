// Pure parts of the convergence benchmark: simulated peer leases in
// flannel's etcd schema, and a tracker of what `ip -ts -o monitor route
// neigh` reports present in the watching host. No I/O here.

/** "10.244.1.0" -> 32-bit unsigned integer. */
export function ipToInt(ip) {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`bad IPv4 "${ip}"`);
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}

export function intToIp(n) {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/**
 * Every subnet of length `len` in `network` ("10.244.0.0/17") from the second
 * one on (flannel's default SubnetMin skips the first), minus `exclude`.
 */
export function subnetsOf(network, len, exclude = []) {
  const [base, plen] = network.split('/');
  const prefix = Number(plen);
  if (!(len >= prefix && len <= 30)) throw new Error(`subnet length ${len} does not fit ${network}`);
  const start = ipToInt(base);
  const size = 2 ** (32 - len);
  const count = 2 ** (len - prefix);
  const skip = new Set(exclude);
  const out = [];
  for (let i = 1; i < count; i++) {
    const cidr = `${intToIp((start + i * size) >>> 0)}/${len}`;
    if (!skip.has(cidr)) out.push(cidr);
  }
  return out;
}

/** flannel's lease key: `<prefix>/subnets/10.244.1.0-26`. */
export function leaseKey(prefix, cidr) {
  return `${prefix}/subnets/${cidr.replace('/', '-')}`;
}

/**
 * PublicIP of simulated peer i. The lab's underlay /24 has too few
 * addresses for 500 peers, so they repeat over 192.0.2.10-.249: host-gw
 * gateways only need to be on-link (the kernel accepts a route via an
 * on-link address nobody answers on) and vxlan peers only need a MAC and an
 * address for the fdb entry.
 */
export function peerPublicIp(i) {
  return `192.0.2.${10 + (i % 240)}`;
}

/** A locally administered, unique VtepMAC for peer i. */
export function peerMac(i) {
  const b = [0x0e, 0x77, 0x66, (i >>> 16) & 255, (i >>> 8) & 255, i & 255];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** The lease value flanneld writes (FACTS.md section 1). */
export function leaseValue(backend, publicIp, mac) {
  const v = { PublicIP: publicIp, PublicIPv6: null, BackendType: backend, BackendData: null };
  if (backend === 'vxlan') v.BackendData = { VNI: 1, VtepMAC: mac };
  return JSON.stringify(v);
}

/** Simulated peers for the given subnets. */
export function makePeers(subnets) {
  return subnets.map((cidr, i) => ({ cidr, publicIp: peerPublicIp(i), mac: peerMac(i + 1) }));
}

/**
 * What must be present in the watching host for a peer to count as
 * converged: the route (host-gw), or the neighbour `<subnet>.0`, the fdb
 * entry for its MAC and the route (vxlan).
 */
export function expectedEntries(backend, peer) {
  const route = `route ${peer.cidr}`;
  if (backend !== 'vxlan') return [route];
  return [`neigh ${peer.cidr.split('/')[0]}`, `fdb ${peer.mac}`, route];
}

/**
 * Parses one line of `ip -ts -o monitor route neigh`:
 *   `[2026-11-22T04:17:26.506943] 10.244.5.0/26 via 192.0.2.50 dev eth0 proto 247`
 *   `[...] 10.244.6.0 dev weft.1 lladdr 0e:... PERMANENT`        (neighbour)
 *   `[...] 192.0.2.60 dev weft.1 lladdr 0e:... NOARP PERMANENT`  (vxlan fdb entry)
 *   `[...] Deleted 10.244.6.0 dev weft.1 FAILED`                 (neighbour gone)
 * Neighbour messages end in a NUD state in capitals. Those for an address
 * inside `podPrefix` are the vxlan `<subnet>.0` neighbours (keyed by
 * address; FAILED / INCOMPLETE count as absent); those with an lladdr
 * outside it are bridge fdb entries, which the kernel reports as
 * `<dst> dev <vxlan> lladdr <mac>`, keyed by MAC. Routes are keyed by
 * destination (a host route prints without its /32). Anything else
 * (local, broadcast, IPv6 ...) gives undefined.
 */
export function parseMonitorLine(line, podPrefix = '10.') {
  const m = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?\]\s+(Deleted\s+)?(\S+)(.*)$/.exec(line.trim());
  if (!m) return undefined;
  const at = Date.parse(m[1]) + Number(`0.${m[2] ?? '0'}`) * 1000;
  const deleted = Boolean(m[3]);
  const first = m[4];
  const rest = m[5].trim();
  if (!/^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(first)) return undefined;
  const ll = /\blladdr ([0-9a-f:]{17})\b/i.exec(rest);
  const nud = /\b(PERMANENT|NOARP|REACHABLE|STALE|DELAY|PROBE|FAILED|INCOMPLETE|NONE)$/.exec(rest);
  if (ll || nud) {
    if (first.startsWith(podPrefix) && !first.includes('/')) {
      const unusable = nud && (nud[1] === 'FAILED' || nud[1] === 'INCOMPLETE');
      return { at, deleted: deleted || Boolean(unusable), key: `neigh ${first}` };
    }
    if (ll) return { at, deleted, key: `fdb ${ll[1].toLowerCase()}` };
    return undefined;
  }
  if (/\b(via|dev)\b/.test(rest)) {
    const dst = first.includes('/') ? first : `${first}/32`;
    return { at, deleted, key: `route ${dst}` };
  }
  return undefined;
}

/**
 * What the monitor says is present, with the time each entry last appeared
 * or went. `doneAt(keys)` is the time the last of `keys` appeared (all
 * present) and `goneAt(keys)` the time the last one went (none present).
 */
export class PresenceTracker {
  constructor() {
    /** key -> { present, at } */
    this.state = new Map();
  }

  /** A repeated "present" (a replace of an existing entry) keeps the first time it appeared. */
  feed(ev) {
    if (!ev) return;
    const prev = this.state.get(ev.key);
    if (!ev.deleted && prev?.present) return;
    this.state.set(ev.key, { present: !ev.deleted, at: ev.at });
  }

  doneAt(keys) {
    let t = -Infinity;
    for (const k of keys) {
      const s = this.state.get(k);
      if (!s || !s.present) return undefined;
      t = Math.max(t, s.at);
    }
    return t;
  }

  goneAt(keys) {
    let t = -Infinity;
    for (const k of keys) {
      const s = this.state.get(k);
      if (s?.present) return undefined;
      t = Math.max(t, s ? s.at : -Infinity);
    }
    return t;
  }
}
