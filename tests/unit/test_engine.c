/* test_engine: the session engine's operations against the card simulator
 * and the in-memory ledger: check, topup and its refusals, the lease,
 * freezing, personalization.  Every test asserts the money invariants. */
#include <check.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card_profile.h"
#include "log.h"
#include "desfire_auth.h"
#include "desfire_session.h"
#include "ota_err.h"
#include "test_engine_harness.h"

#define TOKEN "operator-token-for-tests"

static void assert_result(const struct hx_run *r, uint8_t status, uint8_t error)
{
    ck_assert(r->have_result);
    ck_assert_msg(r->result.status == status && r->result.error == error,
                  "expected %s/%s, got %s/%s", wire_status_name(status), wire_error_name(error),
                  wire_status_name(r->result.status), wire_error_name(r->result.error));
}

START_TEST(check_fresh_card)
{
    struct hx h;
    hx_init(&h, 0);
    struct hx_run r;
    hx_check(&h, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert(r.result.has & WIRE_RES_HAS_BALANCE);
    ck_assert_int_eq(r.result.balance, 0);
    ck_assert(!ledger_mem_lease_held(h.lm, &h.lcard, h.now));
    /* The lease and the card's state in one request; the release. */
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_BEGIN), 1);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_LEASE_RELEASE), 1);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, 0), 2);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(topup_ok)
{
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, 1500);
    struct hx_run r;
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert(r.at_risk_seen);
    ck_assert_int_eq(r.result.amount, 1500);
    ck_assert(r.result.has & WIRE_RES_HAS_BALANCE);
    ck_assert_int_eq(r.result.balance, 1500);
    ck_assert_int_eq(hx_balance(&h), 1500);
    ck_assert_int_eq(ledger_mem_txn_state(h.lm, r.result.txn), LEDGER_MEM_TXN_COMMITTED);
    ck_assert_uint_eq(ledger_mem_txn_flags(h.lm, r.result.txn), 0);
    ck_assert_int_eq(ledger_mem_code_state(h.lm, h.codes[c].hash), LEDGER_MEM_CODE_USED);
    uint8_t recs[8][32];
    ck_assert_int_eq(hx_records(&h, recs, 8), 1);
    ck_assert_mem_eq(recs[0], r.result.txn, 16);
    ck_assert_int_eq(dfc_get_le32(recs[0] + PROF_REC_AMOUNT), 1500);
    ck_assert_int_eq(dfc_get_le32(recs[0] + PROF_REC_BALANCE), 1500);
    ck_assert_int_eq(recs[0][28] | recs[0][29] | recs[0][30] | recs[0][31], 0);
    ck_assert(!ledger_mem_lease_held(h.lm, &h.lcard, h.now));
    hx_assert_invariants(&h, 1, 0);

    /* A second top-up and a check see both. */
    int c2 = hx_add_code(&h, 250);
    hx_topup(&h, c2, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert_int_eq(r.result.balance, 1750);
    hx_check(&h, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert_int_eq(r.result.balance, 1750);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(topup_many_wraps_records)
{
    /* More top-ups than the cyclic file keeps: old records roll off and
     * the records check still agrees with the ledger. */
    struct hx h;
    hx_init(&h, 0);
    struct hx_run r;
    for (int i = 0; i < 11; i++) {
        int c = hx_add_code(&h, 10 + i);
        hx_topup(&h, c, NULL, &r);
        assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
        hx_assert_invariants(&h, 1, 0);
    }
    hx_check(&h, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    hx_free(&h);
}
END_TEST

START_TEST(topup_used_code)
{
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, 100);
    struct hx_run r;
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    unsigned writes_before = ledger_mem_requests(h.lm, LEDGER_SETTLE);
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_CODE_USED);
    ck_assert(!r.at_risk_seen);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_SETTLE), writes_before);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_CODE_FAILURE), 1);
    ck_assert_int_eq(hx_balance(&h), 100);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(topup_unknown_code)
{
    struct hx h;
    hx_init(&h, 0);
    hx_add_code(&h, 100);
    char other[CODE_DISPLAY_LEN + 1];
    ck_assert_int_eq(code_generate(other, sizeof(other)), 0);
    struct hx_run r;
    hx_run_op(&h, WIRE_OP_TOPUP, other, WIRE_LISTENER_PUBLIC, NULL, 0, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_CODE_INVALID);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_CODE_FAILURE), 1);
    ck_assert_int_eq(hx_balance(&h), 0);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(topup_bad_check_character)
{
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, 100);
    char typo[CODE_DISPLAY_LEN + 1];
    memcpy(typo, h.codes[c].text, sizeof(typo));
    /* Change one data character to another valid one: the check fails. */
    typo[0] = typo[0] == 'A' ? 'B' : 'A';
    struct hx_run r;
    hx_run_op(&h, WIRE_OP_TOPUP, typo, WIRE_LISTENER_PUBLIC, NULL, 0, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_CODE_INVALID);
    ck_assert_int_eq(r.ledger_requests, 0);
    ck_assert_int_eq(r.exchanges, 0);
    ck_assert_int_eq(ledger_mem_code_state(h.lm, h.codes[c].hash), LEDGER_MEM_CODE_ISSUED);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(wrong_uid_auth_failed)
{
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, 100);
    uint8_t liar[7];
    memcpy(liar, h.uid, 7);
    liar[6] ^= 0x5A;
    struct hx_run r;
    hx_run_op(&h, WIRE_OP_TOPUP, h.codes[c].text, WIRE_LISTENER_PUBLIC, liar, 7, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_AUTH_FAILED);
    ck_assert_int_eq(r.ledger_requests, 0); /* no lease, nothing reserved */
    ck_assert_int_eq(ledger_mem_code_state(h.lm, h.codes[c].hash), LEDGER_MEM_CODE_ISSUED);
    ck_assert_int_eq(hx_balance(&h), 0);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(card_busy)
{
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, 100);
    struct ledger_req req;
    struct ledger_reply rep;
    memset(&req, 0, sizeof(req));
    req.id = 999;
    req.type = LEDGER_LEASE_ACQUIRE;
    req.card = h.lcard;
    memset(req.u.lease.holder, 0xAB, sizeof(req.u.lease.holder));
    req.u.lease.ttl_ms = 90000;
    ledger_mem_handle(h.lm, &req, h.now, &rep);
    ck_assert_int_eq(rep.status, LEDGER_ST_OK);
    struct hx_run r;
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_CARD_BUSY);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_RESERVE), 0);
    /* A busy BEGIN did nothing else: the code was not reserved. */
    ck_assert_int_eq(ledger_mem_code_state(h.lm, h.codes[c].hash), LEDGER_MEM_CODE_ISSUED);
    ck_assert_int_eq(ledger_mem_in_doubt_count(h.lm, &h.lcard), 0);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_LEASE_RELEASE), 0);
    ck_assert(ledger_mem_lease_held(h.lm, &h.lcard, h.now)); /* still the other's */
    /* Once the other holder's lease expires, the card is free again. */
    h.now += 90001;
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(stalled_liar_does_not_lock_victim)
{
    /* A client names the victim's UID and stalls mid-authentication: no
     * lease was taken, so the victim's own top-up goes through. */
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, 300);
    struct wire_open open;
    memset(&open, 0, sizeof(open));
    open.op = WIRE_OP_CHECK;
    open.uid_len = 7;
    memcpy(open.uid, h.uid, 7);
    struct eng_actions acts;
    struct eng_session *liar = eng_open(h.ctx, 777, &open, h.now, &acts);
    ck_assert_ptr_nonnull(liar);
    ck_assert_uint_eq(acts.n, 1);
    ck_assert_int_eq(acts.a[0].type, ENG_A_APDU);
    /* The liar's select answered (by some card), then silence in auth. */
    static const uint8_t ok[] = {0x91, 0x00};
    eng_on_card_response(liar, ok, sizeof(ok), h.now, &acts);
    ck_assert_int_eq(acts.a[0].type, ENG_A_APDU);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, 0), 0);
    struct hx_run r;
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    /* The liar then times out without touching the ledger. */
    unsigned before = ledger_mem_requests(h.lm, 0);
    eng_on_timeout(liar, h.now + 3600000, &acts);
    int done = 0;
    for (size_t i = 0; i < acts.n; i++) {
        ck_assert_int_ne(acts.a[i].type, ENG_A_LEDGER);
        if (acts.a[i].type == ENG_A_RESULT)
            ck_assert_int_eq(acts.a[i].u.result.error, WIRE_E_TIMEOUT);
        done |= acts.a[i].type == ENG_A_DONE;
    }
    ck_assert(done);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, 0), before);
    eng_free(liar);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

