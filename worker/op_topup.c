/* op_topup: the top-up, PROTOCOL.md §6 steps 4-7 (steps 1-3, shared with
 * `check`, in op_check.c), with its own state (struct topup, hung off the
 * session) and what a failure means for its money: `pending` once the
 * WriteRecord went out, a void of an untouched reservation, a code failure
 * to count (the engine's one closing path asks through topup_*()).
 *
 * 4. Reserve the code for this card (one atomic ledger statement): in the
 *    common case BEGIN did it already, in step 3's statement (a card
 *    neither frozen nor holding an entry in doubt); else, once step 3
 *    settled the entries in doubt, RESERVE.  Either way the reservation
 *    comes before any command that can move money; a session that fails
 *    before its WriteRecord went out voids it (closing path), and one cut
 *    off before it could leaves it in doubt for the card's next session,
 *    which voids it (no record with its txn on the card).
 * 5. WriteRecord, then Credit, then CommitTransaction, every answer MAC
 *    verified.  Record first: a commit slipped in by the relay can never
 *    leave a credit on the card without its record.
 * 6. GetValue: balance_after must be balance_before + amount.
 * 7. Book the verified commit (committed; flagged if the read-back failed);
 *    the result `ok` goes out at once, before the lease is released.
 *
 * Must never send a Credit for a txn the ledger has not reserved, never
 * book committed without a verified commit answer, and never answer
 * `failed` once the WriteRecord went out (the entry is then in doubt:
 * `pending`, settled by the card's next session). */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "log.h"
#include "ota_err.h"

/* Everything the top-up knows beyond steps 1-3, hung off the session
 * (s->topup) from open to eng_free. */
struct topup {
    uint8_t code_hash[CODE_HASH_LEN];
    int have_txn; /* RESERVE answered ok: txn_id, amount, unix_time */
    uint8_t txn_id[LEDGER_TXN_ID_LEN];
    int64_t amount;
    int64_t unix_time;
    int write_sent; /* WriteRecord went out: the txn is at risk */
    int commit_verified;
    int booked;
    int readback_ok;
    uint32_t txn_flags;
    int settle_retries;
    /* Closing requests the failure left to run. */
    int need_void;
    int need_code_failure;
};

static void step_reserve(struct eng_session *s);
static void after_reserve(struct eng_session *s, const struct ledger_reply *r);
static int code_refused(struct eng_session *s, enum ledger_status st);
static void keep_reservation(struct eng_session *s, const struct ledger_reservation *res);
static void step_check_reservation(struct eng_session *s);
static void step_write_credit_commit(struct eng_session *s);
static void step_write_record(struct eng_session *s);
static void after_write_record(struct eng_session *s, int rc);
static void step_credit(struct eng_session *s);
static void after_credit(struct eng_session *s, int rc);
static void step_commit(struct eng_session *s);
static void after_commit(struct eng_session *s, int rc);
static void step_read_back(struct eng_session *s);
static void after_read_back(struct eng_session *s, int rc);
static void step_book(struct eng_session *s);
static void after_book(struct eng_session *s, const struct ledger_reply *r);

enum wire_error topup_open(struct eng_session *s, const char *code, size_t len)
{
    char norm[CODE_NORM_LEN + 1];
    char in[WIRE_MAX_AUTHCODE + 1];
    if (len > WIRE_MAX_AUTHCODE)
        return WIRE_E_BAD_REQUEST;
    s->topup = calloc(1, sizeof(*s->topup));
    if (!s->topup)
        return WIRE_E_INTERNAL;
    memcpy(in, code, len);
    in[len] = '\0';
    int rc = code_normalize(in, norm, sizeof(norm));
    sodium_memzero(in, sizeof(in));
    if (rc == 0)
        code_hash(s->ctx->keys->code_hmac, norm, s->topup->code_hash);
    sodium_memzero(norm, sizeof(norm));
    return rc == 0 ? WIRE_E_NONE : WIRE_E_CODE_INVALID;
}

