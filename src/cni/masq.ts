import { createHash } from 'node:crypto';
import { boundedLabel, tokenMatches } from './plan.js';

/**
 * Per-container masquerade, as the reference bridge plugin's ipMasq: a nat
 * chain per attachment that accepts traffic to the pod subnet and
 * masquerades the rest (multicast excepted), jumped to from POSTROUTING for
 * the container's address. Names begin with WEFT- so weft never touches
 * flannel's or kube-proxy's chains.
 */
export interface MasqSpec {
  chain: string;
  comment: string;
  /** Container address, no prefix. */
  ip: string;
  /** Pod subnet in CIDR form (traffic to it is not masqueraded). */
  subnet: string;
}

/** `WEFT-CNI-<16 hex>`: 25 characters, under iptables' 28. */
export function masqChainName(network: string, containerId: string, ifname: string): string {
  return `WEFT-CNI-${createHash('sha256').update(`${network}/${containerId}/${ifname}`).digest('hex').slice(0, 16).toUpperCase()}`;
}

/** iptables keeps at most 255 characters of a comment (XT_MAX_COMMENT_LEN 256). */
const MAX_COMMENT = 255;

/** Long network names and container IDs are hash tokens here (compare with tokenMatches). */
export function masqComment(network: string, containerId: string, ifname: string): string {
  return boundedLabel(MAX_COMMENT, (n, id) => `weft net=${n} id=${id} if=${ifname}`, network, containerId);
}

export function parseMasqComment(comment: string): { network: string; containerId: string; ifname: string } | undefined {
  const m = /^weft net=(\S+) id=(\S+) if=(\S+)$/.exec(comment);
  return m ? { network: m[1]!, containerId: m[2]!, ifname: m[3]! } : undefined;
}

/** A POSTROUTING jump into a WEFT-CNI chain, as iptables-save prints it. */
interface Jump {
  line: string;
  chain: string;
  comment?: string;
}

function jumps(natSave: string): Jump[] {
  const out: Jump[] = [];
  for (const line of natSave.split('\n')) {
    const m = /^-A POSTROUTING .*-j (WEFT-CNI-[0-9A-F]+)\s*$/.exec(line);
    if (!m) continue;
    const c = /--comment "([^"]*)"|--comment (\S+)/.exec(line);
    out.push({ line, chain: m[1]!, comment: c ? (c[1] ?? c[2]) : undefined });
  }
  return out;
}

function chains(natSave: string): Set<string> {
  const out = new Set<string>();
  for (const line of natSave.split('\n')) {
    const m = /^:(WEFT-CNI-[0-9A-F]+) /.exec(line);
    if (m) out.add(m[1]!);
  }
  return out;
}

/**
 * Restore text (for --noflush) that makes the chain exactly right and adds
 * the jump unless `natSave` already has it (a repeated ADD stays idempotent).
 */
export function renderMasqAdd(natSave: string, spec: MasqSpec): string {
  const c = `-m comment --comment "${spec.comment}"`;
  const lines = ['*nat', `:${spec.chain} - [0:0]`, `-A ${spec.chain} -d ${spec.subnet} ${c} -j ACCEPT`, `-A ${spec.chain} ! -d 224.0.0.0/4 ${c} -j MASQUERADE`];
  const has = jumps(natSave).some((j) => j.chain === spec.chain && j.line.includes(`-s ${spec.ip}/32 `));
  if (!has) lines.push(`-A POSTROUTING -s ${spec.ip}/32 ${c} -j ${spec.chain}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** Restore text that removes the given chains and every jump to them; '' when none exist. */
export function renderMasqDelete(natSave: string, remove: Set<string>): string {
  const present = chains(natSave);
  const lines: string[] = [];
  for (const j of jumps(natSave)) if (remove.has(j.chain)) lines.push(j.line.replace(/^-A /, '-D '));
  for (const ch of remove) if (present.has(ch)) lines.push(`-F ${ch}`, `-X ${ch}`);
  if (lines.length === 0) return '';
  return ['*nat', ...lines, 'COMMIT', ''].join('\n');
}

/**
 * WEFT-CNI chains of `network` whose attachment is not in `keep` (GC).
 * `keep` holds "<id>/<ifname>"; for long IDs also "<hash token>/<ifname>" (keepSet in handler).
 */
export function staleMasqChains(natSave: string, network: string, keep: Set<string>): Set<string> {
  const out = new Set<string>();
  for (const j of jumps(natSave)) {
    const a = j.comment ? parseMasqComment(j.comment) : undefined;
    if (a && tokenMatches(a.network, network) && !keep.has(`${a.containerId}/${a.ifname}`)) out.add(j.chain);
  }
  return out;
}
