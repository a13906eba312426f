/* test_engine_faults: the deterministic fault matrix of a top-up.  For
 * every card exchange k of a clean top-up and every fault (client lost
 * before / after the command, client gone, answer dropped, card torn,
 * every answer byte flipped, the previous answer replayed, the relay's own
 * CommitTransaction before / after the command) and for every ledger
 * request failing before / after its commit, a fresh card is topped up
 * with the fault, a new session settles it, and the money invariants are
 * asserted.  Prints how many cases ran.
 *
 * The same file, built with HX_LEDGER_PG (tests/integration/
 * test_engine_faults_pg.sh), runs every case against the PostgreSQL ledger
 * (worker/ledger_pg.c and schema/) instead of the in-memory one. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card_profile.h"
#include "log.h"
#include "test_engine_harness.h"
#ifdef HX_LEDGER_PG
#include "hx_ledger_pg.h"
#endif

#define AMOUNT 1234

static int clean_exchanges(void)
{
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, AMOUNT);
    struct hx_run r;
    hx_topup(&h, c, NULL, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    int n = r.exchanges;
    hx_free(&h);
    return n;
}

/* Faulted top-ups that failed after BEGIN reserved their code and sent
 * card commands (the reads), before any WriteRecord: the worker voided
 * those reservations itself. */
static int voided_after_begin;

/* Runs one faulted top-up and its settling session; asserts everything
 * that must hold whatever the fault. */
static void one_case(const struct hx_fault *f, int allow_relay_loss)
{
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, AMOUNT);
    struct hx_run r;
    hx_topup(&h, c, f, &r);
    ck_assert(r.fault_applied);
    /* A money-moving command only after the ledger said the code is reserved. */
    ck_assert(r.first_money < 0 || (r.reserve_at >= 0 && r.first_money >= r.reserve_at));
    /* What the client was told must not lie. */
    if (r.result.status == WIRE_ST_OK) {
        ck_assert_int_eq(hx_balance(&h), AMOUNT);
        ck_assert_int_eq(hx_txn_state(&h, r.result.txn), LEDGER_MEM_TXN_COMMITTED);
    } else if (r.result.status == WIRE_ST_FAILED) {
        /* failed means no WriteRecord went out: nothing can be on the card. */
        ck_assert_int_eq(hx_balance(&h), 0);
        ck_assert(!r.at_risk_seen);
        /* Whatever BEGIN reserved, the session voided it itself: nothing
         * in doubt, the code free again. */
        ck_assert_int_eq(hx_in_doubt_count(&h), 0);
        ck_assert_int_eq(hx_code_state(&h, c), LEDGER_MEM_CODE_ISSUED);
        if (r.reserve_at >= 0 && r.exchanges > r.reserve_at)
            voided_after_begin++;
    }
    ck_assert(!hx_lease_held(&h));
    hx_assert_invariants(&h, 0, allow_relay_loss);

    struct hx_run s;
    hx_check(&h, &s);
    ck_assert_msg(s.result.status == WIRE_ST_OK, "settling session: %s/%s (fault %d at %d pos %d)",
                  wire_status_name(s.result.status), wire_error_name(s.result.error), f->kind,
                  f->at, f->pos);
    hx_assert_invariants(&h, 1, allow_relay_loss);
    /* A code is never usable twice: retrying it credits only if nothing
     * was committed with it. */
    int committed_before = hx_code_commits(&h, c);
    hx_topup(&h, c, NULL, &r);
    if (committed_before)
        ck_assert_int_eq(r.result.error, WIRE_E_CODE_USED);
    else
        ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    hx_assert_invariants(&h, 1, allow_relay_loss);
    hx_free(&h);
}

START_TEST(client_faults_at_every_exchange)
{
    static const enum hx_fault_kind kinds[] = {HX_LOST_BEFORE, HX_LOST_AFTER, HX_GONE_AFTER,
                                               HX_DROP,        HX_TEAR,       HX_REPLAY};
    int n = clean_exchanges();
    int cases = 0;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        for (int k = 0; k < n; k++) {
            struct hx_fault f = {.kind = kinds[i], .at = k};
            one_case(&f, 0);
            cases++;
        }
    }
    printf("engine fault matrix: %d client/card cases over %d exchanges (%d voided after "
           "BEGIN reserved)\n",
           cases, n, voided_after_begin);
    ck_assert_int_eq(cases, 6 * n);
    ck_assert_int_gt(voided_after_begin, 0);
}
END_TEST