void op_topup_start(struct eng_session *s)
{
    op_open_card(s, step_reserve);
}

/* Step 3's BEGIN reserves the code along with the lease when it can. */
void topup_begin_args(const struct eng_session *s, struct ledger_req *req)
{
    const struct topup *t = s->topup;
    if (!t)
        return;
    const struct eng_config *cfg = &s->ctx->cfg;
    struct ledger_reserve_args *a = &req->u.begin.code;
    req->u.begin.reserve = 1;
    memcpy(a->code_hash, t->code_hash, sizeof(t->code_hash));
    memcpy(a->peer, s->peer, sizeof(a->peer));
    a->max_card_failures = cfg->code_failures_per_card;
    a->max_peer_failures = cfg->code_failures_per_peer;
    a->window_s = cfg->code_failure_window_s;
}

int topup_begin_reply(struct eng_session *s, const struct ledger_reply *r)
{
    if (!s->topup)
        return 0;
    if (code_refused(s, r->status))
        return 1;
    if (r->status == LEDGER_ST_OK && r->u.begin.reserved)
        keep_reservation(s, &r->u.begin.res);
    return 0;
}

/* 4. */
static void step_reserve(struct eng_session *s)
{
    struct topup *t = s->topup;
    s->step = "reserve";
    if (t->have_txn) {
        step_check_reservation(s); /* BEGIN reserved it */
        return;
    }
    if (s->chk->lstate.in_doubt_more) {
        /* Older in-doubt entries remain; settle them first (next sessions)
         * before a new record can push their proof off the card. */
        eng_fail(s, WIRE_E_INTERNAL);
        return;
    }
    const struct eng_config *cfg = &s->ctx->cfg;
    struct ledger_req req;
    eng_ledger_init(s, &req, LEDGER_RESERVE);
    memcpy(req.u.reserve.code_hash, t->code_hash, sizeof(t->code_hash));
    memcpy(req.u.reserve.peer, s->peer, sizeof(req.u.reserve.peer));
    req.u.reserve.max_card_failures = cfg->code_failures_per_card;
    req.u.reserve.max_peer_failures = cfg->code_failures_per_peer;
    req.u.reserve.window_s = cfg->code_failure_window_s;
    eng_ledger_send(s, &req, after_reserve);
}

/* A code answer (RESERVE's or BEGIN's) ends the session: counted as a
 * failed code attempt by the closing path, like any wrong code.  1 when
 * st was one. */
static int code_refused(struct eng_session *s, enum ledger_status st)
{
    struct topup *t = s->topup;
    switch (st) {
    case LEDGER_ST_CODE_INVALID:
        t->need_code_failure = 1;
        eng_fail(s, WIRE_E_CODE_INVALID);
        return 1;
    case LEDGER_ST_CODE_USED:
        t->need_code_failure = 1;
        eng_fail(s, WIRE_E_CODE_USED);
        return 1;
    case LEDGER_ST_LIMIT_EXCEEDED:
        /* A wrong code over the card's or the address's limit (a valid one
         * is never refused): counted like any wrong code, answered late. */
        t->need_code_failure = 1;
        s->throttle = 1;
        eng_fail(s, WIRE_E_LIMIT_EXCEEDED);
        return 1;
    default:
        return 0;
    }
}

static void keep_reservation(struct eng_session *s, const struct ledger_reservation *res)
{
    struct topup *t = s->topup;
    t->have_txn = 1;
    memcpy(t->txn_id, res->txn_id, sizeof(t->txn_id));
    t->amount = res->amount;
    t->unix_time = res->unix_time;
}

static void after_reserve(struct eng_session *s, const struct ledger_reply *r)
{
    if (code_refused(s, r->status))
        return;
    if (r->status != LEDGER_ST_OK) {
        /* Unknown outcome: if it did reserve, the entry is in doubt with no
         * card command sent, and the card's next session voids it. */
        eng_fail(s, WIRE_E_INTERNAL);
        return;
    }
    keep_reservation(s, &r->u.reserve);
    step_check_reservation(s);
}

