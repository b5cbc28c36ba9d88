#include "packet.h"

#include <string.h>

static const char *const verdict_names[WEFT_VERDICT_COUNT] = {
    "ok",          "unknown_peer",      "short",             "bad_version", "bad_ihl",  "length_mismatch",
    "bad_checksum", "spoofed_source",   "wrong_destination", "ttl_expired", "no_route", "too_big",
};

const char *weft_verdict_name(int v) {
  if (v < 0 || v >= WEFT_VERDICT_COUNT) return "invalid";
  return verdict_names[v];
}

static inline uint64_t add_carry64(uint64_t acc, uint64_t v) {
  acc += v;
  return acc + (acc < v); /* end-around carry */
}

/* Sums native 64-bit words with end-around carry, then swaps the folded
 * result: one's-complement sums are byte-order independent (RFC 1071) and
 * 2^64-1 is a multiple of 0xffff, so this equals the 16-bit big-endian sum.
 * Only the last chunk given may have an odd length. */
uint64_t weft_csum_add(uint64_t sum, const uint8_t *p, size_t len) {
  /* Four independent carry chains: one chain waits on each add's carry. */
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  while (len >= 32) {
    uint64_t a, b, c, d;
    memcpy(&a, p, 8);
    memcpy(&b, p + 8, 8);
    memcpy(&c, p + 16, 8);
    memcpy(&d, p + 24, 8);
    a0 = add_carry64(a0, a);
    a1 = add_carry64(a1, b);
    a2 = add_carry64(a2, c);
    a3 = add_carry64(a3, d);
    p += 32;
    len -= 32;
  }
  uint64_t acc = add_carry64(add_carry64(a0, a1), add_carry64(a2, a3));
  while (len >= 8) {
    uint64_t a;
    memcpy(&a, p, 8);
    acc = add_carry64(acc, a);
    p += 8;
    len -= 8;
  }
  /* Fold to 32 bits (plus a carry) before the short tail. */
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  if (len >= 4) {
    uint32_t a;
    memcpy(&a, p, 4);
    acc += a;
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t a;
    memcpy(&a, p, 2);
    acc += a;
    p += 2;
    len -= 2;
  }
  if (len) {
    /* A trailing byte is the high byte of a big-endian word; in native
     * (little-endian) order that is the low byte before the swap below. */
    uint8_t tail[2] = {p[0], 0};
    uint16_t a;
    memcpy(&a, tail, 2);
    acc += a;
  }
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  uint16_t folded = (uint16_t)acc;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  folded = (uint16_t)((folded >> 8) | (folded << 8));
#endif
  return sum + folded;
}

