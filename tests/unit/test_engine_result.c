/* test_engine_result: when the engine answers.  A booked top-up (and any
 * success) has its result `ok` emitted by the event that delivers the
 * committed booking, before the lease release is even requested; nothing
 * that comes after (a stray client message, the client going away, a card
 * answer nobody asked for, the ledger never answering the release) emits a
 * second result or changes the first.
 *
 * The driver here is step by step (the harness runs sessions to their end),
 * so the test can stop with the lease release outstanding.  (A clean
 * top-up's booking usually releases the lease in the same statement; the
 * driver keeps the release separate, as a locked lease row does.) */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "test_engine_harness.h"

struct drv {
    struct hx *h;
    struct eng_session *s;
    struct eng_actions acts;
    int events;  /* events delivered so far */
    int results; /* RESULT actions seen */
    struct wire_result result;
    int result_event; /* the event whose actions held the RESULT */
    int booked_event; /* the event that delivered the committed booking */
    int result_seq;   /* position of the RESULT among all actions */
    int release_seq;  /* position of the LEASE_RELEASE request */
    int seq;
    int done;
    struct ledger_req pending; /* the request not executed yet */
    int have_pending;
};

/* Records the actions of the last event; returns 1 if an APDU is due. */
static int record(struct drv *d, struct wire_bytes *apdu)
{
    int have_apdu = 0;
    for (size_t i = 0; i < d->acts.n; i++) {
        const struct eng_action *a = &d->acts.a[i];
        d->seq++;
        switch (a->type) {
        case ENG_A_APDU:
            *apdu = a->u.apdu;
            have_apdu = 1;
            break;
        case ENG_A_LEDGER:
            d->pending = a->u.ledger;
            d->have_pending = 1;
            if (a->u.ledger.type == LEDGER_LEASE_RELEASE)
                d->release_seq = d->seq;
            break;
        case ENG_A_RESULT:
            d->results++;
            d->result = a->u.result;
            d->result_event = d->events;
            d->result_seq = d->seq;
            break;
        case ENG_A_DONE:
            d->done = 1;
            break;
        default:
            break;
        }
    }
    return have_apdu;
}

/* Runs the session until it is done or the lease release is requested
 * (left outstanding in d->pending). */
static void run_until_release(struct drv *d)
{
    struct hx *h = d->h;
    for (int iter = 0; iter < 1000 && !d->done; iter++) {
        struct wire_bytes apdu;
        d->have_pending = 0;
        int have_apdu = record(d, &apdu);
        if (d->done)
            return;
        if (d->have_pending) {
            if (d->pending.type == LEDGER_LEASE_RELEASE)
                return;
            struct ledger_reply rep;
            /* A booking that would also release the lease finds the lease
             * row locked (as by test_result_early.sh): it books without the
             * release (released = 0), so the release comes on its own. */
            if (d->pending.type == LEDGER_SETTLE)
                d->pending.u.settle.release = 0;
            ledger_mem_handle(h->lm, &d->pending, h->now, &rep);
            d->have_pending = 0;
            d->events++;
            if (d->pending.type == LEDGER_SETTLE &&
                d->pending.u.settle.outcome == LEDGER_COMMITTED && rep.status == LEDGER_ST_OK)
                d->booked_event = d->events;
            eng_on_ledger_reply(d->s, &rep, h->now, &d->acts);
            continue;
        }
        ck_assert_msg(have_apdu, "engine stuck");
        uint8_t resp[WIRE_MAX_APDU];
        size_t rlen = 0;
        h->now += 3;
        ck_assert_int_eq(
            sim_card_transceive(h->card, apdu.data, apdu.len, resp, sizeof resp, &rlen), 0);
        d->events++;
        eng_on_card_response(d->s, resp, rlen, h->now, &d->acts);
    }
    ck_abort_msg("the session neither ended nor released its lease");
}

static void open_session(struct drv *d, struct hx *h, uint8_t op, const char *authcode)
{
    memset(d, 0, sizeof *d);
    d->h = h;
    struct wire_open open;
    memset(&open, 0, sizeof open);
    open.op = op;
    open.listener = WIRE_LISTENER_PUBLIC;
    open.uid_len = sizeof h->uid;
    memcpy(open.uid, h->uid, sizeof h->uid);
    open.authcode_len = (uint16_t)strlen(authcode);
    memcpy(open.authcode, authcode, open.authcode_len);
    d->s = eng_open(h->ctx, h->next_session++, &open, h->now, &d->acts);
    ck_assert_ptr_nonnull(d->s);
}

static void assert_no_new_result(struct drv *d, int results_before)
{
    struct wire_bytes apdu;
    d->have_pending = 0;
    ck_assert(!record(d, &apdu));
    ck_assert_int_eq(d->results, results_before);
    ck_assert(!d->done);
    ck_assert(!d->have_pending);
}

