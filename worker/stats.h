/* stats: what the worker tells the gateway's /metrics (WIRE_STATS every
 * STATS_MS): database latency and errors (ledger_pg), integrity failures
 * (the engine's count), freezes and the relay signs seen in its ledger
 * requests and replies, and
 * the ledger's counts (entries in doubt, codes reserved, frozen cards),
 * read in the background.  Sends through the callback it is given. */
#ifndef WORKER_STATS_H
#define WORKER_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "ledger.h"

struct eng_ctx;
struct event_base;
struct ledger_pg;
struct stats;

typedef int (*stats_send_fn)(void *arg, const uint8_t *frame, size_t len);

struct stats *stats_new(struct event_base *base, struct ledger_pg *pg, const struct eng_ctx *eng,
                        unsigned worker_id, stats_send_fn send, void *send_arg);
void stats_free(struct stats *s);
/* What passes to and from the ledger. */
void stats_on_request(struct stats *s, const struct ledger_req *req);
void stats_on_reply(struct stats *s, const struct ledger_reply *r);
/* Draining: no new counting query (the drain waits for the database). */
void stats_stop_counts(struct stats *s);

#endif
