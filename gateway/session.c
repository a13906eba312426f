/* session: message order and translation for one card session; see
 * session.h.  Client JSON becomes one wire frame per message; worker frames
 * become command / modal / result.  A session ends exactly once: with a
 * result (from the worker or from here) or because the client left, and in
 * both cases its worker is told unless the worker ended it.  The authCode
 * goes into the OPEN frame, sealed to the worker's key, and nowhere else
 * (never a log line). */
#include "session.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "climsg.h"
#include "conn.h"
#include "gw.h"
#include "log.h"
#include "metrics.h"
#include "ota_err.h"
#include "pool.h"
#include "wire.h"

#define PERSONALIZE_REFUSED "personalization is only available on the operator endpoint"

/* Leaves the worker and the session table; tells the worker when it did
 * not end the session itself. */
static void detach(struct session *s, int tell_worker)
{
    struct gw *g = s->ctx->gw;
    if (s->wl.worker) {
        if (tell_worker) {
            uint8_t frame[WIRE_MAX_FRAME];
            int n = wire_encode_empty(frame, sizeof frame, WIRE_CLIENT_GONE, s->id);
            if (n < 0 || pool_send(s->ctx->pool, s->wl.worker, frame, (size_t)n) != 0)
                log_warn("send_failed", "session=%" PRIu64 " frame=client_gone", s->id);
        }
        pool_detach(&s->wl);
    }
    if (s->id) {
        gw_session_unregister(g, s);
        g->nsessions--;
    }
}

static void send_json(struct session *s, char *text)
{
    if (!text) {
        log_error("out_of_memory", "session=%" PRIu64 " what=client_message", s->id);
        return;
    }
    conn_send_text(s->conn, text, strlen(text));
    free(text);
}

static enum met_result met_res(uint8_t status)
{
    return status == WIRE_ST_OK        ? MET_RES_OK
           : status == WIRE_ST_PENDING ? MET_RES_PENDING
                                       : MET_RES_FAILED;
}

/* Sends the result, ends the session and closes with 1000. */
static void finish(struct session *s, const struct wire_result *r, int from_worker)
{
    struct conn *c = s->conn;
    struct gw *g = s->ctx->gw;
    char *text = cm_build_result(r, s->request_id);
    detach(s, !from_worker);
    uint64_t now = gw_now_us();
    met_session_end(&g->met, s->op, met_res(r->status), r->error);
    if (s->t_start_us)
        met_observe(&g->met.session_duration, (double)(now - s->t_start_us) / 1e6);
    log_info("session_result", "session=%" PRIu64 " peer=%s op=%s status=%s error=%s by=%s", s->id,
             c->peer, s->op ? wire_op_name(s->op) : "none", wire_status_name(r->status),
             r->status == WIRE_ST_OK ? "none" : wire_error_name(r->error),
             from_worker ? "worker" : "gateway");
    s->state = SESS_DONE;
    send_json(s, text);
    conn_close(c, 1000, "");
}

/* A result made here: pending if the worker said money is at risk. */
static void fail(struct session *s, uint8_t error)
{
    struct wire_result r;
    memset(&r, 0, sizeof r);
    r.op = s->op;
    r.status = s->wl.worker && s->at_risk ? WIRE_ST_PENDING : WIRE_ST_FAILED;
    r.error = error;
    finish(s, &r, 0);
}

static void bad_request(struct session *s, const char *why)
{
    log_info("bad_request", "session=%" PRIu64 " peer=%s why=\"%s\"", s->id, s->conn->peer, why);
    fail(s, WIRE_E_BAD_REQUEST);
}

static void send_to_worker(struct session *s, const uint8_t *frame, int n, const char *what)
{
    if (n < 0 || pool_send(s->ctx->pool, s->wl.worker, frame, (size_t)n) != 0) {
        log_error("send_failed", "session=%" PRIu64 " frame=%s", s->id, what);
        fail(s, WIRE_E_INTERNAL);
    }
}

