import { ConfigError } from '../../core/errors.js';

/** Backend section of a vxlan network config, validated, with defaults applied. */
export interface VxlanConfig {
  /** `VNI`, default 1. */
  vni: number;
  /** `Port`: UDP port; 0 or absent = the kernel's 8472. */
  port: number;
  /** `MTU`: overrides the interface MTU the device MTU is derived from; 0 = interface MTU. */
  mtu: number;
  /** `GBP`: group policy extension. Default false. */
  gbp: boolean;
  /** `Learning`: let the kernel learn fdb entries. Default false (`nolearning`). */
  learning: boolean;
  /** `DirectRouting`: host-gw style routes to peers on the same L2. Default false. */
  directRouting: boolean;
  /** `DevicePrefix` (weft extension): device name = `<prefix>.<VNI>`. Default "weft". */
  devicePrefix: string;
  /**
   * `TxChecksumOffload` (weft extension): true = keep on, false = turn off on
   * the device, "auto" = off only on kernels older than 5.7 (flannel #1279).
   * Default "auto".
   */
  txChecksumOffload: boolean | 'auto';
}

/** flannel's default vxlan UDP port (the Linux kernel's default). */
export const VXLAN_DEFAULT_PORT = 8472;
/** Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;

function field(raw: Record<string, unknown>, name: string): unknown {
  // flannel matches JSON field names case-insensitively.
  const key = Object.keys(raw).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : raw[key];
}

function int(raw: Record<string, unknown>, name: string, min: number, max: number, dflt: number): number {
  const v = field(raw, name);
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`Backend.${name}`, `must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
  }
  return v;
}

function bool(raw: Record<string, unknown>, name: string): boolean {
  const v = field(raw, name);
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new ConfigError(`Backend.${name}`, `must be true or false (got ${JSON.stringify(v)})`);
  return v;
}

/** Validates the vxlan fields of `Backend`; a bad value names its field (e.g. `Backend.VNI`). */
export function parseVxlanConfig(raw: Record<string, unknown>, defaults: { devicePrefix?: string } = {}): VxlanConfig {
  const vni = int(raw, 'VNI', 0, 0xffffff, 1);
  const port = int(raw, 'Port', 0, 65535, 0) || VXLAN_DEFAULT_PORT;
  const mtu = int(raw, 'MTU', 0, 65535, 0);
  if (mtu !== 0 && mtu - VXLAN_OVERHEAD < 68) {
    throw new ConfigError('Backend.MTU', `must leave at least 68 bytes after the ${VXLAN_OVERHEAD}-byte vxlan overhead (got ${mtu})`);
  }
  const prefixRaw = field(raw, 'DevicePrefix') ?? defaults.devicePrefix ?? 'weft';
  if (typeof prefixRaw !== 'string' || !/^[A-Za-z0-9_-]+$/.test(prefixRaw)) {
    throw new ConfigError('Backend.DevicePrefix', `must be letters, digits, "_" or "-" (got ${JSON.stringify(prefixRaw)})`);
  }
  if (`${prefixRaw}.${vni}`.length > 15) {
    throw new ConfigError('Backend.DevicePrefix', `device name "${prefixRaw}.${vni}" is longer than 15 characters`);
  }
  const csum = field(raw, 'TxChecksumOffload') ?? 'auto';
  if (csum !== 'auto' && typeof csum !== 'boolean') {
    throw new ConfigError('Backend.TxChecksumOffload', `must be true, false or "auto" (got ${JSON.stringify(csum)})`);
  }
  return {
    vni,
    port,
    txChecksumOffload: csum,
    mtu,
    gbp: bool(raw, 'GBP'),
    learning: bool(raw, 'Learning'),
    directRouting: bool(raw, 'DirectRouting'),
    devicePrefix: prefixRaw,
  };
}

export function deviceName(cfg: VxlanConfig): string {
  return `${cfg.devicePrefix}.${cfg.vni}`;
}
