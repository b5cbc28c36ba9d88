import { describe, expect, it } from 'vitest';
import { parseCidr } from '../../../src/core/ip.js';
import { applyMasq, removeMasq, renderMasqRules } from '../../../src/daemon/masq.js';
import type { IptablesClient } from '../../../src/netfilter/iptables.js';

const params = { network: parseCidr('10.244.0.0/16'), subnet: parseCidr('10.244.3.0/24') };

/** Records restores; save() returns what the test sets per table. */
class RecordingIptables implements IptablesClient {
  readonly backend = 'nft' as const;
  restores: string[] = [];
  saved: Record<string, string> = { nat: '', filter: '' };
  async restore(text: string) {
    this.restores.push(text);
  }
  async save(table: string) {
    return this.saved[table] ?? '';
  }
}

describe('masquerade rules', () => {
  it('renders flannel-equivalent rules in WEFT- chains', () => {
    expect(renderMasqRules(params)).toMatchInlineSnapshot(`
      "*nat
      :WEFT-POSTRTG - [0:0]
      -A WEFT-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "weftd masq: marked by a service proxy" -j RETURN
      -A WEFT-POSTRTG -m mark --mark 0x2000/0x2000 -m comment --comment "weftd masq: marked by a service proxy" -j RETURN
      -A WEFT-POSTRTG -s 10.244.3.0/24 -d 10.244.0.0/16 -m comment --comment "weftd masq" -j RETURN
      -A WEFT-POSTRTG -s 10.244.0.0/16 -d 10.244.3.0/24 -m comment --comment "weftd masq" -j RETURN
      -A WEFT-POSTRTG ! -s 10.244.0.0/16 -d 10.244.3.0/24 -m comment --comment "weftd masq" -j RETURN
      -A WEFT-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "weftd masq" -j MASQUERADE --random-fully
      -A WEFT-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "weftd masq" -j MASQUERADE --random-fully
      COMMIT
      *filter
      :WEFT-FWD - [0:0]
      -A WEFT-FWD -s 10.244.0.0/16 -m comment --comment "weftd forward" -j ACCEPT
      -A WEFT-FWD -d 10.244.0.0/16 -m comment --comment "weftd forward" -j ACCEPT
      COMMIT
      "
    `);
  });

  it('inserts the jump rules only when they are missing', async () => {
    const ipt = new RecordingIptables();
    expect(await applyMasq(ipt, params)).toBe(2);
    expect(ipt.restores[1]).toContain('-I POSTROUTING 1 -m comment --comment "weftd masq" -j WEFT-POSTRTG');
    expect(ipt.restores[2]).toContain('-I FORWARD 1 -m comment --comment "weftd forward" -j WEFT-FWD');

    ipt.restores = [];
    ipt.saved.nat = '-A POSTROUTING -m comment --comment "weftd masq" -j WEFT-POSTRTG\n';
    ipt.saved.filter = '-A FORWARD -m comment --comment "weftd forward" -j WEFT-FWD\n';
    expect(await applyMasq(ipt, params)).toBe(0);
    expect(ipt.restores).toHaveLength(1);
  });

  it('cleanup deletes jumps, flushes and removes the chains', async () => {
    const ipt = new RecordingIptables();
    ipt.saved.nat = ':WEFT-POSTRTG - [0:0]\n-A POSTROUTING -m comment --comment "weftd masq" -j WEFT-POSTRTG\n';
    await removeMasq(ipt);
    expect(ipt.restores[0]).toContain('-D POSTROUTING -m comment --comment "weftd masq" -j WEFT-POSTRTG');
    expect(ipt.restores[0]).toContain('-X WEFT-POSTRTG');
  });
});
