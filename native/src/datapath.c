#define _GNU_SOURCE
#include "datapath.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

const char *const weft_counter_names[WC_COUNT] = {
    "tun_read_packets",  "tun_read_bytes",   "tso_packets",       "udp_sent_packets", "udp_sent_bytes",
    "udp_send_errors",   "icmp_sent",        "udp_recv_packets",  "udp_recv_bytes",   "tun_write_packets",
    "tun_write_bytes",   "tun_write_errors", "gro_writes",        "gro_segments",     "tx_wakeups",        "rx_wakeups",
};

#define MAX_BATCH 256
#define TUN_READ_MAX (WEFT_VNET_HDR_LEN + 65535)
/* Segments of one TSO packet sent as one UDP_SEGMENT train are capped so
 * the train stays under the 64 KiB IP datagram limit. */
#define GSO_TRAIN_BYTES 60000
#define GSO_TRAIN_SEGS 64

static inline void add(uint64_t *c, uint64_t v) {
  if (v) __atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- setup */

struct setup {
  const struct weft_dp_opts *o;
  struct weft_dp *dp;
  char err[256];
};

static int fail(struct setup *s, const char *what) {
  snprintf(s->err, sizeof(s->err), "%s: %s", what, strerror(errno));
  return -1;
}

/* Runs on a short-lived thread: setns() changes only the calling thread's
 * namespace, and the TUN and socket stay bound to the namespace they were
 * created in after the thread is gone. */
static void *setup_main(void *arg) {
  struct setup *s = arg;
  const struct weft_dp_opts *o = s->o;
  struct weft_dp *dp = s->dp;
  if (o->netns[0]) {
    char path[300];
    snprintf(path, sizeof(path), "/var/run/netns/%s", o->netns);
    int nfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nfd < 0) return fail(s, "open netns"), NULL;
    int r = setns(nfd, CLONE_NEWNET);
    close(nfd);
    if (r < 0) return fail(s, "setns"), NULL;
  }
  dp->tun_fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (dp->tun_fd < 0) return fail(s, "open /dev/net/tun"), NULL;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (o->offload ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, o->ifname, strnlen(o->ifname, IFNAMSIZ - 1));
  if (ioctl(dp->tun_fd, TUNSETIFF, &ifr) < 0) return fail(s, "TUNSETIFF"), NULL;
  memcpy(dp->ifname, ifr.ifr_name, IFNAMSIZ);
  dp->ifname[IFNAMSIZ - 1] = 0;
  if (o->offload) {
    int sz = WEFT_VNET_HDR_LEN;
    if (ioctl(dp->tun_fd, TUNSETVNETHDRSZ, &sz) < 0) return fail(s, "TUNSETVNETHDRSZ"), NULL;
    if (ioctl(dp->tun_fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4)) < 0)
      return fail(s, "TUNSETOFFLOAD"), NULL;
  }

  dp->sock_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (dp->sock_fd < 0) return fail(s, "socket"), NULL;
  if (o->sockbuf > 0) {
    /* FORCE variants pass rmem_max/wmem_max when we have CAP_NET_ADMIN. */
    if (setsockopt(dp->sock_fd, SOL_SOCKET, SO_RCVBUFFORCE, &o->sockbuf, sizeof(int)) < 0)
      setsockopt(dp->sock_fd, SOL_SOCKET, SO_RCVBUF, &o->sockbuf, sizeof(int));
    if (setsockopt(dp->sock_fd, SOL_SOCKET, SO_SNDBUFFORCE, &o->sockbuf, sizeof(int)) < 0)
      setsockopt(dp->sock_fd, SOL_SOCKET, SO_SNDBUF, &o->sockbuf, sizeof(int));
  }
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(o->port);
  sa.sin_addr.s_addr = htonl(o->bind_ip);
  if (bind(dp->sock_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) return fail(s, "bind"), NULL;
  if (o->udp_gro) {
    int one = 1;
    if (setsockopt(dp->sock_fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) < 0) return fail(s, "UDP_GRO"), NULL;
  }

  /* MTU, queue length and UP through the socket: it lives in the same netns. */
  memset(&ifr, 0, sizeof(ifr));
  memcpy(ifr.ifr_name, dp->ifname, IFNAMSIZ);
  ifr.ifr_mtu = o->mtu;
  if (ioctl(dp->sock_fd, SIOCSIFMTU, &ifr) < 0) return fail(s, "set MTU"), NULL;
  if (o->txqlen > 0) {
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, dp->ifname, IFNAMSIZ);
    ifr.ifr_qlen = o->txqlen;
    if (ioctl(dp->sock_fd, SIOCSIFTXQLEN, &ifr) < 0) return fail(s, "set txqueuelen"), NULL;
  }
  memset(&ifr, 0, sizeof(ifr));
  memcpy(ifr.ifr_name, dp->ifname, IFNAMSIZ);
  if (ioctl(dp->sock_fd, SIOCGIFFLAGS, &ifr) < 0) return fail(s, "get flags"), NULL;
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(dp->sock_fd, SIOCSIFFLAGS, &ifr) < 0) return fail(s, "set up"), NULL;
  return NULL;
}

