import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isMac } from '../../kernel/links.js';

/** What survives a restart: the VTEP MAC (so peers' fdb/neighbour entries stay valid). */
export interface VxlanState {
  VNI: number;
  VtepMAC: string;
  Port: number;
  MTU: number;
}

export function statePath(stateDir: string, vni: number): string {
  return join(stateDir, `vxlan-${vni}.json`);
}

/** The saved state, or undefined when missing or unreadable (a fresh MAC is then made). */
export async function loadState(stateDir: string, vni: number): Promise<VxlanState | undefined> {
  try {
    const s = JSON.parse(await readFile(statePath(stateDir, vni), 'utf8')) as Partial<VxlanState>;
    if (typeof s.VtepMAC !== 'string' || !isMac(s.VtepMAC)) return undefined;
    return { VNI: vni, VtepMAC: s.VtepMAC.toLowerCase(), Port: Number(s.Port) || 0, MTU: Number(s.MTU) || 0 };
  } catch {
    return undefined;
  }
}

/** Written atomically (temp file + rename) so a crash never leaves half a file. */
export async function saveState(stateDir: string, state: VxlanState): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  const path = statePath(stateDir, state.VNI);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(state) + '\n', { mode: 0o644 });
  await rename(tmp, path);
}
