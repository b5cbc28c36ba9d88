import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { formatCidr, formatIPv4 } from '../../../src/core/ip.js';
import {
  backendField,
  buildNetworkConfig,
  parseNetworkConfig,
  serializeNetworkConfig,
  subnetCount,
  subnetsOf,
} from '../../../src/store/netconfig.js';
import { loadNetworkConfig } from '../../../src/store/config-loader.js';
import { MemoryRegistry } from '../../../src/store/memory-registry.js';
import { createLogger } from '../../../src/core/log.js';

/** Runs fn, expects a ConfigError, returns it (tests assert on code and field). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('ERR_CONFIG');
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('parseNetworkConfig', () => {
  it('applies flannel defaults for a /16', () => {
    const c = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    expect(formatCidr(c.network)).toBe('10.244.0.0/16');
    expect(c.subnetLen).toBe(24);
    expect(formatCidr(c.subnetMin)).toBe('10.244.1.0/24');
    expect(formatCidr(c.subnetMax)).toBe('10.244.255.0/24');
    expect(c.backend.type).toBe('vxlan');
    expect(subnetCount(c)).toBe(255);
  });

  it('matches field names case-insensitively, like Go', () => {
    const c = parseNetworkConfig({ network: '10.1.0.0/16', subnetlen: 26, BACKEND: { type: 'host-gw' } });
    expect(c.subnetLen).toBe(26);
    expect(c.backend.type).toBe('host-gw');
    expect(formatIPv4(c.subnetMin.ip)).toBe('10.1.0.64');
  });

  it('defaults SubnetLen to prefix+2 for networks smaller than /22', () => {
    expect(parseNetworkConfig({ Network: '10.0.0.0/23' }).subnetLen).toBe(25);
    expect(parseNetworkConfig({ Network: '10.0.0.0/22' }).subnetLen).toBe(24);
    expect(parseNetworkConfig({ Network: '10.0.0.0/28' }).subnetLen).toBe(30);
    expect(configError(() => parseNetworkConfig({ Network: '10.0.0.0/29' })).field).toBe('Network');
  });

  it('defaults the backend to udp, as flannel does', () => {
    const c = parseNetworkConfig({ Network: '10.244.0.0/16' });
    expect(c.backend).toEqual({ type: 'udp', raw: { Type: 'udp' } });
  });

  it('accepts SubnetMin/Max as flannel addresses or as CIDRs', () => {
    const c = parseNetworkConfig({ Network: '10.244.0.0/16', SubnetMin: '10.244.10.0', SubnetMax: '10.244.20.0/24' });
    expect(formatCidr(c.subnetMin)).toBe('10.244.10.0/24');
    expect(formatCidr(c.subnetMax)).toBe('10.244.20.0/24');
    expect([...subnetsOf(c)].map(formatCidr)).toHaveLength(11);
    expect(formatCidr([...subnetsOf(c)][10]!)).toBe('10.244.20.0/24');
  });

  it.each([
    ['not JSON', '{', 'config'],
    ['missing Network', '{}', 'Network'],
    ['Network not a CIDR', '{"Network":"10.244.0.0"}', 'Network'],
    ['Network with host bits', '{"Network":"10.244.1.0/16"}', 'Network'],
    ['Network wrong type', '{"Network":42}', 'Network'],
    ['SubnetLen over 30', '{"Network":"10.0.0.0/8","SubnetLen":31}', 'SubnetLen'],
    ['fewer than 4 subnets', '{"Network":"10.244.0.0/16","SubnetLen":17}', 'SubnetLen'],
    ['SubnetLen not above prefix', '{"Network":"10.244.0.0/16","SubnetLen":16}', 'SubnetLen'],
    ['SubnetLen not integer', '{"Network":"10.244.0.0/16","SubnetLen":"24"}', 'SubnetLen'],
    ['SubnetMin unaligned', '{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.5"}', 'SubnetMin'],
    ['SubnetMin outside', '{"Network":"10.244.0.0/16","SubnetMin":"10.245.1.0"}', 'SubnetMin'],
    ['SubnetMax outside', '{"Network":"10.244.0.0/16","SubnetMax":"10.9.1.0"}', 'SubnetMax'],
    ['SubnetMax prefix mismatch', '{"Network":"10.244.0.0/16","SubnetMax":"10.244.9.0/25"}', 'SubnetMax'],
    ['min above max', '{"Network":"10.244.0.0/16","SubnetMin":"10.244.9.0","SubnetMax":"10.244.3.0"}', 'SubnetMin'],
    ['unknown backend', '{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard"}}', 'Backend.Type'],
    ['backend without Type', '{"Network":"10.244.0.0/16","Backend":{"VNI":1}}', 'Backend.Type'],
    ['backend not an object', '{"Network":"10.244.0.0/16","Backend":"vxlan"}', 'Backend'],
    ['bad VNI', '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":-1}}', 'Backend.VNI'],
    ['bad port', '{"Network":"10.244.0.0/16","Backend":{"Type":"udp","Port":70000}}', 'Backend.Port'],
    ['DirectRouting not bool', '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":"yes"}}', 'Backend.DirectRouting'],
    ['IPv6 enabled', '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56"}', 'EnableIPv6'],
    ['IPv4 disabled', '{"Network":"10.244.0.0/16","EnableIPv4":false}', 'EnableIPv4'],
    ['ambiguous case', '{"Network":"10.244.0.0/16","network":"10.1.0.0/16"}', 'network'],
  ])('refuses %s, naming the field', (_what, json, field) => {
    const err = configError(() => parseNetworkConfig(json));
    expect(err.field).toBe(field);
  });

  it('keeps backend fields with their original names for the backends', () => {
    const c = parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { type: 'vxlan', vni: 4, DirectRouting: true } });
    expect(backendField(c.backend, 'VNI')).toBe(4);
    expect(backendField(c.backend, 'directrouting')).toBe(true);
  });

  it('ignores IPv6 fields while EnableIPv6 is off (flannel does too)', () => {
    const c = parseNetworkConfig({ Network: '10.244.0.0/16', IPv6Network: 'fd00::/56' });
    expect(c.subnetLen).toBe(24);
  });
});

describe('buildNetworkConfig', () => {
  it('builds flannel JSON from flags, writing SubnetMin/Max as bare addresses', () => {
    const c = buildNetworkConfig({
      network: '10.244.0.0/16',
      backend: 'vxlan',
      subnetLen: 24,
      subnetMin: '10.244.5.0/24',
      subnetMax: '10.244.50.0',
      backendFields: { VNI: 7, Port: 8472, DirectRouting: true },
    });
    expect(JSON.parse(serializeNetworkConfig(c))).toEqual({
      Network: '10.244.0.0/16',
      SubnetLen: 24,
      SubnetMin: '10.244.5.0',
      SubnetMax: '10.244.50.0',
      Backend: { Type: 'vxlan', VNI: 7, Port: 8472, DirectRouting: true },
    });
    expect(formatCidr(c.subnetMin)).toBe('10.244.5.0/24');
  });

  it('validates like the parser', () => {
    expect(configError(() => buildNetworkConfig({ network: '10.244.0.0/16', backend: 'ipip' })).field).toBe('Backend.Type');
    expect(configError(() => buildNetworkConfig({ network: '10.244.0.0/16', subnetMin: '10.244.5.0/25' })).field).toBe(
      'SubnetMin',
    );
  });
});

describe('loadNetworkConfig', () => {
  const fastSleep = async () => {
    await new Promise((r) => setTimeout(r, 1));
  };

  it('waits until a config is stored, through store errors', async () => {
    const reg = new MemoryRegistry();
    reg.failNext(2);
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l) });
    let polls = 0;
    const sleep = async () => {
      if (++polls === 4) await reg.putConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}');
      await fastSleep();
    };
    const c = await loadNetworkConfig(reg, { signal: new AbortController().signal, log, sleep });
    expect(c.backend.type).toBe('host-gw');
    // two different problems (store down, then no config), each logged once
    expect(lines.filter((l) => l.includes('WARN'))).toHaveLength(2);
  });

  it('refuses an invalid stored config at once, or waits for a fix when asked to', async () => {
    const reg = new MemoryRegistry();
    await reg.putConfig('{"Network":"10.244.0.0/16","SubnetLen":8}');
    await expect(loadNetworkConfig(reg, { signal: new AbortController().signal, sleep: fastSleep })).rejects.toMatchObject({
      code: 'ERR_CONFIG',
      field: 'SubnetLen',
    });
    let polls = 0;
    const sleep = async () => {
      if (++polls === 2) await reg.putConfig('{"Network":"10.244.0.0/16"}');
      await fastSleep();
    };
    const c = await loadNetworkConfig(reg, { signal: new AbortController().signal, retryInvalid: true, sleep });
    expect(c.backend.type).toBe('udp');
  });
});
