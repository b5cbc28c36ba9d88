/*
 * N-API surface of weft_native:
 *   open(opts) -> handle, setPeers(handle, peers, ownNet, ownPrefixLen),
 *   stats(handle) -> {counters, rxDrops, txDrops}, info(handle), close(handle)
 * and pure test entry points over packet.c / peers.c:
 *   checkIpv4(buf), classify(peers, ownNet, ownPlen, srcIp, buf), route(peers, dst),
 *   ttlDecrement(buf), icmpNetUnreachable(buf, src), finishCsum(buf, start, off),
 *   tsoSegment(buf, gsoSize), verdicts, counterNames,
 * and pipe() -> [readFd, writeFd]: a real pipe (libuv gives children socket
 * pairs, which a child cannot reopen by path as /dev/fd/0);
 * nftList(netns, family, table) -> Promise<{chains, sets}>: names in one
 * nftables table, dumped over netlink on a worker thread (nftlist.c).
 * Addresses cross the boundary as unsigned 32-bit numbers in host order
 * (the same representation as src/core/ip.ts).
 * tryFlock(fd) -> bool and flockAsync(fd) -> Promise: host-local's flock(2)
 * on <dataDir>/<network>/lock (the CNI IPAM), without and with waiting.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datapath.h"
#include "packet.h"
#include "nftlist.h"
#include "peers.h"

#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(call)                                  \
  do {                                               \
    if ((call) != napi_ok) {                         \
      napi_throw_error(env, NULL, "napi: " #call);   \
      return NULL;                                   \
    }                                                \
  } while (0)

#define THROW(code, msg)                     \
  do {                                       \
    napi_throw_error(env, code, msg);        \
    return NULL;                             \
  } while (0)

struct handle {
  struct weft_dp *dp;
};

static napi_value undef(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

static int get_prop(napi_env env, napi_value obj, const char *name, napi_value *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return 0;
  if (napi_get_named_property(env, obj, name, out) != napi_ok) return 0;
  napi_valuetype t;
  napi_typeof(env, *out, &t);
  return t != napi_undefined && t != napi_null;
}

static int get_u32(napi_env env, napi_value obj, const char *name, uint32_t *out) {
  napi_value v;
  if (!get_prop(env, obj, name, &v)) return 0;
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 4294967295.0) return -1;
  *out = (uint32_t)d;
  return 1;
}

static int get_str(napi_env env, napi_value obj, const char *name, char *buf, size_t len) {
  napi_value v;
  if (!get_prop(env, obj, name, &v)) return 0;
  size_t n;
  if (napi_get_value_string_utf8(env, v, buf, len, &n) != napi_ok) return -1;
  return n < len - 1 ? 1 : -1;
}

static napi_value num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

static napi_value str(napi_env env, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

static struct handle *get_handle(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct handle *h = data;
  if (h->dp) weft_dp_close(h->dp);
  free(h);
}

/* Reads [{net, prefixLen, ip, port}] into a malloc'd array; -1 on bad input. */
static int read_peers(napi_env env, napi_value arr, struct weft_peer **out, size_t *n_out) {
  bool is_arr = false;
  napi_is_array(env, arr, &is_arr);
  if (!is_arr) return -1;
  uint32_t n = 0;
  napi_get_array_length(env, arr, &n);
  struct weft_peer *peers = calloc(n ? n : 1, sizeof(*peers));
  if (!peers) return -1;
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    napi_get_element(env, arr, i, &e);
    uint32_t net = 0, plen = 0, ip = 0, port = 0;
    if (get_u32(env, e, "net", &net) != 1 || get_u32(env, e, "prefixLen", &plen) != 1 ||
        get_u32(env, e, "ip", &ip) != 1 || get_u32(env, e, "port", &port) != 1 || plen > 32 || port > 65535) {
      free(peers);
      return -1;
    }
    peers[i].net = net;
    peers[i].plen = (uint8_t)plen;
    peers[i].ip = ip;
    peers[i].port = (uint16_t)port;
  }
  *out = peers;
  *n_out = n;
  return 0;
}

