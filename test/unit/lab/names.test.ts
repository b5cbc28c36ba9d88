import { describe, expect, it } from 'vitest';
import { isWeftError } from '../../../src/core/errors.js';
import { checkIfname, parseShortTarget, resolveTarget, validateLabId } from '../../../src/lab/names.js';
import { fallbackSubnet, planLab, planNamespaces } from '../../../src/lab/plan.js';
import { formatCidr } from '../../../src/core/ip.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isWeftError(err) ? err.code : 'not-weft';
  }
  return undefined;
}

describe('lab names', () => {
  it('accepts short lower-case ids and refuses the rest, naming the field', () => {
    expect(validateLabId('weft')).toBe('weft');
    expect(validateLabId('a1b2c3d4')).toBe('a1b2c3d4');
    for (const bad of ['', 'abcdefghi', 'Weft', '1lab', 'we-ft', 'we ft']) {
      expect(codeOf(() => validateLabId(bad))).toBe('ERR_INVALID_ARGUMENT');
    }
  });

  it('keeps every link name of the largest lab within 15 characters', () => {
    const plan = planLab({ id: 'abcdefgh', hosts: 50, podsPerHost: 50 });
    const names = [plan.switchBridge, ...plan.hosts.flatMap((h) => [h.switchPort, ...h.pods.map((p) => p.hostVeth)])];
    expect(Math.max(...names.map((n) => n.length))).toBeLessThanOrEqual(15);
    expect(names.every((n) => n.startsWith('abcdefgh-'))).toBe(true);
    expect(codeOf(() => checkIfname('a-very-long-name16'))).toBe('ERR_INVALID_ARGUMENT');
  });

  it('plans namespaces and underlay addresses per host and pod', () => {
    const plan = planLab({ id: 'x1', hosts: 2, podsPerHost: 2 });
    expect(planNamespaces(plan)).toEqual(['x1-sw', 'x1-h1', 'x1-h1-p1', 'x1-h1-p2', 'x1-h2', 'x1-h2-p1', 'x1-h2-p2']);
    expect(plan.hosts.map((h) => h.underlayIp)).toEqual(['192.0.2.1', '192.0.2.2']);
    expect(plan.hosts[1]!.pods[1]).toMatchObject({ name: 'h2-p2', netns: 'x1-h2-p2', hostVeth: 'x1-p2' });
  });

  it('refuses bad plan options with the field named', () => {
    expect(codeOf(() => planLab({ hosts: 0 }))).toBe('ERR_INVALID_ARGUMENT');
    expect(codeOf(() => planLab({ hosts: 51 }))).toBe('ERR_INVALID_ARGUMENT');
    expect(codeOf(() => planLab({ podsPerHost: 1.5 }))).toBe('ERR_INVALID_ARGUMENT');
    expect(codeOf(() => planLab({ backend: 'ipip' }))).toBe('ERR_INVALID_ARGUMENT');
    expect(codeOf(() => planLab({ network: '10.244.0.0' }))).toBe('ERR_INVALID_ARGUMENT');
    try {
      planLab({ backend: 'gre' });
    } catch (err) {
      expect((err as { field: string }).field).toBe('backend');
    }
  });

  it('resolves exec targets only to namespaces the lab recorded', () => {
    const known = ['t-sw', 't-h1', 't-h1-p1'];
    expect(resolveTarget('t', 'h1', known)).toBe('t-h1');
    expect(resolveTarget('t', 'h1-p1', known)).toBe('t-h1-p1');
    expect(resolveTarget('t', 'sw', known)).toBe('t-sw');
    expect(resolveTarget('t', 't-h1-p1', known)).toBe('t-h1-p1');
    expect(codeOf(() => resolveTarget('t', 'h2', known))).toBe('ERR_INVALID_ARGUMENT');
    expect(codeOf(() => resolveTarget('t', 'other-h1', known))).toBe('ERR_INVALID_ARGUMENT');
    expect(parseShortTarget('h12-p3')).toEqual({ host: 12, pod: 3 });
    expect(parseShortTarget('eth0')).toBeUndefined();
  });

  it('assigns fallback subnets like flannel sizes them', () => {
    expect(formatCidr(fallbackSubnet('10.244.0.0/16', 1))).toBe('10.244.1.0/24');
    expect(formatCidr(fallbackSubnet('10.244.0.0/16', 3))).toBe('10.244.3.0/24');
    expect(formatCidr(fallbackSubnet('10.10.0.0/24', 2))).toBe('10.10.0.128/26');
    expect(codeOf(() => fallbackSubnet('10.10.0.0/24', 4))).toBe('ERR_INVALID_ARGUMENT');
  });
});
