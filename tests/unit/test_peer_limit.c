/* test_peer_limit: the per-address failure limit of worker/peer_limit.c:
 * attempts in flight count, successes do not, the window starts at the
 * first failure, addresses are independent, and a full table never lets
 * an address past its limit. */
#include <check.h>
#include <stdlib.h>

#include "peer_limit.h"

#define A "198.51.100.1"
#define B "198.51.100.2"
#define C "2001:db8::3"

START_TEST(failures_and_in_flight_count)
{
    struct plim *p = plim_new(3, 10, 16);
    ck_assert_ptr_nonnull(p);
    uint64_t now = 5000;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(plim_begin(p, A, now), 1);
    /* Three in flight: a fourth would exceed the limit if they all fail. */
    ck_assert_int_eq(plim_begin(p, A, now), 0);
    ck_assert_int_eq(plim_begin(p, B, now), 1);
    plim_end(p, B, 0, now);
    for (int i = 0; i < 3; i++)
        plim_end(p, A, 1, now + 100);
    ck_assert_uint_eq(plim_failures(p, A, now + 100), 3);
    ck_assert_int_eq(plim_begin(p, A, now + 9000), 0);
    /* The window began with the first failure (now + 100). */
    ck_assert_int_eq(plim_begin(p, A, now + 10099), 0);
    ck_assert_int_eq(plim_begin(p, A, now + 10100), 1);
    ck_assert_uint_eq(plim_failures(p, A, now + 10100), 0);
    plim_free(p);
}
END_TEST

START_TEST(successes_do_not_count)
{
    struct plim *p = plim_new(2, 60, 16);
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(plim_begin(p, A, (uint64_t)i), 1);
        plim_end(p, A, 0, (uint64_t)i);
    }
    ck_assert_uint_eq(plim_failures(p, A, 100), 0);
    plim_end(p, C, 1, 100); /* never begun: ignored */
    ck_assert_uint_eq(plim_failures(p, C, 100), 0);
    plim_free(p);
}
END_TEST

START_TEST(full_table)
{
    struct plim *p = plim_new(2, 60, 2);
    /* A reaches its limit; B has one in flight. */
    ck_assert_int_eq(plim_begin(p, A, 0), 1);
    ck_assert_int_eq(plim_begin(p, A, 0), 1);
    plim_end(p, A, 1, 1);
    plim_end(p, A, 1, 1);
    ck_assert_int_eq(plim_begin(p, B, 2), 1);
    /* C takes A's entry (nothing in flight there): A starts afresh, which
     * is the price of a bounded table; B's entry is never taken. */
    ck_assert_int_eq(plim_begin(p, C, 3), 1);
    ck_assert_int_eq(plim_begin(p, C, 3), 1);
    /* Both entries now have attempts in flight: a new address is refused
     * rather than let anyone past a limit. */
    ck_assert_int_eq(plim_begin(p, A, 4), 0);
    plim_end(p, B, 1, 5);
    ck_assert_uint_eq(plim_failures(p, B, 5), 1);
    plim_free(p);
}
END_TEST

START_TEST(bad_parameters)
{
    ck_assert_ptr_null(plim_new(0, 60, 16));
    ck_assert_ptr_null(plim_new(3, 0, 16));
    ck_assert_ptr_null(plim_new(3, 60, 0));
    plim_free(NULL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("peer_limit");
    TCase *tc = tcase_create("limit");
    tcase_add_test(tc, failures_and_in_flight_count);
    tcase_add_test(tc, successes_do_not_count);
    tcase_add_test(tc, full_table);
    tcase_add_test(tc, bad_parameters);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
