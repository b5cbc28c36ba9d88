import { run } from '../exec/run.js';

/** NIC offload switches (ethtool -K). */
export interface Offloads {
  /** Whether the device computes transmit checksums in software-offload mode (`tx-checksumming`). */
  getTxChecksum(dev: string): Promise<boolean>;
  setTxChecksum(dev: string, on: boolean): Promise<void>;
}

/** `ethtool -k/-K`, inside `netns` when given. */
export class EthtoolOffloads implements Offloads {
  constructor(private readonly netns?: string) {}

  async getTxChecksum(dev: string): Promise<boolean> {
    const r = await run('ethtool', ['-k', dev], this.netns ? { netns: this.netns } : {});
    return /^tx-checksumming:\s*on/m.test(r.stdout);
  }

  async setTxChecksum(dev: string, on: boolean): Promise<void> {
    await run('ethtool', ['-K', dev, 'tx', on ? 'on' : 'off'], this.netns ? { netns: this.netns } : {});
  }
}

/**
 * Kernels before 5.7 compute a wrong outer UDP checksum for vxlan packets
 * that went through MASQUERADE --random-fully with tx checksum offload on
 * (flannel #1279, calico #3145); the receiver drops them as "bad checksum".
 */
export function kernelNeedsTxChecksumOff(release: string): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major < 5 || (major === 5 && minor < 7);
}