START_TEST(answers_replayed_from_an_earlier_session)
{
    /* A relay that recorded a whole earlier top-up of this card plays its
     * answers back, one exchange at a time, into a new top-up. */
    int n = clean_exchanges();
    int cases = 0;
    for (int k = 0; k < n; k++) {
        struct hx h;
        hx_init(&h, 0);
        int first = hx_add_code(&h, 11);
        struct hx_run r;
        hx_topup(&h, first, NULL, &r);
        ck_assert_int_eq(r.result.status, WIRE_ST_OK);
        int c = hx_add_code(&h, AMOUNT);
        struct hx_fault f = {.kind = HX_REPLAY_OLD, .at = k};
        hx_topup(&h, c, &f, &r);
        ck_assert(r.fault_applied);
        if (r.result.status == WIRE_ST_FAILED)
            ck_assert_int_eq(hx_balance(&h), 11);
        hx_assert_invariants(&h, 0, 0);
        struct hx_run s;
        hx_check(&h, &s);
        ck_assert_int_eq(s.result.status, WIRE_ST_OK);
        hx_assert_invariants(&h, 1, 0);
        hx_free(&h);
        cases++;
    }
    printf("engine fault matrix: %d replayed-from-earlier-session cases\n", cases);
    ck_assert_int_eq(cases, n);
}
END_TEST

START_TEST(tampered_answers_every_byte)
{
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, AMOUNT);
    struct hx_run clean;
    hx_topup(&h, c, NULL, &clean);
    ck_assert_int_eq(clean.result.status, WIRE_ST_OK);
    hx_free(&h);
    int cases = 0;
    for (int k = 0; k < clean.exchanges; k++) {
        ck_assert_int_gt(clean.answer_len[k], 0);
        for (int pos = 0; pos < clean.answer_len[k]; pos++) {
            struct hx_fault f = {.kind = HX_TAMPER, .at = k, .pos = pos};
            one_case(&f, 0);
            cases++;
        }
    }
    printf("engine fault matrix: %d tampered-answer cases (every byte of %d answers)\n", cases,
           clean.exchanges);
    ck_assert_int_gt(cases, clean.exchanges * 2);
}
END_TEST

START_TEST(relay_commit_at_every_step)
{
    /* The relay needs no key to send CommitTransaction.  Whatever step it
     * picks, no credit ever reaches the card without its record and no
     * code is used twice; the one loss left is the relay's own (a commit
     * between WriteRecord and Credit), booked committed and flagged. */
    int n = clean_exchanges();
    int cases = 0;
    for (int k = 0; k < n; k++) {
        for (int after = 0; after < 2; after++) {
            struct hx_fault f = {.kind = after ? HX_RELAY_COMMIT_AFTER : HX_RELAY_COMMIT, .at = k};
            one_case(&f, 1);
            cases++;
        }
    }
    printf("engine fault matrix: %d relay-commit cases\n", cases);
    ck_assert_int_eq(cases, 2 * n);
}
END_TEST

START_TEST(relay_commit_between_record_and_credit_is_flagged)
{
    int n = clean_exchanges();
    /* WriteRecord takes two frames and is followed by Credit, CommitTransaction
     * and the read-back: the Credit is exchange n - 3. */
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, AMOUNT);
    struct hx_fault f = {.kind = HX_RELAY_COMMIT, .at = n - 3};
    struct hx_run r;
    hx_topup(&h, c, &f, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_PENDING);
    ck_assert_int_eq(r.result.error, WIRE_E_INTEGRITY);
    ck_assert_int_eq(hx_balance(&h), 0);
    hx_check(&h, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    uint8_t recs[8][32];
    ck_assert_int_eq(hx_records(&h, recs, 8), 1);
    ck_assert_int_eq(hx_txn_state(&h, recs[0]), LEDGER_MEM_TXN_COMMITTED);
    uint32_t flags = hx_txn_flags(&h, recs[0]);
    ck_assert(flags & LEDGER_FLAG_CREDIT_MISSING);
    ck_assert(flags & LEDGER_FLAG_INTEGRITY);
    ck_assert_int_eq(hx_code_state(&h, c), LEDGER_MEM_CODE_USED);
    /* The engine counted the signs it decided, each once. */
    uint64_t signs[WIRE_SIGN_COUNT];
    eng_signs(h.ctx, signs);
    ck_assert_uint_eq(signs[WIRE_SIGN_CREDIT_MISSING], 1);
    ck_assert_uint_eq(signs[WIRE_SIGN_SETTLED_LATER], 1);
    ck_assert_uint_ge(signs[WIRE_SIGN_INTEGRITY_AT_RISK], 1);
    hx_assert_invariants(&h, 1, 1);
    hx_free(&h);
}
END_TEST

