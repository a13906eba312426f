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
     * answer; the plain commands after it do not; after the lease,
     * ReadRecords' continuation frames follow from the records' length and
     * GetValue is plain; after the reservation the IV after each
     * status-only answer is known, so WriteRecord's two frames, Credit,
     * Commit and the read-back go together. */
    ck_assert_str_eq(r.plan, "[5a aa] [af a7 f5 f5] [bb af af af af 6c] [3b af 0c c7 6c]");
    hx_check(&h, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    int check_full = r.batches;
    ck_assert_str_eq(r.plan, "[5a aa] [af a7 f5 f5] [bb af af af af 6c]");
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

/* A session driven by hand, so that another can run in the middle of it. */
struct drv {
    struct eng_session *s;
    struct eng_actions acts;
    struct wire_bytes batch[WIRE_MAX_BATCH];
    int n;
    int have_result;
    struct wire_result result;
    int done;
};

/* Runs the ledger requests and collects the next batch (or the end). */
static void drv_settle_actions(struct hx *h, struct drv *d)
{
    for (;;) {
        int req_seen = 0;
        struct ledger_req req;
        d->n = 0;
        for (size_t i = 0; i < d->acts.n; i++) {
            const struct eng_action *a = &d->acts.a[i];
            if (a->type == ENG_A_APDU)
                d->batch[d->n++] = a->u.apdu;
            else if (a->type == ENG_A_LEDGER) {
                req = a->u.ledger;
                req_seen = 1;
            } else if (a->type == ENG_A_RESULT) {
                d->have_result = 1;
                d->result = a->u.result;
            } else if (a->type == ENG_A_DONE)
                d->done = 1;
        }
        if (!req_seen)
            return;
        struct ledger_reply rep;
        ledger_mem_handle(h->lm, &req, h->now, &rep);
        eng_on_ledger_reply(d->s, &rep, h->now, &d->acts);
    }
}

static void drv_open(struct hx *h, struct drv *d, int code)
{
    memset(d, 0, sizeof(*d));
    struct wire_open open;
    memset(&open, 0, sizeof(open));
    open.op = WIRE_OP_TOPUP;
    open.uid_len = sizeof(h->uid);
    memcpy(open.uid, h->uid, sizeof(h->uid));
    open.authcode_len = (uint16_t)strlen(h->codes[code].text);
    memcpy(open.authcode, h->codes[code].text, open.authcode_len);
    open.batch = WIRE_MAX_BATCH;
    d->s = eng_open(h->ctx, h->next_session++, &open, h->now, &d->acts);
    ck_assert_ptr_nonnull(d->s);
    drv_settle_actions(h, d);
}

/* Runs APDUs [from, to) of the batch on the card (stopping after an error
 * answer, as a client does); answers them if `answer`. */
static void drv_run(struct hx *h, struct drv *d, int from, int to, struct wire_bytes *ans, int *na)
{
    for (int j = from; j < to; j++) {
        size_t rlen = 0;
        ck_assert_int_eq(sim_card_transceive(h->card, d->batch[j].data, d->batch[j].len,
                                             ans[*na].data, WIRE_MAX_APDU, &rlen),
                         0);
        ans[*na].len = (uint16_t)rlen;
        (*na)++;
        if (rlen < 2 || ans[*na - 1].data[rlen - 2] != 0x91 ||
            (ans[*na - 1].data[rlen - 1] != 0x00 && ans[*na - 1].data[rlen - 1] != 0xAF))
            return;
    }
}

START_TEST(a_second_session_in_the_middle_of_the_money_batch)
{
    /* A's [WriteRecord x2, Credit, Commit, GetValue] batch: the relay runs
     * its first m APDUs, then a whole second session (B, a check) on the
     * same card, then the rest of A's batch.  B authenticates, aborts and
     * reads the file settings before it asks for the lease, which A holds: B answers
     * card-busy; whatever A's commands then do, nothing is created, lost
     * or doubled, and the next session settles A.  Also with the worst-case
     * card (pending changes survive a new authentication). */
    int cases = 0;
    for (int worst = 0; worst < 2; worst++) {
        for (int m = 0; m <= 5; m++) {
            struct hx h;
            hx_init(&h, 0);
            if (worst)
                sim_card_set_flags(h.card, SIM_FLAG_KEEP_PENDING_ON_SELECT_AUTH);
            h.batch = WIRE_MAX_BATCH;
            struct hx_run r;
            topups(&h, 1, &r);
            int c = hx_add_code(&h, 500);
            struct drv a;
            drv_open(&h, &a, c);
            while (!(a.n > 0 && a.batch[0].data[1] == 0x3B)) {
                ck_assert_msg(!a.done && a.n > 0, "A ended before its money batch");
                struct wire_bytes ans[WIRE_MAX_BATCH];
                int na = 0;
                drv_run(&h, &a, 0, a.n, ans, &na);
                eng_on_card_responses(a.s, ans, (size_t)na, 0, h.now, &a.acts);
                drv_settle_actions(&h, &a);
            }
            ck_assert_int_eq(a.n, 5);
            struct wire_bytes ans[WIRE_MAX_BATCH];
            int na = 0;
            drv_run(&h, &a, 0, m, ans, &na);
            hx_check(&h, &r);
            ck_assert_int_eq(r.result.status, WIRE_ST_FAILED);
            ck_assert_int_eq(r.result.error, WIRE_E_CARD_BUSY);
            if (na == m)
                drv_run(&h, &a, m, a.n, ans, &na);
            eng_on_card_responses(a.s, ans, (size_t)na, 0, h.now, &a.acts);
            drv_settle_actions(&h, &a);
            ck_assert(a.done && a.have_result);
            /* A's commit ran before B (m >= 4): it is proven.  Otherwise B's
             * authentication broke A's secure messaging. */
            ck_assert_int_eq(a.result.status == WIRE_ST_OK, m >= 4);
            eng_free(a.s);
            hx_assert_invariants(&h, 0, 0);
            hx_check(&h, &r);
            ck_assert_int_eq(r.result.status, WIRE_ST_OK);
            hx_assert_invariants(&h, 1, 0);
            ck_assert_int_eq(hx_balance(&h), m >= 4 ? 510 : 10);
            /* A's code works now exactly when it was not credited. */
            hx_topup(&h, c, NULL, &r);
            ck_assert_int_eq(r.result.status, m >= 4 ? WIRE_ST_FAILED : WIRE_ST_OK);
            hx_assert_invariants(&h, 1, 0);
            hx_free(&h);
            cases++;
        }
    }
    printf("two sessions in one money batch: %d cases\n", cases);
}
END_TEST

START_TEST(reads_before_a_late_lease_are_never_settled_on)
{
    /* B has read the card's settings and asked for the lease, but its
     * request reaches the database late; meanwhile A authenticates, takes
     * the lease, tops up (its commit answer dropped by the relay: pending,
     * or clean) and releases it.  B then gets the lease: what it settles on
     * must be read after that, or it would void A's committed entry (a
     * double top-up) or freeze the card.  B's reads after the lease fail
     * (A's authentication broke B's MAC chain) and nothing is settled. */
    for (int drop = 0; drop < 2; drop++) {
        struct hx h;
        hx_init(&h, 0);
        h.batch = WIRE_MAX_BATCH;
        struct hx_run r;
        topups(&h, 1, &r);
        int cb = hx_add_code(&h, 700);
        struct drv b;
        drv_open(&h, &b, cb);
        struct ledger_req held;
        int have_held = 0;
        /* Run B until it asks for the lease; hold that request. */
        for (int guard = 0; guard < 20 && !have_held; guard++) {
            ck_assert(!b.done && b.n > 0);
            struct wire_bytes ans[WIRE_MAX_BATCH];
            int na = 0;
            drv_run(&h, &b, 0, b.n, ans, &na);
            eng_on_card_responses(b.s, ans, (size_t)na, 0, h.now, &b.acts);
            for (size_t i = 0; i < b.acts.n; i++)
                if (b.acts.a[i].type == ENG_A_LEDGER && b.acts.a[i].u.ledger.type == LEDGER_BEGIN) {
                    held = b.acts.a[i].u.ledger;
                    have_held = 1;
                }
            if (!have_held)
                drv_settle_actions(&h, &b);
        }
        ck_assert(have_held);
        /* A's whole top-up. */
        int ca = hx_add_code(&h, 500);
        struct hx_run ra;
        /* [5a aa] [af a7 f5 f5] [bb 6c] [3b af 0c c7 6c]: the commit is
         * APDU 11; with drop its batch's answers never arrive. */
        struct hx_fault f = {.kind = HX_DROP, .at = 11};
        hx_topup(&h, ca, drop ? &f : NULL, &ra);
        ck_assert_int_eq(ra.result.status, drop ? WIRE_ST_PENDING : WIRE_ST_OK);
        ck_assert_int_eq(hx_balance(&h), 510);
        /* B's lease request arrives now. */
        struct ledger_reply rep;
        ledger_mem_handle(h.lm, &held, h.now, &rep);
        ck_assert_int_eq(rep.status, LEDGER_ST_OK);
        eng_on_ledger_reply(b.s, &rep, h.now, &b.acts);
        drv_settle_actions(&h, &b);
        for (int guard = 0; guard < 20 && !b.done; guard++) {
            ck_assert(b.n > 0);
            struct wire_bytes ans[WIRE_MAX_BATCH];
            int na = 0;
            drv_run(&h, &b, 0, b.n, ans, &na);
            eng_on_card_responses(b.s, ans, (size_t)na, 0, h.now, &b.acts);
            drv_settle_actions(&h, &b);
        }
        ck_assert(b.done && b.have_result);
        ck_assert_int_eq(b.result.status, WIRE_ST_FAILED);
        eng_free(b.s);
        ck_assert(!ledger_mem_frozen(h.lm, &h.lcard));
        /* B's late BEGIN reserved its code when A left nothing in doubt;
         * B's reads failed before any WriteRecord, so B voided it. */
        ck_assert_int_eq(ledger_mem_code_state(h.lm, h.codes[cb].hash), LEDGER_MEM_CODE_ISSUED);
        hx_assert_invariants(&h, 0, 0);
        hx_check(&h, &r);
        ck_assert_int_eq(r.result.status, WIRE_ST_OK);
        ck_assert_int_eq(r.result.balance, 510);
        hx_assert_invariants(&h, 1, 0);
        hx_free(&h);
    }
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
    tcase_add_test(tc, a_second_session_in_the_middle_of_the_money_batch);
    tcase_add_test(tc, reads_before_a_late_lease_are_never_settled_on);
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
