import { describe, expect, it } from 'vitest';
import { parseIPv4 } from '../../../src/core/ip.js';
import { tryLoadNative, type NativePeer } from '../../../src/backends/udp/native.js';
import { checksum, ipChecksumOk, ipv4, l4ChecksumOk, pseudoHeader, tcpPacket } from './packets.js';

const { native, reason } = tryLoadNative();
if (!native) console.warn(`udp native unit tests skipped: ${reason}`);

const n = native!;
const peer = (net: string, prefixLen: number, ip: string, port = 8285): NativePeer => ({
  net: parseIPv4(net),
  prefixLen,
  ip: parseIPv4(ip),
  port,
});
const PEERS = [peer('10.244.2.0', 24, '192.0.2.2'), peer('10.244.3.0', 24, '192.0.2.3')];
const OWN = parseIPv4('10.244.1.0');

describe.skipIf(!native)('packet validation (C, via test entry points)', () => {
  it('accepts a well-formed packet, with or without options', () => {
    expect(n.checkIpv4(ipv4())).toBe('ok');
    expect(n.checkIpv4(ipv4({ optionWords: 2 }))).toBe('ok');
  });

  it.each([
    ['short', () => ipv4().subarray(0, 19)],
    ['short', () => Buffer.alloc(0)],
    ['bad_version', () => Object.assign(ipv4(), { 0: 0x65 })],
    ['bad_ihl', () => Object.assign(ipv4(), { 0: 0x44 })],
    ['bad_ihl', () => Object.assign(ipv4(), { 0: 0x4f })],
    ['length_mismatch', () => ipv4().subarray(0, 30)],
    ['length_mismatch', () => Buffer.concat([ipv4(), Buffer.alloc(1)])],
    ['bad_checksum', () => Object.assign(ipv4(), { 10: 0 , 11: 0 })],
  ])('rejects %s', (verdict, make) => {
    expect(n.checkIpv4(make())).toBe(verdict);
  });

  it('classifies by sender, inner source and inner destination', () => {
    const from2 = parseIPv4('192.0.2.2');
    expect(n.classify(PEERS, OWN, 24, from2, ipv4())).toBe('ok');
    expect(n.classify(PEERS, OWN, 24, parseIPv4('192.0.2.9'), ipv4())).toBe('unknown_peer');
    // unknown sender is decided before the bytes are looked at
    expect(n.classify(PEERS, OWN, 24, parseIPv4('192.0.2.9'), Buffer.from('junk'))).toBe('unknown_peer');
    expect(n.classify(PEERS, OWN, 24, from2, Buffer.from('junk'))).toBe('short');
    expect(n.classify(PEERS, OWN, 24, from2, ipv4({ src: '10.244.3.5' }))).toBe('spoofed_source');
    expect(n.classify(PEERS, OWN, 24, from2, ipv4({ src: '8.8.8.8' }))).toBe('spoofed_source');
    expect(n.classify(PEERS, OWN, 24, from2, ipv4({ dst: '10.244.9.1' }))).toBe('wrong_destination');
    expect(n.classify(PEERS, OWN, 24, from2, ipv4({ ttl: 1 }))).toBe('ttl_expired');
  });

  it('accepts every subnet of a PublicIP that holds several', () => {
    const peers = [...PEERS, peer('10.244.20.0', 24, '192.0.2.2')];
    const from2 = parseIPv4('192.0.2.2');
    expect(n.classify(peers, OWN, 24, from2, ipv4({ src: '10.244.20.1' }))).toBe('ok');
    expect(n.classify(peers, OWN, 24, from2, ipv4({ src: '10.244.2.1' }))).toBe('ok');
    expect(n.classify(peers, OWN, 24, from2, ipv4({ src: '10.244.3.1' }))).toBe('spoofed_source');
  });

  it('never throws on random bytes from a known peer', () => {
    const from2 = parseIPv4('192.0.2.2');
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.alloc(i % 80);
      for (let j = 0; j < b.length; j++) b[j] = rnd();
      expect(n.verdicts).toContain(n.classify(PEERS, OWN, 24, from2, b));
    }
  });
});

