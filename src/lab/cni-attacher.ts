import { dirname, join } from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';
import { run } from '../exec/run.js';
import { LabProcessError } from './errors.js';
import type { PodAttacher, PodAttachRequest } from './attacher.js';
import { POD_IFACE } from './names.js';

export interface CniAttacherOptions {
  /** The plugin executable (a `.js`/`.cjs`/`.mjs` file is run with this Node). */
  plugin: string;
  /** Network name in the conf. Default 'weft'. */
  network?: string;
  /** cniVersion of the conf. Default '1.0.0'. */
  cniVersion?: string;
  /** Extra conf fields merged over the defaults. */
  conf?: Record<string, unknown>;
}

/**
 * Attaches pods by running a CNI plugin inside the host namespace, as a
 * runtime would: CNI_NETNS=/run/netns/<pod>. The conf points the plugin at
 * the host's subnet.env and keeps IPAM state in the lab's directory, so lab
 * hosts never share /var/lib/cni and `lab down` removes it.
 */
export class CniAttacher implements PodAttacher {
  readonly name = 'cni';
  constructor(private readonly opts: CniAttacherOptions) {
    if (!opts.plugin) throw new InvalidArgumentError('plugin', 'path to a CNI plugin is required');
  }

  /** The network configuration sent on stdin. */
  confFor(req: PodAttachRequest): Record<string, unknown> {
    return {
      cniVersion: this.opts.cniVersion ?? '1.0.0',
      name: this.opts.network ?? 'weft',
      type: 'weft',
      subnetFile: req.subnetFile,
      dataDir: join(req.workDir, 'cni-networks'),
      ...this.opts.conf,
    };
  }

  /** CNI environment for one pod. */
  envFor(command: 'ADD' | 'DEL', req: PodAttachRequest): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: `${req.labId}-${req.podName}`,
      CNI_NETNS: `/run/netns/${req.podNetns}`,
      CNI_IFNAME: POD_IFACE,
      CNI_PATH: dirname(this.opts.plugin),
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=${req.podName}`,
      // The shim hands the call to this host's weftd (each lab host serves its own socket).
      WEFT_CNI_SOCKET: join(req.workDir, 'cni.sock'),
    };
  }

  private async call(command: 'ADD' | 'DEL', req: PodAttachRequest): Promise<string> {
    const argv = /\.[cm]?js$/.test(this.opts.plugin) ? [process.execPath, this.opts.plugin] : [this.opts.plugin];
    const r = await run('ip', ['netns', 'exec', req.hostNetns, ...argv], {
      input: JSON.stringify(this.confFor(req)),
      env: this.envFor(command, req),
      allowFail: true,
    });
    if (r.code !== 0) {
      throw new LabProcessError(`CNI ${command} for ${req.podName} failed (exit ${r.code}): ${(r.stdout || r.stderr).trim().slice(0, 500)}`, {
        pod: req.podName,
      });
    }
    return r.stdout;
  }

  async attach(req: PodAttachRequest): Promise<{ ip: string }> {
    const out = await this.call('ADD', req);
    const result = JSON.parse(out) as { ips?: Array<{ address?: string }> };
    const addr = result.ips?.[0]?.address;
    if (!addr) throw new LabProcessError(`CNI ADD for ${req.podName} returned no address: ${out.slice(0, 300)}`);
    return { ip: addr.split('/')[0]! };
  }

  async detach(req: PodAttachRequest): Promise<void> {
    await this.call('DEL', req);
  }
}