/* Stops a top-up with its lease release outstanding; the result is out. */
static void topup_to_release(struct drv *d, struct hx *h, int code)
{
    open_session(d, h, WIRE_OP_TOPUP, h->codes[code].text);
    run_until_release(d);
    ck_assert(!d->done);
    ck_assert_int_eq(d->pending.type, LEDGER_LEASE_RELEASE);
    ck_assert_int_eq(d->results, 1);
    ck_assert_int_eq(d->result.status, WIRE_ST_OK);
    ck_assert_int_eq(d->result.amount, h->codes[code].amount);
    ck_assert_int_eq(ledger_mem_txn_state(h->lm, d->result.txn), LEDGER_MEM_TXN_COMMITTED);
    /* Emitted by the booking's own event, before the release request. */
    ck_assert_int_gt(d->booked_event, 0);
    ck_assert_int_eq(d->result_event, d->booked_event);
    ck_assert_int_lt(d->result_seq, d->release_seq);
}

START_TEST(booked_result_before_release)
{
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, 250);
    struct drv d;
    topup_to_release(&d, &h, c);

    /* Strays in the window: each is ignored. */
    eng_on_client_error(d.s, WIRE_CERR_LOST_TAG, h.now, &d.acts);
    assert_no_new_result(&d, 1);
    eng_on_client_error(d.s, WIRE_CERR_IO, h.now, &d.acts);
    assert_no_new_result(&d, 1);
    static const uint8_t stray[] = {0x91, 0x00};
    eng_on_card_response(d.s, stray, sizeof stray, h.now, &d.acts);
    assert_no_new_result(&d, 1);
    eng_on_client_gone(d.s, h.now, &d.acts);
    assert_no_new_result(&d, 1);

    /* The release completes; the session ends without another result. */
    struct ledger_req rel = d.pending;
    struct ledger_reply rep;
    ledger_mem_handle(h.lm, &rel, h.now, &rep);
    eng_on_ledger_reply(d.s, &rep, h.now, &d.acts);
    struct wire_bytes apdu;
    ck_assert(!record(&d, &apdu));
    ck_assert(d.done);
    ck_assert_int_eq(d.results, 1);
    ck_assert(!ledger_mem_lease_held(h.lm, &h.lcard, h.now));
    eng_free(d.s);
    ck_assert_int_eq(hx_balance(&h), 250);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(booked_result_survives_silent_release)
{
    /* The release never gets an answer (the database went away): the
     * grace timer ends the session; the client already has `ok`. */
    struct hx h;
    hx_init(&h, 0);
    int c = hx_add_code(&h, 400);
    struct drv d;
    topup_to_release(&d, &h, c);
    eng_on_client_gone(d.s, h.now, &d.acts);
    assert_no_new_result(&d, 1);
    eng_on_timeout(d.s, h.now + 3600 * 1000, &d.acts);
    struct wire_bytes apdu;
    ck_assert(!record(&d, &apdu));
    ck_assert(d.done);
    ck_assert_int_eq(d.results, 1);
    ck_assert_int_eq(d.result.status, WIRE_ST_OK);
    eng_free(d.s);
    ck_assert_int_eq(hx_balance(&h), 400);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

/* A check books nothing, so its result waits for the lease release: a
 * client that starts its next session as soon as it has the result must not
 * find its own card busy (test_scaleout's back-to-back checks did). */
START_TEST(check_result_after_release)
{
    struct hx h;
    hx_init(&h, 0);
    struct drv d;
    open_session(&d, &h, WIRE_OP_CHECK, "");
    run_until_release(&d);
    ck_assert(!d.done);
    ck_assert_int_eq(d.results, 0);
    struct ledger_reply rep;
    ledger_mem_handle(h.lm, &d.pending, h.now, &rep);
    ck_assert_int_eq(rep.status, LEDGER_ST_OK);
    eng_on_ledger_reply(d.s, &rep, h.now, &d.acts);
    struct wire_bytes apdu;
    ck_assert(!record(&d, &apdu));
    ck_assert_int_eq(d.results, 1);
    ck_assert_int_eq(d.result.status, WIRE_ST_OK);
    ck_assert_int_eq(d.result.balance, 0);
    ck_assert_int_gt(d.result_seq, d.release_seq);
    eng_free(d.s);
    hx_free(&h);
}
END_TEST

static Suite *result_suite(void)
{
    Suite *s = suite_create("engine_result");
    TCase *tc = tcase_create("result");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, booked_result_before_release);
    tcase_add_test(tc, booked_result_survives_silent_release);
    tcase_add_test(tc, check_result_after_release);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test_engine_result", "-", 0, LOG_LVL_WARN);
    SRunner *sr = srunner_create(result_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