/* Runs a top-up with a wrong code (never issued) from `peer`. */
static void wrong_code(struct hx *h, const char *peer, struct hx_run *r)
{
    char other[CODE_DISPLAY_LEN + 1];
    ck_assert_int_eq(code_generate(other, sizeof(other)), 0);
    snprintf(h->peer, sizeof(h->peer), "%s", peer);
    hx_run_op(h, WIRE_OP_TOPUP, other, WIRE_LISTENER_PUBLIC, NULL, 0, NULL, r);
}

START_TEST(rate_limit_per_card)
{
    /* Issue 16 point 4: wrong codes for a card, from anywhere, throttle
     * that card's wrong codes; its holder's valid code always goes through. */
    struct hx h;
    hx_init(&h, 0);
    int good = hx_add_code(&h, 100);
    struct hx_run r;
    char peer[32];
    for (unsigned i = 0; i < h.cfg.code_failures_per_card; i++) {
        snprintf(peer, sizeof(peer), "192.0.2.%u", 10 + i);
        wrong_code(&h, peer, &r);
        assert_result(&r, WIRE_ST_FAILED, WIRE_E_CODE_INVALID);
    }
    /* Over the limit: a wrong code answers limit-exceeded, only after the
     * delay (simulated time), and is counted. */
    wrong_code(&h, "192.0.2.99", &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_LIMIT_EXCEEDED);
    ck_assert_uint_ge(h.now - 10, r.open_ms + h.cfg.code_failure_delay_ms);
    ck_assert(!ledger_mem_lease_held(h.lm, &h.lcard, r.open_ms + 100));
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_CODE_FAILURE),
                      h.cfg.code_failures_per_card + 1);
    /* The holder's valid code is never refused by the limit. */
    snprintf(h.peer, sizeof(h.peer), "198.51.100.1");
    hx_topup(&h, good, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(rate_limit_per_address_never_refuses_a_valid_code)
{
    /* Issue 16 point 5: one address is many phones.  Wrong codes over the
     * address's limit are throttled; a valid code from it still tops up. */
    struct hx h;
    hx_init(&h, 0);
    h.cfg.code_failures_per_peer = 3;
    h.cfg.code_failures_per_card = 100;
    hx_reconfigure(&h);
    int good = hx_add_code(&h, 250);
    struct hx_run r;
    for (int i = 0; i < 3; i++) {
        wrong_code(&h, "203.0.113.5", &r);
        assert_result(&r, WIRE_ST_FAILED, WIRE_E_CODE_INVALID);
    }
    wrong_code(&h, "203.0.113.5", &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_LIMIT_EXCEEDED);
    ck_assert_uint_ge(h.now - 10, r.open_ms + h.cfg.code_failure_delay_ms);
    /* Another address is not affected at all. */
    wrong_code(&h, "203.0.113.6", &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_CODE_INVALID);
    snprintf(h.peer, sizeof(h.peer), "203.0.113.5");
    hx_topup(&h, good, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert_uint_lt(h.now - 10, r.open_ms + h.cfg.code_failure_delay_ms);
    /* A used code is a wrong code: over the limit, throttled too. */
    hx_topup(&h, good, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_LIMIT_EXCEEDED);
    /* After the window, wrong codes answer at once again. */
    h.now += (uint64_t)h.cfg.code_failure_window_s * 1000 + 1;
    wrong_code(&h, "203.0.113.5", &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_CODE_INVALID);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(amount_over_limit_releases_code)
{
    /* A code that would push the balance past the value file's upper limit
     * is refused before any command that moves money (BEGIN reserved it
     * before the balance was read), and its reservation voided. */
    struct hx h;
    hx_init(&h, 0);
    h.cfg.max_amount = PROF_VALUE_UPPER;
    hx_reconfigure(&h);
    int big = hx_add_code(&h, PROF_VALUE_UPPER - 50);
    struct hx_run r;
    hx_topup(&h, big, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    int c = hx_add_code(&h, 100);
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_CARD_ERROR);
    ck_assert(!r.at_risk_seen);
    ck_assert_int_eq(ledger_mem_code_state(h.lm, h.codes[c].hash), LEDGER_MEM_CODE_ISSUED);
    ck_assert_int_eq(ledger_mem_in_doubt_count(h.lm, &h.lcard), 0);
    ck_assert_int_eq(hx_balance(&h), PROF_VALUE_UPPER - 50);
    /* A code above topup.max_amount is refused the same way. */
    h.cfg.max_amount = 10;
    hx_reconfigure(&h);
    int c2 = hx_add_code(&h, 20);
    hx_topup(&h, c2, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_CODE_INVALID);
    ck_assert_int_eq(ledger_mem_code_state(h.lm, h.codes[c2].hash), LEDGER_MEM_CODE_ISSUED);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(foreign_balance_unsupported)
{
    struct hx h;
    hx_init(&h, 500); /* money the ledger never saw */
    int c = hx_add_code(&h, 100);
    struct hx_run r;
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_UNSUPPORTED_CARD);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_RESERVE), 0);
    ck_assert_int_eq(hx_balance(&h), 500);
    hx_free(&h);
}
END_TEST

/* Reserves code on the harness card and settles it with outcome, in the
 * ledger alone: the card never sees this transaction. */
static void book_in_ledger_only(struct hx *h, int code, enum ledger_outcome outcome)
{
    struct ledger_req req;
    struct ledger_reply rep;
    memset(&req, 0, sizeof(req));
    req.id = 1;
    req.type = LEDGER_RESERVE;
    req.card = h->lcard;
    memcpy(req.u.reserve.code_hash, h->codes[code].hash, CODE_HASH_LEN);
    req.u.reserve.max_card_failures = 5;
    req.u.reserve.max_peer_failures = 5;
    req.u.reserve.window_s = 60;
    ledger_mem_handle(h->lm, &req, h->now, &rep);
    ck_assert_int_eq(rep.status, LEDGER_ST_OK);
    uint8_t txn[LEDGER_TXN_ID_LEN];
    memcpy(txn, rep.u.reserve.txn_id, sizeof txn);
    memset(&req, 0, sizeof(req));
    req.id = 2;
    req.type = LEDGER_SETTLE;
    req.card = h->lcard;
    memcpy(req.u.settle.txn_id, txn, sizeof txn);
    req.u.settle.outcome = outcome;
    ledger_mem_handle(h->lm, &req, h->now, &rep);
    ck_assert_int_eq(rep.status, LEDGER_ST_OK);
}

START_TEST(freeze_missing_record)
{
    /* The ledger holds a committed top-up whose record is not on the card. */
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, 100);
    book_in_ledger_only(&h, c, LEDGER_COMMITTED);

    int c2 = hx_add_code(&h, 100);
    struct hx_run r;
    hx_topup(&h, c2, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_CARD_ERROR);
    ck_assert(ledger_mem_frozen(h.lm, &h.lcard));
    ck_assert_int_eq(ledger_mem_code_state(h.lm, h.codes[c2].hash), LEDGER_MEM_CODE_ISSUED);
    hx_check(&h, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_CARD_ERROR);
    ck_assert_int_eq(hx_balance(&h), 0);
    hx_free(&h);
}
END_TEST

