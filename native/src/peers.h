/*
 * The peer table: remote subnet -> PublicIP:port, plus our own subnet.
 * Immutable once built; the data path swaps whole tables (see datapath.c),
 * so lookups need no locking of their own.
 */
#ifndef WEFT_PEERS_H
#define WEFT_PEERS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

struct weft_peer {
  uint32_t net; /* host order, host bits zero */
  uint8_t plen;
  uint32_t ip; /* host order */
  uint16_t port;
  struct sockaddr_in addr; /* prebuilt destination */
  int32_t next_same_ip;    /* chain of peers sharing a PublicIP, -1 ends */
};

struct weft_table {
  size_t n;
  struct weft_peer *peers;
  uint32_t own_net;
  uint8_t own_plen;
  /* Distinct prefix lengths, longest first (usually just one). */
  int nlens;
  uint8_t lens[33];
  /* Open addressing, capacity a power of two; slots hold peer index + 1. */
  uint32_t cap;
  uint32_t *by_net;
  uint32_t *by_ip;
};

/* Builds a table (copies `peers`); NULL on allocation failure. Entries with
 * the same subnet: the first one wins (JS dedupes before). */
struct weft_table *weft_table_new(const struct weft_peer *peers, size_t n, uint32_t own_net, uint8_t own_plen);
void weft_table_free(struct weft_table *t);

/* Peer whose subnet holds `dst` (host order), longest prefix first; NULL if none. */
const struct weft_peer *weft_table_route(const struct weft_table *t, uint32_t dst);

/* Full receive-side classification of a datagram of `len` bytes from
 * `src_ip` (host order): peer check, IPv4 checks, inner source in the
 * sender's subnet, inner destination in our subnet. Returns a weft_verdict. */
int weft_classify_rx(const struct weft_table *t, uint32_t src_ip, const uint8_t *p, size_t len);

static inline uint32_t weft_mask(uint8_t plen) { return plen == 0 ? 0 : 0xffffffffu << (32 - plen); }

#endif
