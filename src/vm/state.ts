import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../store/subnet-env.js';
import { VmNotFoundError } from './errors.js';

/**
 * The tier's record of what it created, in <root>/<id>/state.json (root:
 * WEFT_VM_RUN_DIR, default /var/tmp/weft-vm: overlays are disk, not tmpfs).
 * Every object is recorded BEFORE it is created so `vm down` removes exactly
 * what exists, also after a crash or a half-finished `up`.
 */
export const VM_STATE_VERSION = 1;

export function vmRunRoot(): string {
  return process.env.WEFT_VM_RUN_DIR ?? '/var/tmp/weft-vm';
}
export const vmDir = (id: string): string => join(vmRunRoot(), id);
export const vmStatePath = (id: string): string => join(vmDir(id), 'state.json');

export interface GuestRecord {
  name: string;
  index: number;
  /** Underlay address with prefix, e.g. 192.0.2.11/24. */
  ip: string;
  tap: string;
  mac: string;
  overlay: string;
  sock: string;
  console: string;
  pid?: number;
  startTime?: number;
  /** Milliseconds from QEMU start to the agent's first answer. */
  bootMs?: number;
}

export interface VmState {
  version: number;
  id: string;
  netns: string;
  bridge: string;
  bridgeIp: string;
  imageDir: string;
  bundle: string;
  accel: 'kvm' | 'tcg';
  memoryMb: number;
  guests: GuestRecord[];
  createdAt: string;
  /** Set once `up` has finished. */
  ready?: boolean;
  /** What `vm up` configured weft with (backend, proxy mode), once it did. */
  weft?: { backend: string; proxyMode: string };
}

export function saveVmState(s: VmState): void {
  mkdirSync(vmDir(s.id), { recursive: true });
  writeFileAtomic(vmStatePath(s.id), JSON.stringify(s, null, 2) + '\n');
}

export function loadVmState(id: string): VmState {
  const p = vmStatePath(id);
  if (!existsSync(p)) throw new VmNotFoundError(`no VM tier "${id}" (no ${p})`, { id });
  return JSON.parse(readFileSync(p, 'utf8')) as VmState;
}

export function tryLoadVmState(id: string): VmState | undefined {
  try {
    return loadVmState(id);
  } catch {
    return undefined;
  }
}