static void on_operation(struct session *s, struct cm_msg *m)
{
    struct conn *c = s->conn;
    struct gw *g = s->ctx->gw;
    char tail[8];
    if (s->state != SESS_IDLE) {
        bad_request(s, "a second operation message");
        return;
    }
    s->op = m->op;
    s->batch = m->batch ? m->batch : 1;
    s->request_id = m->request_id;
    m->request_id = NULL;
    s->t_start_us = gw_now_us();
    if (!m->tech_ok) {
        log_info("unsupported_tech", "peer=%s op=%s", c->peer, wire_op_name(m->op));
        fail(s, WIRE_E_UNSUPPORTED_CARD);
        return;
    }
    if (m->op == WIRE_OP_PERSONALIZE && c->listener != WIRE_LISTENER_OPERATOR) {
        log_warn("personalize_refused", "peer=%s uid=%s listener=public", c->peer,
                 log_uid_tail(m->uid, m->uid_len, tail));
        send_json(s, cm_build_modal(PERSONALIZE_REFUSED, strlen(PERSONALIZE_REFUSED)));
        fail(s, WIRE_E_BAD_REQUEST);
        return;
    }
    /* While draining, only connections opened before the drain exist (the
     * listeners are closed), and each runs at most one session: it may
     * start, and the drain waits for it. */
    struct worker *w = pool_pick(s->ctx->pool);
    if (!w) {
        log_warn("no_worker", "peer=%s op=%s", c->peer, wire_op_name(m->op));
        fail(s, WIRE_E_OVERLOADED);
        return;
    }
    if (gw_session_register(g, s) != 0) {
        fail(s, WIRE_E_OVERLOADED);
        return;
    }
    g->nsessions++;
    c->session_id = s->id;
    pool_attach(w, &s->wl);
    s->state = SESS_WAIT_WORKER;

    struct wire_open o;
    memset(&o, 0, sizeof o);
    o.op = m->op;
    o.batch = s->batch;
    o.listener = c->listener;
    o.uid_len = m->uid_len;
    memcpy(o.uid, m->uid, m->uid_len);
    o.authcode_len = m->authcode_len;
    memcpy(o.authcode, m->authcode, m->authcode_len);
    size_t pn = strlen(c->peer);
    o.peer_len = (uint8_t)(pn > WIRE_MAX_PEER ? WIRE_MAX_PEER : pn);
    memcpy(o.peer, c->peer, o.peer_len);
    uint8_t frame[WIRE_MAX_FRAME];
    int n = wire_encode_open(frame, sizeof frame, s->id, &o, pool_worker_seal_pk(w));
    sodium_memzero(&o, sizeof o);
    log_info("session_open", "session=%" PRIu64 " peer=%s listener=%s op=%s uid=%s worker=%u",
             s->id, c->peer, c->listener == WIRE_LISTENER_OPERATOR ? "operator" : "public",
             wire_op_name(m->op), log_uid_tail(m->uid, m->uid_len, tail), pool_worker_id(w));
    /* The frame holds the authCode sealed to w: ZeroMQ's copies of it (its
     * I/O thread's encoder buffer keeps the last frames sent) are not
     * secrets. */
    int rc = n < 0 ? n : pool_send(s->ctx->pool, w, frame, (size_t)n);
    if (rc != 0) {
        log_error("send_failed", "session=%" PRIu64 " frame=open", s->id);
        fail(s, WIRE_E_INTERNAL);
    }
}

static void on_response(struct session *s, const struct cm_msg *m)
{
    if (s->state != SESS_WAIT_CLIENT) {
        bad_request(s, "a response without an outstanding command");
        return;
    }
    if (s->nout != 1) {
        bad_request(s, "a response to a batch of commands (answer with responses)");
        return;
    }
    uint64_t now = gw_now_us();
    met_observe(&s->ctx->gw->met.apdu_roundtrip, (double)(now - s->t_cmd_us) / 1e6);
    s->t_resp_us = now;
    s->state = SESS_WAIT_WORKER;
    s->nout = 0;
    uint8_t frame[WIRE_MAX_FRAME];
    int n = wire_encode_bytes(frame, sizeof frame, WIRE_CARD_RESPONSE, s->id, m->data, m->data_len);
    send_to_worker(s, frame, n, "card_response");
}

/* v2: the answers to the outstanding `commands`, in order, fewer when the
 * client stopped (after an error answer, or with "error" when it lost the
 * card).  The gateway counts them and passes the APDUs on unread. */
