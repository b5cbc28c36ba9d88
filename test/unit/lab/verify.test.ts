import { describe, expect, it } from 'vitest';
import {
  CURL_MARK,
  inNetns,
  mapLimit,
  parseCurl,
  parseHostSpec,
  parsePing,
  parsePodSpec,
  renderChecks,
  topologyFromStatus,
} from '../../../src/lab/verify.js';

describe('verify helpers', () => {
  it('reads ping summaries, with and without replies', () => {
    const ok = '--- 10.244.2.2 ping statistics ---\n2 packets transmitted, 2 received, 0% packet loss, time 201ms\nrtt min/avg/max/mdev = 0.101/0.250/0.399/0.149 ms\n';
    expect(parsePing(ok)).toEqual({ sent: 2, received: 2, avgMs: 0.25 });
    const lost = '2 packets transmitted, 0 received, 100% packet loss, time 1025ms\n';
    expect(parsePing(lost)).toEqual({ sent: 2, received: 0, avgMs: undefined });
    expect(parsePing('ping: connect: Network is unreachable')).toBeUndefined();
  });

  it('splits curl output into body, status and time', () => {
    expect(parseCurl(`h1-p1 10.244.1.2\n${CURL_MARK}200 0.004512`)).toEqual({ status: 200, ms: expect.closeTo(4.512, 6), body: 'h1-p1 10.244.1.2\n' });
    expect(parseCurl('no marker')).toBeUndefined();
  });

  it('parses pod and host specs, refusing what is not an address', () => {
    expect(parsePodSpec('web=10.244.1.2@/proc/42/ns/net')).toEqual({ name: 'web', ip: '10.244.1.2', netns: '/proc/42/ns/net' });
    expect(parsePodSpec('10.244.1.3')).toEqual({ name: '10.244.1.3', ip: '10.244.1.3', netns: undefined });
    expect(parseHostSpec('node1=192.168.56.11')).toEqual({ name: 'node1', underlayIp: '192.168.56.11' });
    expect(() => parsePodSpec('web=999.1.1.1')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => parseHostSpec('node1')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });

  it('builds a topology from lab status JSON and runs from the switch for NodePorts', () => {
    const topo = topologyFromStatus({
      id: 'demo',
      etcd: 'x',
      hosts: [{ name: 'h1', underlayIp: '192.0.2.1', subnet: '10.244.1.0/24', pods: [{ name: 'h1-p1', ip: '10.244.1.2', netns: 'demo-h1-p1' }] }],
    });
    expect(topo).toEqual({
      pods: [{ name: 'h1-p1', ip: '10.244.1.2', netns: 'demo-h1-p1' }],
      hosts: [{ name: 'h1', underlayIp: '192.0.2.1' }],
      clientNetns: 'demo-sw',
    });
    expect(() => topologyFromStatus({ hosts: [{ name: 'h1', underlayIp: '1.2.3.4', pods: [{ name: 'p', ip: null }] }] })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
    );
  });

  it('enters namespaces by name or by path', () => {
    expect(inNetns('lab-h1', ['ping'])).toEqual(['ip', 'netns', 'exec', 'lab-h1', 'ping']);
    expect(inNetns('/proc/1/ns/net', ['ping'])).toEqual(['nsenter', '--net=/proc/1/ns/net', '--', 'ping']);
    expect(inNetns(undefined, ['ping'])).toEqual(['ping']);
  });

  it('keeps order and the concurrency bound', async () => {
    let inFlight = 0;
    let peak = 0;
    const out = await mapLimit([5, 1, 4, 2, 3], 2, async (n) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise<void>((r) => setImmediate(r));
      inFlight--;
      return n * 10;
    });
    expect(out).toEqual([50, 10, 40, 20, 30]);
    expect(peak).toBe(2);
  });

  it('renders a table whose last line counts failures', () => {
    const text = renderChecks([
      { kind: 'ping', from: 'h1-p1', to: 'h2-p1', target: '10.244.2.2', ok: true, detail: '0% loss', ms: 0.25 },
      { kind: 'ping', from: 'h2-p1', to: 'h1-p1', target: '10.244.1.2', ok: false, detail: '100% loss' },
    ]);
    expect(text.split('\n')[1]).toMatch(/^ping\s+h1-p1\s+h2-p1\s+10\.244\.2\.2\s+ok\s+0% loss\s+0\.25$/);
    expect(text.trimEnd().split('\n').pop()).toBe('1 of 2 checks FAILED');
  });
});
