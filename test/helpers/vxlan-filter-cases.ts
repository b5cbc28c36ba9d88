/**
 * nftables transactions of the vxlan peer filter, and hand-made ones it must
 * never depend on, with what nft 1.0.6 does with each. The unit test runs
 * them on FakeNft, the lab test on FakeNft and the real nft side by side.
 */
import { deleteTableText } from '../../src/netfilter/nft.js';
import { peerAddress, renderPeerFilter, renderPeerUpdate, type PeerAddress } from '../../src/backends/vxlan/peer-filter.js';

const addrs = (...ips: string[]): PeerAddress[] =>
  ips.map((ip) => {
    const r = peerAddress(ip);
    if (!r.ok) throw new Error(r.reason);
    return r.addr;
  });

export interface FilterNftCase {
  name: string;
  /** Applied first (each must succeed). */
  before: string[];
  text: string;
  ok: boolean;
}

const T = 'ip weft-vxlan';
const created = renderPeerFilter(8472, addrs('192.0.2.2', '192.0.2.3'), false);

export const FILTER_NFT_CASES: FilterNftCase[] = [
  { name: 'create with two peers', before: [], text: created, ok: true },
  { name: 'create with no peers', before: [], text: renderPeerFilter(8472, [], false), ok: true },
  { name: 'replace on an empty ruleset', before: [], text: renderPeerFilter(4789, addrs('192.0.2.9'), true), ok: true },
  { name: 'replace over an existing table (other port)', before: [created], text: renderPeerFilter(4789, addrs('192.0.2.9'), true), ok: true },
  { name: 'create again without replace duplicates the rule', before: [created], text: created, ok: true },
  { name: 'update an intact table', before: [created], text: renderPeerUpdate(addrs('192.0.2.4', '192.0.2.5', '192.0.2.6')), ok: true },
  { name: 'update to no peers', before: [created], text: renderPeerUpdate([]), ok: true },
  { name: 'update without the table', before: [], text: renderPeerUpdate(addrs('192.0.2.4')), ok: false },
  { name: 'an element given twice and one present already', before: [created], text: `add element ${T} peers { 192.0.2.2, 192.0.2.7, 192.0.2.7 }\n`, ok: true },
  { name: 'an empty element list', before: [created], text: `add element ${T} peers { }\n`, ok: false },
  { name: 'an element that is no IPv4 address', before: [created], text: `add element ${T} peers { 192.0.2.300 }\n`, ok: false },
  { name: 'an element of a missing set', before: [created], text: `add element ${T} nope { 192.0.2.7 }\n`, ok: false },
  { name: 'deleting a missing element', before: [created], text: `delete element ${T} peers { 192.0.2.77 }\n`, ok: false },
  { name: 'deleting the set the rule uses', before: [created], text: `delete set ${T} peers\n`, ok: false },
  { name: 'a rule on a missing set', before: [created], text: `add rule ${T} input udp dport 8472 ip saddr != @other counter drop\n`, ok: false },
  { name: 'remove the table when present', before: [created], text: deleteTableText('ip', 'weft-vxlan'), ok: true },
  { name: 'remove the table when absent', before: [], text: deleteTableText('ip', 'weft-vxlan'), ok: true },
  { name: 'a bare delete of an absent table', before: [], text: `delete table ${T}\n`, ok: false },
  { name: 'a failing transaction applies nothing', before: [created], text: `flush set ${T} peers\nadd element ${T} peers { 192.0.2.300 }\n`, ok: false },
];

/** Rules as compared across fake and real: counter values dropped. */
export function normaliseRules(rules: readonly string[] | undefined): string[] | undefined {
  return rules?.map((r) => r.replace(/ counter packets \d+ bytes \d+/, ' counter'));
}

/** The elements of set `peers` in FakeNft.dump() text. */
export function fakeSetElements(dump: string): string[] | undefined {
  const lines = dump.split('\n');
  const i = lines.findIndex((l) => l.startsWith('  set peers '));
  if (i < 0) return undefined;
  const out: string[] = [];
  for (const l of lines.slice(i + 1)) {
    if (!l.startsWith('    ')) break;
    out.push(l.trim());
  }
  return out.sort();
}