static void on_responses(struct session *s, const struct cm_msg *m)
{
    if (s->state != SESS_WAIT_CLIENT || !s->out_v2) {
        bad_request(s, "responses without an outstanding batch of commands");
        return;
    }
    if (m->n_answers > s->nout) {
        bad_request(s, "responses: more answers than commands");
        return;
    }
    uint64_t now = gw_now_us();
    met_observe(&s->ctx->gw->met.apdu_roundtrip, (double)(now - s->t_cmd_us) / 1e6);
    s->t_resp_us = now;
    s->state = SESS_WAIT_WORKER;
    s->nout = 0;
    static struct wire_apdus b; /* 4.8 KB; the gateway is one thread */
    b.n = m->n_answers;
    b.err = m->err_kind;
    memcpy(b.a, m->answers, m->n_answers * sizeof(b.a[0]));
    uint8_t frame[WIRE_MAX_FRAME];
    int n = wire_encode_apdus(frame, sizeof frame, WIRE_CARD_RESPONSES, s->id, &b);
    if (m->err_kind)
        log_info("client_error", "session=%" PRIu64 " kind=%u answers=%u", s->id,
                 (unsigned)m->err_kind, (unsigned)m->n_answers);
    send_to_worker(s, frame, n, "card_responses");
}

static void on_client_error(struct session *s, const struct cm_msg *m)
{
    if (s->state != SESS_WAIT_CLIENT && s->state != SESS_WAIT_WORKER) {
        bad_request(s, "an error message before the operation");
        return;
    }
    s->state = SESS_WAIT_WORKER;
    s->nout = 0;
    log_info("client_error", "session=%" PRIu64 " kind=%u", s->id, (unsigned)m->err_kind);
    struct wire_client_error e = {.kind = m->err_kind};
    uint8_t frame[WIRE_MAX_FRAME];
    int n = wire_encode_client_error(frame, sizeof frame, s->id, &e);
    send_to_worker(s, frame, n, "client_error");
}

static void on_text(void *user, const uint8_t *msg, size_t len)
{
    struct session *s = user;
    if (s->state == SESS_DONE)
        return;
    struct cm_msg m;
    const char *why = NULL;
    if (cm_parse(msg, len, &m, &why) != 0) {
        bad_request(s, why ? why : "malformed message");
        return;
    }
    switch (m.type) {
    case CM_OPERATION:
        on_operation(s, &m);
        break;
    case CM_RESPONSE:
        on_response(s, &m);
        break;
    case CM_ERROR:
        on_client_error(s, &m);
        break;
    case CM_RESPONSES:
        on_responses(s, &m);
        break;
    }
    cm_msg_clear(&m);
}

static void worker_broke(struct session *s, const char *what)
{
    log_error("worker_protocol_error", "session=%" PRIu64 " worker=%u what=%s", s->id,
              s->wl.worker ? pool_worker_id(s->wl.worker) : 0, what);
    fail(s, WIRE_E_INTERNAL);
}

/* Timing of the gateway's and worker's share of an exchange. */
static void commands_sent(struct session *s)
{
    s->t_cmd_us = gw_now_us();
    if (s->t_resp_us) {
        met_observe(&s->ctx->gw->met.exchange_added, (double)(s->t_cmd_us - s->t_resp_us) / 1e6);
        s->t_resp_us = 0;
    }
}

