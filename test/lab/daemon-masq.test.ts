import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCidr } from '../../src/core/ip.js';
import { applyMasq, removeMasq } from '../../src/daemon/masq.js';
import { ExecIptables } from '../../src/netfilter/iptables.js';
import { isRoot, NetnsSandbox } from '../helpers/netns.js';

const params = { network: parseCidr('10.244.0.0/16'), subnet: parseCidr('10.244.7.0/24') };

describe.skipIf(!isRoot)('masquerade rules against real iptables', () => {
  const sb = new NetnsSandbox();
  let ns: string;
  beforeAll(async () => {
    ns = await sb.create('masq');
  });
  afterAll(() => sb.cleanup());

  for (const backend of ['nft', 'legacy'] as const) {
    it(`applies idempotently and cleans up (${backend})`, async () => {
      const ipt = new ExecIptables(backend, ns);
      expect(await applyMasq(ipt, params)).toBe(2);
      expect(await applyMasq(ipt, params)).toBe(0);
      const nat = await ipt.save('nat');
      expect(nat.match(/-j WEFT-POSTRTG/g)).toHaveLength(1);
      expect(nat).toContain('-A WEFT-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4');
      const filter = await ipt.save('filter');
      expect(filter).toMatch(/-A FORWARD .*-j WEFT-FWD/);

      // Someone deletes our jump: the next apply restores it.
      await ipt.restore('*nat\n-D POSTROUTING -m comment --comment "weftd masq" -j WEFT-POSTRTG\nCOMMIT\n');
      expect(await applyMasq(ipt, params)).toBe(1);

      await removeMasq(ipt);
      expect(await ipt.save('nat')).not.toContain('WEFT-');
      expect(await ipt.save('filter')).not.toContain('WEFT-');
    });
  }
});