/* Leaves one entry of the harness card in doubt, its WriteRecord sent
 * (both bookings of a top-up of `amount` fail): the next session's BEGIN
 * does not reserve, it settles first and then sends RESERVE. */
static void leave_in_doubt(struct hx *h, int64_t amount)
{
    int c = hx_add_code(h, amount);
    hx_fail_next(h, LEDGER_SETTLE, LEDGER_MEM_FAIL_BEFORE);
    hx_fail_next(h, LEDGER_SETTLE, LEDGER_MEM_FAIL_BEFORE);
    struct hx_run r;
    hx_topup(h, c, NULL, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_PENDING);
    ck_assert_int_eq(hx_in_doubt_count(h), 1);
    ck_assert_uint_eq(hx_faults_left(h), 0);
}

START_TEST(ledger_faults_at_every_request)
{
    /* Every request of a top-up fails before or after its commit, once or
     * twice: on a clean card (BEGIN reserves; the booking settles) and on
     * a card with an entry in doubt (BEGIN only leases and reads; SETTLE
     * settles it, RESERVE reserves, SETTLE books).  Each fault fires. */
    static const enum ledger_req_type types[] = {LEDGER_BEGIN, LEDGER_RESERVE, LEDGER_SETTLE};
    int cases = 0;
    for (int doubt = 0; doubt <= 1; doubt++) {
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
            if (types[i] == LEDGER_RESERVE && !doubt)
                continue; /* BEGIN reserves on a clean card */
            for (int when = LEDGER_MEM_FAIL_BEFORE; when <= LEDGER_MEM_FAIL_AFTER; when++) {
                for (int times = 1; times <= 2; times++) {
                    struct hx h;
                    hx_init(&h, 0);
                    int64_t before = 0;
                    if (doubt) {
                        leave_in_doubt(&h, 77);
                        before = 77;
                    }
                    int c = hx_add_code(&h, AMOUNT);
                    for (int t = 0; t < times; t++)
                        hx_fail_next(&h, types[i], (enum ledger_mem_fault)when);
                    struct hx_run r;
                    hx_topup(&h, c, NULL, &r);
                    ck_assert_msg(hx_faults_left(&h) < (unsigned)times, "%s fault never fired",
                                  ledger_req_name(types[i]));
                    if (r.result.status == WIRE_ST_OK)
                        ck_assert_int_eq(hx_balance(&h), before + AMOUNT);
                    if (r.result.status == WIRE_ST_FAILED) {
                        ck_assert_int_eq(hx_balance(&h), before);
                        ck_assert(!r.at_risk_seen);
                    }
                    hx_assert_invariants(&h, 0, 0);
                    hx_fail_clear(&h);
                    /* A lease whose release failed expires by itself. */
                    hx_advance(&h, h.cfg.lease_ms + 1);
                    struct hx_run s;
                    hx_check(&h, &s);
                    ck_assert_msg(s.result.status == WIRE_ST_OK,
                                  "settle after %s fault %d x%d doubt %d: %s",
                                  ledger_req_name(types[i]), when, times, doubt,
                                  wire_error_name(s.result.error));
                    hx_assert_invariants(&h, 1, 0);
                    /* A code whose top-up failed never reached the card: its
                     * reservation (if a lost reply made one) is voided by
                     * now and the code is free. */
                    if (r.result.status == WIRE_ST_FAILED)
                        ck_assert_int_eq(hx_code_state(&h, c), LEDGER_MEM_CODE_ISSUED);
                    hx_free(&h);
                    cases++;
                }
            }
        }
    }
    printf("engine fault matrix: %d ledger cases\n", cases);
    ck_assert_int_eq(cases, 20);
}
END_TEST