START_TEST(freeze_unknown_record)
{
    /* The card carries a record of a txn this ledger does not know. */
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, 100);
    struct hx_run r;
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    /* A second ledger in which the card has history, but not that txn. */
    ledger_mem_free(h.lm);
    h.ldb = h.lm = ledger_mem_new();
    h.ncodes = 0;
    int v = hx_add_code(&h, 5);
    book_in_ledger_only(&h, v, LEDGER_VOIDED);
    hx_check(&h, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_CARD_ERROR);
    ck_assert(ledger_mem_frozen(h.lm, &h.lcard));
    hx_free(&h);
}
END_TEST

START_TEST(tampered_checks_never_freeze)
{
    /* Issue 16 point 4: anyone who reaches a card for a second can tamper
     * with a check's answers.  Without money at risk, the failures are
     * logged and counted in metrics, never toward freezing. */
    struct hx h;
    hx_init(&h, 0);
    struct hx_run r;
    /* Exchanges: select 0, authenticate 1-2, AbortTransaction 3; flip the
     * first byte of the abort answer's MAC. */
    struct hx_fault f = {.kind = HX_TAMPER, .at = 3, .pos = 0};
    for (int i = 0; i < 5; i++) {
        hx_run_op(&h, WIRE_OP_CHECK, "", WIRE_LISTENER_PUBLIC, NULL, 0, &f, &r);
        assert_result(&r, WIRE_ST_FAILED, WIRE_E_INTEGRITY);
        ck_assert_uint_eq(ledger_mem_integrity_failures(h.lm, &h.lcard), 0);
        ck_assert(!ledger_mem_frozen(h.lm, &h.lcard));
    }
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_INTEGRITY_FAILURE), 0);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_FREEZE), 0);
    ck_assert_uint_eq(eng_integrity_failures(h.ctx), 5);
    int c = hx_add_code(&h, 100);
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

