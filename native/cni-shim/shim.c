/*
 * weft-cni-shim: the `weft` executable a runtime finds in CNI_PATH.
 *
 * Node needs 40-180 ms to start; the reference Go plugins finish an ADD in
 * about 25 ms. So this small program forwards the call (CNI_* variables and
 * stdin) over a unix socket to the long-lived weft CNI server (inside weftd)
 * and relays its answer. When no server answers, it execs the standalone
 * Node plugin instead, which gives the same results, only slower.
 *
 * Environment (all optional):
 *   WEFT_CNI_SOCKET  server socket            (default /run/weft/cni.sock)
 *   WEFT_CNI_BUNDLE  standalone plugin script (default <this exe>-cni.cjs)
 *   WEFT_NODE        node binary              (default /usr/bin/node, else PATH)
 *
 * The server works on the network namespace it runs in, so the shim tells it
 * which one the runtime called from (WEFT_NETNS_ID, the nsfs inode); a server
 * in another namespace (lab hosts share one filesystem) answers "not mine"
 * and the shim falls back to the standalone plugin with the same stdin.
 *
 * Wire format: see src/cni/protocol.ts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;

/* All of buf, retrying on EINTR; `sock` sends with MSG_NOSIGNAL. */
static int put_all(int fd, const void *buf, size_t len, int sock) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = sock ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int write_all(int fd, const void *buf, size_t len) { return put_all(fd, buf, len, 0); }

/* To the server: MSG_NOSIGNAL, so a server that refused the request and closed
 * (too large, too slow) gives EPIPE here instead of killing the shim. */
static int send_all(int fd, const void *buf, size_t len) { return put_all(fd, buf, len, 1); }

static int read_all(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Growable byte buffer. */
struct buf {
  char *data;
  size_t len, cap;
};

static int buf_add(struct buf *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->len + n) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

static void put_u32(char *p, uint32_t v) {
  p[0] = (char)(v >> 24);
  p[1] = (char)(v >> 16);
  p[2] = (char)(v >> 8);
  p[3] = (char)v;
}

static uint32_t get_u32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* No server: run the standalone plugin in this process's place (stdin untouched). */
static void exec_fallback(void) {
  char bundle[4096];
  const char *b = getenv("WEFT_CNI_BUNDLE");
  if (b && *b) {
    snprintf(bundle, sizeof bundle, "%s", b);
  } else {
    char self[4000];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) n = 0;
    self[n] = 0;
    snprintf(bundle, sizeof bundle, "%s-cni.cjs", self);
  }
  const char *node = getenv("WEFT_NODE");
  if (!node || !*node) node = access("/usr/bin/node", X_OK) == 0 ? "/usr/bin/node" : "node";
  char *argv[] = {(char *)"node", bundle, NULL};
  execvp(node, argv);
  /* Not even Node: answer in CNI's error shape so the runtime shows why. */
  printf("{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"weft: no server at the socket and cannot exec %s: %s\"}\n", node,
         strerror(errno));
  exit(1);
}

/* Fallback after stdin was read: hand the bytes to the plugin through a memfd. */
static void exec_fallback_with(const char *data, size_t len) {
  int fd = memfd_create("weft-cni-stdin", 0);
  if (fd < 0 || write_all(fd, data, len) != 0 || lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) < 0) {
    printf("{\"cniVersion\":\"1.0.0\",\"code\":5,\"msg\":\"weft: cannot pass stdin to the standalone plugin: %s\"}\n", strerror(errno));
    exit(1);
  }
  close(fd);
  exec_fallback();
}

/* The server went away mid-call: the state is unknown, so ask for a retry (11). */
static void fail_io(const char *what) {
  printf("{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"weft: %s: %s\"}\n", what, strerror(errno));
  exit(1);
}

int main(void) {
  const char *path = getenv("WEFT_CNI_SOCKET");
  if (!path || !*path) path = "/run/weft/cni.sock";
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa.sun_path) exec_fallback();
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) exec_fallback();

  struct buf req = {0};
  char hdr[8] = {'W', 'C', 'N', '1', 0, 0, 0, 0};
  buf_add(&req, hdr, 8);
  size_t env_start = req.len;
  for (char **e = environ; *e; e++) {
    if (strncmp(*e, "CNI_", 4) != 0) continue;
    if (req.len > env_start) buf_add(&req, "", 1);
    buf_add(&req, *e, strlen(*e));
  }
  struct stat st;
  if (stat("/proc/self/ns/net", &st) == 0) {
    char id[80];
    int n = snprintf(id, sizeof id, "WEFT_NETNS_ID=%lu:%lu", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
    if (req.len > env_start) buf_add(&req, "", 1);
    buf_add(&req, id, (size_t)n);
  }
  put_u32(req.data + 4, (uint32_t)(req.len - env_start));
  size_t len_at = req.len;
  buf_add(&req, hdr, 4);
  char chunk[65536];
  for (;;) {
    ssize_t n = read(0, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (buf_add(&req, chunk, (size_t)n) != 0) fail_io("out of memory");
  }
  put_u32(req.data + len_at, (uint32_t)(req.len - len_at - 4));
  /* A server that stopped reading may still have answered (a CNI error saying why): read it. */
  int sent = send_all(fd, req.data, req.len);
  int send_errno = errno;
  shutdown(fd, SHUT_WR);

  unsigned char head[12];
  if (read_all(fd, head, 12) != 0 || memcmp(head, "WCN1", 4) != 0) {
    if (sent != 0) errno = send_errno;
    fail_io(sent != 0 ? "sending to the weft server" : "reading from the weft server");
  }
  int32_t code = (int32_t)get_u32(head + 4);
  if (code == -2) {
    /* Server in another netns: run the call here instead. */
    close(fd);
    exec_fallback_with(req.data + len_at + 4, req.len - len_at - 4);
  }
  uint32_t out_len = get_u32(head + 8);
  char *out = malloc(out_len + 4);
  if (!out || read_all(fd, out, out_len + 4) != 0) fail_io("reading from the weft server");
  uint32_t err_len = get_u32((unsigned char *)out + out_len);
  char *err = malloc(err_len + 1);
  if (!err || read_all(fd, err, err_len) != 0) fail_io("reading from the weft server");
  write_all(1, out, out_len);
  if (out_len > 0 && out[out_len - 1] != '\n') write_all(1, "\n", 1);
  write_all(2, err, err_len);
  return code;
}
