/* engine: the public side of the session engine (engine.h): opening a
 * session, dispatching events to the continuation in flight, emitting
 * actions, timers, and the one closing path every session ends through
 * (void an untouched reservation, count failures, freeze, release the lease,
 * result, done).
 *
 * Must never do I/O, read a clock or keep a card key past eng_free(). */
#include "engine.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "log.h"
#include "ota_err.h"

#define ENG_INTEGRITY_FREEZE_AT 3

/* How long the closing path waits for one ledger reply: longer than the
 * ledger's own timeout, which answers ERROR by then (issue 16). */
static uint64_t closing_grace_ms(const struct eng_ctx *ctx)
{
    return (uint64_t)ctx->cfg.ledger_timeout_ms + ENG_CLOSING_MARGIN_MS;
}

struct eng_ctx *eng_new(const struct eng_config *cfg, const struct master_keys *keys)
{
    size_t sid_len = strnlen(cfg->system_id, sizeof(cfg->system_id));
    if (!keys || sid_len == 0 || sid_len > ENG_SYSTEM_ID_MAX || cfg->response_timeout_ms == 0 ||
        cfg->operation_timeout_ms == 0 || cfg->lease_ms <= cfg->operation_timeout_ms ||
        cfg->max_amount <= 0 || cfg->ledger_timeout_ms == 0)
        return NULL;
    if (sodium_init() < 0)
        return NULL;
    struct eng_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return NULL;
    ctx->cfg = *cfg;
    ctx->keys = keys;
    ctx->next_req_id = 1;
    return ctx;
}

void eng_ctx_free(struct eng_ctx *ctx)
{
    if (!ctx)
        return;
    for (size_t i = 0; i < ctx->nspare_keys; i++)
        sodium_free(ctx->spare_keys[i]);
    sodium_memzero(ctx, sizeof(*ctx));
    free(ctx);
}

uint64_t eng_session_id(const struct eng_session *s)
{
    return s->id;
}

uint64_t eng_integrity_failures(const struct eng_ctx *ctx)
{
    return ctx->integrity_total;
}

void eng_signs(const struct eng_ctx *ctx, uint64_t out[WIRE_SIGN_COUNT])
{
    memcpy(out, ctx->signs, sizeof ctx->signs);
}

/* The signs the engine decides as it sends them to the ledger: money at
 * risk at an integrity failure, and the flags of a committed entry (its
 * first settle only: a retry is the same booking). */
static void count_signs(struct eng_ctx *ctx, const struct ledger_req *req)
{
    if (req->type == LEDGER_INTEGRITY_FAILURE && req->u.integrity.has_txn) {
        ctx->signs[WIRE_SIGN_INTEGRITY_AT_RISK]++;
    } else if (req->type == LEDGER_SETTLE && req->u.settle.outcome == LEDGER_COMMITTED &&
               !req->u.settle.retry) {
        uint32_t f = req->u.settle.flags;
        if (f & LEDGER_FLAG_SETTLED_LATER)
            ctx->signs[WIRE_SIGN_SETTLED_LATER]++;
        if (f & LEDGER_FLAG_READBACK)
            ctx->signs[WIRE_SIGN_READBACK]++;
        if (f & LEDGER_FLAG_CREDIT_MISSING)
            ctx->signs[WIRE_SIGN_CREDIT_MISSING]++;
    }
}

const char *eng_action_name(enum eng_action_type t)
{
    switch (t) {
    case ENG_A_APDU:
        return "apdu";
    case ENG_A_MODAL:
        return "modal";
    case ENG_A_LEDGER:
        return "ledger";
    case ENG_A_PHASE:
        return "phase";
    case ENG_A_RESULT:
        return "result";
    case ENG_A_DONE:
        return "done";
    case ENG_A_TOKEN:
        return "token";
    }
    return "unknown";
}

/* ---- actions ---- */

