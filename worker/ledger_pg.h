/* ledger_pg: the requests of ledger.h against PostgreSQL, asynchronously.
 *
 * A small pool of non-blocking libpq connections watched by libevent; each
 * connection runs one request (one statement, hence one transaction) at a
 * time, so a slow query holds up only its own session.  Requests wait in a
 * FIFO for a free connection; when they queue up, a connection that comes
 * free sends several at once as one transaction (group commit, see
 * ledger_pg.c).  A connection that dies is reopened with
 * back-off; the requests it had in flight get LEDGER_ST_ERROR (outcome
 * unknown, with db_down set), and so does every request while no connection
 * is usable.  A lease release that could not reach the database is kept
 * and sent again as soon as a connection is usable (money rule 4).  A
 * lease found busy is asked for again a few times within 0.4 s before the
 * answer is BUSY (its holder has usually just ended).  Every
 * connection checks, before its first request, that synchronous_commit is
 * on (docs/PROTOCOL.md section 10, rule 7).  The worker role's statements only: it never
 * runs DDL and never sees codes, only their hashes. */
#ifndef LEDGER_PG_H
#define LEDGER_PG_H

#include <stddef.h>
#include <stdint.h>
#include "ledger.h"

struct event_base;
struct ledger_pg;

#define LEDGER_PG_MAX_CONNS 32
#define LEDGER_PG_MAX_GROUP 32

struct ledger_pg_opts {
    const char *conninfo;        /* db.conninfo */
    unsigned nconns;             /* pool size, 1..LEDGER_PG_MAX_CONNS (0: 4) */
    uint32_t request_timeout_ms; /* no reply by then: ERROR, connection reset (0: 15000) */
    uint32_t backoff_min_ms;     /* first reconnect delay (0: 100) */
    uint32_t backoff_max_ms;     /* doubling up to (0: 1000: back soon after a failover) */
    unsigned group_max;          /* requests sent as one transaction when they queue up
                                  * (group commit), 1..LEDGER_PG_MAX_GROUP; 1: never
                                  * (0: 16) */
    int busy_once;               /* tests: LEASE_ACQUIRE, BEGIN answer BUSY at the first refusal
                                  * (default: asks again 4 times, 100 ms apart) */
};

/* Called once per submitted request, from the event loop (never from inside
 * ledger_pg_submit), with the request's session id and the reply. */
typedef void (*ledger_pg_reply_fn)(void *arg, uint64_t session, const struct ledger_reply *r);

/* Start-up check, synchronous (before the event loop runs): connects once
 * and requires SHOW synchronous_commit to be `on` (or the stricter
 * `remote_apply`).  Returns 0, OTA_ERR_IO (cannot connect; message in err)
 * or OTA_ERR_STATE (the setting is weaker; its value in err). */
int ledger_pg_check(const char *conninfo, char *err, size_t errlen);

/* Starts connecting the pool.  NULL on bad options or no memory. */
struct ledger_pg *ledger_pg_new(struct event_base *base, const struct ledger_pg_opts *o,
                                ledger_pg_reply_fn cb, void *arg);
/* Closes every connection without calling back (shutdown). */
void ledger_pg_free(struct ledger_pg *pg);

/* Queues a request (copied).  Its reply always comes through the callback,
 * exactly once, possibly LEDGER_ST_ERROR. */
void ledger_pg_submit(struct ledger_pg *pg, const struct ledger_req *req);

/* 1 when at least one connection is usable (heartbeat db_ok). */
int ledger_pg_ready(const struct ledger_pg *pg);
/* Requests queued or in flight. */
size_t ledger_pg_pending(const struct ledger_pg *pg);

/* Latency of the ledger requests answered so far, from submit to reply
 * (queueing included: what a session waits), in the buckets of
 * wire_stats_db_bounds_us (per bucket, not cumulative; slower ones only in
 * count).  errors: replies that were LEDGER_ST_ERROR. */
struct ledger_pg_latency {
    uint64_t count, sum_us, errors;
    uint64_t buckets[WIRE_STATS_DB_BUCKETS];
};
void ledger_pg_latency(const struct ledger_pg *pg, struct ledger_pg_latency *out);

/* Group commit so far: groups committed, the requests in them, and
 * groups that failed (their requests were sent again alone). */
struct ledger_pg_groups {
    uint64_t groups, grouped, failed;
};
void ledger_pg_group_stats(const struct ledger_pg *pg, struct ledger_pg_groups *out);

/* Database-wide numbers for ops (schema/091_worker_stats.sql). */
struct ledger_pg_counts {
    uint64_t in_doubt;          /* reserved entries without a final entry */
    uint64_t in_doubt_old;      /* ... reserved more than old_s seconds ago */
    uint64_t in_doubt_oldest_s; /* age of the oldest (0 if none) */
    uint64_t codes_reserved;
    uint64_t cards_frozen;
};
/* NULL when the query failed (no database, timeout, bad answer). */
typedef void (*ledger_pg_counts_fn)(void *arg, const struct ledger_pg_counts *c);
/* Queues one read-only counting query behind the ledger requests; its
 * answer comes through cb from the loop, exactly once.  Not counted in
 * the latency histogram. */
void ledger_pg_counts(struct ledger_pg *pg, uint32_t old_s, ledger_pg_counts_fn cb, void *arg);

#endif
