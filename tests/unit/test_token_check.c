/* test_token_check: worker/token_check.c with its real verifier thread and
 * a libevent loop: a right token verifies once and is then recognised
 * without Argon2id, wrong tokens count against their address and past the
 * limit are refused without Argon2id (the count of verifications proves
 * it), a full queue answers busy, no hash means every token is wrong, and
 * no verdict ever comes from inside tokc_submit(). */
#include <check.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "token_check.h"

#define TOKEN "the-operator-token-of-this-test"
#define A "198.51.100.1"
#define B "198.51.100.2"

struct fx {
    struct event_base *base;
    struct tokc *t;
    int in_submit;
    int verdicts;
    int want;
    uint64_t last_session, last_ticket;
    enum tokc_verdict v[64];
};

static uint64_t now_ms(void)
{
    return 1000; /* windows never end within a test */
}

static void on_done(void *arg, uint64_t session, uint64_t ticket, enum tokc_verdict v)
{
    struct fx *f = arg;
    ck_assert(!f->in_submit);
    ck_assert_uint_eq(ticket, session + 1000);
    ck_assert_int_lt(f->verdicts, 64);
    f->v[f->verdicts++] = v;
    f->last_session = session;
    if (f->verdicts >= f->want)
        event_base_loopbreak(f->base);
}

static void fx_init(struct fx *f, const char *token, uint32_t max_failures, uint32_t queue)
{
    memset(f, 0, sizeof *f);
    f->base = event_base_new();
    ck_assert_ptr_nonnull(f->base);
    struct tokc_config c = {.max_failures = max_failures, .window_s = 3600, .queue = queue};
    if (token)
        ck_assert_int_eq(crypto_pwhash_str(c.hash, token, strlen(token), crypto_pwhash_OPSLIMIT_MIN,
                                           crypto_pwhash_MEMLIMIT_MIN),
                         0);
    f->t = tokc_new(f->base, &c, on_done, f, now_ms);
    ck_assert_ptr_nonnull(f->t);
}

static void fx_free(struct fx *f)
{
    tokc_free(f->t);
    event_base_free(f->base);
}

static enum tokc_verdict submit(struct fx *f, uint64_t session, const char *token, const char *peer)
{
    f->in_submit = 1;
    enum tokc_verdict v = tokc_submit(f->t, session, session + 1000, token, strlen(token), peer);
    f->in_submit = 0;
    return v;
}

/* Runs the loop until `n` verdicts in all have come (bounded). */
static void wait_verdicts(struct fx *f, int n)
{
    f->want = n;
    struct timeval limit = {60, 0};
    event_base_loopexit(f->base, &limit);
    while (f->verdicts < n)
        ck_assert_int_ge(event_base_dispatch(f->base), 0);
    ck_assert_int_eq(f->verdicts, n);
}

START_TEST(right_token_then_recognised)
{
    struct fx f;
    fx_init(&f, TOKEN, 3, 4);
    ck_assert_int_eq(submit(&f, 1, TOKEN, A), TOKC_QUEUED);
    wait_verdicts(&f, 1);
    ck_assert_int_eq(f.v[0], TOKC_OK);
    ck_assert_uint_eq(f.last_session, 1);
    ck_assert_uint_eq(tokc_verifications(f.t), 1);
    ck_assert_int_eq(submit(&f, 2, TOKEN, A), TOKC_OK);
    ck_assert_int_eq(submit(&f, 3, TOKEN, B), TOKC_OK);
    ck_assert_uint_eq(tokc_verifications(f.t), 1);
    fx_free(&f);
}
END_TEST

START_TEST(wrong_tokens_limited_without_argon2)
{
    struct fx f;
    fx_init(&f, TOKEN, 3, 8);
    for (uint64_t i = 1; i <= 3; i++)
        ck_assert_int_eq(submit(&f, i, "wrong-token-number-x", A), TOKC_QUEUED);
    /* Pending attempts count: the fourth is refused before any verdict. */
    ck_assert_int_eq(submit(&f, 4, "wrong-token-number-y", A), TOKC_LIMITED);
    wait_verdicts(&f, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(f.v[i], TOKC_WRONG);
    ck_assert_uint_eq(tokc_verifications(f.t), 3);
    for (uint64_t i = 5; i < 25; i++)
        ck_assert_int_eq(submit(&f, i, "wrong-token-number-z", A), TOKC_LIMITED);
    /* Even the right token, until it verified once elsewhere. */
    ck_assert_int_eq(submit(&f, 25, TOKEN, A), TOKC_LIMITED);
    ck_assert_uint_eq(tokc_verifications(f.t), 3);
    /* Another address has its own budget. */
    ck_assert_int_eq(submit(&f, 26, TOKEN, B), TOKC_QUEUED);
    wait_verdicts(&f, 4);
    ck_assert_int_eq(f.v[3], TOKC_OK);
    ck_assert_int_eq(submit(&f, 27, TOKEN, A), TOKC_OK);
    ck_assert_uint_eq(tokc_verifications(f.t), 4);
    fx_free(&f);
}
END_TEST

START_TEST(full_queue_is_busy)
{
    struct fx f;
    fx_init(&f, TOKEN, 10, 2);
    ck_assert_int_eq(submit(&f, 1, "wrong-token-number-1", A), TOKC_QUEUED);
    ck_assert_int_eq(submit(&f, 2, "wrong-token-number-2", B), TOKC_QUEUED);
    /* A slot is held until the loop has taken its verdict. */
    ck_assert_int_eq(submit(&f, 3, "wrong-token-number-3", A), TOKC_BUSY);
    wait_verdicts(&f, 2);
    ck_assert_int_eq(submit(&f, 4, "wrong-token-number-4", A), TOKC_QUEUED);
    wait_verdicts(&f, 3);
    /* busy did not count as a failure: A has 2 of its 10. */
    ck_assert_uint_eq(tokc_verifications(f.t), 3);
    fx_free(&f);
}
END_TEST

START_TEST(no_hash_or_no_token)
{
    struct fx f;
    fx_init(&f, NULL, 3, 4);
    ck_assert_int_eq(submit(&f, 1, TOKEN, A), TOKC_WRONG);
    fx_free(&f);
    fx_init(&f, TOKEN, 3, 4);
    ck_assert_int_eq(submit(&f, 2, "", A), TOKC_WRONG);
    char long_token[200];
    memset(long_token, 'x', sizeof long_token - 1);
    long_token[sizeof long_token - 1] = '\0';
    ck_assert_int_eq(submit(&f, 3, long_token, A), TOKC_WRONG);
    ck_assert_uint_eq(tokc_verifications(f.t), 0);
    fx_free(&f);
}
END_TEST

START_TEST(free_with_checks_queued)
{
    struct fx f;
    fx_init(&f, TOKEN, 10, 4);
    for (uint64_t i = 1; i <= 4; i++)
        ck_assert_int_eq(submit(&f, i, "wrong-token-number-q", B), TOKC_QUEUED);
    fx_free(&f); /* no verdict, no hang, nothing leaked (valgrind) */
    ck_assert_int_eq(f.verdicts, 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("token_check");
    TCase *tc = tcase_create("check");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, right_token_then_recognised);
    tcase_add_test(tc, wrong_tokens_limited_without_argon2);
    tcase_add_test(tc, full_queue_is_busy);
    tcase_add_test(tc, no_hash_or_no_token);
    tcase_add_test(tc, free_with_checks_queued);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test_token_check", "-", 0, LOG_LVL_WARN);
    if (sodium_init() < 0)
        return EXIT_FAILURE;
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
