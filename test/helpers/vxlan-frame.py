# Sends one VXLAN frame (VXLAN header + Ethernet + IPv4/ICMP echo request), as
# a host on the underlay could: argv = dst_ip port vni inner_dst_mac inner_src_ip inner_dst_ip.
import socket, struct, sys

dst, port, vni, mac, src_ip, dst_ip = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]

def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

payload = b'weft-peer-filter-probe'
icmp = struct.pack('!BBHHH', 8, 0, 0, 0x7766, 1) + payload
icmp = icmp[:2] + struct.pack('!H', csum(icmp)) + icmp[4:]
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(icmp), 0x1234, 0, 64, 1, 0, socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
eth = bytes.fromhex(mac.replace(':', '')) + bytes.fromhex('020000000099') + b'\x08\x00'
vxlan = struct.pack('!II', 0x08000000, vni << 8)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(vxlan + eth + ip + icmp, (dst, port))
