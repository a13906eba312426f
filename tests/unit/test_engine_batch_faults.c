/* test_engine_batch_faults: the engine's fault matrix per APDU inside
 * batches (PROTOCOL v2).  A card with two earlier top-ups (so ReadRecords
 * has a continuation frame) is topped up by a client that takes batches of
 * 16; at every APDU k of that top-up the relay drops the message, loses
 * the tag before / after the command, tears the card, leaves, replays the
 * previous answer or one of an earlier session, flips every answer byte,
 * answers only a prefix, answers more than asked, swaps two answers, or
 * sends its own CommitTransaction or ClearRecordFile before (or a commit
 * after) the command.  All of it also with the simulator's worst case
 * (pending changes survive a new selection and authentication).  After
 * each case a new session settles the card and the money invariants hold:
 * nothing created, lost (but the relay's own, flagged) or doubled, nothing
 * left in doubt, no money-moving command before the reservation.  Prints
 * how many cases ran. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card_profile.h"
#include "log.h"
#include "test_engine_harness.h"

#define AMOUNT 1234
#define BATCH 16
#define EARLIER 2      /* top-ups before the faulted one */
#define EARLIER_SUM 21 /* 10 + 11 */

static void prepare(struct hx *h, unsigned sim_flags)
{
    hx_init(h, 0);
    sim_card_set_flags(h->card, sim_flags);
    h->batch = BATCH;
    for (int i = 0; i < EARLIER; i++) {
        struct hx_run r;
        int c = hx_add_code(h, 10 + i);
        hx_topup(h, c, NULL, &r);
        ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    }
}

static void clean_run(unsigned sim_flags, struct hx_run *r)
{
    struct hx h;
    prepare(&h, sim_flags);
    int c = hx_add_code(&h, AMOUNT);
    hx_topup(&h, c, NULL, r);
    ck_assert_int_eq(r->result.status, WIRE_ST_OK);
    hx_free(&h);
}

static void one_case(const struct hx_fault *f, unsigned sim_flags)
{
    struct hx h;
    prepare(&h, sim_flags);
    int c = hx_add_code(&h, AMOUNT);
    struct hx_run r;
    hx_topup(&h, c, f, &r);
    ck_assert_msg(r.fault_applied, "fault %d at %d not applied", f->kind, f->at);
    /* A money-moving command only after the ledger said the code is reserved. */
    ck_assert(r.first_money < 0 || (r.reserve_at >= 0 && r.first_money >= r.reserve_at));
    if (r.result.status == WIRE_ST_OK) {
        ck_assert_int_eq(hx_balance(&h), EARLIER_SUM + AMOUNT);
        ck_assert_int_eq(ledger_mem_txn_state(h.lm, r.result.txn), LEDGER_MEM_TXN_COMMITTED);
    } else if (r.result.status == WIRE_ST_FAILED) {
        /* failed: no WriteRecord went out, nothing can be on the card. */
        ck_assert_int_eq(hx_balance(&h), EARLIER_SUM);
        ck_assert(!r.at_risk_seen);
    }
    ck_assert(!ledger_mem_lease_held(h.lm, &h.lcard, h.now));
    hx_assert_invariants(&h, 0, 1);

    struct hx_run s;
    hx_check(&h, &s);
    ck_assert_msg(s.result.status == WIRE_ST_OK, "settling session: %s/%s (fault %d at %d pos %d)",
                  wire_status_name(s.result.status), wire_error_name(s.result.error), f->kind,
                  f->at, f->pos);
    hx_assert_invariants(&h, 1, 1);
    /* The code again: credits only if nothing was committed with it. */
    int committed_before = ledger_mem_code_commits(h.lm, h.codes[c].hash);
    hx_topup(&h, c, NULL, &r);
    if (committed_before)
        ck_assert_int_eq(r.result.error, WIRE_E_CODE_USED);
    else
        ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    hx_assert_invariants(&h, 1, 1);
    hx_free(&h);
}

static const enum hx_fault_kind kinds[] = {
    HX_LOST_BEFORE,  HX_LOST_AFTER,         HX_GONE_AFTER,  HX_DROP,  HX_TEAR,
    HX_REPLAY,       HX_REPLAY_OLD,         HX_PREFIX,      HX_EXTRA, HX_REORDER,
    HX_RELAY_COMMIT, HX_RELAY_COMMIT_AFTER, HX_RELAY_CLEAR,
};