/* ------------------------------------------------------------ helpers */

static struct weft_table *acquire(struct weft_dp *dp) {
  pthread_rwlock_rdlock(&dp->lock);
  return dp->table;
}
static void release(struct weft_dp *dp) { pthread_rwlock_unlock(&dp->lock); }

/* Waits until fd is readable or stop is signalled; returns 0 to stop. */
static int wait_readable(struct weft_dp *dp, int fd) {
  struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = dp->stop_fd, .events = POLLIN}};
  for (;;) {
    if (dp->stopping) return 0;
    int r = poll(p, 2, 1000);
    if (r < 0 && errno != EINTR) return !dp->stopping;
    if (p[1].revents) return 0;
    if (r > 0) return 1;
  }
}

static void tun_write(struct weft_dp *dp, uint8_t *pkt, size_t len) {
  /* With IFF_VNET_HDR every write carries a header; room for it is always
   * reserved in front of the packet. All zero = plain packet. */
  uint8_t *start = pkt;
  size_t total = len;
  if (dp->o.offload) {
    start -= WEFT_VNET_HDR_LEN;
    memset(start, 0, WEFT_VNET_HDR_LEN);
    total += WEFT_VNET_HDR_LEN;
  }
  ssize_t w = write(dp->tun_fd, start, total);
  if (w == (ssize_t)total) {
    add(&dp->counters[WC_TUN_WRITE_PKTS], 1);
    add(&dp->counters[WC_TUN_WRITE_BYTES], len);
  } else {
    add(&dp->counters[WC_TUN_WRITE_ERRORS], 1);
  }
}

/* ------------------------------------------------------- TUN -> UDP */

struct tx_state {
  uint8_t *rbuf;     /* one TUN read */
  uint8_t *arena;    /* outgoing datagrams */
  size_t arena_cap, used;
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  /* Copies: the table (and its prebuilt addresses) may be swapped and freed
   * once the read lock is released, before sendmmsg runs. */
  struct sockaddr_in names[MAX_BATCH];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } cm[MAX_BATCH];
  int nmsg;
  uint8_t icmp[4][WEFT_VNET_HDR_LEN + 128];
  size_t icmp_len[4];
  int nicmp;
};

static void tx_queue(struct tx_state *st, const struct weft_peer *peer, uint8_t *data, size_t len, size_t gso) {
  struct mmsghdr *m = &st->msgs[st->nmsg];
  memset(m, 0, sizeof(*m));
  st->iov[st->nmsg].iov_base = data;
  st->iov[st->nmsg].iov_len = len;
  m->msg_hdr.msg_iov = &st->iov[st->nmsg];
  m->msg_hdr.msg_iovlen = 1;
  st->names[st->nmsg] = peer->addr;
  m->msg_hdr.msg_name = &st->names[st->nmsg];
  m->msg_hdr.msg_namelen = sizeof(st->names[0]);
  if (gso) {
    struct cmsghdr *c = (struct cmsghdr *)st->cm[st->nmsg].buf;
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t g = (uint16_t)gso;
    memcpy(CMSG_DATA(c), &g, sizeof(g));
    m->msg_hdr.msg_control = st->cm[st->nmsg].buf;
    m->msg_hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
  }
  st->nmsg++;
}

