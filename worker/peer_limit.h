/* peer_limit: failed attempts per client address in a time window, in
 * memory, with a bounded table.  Used for operator tokens (token_check.c):
 * once an address has `max_failures` failures (attempts still being
 * checked count as failures until they end), its further attempts are
 * refused until the window that began with its first failure is over.
 *
 * The address is the one the load balancer reports (wire_open.peer), never
 * anything the client claims.  The table holds at most `max_peers`
 * addresses; a new one replaces the address whose window started first
 * among those with nothing in flight.  Single-threaded; the caller passes
 * its monotonic clock. */
#ifndef PEER_LIMIT_H
#define PEER_LIMIT_H

#include <stddef.h>
#include <stdint.h>

struct plim;

/* NULL on a zero parameter or out of memory. */
struct plim *plim_new(uint32_t max_failures, uint32_t window_s, size_t max_peers);
void plim_free(struct plim *p);

/* 1 if the address may make an attempt (it is then in flight until
 * plim_end), 0 if it is over its limit. */
int plim_begin(struct plim *p, const char *peer, uint64_t now_ms);
/* The attempt begun by plim_begin ended; failed: it counts. */
void plim_end(struct plim *p, const char *peer, int failed, uint64_t now_ms);

/* For tests: failures counted for the address in its current window. */
uint32_t plim_failures(const struct plim *p, const char *peer, uint64_t now_ms);

#endif
