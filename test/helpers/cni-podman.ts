import { copyFileSync, existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, type RunResult } from '../../src/exec/run.js';
import type { CniWorkspace } from './cni-env.js';

export const havePodman = existsSync('/usr/bin/podman') && existsSync('/usr/sbin/runc') && existsSync('/usr/bin/busybox');

/**
 * Debian's podman 4.3 with the settings that work on this machine (FACTS.md
 * section 2: CNI backend, runc, cgroupfs, file events, explicit ulimits),
 * private storage and config under the workspace, run with only its network
 * namespace switched to a lab/test "host" (so its /run/netns files stay
 * visible to later calls).
 */
export class PodmanHost {
  readonly image: string;

  constructor(
    readonly ws: CniWorkspace,
    readonly hostNetns: string,
    readonly network: string,
    readonly weftConf: Record<string, unknown>,
    private readonly env: Record<string, string> = {},
  ) {
    this.image = `localhost/weft-busybox-${network}`;
  }

  /** Writes the conflist and containers.conf, imports a busybox-static image. */
  async setup(): Promise<void> {
    const d = this.ws.dir;
    mkdirSync(join(d, 'net.d'), { recursive: true });
    writeFileSync(join(d, 'net.d', `10-${this.network}.conflist`), JSON.stringify({ cniVersion: '1.0.0', name: this.network, plugins: [{ type: 'weft', ...this.weftConf }] }));
    writeFileSync(
      join(d, 'containers.conf'),
      [
        '[containers]',
        'default_ulimits = ["nofile=20000:20000","nproc=32768:32768"]',
        '[engine]',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        `events_logfile_path = "${join(d, 'events.log')}"`,
        'runtime = "runc"',
        '[network]',
        'network_backend = "cni"',
        `cni_plugin_dirs = ["${this.ws.binDir}"]`,
        `network_config_dir = "${join(d, 'net.d')}"`,
        '',
      ].join('\n'),
    );
    const rootfs = join(d, 'rootfs');
    mkdirSync(join(rootfs, 'bin'), { recursive: true });
    copyFileSync('/usr/bin/busybox', join(rootfs, 'bin/busybox'));
    for (const c of ['sh', 'ping', 'ip', 'sleep']) symlinkSync('busybox', join(rootfs, 'bin', c));
    await run('tar', ['-C', rootfs, '-cf', join(d, 'rootfs.tar'), '.']);
    await this.podman(['import', join(d, 'rootfs.tar'), this.image]);
  }

  podman(args: string[], allowFail = false): Promise<RunResult> {
    const d = this.ws.dir;
    return run('nsenter', [`--net=/var/run/netns/${this.hostNetns}`, 'podman', '--root', join(d, 'root'), '--runroot', join(d, 'runroot'), '--tmpdir', join(d, 'tmp'), ...args], {
      allowFail,
      timeoutMs: 120_000,
      env: { ...process.env, CONTAINERS_CONF: join(d, 'containers.conf'), WEFT_CNI_SOCKET: join(d, 'absent.sock'), ...this.env },
    });
  }

  /** `podman run -d` a sleeping busybox on the network; returns its address. */
  async runContainer(name: string): Promise<string> {
    await this.podman(['run', '-d', '--name', name, '--network', this.network, '--cap-add', 'NET_RAW', this.image, 'sleep', '600']);
    const info = JSON.parse((await this.podman(['inspect', name])).stdout)[0];
    return info.NetworkSettings.Networks[this.network].IPAddress as string;
  }

  reservations(): string[] {
    const dir = join((this.weftConf.dataDir as string | undefined) ?? '/var/lib/cni/networks', this.network);
    return existsSync(dir) ? readdirSync(dir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
  }

  async removeAll(): Promise<void> {
    await this.podman(['rm', '-a', '-f', '-t', '0'], true);
  }
}