/* The exchange index of the read-back (GetValue, the last exchange) of a
 * top-up on a card that already has `prior` top-ups (reading more records
 * takes more frames). */
static int read_back_exchange(int prior)
{
    struct hx p;
    hx_init(&p, 0);
    struct hx_run r;
    for (int i = 0; i <= prior; i++) {
        hx_topup(&p, hx_add_code(&p, 100), NULL, &r);
        assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    }
    hx_free(&p);
    return r.exchanges - 1;
}

START_TEST(freeze_after_three_integrity_failures_at_risk)
{
    /* After the WriteRecord went out, money may be at risk: three such
     * failures in a row freeze the card (a clean session in between resets
     * the count). */
    struct hx h;
    hx_init(&h, 0);
    struct hx_run r;
    int prior = 0;
    for (int i = 0; i < 3; i++) {
        struct hx_fault f = {.kind = HX_TAMPER, .at = read_back_exchange(prior), .pos = 0};
        hx_topup(&h, hx_add_code(&h, 100), &f, &r);
        prior++;
        ck_assert(r.fault_applied);
        /* The commit was verified: booked, flagged for the read-back. */
        assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
        ck_assert(ledger_mem_txn_flags(h.lm, r.result.txn) & LEDGER_FLAG_READBACK);
        ck_assert_uint_eq(ledger_mem_integrity_failures(h.lm, &h.lcard), (unsigned)i + 1);
        ck_assert_int_eq(ledger_mem_frozen(h.lm, &h.lcard), i == 2);
        if (i == 0) {
            hx_check(&h, &r);
            assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
            ck_assert_uint_eq(ledger_mem_integrity_failures(h.lm, &h.lcard), 0);
            f.at = read_back_exchange(prior);
            hx_topup(&h, hx_add_code(&h, 100), &f, &r);
            prior++;
            assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
            ck_assert_uint_eq(ledger_mem_integrity_failures(h.lm, &h.lcard), 1);
        }
    }
    /* Four bookings flagged for their read-back: the engine counted each
     * once, as it decided it. */
    uint64_t signs[WIRE_SIGN_COUNT];
    eng_signs(h.ctx, signs);
    ck_assert_uint_eq(signs[WIRE_SIGN_READBACK], 4);
    int c = hx_add_code(&h, 100);
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_CARD_ERROR);
    ck_assert_int_eq(hx_balance(&h), 400);
    /* An operator unfreezes it; top-ups work again. */
    ledger_mem_set_frozen(h.lm, &h.lcard, 0);
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

