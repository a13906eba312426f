/* test_engine_settle: the step-3 decision (worker/settle.c) on its own:
 * which in-doubt entries settle committed or voided, and when the card's
 * records disagree with the ledger (freeze) or the card is not ours. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "desfire_crypto.h"
#include "engine_int.h"

static void txn_id(uint8_t out[16], int n)
{
    memset(out, 0, 16);
    out[0] = 0x7A;
    out[15] = (uint8_t)n;
}

static void add_record(struct eng_card_view *v, int n, int32_t amount, int32_t after)
{
    uint8_t *r = v->records[v->n_records++];
    memset(r, 0, PROF_RECORD_SIZE);
    txn_id(r, n);
    dfc_put_le32(r + PROF_REC_AMOUNT, (uint32_t)amount);
    dfc_put_le32(r + PROF_REC_BALANCE, (uint32_t)after);
    v->balance = after;
}

static void add_committed(struct ledger_card_state *st, int n, int64_t amount)
{
    /* Callers add newest first. */
    struct ledger_txn *t = &st->committed[st->n_committed++];
    txn_id(t->txn_id, n);
    t->amount = amount;
    st->has_history = 1;
}

static void add_in_doubt(struct ledger_card_state *st, int n, int64_t amount, uint32_t flags)
{
    struct ledger_txn *t = &st->in_doubt[st->n_in_doubt++];
    txn_id(t->txn_id, n);
    t->amount = amount;
    t->flags = flags;
    st->has_history = 1;
}

START_TEST(new_card)
{
    struct eng_card_view v;
    struct ledger_card_state st;
    struct eng_settle_plan p;
    memset(&v, 0, sizeof(v));
    memset(&st, 0, sizeof(st));
    settle_plan(&v, &st, &p);
    ck_assert(!p.freeze && !p.unsupported);
    ck_assert_int_eq(p.n, 0);
    v.balance = 1;
    settle_plan(&v, &st, &p);
    ck_assert(p.unsupported);
    v.balance = 0;
    add_record(&v, 1, 5, 0);
    v.balance = 0;
    settle_plan(&v, &st, &p);
    ck_assert(p.unsupported);
}
END_TEST

START_TEST(in_doubt_committed_and_voided)
{
    struct eng_card_view v;
    struct ledger_card_state st;
    struct eng_settle_plan p;
    memset(&v, 0, sizeof(v));
    memset(&st, 0, sizeof(st));
    add_record(&v, 1, 100, 100);
    add_committed(&st, 1, 100);
    add_record(&v, 2, 50, 150);
    add_in_doubt(&st, 2, 50, LEDGER_FLAG_INTEGRITY);
    add_in_doubt(&st, 3, 70, 0); /* never reached the card */
    settle_plan(&v, &st, &p);
    ck_assert(!p.freeze && !p.unsupported);
    ck_assert_int_eq(p.n, 2);
    ck_assert_int_eq(p.outcome[0], LEDGER_COMMITTED);
    ck_assert_uint_eq(p.flags[0], LEDGER_FLAG_SETTLED_LATER | LEDGER_FLAG_INTEGRITY);
    ck_assert_int_eq(p.outcome[1], LEDGER_VOIDED);
}
END_TEST

START_TEST(credit_missing_flagged)
{
    struct eng_card_view v;
    struct ledger_card_state st;
    struct eng_settle_plan p;
    memset(&v, 0, sizeof(v));
    memset(&st, 0, sizeof(st));
    add_record(&v, 1, 100, 100);
    add_committed(&st, 1, 100);
    add_record(&v, 2, 50, 150);
    v.balance = 100; /* the record is there, the credit is not */
    add_in_doubt(&st, 2, 50, 0);
    settle_plan(&v, &st, &p);
    ck_assert(!p.freeze);
    ck_assert_int_eq(p.outcome[0], LEDGER_COMMITTED);
    ck_assert(p.flags[0] & LEDGER_FLAG_CREDIT_MISSING);
}
END_TEST

START_TEST(disagreements_freeze)
{
    struct eng_card_view v;
    struct ledger_card_state st;
    struct eng_settle_plan p;
    /* A record the ledger does not know. */
    memset(&v, 0, sizeof(v));
    memset(&st, 0, sizeof(st));
    add_record(&v, 9, 100, 100);
    add_committed(&st, 1, 100);
    settle_plan(&v, &st, &p);
    ck_assert(p.freeze);
    /* A committed txn without its record. */
    memset(&v, 0, sizeof(v));
    memset(&st, 0, sizeof(st));
    add_record(&v, 1, 100, 100);
    add_committed(&st, 2, 30);
    add_committed(&st, 1, 100);
    settle_plan(&v, &st, &p);
    ck_assert(p.freeze);
    /* A record whose amount differs. */
    memset(&v, 0, sizeof(v));
    memset(&st, 0, sizeof(st));
    add_record(&v, 1, 101, 101);
    add_committed(&st, 1, 100);
    settle_plan(&v, &st, &p);
    ck_assert(p.freeze);
    /* A record with junk in its zero tail. */
    memset(&v, 0, sizeof(v));
    memset(&st, 0, sizeof(st));
    add_record(&v, 1, 100, 100);
    v.records[0][31] = 1;
    add_committed(&st, 1, 100);
    settle_plan(&v, &st, &p);
    ck_assert(p.freeze);
}
END_TEST

START_TEST(old_records_roll_off)
{
    struct eng_card_view v;
    struct ledger_card_state st;
    struct eng_settle_plan p;
    memset(&v, 0, sizeof(v));
    memset(&st, 0, sizeof(st));
    /* Ten top-ups; the card keeps the newest seven; the ledger returns the
     * newest eight. */
    for (int n = 4; n <= 10; n++)
        add_record(&v, n, n, n * 10);
    for (int n = 10; n >= 3; n--)
        add_committed(&st, n, n);
    settle_plan(&v, &st, &p);
    ck_assert(!p.freeze && !p.unsupported);
    /* Drop the newest record instead: the card lost one it must keep. */
    memset(&v, 0, sizeof(v));
    for (int n = 3; n <= 9; n++)
        add_record(&v, n, n, n * 10);
    settle_plan(&v, &st, &p);
    ck_assert(p.freeze);
}
END_TEST

static Suite *settle_suite(void)
{
    Suite *s = suite_create("engine_settle");
    TCase *tc = tcase_create("plan");
    tcase_add_test(tc, new_card);
    tcase_add_test(tc, in_doubt_committed_and_voided);
    tcase_add_test(tc, credit_missing_flagged);
    tcase_add_test(tc, disagreements_freeze);
    tcase_add_test(tc, old_records_roll_off);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(settle_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
