#ifndef WEFT_NFTLIST_H
#define WEFT_NFTLIST_H

#include <stddef.h>

/* A growable list of names (NUL-terminated, heap-allocated). */
struct weft_names {
  char **v;
  size_t n, cap;
};

void weft_names_free(struct weft_names *l);

/*
 * Names of the chains and sets of one nftables table, dumped over
 * NETLINK_NETFILTER (what `nft list chains; list sets` prints, without a
 * process). `netns` is a name under /var/run/netns or "" for the caller's
 * namespace; the dump then runs on a short-lived thread that setns()s.
 * Returns 0, or -1 with a message in err.
 */
int weft_nft_list(const char *netns, int family, const char *table, struct weft_names *chains, struct weft_names *sets,
                  char *err, size_t errlen);

#endif
