/* drain: the stop sequence in three phases; see drain.h.  Its state lives
 * in struct drain (one per gateway), ticked by its own timer. */
#include "drain.h"

#include <inttypes.h>
#include <stdlib.h>

#include <event2/event.h>

#include "conn.h"
#include "gw.h"
#include "listen.h"
#include "log.h"
#include "pool.h"

#define DRAIN_TICK_MS 100
#define CLOSE_GRACE_MS 2500 /* after the last 1001, for close frames to leave */
/* The session phase of a drain lasts at least this long, so that a client
 * whose upgrade completed just before SIGTERM and whose operation message
 * is on its way still gets its session. */
#define DRAIN_MIN_MS 1000

enum drain_phase { DRAIN_NONE = 0, DRAIN_SESSIONS, DRAIN_CLOSING, DRAIN_WORKERS };

struct drain {
    struct gw *g;
    struct pool *pool;
    struct listener *pub, *op;
    struct event *ev;
    enum drain_phase phase;
    uint64_t phase_deadline_us;
    uint64_t min_us; /* the session phase lasts until then at least */
};

struct drain *drain_new(struct gw *g, struct pool *pool, struct listener *pub, struct listener *op)
{
    struct drain *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->g = g;
    d->pool = pool;
    d->pub = pub;
    d->op = op;
    return d;
}

void drain_free(struct drain *d)
{
    if (!d)
        return;
    if (d->ev)
        event_free(d->ev);
    free(d);
}

static void stopped(void *arg)
{
    struct gw *g = arg;
    log_info("gateway_stopped", "connections=%zu", g->nconns);
    event_base_loopexit(g->base, NULL);
}

static void close_all(struct gw *g)
{
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&g->conns); c; c = next) {
        next = TAILQ_NEXT(c, link);
        conn_drain_one(c, 1);
    }
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct drain *d = arg;
    struct gw *g = d->g;
    uint64_t now = gw_now_us();
    if (d->phase == DRAIN_SESSIONS &&
        ((g->nsessions == 0 && now >= d->min_us) || now >= d->phase_deadline_us)) {
        if (g->nsessions)
            log_warn("drain_timeout", "sessions=%zu", g->nsessions);
        close_all(g);
        d->phase = DRAIN_CLOSING;
        d->phase_deadline_us = now + (uint64_t)CLOSE_GRACE_MS * 1000;
    }
    if (d->phase == DRAIN_CLOSING && (g->nconns == 0 || now >= d->phase_deadline_us)) {
        d->phase = DRAIN_WORKERS;
        pool_stop(d->pool, stopped, g);
        return;
    }
    if (d->phase < DRAIN_WORKERS) {
        struct timeval tv = {0, DRAIN_TICK_MS * 1000};
        evtimer_add(d->ev, &tv);
    }
}

void drain_start(struct drain *d)
{
    struct gw *g = d->g;
    uint64_t now = gw_now_us();
    if (g->draining) {
        /* A second signal: cut the wait short. */
        if (d->phase == DRAIN_SESSIONS)
            d->phase_deadline_us = now;
        log_info("drain_hurried", "sessions=%zu", g->nsessions);
        return;
    }
    g->draining = 1;
    d->phase = DRAIN_SESSIONS;
    d->phase_deadline_us = now + g->set.drain_timeout_ms * 1000;
    log_info("draining", "sessions=%zu connections=%zu timeout_ms=%" PRIu64, g->nsessions,
             g->nconns, g->set.drain_timeout_ms);
    d->min_us = now + (uint64_t)DRAIN_MIN_MS * 1000;
    /* No new connection (the ports close), but the WebSockets already open
     * are not cut here: one that has not sent its operation yet may still
     * run one session (a connection runs at most one); idle ones are
     * closed with 1001 when the sessions are done. */
    listener_disable(d->pub);
    listener_disable(d->op);
    d->ev = evtimer_new(g->base, tick, d);
    struct timeval tv = {0, 0};
    if (d->ev)
        evtimer_add(d->ev, &tv);
}