static struct eng_action *push(struct eng_session *s, enum eng_action_type type)
{
    struct eng_actions *out = s->out;
    if (out->n >= ENG_MAX_ACTIONS) {
        /* A bug of ours (one event never needs more); the session cannot
         * go on consistently, but dropping silently would hide it. */
        log_error("engine_actions_overflow", "session=%llu step=%s", (unsigned long long)s->id,
                  s->step);
        abort();
    }
    struct eng_action *a = &out->a[out->n++];
    memset(a, 0, sizeof(*a));
    a->type = type;
    return a;
}

void eng_emit_apdu(struct eng_session *s, const uint8_t *apdu, size_t len)
{
    struct eng_action *a = push(s, ENG_A_APDU);
    if (len > sizeof(a->u.apdu.data))
        abort(); /* DFC_APDU_MAX < WIRE_MAX_APDU */
    memcpy(a->u.apdu.data, apdu, len);
    a->u.apdu.len = (uint16_t)len;
    s->state = ES_WAIT_CARD;
    s->resp_deadline_ms = s->now_ms + s->ctx->cfg.response_timeout_ms;
}

void eng_emit_modal(struct eng_session *s, const char *text)
{
    struct eng_action *a = push(s, ENG_A_MODAL);
    snprintf(a->u.text, sizeof(a->u.text), "%s", text);
}

void eng_emit_phase(struct eng_session *s, int at_risk)
{
    struct eng_action *a = push(s, ENG_A_PHASE);
    a->u.at_risk = (uint8_t)(at_risk ? 1 : 0);
}

static void emit_result(struct eng_session *s)
{
    struct eng_action *a = push(s, ENG_A_RESULT);
    a->u.result = s->result;
    s->result_sent = 1;
    /* Logged once, by the shell that sends it (worker/shell.c). */
}

static void emit_done(struct eng_session *s)
{
    push(s, ENG_A_DONE);
    s->state = ES_DONE;
}

void eng_ledger_init(struct eng_session *s, struct ledger_req *req, enum ledger_req_type type)
{
    memset(req, 0, sizeof(*req));
    req->session = s->id;
    req->type = type;
    req->card = s->card;
}

void eng_ledger_send(struct eng_session *s, const struct ledger_req *req, eng_ledger_cb cb)
{
    count_signs(s->ctx, req);
    struct eng_action *a = push(s, ENG_A_LEDGER);
    a->u.ledger = *req;
    a->u.ledger.id = s->ctx->next_req_id++;
    s->req_id = a->u.ledger.id;
    s->req_type = req->type;
    s->ledger_cb = cb;
    if (s->state != ES_CLOSING)
        s->state = ES_WAIT_LEDGER;
}

/* ---- the closing path ---- */

static void close_next(struct eng_session *s);

/* A reply that arrives while closing: absorb what it tells about state we
 * must undo (a lease taken, a reservation made), then go on closing. */
static void closing_reply(struct eng_session *s, const struct ledger_reply *r)
{
    switch (r->type) {
    case LEDGER_LEASE_ACQUIRE:
        if (r->status == LEDGER_ST_BUSY)
            s->lease_requested = 0;
        break;
    case LEDGER_BEGIN:
        if (r->status == LEDGER_ST_BUSY)
            s->lease_requested = 0;
        topup_closing_reply(s, r); /* a reservation made: void it */
        break;
    case LEDGER_RESERVE:
        topup_closing_reply(s, r);
        break;
    case LEDGER_INTEGRITY_FAILURE:
        if (r->status == LEDGER_ST_OK && r->u.integrity_failures >= ENG_INTEGRITY_FREEZE_AT &&
            !s->need_freeze) {
            s->need_freeze = 1;
            s->freeze_reason = LEDGER_FREEZE_INTEGRITY;
            snprintf(s->freeze_detail, sizeof(s->freeze_detail), "%u integrity failures in a row",
                     (unsigned)r->u.integrity_failures);
        }
        break;
    case LEDGER_SETTLE:
        if (r->status != LEDGER_ST_OK)
            log_error("ledger_settle_failed", "session=%llu status=%s", (unsigned long long)s->id,
                      ledger_status_name(r->status));
        break;
    default:
        if (r->status != LEDGER_ST_OK)
            log_warn("ledger_request_failed", "session=%llu request=%s status=%s",
                     (unsigned long long)s->id, ledger_req_name(r->type),
                     ledger_status_name(r->status));
        break;
    }
    close_next(s);
}

