/* test_engine_batch: the engine with a client that takes batches
 * (PROTOCOL v2): round trips per operation (check, first top-up with its
 * profile check, steady-state top-up on a card whose record file is full),
 * the batch planner's rules (never more than the client takes, never a
 * money-moving command before the reservation), the same outcomes as v1,
 * and every batch size from 2 to 16.  Prints the round trips it measured. */
#include <check.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card_profile.h"
#include "log.h"
#include "test_engine_harness.h"

/* Tops up n times (amount 10 + i) and asserts each is ok. */
static void topups(struct hx *h, int n, struct hx_run *last)
{
    for (int i = 0; i < n; i++) {
        int c = hx_add_code(h, 10 + i);
        hx_topup(h, c, NULL, last);
        ck_assert_msg(last->result.status == WIRE_ST_OK, "top-up %d: %s/%s", i,
                      wire_status_name(last->result.status), wire_error_name(last->result.error));
        ck_assert(last->first_money >= last->reserve_at && last->reserve_at >= 0);
    }
}

START_TEST(round_trips_per_operation)
{
    struct hx h;
    hx_init(&h, 0);
    h.batch = 16;
    struct hx_run r;
    hx_check(&h, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    int check_new = r.batches;
    topups(&h, 1, &r);
    int first = r.batches;
    topups(&h, 8, &r); /* the cyclic file is full: 7 records to read */
    int steady = r.batches;
    /* The planner's batches: Auth's second part depends on the card's
     * answer; the plain reads after it do not; ReadRecords' continuation
     * frames follow from the records' length; after the reservation the
     * IV after each status-only answer is known, so WriteRecord's two
     * frames, Credit, Commit and the read-back go together. */
    ck_assert_str_eq(r.plan, "[5a aa] [af a7 f5 f5 6c] [bb af af af af] [3b af 0c c7 6c]");
    hx_check(&h, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    int check_full = r.batches;
    ck_assert_str_eq(r.plan, "[5a aa] [af a7 f5 f5 6c] [bb af af af af]");
    printf("v2 round trips: check %d (new card) %d (full record file), first top-up %d, "
           "steady-state top-up %d\n",
           check_new, check_full, first, steady);
    ck_assert_int_le(check_new, 3);
    ck_assert_int_le(check_full, 3);
    ck_assert_int_le(first, 6);
    ck_assert_int_le(steady, 5);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);

    /* The same card history with a v1 client: one APDU per round trip. */
    hx_init(&h, 0);
    topups(&h, 9, &r);
    ck_assert_int_eq(r.batches, r.exchanges);
    printf("v1 round trips: steady-state top-up %d\n", r.batches);
    ck_assert_int_gt(r.batches, steady);
    hx_free(&h);
}
END_TEST

START_TEST(every_batch_size_gives_the_same_money)
{
    for (int b = 1; b <= WIRE_MAX_BATCH; b++) {
        struct hx h;
        hx_init(&h, 0);
        h.batch = b;
        struct hx_run r;
        topups(&h, 9, &r);
        ck_assert_int_eq(hx_balance(&h), 9 * 10 + 36);
        hx_check(&h, &r);
        ck_assert_int_eq(r.result.status, WIRE_ST_OK);
        ck_assert(r.result.has & WIRE_RES_HAS_BALANCE);
        ck_assert_int_eq(r.result.balance, 9 * 10 + 36);
        hx_assert_invariants(&h, 1, 0);
        hx_free(&h);
    }
}
END_TEST

START_TEST(v1_and_v2_sessions_mix_on_one_card)
{
    struct hx h;
    hx_init(&h, 0);
    struct hx_run r;
    for (int i = 0; i < 10; i++) {
        h.batch = i % 2 ? 1 : 8;
        topups(&h, 1, &r);
    }
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(a_used_code_and_a_busy_card_answer_as_in_v1)
{
    struct hx h;
    hx_init(&h, 0);
    h.batch = 16;
    int c = hx_add_code(&h, 50);
    struct hx_run r;
    hx_topup(&h, c, NULL, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    hx_topup(&h, c, NULL, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_FAILED);
    ck_assert_int_eq(r.result.error, WIRE_E_CODE_USED);
    ck_assert_int_eq(r.first_money, -1); /* nothing money-moving went out */
    ck_assert_int_eq(hx_balance(&h), 50);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(a_wrong_uid_fails_authentication_in_a_batch)
{
    struct hx h;
    hx_init(&h, 0);
    h.batch = 16;
    static const uint8_t other[7] = {0x04, 0x99, 0x99, 0x99, 0x99, 0x99, 0x80};
    struct hx_run r;
    hx_run_op(&h, WIRE_OP_CHECK, "", WIRE_LISTENER_PUBLIC, other, sizeof(other), NULL, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_FAILED);
    ck_assert_int_eq(r.result.error, WIRE_E_AUTH_FAILED);
    ck_assert_int_eq(r.ledger_requests, 0); /* no lease for a UID that did not authenticate */
    hx_free(&h);
}
END_TEST

START_TEST(personalize_runs_with_a_batching_client)
{
    static const char token[] = "operator-token-for-tests";
    struct hx h;
    hx_init_factory(&h, SIM_PICC_DES0);
    char hash[crypto_pwhash_STRBYTES];
    ck_assert_int_eq(crypto_pwhash_str(hash, token, strlen(token), crypto_pwhash_OPSLIMIT_MIN,
                                       crypto_pwhash_MEMLIMIT_MIN),
                     0);
    memcpy(h.token_hash, hash, strlen(hash) + 1);
    h.batch = 16;
    struct hx_run r;
    hx_run_op(&h, WIRE_OP_PERSONALIZE, token, WIRE_LISTENER_OPERATOR, NULL, 0, NULL, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    ck_assert(ledger_mem_personalized(h.lm, &h.lcard));
    printf("v2 round trips: personalize %d (%d APDUs)\n", r.batches, r.exchanges);
    topups(&h, 2, &r);
    ck_assert_int_eq(hx_balance(&h), 21);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

static Suite *batch_suite(void)
{
    Suite *s = suite_create("engine_batch");
    TCase *tc = tcase_create("batch");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, round_trips_per_operation);
    tcase_add_test(tc, every_batch_size_gives_the_same_money);
    tcase_add_test(tc, v1_and_v2_sessions_mix_on_one_card);
    tcase_add_test(tc, a_used_code_and_a_busy_card_answer_as_in_v1);
    tcase_add_test(tc, a_wrong_uid_fails_authentication_in_a_batch);
    tcase_add_test(tc, personalize_runs_with_a_batching_client);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test_engine_batch", "-", 0,
             getenv("ENGINE_TEST_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
    SRunner *sr = srunner_create(batch_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