/* The code is reserved and the card read.  Refusals from here on void the
 * reservation (eng_fail: no card command was sent for it), which releases
 * the code. */
static void step_check_reservation(struct eng_session *s)
{
    struct topup *t = s->topup;
    if (t->amount <= 0 || t->amount > s->ctx->cfg.max_amount) {
        log_warn("code_amount_out_of_range", "session=%llu amount=%lld", (unsigned long long)s->id,
                 (long long)t->amount);
        eng_fail(s, WIRE_E_CODE_INVALID);
        return;
    }
    if ((int64_t)s->chk->view.balance + t->amount > PROF_VALUE_UPPER) {
        log_info("balance_limit", "session=%llu balance=%ld amount=%lld", (unsigned long long)s->id,
                 (long)s->chk->view.balance, (long long)t->amount);
        eng_fail(s, WIRE_E_CARD_ERROR);
        return;
    }
    step_write_credit_commit(s);
}

/* 5 and 6, queued together: one batch for a v2 client ([WriteRecord
 * frames, Credit, CommitTransaction, GetValue]: the IV after each status
 * answer is known), one command at a time for v1.  The reservation came
 * first, so card_io lets these money-moving commands out. */
static void step_write_credit_commit(struct eng_session *s)
{
    struct topup *t = s->topup;
    if (card_may_send(s)) {
        eng_emit_phase(s, 1);
        eng_emit_modal(s, "Topping up: keep the card on the reader");
        t->write_sent = 1;
    } /* else nothing goes out: the session fails through the closing path */
    step_write_record(s);
    step_credit(s);
    step_commit(s);
    step_read_back(s);
}

static void step_write_record(struct eng_session *s)
{
    struct topup *t = s->topup;
    s->step = "write_record";
    uint8_t rec[PROF_RECORD_SIZE];
    memset(rec, 0, sizeof(rec));
    memcpy(rec + PROF_REC_TXN, t->txn_id, LEDGER_TXN_ID_LEN);
    dfc_put_le32(rec + PROF_REC_AMOUNT, (uint32_t)(int32_t)t->amount);
    dfc_put_le32(rec + PROF_REC_BALANCE, (uint32_t)(int32_t)(s->chk->view.balance + t->amount));
    dfc_put_le32(rec + PROF_REC_TIME, (uint32_t)t->unix_time);
    uint8_t hdr[7] = {PROF_FILE_RECORDS, 0, 0, 0, PROF_RECORD_SIZE, 0, 0};
    struct dfc_cmd_spec spec = {.ins = 0x3B,
                                .hdr = hdr,
                                .hdr_len = sizeof(hdr),
                                .data = rec,
                                .data_len = sizeof(rec),
                                .cmd_comm = DFC_COMM_ENC,
                                .resp_comm = DFC_COMM_MAC,
                                .resp_len = 0};
    card_cmd(s, &spec, after_write_record);
}

static void after_write_record(struct eng_session *s, int rc)
{
    if (rc != 0)
        eng_fail(s, card_error(s, rc));
}

static void step_credit(struct eng_session *s)
{
    struct topup *t = s->topup;
    s->step = "credit";
    uint8_t file = PROF_FILE_VALUE;
    uint8_t value[4];
    dfc_put_le32(value, (uint32_t)(int32_t)t->amount);
    struct dfc_cmd_spec spec = {.ins = 0x0C,
                                .hdr = &file,
                                .hdr_len = 1,
                                .data = value,
                                .data_len = sizeof(value),
                                .cmd_comm = DFC_COMM_ENC,
                                .resp_comm = DFC_COMM_MAC,
                                .resp_len = 0};
    card_cmd(s, &spec, after_credit);
}

