import { WeftError } from '../core/errors.js';
import type { IptablesClient } from '../netfilter/iptables.js';

/**
 * flanneld's iptables chains (nat FLANNEL-POSTRTG jumped to from POSTROUTING,
 * filter FLANNEL-FWD from FORWARD). flanneld leaves them when it stops; on a
 * host moved to weft they would keep masquerading and accepting by flannel's
 * rules beside weft's own WEFT- chains.
 */
export const FLANNEL_CHAINS = [
  { table: 'nat', chain: 'FLANNEL-POSTRTG' },
  { table: 'filter', chain: 'FLANNEL-FWD' },
] as const;

/** A rule line of iptables-save that jumps to a flannel chain and is safe to hand back as `-D`. */
const JUMP_RE = /^-A [A-Za-z0-9_.-]{1,28} (?:[ -~]*? )?-j (FLANNEL-POSTRTG|FLANNEL-FWD)$/;

/** A jump to a flannel chain that cannot be given back to iptables-restore as read. */
export class FlannelRuleError extends WeftError {
  override readonly code = 'ERR_FLANNEL_RULE';
}

export interface FlannelRulesRemoved {
  /** Rules deleted that jumped to a flannel chain (POSTROUTING/FORWARD or elsewhere). */
  jumps: number;
  /** Chains flushed and deleted, as `table/chain`. */
  chains: string[];
}

/**
 * The restore text that deletes every jump to flannel's chains and then the
 * chains, for one table's iptables-save dump; undefined when nothing is there.
 * Only lines that passed JUMP_RE (printable ASCII, one line, a plain chain
 * name) are handed back, as `-D` of the very rule iptables-save printed.
 */
export function renderFlannelCleanup(table: string, save: string): { text: string; jumps: number; chains: string[] } | undefined {
  const ours = FLANNEL_CHAINS.filter((c) => c.table === table).map((c) => c.chain as string);
  const lines: string[] = [];
  let jumps = 0;
  for (const l of save.split('\n')) {
    if (!l.startsWith('-A ')) continue;
    const target = / -j (FLANNEL-POSTRTG|FLANNEL-FWD)$/.exec(l)?.[1];
    if (!target || !ours.includes(target)) continue;
    // Rules inside flannel's own chains go with -F.
    if (ours.some((c) => l.startsWith(`-A ${c} `))) continue;
    if (!JUMP_RE.test(l)) throw new FlannelRuleError(`refusing to hand back an unexpected rule: ${JSON.stringify(l.slice(0, 200))}`, { table });
    lines.push(l.replace(/^-A /, '-D '));
    jumps++;
  }
  const chains = ours.filter((c) => save.split('\n').some((l) => l.startsWith(`:${c} `)));
  for (const c of chains) lines.push(`-F ${c}`);
  for (const c of chains) lines.push(`-X ${c}`);
  if (lines.length === 0) return undefined;
  return { text: [`*${table}`, ...lines, 'COMMIT', ''].join('\n'), jumps, chains: chains.map((c) => `${table}/${c}`) };
}

/** Removes flannel's jumps and chains in one restore per table; a second call finds nothing. */
export async function removeFlannelRules(ipt: IptablesClient): Promise<FlannelRulesRemoved> {
  const out: FlannelRulesRemoved = { jumps: 0, chains: [] };
  for (const table of ['nat', 'filter'] as const) {
    const plan = renderFlannelCleanup(table, await ipt.save(table));
    if (!plan) continue;
    await ipt.restore(plan.text);
    out.jumps += plan.jumps;
    out.chains.push(...plan.chains);
  }
  return out;
}
