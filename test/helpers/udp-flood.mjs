// Sends bad datagrams at a udp data path port, for the udp lab tests.
// Run inside a test namespace: node udp-flood.mjs <ip> <port> <mode> <count> [innerSrc] [innerDst]
//   random     random bytes, 1..1400 long
//   truncated  IPv4 headers cut short, with impossible IHL, or a wrong total length
//   spoofed    well-formed IPv4/UDP packets with inner source innerSrc to innerDst
//   valid      well-formed packets from innerSrc to innerDst (control)
// Prints {"sent": n} when every datagram has been handed to the kernel.
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';

const [ip, portText, mode, countText, innerSrc = '10.244.200.7', innerDst = '10.244.1.2'] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);

function ipBytes(text) {
  return Buffer.from(text.split('.').map(Number));
}

function checksum(buf) {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ipv4(src, dst, payloadLen = 12) {
  const b = Buffer.alloc(20 + 8 + payloadLen);
  b[0] = 0x45;
  b.writeUInt16BE(b.length, 2);
  b[8] = 64;
  b[9] = 17;
  ipBytes(src).copy(b, 12);
  ipBytes(dst).copy(b, 16);
  b.writeUInt16BE(checksum(b.subarray(0, 20)), 10);
  b.writeUInt16BE(40000, 20);
  b.writeUInt16BE(9, 22);
  b.writeUInt16BE(8 + payloadLen, 24);
  return b;
}

function make(i) {
  switch (mode) {
    case 'random':
      return randomBytes(1 + (i % 1400));
    case 'truncated': {
      const good = ipv4(innerSrc, innerDst);
      switch (i % 3) {
        case 0:
          return good.subarray(0, 1 + (i % 19)); // short
        case 1: {
          const b = Buffer.from(good);
          b[0] = 0x40 | (i % 2 ? 0x0f : 0x03); // IHL 60 bytes > packet, or < 5
          return b;
        }
        default: {
          const b = Buffer.from(good);
          b.writeUInt16BE(b.length + 1 + (i % 100), 2); // total length says more than arrived
          return b;
        }
      }
    }
    case 'spoofed':
    case 'valid':
      return ipv4(innerSrc, innerDst, i % 64);
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

const sock = createSocket('udp4');
await new Promise((resolve) => sock.bind(0, resolve));
let sent = 0;
for (let i = 0; i < count; i++) {
  const buf = make(i);
  // Wait for every 200th send so the libuv queue (and the receiver) keep up.
  if (i % 200 === 199 || i === count - 1) {
    await new Promise((resolve, reject) => sock.send(buf, port, ip, (err) => (err ? reject(err) : resolve())));
  } else {
    sock.send(buf, port, ip, (err) => {
      if (err) throw err;
    });
  }
  sent++;
}
sock.close();
process.stdout.write(JSON.stringify({ sent }) + '\n');
