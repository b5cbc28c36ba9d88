import { formatIPv4, nthIP, type IPv4Net } from '../core/ip.js';
import { ip, ipBatch } from '../exec/run.js';
import { POD_BRIDGE, POD_IFACE } from './names.js';

/** Everything an attacher needs to give one pod namespace an address in its host's subnet. */
export interface PodAttachRequest {
  labId: string;
  /** Host namespace (where the bridge lives). */
  hostNetns: string;
  /** Pod namespace (already created by the lab, lo up). */
  podNetns: string;
  podName: string;
  /** 1-based pod number on its host. */
  index: number;
  /** Host end of the veth (inside the host namespace), <= 15 chars, carries the lab id. */
  hostVeth: string;
  /** The host's leased subnet (from subnet.env). */
  subnet: IPv4Net;
  /** MTU from subnet.env. */
  mtu: number;
  /** The host's subnet.env (what a CNI plugin reads). */
  subnetFile: string;
  /** A directory for this host's attachment state (removed by `lab down`). */
  workDir: string;
}

/**
 * How pods get onto the network. The manual attacher below does it with
 * `ip`; a CNI attacher (running the weft plugin with CNI_NETNS=/run/netns/<pod>)
 * can replace it without touching the rest of the lab.
 */
export interface PodAttacher {
  /** Name recorded in the lab state. */
  readonly name: string;
  /** Connects the pod; returns its address (no prefix length). */
  attach(req: PodAttachRequest): Promise<{ ip: string }>;
  /** Disconnects the pod; must succeed when it is already gone. */
  detach(req: PodAttachRequest): Promise<void>;
}

/** Pod K's address: .(1+K) of the subnet (.1 is the bridge / gateway). */
export function manualPodIp(subnet: IPv4Net, index: number): string {
  return formatIPv4(nthIP(subnet, 1 + index));
}

/** The `ip -batch` lines that make the host's bridge; idempotent. */
export function bridgeLines(subnet: IPv4Net, mtu: number): string[] {
  const gw = `${formatIPv4(nthIP(subnet, 1))}/${subnet.prefixLen}`;
  return [`addr replace ${gw} dev ${POD_BRIDGE}`, `link set ${POD_BRIDGE} mtu ${mtu} up`];
}

/**
 * Bridge `weft0` in the host holding the subnet's .1, a veth per pod with
 * `eth0` in the pod, address .(1+K), default route via .1, MTU from subnet.env.
 */
export class ManualAttacher implements PodAttacher {
  readonly name = 'manual';

  async attach(req: PodAttachRequest): Promise<{ ip: string }> {
    const exists = await ip(['link', 'show', POD_BRIDGE], { netns: req.hostNetns, allowFail: true });
    if (exists.code !== 0) await ip(['link', 'add', POD_BRIDGE, 'type', 'bridge'], { netns: req.hostNetns });
    await ipBatch(bridgeLines(req.subnet, req.mtu), { netns: req.hostNetns });
    // Both ends are created directly in their namespaces: nothing ever appears in the root namespace.
    await ip(['link', 'add', req.hostVeth, 'netns', req.hostNetns, 'mtu', String(req.mtu), 'type', 'veth', 'peer', 'name', POD_IFACE, 'netns', req.podNetns, 'mtu', String(req.mtu)]);
    await ipBatch([`link set ${req.hostVeth} master ${POD_BRIDGE} up`], { netns: req.hostNetns });
    const podIp = manualPodIp(req.subnet, req.index);
    const gw = formatIPv4(nthIP(req.subnet, 1));
    await ipBatch(
      [`addr add ${podIp}/${req.subnet.prefixLen} dev ${POD_IFACE}`, `link set ${POD_IFACE} up`, `route replace default via ${gw} dev ${POD_IFACE}`],
      { netns: req.podNetns },
    );
    return { ip: podIp };
  }

  async detach(req: PodAttachRequest): Promise<void> {
    // Deleting one end removes the pair; gone already is fine.
    await ip(['link', 'del', req.hostVeth], { netns: req.hostNetns, allowFail: true });
  }
}
