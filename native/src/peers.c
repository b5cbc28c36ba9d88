#include "peers.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "packet.h"

static inline uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

static inline uint32_t net_key(uint32_t net, uint8_t plen) { return hash32(net ^ ((uint32_t)plen * 0x9e3779b9U)); }

static int find_net(const struct weft_table *t, uint32_t net, uint8_t plen) {
  uint32_t m = t->cap - 1;
  for (uint32_t i = net_key(net, plen) & m;; i = (i + 1) & m) {
    uint32_t s = t->by_net[i];
    if (s == 0) return -1;
    const struct weft_peer *p = &t->peers[s - 1];
    if (p->net == net && p->plen == plen) return (int)(s - 1);
  }
}

static int find_ip(const struct weft_table *t, uint32_t ip) {
  uint32_t m = t->cap - 1;
  for (uint32_t i = hash32(ip) & m;; i = (i + 1) & m) {
    uint32_t s = t->by_ip[i];
    if (s == 0) return -1;
    if (t->peers[s - 1].ip == ip) return (int)(s - 1);
  }
}

struct weft_table *weft_table_new(const struct weft_peer *in, size_t n, uint32_t own_net, uint8_t own_plen) {
  struct weft_table *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  t->own_net = own_net & weft_mask(own_plen);
  t->own_plen = own_plen;
  uint32_t cap = 8;
  while (cap < 2 * n + 2) cap <<= 1;
  t->cap = cap;
  t->peers = calloc(n ? n : 1, sizeof(struct weft_peer));
  t->by_net = calloc(cap, sizeof(uint32_t));
  t->by_ip = calloc(cap, sizeof(uint32_t));
  if (!t->peers || !t->by_net || !t->by_ip) {
    weft_table_free(t);
    return NULL;
  }
  int have_len[33] = {0};
  for (size_t k = 0; k < n; k++) {
    struct weft_peer p = in[k];
    if (p.plen > 32) continue;
    p.net &= weft_mask(p.plen);
    memset(&p.addr, 0, sizeof(p.addr));
    p.addr.sin_family = AF_INET;
    p.addr.sin_addr.s_addr = htonl(p.ip);
    p.addr.sin_port = htons(p.port);
    p.next_same_ip = -1;
    /* JS hands over one entry per subnet; a duplicate is ignored (first wins). */
    if (find_net(t, p.net, p.plen) >= 0) continue;
    size_t idx = t->n++;
    t->peers[idx] = p;
    uint32_t m = cap - 1;
    uint32_t i;
    for (i = net_key(p.net, p.plen) & m; t->by_net[i]; i = (i + 1) & m) {
    }
    t->by_net[i] = (uint32_t)idx + 1;
    int head = find_ip(t, p.ip);
    if (head >= 0) {
      t->peers[idx].next_same_ip = t->peers[head].next_same_ip;
      t->peers[head].next_same_ip = (int32_t)idx;
    } else {
      for (i = hash32(p.ip) & m; t->by_ip[i]; i = (i + 1) & m) {
      }
      t->by_ip[i] = (uint32_t)idx + 1;
    }
    have_len[p.plen] = 1;
  }
  for (int l = 32; l >= 0; l--)
    if (have_len[l]) t->lens[t->nlens++] = (uint8_t)l;
  return t;
}

void weft_table_free(struct weft_table *t) {
  if (!t) return;
  free(t->peers);
  free(t->by_net);
  free(t->by_ip);
  free(t);
}

const struct weft_peer *weft_table_route(const struct weft_table *t, uint32_t dst) {
  for (int k = 0; k < t->nlens; k++) {
    uint8_t l = t->lens[k];
    int i = find_net(t, dst & weft_mask(l), l);
    if (i >= 0) return &t->peers[i];
  }
  return NULL;
}

int weft_classify_rx(const struct weft_table *t, uint32_t src_ip, const uint8_t *p, size_t len) {
  int head = find_ip(t, src_ip);
  if (head < 0) return WEFT_DROP_UNKNOWN_PEER;
  int v = weft_check_ipv4(p, len);
  if (v != WEFT_OK) return v;
  uint32_t inner_src = weft_rd32(p + 12);
  uint32_t inner_dst = weft_rd32(p + 16);
  int ok = 0;
  for (int i = head; i >= 0; i = t->peers[i].next_same_ip) {
    const struct weft_peer *peer = &t->peers[i];
    if ((inner_src & weft_mask(peer->plen)) == peer->net) {
      ok = 1;
      break;
    }
  }
  if (!ok) return WEFT_DROP_SPOOFED_SOURCE;
  if ((inner_dst & weft_mask(t->own_plen)) != t->own_net) return WEFT_DROP_WRONG_DESTINATION;
  if (p[8] <= 1) return WEFT_DROP_TTL_EXPIRED;
  return WEFT_OK;
}
