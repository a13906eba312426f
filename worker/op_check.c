/* op_check: PROTOCOL.md §6 steps 1-3, shared by `check` and `topup`, and
 * the `check` operation itself (steps 1-3, then the balance).  Each step
 * queues its card commands together; card_io sends them in as few batches
 * as the card's state allows (v2 clients) or one by one (v1), and calls
 * each command's after_ function in order.
 *
 * 1. SelectApplication C0FFEE, AuthenticateAES with the diversified credit
 *    key (a batch: [Select, Auth part 1], then the Auth's second part
 *    starts the next one).
 * 2. AbortTransaction (answer MAC verified) and GetFileSettings of both
 *    files under MAC against the profile (one batch with the Auth's second
 *    part: all plain commands).
 * 3. Only now, with the card authenticated, BEGIN: one ledger statement
 *    takes the lease, reads the card's ledger state under it and, for a
 *    top-up on a card neither frozen nor holding an entry in doubt, also
 *    reserves the code (step 4, op_topup.c).  Then ReadRecords (when the
 *    file has records, with its continuation frames) and GetValue
 *    enciphered, in one batch; and the settlement of every in-doubt entry
 *    (or a freeze).
 *
 * The records and the balance are read after the lease is held, in the
 * same MAC chain as this session's verified AbortTransaction.  Another
 * session can change the card only after its own authentication, which
 * breaks this chain: then these reads fail and nothing is settled.  So the
 * settlement never rests on what the card held before another session
 * (one that had the lease in the meantime) changed it, whatever the
 * timing of the database.  The ledger state is read under the same lease,
 * so no other session books for the card between it and the settlement.
 *
 * Must never take the lease before authentication, nor settle anything
 * before the lease is held and the AbortTransaction's answer verified. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "log.h"
#include "ota_err.h"

static void step_select_authenticate(struct eng_session *s);
static void after_select(struct eng_session *s, int rc);
static void after_authenticate(struct eng_session *s, int rc);
static void step_read_card(struct eng_session *s);
static void after_abort(struct eng_session *s, int rc);
static void after_value_settings(struct eng_session *s, int rc);
static void after_record_settings(struct eng_session *s, int rc);
static void after_get_value(struct eng_session *s, int rc);
static void step_read_records(struct eng_session *s);
static void read_records(struct eng_session *s);
static void after_read_records(struct eng_session *s, int rc);
static void step_begin(struct eng_session *s);
static void after_begin(struct eng_session *s, const struct ledger_reply *r);
static void step_settle_plan(struct eng_session *s);
static void step_settle_next(struct eng_session *s);
static void after_settle(struct eng_session *s, const struct ledger_reply *r);

void op_open_card(struct eng_session *s, void (*then)(struct eng_session *s))
{
    s->chk = calloc(1, sizeof(*s->chk));
    if (!s->chk) {
        eng_fail(s, WIRE_E_INTERNAL);
        return;
    }
    s->chk->then = then;
    step_select_authenticate(s);
}

/* 1 and 2, queued together.  A UID the client lied about gives another
 * key: the authentication fails, and nothing (not even the lease) has been
 * taken for that UID. */
static void step_select_authenticate(struct eng_session *s)
{
    s->step = "select";
    card_select(s, PROF_AID_U32, after_select);
    s->step = "authenticate";
    card_auth(s, DFC_AES128, PROF_KEY_CREDIT, s->keys->app[PROF_KEY_CREDIT], after_authenticate);
    step_read_card(s);
}

static void after_select(struct eng_session *s, int rc)
{
    if (rc == OTA_ERR_CARD_STATUS && card_status(s) == DFC_ST_APPLICATION_NOT_FOUND) {
        eng_fail(s, WIRE_E_UNSUPPORTED_CARD);
        return;
    }
    if (rc != 0)
        eng_fail(s, card_error(s, rc));
}