static struct weft_table *table_from_js(napi_env env, napi_value arr, napi_value own_net, napi_value own_plen) {
  struct weft_peer *peers;
  size_t n;
  if (read_peers(env, arr, &peers, &n) < 0) return NULL;
  uint32_t net = 0, plen = 0;
  napi_get_value_uint32(env, own_net, &net);
  napi_get_value_uint32(env, own_plen, &plen);
  if (plen > 32) plen = 32;
  struct weft_table *t = weft_table_new(peers, n, net, (uint8_t)plen);
  free(peers);
  return t;
}

static int get_buffer(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is = false;
  napi_is_buffer(env, v, &is);
  if (!is) return 0;
  void *d;
  if (napi_get_buffer_info(env, v, &d, len) != napi_ok) return 0;
  *data = d;
  return 1;
}

/* ------------------------------------------------------------ datapath */

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) THROW("ERR_INVALID_ARGUMENT", "open(opts) needs an options object");
  struct weft_dp_opts o;
  memset(&o, 0, sizeof(o));
  o.batch = 64;
  uint32_t u;
  if (get_str(env, argv[0], "netns", o.netns, sizeof(o.netns)) < 0) THROW("ERR_INVALID_ARGUMENT", "netns");
  if (strchr(o.netns, '/') || strcmp(o.netns, ".") == 0 || strcmp(o.netns, "..") == 0)
    THROW("ERR_INVALID_ARGUMENT", "netns must be a plain name");
  if (get_str(env, argv[0], "ifname", o.ifname, sizeof(o.ifname)) != 1) THROW("ERR_INVALID_ARGUMENT", "ifname");
  if (get_u32(env, argv[0], "mtu", &u) != 1 || u < 68 || u > 65535) THROW("ERR_INVALID_ARGUMENT", "mtu");
  o.mtu = (int)u;
  if (get_u32(env, argv[0], "port", &u) != 1 || u > 65535) THROW("ERR_INVALID_ARGUMENT", "port");
  o.port = (uint16_t)u;
  if (get_u32(env, argv[0], "bindIp", &o.bind_ip) < 0) THROW("ERR_INVALID_ARGUMENT", "bindIp");
  if (get_u32(env, argv[0], "tunAddr", &o.tun_addr) < 0) THROW("ERR_INVALID_ARGUMENT", "tunAddr");
  if (get_u32(env, argv[0], "txqlen", &u) == 1) o.txqlen = (int)u;
  if (get_u32(env, argv[0], "sockbuf", &u) == 1) o.sockbuf = (int)u;
  if (get_u32(env, argv[0], "batch", &u) == 1) o.batch = (int)u;
  if (get_u32(env, argv[0], "offload", &u) == 1) o.offload = u != 0;
  if (get_u32(env, argv[0], "udpGso", &u) == 1) o.udp_gso = u != 0;
  if (get_u32(env, argv[0], "gro", &u) == 1) o.gro = u != 0;
  if (get_u32(env, argv[0], "udpGro", &u) == 1) o.udp_gro = u != 0;

  char err[300];
  struct weft_dp *dp = weft_dp_open(&o, err, sizeof(err));
  if (!dp) THROW("ERR_UDP_DATAPATH", err);
  struct handle *h = calloc(1, sizeof(*h));
  if (!h) {
    weft_dp_close(dp);
    THROW("ERR_UDP_DATAPATH", "out of memory");
  }
  h->dp = dp;
  napi_value ext;
  if (napi_create_external(env, h, finalize, NULL, &ext) != napi_ok) {
    weft_dp_close(dp);
    free(h);
    THROW("ERR_UDP_DATAPATH", "napi_create_external");
  }
  return ext;
}

