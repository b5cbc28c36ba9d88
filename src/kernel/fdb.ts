import { run } from '../exec/run.js';
import { isAbsentError, runBatch, type BatchFailure } from './batch.js';

/** A bridge forwarding database entry on a vxlan device (`self`). */
export interface FdbEntry {
  dev: string;
  mac: string;
  /** Remote VTEP address (vxlan). */
  dst?: string;
  /** As `bridge` prints it: "permanent", "static", "" ... */
  state?: string;
}

export type FdbOp = { op: 'replace'; entry: FdbEntry & { dst: string } } | { op: 'delete'; entry: FdbEntry };

export interface FdbFailure extends Omit<BatchFailure, 'index'> {
  op: FdbOp;
}

export interface Fdb {
  list(dev: string): Promise<FdbEntry[]>;
  /** Replace = `self permanent`. Each op on its own; returns the refused
   * ones. Deleting an absent entry counts as done. */
  apply(ops: FdbOp[]): Promise<FdbFailure[]>;
}

export function fdbLine(o: FdbOp): string {
  const e = o.entry;
  return o.op === 'replace'
    ? `fdb replace ${e.mac} dev ${e.dev} dst ${e.dst} self permanent`
    : `fdb del ${e.mac} dev ${e.dev}${e.dst ? ` dst ${e.dst}` : ''} self`;
}

interface BridgeFdbJson {
  mac: string;
  dst?: string;
  flags?: string[];
  state?: string;
}

export class BridgeFdb implements Fdb {
  constructor(private readonly netns?: string) {}

  async list(dev: string): Promise<FdbEntry[]> {
    const r = await run('bridge', [...(this.netns ? ['-n', this.netns] : []), '-json', 'fdb', 'show', 'dev', dev]);
    const text = r.stdout.trim();
    const rows = text ? (JSON.parse(text) as BridgeFdbJson[]) : [];
    return rows.map((e) => ({
      dev,
      mac: e.mac.toLowerCase(),
      ...(e.dst ? { dst: e.dst } : {}),
      ...(e.state !== undefined ? { state: e.state } : {}),
    }));
  }

  async apply(ops: FdbOp[]): Promise<FdbFailure[]> {
    const failures = await runBatch('bridge', ops.map(fdbLine), this.netns);
    return failures
      .map((f) => ({ message: f.message, op: ops[f.index]! }))
      .filter((f) => !(f.op.op === 'delete' && isAbsentError(f.message)));
  }
}
