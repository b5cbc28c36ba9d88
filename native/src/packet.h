/*
 * Pure packet logic for the udp data path: header validation, checksums,
 * TTL decrement, ICMP net-unreachable, TSO segmentation. No syscalls here,
 * so every function can be fed test vectors from JavaScript.
 */
#ifndef WEFT_PACKET_H
#define WEFT_PACKET_H

#include <stddef.h>
#include <stdint.h>

/* Why a packet was dropped. Order = order of the checks; names are exported
 * to JS (metrics label `reason`) and must stay stable. */
enum weft_verdict {
  WEFT_OK = 0,
  WEFT_DROP_UNKNOWN_PEER,       /* datagram source is not a known peer PublicIP */
  WEFT_DROP_SHORT,              /* shorter than an IPv4 header */
  WEFT_DROP_BAD_VERSION,        /* IP version is not 4 */
  WEFT_DROP_BAD_IHL,            /* IHL < 5 or header longer than the packet */
  WEFT_DROP_LENGTH_MISMATCH,    /* IP total length != bytes received */
  WEFT_DROP_BAD_CHECKSUM,       /* IPv4 header checksum wrong */
  WEFT_DROP_SPOOFED_SOURCE,     /* inner source not inside the sender's subnet */
  WEFT_DROP_WRONG_DESTINATION,  /* inner destination not inside our own subnet */
  WEFT_DROP_TTL_EXPIRED,        /* TTL would reach zero */
  WEFT_DROP_NO_ROUTE,           /* (tun side) destination has no peer: ICMP sent */
  WEFT_DROP_TOO_BIG,            /* (tun side) larger than the path allows */
  WEFT_VERDICT_COUNT
};

const char *weft_verdict_name(int v);

/* Structural IPv4 checks on a packet of exactly `len` bytes. */
int weft_check_ipv4(const uint8_t *p, size_t len);

static inline uint32_t weft_rd32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t weft_rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline void weft_wr16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void weft_wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* One's-complement sum (not folded, not inverted) of `len` bytes, big-endian
 * words, added to `sum`. */
uint64_t weft_csum_add(uint64_t sum, const uint8_t *p, size_t len);
/* Fold and invert: the value to store in a checksum field. */
uint16_t weft_csum_fold(uint64_t sum);

/* Recomputes the IPv4 header checksum in place. */
void weft_ip_fix_checksum(uint8_t *ip);

/* Decrements TTL with an incremental checksum update (RFC 1624).
 * Returns 0 when the TTL is (or would become) zero: drop the packet. */
int weft_ttl_decrement(uint8_t *ip);

/* Writes an ICMP destination-unreachable / net-unreachable answering the
 * packet `off` (of `off_len` bytes) into `out` (>= 96 bytes), with source
 * `src_be` (our TUN address). Returns its length, or 0 when none must be sent
 * (the offender is ICMP, a non-first fragment, or malformed) - RFC 1812. */
size_t weft_icmp_net_unreachable(const uint8_t *off, size_t off_len, uint32_t src, uint8_t *out);

/* virtio_net_hdr as read from / written to a TUN with IFF_VNET_HDR (host endian). */
struct weft_vnet_hdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
#define WEFT_VNET_HDR_LEN 10
_Static_assert(sizeof(struct weft_vnet_hdr) == WEFT_VNET_HDR_LEN, "virtio_net_hdr is 10 bytes");
#define WEFT_VNET_F_NEEDS_CSUM 1
#define WEFT_VNET_GSO_NONE 0
#define WEFT_VNET_GSO_TCPV4 1
#define WEFT_VNET_GSO_ECN 0x80

/* Completes a partial checksum (NEEDS_CSUM) in place: the field at
 * csum_start+csum_offset holds the pseudo-header sum. Returns 0 on bad offsets. */
int weft_finish_csum(uint8_t *pkt, size_t len, uint16_t csum_start, uint16_t csum_offset);

/* Splits an IPv4/TCP GSO packet (`pkt`, `len` bytes, the vnet header
 * already parsed into `h`) into MSS-sized segments written back to back into
 * `out` (capacity `out_cap`); each segment is a complete IPv4 packet with
 * correct IP and TCP checksums. Segment i starts at out + i * stride where
 * stride = header length + gso_size (the last may be shorter).
 * Returns the number of segments, or -1 if the packet cannot be segmented. */
int weft_tso_segment(const uint8_t *pkt, size_t len, const struct weft_vnet_hdr *h, uint8_t *out, size_t out_cap,
                     size_t *stride, size_t *last_len);

/*
 * Receive-side coalescing (GRO in user space): consecutive TCP segments of
 * one flow are joined into a single TSO packet written to the TUN with a
 * vnet header, so the kernel forwards one large skb instead of dozens.
 * Only plain ACK/PSH data segments with a valid TCP checksum join a run;
 * anything else is written as it came.
 */
struct weft_gro {
  uint8_t *buf;   /* WEFT_VNET_HDR_LEN bytes of header room, then the packet */
  size_t cap;     /* bytes available after the header room */
  size_t len;     /* packet bytes assembled */
  size_t hdr;     /* IP + TCP header length */
  uint16_t gso;   /* payload bytes of the first segment */
  uint32_t next_seq;
  int nseg;
  int closed;     /* no more segments may join (PSH or a short segment seen) */
};

/* 1 if `p` may start or join a run (IPv4 without options, TCP, ACK/PSH only,
 * payload > 0, not a fragment, TCP checksum valid). */
int weft_gro_eligible(const uint8_t *p, size_t len);
/* Starts a run with `p` (must be eligible); 0 if it does not fit. */
int weft_gro_start(struct weft_gro *g, const uint8_t *p, size_t len);
/* Appends `p` to the run when it continues it; 0 otherwise (caller flushes). */
int weft_gro_append(struct weft_gro *g, const uint8_t *p, size_t len);
/* Fixes the headers and fills the vnet header; returns the bytes to write
 * from g->buf (vnet header included). A run of one is a plain packet. */
size_t weft_gro_finish(struct weft_gro *g);

#endif
