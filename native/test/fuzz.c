/*
 * Fuzz harness for the pure packet code (packet.c, peers.c): random and
 * mutated-valid inputs through every parser, built with
 * -fsanitize=address,undefined so any out-of-bounds read or UB aborts.
 *   gcc -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
 *       -Inative/src native/test/fuzz.c native/src/packet.c native/src/peers.c -o /tmp/weft-fuzz
 *   /tmp/weft-fuzz [iterations] [seed]
 * Prints "ok <iterations> <verdict histogram>" and exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "packet.h"
#include "peers.h"

static uint64_t state;
static uint32_t rnd(void) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return (uint32_t)state;
}

/* A valid IPv4/TCP packet to mutate (so the fuzz reaches deep checks). */
static size_t valid_tcp(uint8_t *b, size_t payload) {
  size_t len = 20 + 32 + payload;
  memset(b, 0, len);
  b[0] = 0x45;
  weft_wr16(b + 2, (uint16_t)len);
  b[6] = 0x40;
  b[8] = 64;
  b[9] = 6;
  weft_wr32(b + 12, 0x0af40205); /* 10.244.2.5 */
  weft_wr32(b + 16, 0x0af40107); /* 10.244.1.7 */
  weft_ip_fix_checksum(b);
  b[32] = 8 << 4;
  b[33] = 0x10;
  for (size_t i = 52; i < len; i++) b[i] = (uint8_t)i;
  uint8_t pseudo[12];
  memcpy(pseudo, b + 12, 8);
  pseudo[8] = 0;
  pseudo[9] = 6;
  weft_wr16(pseudo + 10, (uint16_t)(len - 20));
  weft_wr16(b + 36, weft_csum_fold(weft_csum_add(weft_csum_add(0, pseudo, 12), b + 20, len - 20)));
  return len;
}

int main(int argc, char **argv) {
  long iters = argc > 1 ? atol(argv[1]) : 200000;
  state = argc > 2 ? strtoull(argv[2], NULL, 10) : 0x9e3779b97f4a7c15ULL;
  struct weft_peer peers[3] = {
      {.net = 0x0af40200, .plen = 24, .ip = 0xc0000202, .port = 8285},
      {.net = 0x0af40300, .plen = 24, .ip = 0xc0000203, .port = 8285},
      {.net = 0x0af40000, .plen = 16, .ip = 0xc0000209, .port = 8285},
  };
  struct weft_table *t = weft_table_new(peers, 3, 0x0af40100, 24);
  if (!t) return 2;
  long hist[WEFT_VERDICT_COUNT] = {0};
  uint8_t *out = malloc(4 * 65536);
  uint8_t *gbuf = malloc(WEFT_VNET_HDR_LEN + 65535);
  struct weft_gro g = {.buf = gbuf, .cap = 65535};
  int run = 0;
  for (long it = 0; it < iters; it++) {
    /* Exact-size heap buffer: ASan flags any read past len. */
    size_t len;
    uint8_t *p;
    if (rnd() % 2) {
      len = rnd() % 1600;
      p = malloc(len ? len : 1);
      for (size_t i = 0; i < len; i++) p[i] = (uint8_t)rnd();
    } else {
      uint8_t tmp[1600];
      len = valid_tcp(tmp, rnd() % 1400);
      int flips = 1 + rnd() % 3;
      for (int f = 0; f < flips; f++) tmp[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
      if (rnd() % 4 == 0) len = rnd() % (len + 1); /* truncate */
      p = malloc(len ? len : 1);
      memcpy(p, tmp, len);
    }
    static const uint32_t known[] = {0xc0000202, 0xc0000203, 0xc0000209};
    uint32_t src = rnd() % 5 == 0 ? rnd() : known[rnd() % 3];
    int v = weft_classify_rx(t, src, p, len);
    hist[v]++;
    weft_check_ipv4(p, len);
    uint8_t icmp[128];
    weft_icmp_net_unreachable(p, len, 0x0af40000, icmp);
    struct weft_vnet_hdr h = {.gso_type = WEFT_VNET_GSO_TCPV4, .gso_size = (uint16_t)(rnd() % 2000)};
    size_t stride, last;
    weft_tso_segment(p, len, &h, out, 4 * 65536, &stride, &last);
    if (len) weft_finish_csum(p, len, (uint16_t)(rnd() % (len + 8)), (uint16_t)(rnd() % 40));
    if (weft_gro_eligible(p, len)) {
      if (!(run && weft_gro_append(&g, p, len))) {
        if (run) weft_gro_finish(&g);
        run = weft_gro_start(&g, p, len);
      }
    } else if (run) {
      weft_gro_finish(&g);
      run = 0;
    }
    if (v == WEFT_OK && len >= 20) weft_ttl_decrement(p);
    weft_table_route(t, src);
    free(p);
  }
  printf("ok %ld", iters);
  for (int i = 0; i < WEFT_VERDICT_COUNT; i++) printf(" %s=%ld", weft_verdict_name(i), hist[i]);
  printf("\n");
  weft_table_free(t);
  free(out);
  free(gbuf);
  return 0;
}
