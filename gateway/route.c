/* route: the ROUTER socket between the gateway and its workers; see
 * pool_int.h.  A local worker is known by the pid we started and the
 * routing id its READY frame came from; frames from any other peer are
 * dropped, and a worker may only speak for sessions pinned to it (the
 * owner checks that through pool_io.session_frame).  A READY that carries
 * a User-Id (set by remote.c's ZAP handler for CurveZMQ peers only) is a
 * remote worker's and can never take a local worker's slot.
 *
 * ZMQ_FD is edge-triggered: every wake-up receives until a receive finds
 * nothing (EAGAIN), and every send re-arms the check because a send can
 * consume the edge. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zmq.h>

#include "curve_key.h"
#include "gw.h"
#include "log.h"
#include "ota_err.h"
#include "pool_int.h"
#include "wire.h"

static void zmq_poke(struct pool *p)
{
    if (p->ev_zmq)
        event_active(p->ev_zmq, EV_READ, 0);
}

static int send_to(struct pool *p, const uint8_t *ident, size_t ilen, const uint8_t *frame,
                   size_t len)
{
    int rc = 0;
    if (zmq_send(p->zsock, ident, ilen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(p->zsock, frame, len, ZMQ_DONTWAIT) < 0)
        rc = errno == EAGAIN ? OTA_ERR_LIMIT : OTA_ERR_IO;
    zmq_poke(p);
    return rc;
}

int pool_send(struct pool *p, struct worker *w, const uint8_t *frame, size_t len)
{
    if (!w || w->state != WK_LIVE)
        return OTA_ERR_STATE;
    return send_to(p, w->ident, w->ident_len, frame, len);
}

static struct worker *by_ident(struct pool *p, const uint8_t *id, size_t n)
{
    for (unsigned i = 0; i < p->n + p->nremote; i++) {
        struct worker *w = &p->w[i];
        if ((w->state == WK_LIVE || w->state == WK_STOPPING) && w->ident_len == n &&
            memcmp(w->ident, id, n) == 0)
            return w;
    }
    return NULL;
}

/* Heartbeats carry our incarnation; a worker that just said READY gets
 * one at once, before any OPEN (a remote worker drops the sessions of the
 * gateway it knew before us). */
void route_heartbeat(struct pool *p, struct worker *w)
{
    uint8_t frame[WIRE_MAX_FRAME];
    struct wire_heartbeat hb = {.draining = (uint8_t)p->gw->draining,
                                .gateway = p->gw->incarnation};
    int n = wire_encode_heartbeat(frame, sizeof frame, &hb);
    if (n > 0 && w->ident_len)
        send_to(p, w->ident, w->ident_len, frame, (size_t)n);
}

void route_sessions_lost(struct worker *w)
{
    struct pool_link *l;
    while ((l = TAILQ_FIRST(&w->sessions)) != NULL) {
        pool_detach(l);
        w->pool->io->worker_lost(w->pool->io_arg, l);
    }
}

/* A READY over CurveZMQ: the worker with this key and pid again (it
 * reconnected) keeps its slot, else the first free slot. */
static struct worker *on_ready_remote(struct pool *p, const uint8_t *id, size_t idn,
                                      const struct wire_ready *r, const char *key, const char *addr)
{
    struct worker *w = NULL, *free_slot = NULL;
    for (unsigned i = p->n; i < p->n + p->nremote_max; i++) {
        struct worker *c = &p->w[i];
        if (c->state == WK_LIVE && c->remote_pid == r->pid && strcmp(c->key, key) == 0) {
            w = c;
            break;
        }
        if (!free_slot && c->state == WK_STOPPED)
            free_slot = c;
    }
    if (w) {
        log_warn("remote_worker_reconnected", "worker=%u sessions=%" PRIu32, w->id, w->nsessions);
        route_sessions_lost(w);
    } else if (!(w = free_slot)) {
        p->remote_refused++;
        log_error("remote_worker_refused", "addr=%s key=\"%s\" why=no_free_slot", addr, key);
        return NULL;
    }
    if (w->id >= p->n + p->nremote)
        p->nremote = w->id - p->n + 1;
    memcpy(w->ident, id, idn);
    w->ident_len = idn;
    w->capacity = r->capacity;
    memcpy(w->seal_pk, r->seal_pk, sizeof w->seal_pk);
    w->remote_pid = r->pid;
    snprintf(w->key, sizeof w->key, "%s", key);
    snprintf(w->addr, sizeof w->addr, "%s", addr);
    w->state = WK_LIVE;
    w->live_us = w->last_seen_us = gw_now_us();
    w->db_ok = 0; /* until its first heartbeat, as for local workers */
    w->stats_us = 0;
    log_info("remote_worker_ready",
             "worker=%u addr=%s key=\"%s\" pid=%" PRIu32 " capacity=%" PRIu32, w->id, addr, key,
             r->pid, r->capacity);
    return w;
}

static void go_live(struct pool *p, struct worker *w, const uint8_t *id, size_t idn,
                    uint32_t capacity, const uint8_t *seal_pk)
{
    memcpy(w->ident, id, idn);
    w->ident_len = idn;
    w->capacity = capacity;
    memcpy(w->seal_pk, seal_pk, sizeof w->seal_pk);
    w->state = WK_LIVE;
    w->live_us = w->last_seen_us = gw_now_us();
    /* READY comes while the worker's database pool is still connecting:
     * its first heartbeat says when the database is usable. */
    w->db_ok = 0;
    w->stats_us = 0;
    log_info("worker_ready", "worker=%u pid=%ld capacity=%" PRIu32, w->id, (long)w->pid, capacity);
    route_heartbeat(p, w);
}