START_TEST(void_of_a_begin_reservation_lost)
{
    /* BEGIN reserved the code; the card's reads then fail (before any
     * WriteRecord) and the void cannot be written either (the database
     * is down, or failed): the entry stays in doubt with nothing on the
     * card, and the card's next session voids it (no record of it).  The
     * code is then usable again, once. */
    /* A card with one top-up already: the reads are ReadRecords and GetValue. */
    struct hx h;
    struct hx_run clean;
    hx_init(&h, 0);
    hx_topup(&h, hx_add_code(&h, 11), NULL, &clean);
    ck_assert_int_eq(clean.result.status, WIRE_ST_OK);
    hx_topup(&h, hx_add_code(&h, AMOUNT), NULL, &clean);
    ck_assert_int_eq(clean.result.status, WIRE_ST_OK);
    hx_free(&h);
    ck_assert_int_ge(clean.reserve_at, 0);
    ck_assert_int_gt(clean.first_money, clean.reserve_at);
    int cases = 0;
    for (int k = clean.reserve_at; k < clean.first_money; k++) {
        for (int down = 0; down <= 1; down++) {
            hx_init(&h, 0);
            struct hx_run r;
            hx_topup(&h, hx_add_code(&h, 11), NULL, &r);
            ck_assert_int_eq(r.result.status, WIRE_ST_OK);
            int c = hx_add_code(&h, AMOUNT);
            hx_fail_next(&h, LEDGER_SETTLE, down ? LEDGER_MEM_FAIL_DOWN : LEDGER_MEM_FAIL_BEFORE);
            struct hx_fault f = {.kind = HX_LOST_BEFORE, .at = k};
            hx_topup(&h, c, &f, &r);
            ck_assert(r.fault_applied);
            ck_assert_uint_eq(hx_faults_left(&h), 0); /* the void was sent, and lost */
            ck_assert_int_eq(r.result.status, WIRE_ST_FAILED);
            ck_assert(!r.at_risk_seen);
            ck_assert_int_eq(hx_in_doubt_count(&h), 1);
            ck_assert_int_eq(hx_code_state(&h, c), LEDGER_MEM_CODE_RESERVED);
            hx_assert_invariants(&h, 0, 0);
            /* The lease was released (the release is not a SETTLE). */
            ck_assert(!hx_lease_held(&h));
            struct hx_run s;
            hx_check(&h, &s);
            ck_assert_int_eq(s.result.status, WIRE_ST_OK);
            ck_assert_int_eq(hx_in_doubt_count(&h), 0);
            ck_assert_int_eq(hx_code_state(&h, c), LEDGER_MEM_CODE_ISSUED);
            ck_assert_int_eq(hx_balance(&h), 11);
            hx_topup(&h, c, NULL, &r);
            ck_assert_int_eq(r.result.status, WIRE_ST_OK);
            ck_assert_int_eq(hx_balance(&h), 11 + AMOUNT);
            hx_topup(&h, c, NULL, &r);
            ck_assert_int_eq(r.result.error, WIRE_E_CODE_USED);
            hx_assert_invariants(&h, 1, 0);
            hx_free(&h);
            cases++;
        }
    }
    printf("engine fault matrix: %d lost-void-after-BEGIN cases\n", cases);
    ck_assert_int_gt(cases, 0);
}
END_TEST

