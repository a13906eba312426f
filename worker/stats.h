/* stats: what the worker tells the gateway's /metrics (WIRE_STATS every
 * STATS_MS): database latency and errors (ledger_pg), integrity failures
 * and relay signs (the engine's counts), freezes, and
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
/* A request on its way to the ledger (freezes are counted here). */
void stats_on_request(struct stats *s, const struct ledger_req *req);
/* Draining: no new counting query (the drain waits for the database). */
void stats_stop_counts(struct stats *s);

#endif
