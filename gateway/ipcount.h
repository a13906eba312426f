/* ipcount: open WebSocket connections per client address, for
 * gateway.max_connections_per_ip.  A small chained hash table of address
 * texts; an address leaves the table when its count drops to zero. */
#ifndef GW_IPCOUNT_H
#define GW_IPCOUNT_H

#include <stddef.h>

struct ipcount;

struct ipcount *ipcount_new(size_t buckets);
void ipcount_free(struct ipcount *t);
/* Adds one connection for addr unless it already has limit; returns 0 or
 * OTA_ERR_LIMIT (or OTA_ERR_NOMEM). */
int ipcount_take(struct ipcount *t, const char *addr, size_t limit);
void ipcount_put(struct ipcount *t, const char *addr);
size_t ipcount_get(const struct ipcount *t, const char *addr);

#endif