static void after_authenticate(struct eng_session *s, int rc)
{
    if (rc != 0)
        eng_fail(s, rc == OTA_ERR_AUTH ? WIRE_E_AUTH_FAILED : card_error(s, rc));
}

/* 2. */
static void get_file_settings(struct eng_session *s, uint8_t file, eng_card_cb cb)
{
    struct dfc_cmd_spec spec = {.ins = 0xF5,
                                .hdr = &file,
                                .hdr_len = 1,
                                .cmd_comm = DFC_COMM_PLAIN,
                                .resp_comm = DFC_COMM_MAC,
                                .resp_len = -1};
    card_cmd(s, &spec, cb);
}

static void get_value(struct eng_session *s, eng_card_cb cb)
{
    uint8_t file = PROF_FILE_VALUE;
    struct dfc_cmd_spec spec = {.ins = 0x6C,
                                .hdr = &file,
                                .hdr_len = 1,
                                .cmd_comm = DFC_COMM_PLAIN,
                                .resp_comm = DFC_COMM_ENC,
                                .resp_len = 4};
    card_cmd(s, &spec, cb);
}

void op_get_value(struct eng_session *s, eng_card_cb cb)
{
    get_value(s, cb);
}

/* Right after the authentication: whatever a relay left pending from an
 * earlier session is discarded first, so it can never be committed after
 * this session settles; then what the card holds. */
static void step_read_card(struct eng_session *s)
{
    struct dfc_cmd_spec abort_spec = {
        .ins = 0xA7, .cmd_comm = DFC_COMM_PLAIN, .resp_comm = DFC_COMM_MAC, .resp_len = 0};
    s->step = "abort";
    card_cmd(s, &abort_spec, after_abort);
    s->step = "value_settings";
    get_file_settings(s, PROF_FILE_VALUE, after_value_settings);
    s->step = "record_settings";
    get_file_settings(s, PROF_FILE_RECORDS, after_record_settings);
}

static void after_abort(struct eng_session *s, int rc)
{
    if (rc != 0)
        eng_fail(s, card_error(s, rc));
}

static void unsupported(struct eng_session *s, const char *why)
{
    char tail[8];
    log_warn("card_unsupported", "session=%llu uid=%s step=%s why=\"%s\"",
             (unsigned long long)s->id, log_uid_tail(s->card.uid, s->card.uid_len, tail), s->step,
             why);
    eng_fail(s, WIRE_E_UNSUPPORTED_CARD);
}

static int settings_error(struct eng_session *s, int rc)
{
    if (rc == OTA_ERR_CARD_STATUS &&
        (card_status(s) == DFC_ST_FILE_NOT_FOUND || card_status(s) == DFC_ST_PERMISSION_DENIED)) {
        unsupported(s, "file missing or not readable");
        return 1;
    }
    if (rc != 0) {
        eng_fail(s, card_error(s, rc));
        return 1;
    }
    return 0;
}

static void after_value_settings(struct eng_session *s, int rc)
{
    if (settings_error(s, rc))
        return;
    size_t n;
    const uint8_t *p = card_resp(s, &n);
    /* FileType, Comm, Access(2), Lower(4), Upper(4), LimitedCreditValue(4),
     * LimitedCreditEnabled(1).  The limited credit value is state, not
     * profile, so it is not compared. */
    if (n != 17 || p[0] != 0x02 || p[1] != PROF_COMM_ENC || p[2] != (PROF_VALUE_ACCESS & 0xFF) ||
        p[3] != (PROF_VALUE_ACCESS >> 8) || (int32_t)dfc_get_le32(p + 4) != PROF_VALUE_LOWER ||
        (int32_t)dfc_get_le32(p + 8) != PROF_VALUE_UPPER || p[16] != PROF_LIMITED_CREDIT)
        unsupported(s, "value file settings differ from the profile");
}

static uint32_t le24(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
}