describe.skipIf(!native)('peer table (C)', () => {
  it('routes by longest prefix across mixed lengths', () => {
    const peers = [peer('10.244.0.0', 16, '192.0.2.50'), peer('10.244.7.0', 24, '192.0.2.7', 9000)];
    expect(n.route(peers, parseIPv4('10.244.7.9'))).toMatchObject({ ip: parseIPv4('192.0.2.7'), port: 9000 });
    expect(n.route(peers, parseIPv4('10.244.8.9'))).toMatchObject({ ip: parseIPv4('192.0.2.50') });
    expect(n.route(peers, parseIPv4('10.245.0.1'))).toBeNull();
    expect(n.route([], parseIPv4('10.244.7.9'))).toBeNull();
  });

  it('finds each of 1000 peers', () => {
    const peers = Array.from({ length: 1000 }, (_, i) => ({
      net: parseIPv4('10.0.0.0') + i * 256,
      prefixLen: 24,
      ip: parseIPv4('192.0.2.0') + (i % 250) + 1,
      port: 8285,
    }));
    for (let i = 0; i < 1000; i += 37) {
      expect(n.route(peers, peers[i]!.net + 42)?.net).toBe(peers[i]!.net);
    }
    expect(n.route(peers, parseIPv4('10.0.0.0') + 1000 * 256)).toBeNull();
  });

  it('refuses malformed peer rows', () => {
    expect(() => n.route([{ net: 1, prefixLen: 40, ip: 1, port: 1 }], 1)).toThrow();
    expect(() => n.route([{ net: 1 } as NativePeer], 1)).toThrow();
  });
});

