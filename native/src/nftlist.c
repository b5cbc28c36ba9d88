#define _GNU_SOURCE /* setns */
#include "nftlist.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void weft_names_free(struct weft_names *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof(*l));
}

static int names_add(struct weft_names *l, const char *s) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    char **v = realloc(l->v, cap * sizeof(char *));
    if (!v) return -1;
    l->v = v;
    l->cap = cap;
  }
  if (!(l->v[l->n] = strdup(s))) return -1;
  l->n++;
  return 0;
}

struct job {
  const char *netns;
  int family;
  const char *table;
  struct weft_names *chains, *sets;
  char *err;
  size_t errlen;
  int rc;
};

static int fail(struct job *j, const char *what, int e) {
  snprintf(j->err, j->errlen, "%s: %s", what, strerror(e));
  return -1;
}

/* Attribute `want` of an nf_tables message as a string, or NULL. */
static const char *attr_str(const struct nlmsghdr *h, int want) {
  const char *p = (const char *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(struct nfgenmsg));
  const char *end = (const char *)h + h->nlmsg_len;
  while (p + sizeof(struct nlattr) <= end) {
    const struct nlattr *a = (const struct nlattr *)p;
    if (a->nla_len < sizeof(struct nlattr) || p + a->nla_len > end) return NULL;
    if ((a->nla_type & NLA_TYPE_MASK) == want) {
      const char *s = p + NLA_HDRLEN;
      size_t len = a->nla_len - NLA_HDRLEN;
      return len > 0 && s[len - 1] == '\0' ? s : NULL;
    }
    p += NLA_ALIGN(a->nla_len);
  }
  return NULL;
}

/* One dump (chains or sets); 1 when the kernel interrupted it (a change raced the dump: run it again). */
static int dump(struct job *j, int fd, char *buf, size_t buflen, int msg, int table_attr, int name_attr, struct weft_names *out,
                uint32_t seq) {
  struct {
    struct nlmsghdr h;
    struct nfgenmsg g;
  } req;
  memset(&req, 0, sizeof(req));
  req.h.nlmsg_len = sizeof(req);
  req.h.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | msg;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = seq;
  req.g.nfgen_family = (uint8_t)j->family;
  req.g.version = NFNETLINK_V0;
  if (send(fd, &req, sizeof(req), 0) < 0) return fail(j, "netlink send", errno);
  int interrupted = 0;
  for (;;) {
    ssize_t len = recv(fd, buf, buflen, 0);
    if (len < 0) {
      if (errno == EINTR) continue;
      return fail(j, "netlink recv", errno);
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_flags & NLM_F_DUMP_INTR) interrupted = 1;
      if (h->nlmsg_type == NLMSG_DONE) return interrupted;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        if (e->error == 0) continue;
        return fail(j, msg == NFT_MSG_GETCHAIN ? "dump chains" : "dump sets", -e->error);
      }
      const char *t = attr_str(h, table_attr);
      const char *n = attr_str(h, name_attr);
      if (t && n && strcmp(t, j->table) == 0 && names_add(out, n) < 0) return fail(j, "names", ENOMEM);
    }
  }
}

static void *run(void *arg) {
  struct job *j = arg;
  j->rc = -1;
  if (j->netns[0]) {
    char path[300];
    snprintf(path, sizeof(path), "/var/run/netns/%s", j->netns);
    int nfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nfd < 0) return fail(j, path, errno), NULL;
    int r = setns(nfd, CLONE_NEWNET);
    int e = errno;
    close(nfd);
    if (r < 0) return fail(j, "setns", e), NULL;
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return fail(j, "netlink socket", errno), NULL;
  /* Large enough for any one dump message batch the kernel sends. */
  size_t buflen = 1 << 17;
  char *buf = malloc(buflen);
  if (!buf) return close(fd), fail(j, "buffer", ENOMEM), NULL;
  int rc = 0;
  for (int attempt = 0; attempt < 5; attempt++) {
    weft_names_free(j->chains);
    weft_names_free(j->sets);
    rc = dump(j, fd, buf, buflen, NFT_MSG_GETCHAIN, NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME, j->chains, 2 * attempt + 1);
    if (rc == 0) rc = dump(j, fd, buf, buflen, NFT_MSG_GETSET, NFTA_SET_TABLE, NFTA_SET_NAME, j->sets, 2 * attempt + 2);
    if (rc <= 0) break;
  }
  free(buf);
  close(fd);
  if (rc > 0) fail(j, "dump interrupted 5 times", EAGAIN);
  else if (rc == 0) j->rc = 0;
  return NULL;
}

int weft_nft_list(const char *netns, int family, const char *table, struct weft_names *chains, struct weft_names *sets,
                  char *err, size_t errlen) {
  struct job j = {netns, family, table, chains, sets, err, errlen, -1};
  if (!netns[0]) {
    run(&j);
    return j.rc;
  }
  /* setns() changes only the calling thread: a thread of our own, gone after the dump. */
  pthread_t th;
  if (pthread_create(&th, NULL, run, &j) != 0) {
    snprintf(err, errlen, "pthread_create failed");
    return -1;
  }
  pthread_join(th, NULL);
  return j.rc;
}
