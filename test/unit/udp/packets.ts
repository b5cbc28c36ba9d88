// Packet builders and a reference checksum for the udp unit tests (written
// independently of the C code so the two check each other).

export function ipBytes(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

/** RFC 1071 checksum, the slow obvious way. */
export function checksum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return ~sum & 0xffff;
}

export interface Ipv4Options {
  src?: string;
  dst?: string;
  proto?: number;
  ttl?: number;
  payload?: Buffer;
  /** 32-bit words of IP options (IHL = 5 + this). */
  optionWords?: number;
  fragOffset?: number;
  id?: number;
}

export function ipv4(o: Ipv4Options = {}): Buffer {
  const payload = o.payload ?? Buffer.from('0123456789abcdef');
  const ihl = 5 + (o.optionWords ?? 0);
  const b = Buffer.alloc(ihl * 4 + payload.length);
  b[0] = 0x40 | ihl;
  b.writeUInt16BE(b.length, 2);
  b.writeUInt16BE(o.id ?? 0x1234, 4);
  b.writeUInt16BE(o.fragOffset ?? 0, 6);
  b[8] = o.ttl ?? 64;
  b[9] = o.proto ?? 17;
  ipBytes(o.src ?? '10.244.2.5').copy(b, 12);
  ipBytes(o.dst ?? '10.244.1.7').copy(b, 16);
  for (let i = 20; i < ihl * 4; i++) b[i] = 1; // NOP options
  payload.copy(b, ihl * 4);
  b.writeUInt16BE(checksum(b.subarray(0, ihl * 4)), 10);
  return b;
}

export function pseudoHeader(ip: Buffer, l4Len: number): Buffer {
  const p = Buffer.alloc(12);
  ip.copy(p, 0, 12, 20);
  p[9] = ip[9]!;
  p.writeUInt16BE(l4Len, 10);
  return p;
}

/** A TCP segment (20-byte header + 12 bytes of timestamp-like options) in IPv4. */
export function tcpPacket(payload: Buffer, seq = 1000, flags = 0x18, src = '10.244.1.2', dst = '10.244.2.2'): Buffer {
  const tcp = Buffer.alloc(32 + payload.length);
  tcp.writeUInt16BE(40000, 0);
  tcp.writeUInt16BE(5201, 2);
  tcp.writeUInt32BE(seq >>> 0, 4);
  tcp.writeUInt32BE(77, 8);
  tcp[12] = 8 << 4;
  tcp[13] = flags;
  tcp.writeUInt16BE(65000, 14);
  tcp.fill(1, 20, 32);
  payload.copy(tcp, 32);
  const ip = ipv4({ src, dst, proto: 6, payload: tcp });
  ip.writeUInt16BE(checksum(Buffer.concat([pseudoHeader(ip, tcp.length), ip.subarray(20)])), 36);
  return ip;
}

/** True when the L4 checksum of a TCP/UDP packet verifies. */
export function l4ChecksumOk(ip: Buffer): boolean {
  const ihl = (ip[0]! & 0x0f) * 4;
  const l4 = ip.subarray(ihl);
  return checksum(Buffer.concat([pseudoHeader(ip, l4.length), l4])) === 0;
}

export function ipChecksumOk(ip: Buffer): boolean {
  return checksum(ip.subarray(0, (ip[0]! & 0x0f) * 4)) === 0;
}