describe.skipIf(!native)('TTL, ICMP, checksum completion, TSO split (C)', () => {
  it('decrements TTL keeping the header checksum valid', () => {
    for (const ttl of [2, 64, 255]) {
      const p = ipv4({ ttl });
      expect(n.ttlDecrement(p)).toBe(true);
      expect(p[8]).toBe(ttl - 1);
      expect(ipChecksumOk(p)).toBe(true);
    }
    const last = ipv4({ ttl: 1 });
    expect(n.ttlDecrement(last)).toBe(false);
  });

  it('answers net-unreachable quoting header + 8 bytes', () => {
    const off = ipv4({ src: '10.244.1.2', dst: '10.244.9.9', optionWords: 1 });
    const icmp = n.icmpNetUnreachable(off, parseIPv4('10.244.0.0'))!;
    expect(icmp).not.toBeNull();
    expect(ipChecksumOk(icmp)).toBe(true);
    expect(icmp[9]).toBe(1);
    expect([...icmp.subarray(12, 20)]).toEqual([10, 244, 0, 0, 10, 244, 1, 2]);
    expect([icmp[20], icmp[21]]).toEqual([3, 0]);
    expect(checksum(icmp.subarray(20))).toBe(0);
    expect(icmp.subarray(28).equals(off.subarray(0, 24 + 8))).toBe(true);
  });

  it('answers an echo request but never an ICMP error or a later fragment', () => {
    const echo = ipv4({ proto: 1, payload: Buffer.from([8, 0, 0, 0, 0, 1, 0, 1]) });
    expect(n.icmpNetUnreachable(echo, 1)).not.toBeNull();
    const err = ipv4({ proto: 1, payload: Buffer.from([3, 1, 0, 0, 0, 0, 0, 0]) });
    expect(n.icmpNetUnreachable(err, 1)).toBeNull();
    expect(n.icmpNetUnreachable(ipv4({ fragOffset: 10 }), 1)).toBeNull();
    expect(n.icmpNetUnreachable(Buffer.from('xx'), 1)).toBeNull();
  });

  it('completes a partial UDP checksum (NEEDS_CSUM)', () => {
    const udp = Buffer.alloc(8 + 33, 7);
    udp.writeUInt16BE(1234, 0);
    udp.writeUInt16BE(53, 2);
    udp.writeUInt16BE(udp.length, 4);
    udp.writeUInt16BE(0, 6);
    const p = ipv4({ proto: 17, payload: udp });
    // What the kernel leaves in the field: the folded pseudo-header sum (not inverted).
    const partial = ~checksum(pseudoHeader(p, udp.length)) & 0xffff;
    p.writeUInt16BE(partial, 20 + 6);
    expect(n.finishCsum(p, 20, 6)).toBe(true);
    expect(l4ChecksumOk(p)).toBe(true);
    expect(n.finishCsum(p, 60, 6)).toBe(false);
  });

  it('computes checksums right for every tail length (0-200 bytes and large)', () => {
    for (const size of [...Array.from({ length: 201 }, (_, i) => i), 1471, 8999, 65000]) {
      const udp = Buffer.alloc(8 + size);
      for (let i = 8; i < udp.length; i++) udp[i] = (i * 89 + size) & 255;
      udp.writeUInt16BE(udp.length, 4);
      const p = ipv4({ proto: 17, payload: udp });
      p.writeUInt16BE(~checksum(pseudoHeader(p, udp.length)) & 0xffff, 26);
      expect(n.finishCsum(p, 20, 6)).toBe(true);
      expect(l4ChecksumOk(p), `size ${size}`).toBe(true);
    }
  });

  it('splits a TSO packet into MSS-sized segments with valid checksums', () => {
    const payload = Buffer.alloc(10_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 255;
    const big = tcpPacket(payload, 0xfffff000, 0x18 | 0x01 | 0x80); // PSH FIN CWR, seq wraps
    const segs = n.tsoSegment(big, 1400)!;
    expect(segs).toHaveLength(Math.ceil(10_000 / 1400));
    let seq = 0xfffff000;
    const joined: Buffer[] = [];
    segs.forEach((s, i) => {
      expect(s.readUInt16BE(2)).toBe(s.length);
      expect(s.readUInt16BE(4)).toBe((0x1234 + i) & 0xffff);
      expect(ipChecksumOk(s)).toBe(true);
      expect(l4ChecksumOk(s)).toBe(true);
      expect(s.readUInt32BE(24)).toBe(seq >>> 0);
      const last = i === segs.length - 1;
      expect(s[33]! & 0x09).toBe(last ? 0x09 : 0);
      expect(s[33]! & 0x80).toBe(i === 0 ? 0x80 : 0);
      const data = s.subarray(52);
      expect(data.length).toBe(last ? 10_000 - 1400 * (segs.length - 1) : 1400);
      joined.push(data);
      seq += data.length;
    });
    expect(Buffer.concat(joined).equals(payload)).toBe(true);
  });

  it('refuses to split what is not IPv4/TCP', () => {
    expect(n.tsoSegment(ipv4({ proto: 17, payload: Buffer.alloc(3000) }), 1400)).toBeNull();
    expect(n.tsoSegment(tcpPacket(Buffer.alloc(100)), 0)).toBeNull();
    expect(n.tsoSegment(Buffer.alloc(10), 1400)).toBeNull();
  });
});

describe.skipIf(!native)('receive-side coalescing (C)', () => {
  const payload = Buffer.alloc(8000);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + 3) & 255;
  const segments = () => n.tsoSegment(tcpPacket(payload, 5000, 0x18), 1000)!;

  it('joins the segments of a TSO split back into one TSO packet', () => {
    const out = n.groCoalesce(segments());
    expect(out).toHaveLength(1);
    const { gsoSize, segments: count, packet } = out[0]!;
    expect(gsoSize).toBe(1000);
    expect(count).toBe(8);
    expect(packet.readUInt16BE(2)).toBe(packet.length);
    expect(ipChecksumOk(packet)).toBe(true);
    expect(packet.readUInt32BE(24)).toBe(5000);
    expect(packet[33]! & 0x08).toBe(0x08); // PSH of the last segment kept
    expect(packet.subarray(52).equals(payload)).toBe(true);
    // Partial checksum: the field holds the pseudo-header sum (not inverted).
    const pseudo = ~checksum(pseudoHeader(packet, packet.length - 20)) & 0xffff;
    expect(packet.readUInt16BE(36)).toBe(pseudo);
  });

  it('never joins a segment with a bad TCP checksum, a gap, or another flow', () => {
    const bad = segments();
    bad[3]![60] ^= 0xff; // corrupt payload: TCP checksum no longer matches
    const out = n.groCoalesce(bad);
    expect(out.map((o) => o.segments)).toEqual([3, 1, 4]);
    expect(out[1]!.packet.equals(bad[3]!)).toBe(true); // passed on untouched for the kernel to drop

    const gap = segments();
    gap.splice(2, 1);
    expect(n.groCoalesce(gap).map((o) => o.segments)).toEqual([2, 5]);

    const other = tcpPacket(Buffer.alloc(1000, 1), 1, 0x10, '10.244.1.3');
    const mixed = segments();
    mixed.splice(4, 0, n.tsoSegment(other, 1000)![0]!);
    expect(n.groCoalesce(mixed).map((o) => o.segments)).toEqual([4, 1, 4]);
  });

  it('passes pure ACKs, UDP and SYNs through one by one', () => {
    const ack = tcpPacket(Buffer.alloc(0), 1, 0x10);
    const syn = tcpPacket(Buffer.alloc(10), 1, 0x02);
    expect(l4ChecksumOk(ack) && l4ChecksumOk(syn)).toBe(true);
    const out = n.groCoalesce([ack, ipv4(), syn, syn]);
    expect(out.map((o) => [o.segments, o.gsoSize])).toEqual([
      [1, 0],
      [1, 0],
      [1, 0],
      [1, 0],
    ]);
    // Two data segments in sequence do join (the control for the case above).
    const a = tcpPacket(Buffer.alloc(100, 1), 1, 0x10);
    const b = tcpPacket(Buffer.alloc(100, 2), 101, 0x10);
    expect(n.groCoalesce([a, b]).map((o) => o.segments)).toEqual([2]);
  });
});