static void after_credit(struct eng_session *s, int rc)
{
    if (rc != 0)
        eng_fail(s, card_error(s, rc));
}

static void step_commit(struct eng_session *s)
{
    s->step = "commit";
    struct dfc_cmd_spec spec = {
        .ins = 0xC7, .cmd_comm = DFC_COMM_PLAIN, .resp_comm = DFC_COMM_MAC, .resp_len = 0};
    card_cmd(s, &spec, after_commit);
}

static void after_commit(struct eng_session *s, int rc)
{
    struct topup *t = s->topup;
    if (rc != 0) {
        eng_fail(s, card_error(s, rc));
        return;
    }
    t->commit_verified = 1;
    if (!card_may_send(s)) {
        /* No read-back (a v1 client would need another command): the
         * commit is proven, book it flagged. */
        card_drop(s);
        t->txn_flags |= LEDGER_FLAG_READBACK;
        step_book(s);
    }
}

/* 6. The commit is proven already; the read-back can only flag. */
static void step_read_back(struct eng_session *s)
{
    s->step = "read_back";
    op_get_value(s, after_read_back);
}

static void after_read_back(struct eng_session *s, int rc)
{
    struct topup *t = s->topup;
    size_t n = 0;
    const uint8_t *p = card_resp(s, &n);
    if (rc != 0 || n != 4) {
        if (rc != 0)
            (void)card_error(s, rc);
        t->txn_flags |= LEDGER_FLAG_READBACK;
        log_warn("read_back_failed", "session=%llu err=%s", (unsigned long long)s->id,
                 ota_strerror(rc != 0 ? rc : OTA_ERR_LENGTH));
    } else {
        int32_t after = (int32_t)dfc_get_le32(p);
        if ((int64_t)after != (int64_t)s->chk->view.balance + t->amount) {
            t->txn_flags |= LEDGER_FLAG_READBACK;
            log_warn("read_back_disagrees", "session=%llu before=%ld amount=%lld after=%ld",
                     (unsigned long long)s->id, (long)s->chk->view.balance, (long long)t->amount,
                     (long)after);
        } else {
            t->readback_ok = 1;
        }
    }
    step_book(s);
}

/* 7. */
static void step_book(struct eng_session *s)
{
    struct topup *t = s->topup;
    s->step = "book";
    struct ledger_req req;
    eng_ledger_init(s, &req, LEDGER_SETTLE);
    memcpy(req.u.settle.txn_id, t->txn_id, sizeof(t->txn_id));
    req.u.settle.outcome = LEDGER_COMMITTED;
    req.u.settle.flags = t->txn_flags;
    req.u.settle.retry = t->settle_retries > 0;
    /* In the common case nothing follows the booking but the lease
     * release: both in one statement.  Anything the closing path must do
     * while the card is still ours (an integrity count, a freeze, a reset)
     * keeps the release for the end. */
    s->book_releases = s->lease_requested && !s->need_integrity && !s->need_freeze &&
                       !s->need_reset && !(s->prior_integrity > 0 && s->integrity_failures == 0);
    if (s->book_releases) {
        req.u.settle.release = 1;
        eng_session_holder(s, req.u.settle.holder);
    }
    eng_ledger_send(s, &req, after_book);
}

static void after_book(struct eng_session *s, const struct ledger_reply *r)
{
    struct topup *t = s->topup;
    if (r->status == LEDGER_ST_ERROR && t->settle_retries < 1 && s->now_ms < s->op_deadline_ms) {
        t->settle_retries++; /* idempotent: safe to repeat */
        step_book(s);
        return;
    }
    if (r->status != LEDGER_ST_OK) {
        /* The card committed; the entry stays in doubt and the card's next
         * session books it from the record. */
        log_error("book_commit_failed", "session=%llu status=%s", (unsigned long long)s->id,
                  ledger_status_name(r->status));
        eng_fail(s, WIRE_E_INTERNAL);
        return;
    }
    t->booked = 1;
    if (s->book_releases && r->u.released)
        s->lease_requested = 0; /* released by the booking statement */
    s->result.has = WIRE_RES_HAS_AMOUNT | WIRE_RES_HAS_TXN;
    s->result.amount = t->amount;
    memcpy(s->result.txn, t->txn_id, sizeof(t->txn_id));
    if (t->readback_ok) {
        s->result.has |= WIRE_RES_HAS_BALANCE;
        s->result.balance = s->chk->view.balance + t->amount;
    }
    if (s->prior_integrity > 0 && s->integrity_failures == 0)
        s->need_reset = 1;
    eng_succeed(s);
}