static void tx_flush(struct weft_dp *dp, struct tx_state *st) {
  int off = 0;
  uint64_t pkts = 0, bytes = 0, errs = 0;
  while (off < st->nmsg) {
    int r = sendmmsg(dp->sock_fd, st->msgs + off, (unsigned)(st->nmsg - off), 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      /* This one message fails (e.g. no route on the underlay); skip it. */
      errs++;
      off++;
      continue;
    }
    for (int i = off; i < off + r; i++) {
      size_t len = st->iov[i].iov_len;
      bytes += len;
      if (st->msgs[i].msg_hdr.msg_control) {
        uint16_t g;
        memcpy(&g, CMSG_DATA((struct cmsghdr *)st->cm[i].buf), sizeof(g));
        pkts += (len + g - 1) / g;
      } else {
        pkts++;
      }
    }
    off += r;
  }
  add(&dp->counters[WC_UDP_SENT_PKTS], pkts);
  add(&dp->counters[WC_UDP_SENT_BYTES], bytes);
  add(&dp->counters[WC_UDP_SEND_ERRORS], errs);
  st->nmsg = 0;
  for (int i = 0; i < st->nicmp; i++) {
    tun_write(dp, st->icmp[i] + WEFT_VNET_HDR_LEN, st->icmp_len[i]);
    add(&dp->counters[WC_ICMP_SENT], 1);
  }
  st->nicmp = 0;
}

/* Handles one packet read from the TUN (`pkt`, `len`, vnet header `h` or NULL). */
static void tx_packet(struct weft_dp *dp, struct tx_state *st, const struct weft_table *t, uint8_t *pkt, size_t len,
                      const struct weft_vnet_hdr *h) {
  if (len < 20 || (pkt[0] >> 4) != 4) {
    /* IPv6 or junk from the host stack: not ours to carry. */
    add(&dp->tx_drops[len < 20 ? WEFT_DROP_SHORT : WEFT_DROP_BAD_VERSION], 1);
    return;
  }
  uint32_t dst = weft_rd32(pkt + 16);
  const struct weft_peer *peer = t ? weft_table_route(t, dst) : NULL;
  if (!peer) {
    add(&dp->tx_drops[WEFT_DROP_NO_ROUTE], 1);
    if (st->nicmp < 4) {
      size_t n = weft_icmp_net_unreachable(pkt, len, dp->o.tun_addr, st->icmp[st->nicmp] + WEFT_VNET_HDR_LEN);
      if (n) st->icmp_len[st->nicmp++] = n;
    }
    return;
  }
  if (!weft_ttl_decrement(pkt)) {
    add(&dp->tx_drops[WEFT_DROP_TTL_EXPIRED], 1);
    return;
  }
  if (h && (h->gso_type & ~WEFT_VNET_GSO_ECN) == WEFT_VNET_GSO_TCPV4) {
    size_t stride = 0, last = 0;
    int n = weft_tso_segment(pkt, len, h, st->arena + st->used, st->arena_cap - st->used, &stride, &last);
    if (n < 0) {
      add(&dp->tx_drops[WEFT_DROP_BAD_IHL], 1);
      return;
    }
    add(&dp->counters[WC_TSO_PKTS], 1);
    uint8_t *base = st->arena + st->used;
    st->used += (size_t)(n - 1) * stride + last;
    int per = dp->o.udp_gso ? (int)(GSO_TRAIN_BYTES / stride) : 1;
    if (per > GSO_TRAIN_SEGS) per = GSO_TRAIN_SEGS;
    if (per < 1) per = 1;
    for (int i = 0; i < n; i += per) {
      int k = n - i < per ? n - i : per;
      size_t bytes = (size_t)(k - 1) * stride + (i + k == n ? last : stride);
      if (st->nmsg == MAX_BATCH) tx_flush(dp, st); /* arena data stays valid until used resets */
      tx_queue(st, peer, base + (size_t)i * stride, bytes, k > 1 ? stride : 0);
    }
    return;
  }
  if (h && (h->flags & WEFT_VNET_F_NEEDS_CSUM)) {
    if (!weft_finish_csum(pkt, len, h->csum_start, h->csum_offset)) {
      add(&dp->tx_drops[WEFT_DROP_BAD_IHL], 1);
      return;
    }
  }
  if (len > (size_t)dp->o.mtu) {
    add(&dp->tx_drops[WEFT_DROP_TOO_BIG], 1);
    return;
  }
  memcpy(st->arena + st->used, pkt, len);
  tx_queue(st, peer, st->arena + st->used, len, 0);
  st->used += len;
}

