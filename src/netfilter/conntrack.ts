import { run } from '../exec/run.js';

/** Which flows to delete; fields map to `conntrack -D` filters. */
export interface ConntrackFilter {
  protocol: 'udp' | 'tcp' | 'sctp';
  /** Original destination address (the service IP the client used). */
  origDst?: string;
  /** Original destination port (e.g. a node port). */
  origDstPort?: number;
  /** Address the flow was DNATed to (the endpoint). */
  dstNat?: string;
}

export interface ConntrackClient {
  /** Deletes matching flows; returns how many went. "None matched" is not an error. */
  delete(filter: ConntrackFilter): Promise<number>;
}

export function conntrackArgs(f: ConntrackFilter): string[] {
  const args = ['-D', '-p', f.protocol];
  if (f.origDst) args.push('--orig-dst', f.origDst);
  if (f.origDstPort) args.push('--orig-port-dst', String(f.origDstPort));
  if (f.dstNat) args.push('--dst-nat', f.dstNat);
  return args;
}

/** Shells out to `conntrack` (conntrack-tools). */
export class ExecConntrack implements ConntrackClient {
  constructor(private readonly netns?: string) {}

  async delete(filter: ConntrackFilter): Promise<number> {
    const r = await run('conntrack', conntrackArgs(filter), { netns: this.netns, allowFail: true });
    // conntrack exits 1 when nothing matched; the count is on stderr either way.
    const m = /(\d+) flow entries have been deleted/.exec(r.stderr + r.stdout);
    if (r.code !== 0 && !m) throw new Error(`conntrack ${conntrackArgs(filter).join(' ')} failed: ${r.stderr.trim()}`);
    return m ? Number(m[1]) : 0;
  }
}

/** Records the deletions asked for (unit tests). */
export class FakeConntrack implements ConntrackClient {
  readonly deleted: ConntrackFilter[] = [];
  async delete(filter: ConntrackFilter): Promise<number> {
    this.deleted.push(filter);
    return 0;
  }
}