static napi_value js_set_peers(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) THROW("ERR_INVALID_ARGUMENT", "setPeers(handle, peers, ownNet, ownPrefixLen)");
  struct handle *h = get_handle(env, argv[0]);
  if (!h || !h->dp) THROW("ERR_UDP_DATAPATH", "data path is closed");
  struct weft_table *t = table_from_js(env, argv[1], argv[2], argv[3]);
  if (!t) THROW("ERR_INVALID_ARGUMENT", "peers: expected [{net, prefixLen, ip, port}]");
  weft_dp_set_table(h->dp, t);
  return undef(env);
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct handle *h = argc ? get_handle(env, argv[0]) : NULL;
  if (!h || !h->dp) THROW("ERR_UDP_DATAPATH", "data path is closed");
  napi_value out, counters, rx, tx;
  napi_create_object(env, &out);
  napi_create_object(env, &counters);
  napi_create_object(env, &rx);
  napi_create_object(env, &tx);
  for (int i = 0; i < WC_COUNT; i++)
    napi_set_named_property(env, counters, weft_counter_names[i],
                            num(env, (double)__atomic_load_n(&h->dp->counters[i], __ATOMIC_RELAXED)));
  for (int i = 1; i < WEFT_VERDICT_COUNT; i++) {
    napi_set_named_property(env, rx, weft_verdict_name(i),
                            num(env, (double)__atomic_load_n(&h->dp->rx_drops[i], __ATOMIC_RELAXED)));
    napi_set_named_property(env, tx, weft_verdict_name(i),
                            num(env, (double)__atomic_load_n(&h->dp->tx_drops[i], __ATOMIC_RELAXED)));
  }
  napi_set_named_property(env, out, "counters", counters);
  napi_set_named_property(env, out, "rxDrops", rx);
  napi_set_named_property(env, out, "txDrops", tx);
  return out;
}

static napi_value js_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct handle *h = argc ? get_handle(env, argv[0]) : NULL;
  if (!h || !h->dp) THROW("ERR_UDP_DATAPATH", "data path is closed");
  napi_value out;
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "ifname", str(env, h->dp->ifname));
  napi_set_named_property(env, out, "offload", num(env, h->dp->o.offload));
  napi_set_named_property(env, out, "batch", num(env, h->dp->o.batch));
  napi_value dead;
  napi_get_boolean(env, __atomic_load_n(&h->dp->tun_dead, __ATOMIC_RELAXED) != 0, &dead);
  napi_set_named_property(env, out, "tunDead", dead);
  return out;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct handle *h = argc ? get_handle(env, argv[0]) : NULL;
  if (h && h->dp) {
    weft_dp_close(h->dp);
    h->dp = NULL;
  }
  return undef(env);
}

/* ------------------------------------------------------ test entries */

static napi_value js_check_ipv4(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *d;
  size_t len;
  if (argc < 1 || !get_buffer(env, argv[0], &d, &len)) THROW("ERR_INVALID_ARGUMENT", "checkIpv4(buffer)");
  return str(env, weft_verdict_name(weft_check_ipv4(d, len)));
}

static napi_value js_classify(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *d;
  size_t len;
  uint32_t src;
  if (argc < 5 || !get_buffer(env, argv[4], &d, &len) || napi_get_value_uint32(env, argv[3], &src) != napi_ok)
    THROW("ERR_INVALID_ARGUMENT", "classify(peers, ownNet, ownPrefixLen, srcIp, buffer)");
  struct weft_table *t = table_from_js(env, argv[0], argv[1], argv[2]);
  if (!t) THROW("ERR_INVALID_ARGUMENT", "peers");
  int v = weft_classify_rx(t, src, d, len);
  weft_table_free(t);
  return str(env, weft_verdict_name(v));
}

