import { formatCidr, type IPv4Net } from '../core/ip.js';
import type { IptablesClient } from '../netfilter/iptables.js';

/** Chains weftd owns; named apart from flannel's and kube-proxy's. */
export const MASQ_CHAIN = 'WEFT-POSTRTG';
export const FORWARD_CHAIN = 'WEFT-FWD';
const MASQ_COMMENT = 'weftd masq';
const FORWARD_COMMENT = 'weftd forward';

export interface MasqParams {
  network: IPv4Net;
  subnet: IPv4Net;
  /**
   * Traffic carrying one of these marks is masqueraded by a service proxy;
   * flannel RETURNs on kube-proxy's 0x4000, we also on weft-proxy's 0x2000.
   */
  proxyMarks?: string[];
}

/** kube-proxy's masquerade mark, then weft-proxy's (its --masquerade-bit 13). */
export const DEFAULT_PROXY_MARKS = ['0x4000/0x4000', '0x2000/0x2000'];

/**
 * The restore text for weftd's masquerade and forward rules (flannel's rules
 * with WEFT- chains). Our chains are flushed and rewritten in one
 * `iptables-restore --noflush` transaction, so the set is replaced atomically.
 * The jump rules are added by `ensureJumps` separately because --noflush
 * restore would append duplicates.
 */
export function renderMasqRules(p: MasqParams): string {
  const net = formatCidr(p.network);
  const sub = formatCidr(p.subnet);
  const marks = p.proxyMarks ?? DEFAULT_PROXY_MARKS;
  return [
    '*nat',
    `:${MASQ_CHAIN} - [0:0]`,
    ...marks.map((m) => `-A ${MASQ_CHAIN} -m mark --mark ${m} -m comment --comment "${MASQ_COMMENT}: marked by a service proxy" -j RETURN`),
    `-A ${MASQ_CHAIN} -s ${sub} -d ${net} -m comment --comment "${MASQ_COMMENT}" -j RETURN`,
    `-A ${MASQ_CHAIN} -s ${net} -d ${sub} -m comment --comment "${MASQ_COMMENT}" -j RETURN`,
    `-A ${MASQ_CHAIN} ! -s ${net} -d ${sub} -m comment --comment "${MASQ_COMMENT}" -j RETURN`,
    `-A ${MASQ_CHAIN} -s ${net} ! -d 224.0.0.0/4 -m comment --comment "${MASQ_COMMENT}" -j MASQUERADE --random-fully`,
    `-A ${MASQ_CHAIN} ! -s ${net} -d ${net} -m comment --comment "${MASQ_COMMENT}" -j MASQUERADE --random-fully`,
    'COMMIT',
    '*filter',
    `:${FORWARD_CHAIN} - [0:0]`,
    `-A ${FORWARD_CHAIN} -s ${net} -m comment --comment "${FORWARD_COMMENT}" -j ACCEPT`,
    `-A ${FORWARD_CHAIN} -d ${net} -m comment --comment "${FORWARD_COMMENT}" -j ACCEPT`,
    'COMMIT',
    '',
  ].join('\n');
}

const JUMPS = [
  { table: 'nat', chain: 'POSTROUTING', target: MASQ_CHAIN, comment: MASQ_COMMENT },
  { table: 'filter', chain: 'FORWARD', target: FORWARD_CHAIN, comment: FORWARD_COMMENT },
] as const;

function jumpRule(j: (typeof JUMPS)[number]): string {
  return `-A ${j.chain} -m comment --comment "${j.comment}" -j ${j.target}`;
}

/** Does a save dump already hold the jump (any position)? */
function hasJump(save: string, j: (typeof JUMPS)[number]): boolean {
  return save.split('\n').some((l) => l.startsWith(`-A ${j.chain} `) && l.endsWith(`-j ${j.target}`));
}

/**
 * Applies the rules and makes sure POSTROUTING/FORWARD jump to our chains.
 * The FORWARD jump is inserted first so a host with FORWARD policy DROP
 * (Docker: flannel issue 609) still forwards pod traffic. Returns how many
 * jumps had to be (re)created.
 */
export async function applyMasq(ipt: IptablesClient, p: MasqParams): Promise<number> {
  await ipt.restore(renderMasqRules(p));
  let fixed = 0;
  for (const table of ['nat', 'filter'] as const) {
    const save = await ipt.save(table);
    const missing = JUMPS.filter((j) => j.table === table && !hasJump(save, j));
    if (missing.length === 0) continue;
    fixed += missing.length;
    const lines = [`*${table}`, ...missing.map((j) => jumpRule(j).replace(/^-A (\S+)/, '-I $1 1')), 'COMMIT', ''];
    await ipt.restore(lines.join('\n'));
  }
  return fixed;
}

/** Removes the jumps and our chains (`weftd --cleanup`). */
export async function removeMasq(ipt: IptablesClient): Promise<void> {
  for (const table of ['nat', 'filter'] as const) {
    const save = await ipt.save(table);
    const lines: string[] = [`*${table}`];
    for (const j of JUMPS.filter((x) => x.table === table)) {
      for (const l of save.split('\n')) {
        if (l.startsWith(`-A ${j.chain} `) && l.endsWith(`-j ${j.target}`)) lines.push(l.replace(/^-A /, '-D '));
      }
    }
    for (const chain of [MASQ_CHAIN, FORWARD_CHAIN]) {
      if (save.includes(`:${chain} `)) lines.push(`-F ${chain}`, `-X ${chain}`);
    }
    if (lines.length > 1) await ipt.restore([...lines, 'COMMIT', ''].join('\n'));
  }
}
