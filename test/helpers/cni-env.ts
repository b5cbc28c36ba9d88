import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, type RunResult } from '../../src/exec/run.js';

/**
 * A private CNI workspace for a lab test: temp dir with a subnet.env, a data
 * dir, and a private build of the plugin pair (shim `weft` + `weft-cni.cjs`),
 * so parallel suites never share files.
 */
export class CniWorkspace {
  readonly dir = mkdtempSync(join(tmpdir(), 'weft-cni-lab-'));
  readonly binDir = join(this.dir, 'bin');
  readonly dataDir = join(this.dir, 'data');
  readonly subnetFile = join(this.dir, 'subnet.env');

  async build(): Promise<void> {
    await run('node', [new URL('../../scripts/build-cni.mjs', import.meta.url).pathname, '--outdir', this.binDir]);
  }

  get shim(): string {
    return join(this.binDir, 'weft');
  }

  writeSubnetEnv(subnet: string, opts: { network?: string; mtu?: number; ipMasq?: boolean } = {}): void {
    const [net, len] = subnet.split('/');
    const gw = net!.replace(/\.0$/, '.1');
    writeFileSync(
      this.subnetFile,
      `FLANNEL_NETWORK=${opts.network ?? '10.244.0.0/16'}\nFLANNEL_SUBNET=${gw}/${len}\nFLANNEL_MTU=${opts.mtu ?? 1450}\nFLANNEL_IPMASQ=${opts.ipMasq ?? true}\n`,
    );
  }

  conf(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { cniVersion: '1.0.0', name: 'weftlab', type: 'weft', subnetFile: this.subnetFile, dataDir: this.dataDir, ...extra };
  }

  /** Runs the real executable inside the host netns, as a runtime would. */
  exec(hostNetns: string, cniEnv: Record<string, string | undefined>, stdin: string, extraEnv: Record<string, string> = {}): Promise<RunResult> {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, WEFT_CNI_SOCKET: join(this.dir, 'no-server.sock'), ...extraEnv };
    for (const [k, v] of Object.entries(cniEnv)) if (v !== undefined) env[k] = v;
    return run(this.shim, [], { netns: hostNetns, env, input: stdin, allowFail: true });
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
