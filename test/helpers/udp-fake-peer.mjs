// A stand-in for a flanneld udp host, written from the wire format alone:
// binds <bindIp>:<port>, sends a bare IPv4 ICMP echo request (no header of
// any kind before it) to <target>:<port>, and prints the first datagram that
// comes back as {from, fromPort, hex}.
// Usage: node udp-fake-peer.mjs <bindIp> <port> <target> <innerSrc> <innerDst>
import { createSocket } from 'node:dgram';

const [bindIp, portText, target, innerSrc, innerDst] = process.argv.slice(2);
const port = Number(portText);

function checksum(buf) {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

const icmp = Buffer.alloc(8 + 32, 0x61);
icmp[0] = 8; // echo request
icmp[1] = 0;
icmp.writeUInt16BE(0, 2);
icmp.writeUInt16BE(0x7765, 4); // id
icmp.writeUInt16BE(1, 6); // seq
icmp.writeUInt16BE(checksum(icmp), 2);
const ip = Buffer.alloc(20 + icmp.length);
ip[0] = 0x45;
ip.writeUInt16BE(ip.length, 2);
ip.writeUInt16BE(0x4000, 6); // DF
ip[8] = 64;
ip[9] = 1;
Buffer.from(innerSrc.split('.').map(Number)).copy(ip, 12);
Buffer.from(innerDst.split('.').map(Number)).copy(ip, 16);
ip.writeUInt16BE(checksum(ip.subarray(0, 20)), 10);
icmp.copy(ip, 20);

const sock = createSocket('udp4');
await new Promise((resolve) => sock.bind(port, bindIp, resolve));
const reply = new Promise((resolve) => sock.once('message', (msg, rinfo) => resolve({ msg, rinfo })));
let tries = 0;
const timer = setInterval(() => {
  if (++tries > 20) {
    process.stdout.write(JSON.stringify({ error: 'no reply' }) + '\n');
    process.exit(1);
  }
  sock.send(ip, port, target);
}, 250);
sock.send(ip, port, target);
const { msg, rinfo } = await reply;
clearInterval(timer);
sock.close();
process.stdout.write(JSON.stringify({ from: rinfo.address, fromPort: rinfo.port, hex: msg.toString('hex') }) + '\n');
