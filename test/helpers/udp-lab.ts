import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCidr } from '../../src/core/ip.js';
import { silentLogger } from '../../src/core/log.js';
import type { BackendContext } from '../../src/backends/backend.js';
import type { Lease, NetworkConfig } from '../../src/store/types.js';
import { UdpBackend, type UdpBackendOptions } from '../../src/backends/udp/index.js';
import { NetnsSandbox } from './netns.js';

export interface UdpLabHost {
  n: number;
  ns: string;
  pod: string;
  /** 192.0.2.n */
  publicIp: string;
  /** 10.244.n.2 */
  podIp: string;
  lease: Lease;
  backend: UdpBackend;
}

export interface UdpLab {
  sandbox: NetnsSandbox;
  sw: string;
  hosts: UdpLabHost[];
  config: NetworkConfig;
  /** Each host's peer table = every other host's lease (optionally minus some). */
  syncAll(except?: { host: number; without: number[] }[]): Promise<void>;
  cleanup(): Promise<void>;
}

export function udpNetworkConfig(port?: number): NetworkConfig {
  const raw: Record<string, unknown> = { Type: 'udp', ...(port ? { Port: port } : {}) };
  return {
    network: parseCidr('10.244.0.0/16'),
    subnetLen: 24,
    subnetMin: parseCidr('10.244.1.0/24'),
    subnetMax: parseCidr('10.244.255.0/24'),
    backend: { type: 'udp', raw },
    raw: { Network: '10.244.0.0/16', Backend: raw },
  };
}

/**
 * `count` hosts (namespaces) on a switch namespace's bridge, underlay
 * 192.0.2.n/24 with MTU 1500; one pod namespace per host at 10.244.n.2/24
 * behind a veth whose host end holds 10.244.n.1 (stands in for the CNI
 * bridge). Every host runs a UdpBackend inside its namespace (the addon
 * setns()es a helper thread, so nothing is created in the root namespace).
 */
export async function buildUdpLab(count: number, opts: UdpBackendOptions = {}): Promise<UdpLab> {
  const sandbox = new NetnsSandbox();
  const hosts: UdpLabHost[] = [];
  const config = udpNetworkConfig();
  const stateDir = mkdtempSync(join(tmpdir(), 'weft-udp-'));
  try {
    const sw = await sandbox.create('sw');
    await sandbox.exec(sw, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    await sandbox.exec(sw, 'ip', ['link', 'set', 'br0', 'up']);
    for (let n = 1; n <= count; n++) {
      const ns = await sandbox.create(`h${n}`);
      const pod = await sandbox.create(`p${n}`);
      const publicIp = `192.0.2.${n}`;
      await sandbox.link({ ns, ifname: 'eth0', cidr: `${publicIp}/24` }, { ns: sw, ifname: `port${n}` });
      await sandbox.exec(sw, 'ip', ['link', 'set', `port${n}`, 'master', 'br0']);
      const podIp = `10.244.${n}.2`;
      await sandbox.link({ ns: pod, ifname: 'eth0', cidr: `${podIp}/24` }, { ns, ifname: 'pod0', cidr: `10.244.${n}.1/24` });
      await sandbox.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      const backend = new UdpBackend(hostContext(config, ns, publicIp, stateDir), opts);
      const { mtu } = await backend.prepare();
      for (const [where, dev] of [
        [pod, 'eth0'],
        [ns, 'pod0'],
      ] as const) {
        await sandbox.exec(where, 'ip', ['link', 'set', dev, 'mtu', String(mtu)]);
      }
      await sandbox.exec(pod, 'ip', ['route', 'add', 'default', 'via', `10.244.${n}.1`]);
      const lease: Lease = {
        subnet: parseCidr(`10.244.${n}.0/24`),
        attrs: { PublicIP: publicIp, BackendType: 'udp', BackendData: null },
      };
      hosts.push({ n, ns, pod, publicIp, podIp, lease, backend });
    }
    for (const h of hosts) await h.backend.start(h.lease);
    const lab: UdpLab = {
      sandbox,
      sw,
      hosts,
      config,
      async syncAll(except = []) {
        for (const h of hosts) {
          const without = new Set(except.find((e) => e.host === h.n)?.without ?? []);
          await h.backend.sync(hosts.filter((o) => o !== h && !without.has(o.n)).map((o) => o.lease));
        }
      },
      async cleanup() {
        for (const h of hosts) await h.backend.stop().catch(() => {});
        await sandbox.cleanup();
      },
    };
    await lab.syncAll();
    return lab;
  } catch (err) {
    for (const h of hosts) await h.backend.stop().catch(() => {});
    await sandbox.cleanup();
    throw err;
  }
}

function hostContext(config: NetworkConfig, ns: string, publicIp: string, stateDir: string): BackendContext {
  return {
    config,
    iface: { name: 'eth0', index: 0, mtu: 1500, ifaceAddr: publicIp, publicIp },
    log: silentLogger,
    stateDir,
    netns: ns,
  };
}

/** Parses `ping` output: received count and "Unreachable" answers. */
export function parsePing(out: string): { received: number; unreachable: boolean } {
  const m = /(\d+) received/.exec(out);
  return { received: m ? Number(m[1]) : 0, unreachable: /Net Unreachable|Destination Net Unreachable/i.test(out) };
}