static void after_record_settings(struct eng_session *s, int rc)
{
    if (settings_error(s, rc))
        return;
    size_t n;
    const uint8_t *p = card_resp(s, &n);
    /* FileType (4 = cyclic), Comm, Access(2), RecordSize(3), MaxRecords(3),
     * CurrentRecords(3). */
    if (n != 13 || p[0] != 0x04 || p[1] != PROF_COMM_ENC || p[2] != (PROF_RECORD_ACCESS & 0xFF) ||
        p[3] != (PROF_RECORD_ACCESS >> 8) || le24(p + 4) != PROF_RECORD_SIZE ||
        le24(p + 7) != PROF_RECORD_COUNT || le24(p + 10) > PROF_RECORD_COUNT) {
        unsupported(s, "record file settings differ from the profile");
        return;
    }
    s->chk->view.n_records = (int)le24(p + 10);
    step_begin(s);
}

static void after_get_value(struct eng_session *s, int rc)
{
    if (rc != 0) {
        eng_fail(s, card_error(s, rc));
        return;
    }
    size_t n;
    const uint8_t *p = card_resp(s, &n);
    if (n != 4) {
        eng_fail(s, card_error(s, OTA_ERR_LENGTH));
        return;
    }
    s->chk->view.balance = (int32_t)dfc_get_le32(p);
    step_settle_plan(s);
}

/* After the lease: the records (an empty record file answers BE, so they
 * are read only when there are some) and the balance, in one batch. */
static void step_read_records(struct eng_session *s)
{
    if (s->chk->view.n_records > 0)
        read_records(s);
    s->step = "get_value";
    get_value(s, after_get_value);
}

static void read_records(struct eng_session *s)
{
    s->step = "read_records";
    uint8_t n = (uint8_t)s->chk->view.n_records;
    uint8_t hdr[7] = {PROF_FILE_RECORDS, 0, 0, 0, n, 0, 0};
    struct dfc_cmd_spec spec = {.ins = 0xBB,
                                .hdr = hdr,
                                .hdr_len = sizeof(hdr),
                                .cmd_comm = DFC_COMM_PLAIN,
                                .resp_comm = DFC_COMM_ENC,
                                .resp_len = (int)n * PROF_RECORD_SIZE};
    card_cmd(s, &spec, after_read_records);
}

static void after_read_records(struct eng_session *s, int rc)
{
    if (rc != 0) {
        eng_fail(s, card_error(s, rc));
        return;
    }
    size_t n;
    const uint8_t *p = card_resp(s, &n);
    if (n != (size_t)s->chk->view.n_records * PROF_RECORD_SIZE ||
        n > sizeof(s->chk->view.records)) {
        eng_fail(s, card_error(s, OTA_ERR_LENGTH));
        return;
    }
    memcpy(s->chk->view.records, p, n);
}

/* 3.  The lease and the ledger state in one statement; for a top-up, the
 * reservation too when the card is clean (op_topup.c fills the code). */
static void step_begin(struct eng_session *s)
{
    struct ledger_req req;
    s->step = "begin";
    eng_ledger_init(s, &req, LEDGER_BEGIN);
    eng_session_holder(s, req.u.begin.lease.holder);
    req.u.begin.lease.ttl_ms = s->ctx->cfg.lease_ms;
    topup_begin_args(s, &req);
    s->lease_requested = 1;
    eng_ledger_send(s, &req, after_begin);
}