static void close_next(struct eng_session *s)
{
    struct ledger_req req;
    s->state = ES_CLOSING;
    s->grace_deadline_ms = s->now_ms + closing_grace_ms(s->ctx);
    if (topup_closing_step(s, closing_reply))
        return;
    if (s->need_integrity) {
        /* Only a failure while money was at risk counts toward freezing
         * (issue 16): anyone who reaches a card can tamper with a check. */
        s->need_integrity = 0;
        eng_ledger_init(s, &req, LEDGER_INTEGRITY_FAILURE);
        req.u.integrity.has_txn = (uint8_t)topup_txn_at_risk(s, req.u.integrity.txn_id);
        eng_ledger_send(s, &req, closing_reply);
        return;
    }
    if (s->need_freeze) {
        s->need_freeze = 0;
        eng_ledger_init(s, &req, LEDGER_FREEZE);
        req.u.freeze.reason = s->freeze_reason;
        snprintf(req.u.freeze.detail, sizeof(req.u.freeze.detail), "%s", s->freeze_detail);
        char tail[8];
        log_error("card_frozen", "session=%llu uid=%s reason=%d detail=\"%s\"",
                  (unsigned long long)s->id, log_uid_tail(s->card.uid, s->card.uid_len, tail),
                  (int)s->freeze_reason, s->freeze_detail);
        eng_ledger_send(s, &req, closing_reply);
        return;
    }
    /* The lease goes as early as it may: after everything that must happen
     * while the card is held (void, failures, freeze), before the counter
     * reset, which needs no lease. */
    if (s->lease_requested) {
        s->lease_requested = 0;
        eng_ledger_init(s, &req, LEDGER_LEASE_RELEASE);
        eng_session_holder(s, req.u.lease.holder);
        eng_ledger_send(s, &req, closing_reply);
        return;
    }
    if (s->need_reset) {
        s->need_reset = 0;
        eng_ledger_init(s, &req, LEDGER_INTEGRITY_RESET);
        eng_ledger_send(s, &req, closing_reply);
        return;
    }
    if (s->throttle && !s->result_sent) {
        /* A wrong code over the limits: the answer waits (the lease is
         * already released), which slows whoever keeps guessing. */
        s->throttle = 0;
        s->grace_deadline_ms = s->now_ms + s->ctx->cfg.code_failure_delay_ms;
        return;
    }
    if (!s->result_sent)
        emit_result(s);
    emit_done(s);
}

static void set_result(struct eng_session *s, uint8_t status, enum wire_error err)
{
    if (s->result_sent)
        return;
    s->result.op = s->op;
    s->result.status = status;
    s->result.error = (uint8_t)err;
    topup_fill_result(s, &s->result);
}

void eng_fail(struct eng_session *s, enum wire_error err)
{
    if (s->state == ES_CLOSING || s->state == ES_DONE)
        return;
    /* A database outage (a failover) is no bug: the client may retry. */
    if (err == WIRE_E_INTERNAL && s->db_down)
        err = WIRE_E_OVERLOADED;
    set_result(s, topup_at_risk(s) ? WIRE_ST_PENDING : WIRE_ST_FAILED, err);
    topup_on_fail(s);
    card_drop(s);
    dfc_session_clear(&s->io.dsess);
    if (s->state == ES_WAIT_LEDGER) {
        /* The deadline passed with a request outstanding: answer the client
         * now, and finish closing when (if) the reply comes. */
        emit_result(s);
        s->state = ES_CLOSING;
        s->grace_deadline_ms = s->now_ms + closing_grace_ms(s->ctx);
        s->ledger_cb = closing_reply;
        return;
    }
    close_next(s);
}