/* A session frame from worker w: only for a session pinned to w. */
static void on_worker_frame(void *arg, struct worker *w, const struct wire_hdr *h,
                            const uint8_t *frame)
{
    struct sess_ctx *ctx = arg;
    struct session *s = gw_session_find(ctx->gw, h->session);
    if (!s || s->wl.worker != w) {
        log_debug("frame_for_unknown_session", "worker=%u session=%" PRIu64 " type=%u",
                  pool_worker_id(w), h->session, (unsigned)h->type);
        return;
    }
    struct wire_bytes b;
    if (s->state == SESS_DONE || s->state == SESS_IDLE || s->conn->state != CONN_WS)
        return;
    switch (h->type) {
    case WIRE_COMMAND: {
        if (wire_decode_bytes(h, frame, &b) != 0) {
            worker_broke(s, "bad_command");
            return;
        }
        if (s->state != SESS_WAIT_WORKER) {
            worker_broke(s, "second_outstanding_command");
            return;
        }
        /* One per exchange: formatted on the stack, never allocated. */
        char text[CM_COMMAND_MAX];
        int tn = cm_format_command(b.data, b.len, text, sizeof text);
        if (tn < 0) {
            worker_broke(s, "bad_command");
            return;
        }
        s->state = SESS_WAIT_CLIENT;
        s->nout = 1;
        s->out_v2 = 0;
        conn_send_text(s->conn, text, (size_t)tn);
        commands_sent(s);
        return;
    }
    case WIRE_COMMANDS: {
        static struct wire_apdus bs; /* 4.8 KB; the gateway is one thread */
        if (wire_decode_apdus(h, frame, &bs) != 0) {
            worker_broke(s, "bad_commands");
            return;
        }
        if (s->state != SESS_WAIT_WORKER) {
            worker_broke(s, "second_outstanding_command");
            return;
        }
        if (bs.n > s->batch || s->batch < 2) {
            worker_broke(s, "batch_larger_than_announced");
            return;
        }
        char *text = cm_build_commands(&bs);
        s->state = SESS_WAIT_CLIENT;
        s->nout = bs.n;
        s->out_v2 = 1;
        send_json(s, text);
        commands_sent(s);
        return;
    }
    case WIRE_MODAL:
        if (wire_decode_bytes(h, frame, &b) != 0) {
            worker_broke(s, "bad_modal");
            return;
        }
        send_json(s, cm_build_modal((const char *)b.data, b.len));
        return;
    case WIRE_PHASE: {
        struct wire_phase ph;
        if (wire_decode_phase(h, frame, &ph) != 0) {
            worker_broke(s, "bad_phase");
            return;
        }
        s->at_risk = ph.at_risk;
        return;
    }
    case WIRE_RESULT: {
        struct wire_result r;
        if (wire_decode_result(h, frame, &r) != 0) {
            worker_broke(s, "bad_result");
            return;
        }
        if (r.op != s->op)
            log_warn("result_operation_mismatch", "session=%" PRIu64 " op=%s result_op=%s", s->id,
                     wire_op_name(s->op), wire_op_name(r.op));
        finish(s, &r, 1);
        return;
    }
    default:
        worker_broke(s, "unexpected_frame_type");
        return;
    }
}

static void on_worker_lost(void *arg, struct pool_link *l)
{
    (void)arg;
    struct session *s = (struct session *)((char *)l - offsetof(struct session, wl));
    if (s->state == SESS_DONE)
        return;
    struct wire_result r;
    memset(&r, 0, sizeof r);
    r.op = s->op;
    r.status = s->at_risk ? WIRE_ST_PENDING : WIRE_ST_FAILED;
    r.error = WIRE_E_INTERNAL;
    log_warn("session_worker_lost", "session=%" PRIu64 " at_risk=%u", s->id, (unsigned)s->at_risk);
    finish(s, &r, 1);
}

/* The connection is going away: tells the worker, frees the session's
 * resources.  Safe to call in any state, more than once. */
static void on_close(void *user)
{
    struct session *s = user;
    if (s->state != SESS_DONE) {
        if (s->state != SESS_IDLE) {
            struct gw *g = s->ctx->gw;
            log_info("session_aborted", "session=%" PRIu64 " peer=%s op=%s at_risk=%u", s->id,
                     s->conn->peer, wire_op_name(s->op), (unsigned)s->at_risk);
            met_session_end(&g->met, s->op, MET_RES_ABORTED, WIRE_E_NONE);
            if (s->t_start_us)
                met_observe(&g->met.session_duration, (double)(gw_now_us() - s->t_start_us) / 1e6);
        }
        detach(s, 1);
        s->state = SESS_DONE;
    }
    if (s->request_id) {
        json_decref(s->request_id);
        s->request_id = NULL;
    }
}

/* No operation message within gateway.first_message_timeout_ms: result
 * failed/timeout and close. */
static void on_no_operation(void *user)
{
    struct session *s = user;
    log_info("no_operation", "peer=%s", s->conn->peer);
    fail(s, WIRE_E_TIMEOUT);
}

static int is_idle(const void *user)
{
    const struct session *s = user;
    return s->state == SESS_IDLE;
}

static void on_new(void *arg, struct conn *c, void *user)
{
    struct session *s = user;
    s->ctx = arg;
    s->conn = c;
}

const struct conn_io sess_conn_io = {
    .user_size = sizeof(struct session),
    .on_new = on_new,
    .on_text = on_text,
    .on_close = on_close,
    .idle = is_idle,
    .on_no_operation = on_no_operation,
};

const struct pool_io sess_pool_io = {
    .session_frame = on_worker_frame,
    .worker_lost = on_worker_lost,
};