static void *tx_main(void *arg) {
  struct weft_dp *dp = arg;
  struct tx_state *st = calloc(1, sizeof(*st));
  /* Worst case one read needs: a 64 KiB TSO packet split with its headers repeated per segment. */
  size_t per_read = dp->o.offload ? 2 * 65536 : (size_t)dp->o.mtu + 64;
  if (st) {
    st->arena_cap = per_read * 4 + (size_t)dp->o.batch * (size_t)(dp->o.mtu + 64);
    st->arena = malloc(st->arena_cap);
    st->rbuf = malloc(TUN_READ_MAX);
  }
  if (!st || !st->arena || !st->rbuf) {
    if (st) {
      free(st->arena);
      free(st->rbuf);
    }
    free(st);
    return NULL;
  }
  size_t hdr = dp->o.offload ? WEFT_VNET_HDR_LEN : 0;
  while (!dp->stopping) {
    int reads = 0;
    uint64_t bytes = 0;
    struct weft_table *t = acquire(dp);
    /* Room for one more packet's worth of messages and bytes, so that
     * tx_packet never needs to flush while the read lock is held. */
    int dead = 0;
    while (reads < dp->o.batch && st->nmsg + 64 <= MAX_BATCH && st->arena_cap - st->used >= per_read) {
      ssize_t r = read(dp->tun_fd, st->rbuf, TUN_READ_MAX);
      if (r < 0) {
        if (errno == EINTR) continue;
        /* EBADFD / EIO: the device was deleted under us. */
        if (errno != EAGAIN && errno != EWOULDBLOCK) dead = 1;
        break; /* EAGAIN: drained */
      }
      reads++;
      if ((size_t)r < hdr) continue;
      bytes += (uint64_t)r - hdr;
      struct weft_vnet_hdr h, *hp = NULL;
      if (hdr) {
        memcpy(&h, st->rbuf, sizeof(h));
        hp = &h;
      }
      tx_packet(dp, st, t, st->rbuf + hdr, (size_t)r - hdr, hp);
    }
    release(dp);
    add(&dp->counters[WC_TUN_READ_PKTS], (uint64_t)reads);
    add(&dp->counters[WC_TUN_READ_BYTES], bytes);
    if (st->nmsg || st->nicmp) tx_flush(dp, st);
    st->used = 0;
    if (dead) {
      /* poll() would report the dead fd forever: park until close, and let
       * JS see it (info().tunDead) so that the next sync reopens the device. */
      __atomic_store_n(&dp->tun_dead, 1, __ATOMIC_RELAXED);
      while (wait_readable(dp, dp->stop_fd) && !dp->stopping) {
      }
      break;
    }
    if (reads == 0) {
      add(&dp->counters[WC_TX_WAKEUPS], 1);
      if (!wait_readable(dp, dp->tun_fd)) break;
    }
  }
  free(st->arena);
  free(st->rbuf);
  free(st);
  return NULL;
}

/* ------------------------------------------------------- UDP -> TUN */

static void gro_flush(struct weft_dp *dp, struct weft_gro *g) {
  size_t total = weft_gro_finish(g);
  ssize_t w = write(dp->tun_fd, g->buf, total);
  if (w == (ssize_t)total) {
    add(&dp->counters[WC_TUN_WRITE_PKTS], (uint64_t)g->nseg);
    add(&dp->counters[WC_TUN_WRITE_BYTES], g->len + (size_t)(g->nseg - 1) * g->hdr);
    if (g->nseg > 1) {
      add(&dp->counters[WC_GRO_WRITES], 1);
      add(&dp->counters[WC_GRO_SEGMENTS], (uint64_t)g->nseg);
    }
  } else {
    add(&dp->counters[WC_TUN_WRITE_ERRORS], (uint64_t)g->nseg);
  }
}

/* Delivers one validated packet: joins the open GRO run, or flushes it and
 * writes the packet alone. Returns whether a run is open afterwards. */