uint16_t weft_csum_fold(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

void weft_ip_fix_checksum(uint8_t *ip) {
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  ip[10] = ip[11] = 0;
  weft_wr16(ip + 10, weft_csum_fold(weft_csum_add(0, ip, ihl)));
}

int weft_check_ipv4(const uint8_t *p, size_t len) {
  if (len < 20) return WEFT_DROP_SHORT;
  if ((p[0] >> 4) != 4) return WEFT_DROP_BAD_VERSION;
  size_t ihl = (size_t)(p[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > len) return WEFT_DROP_BAD_IHL;
  if (weft_rd16(p + 2) != len) return WEFT_DROP_LENGTH_MISMATCH;
  if (weft_csum_fold(weft_csum_add(0, p, ihl)) != 0) return WEFT_DROP_BAD_CHECKSUM;
  return WEFT_OK;
}

int weft_ttl_decrement(uint8_t *ip) {
  if (ip[8] <= 1) return 0;
  uint16_t old_word = weft_rd16(ip + 8);
  ip[8]--;
  uint16_t new_word = weft_rd16(ip + 8);
  /* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') */
  uint32_t sum = (uint32_t)(uint16_t)~weft_rd16(ip + 10) + (uint16_t)~old_word + new_word;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  weft_wr16(ip + 10, (uint16_t)~sum);
  return 1;
}

static int is_icmp_error(uint8_t type) {
  return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

size_t weft_icmp_net_unreachable(const uint8_t *off, size_t off_len, uint32_t src, uint8_t *out) {
  if (off_len < 20 || (off[0] >> 4) != 4) return 0;
  size_t ihl = (size_t)(off[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > off_len) return 0;
  /* RFC 1812 4.3.2.7: never about an ICMP error, a non-first fragment, or
   * an unspecified / broadcast / multicast source. Unlike flannel (which
   * stays silent for all ICMP), echo requests do get an answer, so `ping`
   * reports "Destination Net Unreachable". */
  if (off[9] == 1 && (ihl >= off_len || is_icmp_error(off[ihl]))) return 0;
  if ((weft_rd16(off + 6) & 0x1fff) != 0) return 0;
  uint32_t osrc = weft_rd32(off + 12);
  if (osrc == 0 || osrc == 0xffffffffu || (osrc >> 28) == 0xe) return 0;

  size_t quote = ihl + 8 <= off_len ? ihl + 8 : off_len;
  size_t total = 20 + 8 + quote;
  memset(out, 0, 28);
  out[0] = 0x45;
  weft_wr16(out + 2, (uint16_t)total);
  out[8] = 64;
  out[9] = 1;
  weft_wr32(out + 12, src);
  weft_wr32(out + 16, osrc);
  weft_ip_fix_checksum(out);
  out[20] = 3; /* destination unreachable */
  out[21] = 0; /* net unreachable */
  memcpy(out + 28, off, quote);
  weft_wr16(out + 22, weft_csum_fold(weft_csum_add(0, out + 20, 8 + quote)));
  return total;
}

int weft_finish_csum(uint8_t *pkt, size_t len, uint16_t csum_start, uint16_t csum_offset) {
  if ((size_t)csum_start + csum_offset + 2 > len) return 0;
  uint16_t c = weft_csum_fold(weft_csum_add(0, pkt + csum_start, len - csum_start));
  /* UDP: a computed 0 is sent as 0xffff (0 means "no checksum"). */
  if (c == 0 && csum_offset == 6) c = 0xffff;
  weft_wr16(pkt + csum_start + csum_offset, c);
  return 1;
}

int weft_tso_segment(const uint8_t *pkt, size_t len, const struct weft_vnet_hdr *h, uint8_t *out, size_t out_cap,
                     size_t *stride_out, size_t *last_len) {
  if (len < 40 || (pkt[0] >> 4) != 4 || pkt[9] != 6) return -1;
  size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
  if (ihl < 20 || ihl + 20 > len) return -1;
  size_t thl = (size_t)(pkt[ihl + 12] >> 4) * 4;
  size_t hdr = ihl + thl;
  if (thl < 20 || hdr > len) return -1;
  size_t mss = h->gso_size;
  if (mss == 0) return -1;
  size_t payload = len - hdr;
  if (payload == 0) return -1;
  size_t nseg = (payload + mss - 1) / mss;
  size_t stride = hdr + mss;
  if ((nseg - 1) * stride + hdr + (payload - (nseg - 1) * mss) > out_cap) return -1;

  uint16_t id0 = weft_rd16(pkt + 4);
  uint32_t seq0 = weft_rd32(pkt + ihl + 4);
  uint8_t flags = pkt[ihl + 13];
  uint8_t pseudo[12];
  memcpy(pseudo, pkt + 12, 8);
  pseudo[8] = 0;
  pseudo[9] = 6;

  for (size_t i = 0; i < nseg; i++) {
    uint8_t *seg = out + i * stride;
    size_t plen = i + 1 < nseg ? mss : payload - i * mss;
    memcpy(seg, pkt, hdr);
    memcpy(seg + hdr, pkt + hdr + i * mss, plen);
    weft_wr16(seg + 2, (uint16_t)(hdr + plen));
    weft_wr16(seg + 4, (uint16_t)(id0 + i));
    weft_ip_fix_checksum(seg);
    uint8_t *tcp = seg + ihl;
    weft_wr32(tcp + 4, seq0 + (uint32_t)(i * mss));
    uint8_t f = flags;
    if (i + 1 < nseg) f &= (uint8_t)~0x09; /* FIN, PSH only on the last */
    if (i > 0) f &= (uint8_t)~0x80;        /* CWR only on the first */
    tcp[13] = f;
    tcp[16] = tcp[17] = 0;
    weft_wr16(pseudo + 10, (uint16_t)(thl + plen));
    uint64_t sum = weft_csum_add(0, pseudo, 12);
    sum = weft_csum_add(sum, tcp, thl + plen);
    weft_wr16(tcp + 16, weft_csum_fold(sum));
    if (i + 1 == nseg && last_len) *last_len = hdr + plen;
  }
  if (stride_out) *stride_out = stride;
  return (int)nseg;
}

int weft_gro_eligible(const uint8_t *p, size_t len) {
  if (len < 40 || p[0] != 0x45 || p[9] != 6) return 0;
  if (weft_rd16(p + 2) != len) return 0;
  if ((weft_rd16(p + 6) & 0x3fff) != 0) return 0; /* MF or offset: a fragment */
  const uint8_t *tcp = p + 20;
  size_t thl = (size_t)(tcp[12] >> 4) * 4;
  if (thl < 20 || 20 + thl >= len) return 0; /* no payload: pure ACKs pass alone */
  uint8_t f = tcp[13];
  if (!(f & 0x10) || (f & ~0x18)) return 0; /* only ACK, optionally PSH */
  uint8_t pseudo[12];
  memcpy(pseudo, p + 12, 8);
  pseudo[8] = 0;
  pseudo[9] = 6;
  weft_wr16(pseudo + 10, (uint16_t)(len - 20));
  /* A bad checksum must reach the kernel as it came (and be dropped there):
   * a coalesced packet is written with a partial checksum, never verified again. */
  return weft_csum_fold(weft_csum_add(weft_csum_add(0, pseudo, 12), tcp, len - 20)) == 0;
}

int weft_gro_start(struct weft_gro *g, const uint8_t *p, size_t len) {
  if (len > g->cap) return 0;
  memcpy(g->buf + WEFT_VNET_HDR_LEN, p, len);
  g->len = len;
  g->hdr = 20 + (size_t)(p[32] >> 4) * 4;
  g->gso = (uint16_t)(len - g->hdr);
  g->next_seq = weft_rd32(p + 24) + g->gso;
  g->nseg = 1;
  g->closed = (p[33] & 0x08) != 0;
  return 1;
}

int weft_gro_append(struct weft_gro *g, const uint8_t *p, size_t len) {
  if (g->closed || g->nseg >= 64) return 0;
  const uint8_t *q = g->buf + WEFT_VNET_HDR_LEN;
  if (len <= g->hdr || (size_t)(p[32] >> 4) * 4 + 20 != g->hdr) return 0;
  size_t payload = len - g->hdr;
  if (payload > g->gso || g->len + payload > 65535 || g->len + payload > g->cap) return 0;
  /* Same flow and same everything a receiver would keep from the first
   * header: TOS, TTL, DF, addresses, ports, ack, window, options. */
  if (p[1] != q[1] || p[8] != q[8] || (p[6] & 0x40) != (q[6] & 0x40)) return 0;
  if (memcmp(p + 12, q + 12, 8) != 0 || memcmp(p + 20, q + 20, 4) != 0) return 0;
  if (memcmp(p + 28, q + 28, 4) != 0 || memcmp(p + 34, q + 34, 2) != 0) return 0;
  if (memcmp(p + 40, q + 40, g->hdr - 40) != 0) return 0;
  if (weft_rd32(p + 24) != g->next_seq) return 0;
  memcpy(g->buf + WEFT_VNET_HDR_LEN + g->len, p + g->hdr, payload);
  g->len += payload;
  g->next_seq += (uint32_t)payload;
  g->nseg++;
  if (p[33] & 0x08) {
    g->buf[WEFT_VNET_HDR_LEN + 33] |= 0x08;
    g->closed = 1;
  }
  if (payload < g->gso) g->closed = 1;
  return 1;
}

size_t weft_gro_finish(struct weft_gro *g) {
  uint8_t *v = g->buf;
  uint8_t *p = g->buf + WEFT_VNET_HDR_LEN;
  memset(v, 0, WEFT_VNET_HDR_LEN);
  if (g->nseg > 1) {
    weft_wr16(p + 2, (uint16_t)g->len);
    weft_ip_fix_checksum(p);
    /* CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not inverted. */
    uint8_t pseudo[12];
    memcpy(pseudo, p + 12, 8);
    pseudo[8] = 0;
    pseudo[9] = 6;
    weft_wr16(pseudo + 10, (uint16_t)(g->len - 20));
    weft_wr16(p + 36, (uint16_t)~weft_csum_fold(weft_csum_add(0, pseudo, 12)));
    struct weft_vnet_hdr h = {
        .flags = WEFT_VNET_F_NEEDS_CSUM,
        .gso_type = WEFT_VNET_GSO_TCPV4,
        .hdr_len = (uint16_t)g->hdr,
        .gso_size = g->gso,
        .csum_start = 20,
        .csum_offset = 16,
    };
    memcpy(v, &h, sizeof(h));
  }
  return WEFT_VNET_HDR_LEN + g->len;
}
