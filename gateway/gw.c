/* gw: the process-wide tables (sessions by id, trusted PROXY peers), the
 * clock and the drain sequence; see gw.h.  The drain is the one place that
 * walks every connection. */
#include "gw.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "listen.h"
#include "log.h"
#include "ota_err.h"
#include "pool.h"
#include "session.h"

#define DRAIN_TICK_MS 100
#define CLOSE_GRACE_MS 2500 /* after the last 1001, for close frames to leave */
/* The session phase of a drain lasts at least this long, so that a client
 * whose upgrade completed just before SIGTERM and whose operation message
 * is on its way still gets its session. */
#define DRAIN_MIN_MS 1000

uint64_t gw_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int gw_session_register(struct gw *g, struct session *s)
{
    if (g->nfree == 0)
        return OTA_ERR_LIMIT;
    uint32_t slot = g->free_slots[--g->nfree];
    do {
        g->gen++;
        s->id = ((uint64_t)g->gen << 32 | slot) ^ g->incarnation;
    } while (g->gen == 0 || s->id == 0); /* 0 means no session on the wire */
    g->slots[slot] = s;
    return 0;
}

void gw_session_unregister(struct gw *g, struct session *s)
{
    uint32_t slot = (uint32_t)(s->id ^ g->incarnation);
    if (slot < g->nslots && g->slots[slot] == s) {
        g->slots[slot] = NULL;
        g->free_slots[g->nfree++] = slot;
    }
}

struct session *gw_session_find(struct gw *g, uint64_t id)
{
    uint32_t slot = (uint32_t)(id ^ g->incarnation);
    if (slot >= g->nslots || !g->slots[slot] || g->slots[slot]->id != id)
        return NULL;
    return g->slots[slot];
}

int gw_proxy_allowed(const struct gw *g, const char *addr)
{
    for (size_t i = 0; i < g->nproxy_from; i++)
        if (strcmp(g->proxy_from[i], addr) == 0)
            return 1;
    return 0;
}

enum { DRAIN_SESSIONS = 1, DRAIN_CLOSING, DRAIN_WORKERS };
static int drain_phase;
static uint64_t phase_deadline_us;
static uint64_t drain_min_us;

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

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw *g = arg;
    uint64_t now = gw_now_us();
    if (drain_phase == DRAIN_SESSIONS &&
        ((g->nsessions == 0 && now >= drain_min_us) || now >= phase_deadline_us)) {
        if (g->nsessions)
            log_warn("drain_timeout", "sessions=%zu", g->nsessions);
        close_all(g);
        drain_phase = DRAIN_CLOSING;
        phase_deadline_us = now + (uint64_t)CLOSE_GRACE_MS * 1000;
    }
    if (drain_phase == DRAIN_CLOSING && (g->nconns == 0 || now >= phase_deadline_us)) {
        drain_phase = DRAIN_WORKERS;
        pool_stop(g->pool, stopped, g);
        return;
    }
    if (drain_phase < DRAIN_WORKERS) {
        struct timeval tv = {0, DRAIN_TICK_MS * 1000};
        evtimer_add(g->ev_drain, &tv);
    }
}

void gw_start_drain(struct gw *g)
{
    uint64_t now = gw_now_us();
    if (g->draining) {
        /* A second signal: cut the wait short. */
        if (drain_phase == DRAIN_SESSIONS)
            phase_deadline_us = now;
        log_info("drain_hurried", "sessions=%zu", g->nsessions);
        return;
    }
    g->draining = 1;
    drain_phase = DRAIN_SESSIONS;
    phase_deadline_us = now + g->set.drain_timeout_ms * 1000;
    log_info("draining", "sessions=%zu connections=%zu timeout_ms=%" PRIu64, g->nsessions,
             g->nconns, g->set.drain_timeout_ms);
    drain_min_us = now + (uint64_t)DRAIN_MIN_MS * 1000;
    /* No new connection (the ports close), but the WebSockets already open
     * are not cut here: one that has not sent its operation yet may still
     * run one session (a connection runs at most one); idle ones are
     * closed with 1001 when the sessions are done. */
    listener_disable(g->pub);
    listener_disable(g->op);
    g->ev_drain = evtimer_new(g->base, drain_tick, g);
    struct timeval tv = {0, 0};
    if (g->ev_drain)
        evtimer_add(g->ev_drain, &tv);
}
