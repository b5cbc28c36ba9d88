import { parseCidr } from '../../src/core/ip.js';
import { createLogger, silentLogger, type Logger } from '../../src/core/log.js';
import type { BackendContext, ExternalInterface } from '../../src/backends/backend.js';
import type { Lease } from '../../src/store/types.js';
import type { NetnsSandbox } from './netns.js';

/** One namespace "host" on the lab underlay. */
export interface LabHost {
  ns: string;
  /** 192.0.2.N */
  ip: string;
  /** 10.244.N.0/24 */
  subnet: string;
  /** 10.244.N.1, on bridge cni0 */
  podGw: string;
  iface: ExternalInterface;
}

/**
 * N hosts (namespaces) whose eth0 (192.0.2.N/24) hang off one bridge in a
 * switch namespace, each with a bridge cni0 holding 10.244.N.1/24 - the
 * address pings go to. Everything lives in `sb` and goes with sb.cleanup().
 */
export async function buildHosts(sb: NetnsSandbox, n: number): Promise<LabHost[]> {
  const sw = await sb.create('sw');
  await sb.exec(sw, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
  await sb.exec(sw, 'ip', ['link', 'set', 'br0', 'up']);
  const hosts: LabHost[] = [];
  for (let i = 1; i <= n; i++) {
    const ns = await sb.create(`h${i}`);
    await sb.link({ ns, ifname: 'eth0', cidr: `192.0.2.${i}/24` }, { ns: sw, ifname: `p${i}` });
    await sb.exec(sw, 'ip', ['link', 'set', `p${i}`, 'master', 'br0']);
    await sb.exec(ns, 'ip', ['link', 'add', 'cni0', 'type', 'bridge']);
    await sb.exec(ns, 'ip', ['addr', 'add', `10.244.${i}.1/24`, 'dev', 'cni0']);
    await sb.exec(ns, 'ip', ['link', 'set', 'cni0', 'up']);
    const index = Number((await sb.exec(ns, 'cat', ['/sys/class/net/eth0/ifindex'])).stdout.trim());
    hosts.push({
      ns,
      ip: `192.0.2.${i}`,
      subnet: `10.244.${i}.0/24`,
      podGw: `10.244.${i}.1`,
      iface: { name: 'eth0', index, mtu: 1500, ifaceAddr: `192.0.2.${i}`, publicIp: `192.0.2.${i}` },
    });
  }
  return hosts;
}

export function labContext(host: LabHost, backend: Record<string, unknown>, stateDir: string, log: Logger = silentLogger): BackendContext {
  return {
    config: {
      network: parseCidr('10.244.0.0/16'),
      subnetLen: 24,
      subnetMin: parseCidr('10.244.1.0/24'),
      subnetMax: parseCidr('10.244.255.0/24'),
      backend: { type: String(backend.Type), raw: backend },
      raw: { Network: '10.244.0.0/16', Backend: backend },
    },
    iface: host.iface,
    log,
    stateDir,
    netns: host.ns,
  };
}

export function labLease(host: LabHost, type: string, backendData?: unknown): Lease {
  return {
    subnet: parseCidr(host.subnet),
    attrs: { PublicIP: host.ip, BackendType: type, ...(backendData !== undefined ? { BackendData: backendData } : {}) },
  };
}

/** A logger for lab tests that prints only when WEFT_TEST_LOG is set. */
export const labLog: Logger = process.env.WEFT_TEST_LOG ? createLogger({ level: 'debug' }) : silentLogger;