static int rx_deliver(struct weft_dp *dp, struct weft_gro *g, int gro, int run, uint8_t *p, size_t len) {
  if (gro && weft_gro_eligible(p, len)) {
    if (run && weft_gro_append(g, p, len)) return 1;
    if (run) gro_flush(dp, g);
    if (weft_gro_start(g, p, len)) return 1;
  } else if (run) {
    /* Keep order: the open run goes out before this packet. */
    gro_flush(dp, g);
  }
  tun_write(dp, p, len);
  return 0;
}

static void *rx_main(void *arg) {
  struct weft_dp *dp = arg;
  int batch = dp->o.batch;
  int udp_gro = dp->o.udp_gro;
  /* Slot 0 is always 64 KiB so an oversize datagram is received whole when
   * alone; with UDP_GRO every slot is (a train of datagrams arrives as one).
   * Elsewhere an oversize datagram comes back with MSG_TRUNC and is dropped. */
  size_t big = WEFT_VNET_HDR_LEN + 65536;
  size_t small = udp_gro ? big : WEFT_VNET_HDR_LEN + (size_t)dp->o.mtu + 64;
  uint8_t *bufs = malloc(big + (size_t)batch * small);
  struct mmsghdr *msgs = calloc((size_t)batch, sizeof(*msgs));
  struct iovec *iov = calloc((size_t)batch, sizeof(*iov));
  struct sockaddr_in *names = calloc((size_t)batch, sizeof(*names));
  typedef union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } cmsg_slot;
  cmsg_slot *cms = calloc((size_t)batch, sizeof(cmsg_slot));
  int gro = dp->o.offload && dp->o.gro;
  struct weft_gro g = {.cap = 65535};
  g.buf = gro ? malloc(WEFT_VNET_HDR_LEN + 65535) : NULL;
  if (!bufs || !msgs || !iov || !names || !cms || (gro && !g.buf)) goto out;
  for (int i = 0; i < batch; i++) {
    uint8_t *b = i == 0 ? bufs : bufs + big + (size_t)(i - 1) * small;
    iov[i].iov_base = b + WEFT_VNET_HDR_LEN;
    iov[i].iov_len = (i == 0 ? big : small) - WEFT_VNET_HDR_LEN;
  }
  while (!dp->stopping) {
    for (int i = 0; i < batch; i++) {
      memset(&msgs[i], 0, sizeof(msgs[i]));
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &names[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(names[i]);
      if (udp_gro) {
        msgs[i].msg_hdr.msg_control = cms[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof(cms[i].buf);
      }
    }
    int n = recvmmsg(dp->sock_fd, msgs, (unsigned)batch, MSG_DONTWAIT, NULL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      add(&dp->counters[WC_RX_WAKEUPS], 1);
      if (!wait_readable(dp, dp->sock_fd)) break;
      continue;
    }
    uint64_t bytes = 0, dgrams = 0;
    int run = 0; /* a GRO run is open in g */
    /* The read lock is held for the whole batch (TUN writes do not block),
     * so JS waits at most one batch to swap the table. */
    struct weft_table *t = acquire(dp);
    for (int i = 0; i < n; i++) {
      uint8_t *base = iov[i].iov_base;
      size_t total = msgs[i].msg_len;
      uint32_t src = ntohl(names[i].sin_addr.s_addr);
      bytes += total;
      size_t seg = 0;
      if (udp_gro) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
          if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int v;
            memcpy(&v, CMSG_DATA(c), sizeof(v));
            if (v > 0) seg = (size_t)v;
          }
        }
      }
      if (seg == 0 || seg >= total) seg = total ? total : 1;
      if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
        /* Unknown senders are counted as such even when oversize. */
        int v = !t || weft_classify_rx(t, src, NULL, 0) == WEFT_DROP_UNKNOWN_PEER ? WEFT_DROP_UNKNOWN_PEER
                                                                                  : WEFT_DROP_TOO_BIG;
        add(&dp->rx_drops[v], 1);
        dgrams++;
        continue;
      }
      /* One datagram, or a UDP_GRO train of `seg`-byte datagrams (last shorter). */
      size_t off = 0;
      do {
        size_t len = total - off < seg ? total - off : seg;
        uint8_t *p = base + off;
        off += len;
        dgrams++;
        int v = t ? weft_classify_rx(t, src, p, len) : WEFT_DROP_UNKNOWN_PEER;
        if (v != WEFT_OK) {
          add(&dp->rx_drops[v], 1);
          continue;
        }
        weft_ttl_decrement(p);
        /* tun_write puts the vnet header in the 10 bytes before p: inside a
         * train that is the tail of the previous datagram, already consumed. */
        run = rx_deliver(dp, &g, gro, run, p, len);
      } while (off < total);
    }
    if (run) gro_flush(dp, &g);
    release(dp);
    add(&dp->counters[WC_UDP_RECV_PKTS], dgrams);
    add(&dp->counters[WC_UDP_RECV_BYTES], bytes);
  }