static napi_value js_route(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t dst;
  if (argc < 2 || napi_get_value_uint32(env, argv[1], &dst) != napi_ok) THROW("ERR_INVALID_ARGUMENT", "route(peers, dst)");
  napi_value zero;
  napi_create_uint32(env, 0, &zero);
  struct weft_table *t = table_from_js(env, argv[0], zero, zero);
  if (!t) THROW("ERR_INVALID_ARGUMENT", "peers");
  const struct weft_peer *p = weft_table_route(t, dst);
  napi_value out;
  if (p) {
    napi_create_object(env, &out);
    napi_set_named_property(env, out, "net", num(env, p->net));
    napi_set_named_property(env, out, "prefixLen", num(env, p->plen));
    napi_set_named_property(env, out, "ip", num(env, p->ip));
    napi_set_named_property(env, out, "port", num(env, p->port));
  } else {
    napi_get_null(env, &out);
  }
  weft_table_free(t);
  return out;
}

static napi_value js_ttl_decrement(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *d;
  size_t len;
  if (argc < 1 || !get_buffer(env, argv[0], &d, &len) || len < 20) THROW("ERR_INVALID_ARGUMENT", "ttlDecrement(buffer >= 20 bytes)");
  napi_value out;
  napi_get_boolean(env, weft_ttl_decrement(d) != 0, &out);
  return out;
}

static napi_value copy_buffer(napi_env env, const uint8_t *d, size_t len) {
  napi_value out;
  void *dst;
  if (napi_create_buffer_copy(env, len, d, &dst, &out) != napi_ok) return NULL;
  return out;
}

static napi_value js_icmp(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *d;
  size_t len;
  uint32_t src;
  if (argc < 2 || !get_buffer(env, argv[0], &d, &len) || napi_get_value_uint32(env, argv[1], &src) != napi_ok)
    THROW("ERR_INVALID_ARGUMENT", "icmpNetUnreachable(buffer, srcIp)");
  uint8_t out[128];
  size_t n = weft_icmp_net_unreachable(d, len, src, out);
  if (!n) {
    napi_value v;
    napi_get_null(env, &v);
    return v;
  }
  return copy_buffer(env, out, n);
}

static napi_value js_finish_csum(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *d;
  size_t len;
  uint32_t start, off;
  if (argc < 3 || !get_buffer(env, argv[0], &d, &len) || napi_get_value_uint32(env, argv[1], &start) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &off) != napi_ok || start > 65535 || off > 65535)
    THROW("ERR_INVALID_ARGUMENT", "finishCsum(buffer, csumStart, csumOffset)");
  napi_value out;
  napi_get_boolean(env, weft_finish_csum(d, len, (uint16_t)start, (uint16_t)off) != 0, &out);
  return out;
}

static napi_value js_tso_segment(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *d;
  size_t len;
  uint32_t gso;
  if (argc < 2 || !get_buffer(env, argv[0], &d, &len) || napi_get_value_uint32(env, argv[1], &gso) != napi_ok ||
      gso > 65535)
    THROW("ERR_INVALID_ARGUMENT", "tsoSegment(buffer, gsoSize)");
  struct weft_vnet_hdr h = {.flags = WEFT_VNET_F_NEEDS_CSUM, .gso_type = WEFT_VNET_GSO_TCPV4, .gso_size = (uint16_t)gso};
  size_t cap = 2 * 65536 + 2 * len;
  uint8_t *out = malloc(cap);
  if (!out) THROW("ERR_UDP_DATAPATH", "out of memory");
  size_t stride = 0, last = 0;
  int n = weft_tso_segment(d, len, &h, out, cap, &stride, &last);
  napi_value arr;
  if (n < 0) {
    free(out);
    napi_get_null(env, &arr);
    return arr;
  }
  napi_create_array_with_length(env, (size_t)n, &arr);
  for (int i = 0; i < n; i++) {
    napi_value b = copy_buffer(env, out + (size_t)i * stride, i + 1 == n ? last : stride);
    if (!b) {
      free(out);
      THROW("ERR_UDP_DATAPATH", "buffer");
    }
    napi_set_element(env, arr, (uint32_t)i, b);
  }
  free(out);
  return arr;
}