/* ---- what a failure means for the money (the engine's closing path) ---- */

int topup_at_risk(const struct eng_session *s)
{
    const struct topup *t = s->topup;
    return t && t->have_txn && t->write_sent && !t->booked;
}

int topup_write_sent(const struct eng_session *s)
{
    return s->topup && s->topup->write_sent;
}

int topup_booked(const struct eng_session *s)
{
    return s->topup && s->topup->booked;
}

int topup_reserved(const struct eng_session *s)
{
    return s->topup && s->topup->have_txn;
}

void topup_on_fail(struct eng_session *s)
{
    struct topup *t = s->topup;
    /* Reserved but no card command sent for it: void now, which releases
     * the code.  Once the WriteRecord went out only the card can tell. */
    if (t && t->have_txn && !t->write_sent)
        t->need_void = 1;
}

void topup_fill_result(const struct eng_session *s, struct wire_result *r)
{
    const struct topup *t = s->topup;
    if (t && t->have_txn && t->write_sent) {
        r->has |= WIRE_RES_HAS_TXN | WIRE_RES_HAS_AMOUNT;
        memcpy(r->txn, t->txn_id, sizeof(t->txn_id));
        r->amount = t->amount;
    }
}

int topup_txn_at_risk(const struct eng_session *s, uint8_t txn[LEDGER_TXN_ID_LEN])
{
    if (!topup_at_risk(s))
        return 0;
    memcpy(txn, s->topup->txn_id, LEDGER_TXN_ID_LEN);
    return 1;
}

int topup_closing_step(struct eng_session *s, eng_ledger_cb cb)
{
    struct topup *t = s->topup;
    struct ledger_req req;
    if (!t)
        return 0;
    if (t->need_void) {
        t->need_void = 0;
        eng_ledger_init(s, &req, LEDGER_SETTLE);
        memcpy(req.u.settle.txn_id, t->txn_id, sizeof(t->txn_id));
        req.u.settle.outcome = LEDGER_VOIDED;
        eng_ledger_send(s, &req, cb);
        return 1;
    }
    if (t->need_code_failure) {
        t->need_code_failure = 0;
        eng_ledger_init(s, &req, LEDGER_CODE_FAILURE);
        snprintf(req.u.code_failure.peer, sizeof(req.u.code_failure.peer), "%s", s->peer);
        eng_ledger_send(s, &req, cb);
        return 1;
    }
    return 0;
}

void topup_closing_reply(struct eng_session *s, const struct ledger_reply *r)
{
    struct topup *t = s->topup;
    const struct ledger_reservation *res = NULL;
    if (!t || r->status != LEDGER_ST_OK || t->have_txn)
        return;
    if (r->type == LEDGER_RESERVE)
        res = &r->u.reserve;
    else if (r->type == LEDGER_BEGIN && r->u.begin.reserved)
        res = &r->u.begin.res;
    if (res) {
        /* Reserved after we gave up: no card command was sent for it, so
         * it can be voided right away (its code is released). */
        keep_reservation(s, res);
        t->need_void = 1;
    }
}

void topup_free(struct eng_session *s)
{
    if (!s->topup)
        return;
    sodium_memzero(s->topup, sizeof(*s->topup));
    free(s->topup);
    s->topup = NULL;
}