START_TEST(booking_retry_is_idempotent)
{
    /* The first booking of the verified commit is applied but its reply is
     * lost: the retry finds it committed. */
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, AMOUNT);
    hx_fail_next(&h, LEDGER_SETTLE, LEDGER_MEM_FAIL_AFTER);
    struct hx_run r;
    hx_topup(&h, c, NULL, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    ck_assert_int_eq(hx_txn_state(&h, r.result.txn), LEDGER_MEM_TXN_COMMITTED);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(booking_fails_twice_is_pending_then_settled)
{
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, AMOUNT);
    hx_fail_next(&h, LEDGER_SETTLE, LEDGER_MEM_FAIL_BEFORE);
    hx_fail_next(&h, LEDGER_SETTLE, LEDGER_MEM_FAIL_BEFORE);
    struct hx_run r;
    hx_topup(&h, c, NULL, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_PENDING);
    ck_assert_int_eq(hx_balance(&h), AMOUNT);
    ck_assert_int_eq(hx_in_doubt_count(&h), 1);
    hx_check(&h, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    uint8_t recs[8][32];
    ck_assert_int_eq(hx_records(&h, recs, 8), 1);
    ck_assert(hx_txn_flags(&h, recs[0]) & LEDGER_FLAG_SETTLED_LATER);
    ck_assert(!(hx_txn_flags(&h, recs[0]) & LEDGER_FLAG_CREDIT_MISSING));
    /* Counted once, though the settle was sent three times. */
    uint64_t signs[WIRE_SIGN_COUNT];
    eng_signs(h.ctx, signs);
    ck_assert_uint_eq(signs[WIRE_SIGN_SETTLED_LATER], 1);
    ck_assert_uint_eq(signs[WIRE_SIGN_CREDIT_MISSING], 0);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

/* A database that cannot be reached (a failover) is answered `overloaded`,
 * which a client retries; a database that answered with an error stays
 * `internal`.  Before the card is at risk, nothing is left in doubt. */
START_TEST(database_down_answers_overloaded)
{
    /* BEGIN on a clean card; RESERVE after a card's entry in doubt was
     * settled. */
    static const enum ledger_req_type types[] = {LEDGER_BEGIN, LEDGER_RESERVE};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        for (int down = 0; down <= 1; down++) {
            struct hx h;
            hx_init(&h, 0);
            if (types[i] == LEDGER_RESERVE)
                leave_in_doubt(&h, 77);
            int c = hx_add_code(&h, AMOUNT);
            hx_fail_next(&h, types[i], down ? LEDGER_MEM_FAIL_DOWN : LEDGER_MEM_FAIL_BEFORE);
            struct hx_run r;
            hx_topup(&h, c, NULL, &r);
            ck_assert_uint_eq(hx_faults_left(&h), 0);
            ck_assert_int_eq(r.result.status, WIRE_ST_FAILED);
            ck_assert_msg(r.result.error == (down ? WIRE_E_OVERLOADED : WIRE_E_INTERNAL),
                          "%s down=%d answered %s", ledger_req_name(types[i]), down,
                          wire_error_name(r.result.error));
            hx_assert_invariants(&h, 1, 0);
            /* The next session succeeds. */
            hx_topup(&h, c, NULL, &r);
            ck_assert_int_eq(r.result.status, WIRE_ST_OK);
            hx_free(&h);
        }
    }
}
END_TEST

START_TEST(operation_deadline_at_every_step)
{
    /* Each exchange takes 3 ms of simulated time; with the operation's
     * deadline at every point of a top-up, no card command (not even a
     * continuation frame) goes out at or after it, and the next session
     * settles whatever was left. */
    int n = clean_exchanges();
    int cases = 0;
    for (uint32_t t = 1; t <= (uint32_t)n * 3 + 3; t++) {
        struct hx h;
        hx_init(&h, 0);
        h.cfg.operation_timeout_ms = t;
        hx_reconfigure(&h);
        int c = hx_add_code(&h, AMOUNT);
        struct hx_run r;
        hx_topup(&h, c, NULL, &r);
        if (r.exchanges > 0)
            ck_assert_uint_lt(r.last_apdu_ms, r.open_ms + t);
        if (r.result.status != WIRE_ST_OK)
            ck_assert_int_eq(r.result.error, WIRE_E_TIMEOUT);
        hx_assert_invariants(&h, 0, 0);
        h.cfg.operation_timeout_ms = 60000;
        hx_reconfigure(&h);
        hx_check(&h, &r);
        ck_assert_int_eq(r.result.status, WIRE_ST_OK);
        hx_assert_invariants(&h, 1, 0);
        hx_free(&h);
        cases++;
    }
    printf("engine fault matrix: %d operation-deadline cases\n", cases);
    ck_assert_int_gt(cases, n);
}
END_TEST

static Suite *faults_suite(void)
{
    Suite *s = suite_create("engine_faults");
    TCase *tc = tcase_create("matrix");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, client_faults_at_every_exchange);
    tcase_add_test(tc, answers_replayed_from_an_earlier_session);
    tcase_add_test(tc, tampered_answers_every_byte);
    tcase_add_test(tc, relay_commit_at_every_step);
    tcase_add_test(tc, relay_commit_between_record_and_credit_is_flagged);
    tcase_add_test(tc, ledger_faults_at_every_request);
    tcase_add_test(tc, operation_deadline_at_every_step);
    tcase_add_test(tc, void_of_a_begin_reservation_lost);
    tcase_add_test(tc, booking_retry_is_idempotent);
    tcase_add_test(tc, booking_fails_twice_is_pending_then_settled);
    tcase_add_test(tc, database_down_answers_overloaded);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Thousands of sessions fail on purpose here: keep only errors. */
    log_init("test_engine_faults", "-", 0,
             getenv("ENGINE_TEST_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
#ifdef HX_LEDGER_PG
    const char *conninfo = getenv("OTA_TEST_CONNINFO");
    if (!conninfo || hx_ledger_pg_setup(conninfo) != 0) {
        fprintf(stderr,
                "test_engine_faults_pg: needs OTA_TEST_CONNINFO (test_engine_faults_pg.sh)\n");
        return 99;
    }
    printf("ledger: PostgreSQL\n");
#endif
    SRunner *sr = srunner_create(faults_suite());
#ifdef HX_LEDGER_PG
    /* One pool and its connections for the whole program. */
    srunner_set_fork_status(sr, CK_NOFORK);
#endif
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
#ifdef HX_LEDGER_PG
    hx_ledger_pg_teardown();
#endif
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