/* groCoalesce([buf...]) -> [{gsoSize, segments, packet}] as the receive
 * thread would write them to the TUN (gsoSize 0 = plain packet). */
static napi_value js_gro(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool is_arr = false;
  if (argc < 1 || napi_is_array(env, argv[0], &is_arr) != napi_ok || !is_arr) THROW("ERR_INVALID_ARGUMENT", "groCoalesce(buffers)");
  uint32_t n = 0;
  napi_get_array_length(env, argv[0], &n);
  struct weft_gro g = {.cap = 65535};
  g.buf = malloc(WEFT_VNET_HDR_LEN + 65535);
  if (!g.buf) THROW("ERR_UDP_DATAPATH", "out of memory");
  napi_value out;
  napi_create_array(env, &out);
  uint32_t nout = 0;
  int run = 0;
#define EMIT_RUN()                                                                          \
  do {                                                                                      \
    size_t total = weft_gro_finish(&g);                                                     \
    struct weft_vnet_hdr vh;                                                                \
    memcpy(&vh, g.buf, sizeof(vh));                                                         \
    napi_value o;                                                                           \
    napi_create_object(env, &o);                                                            \
    napi_set_named_property(env, o, "gsoSize", num(env, vh.gso_type ? vh.gso_size : 0));    \
    napi_set_named_property(env, o, "segments", num(env, g.nseg));                          \
    napi_set_named_property(env, o, "packet", copy_buffer(env, g.buf + WEFT_VNET_HDR_LEN, total - WEFT_VNET_HDR_LEN)); \
    napi_set_element(env, out, nout++, o);                                                  \
  } while (0)
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    napi_get_element(env, argv[0], i, &e);
    uint8_t *d;
    size_t len;
    if (!get_buffer(env, e, &d, &len)) {
      free(g.buf);
      THROW("ERR_INVALID_ARGUMENT", "groCoalesce: not a buffer");
    }
    if (weft_gro_eligible(d, len)) {
      if (run && weft_gro_append(&g, d, len)) continue;
      if (run) EMIT_RUN();
      run = weft_gro_start(&g, d, len);
      if (run) continue;
    } else if (run) {
      EMIT_RUN();
      run = 0;
    }
    napi_value o;
    napi_create_object(env, &o);
    napi_set_named_property(env, o, "gsoSize", num(env, 0));
    napi_set_named_property(env, o, "segments", num(env, 1));
    napi_set_named_property(env, o, "packet", copy_buffer(env, d, len));
    napi_set_element(env, out, nout++, o);
  }
  if (run) EMIT_RUN();
#undef EMIT_RUN
  free(g.buf);
  return out;
}

/* ------------------------------------------------------------ pipe */

/* Both ends close-on-exec: spawn() dup2()s the read end onto the child's fd 0, which clears it there. */
static napi_value js_pipe(napi_env env, napi_callback_info info) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    char msg[96];
    snprintf(msg, sizeof msg, "pipe2: %s", strerror(errno));
    THROW("ERR_PIPE", msg);
  }
  napi_value out;
  CHECK(napi_create_array_with_length(env, 2, &out));
  napi_set_element(env, out, 0, num(env, fds[0]));
  napi_set_element(env, out, 1, num(env, fds[1]));
  return out;
}

/* The one argument of the fd-taking exports: a non-negative int32. */
static bool fd_arg(napi_env env, napi_callback_info info, int32_t *fd) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return false;
  return napi_get_value_int32(env, argv[0], fd) == napi_ok && *fd >= 0;
}

/* ------------------------------------------------------------ peerCred */

/* getsockopt(fd, SO_PEERCRED) of an accepted unix socket: [pid, uid, gid] of
 * the process that connected (Node has no API for it; the CNI server refuses
 * callers that are neither root nor its own user). */