/* A clean top-up is two committing requests: BEGIN (lease, card state,
 * reservation) and the booking, which also releases the lease.  A top-up
 * that must reset the card's integrity count first keeps the release for
 * the end. */
START_TEST(topup_books_and_releases_in_one_request)
{
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, 700);
    struct hx_run r;
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert(!ledger_mem_lease_held(h.lm, &h.lcard, h.now));
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_BEGIN), 1);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_SETTLE), 1);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, 0), 2);
    ck_assert_int_ge(r.reserve_at, 0);
    ck_assert_int_lt(r.reserve_at, r.first_money);

    /* One integrity failure on record (a tampered read-back: money at
     * risk, so it counts and the release waits for it); the next clean
     * top-up resets it, then releases the lease on its own. */
    struct hx_fault f = {.kind = HX_TAMPER, .at = read_back_exchange(1), .pos = 0};
    hx_topup(&h, hx_add_code(&h, 100), &f, &r);
    ck_assert(r.fault_applied);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert_uint_eq(ledger_mem_integrity_failures(h.lm, &h.lcard), 1);
    ck_assert(!ledger_mem_lease_held(h.lm, &h.lcard, h.now));
    unsigned released = ledger_mem_requests(h.lm, LEDGER_LEASE_RELEASE);
    int c2 = hx_add_code(&h, 300);
    hx_topup(&h, c2, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert_uint_eq(ledger_mem_integrity_failures(h.lm, &h.lcard), 0);
    ck_assert_uint_eq(ledger_mem_requests(h.lm, LEDGER_LEASE_RELEASE), released + 1);
    ck_assert(!ledger_mem_lease_held(h.lm, &h.lcard, h.now));
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(closing_grace_outlasts_the_ledger_timeout)
{
    /* Issue 16 point 11: a closing request answered after the database's
     * own timeout window is still absorbed (here: the lease release), not
     * dropped with the lease held for its whole length. */
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, 100);
    struct wire_open open;
    memset(&open, 0, sizeof(open));
    open.op = WIRE_OP_TOPUP;
    open.uid_len = 7;
    memcpy(open.uid, h.uid, 7);
    open.authcode_len = (uint16_t)strlen(h.codes[c].text);
    memcpy(open.authcode, h.codes[c].text, open.authcode_len);
    struct eng_actions acts;
    struct eng_session *s = eng_open(h.ctx, 42, &open, h.now, &acts);
    ck_assert_ptr_nonnull(s);
    /* Answer every request and command until the WriteRecord goes out:
     * the card is leased (the lease follows the card's authentication and
     * reads) and a command is outstanding. */
    struct ledger_reply rep;
    for (;;) {
        ck_assert_uint_ge(acts.n, 1);
        const struct eng_action *a = &acts.a[acts.n - 1];
        if (a->type == ENG_A_APDU && a->u.apdu.data[1] == 0x3B)
            break;
        if (a->type == ENG_A_LEDGER) {
            ledger_mem_handle(h.lm, &a->u.ledger, h.now, &rep);
            eng_on_ledger_reply(s, &rep, h.now, &acts);
        } else {
            ck_assert_int_eq(a->type, ENG_A_APDU);
            uint8_t resp[WIRE_MAX_APDU];
            size_t rlen = 0;
            ck_assert_int_eq(sim_card_transceive(h.card, a->u.apdu.data, a->u.apdu.len, resp,
                                                 sizeof(resp), &rlen),
                             0);
            eng_on_card_response(s, resp, rlen, h.now, &acts);
        }
    }
    ck_assert(ledger_mem_lease_held(h.lm, &h.lcard, h.now));
    /* The phone goes away: the session closes with the lease release. */
    eng_on_client_gone(s, h.now, &acts);
    ck_assert_uint_eq(acts.n, 1);
    ck_assert_int_eq(acts.a[0].type, ENG_A_LEDGER);
    ck_assert_int_eq(acts.a[0].u.ledger.type, LEDGER_LEASE_RELEASE);
    struct ledger_req release = acts.a[0].u.ledger;
    ck_assert_uint_gt(acts.timer_at_ms, h.now + h.cfg.ledger_timeout_ms);
    uint64_t t0 = h.now;
    /* The database answers just before its own timeout. */
    eng_on_timeout(s, t0 + h.cfg.ledger_timeout_ms - 1, &acts);
    ck_assert_uint_eq(acts.n, 0);
    ledger_mem_handle(h.lm, &release, t0 + h.cfg.ledger_timeout_ms - 1, &rep);
    eng_on_ledger_reply(s, &rep, t0 + h.cfg.ledger_timeout_ms - 1, &acts);
    ck_assert_uint_eq(acts.n, 2);
    ck_assert_int_eq(acts.a[0].type, ENG_A_RESULT);
    ck_assert_int_eq(acts.a[1].type, ENG_A_DONE);
    ck_assert(!ledger_mem_lease_held(h.lm, &h.lcard, t0 + h.cfg.ledger_timeout_ms));
    eng_free(s);
    /* A configuration without a ledger timeout is refused. */
    h.cfg.ledger_timeout_ms = 0;
    ck_assert_ptr_null(eng_new(&h.cfg, &h.keys));
    hx_free(&h);
}
END_TEST

