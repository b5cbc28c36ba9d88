/*
 * The udp data path: a TUN device and a UDP socket (both created inside a
 * chosen network namespace), and two native threads that move packets
 * between them. JavaScript only opens, swaps peer tables, reads counters and
 * closes; no per-packet work happens on the JS thread.
 */
#ifndef WEFT_DATAPATH_H
#define WEFT_DATAPATH_H

#include <net/if.h>
#include <pthread.h>
#include <stdint.h>

#include "packet.h"
#include "peers.h"

/* Counters; names in datapath.c (weft_counter_names), exported to JS. */
enum weft_counter {
  WC_TUN_READ_PKTS,     /* packets read from the TUN (a TSO super-packet counts once) */
  WC_TUN_READ_BYTES,
  WC_TSO_PKTS,          /* TSO super-packets split in user space */
  WC_UDP_SENT_PKTS,     /* datagrams handed to the kernel */
  WC_UDP_SENT_BYTES,
  WC_UDP_SEND_ERRORS,
  WC_ICMP_SENT,         /* net-unreachable answers written to the TUN */
  WC_UDP_RECV_PKTS,     /* datagrams received (before validation) */
  WC_UDP_RECV_BYTES,
  WC_TUN_WRITE_PKTS,    /* packets delivered into the TUN */
  WC_TUN_WRITE_BYTES,
  WC_TUN_WRITE_ERRORS,
  WC_GRO_WRITES,        /* coalesced TSO packets written to the TUN */
  WC_GRO_SEGMENTS,      /* segments carried by those */
  WC_TX_WAKEUPS,        /* poll() returns on the TUN side: batching = pkts / wakeups */
  WC_RX_WAKEUPS,
  WC_COUNT
};
extern const char *const weft_counter_names[WC_COUNT];

struct weft_dp_opts {
  char netns[256];          /* name under /var/run/netns, or "" for the caller's */
  char ifname[IFNAMSIZ];    /* requested TUN name */
  int mtu;                  /* TUN MTU */
  int txqlen;               /* TUN queue length, 0 = kernel default */
  uint32_t bind_ip;         /* host order, 0 = any */
  uint16_t port;
  uint32_t tun_addr;        /* host order, source of ICMP answers */
  int offload;              /* IFF_VNET_HDR + TSO4 from the kernel, split here */
  int udp_gso;              /* send TSO segments as one UDP_SEGMENT train */
  int gro;                  /* coalesce received TCP segments (needs offload) */
  int udp_gro;              /* receive datagram trains whole (UDP_GRO) */
  int sockbuf;              /* SO_SNDBUF / SO_RCVBUF bytes, 0 = default */
  int batch;                /* packets per wake-up, 1..256 */
};

struct weft_dp {
  struct weft_dp_opts o;
  char ifname[IFNAMSIZ]; /* actual name */
  int tun_fd, sock_fd, stop_fd;
  volatile int stopping;
  int tun_dead; /* the TUN read side failed for good (device deleted) */
  int threads_started;
  pthread_t tx_thread, rx_thread;
  pthread_rwlock_t lock;
  struct weft_table *table; /* guarded by lock; swapped whole */
  uint64_t counters[WC_COUNT];
  uint64_t rx_drops[WEFT_VERDICT_COUNT]; /* received from peers */
  uint64_t tx_drops[WEFT_VERDICT_COUNT]; /* read from the TUN */
};

/* Opens the device and socket and starts the threads. On failure returns
 * NULL and writes a message (what failed and errno text) into err. */
struct weft_dp *weft_dp_open(const struct weft_dp_opts *o, char *err, size_t errlen);
/* Replaces the peer table (takes ownership of t). */
void weft_dp_set_table(struct weft_dp *dp, struct weft_table *t);
/* Stops the threads, closes fds (the TUN device disappears), frees. */
void weft_dp_close(struct weft_dp *dp);

#endif