static napi_value js_peer_cred(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, &fd)) THROW("ERR_INVALID_ARGUMENT", "peerCred(fd)");
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    char msg[96];
    snprintf(msg, sizeof msg, "getsockopt SO_PEERCRED: %s", strerror(errno));
    THROW("ERR_PEERCRED", msg);
  }
  napi_value out;
  CHECK(napi_create_array_with_length(env, 3, &out));
  napi_set_element(env, out, 0, num(env, cred.pid));
  napi_set_element(env, out, 1, num(env, cred.uid));
  napi_set_element(env, out, 2, num(env, cred.gid));
  return out;
}

/* ------------------------------------------------------------ flock */

/* flock(fd, LOCK_EX | LOCK_NB): true when taken, false when another open file
 * holds it (then wait with flockAsync). Never blocks the event loop. The
 * lock goes with the last close of the file (host-local's lock, shared with it). */
static napi_value js_try_flock(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, &fd)) THROW("ERR_INVALID_ARGUMENT", "tryFlock(fd)");
  int r;
  do {
    r = flock(fd, LOCK_EX | LOCK_NB);
  } while (r != 0 && errno == EINTR);
  napi_value out;
  if (r == 0) {
    napi_get_boolean(env, true, &out);
    return out;
  }
  if (errno == EWOULDBLOCK) {
    napi_get_boolean(env, false, &out);
    return out;
  }
  char msg[96];
  snprintf(msg, sizeof msg, "flock: %s", strerror(errno));
  THROW("ERR_FLOCK", msg);
}

/* flockAsync(fd) -> Promise<void>: flock(fd, LOCK_EX), blocking, on a libuv
 * worker thread (napi async work = uv_queue_work), so the caller waits in the
 * kernel as host-local does while the event loop (weftd's) keeps running. No
 * timeout: a holder that never lets go is waited for, like host-local. The fd
 * must stay open until the promise settles. */
struct flock_work {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int err;
};

static void flock_execute(napi_env env, void *data) {
  struct flock_work *w = data;
  int r;
  do {
    r = flock(w->fd, LOCK_EX);
  } while (r != 0 && errno == EINTR);
  w->err = r == 0 ? 0 : errno;
}

static void flock_complete(napi_env env, napi_status status, void *data) {
  struct flock_work *w = data;
  if (status == napi_ok && w->err == 0) {
    napi_resolve_deferred(env, w->deferred, undef(env));
  } else {
    char buf[96];
    snprintf(buf, sizeof buf, "flock: %s", status == napi_ok ? strerror(w->err) : "cancelled");
    napi_value msg, code, e;
    napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, "ERR_FLOCK", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, msg, &e);
    napi_reject_deferred(env, w->deferred, e);
  }
  napi_delete_async_work(env, w->work);
  free(w);
}

static napi_value js_flock_async(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, &fd)) THROW("ERR_INVALID_ARGUMENT", "flockAsync(fd)");
  struct flock_work *w = calloc(1, sizeof(*w));
  if (!w) THROW("ERR_NO_MEMORY", "flockAsync");
  w->fd = fd;
  napi_value promise, name;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "weft.flock", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, flock_execute, flock_complete, w, &w->work) != napi_ok) {
    free(w);
    THROW("ERR_FLOCK", "flockAsync: cannot queue the work");
  }
  if (napi_queue_async_work(env, w->work) != napi_ok) {
    napi_delete_async_work(env, w->work);
    free(w);
    THROW("ERR_FLOCK", "flockAsync: cannot queue the work");
  }
  return promise;
}

/* ------------------------------------------------------------ nftList */

struct nft_list_work {
  napi_async_work work;
  napi_deferred deferred;
  char netns[256];
  char table[256];
  int family;
  struct weft_names chains, sets;
  char err[256];
  int rc;
};

static void nft_list_execute(napi_env env, void *data) {
  struct nft_list_work *w = data;
  w->rc = weft_nft_list(w->netns, w->family, w->table, &w->chains, &w->sets, w->err, sizeof(w->err));
}