void eng_succeed(struct eng_session *s)
{
    if (s->state == ES_CLOSING || s->state == ES_DONE)
        return;
    s->result.op = s->op;
    s->result.status = WIRE_ST_OK;
    s->result.error = WIRE_E_NONE;
    dfc_session_clear(&s->io.dsess);
    /* A booked top-up's outcome is final: the client has it before the
     * closing requests, so neither a stray client message nor the worker's
     * death while the lease is released can turn it into `failed`.  An
     * operation that booked nothing (check, personalize) answers after its
     * lease is released, so a client that starts its next session at once
     * never finds its own card busy. */
    if (topup_booked(s))
        emit_result(s);
    close_next(s);
}

void eng_note_integrity(struct eng_session *s, const char *what)
{
    s->integrity_failures++;
    s->ctx->integrity_total++;
    /* Money may be at risk once the WriteRecord went out: only then does the
     * failure reach the ledger's counter (and freeze at three). */
    if (topup_write_sent(s))
        s->need_integrity = 1;
    char tail[8];
    log_warn("card_integrity_failure", "session=%llu uid=%s step=%s what=\"%s\" at_risk=%d",
             (unsigned long long)s->id, log_uid_tail(s->card.uid, s->card.uid_len, tail), s->step,
             what, topup_write_sent(s));
}

void eng_session_holder(const struct eng_session *s, uint8_t holder[LEDGER_HOLDER_LEN])
{
    memcpy(holder, s->ctx->cfg.instance, 8);
    for (int i = 0; i < 8; i++)
        holder[8 + i] = (uint8_t)(s->id >> (56 - 8 * i));
}

/* ---- events ---- */

static void begin(struct eng_session *s, uint64_t now_ms, struct eng_actions *out)
{
    memset(out, 0, sizeof(*out));
    s->out = out;
    s->now_ms = now_ms;
}

static void end(struct eng_session *s)
{
    card_flush(s); /* the card commands the event queued */
    struct eng_actions *out = s->out;
    switch (s->state) {
    case ES_WAIT_CARD:
        out->timer_at_ms =
            s->resp_deadline_ms < s->op_deadline_ms ? s->resp_deadline_ms : s->op_deadline_ms;
        break;
    case ES_WAIT_LEDGER:
    case ES_WAIT_TOKEN:
        out->timer_at_ms = s->op_deadline_ms;
        break;
    case ES_CLOSING:
        out->timer_at_ms = s->grace_deadline_ms;
        break;
    default:
        out->timer_at_ms = 0;
        break;
    }
    s->out = NULL;
}

/* Asks the caller to check the operator token (Argon2id is too slow for
 * the loop); the session waits for eng_on_token_verdict(). */
static void ask_token(struct eng_session *s, const struct wire_open *open)
{
    struct eng_action *a = push(s, ENG_A_TOKEN);
    memcpy(a->u.token.token, open->authcode, open->authcode_len);
    a->u.token.len = open->authcode_len;
    memcpy(a->u.token.peer, s->peer, sizeof(a->u.token.peer));
    s->step = "operator_token";
    s->state = ES_WAIT_TOKEN;
}

/* Checks what needs no card: the request's shape, the listener, that an
 * operator token was given, the top-up code's format.  Returns WIRE_E_NONE
 * or the error to answer. */
static enum wire_error check_open(struct eng_session *s, const struct wire_open *open)
{
    if (open->op != WIRE_OP_CHECK && open->op != WIRE_OP_TOPUP && open->op != WIRE_OP_PERSONALIZE)
        return WIRE_E_BAD_REQUEST;
    if ((open->uid_len != 4 && open->uid_len != 7) || open->authcode_len > WIRE_MAX_AUTHCODE ||
        open->peer_len > WIRE_MAX_PEER)
        return WIRE_E_BAD_REQUEST;
    if (open->op == WIRE_OP_PERSONALIZE) {
        if (open->listener != WIRE_LISTENER_OPERATOR)
            return WIRE_E_BAD_REQUEST;
        if (open->authcode_len == 0)
            return WIRE_E_AUTH_FAILED;
    }
    if (open->op == WIRE_OP_TOPUP)
        return topup_open(s, open->authcode, open->authcode_len);
    return WIRE_E_NONE;
}