static int run_kinds(unsigned sim_flags)
{
    struct hx_run clean;
    clean_run(sim_flags, &clean);
    ck_assert_int_le(clean.batches, 5);
    int cases = 0;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        for (int k = 0; k < clean.exchanges; k++) {
            /* Swapping needs a next answer in the same batch. */
            struct hx_fault f = {.kind = kinds[i], .at = k};
            if (kinds[i] == HX_REORDER && k + 1 >= clean.exchanges)
                continue;
            one_case(&f, sim_flags);
            cases++;
        }
    }
    return cases;
}

START_TEST(faults_at_every_apdu_of_a_batch)
{
    struct hx_run clean;
    clean_run(0, &clean);
    int cases = run_kinds(0);
    printf("batch fault matrix: %d cases over %d APDUs in %d batches\n", cases, clean.exchanges,
           clean.batches);
    ck_assert_int_gt(cases, 10 * clean.exchanges);
}
END_TEST

START_TEST(faults_at_every_apdu_with_pending_changes_surviving_reauthentication)
{
    int cases = run_kinds(SIM_FLAG_KEEP_PENDING_ON_SELECT_AUTH);
    printf("batch fault matrix (worst-case card): %d cases\n", cases);
    ck_assert_int_gt(cases, 100);
}
END_TEST

START_TEST(tampered_answers_every_byte_in_batches)
{
    struct hx_run clean;
    clean_run(0, &clean);
    int cases = 0;
    for (int k = 0; k < clean.exchanges; k++) {
        ck_assert_int_gt(clean.answer_len[k], 0);
        for (int pos = 0; pos < clean.answer_len[k]; pos++) {
            struct hx_fault f = {.kind = HX_TAMPER, .at = k, .pos = pos};
            one_case(&f, k % 2 ? SIM_FLAG_KEEP_PENDING_ON_SELECT_AUTH : 0);
            cases++;
        }
    }
    printf("batch fault matrix: %d tampered-answer cases\n", cases);
    ck_assert_int_gt(cases, clean.exchanges * 2);
}
END_TEST

START_TEST(relay_commit_inside_the_money_batch_is_the_relays_own_loss)
{
    /* [WriteRecord x2, Credit, Commit, GetValue]: the relay's commit before
     * the Credit keeps the record without the value.  Booked committed,
     * flagged, nothing created; the same as v1. */
    struct hx_run clean;
    clean_run(0, &clean);
    int credit = clean.exchanges - 3;
    struct hx h;
    prepare(&h, 0);
    int c = hx_add_code(&h, AMOUNT);
    struct hx_fault f = {.kind = HX_RELAY_COMMIT, .at = credit};
    struct hx_run r;
    hx_topup(&h, c, &f, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_PENDING);
    ck_assert_int_eq(r.result.error, WIRE_E_INTEGRITY);
    ck_assert_int_eq(hx_balance(&h), EARLIER_SUM);
    hx_check(&h, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    uint8_t recs[8][32];
    int n = hx_records(&h, recs, 8);
    ck_assert_int_eq(n, EARLIER + 1);
    uint32_t flags = ledger_mem_txn_flags(h.lm, recs[n - 1]);
    ck_assert(flags & LEDGER_FLAG_CREDIT_MISSING);
    ck_assert(flags & LEDGER_FLAG_INTEGRITY);
    hx_assert_invariants(&h, 1, 1);
    hx_free(&h);
}
END_TEST

static Suite *faults_suite(void)
{
    Suite *s = suite_create("engine_batch_faults");
    TCase *tc = tcase_create("matrix");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, faults_at_every_apdu_of_a_batch);
    tcase_add_test(tc, faults_at_every_apdu_with_pending_changes_surviving_reauthentication);
    tcase_add_test(tc, tampered_answers_every_byte_in_batches);
    tcase_add_test(tc, relay_commit_inside_the_money_batch_is_the_relays_own_loss);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Thousands of sessions fail on purpose here: keep only errors. */
    log_init("test_engine_batch_faults", "-", 0,
             getenv("ENGINE_TEST_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
    SRunner *sr = srunner_create(faults_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
