/* stats: WIRE_STATS for the gateway's /metrics; see stats.h.  Requests
 * retried after an ERROR count again, which errs on the visible side. */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "engine.h"
#include "ledger_pg.h"
#include "log.h"
#include "shell.h"
#include "wire.h"

/* WIRE_STATS to the gateway, and the database counts behind it. */
#define STATS_MS 5000
/* A counting query unanswered this long is forgotten (a new one may go). */
#define COUNTS_STALE_MS 60000

struct stats {
    unsigned id;
    struct ledger_pg *pg;
    const struct eng_ctx *eng;
    stats_send_fn send;
    void *send_arg;
    struct event *ev;
    int counts_stopped;
    /* What passed through this worker, and the last database counts
     * (counts_at_ms 0: none yet). */
    struct wire_stats st;
    struct ledger_pg_counts counts;
    uint64_t counts_at_ms, counts_asked_ms;
};

void stats_on_request(struct stats *s, const struct ledger_req *req)
{
    /* Integrity failures and the relay signs are the engine's counts
     * (send_stats), taken where it decides them. */
    if (req->type == LEDGER_FREEZE)
        s->st.freezes++;
}

static void send_stats(struct stats *w, uint64_t now)
{
    struct ledger_pg_latency lat;
    ledger_pg_latency(w->pg, &lat);
    w->st.db_count = lat.count;
    w->st.db_sum_us = lat.sum_us;
    w->st.db_errors = lat.errors;
    w->st.integrity_failures = eng_integrity_failures(w->eng);
    eng_signs(w->eng, w->st.signs);
    memcpy(w->st.db_buckets, lat.buckets, sizeof w->st.db_buckets);
    /* Counts older than two rounds missed are not worth showing. */
    w->st.counts_ok = w->counts_at_ms && now - w->counts_at_ms <= COUNTS_STALE_MS;
    if (w->st.counts_ok) {
        w->st.counts_age_ms = (uint32_t)(now - w->counts_at_ms);
        w->st.in_doubt = w->counts.in_doubt;
        w->st.in_doubt_old = w->counts.in_doubt_old;
        w->st.in_doubt_oldest_s = w->counts.in_doubt_oldest_s;
        w->st.codes_reserved = w->counts.codes_reserved;
        w->st.cards_frozen = w->counts.cards_frozen;
    }
    uint8_t frame[WIRE_MAX_FRAME];
    int n = wire_encode_stats(frame, sizeof frame, &w->st);
    if (n < 0 || w->send(w->send_arg, frame, (size_t)n) != 0)
        log_warn("send_failed", "worker=%u frame=stats", w->id);
}

static void on_counts(void *arg, const struct ledger_pg_counts *c)
{
    struct stats *w = arg;
    w->counts_asked_ms = 0;
    if (!c)
        return;
    int first = w->counts_at_ms == 0;
    w->counts = *c;
    w->counts_at_ms = shell_now_ms();
    /* A new worker's first counts go out now, not a round later. */
    if (first)
        send_stats(w, w->counts_at_ms);
}

static void on_stats(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct stats *w = arg;
    uint64_t now = shell_now_ms();
    send_stats(w, now);
    /* The next counts, read while the loop goes on; none while draining
     * (the drain waits for the database to have nothing pending). */
    if (!w->counts_stopped && ledger_pg_ready(w->pg) &&
        (!w->counts_asked_ms || now - w->counts_asked_ms > COUNTS_STALE_MS)) {
        w->counts_asked_ms = now;
        ledger_pg_counts(w->pg, WIRE_STATS_OLD_S, on_counts, w);
    }
}

struct stats *stats_new(struct event_base *base, struct ledger_pg *pg, const struct eng_ctx *eng,
                        unsigned worker_id, stats_send_fn send, void *send_arg)
{
    struct stats *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->id = worker_id;
    s->pg = pg;
    s->eng = eng;
    s->send = send;
    s->send_arg = send_arg;
    s->ev = event_new(base, -1, EV_PERSIST, on_stats, s);
    struct timeval tv = {.tv_sec = STATS_MS / 1000, .tv_usec = (STATS_MS % 1000) * 1000};
    if (!s->ev || event_add(s->ev, &tv) != 0) {
        stats_free(s);
        return NULL;
    }
    return s;
}

void stats_stop_counts(struct stats *s)
{
    if (s)
        s->counts_stopped = 1;
}

void stats_free(struct stats *s)
{
    if (!s)
        return;
    if (s->ev)
        event_free(s->ev);
    free(s);
}