out:
  free(g.buf);
  free(bufs);
  free(msgs);
  free(iov);
  free(names);
  free(cms);
  return NULL;
}

/* ------------------------------------------------------------ public */

struct weft_dp *weft_dp_open(const struct weft_dp_opts *o, char *err, size_t errlen) {
  struct weft_dp *dp = calloc(1, sizeof(*dp));
  if (!dp) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  dp->o = *o;
  if (dp->o.batch < 1) dp->o.batch = 1;
  if (dp->o.batch > MAX_BATCH) dp->o.batch = MAX_BATCH;
  dp->tun_fd = dp->sock_fd = dp->stop_fd = -1;
  pthread_rwlockattr_t ra;
  pthread_rwlockattr_init(&ra);
  /* Writers (JS swapping tables) must not starve behind two busy readers. */
  pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&dp->lock, &ra);
  pthread_rwlockattr_destroy(&ra);

  struct setup s = {.o = o, .dp = dp};
  s.err[0] = 0;
  pthread_t th;
  if (pthread_create(&th, NULL, setup_main, &s) != 0) {
    snprintf(err, errlen, "pthread_create failed");
    weft_dp_close(dp);
    return NULL;
  }
  pthread_join(th, NULL);
  if (s.err[0]) {
    snprintf(err, errlen, "%s", s.err);
    weft_dp_close(dp);
    return NULL;
  }
  dp->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (dp->stop_fd < 0) {
    snprintf(err, errlen, "eventfd: %s", strerror(errno));
    weft_dp_close(dp);
    return NULL;
  }
  if (pthread_create(&dp->tx_thread, NULL, tx_main, dp) != 0) {
    snprintf(err, errlen, "pthread_create failed");
    weft_dp_close(dp);
    return NULL;
  }
  if (pthread_create(&dp->rx_thread, NULL, rx_main, dp) != 0) {
    dp->stopping = 1;
    uint64_t one = 1;
    if (write(dp->stop_fd, &one, sizeof(one)) < 0) { /* poll timeout ends it anyway */
    }
    pthread_join(dp->tx_thread, NULL);
    snprintf(err, errlen, "pthread_create failed");
    weft_dp_close(dp);
    return NULL;
  }
  dp->threads_started = 1;
  return dp;
}

void weft_dp_set_table(struct weft_dp *dp, struct weft_table *t) {
  pthread_rwlock_wrlock(&dp->lock);
  struct weft_table *old = dp->table;
  dp->table = t;
  pthread_rwlock_unlock(&dp->lock);
  /* No reader can hold `old` now: they only use it under the read lock. */
  weft_table_free(old);
}

void weft_dp_close(struct weft_dp *dp) {
  if (!dp) return;
  if (dp->threads_started) {
    __atomic_store_n(&dp->stopping, 1, __ATOMIC_SEQ_CST);
    uint64_t one = 1;
    if (write(dp->stop_fd, &one, sizeof(one)) < 0) { /* threads also poll with a timeout */
    }
    pthread_join(dp->tx_thread, NULL);
    pthread_join(dp->rx_thread, NULL);
    dp->threads_started = 0;
  }
  if (dp->tun_fd >= 0) close(dp->tun_fd);
  if (dp->sock_fd >= 0) close(dp->sock_fd);
  if (dp->stop_fd >= 0) close(dp->stop_fd);
  weft_table_free(dp->table);
  pthread_rwlock_destroy(&dp->lock);
  free(dp);
}