static void after_begin(struct eng_session *s, const struct ledger_reply *r)
{
    if (r->status == LEDGER_ST_BUSY) {
        s->lease_requested = 0;
        eng_fail(s, WIRE_E_CARD_BUSY);
        return;
    }
    /* A code answer ends the session here (its code failure counted by
     * op_topup.c); nothing more is read from the card. */
    if (topup_begin_reply(s, r))
        return;
    if (r->status != LEDGER_ST_OK) {
        eng_fail(s, WIRE_E_INTERNAL);
        return;
    }
    s->chk->lstate = r->u.begin.card;
    if (s->chk->lstate.n_in_doubt > LEDGER_MAX_IN_DOUBT ||
        s->chk->lstate.n_committed > LEDGER_MAX_COMMITTED) {
        eng_fail(s, WIRE_E_INTERNAL); /* a reservation is voided */
        return;
    }
    s->prior_integrity = s->chk->lstate.integrity_failures;
    if (s->chk->lstate.frozen) {
        char tail[8];
        log_warn("card_is_frozen", "session=%llu uid=%s", (unsigned long long)s->id,
                 log_uid_tail(s->card.uid, s->card.uid_len, tail));
        eng_fail(s, WIRE_E_CARD_ERROR);
        return;
    }
    step_read_records(s);
}

/* What the card holds against what the ledger says (settle.c).  Any
 * refusal from here on fails the session before a WriteRecord, so a
 * reservation BEGIN made is voided by the closing path. */
static void step_settle_plan(struct eng_session *s)
{
    settle_plan(&s->chk->view, &s->chk->lstate, &s->chk->plan);
    if (s->chk->plan.unsupported) {
        unsupported(s, s->chk->plan.detail);
        return;
    }
    if (s->chk->plan.freeze) {
        s->need_freeze = 1;
        s->freeze_reason = LEDGER_FREEZE_RECORDS;
        snprintf(s->freeze_detail, sizeof(s->freeze_detail), "%s", s->chk->plan.detail);
        eng_fail(s, WIRE_E_CARD_ERROR);
        return;
    }
    s->chk->settle_idx = 0;
    step_settle_next(s);
}

/* A record with the txn_id on the card: committed; none: voided (the
 * AbortTransaction of step 2 discarded anything uncommitted). */
static void step_settle_next(struct eng_session *s)
{
    s->step = "settle";
    if (s->chk->settle_idx >= s->chk->plan.n) {
        s->chk->then(s);
        return;
    }
    int i = s->chk->settle_idx;
    struct ledger_req req;
    eng_ledger_init(s, &req, LEDGER_SETTLE);
    memcpy(req.u.settle.txn_id, s->chk->lstate.in_doubt[i].txn_id, LEDGER_TXN_ID_LEN);
    req.u.settle.outcome = s->chk->plan.outcome[i];
    req.u.settle.flags = s->chk->plan.flags[i];
    char tail[8];
    log_info("txn_settled", "session=%llu uid=%s outcome=%s flags=%u", (unsigned long long)s->id,
             log_uid_tail(s->card.uid, s->card.uid_len, tail),
             s->chk->plan.outcome[i] == LEDGER_COMMITTED ? "committed" : "voided",
             (unsigned)s->chk->plan.flags[i]);
    eng_ledger_send(s, &req, after_settle);
}

static void after_settle(struct eng_session *s, const struct ledger_reply *r)
{
    if (r->status == LEDGER_ST_CONFLICT) {
        /* The ledger already holds the other outcome: the card and the
         * ledger disagree about money.  Stop and let ops look. */
        s->need_freeze = 1;
        s->freeze_reason = LEDGER_FREEZE_RECORDS;
        snprintf(s->freeze_detail, sizeof(s->freeze_detail),
                 "in-doubt txn already has the other outcome");
        eng_fail(s, WIRE_E_CARD_ERROR);
        return;
    }
    if (r->status != LEDGER_ST_OK) {
        eng_fail(s, WIRE_E_INTERNAL);
        return;
    }
    s->chk->settle_idx++;
    step_settle_next(s);
}

/* `check`: steps 1-3, then the balance. */
static void check_done(struct eng_session *s)
{
    s->result.has = WIRE_RES_HAS_BALANCE;
    s->result.balance = s->chk->view.balance;
    if (s->prior_integrity > 0 && s->integrity_failures == 0)
        s->need_reset = 1;
    eng_succeed(s);
}

void op_check_start(struct eng_session *s)
{
    op_open_card(s, check_done);
}