int route_early_ready(struct pool *p, struct worker *w)
{
    for (unsigned i = 0; i < p->nearly_ready; i++) {
        if (p->early_ready[i].pid != w->pid)
            continue;
        if (w->state == WK_STARTING)
            go_live(p, w, p->early_ready[i].ident, p->early_ready[i].ident_len,
                    p->early_ready[i].capacity, p->early_ready[i].seal_pk);
        p->early_ready[i] = p->early_ready[--p->nearly_ready];
        return 1;
    }
    return 0;
}

static void on_ready(struct pool *p, const uint8_t *id, size_t idn, const struct wire_hdr *h,
                     const uint8_t *f, const char *key, const char *addr)
{
    struct wire_ready r;
    if (wire_decode_ready(h, f, &r) != 0 || idn == 0 || idn > IDENT_MAX) {
        log_warn("bad_worker_frame", "frame=ready");
        return;
    }
    if (key) {
        struct worker *w = on_ready_remote(p, id, idn, &r, key, addr);
        if (w)
            route_heartbeat(p, w);
        return;
    }
    for (unsigned i = 0; i < p->n; i++) {
        struct worker *w = &p->w[i];
        if (w->state == WK_STARTING && w->pid == (pid_t)r.pid) {
            go_live(p, w, id, idn, r.capacity, r.seal_pk);
            return;
        }
    }
    /* The helper may not have reported this pid yet: keep the READY for
     * when it does (the worker will not say it again). */
    for (unsigned i = 0; i < p->n; i++) {
        if (p->w[i].state == WK_STARTING && p->w[i].pid <= 0 && p->nearly_ready < EARLY_EXITS) {
            unsigned k = p->nearly_ready++;
            p->early_ready[k].pid = (pid_t)r.pid;
            p->early_ready[k].capacity = r.capacity;
            memcpy(p->early_ready[k].seal_pk, r.seal_pk, sizeof r.seal_pk);
            memcpy(p->early_ready[k].ident, id, idn);
            p->early_ready[k].ident_len = idn;
            log_info("worker_ready_early", "pid=%" PRIu32, r.pid);
            return;
        }
    }
    log_warn("unknown_worker_refused", "pid=%" PRIu32, r.pid);
}

static void on_frame(struct pool *p, const uint8_t *id, size_t idn, const uint8_t *f, size_t n,
                     const char *key, const char *addr)
{
    struct wire_hdr h;
    if (wire_decode_hdr(f, n, &h) != 0) {
        log_warn("bad_worker_frame", "len=%zu", n);
        return;
    }
    if (h.type == WIRE_READY) {
        on_ready(p, id, idn, &h, f, key, addr);
        return;
    }
    struct worker *w = by_ident(p, id, idn);
    if (!w) {
        log_debug("frame_from_unknown_peer", "type=%u", (unsigned)h.type);
        return;
    }
    w->last_seen_us = gw_now_us();
    switch (h.type) {
    case WIRE_HEARTBEAT: {
        struct wire_heartbeat hb;
        if (wire_decode_heartbeat(&h, f, &hb) == 0) {
            if (w->db_ok != hb.db_ok)
                log_info("worker_db", "worker=%u db_ok=%u", w->id, (unsigned)hb.db_ok);
            w->reported = hb.sessions;
            w->db_ok = hb.db_ok;
        }
        return;
    }
    case WIRE_STATS:
        if (wire_decode_stats(&h, f, &w->stats) == 0)
            w->stats_us = gw_now_us();
        else
            log_warn("bad_worker_frame", "worker=%u frame=stats", w->id);
        return;
    case WIRE_COMMAND:
    case WIRE_COMMANDS:
    case WIRE_MODAL:
    case WIRE_RESULT:
    case WIRE_PHASE:
        p->io->session_frame(p->io_arg, w, &h, f);
        return;
    default:
        log_warn("unexpected_worker_frame", "worker=%u type=%u", w->id, (unsigned)h.type);
        return;
    }
}

static int recv_one(struct pool *p)
{
    zmq_msg_t parts[2];
    int n = 0, more;
    do {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, p->zsock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 2)
            parts[n++] = m;
        else {
            zmq_msg_close(&m);
            n = 3;
        }
    } while (more);
    if (n == 2) {
        /* Set by our ZAP handler for CurveZMQ peers only. */
        const char *key = zmq_msg_gets(&parts[1], "User-Id");
        if (key && !curve_z85_valid(key, strlen(key)))
            key = NULL;
        const char *addr = key ? zmq_msg_gets(&parts[1], "Peer-Address") : NULL;
        on_frame(p, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), zmq_msg_data(&parts[1]),
                 zmq_msg_size(&parts[1]), key, addr ? addr : "?");
    } else if (n > 0)
        log_warn("bad_worker_message", "parts=%d", n);
    for (int i = 0; i < n && i < 2; i++)
        zmq_msg_close(&parts[i]);
    return n > 0;
}

/* ZMQ_FD is edge-triggered: handles messages on the socket until a
 * receive finds none (EAGAIN; libzmq then has taken in its pending
 * commands, so the next message raises the edge again); after ZMQ_BATCH
 * of them, goes on from the loop (ev activated) so one busy socket cannot
 * starve the others.  Receiving until EAGAIN, rather than asking
 * ZMQ_EVENTS before each message, saves a poll() and a getpid() per
 * message. */
void route_drain_socket(struct pool *p, struct event *ev, int (*one)(struct pool *p))
{
    for (int i = 0; i < ZMQ_BATCH; i++)
        if (!one(p))
            return;
    if (ev)
        event_active(ev, EV_READ, 0);
}

void route_on_zmq(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pool *p = arg;
    route_drain_socket(p, p->ev_zmq, recv_one);
}
