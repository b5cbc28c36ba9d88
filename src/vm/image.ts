import { existsSync, openSync, closeSync, constants } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../exec/run.js';
import { VmUnavailableError } from './errors.js';

/** The weft checkout this build runs from (dist/vm/ -> the repo root). */
export const repoRoot = (): string => join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const QEMU = 'qemu-system-x86_64';

/** KVM when /dev/kvm opens read-write (and WEFT_VM_ACCEL is not tcg), else TCG software emulation. */
export function pickAccel(): 'kvm' | 'tcg' {
  const want = process.env.WEFT_VM_ACCEL;
  if (want === 'tcg') return 'tcg';
  try {
    closeSync(openSync('/dev/kvm', constants.O_RDWR));
    return 'kvm';
  } catch {
    if (want === 'kvm') throw new VmUnavailableError('WEFT_VM_ACCEL=kvm but /dev/kvm cannot be opened read-write');
    return 'tcg';
  }
}

/** Why this machine cannot run the tier ('' when it can): root, QEMU, qemu-img, mkfs.ext4. */
export async function vmUnavailableReason(): Promise<string> {
  if (process.getuid?.() !== 0) return 'needs root';
  for (const t of [QEMU, 'qemu-img', 'mkfs.ext4']) {
    const r = await run('sh', ['-c', `command -v ${t}`], { allowFail: true });
    if (r.code !== 0) return `${t} not found (bash scripts/install-deps.sh installs it)`;
  }
  return '';
}

/**
 * The image directory (scripts/vm-image.sh), building it when `build` is set
 * and it is missing (minutes; cached afterwards).
 */
export async function imageDir(opts: { build: boolean; timeoutMs?: number }): Promise<string> {
  const script = join(repoRoot(), 'scripts', 'vm-image.sh');
  const probe = await run('bash', [script, '--print-dir'], { allowFail: true });
  const dir = probe.stdout.trim();
  if (probe.code === 0 && dir) return dir;
  if (!opts.build) throw new VmUnavailableError(`the VM image is not built (${dir || 'scripts/vm-image.sh'}); run bash scripts/vm-image.sh`);
  const r = await run('bash', [script], { allowFail: true, timeoutMs: opts.timeoutMs ?? 3_600_000 });
  if (r.code !== 0) throw new VmUnavailableError(`scripts/vm-image.sh failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(-800)}`);
  if (!existsSync(join(dir, 'rootfs.qcow2'))) throw new VmUnavailableError(`scripts/vm-image.sh finished but ${dir}/rootfs.qcow2 is missing`);
  return dir;
}