struct eng_session *eng_open(struct eng_ctx *ctx, uint64_t session_id, const struct wire_open *open,
                             uint64_t now_ms, struct eng_actions *out)
{
    memset(out, 0, sizeof(*out));
    struct eng_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->keys =
        ctx->nspare_keys ? ctx->spare_keys[--ctx->nspare_keys] : sodium_malloc(sizeof(*s->keys));
    if (!s->keys) {
        free(s);
        return NULL;
    }
    sodium_memzero(s->keys, sizeof(*s->keys));
    s->ctx = ctx;
    s->id = session_id;
    s->op = open->op;
    s->listener = open->listener;
    s->step = "open";
    s->op_deadline_ms = now_ms + ctx->cfg.operation_timeout_ms;
    s->io.batch_max = open->batch >= 1 && open->batch <= WIRE_MAX_BATCH ? open->batch : 1;
    begin(s, now_ms, out);

    size_t uid_len = open->uid_len <= WIRE_MAX_UID ? open->uid_len : 0;
    s->card.uid_len = (uint8_t)uid_len;
    memcpy(s->card.uid, open->uid, uid_len);
    size_t peer_len = open->peer_len <= WIRE_MAX_PEER ? open->peer_len : 0;
    memcpy(s->peer, open->peer, peer_len);
    s->peer[peer_len] = '\0';

    enum wire_error err = check_open(s, open);
    if (err == WIRE_E_NONE && card_derive_keys(s) != 0)
        err = WIRE_E_INTERNAL;
    if (err != WIRE_E_NONE) {
        char tail[8];
        log_info("session_refused", "session=%llu op=%s uid=%s listener=%u error=%s",
                 (unsigned long long)session_id, wire_op_name(open->op),
                 log_uid_tail(s->card.uid, s->card.uid_len, tail), (unsigned)open->listener,
                 wire_error_name(err));
        eng_fail(s, err);
        end(s);
        return s;
    }
    switch (s->op) {
    case WIRE_OP_CHECK:
        op_check_start(s);
        break;
    case WIRE_OP_TOPUP:
        op_topup_start(s);
        break;
    default:
        ask_token(s, open);
        break;
    }
    end(s);
    return s;
}

void eng_on_token_verdict(struct eng_session *s, enum eng_token_verdict v, uint64_t now_ms,
                          struct eng_actions *out)
{
    begin(s, now_ms, out);
    if (s->state == ES_WAIT_TOKEN) {
        s->state = ES_RUNNING;
        switch (v) {
        case ENG_TOKEN_OK:
            op_personalize_start(s);
            break;
        case ENG_TOKEN_LIMITED:
            eng_fail(s, WIRE_E_LIMIT_EXCEEDED);
            break;
        case ENG_TOKEN_BUSY:
            eng_fail(s, WIRE_E_OVERLOADED);
            break;
        default:
            eng_fail(s, WIRE_E_AUTH_FAILED);
            break;
        }
    }
    end(s);
}

void eng_on_card_response(struct eng_session *s, const uint8_t *data, size_t len, uint64_t now_ms,
                          struct eng_actions *out)
{
    struct wire_bytes a;
    a.len = (uint16_t)(len <= sizeof(a.data) ? len : sizeof(a.data));
    memcpy(a.data, data, a.len);
    eng_on_card_responses(s, &a, 1, 0, now_ms, out);
}

void eng_on_card_responses(struct eng_session *s, const struct wire_bytes *answers, size_t n,
                           uint8_t client_err, uint64_t now_ms, struct eng_actions *out)
{
    begin(s, now_ms, out);
    if (s->state == ES_WAIT_CARD)
        card_on_answers(s, answers, n, client_err);
    end(s);
}

static enum wire_error client_err_code(uint8_t kind)
{
    return kind == WIRE_CERR_TIMEOUT ? WIRE_E_TIMEOUT : WIRE_E_LOST_TAG;
}