static napi_value names_array(napi_env env, const struct weft_names *l) {
  napi_value a;
  napi_create_array_with_length(env, l->n, &a);
  for (size_t i = 0; i < l->n; i++) napi_set_element(env, a, (uint32_t)i, str(env, l->v[i]));
  return a;
}

static void nft_list_complete(napi_env env, napi_status status, void *data) {
  struct nft_list_work *w = data;
  if (status == napi_ok && w->rc == 0) {
    napi_value o;
    napi_create_object(env, &o);
    napi_set_named_property(env, o, "chains", names_array(env, &w->chains));
    napi_set_named_property(env, o, "sets", names_array(env, &w->sets));
    napi_resolve_deferred(env, w->deferred, o);
  } else {
    napi_value msg, e;
    napi_create_string_utf8(env, status == napi_ok ? w->err : "nftList cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &e);
    napi_reject_deferred(env, w->deferred, e);
  }
  napi_delete_async_work(env, w->work);
  weft_names_free(&w->chains);
  weft_names_free(&w->sets);
  free(w);
}

static napi_value js_nft_list(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct nft_list_work *w = calloc(1, sizeof(*w));
  if (!w) THROW("ERR_NO_MEMORY", "nftList");
  size_t len;
  uint32_t family;
  if (argc < 3 || napi_get_value_string_utf8(env, argv[0], w->netns, sizeof(w->netns), &len) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &family) != napi_ok ||
      napi_get_value_string_utf8(env, argv[2], w->table, sizeof(w->table), &len) != napi_ok) {
    free(w);
    THROW("ERR_INVALID_ARGUMENT", "nftList(netns, family, table)");
  }
  if (strchr(w->netns, '/') || strcmp(w->netns, ".") == 0 || strcmp(w->netns, "..") == 0) {
    free(w);
    THROW("ERR_INVALID_ARGUMENT", "netns must be a plain name");
  }
  w->family = (int)family;
  napi_value promise, name;
  CHECK(napi_create_promise(env, &w->deferred, &promise));
  CHECK(napi_create_string_utf8(env, "weft.nftList", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_async_work(env, NULL, name, nft_list_execute, nft_list_complete, w, &w->work));
  CHECK(napi_queue_async_work(env, w->work));
  return promise;
}

/* ------------------------------------------------------------ module */

/* One exported function (writable, enumerable, configurable like a plain property). */
#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, (napi_property_attributes)(napi_writable | napi_enumerable | napi_configurable), NULL}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
      FN("open", js_open),
      FN("setPeers", js_set_peers),
      FN("stats", js_stats),
      FN("info", js_info),
      FN("close", js_close),
      FN("checkIpv4", js_check_ipv4),
      FN("classify", js_classify),
      FN("route", js_route),
      FN("ttlDecrement", js_ttl_decrement),
      FN("icmpNetUnreachable", js_icmp),
      FN("finishCsum", js_finish_csum),
      FN("groCoalesce", js_gro),
      FN("tsoSegment", js_tso_segment),
      FN("nftList", js_nft_list),
      FN("peerCred", js_peer_cred),
      FN("pipe", js_pipe),
      FN("tryFlock", js_try_flock),
      FN("flockAsync", js_flock_async),
  };
#undef FN
  napi_define_properties(env, exports, sizeof(fns) / sizeof(fns[0]), fns);
  napi_value verdicts, counters;
  napi_create_array(env, &verdicts);
  for (int i = 1; i < WEFT_VERDICT_COUNT; i++) napi_set_element(env, verdicts, (uint32_t)(i - 1), str(env, weft_verdict_name(i)));
  napi_create_array(env, &counters);
  for (int i = 0; i < WC_COUNT; i++) napi_set_element(env, counters, (uint32_t)i, str(env, weft_counter_names[i]));
  napi_set_named_property(env, exports, "verdicts", verdicts);
  napi_set_named_property(env, exports, "counterNames", counters);
  napi_set_named_property(env, exports, "version", str(env, "1"));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