START_TEST(keep_pending_on_select_auth)
{
    /* Issue 9: a card that keeps pending changes across select and
     * authentication.  The relay keeps it powered, drops the session after
     * the Credit, lets the next session settle, then commits on its own:
     * it gains nothing, because that session's AbortTransaction discarded
     * the pending record and credit before the entry was voided. */
    struct hx h;
    hx_init(&h, 0);
    sim_card_set_flags(h.card, SIM_FLAG_KEEP_PENDING_ON_SELECT_AUTH);
    int c = hx_add_code(&h, 700);
    struct hx_run clean;
    {
        struct hx probe;
        hx_init(&probe, 0);
        int pc = hx_add_code(&probe, 700);
        hx_topup(&probe, pc, NULL, &clean);
        assert_result(&clean, WIRE_ST_OK, WIRE_E_NONE);
        hx_free(&probe);
    }
    /* The Credit is the third exchange from the end (credit, commit,
     * read-back); drop the session right after the card accepted it. */
    int credit_at = clean.exchanges - 3;
    struct hx_fault f = {.kind = HX_LOST_AFTER, .at = credit_at};
    struct hx_run r;
    hx_topup(&h, c, &f, &r);
    assert_result(&r, WIRE_ST_PENDING, WIRE_E_LOST_TAG);
    hx_check(&h, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert_int_eq(r.result.balance, 0);
    ck_assert_int_eq(ledger_mem_code_state(h.lm, h.codes[c].hash), LEDGER_MEM_CODE_ISSUED);
    static const uint8_t commit[] = {0x90, 0xC7, 0x00, 0x00, 0x00};
    uint8_t resp[64];
    size_t rlen;
    ck_assert_int_eq(sim_card_transceive(h.card, commit, sizeof(commit), resp, sizeof(resp), &rlen),
                     0);
    ck_assert_int_eq(hx_balance(&h), 0);
    uint8_t recs[8][32];
    ck_assert_int_eq(hx_records(&h, recs, 8), 0);
    hx_assert_invariants(&h, 1, 0);
    /* The released code still works, once. */
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert_int_eq(hx_balance(&h), 700);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

static void set_token(struct hx *h, const char *token)
{
    char hash[crypto_pwhash_STRBYTES];
    ck_assert_int_eq(crypto_pwhash_str(hash, token, strlen(token), crypto_pwhash_OPSLIMIT_MIN,
                                       crypto_pwhash_MEMLIMIT_MIN),
                     0);
    ck_assert_uint_le(strlen(hash) + 1, sizeof(h->token_hash));
    memcpy(h->token_hash, hash, strlen(hash) + 1);
}

static int zero_des_picc_authenticates(struct hx *h)
{
    static const uint8_t sel[] = {0x90, 0x5A, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00};
    uint8_t resp[64], apdu[64];
    size_t rlen, alen;
    ck_assert_int_eq(sim_card_transceive(h->card, sel, sizeof(sel), resp, sizeof(resp), &rlen), 0);
    static const uint8_t zero[16];
    struct dfc_auth a;
    struct dfc_session s;
    memset(&a, 0, sizeof(a));
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(dfc_auth_start(&a, DFC_TDES2, 0, zero, apdu, sizeof(apdu), &alen), 0);
    int rc;
    do {
        ck_assert_int_eq(sim_card_transceive(h->card, apdu, alen, resp, sizeof(resp), &rlen), 0);
        rc = dfc_auth_feed(&a, resp, rlen, apdu, sizeof(apdu), &alen, &s);
    } while (rc == DFC_MORE);
    dfc_auth_clear(&a);
    dfc_session_clear(&s);
    return rc == 0;
}

static void personalize_then_topup(enum sim_picc_key picc)
{
    struct hx h;
    hx_init_factory(&h, picc);
    h.cfg.picc_key = picc == SIM_PICC_AES0 ? ENG_PICC_AES0 : ENG_PICC_DES0;
    hx_reconfigure(&h);
    set_token(&h, TOKEN);
    struct hx_run r;
    hx_run_op(&h, WIRE_OP_PERSONALIZE, TOKEN, WIRE_LISTENER_OPERATOR, NULL, 0, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert(ledger_mem_personalized(h.lm, &h.lcard));
    if (picc == SIM_PICC_DES0)
        ck_assert(!zero_des_picc_authenticates(&h));
    /* DeleteApplication without the PICC key is refused. */
    static const uint8_t sel[] = {0x90, 0x5A, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t del[] = {0x90, 0xDA, 0x00, 0x00, 0x03, 0xEE, 0xFF, 0xC0, 0x00};
    uint8_t resp[64];
    size_t rlen;
    ck_assert_int_eq(sim_card_transceive(h.card, sel, sizeof(sel), resp, sizeof(resp), &rlen), 0);
    ck_assert_int_eq(sim_card_transceive(h.card, del, sizeof(del), resp, sizeof(resp), &rlen), 0);
    ck_assert(rlen == 2 && resp[0] == 0x91 && resp[1] != 0x00);

    hx_check(&h, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert_int_eq(r.result.balance, 0);
    int c = hx_add_code(&h, 900);
    hx_topup(&h, c, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert_int_eq(hx_balance(&h), 900);
    /* Personalizing again leaves the card as it is. */
    hx_run_op(&h, WIRE_OP_PERSONALIZE, TOKEN, WIRE_LISTENER_OPERATOR, NULL, 0, NULL, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert_int_eq(hx_balance(&h), 900);
    hx_check(&h, &r);
    assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
    ck_assert_int_eq(r.result.balance, 900);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}

START_TEST(personalize_des_factory_card)
{
    personalize_then_topup(SIM_PICC_DES0);
}
END_TEST

START_TEST(personalize_aes_factory_card)
{
    personalize_then_topup(SIM_PICC_AES0);
}
END_TEST

START_TEST(personalize_interrupted_then_retried)
{
    /* Cut the personalization at every exchange; a retry always finishes
     * it, and the card then tops up. */
    struct hx h0;
    hx_init_factory(&h0, SIM_PICC_DES0);
    set_token(&h0, TOKEN);
    struct hx_run clean;
    hx_run_op(&h0, WIRE_OP_PERSONALIZE, TOKEN, WIRE_LISTENER_OPERATOR, NULL, 0, NULL, &clean);
    assert_result(&clean, WIRE_ST_OK, WIRE_E_NONE);
    hx_free(&h0);
    int cases = 0;
    for (int k = 0; k < clean.exchanges; k++) {
        for (int kind = 0; kind < 2; kind++) {
            struct hx h;
            hx_init_factory(&h, SIM_PICC_DES0);
            set_token(&h, TOKEN);
            struct hx_fault f = {.kind = kind ? HX_TEAR : HX_LOST_AFTER, .at = k};
            struct hx_run r;
            hx_run_op(&h, WIRE_OP_PERSONALIZE, TOKEN, WIRE_LISTENER_OPERATOR, NULL, 0, &f, &r);
            ck_assert(r.fault_applied);
            ck_assert_int_ne(r.result.status, WIRE_ST_OK);
            hx_run_op(&h, WIRE_OP_PERSONALIZE, TOKEN, WIRE_LISTENER_OPERATOR, NULL, 0, NULL, &r);
            ck_assert_msg(r.result.status == WIRE_ST_OK, "retry after cut at %d (%s): %s", k,
                          kind ? "tear" : "lost", wire_error_name(r.result.error));
            ck_assert(!zero_des_picc_authenticates(&h));
            int c = hx_add_code(&h, 40);
            hx_topup(&h, c, NULL, &r);
            assert_result(&r, WIRE_ST_OK, WIRE_E_NONE);
            hx_assert_invariants(&h, 1, 0);
            hx_free(&h);
            cases++;
        }
    }
    ck_assert_int_gt(cases, 20);
}
END_TEST

START_TEST(personalize_refused_public_listener)
{
    struct hx h;
    hx_init_factory(&h, SIM_PICC_DES0);
    set_token(&h, TOKEN);
    struct hx_run r;
    hx_run_op(&h, WIRE_OP_PERSONALIZE, TOKEN, WIRE_LISTENER_PUBLIC, NULL, 0, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_BAD_REQUEST);
    ck_assert_int_eq(r.exchanges, 0);
    ck_assert_int_eq(r.ledger_requests, 0);
    ck_assert(zero_des_picc_authenticates(&h));
    hx_free(&h);
}
END_TEST

START_TEST(personalize_refused_wrong_token)
{
    struct hx h;
    hx_init_factory(&h, SIM_PICC_DES0);
    set_token(&h, TOKEN);
    struct hx_run r;
    hx_run_op(&h, WIRE_OP_PERSONALIZE, "not-the-token", WIRE_LISTENER_OPERATOR, NULL, 0, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_AUTH_FAILED);
    ck_assert_int_eq(r.token_checks, 1);
    ck_assert_int_eq(r.exchanges, 0);
    /* No token at all: refused without asking. */
    hx_run_op(&h, WIRE_OP_PERSONALIZE, "", WIRE_LISTENER_OPERATOR, NULL, 0, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_AUTH_FAILED);
    ck_assert_int_eq(r.token_checks, 0);
    ck_assert_int_eq(r.exchanges, 0);
    ck_assert(zero_des_picc_authenticates(&h));
    hx_free(&h);
}
END_TEST

START_TEST(bad_requests)
{
    struct hx h;
    hx_init(&h, 0);
    struct hx_run r;
    hx_run_op(&h, 9, "", WIRE_LISTENER_PUBLIC, NULL, 0, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_BAD_REQUEST);
    static const uint8_t five[5] = {1, 2, 3, 4, 5};
    hx_run_op(&h, WIRE_OP_CHECK, "", WIRE_LISTENER_PUBLIC, five, 5, NULL, &r);
    assert_result(&r, WIRE_ST_FAILED, WIRE_E_BAD_REQUEST);
    ck_assert_int_eq(ledger_mem_requests(h.lm, 0), 0);
    hx_free(&h);
}
END_TEST

static Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, check_fresh_card);
    tcase_add_test(tc, topup_ok);
    tcase_add_test(tc, topup_books_and_releases_in_one_request);
    tcase_add_test(tc, topup_many_wraps_records);
    tcase_add_test(tc, topup_used_code);
    tcase_add_test(tc, topup_unknown_code);
    tcase_add_test(tc, topup_bad_check_character);
    tcase_add_test(tc, wrong_uid_auth_failed);
    tcase_add_test(tc, card_busy);
    tcase_add_test(tc, stalled_liar_does_not_lock_victim);
    tcase_add_test(tc, rate_limit_per_card);
    tcase_add_test(tc, rate_limit_per_address_never_refuses_a_valid_code);
    tcase_add_test(tc, amount_over_limit_releases_code);
    tcase_add_test(tc, foreign_balance_unsupported);
    tcase_add_test(tc, freeze_missing_record);
    tcase_add_test(tc, freeze_unknown_record);
    tcase_add_test(tc, tampered_checks_never_freeze);
    tcase_add_test(tc, freeze_after_three_integrity_failures_at_risk);
    tcase_add_test(tc, closing_grace_outlasts_the_ledger_timeout);
    tcase_add_test(tc, keep_pending_on_select_auth);
    tcase_add_test(tc, personalize_des_factory_card);
    tcase_add_test(tc, personalize_aes_factory_card);
    tcase_add_test(tc, personalize_interrupted_then_retried);
    tcase_add_test(tc, personalize_refused_public_listener);
    tcase_add_test(tc, personalize_refused_wrong_token);
    tcase_add_test(tc, bad_requests);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test_engine", "-", 0, LOG_LVL_WARN);
    SRunner *sr = srunner_create(engine_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