void eng_on_client_error(struct eng_session *s, uint8_t kind, uint64_t now_ms,
                         struct eng_actions *out)
{
    begin(s, now_ms, out);
    if (s->state == ES_WAIT_CARD || s->state == ES_WAIT_TOKEN) {
        eng_fail(s, client_err_code(kind));
    } else if (s->state == ES_WAIT_LEDGER && !s->client_lost) {
        /* No command is outstanding; fail before the next one goes out. */
        s->client_lost = 1;
        s->lost_err = client_err_code(kind);
    }
    end(s);
}

void eng_on_client_gone(struct eng_session *s, uint64_t now_ms, struct eng_actions *out)
{
    begin(s, now_ms, out);
    if (s->state == ES_WAIT_CARD || s->state == ES_WAIT_TOKEN) {
        eng_fail(s, WIRE_E_LOST_TAG);
    } else if (s->state == ES_WAIT_LEDGER && !s->client_lost) {
        s->client_lost = 1;
        s->lost_err = WIRE_E_LOST_TAG;
    }
    end(s);
}

void eng_on_ledger_reply(struct eng_session *s, const struct ledger_reply *r, uint64_t now_ms,
                         struct eng_actions *out)
{
    begin(s, now_ms, out);
    if ((s->state == ES_WAIT_LEDGER || s->state == ES_CLOSING) && s->req_id != 0 &&
        r->id == s->req_id && r->type == s->req_type) {
        if (r->type == LEDGER_SETTLE && r->status == LEDGER_ST_CONFLICT)
            s->ctx->signs[WIRE_SIGN_SETTLE_CONFLICT]++;
        eng_ledger_cb cb = s->ledger_cb;
        s->req_id = 0;
        s->ledger_cb = NULL;
        s->db_down = r->status == LEDGER_ST_ERROR && r->db_down;
        if (s->state == ES_WAIT_LEDGER)
            s->state = ES_RUNNING;
        cb(s, r);
    }
    end(s);
}

void eng_on_timeout(struct eng_session *s, uint64_t now_ms, struct eng_actions *out)
{
    begin(s, now_ms, out);
    switch (s->state) {
    case ES_WAIT_CARD:
        if (now_ms >= s->resp_deadline_ms || now_ms >= s->op_deadline_ms) {
            log_info("card_timeout", "session=%llu step=%s", (unsigned long long)s->id, s->step);
            eng_fail(s, WIRE_E_TIMEOUT);
        }
        break;
    case ES_WAIT_TOKEN:
        if (now_ms >= s->op_deadline_ms)
            eng_fail(s, WIRE_E_TIMEOUT);
        break;
    case ES_WAIT_LEDGER:
        if (now_ms >= s->op_deadline_ms) {
            log_warn("ledger_timeout", "session=%llu step=%s request=%s", (unsigned long long)s->id,
                     s->step, ledger_req_name(s->req_type));
            eng_fail(s, WIRE_E_TIMEOUT);
        }
        break;
    case ES_CLOSING:
        if (now_ms >= s->grace_deadline_ms) {
            /* No request outstanding: the throttle's wait is over.  Else
             * the ledger does not answer; the lease expires by itself. */
            if (s->req_id != 0)
                log_warn("ledger_abandoned", "session=%llu request=%s", (unsigned long long)s->id,
                         ledger_req_name(s->req_type));
            s->req_id = 0;
            if (!s->result_sent)
                emit_result(s);
            emit_done(s);
        }
        break;
    default:
        break;
    }
    end(s);
}

void eng_free(struct eng_session *s)
{
    if (!s)
        return;
    if (s->keys) {
        /* Wiped either way: kept for the next session, or freed
         * (sodium_free wipes before unmapping). */
        sodium_memzero(s->keys, sizeof(*s->keys));
        if (s->ctx->nspare_keys < ENG_SPARE_KEYS)
            s->ctx->spare_keys[s->ctx->nspare_keys++] = s->keys;
        else
            sodium_free(s->keys);
    }
    dfc_auth_clear(&s->io.auth);
    dfc_cmd_clear(&s->io.cmd);
    dfc_session_clear(&s->io.dsess);
    topup_free(s);
    if (s->chk) {
        sodium_memzero(s->chk, sizeof(*s->chk));
        free(s->chk);
    }
    sodium_memzero(s, sizeof(*s));
    free(s);
}
