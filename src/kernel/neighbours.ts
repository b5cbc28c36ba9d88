import { ipJson } from '../exec/run.js';
import { isAbsentError, runBatch, type BatchFailure } from './batch.js';

/** An IPv4 neighbour (ARP) entry. */
export interface Neighbour {
  dev: string;
  ip: string;
  /** Link-layer address; absent for incomplete/failed entries. */
  mac?: string;
  /** As `ip` prints it, e.g. ["PERMANENT"]. */
  state?: string[];
}

export type NeighbourOp = { op: 'replace'; neigh: Neighbour & { mac: string } } | { op: 'delete'; neigh: Neighbour };

export interface NeighbourFailure extends Omit<BatchFailure, 'index'> {
  op: NeighbourOp;
}

export interface Neighbours {
  list(dev: string): Promise<Neighbour[]>;
  /** Replace = permanent entry. Each op on its own; returns the refused
   * ones. Deleting an absent entry counts as done. */
  apply(ops: NeighbourOp[]): Promise<NeighbourFailure[]>;
}

export function neighbourLine(o: NeighbourOp): string {
  return o.op === 'replace'
    ? `neigh replace ${o.neigh.ip} lladdr ${o.neigh.mac} dev ${o.neigh.dev} nud permanent`
    : `neigh del ${o.neigh.ip} dev ${o.neigh.dev}`;
}

interface IpNeighJson {
  dst: string;
  dev?: string;
  lladdr?: string;
  state?: string[];
}

export class IpNeighbours implements Neighbours {
  constructor(private readonly netns?: string) {}

  async list(dev: string): Promise<Neighbour[]> {
    const rows = await ipJson<IpNeighJson>(['-4', 'neigh', 'show', 'dev', dev], this.netns);
    return rows.map((r) => ({
      dev,
      ip: r.dst,
      ...(r.lladdr ? { mac: r.lladdr.toLowerCase() } : {}),
      ...(r.state ? { state: r.state } : {}),
    }));
  }

  async apply(ops: NeighbourOp[]): Promise<NeighbourFailure[]> {
    const failures = await runBatch('ip', ops.map(neighbourLine), this.netns);
    return failures
      .map((f) => ({ message: f.message, op: ops[f.index]! }))
      .filter((f) => !(f.op.op === 'delete' && isAbsentError(f.message)));
  }
}
