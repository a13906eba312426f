/* Unit tests of tools/load_hist.c: bucket edges are contiguous, the error
 * stays under 1.6 %, and quantiles land where the samples are. */
#include <check.h>
#include <stdlib.h>

#include "load_hist.h"

START_TEST(test_buckets_contiguous)
{
    /* Every value maps to a bucket whose upper edge is >= it, and the
     * previous bucket's upper edge is below it. */
    for (uint64_t v = 0; v < 200000; v++) {
        unsigned i = load_hist_index(v);
        ck_assert_uint_ge(load_hist_upper(i), v);
        if (i > 0)
            ck_assert_uint_lt(load_hist_upper(i - 1), v);
    }
    for (uint64_t v = 128; v < (1ULL << 40); v = v * 3 + 7) {
        uint64_t up = load_hist_upper(load_hist_index(v));
        ck_assert_uint_ge(up, v);
        ck_assert((double)(up - v) <= (double)v / 64.0);
    }
    ck_assert_uint_eq(load_hist_index(UINT64_MAX), LOAD_HIST_BUCKETS - 1);
}
END_TEST

START_TEST(test_quantiles)
{
    struct load_hist *h = malloc(sizeof *h), *g = malloc(sizeof *g);
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_nonnull(g);
    load_hist_init(h);
    ck_assert_uint_eq(load_hist_quantile(h, 0.5), 0);
    /* 1..1000 µs, once each. */
    for (uint64_t v = 1; v <= 1000; v++)
        load_hist_add(h, v);
    ck_assert_uint_eq(h->count, 1000);
    ck_assert_uint_eq(h->min_us, 1);
    ck_assert_uint_eq(h->max_us, 1000);
    ck_assert_uint_eq(load_hist_mean(h), 500);
    ck_assert_uint_ge(load_hist_quantile(h, 0.5), 500);
    ck_assert_uint_le(load_hist_quantile(h, 0.5), 508);
    ck_assert_uint_ge(load_hist_quantile(h, 0.99), 990);
    ck_assert_uint_le(load_hist_quantile(h, 0.99), 1000);
    ck_assert_uint_eq(load_hist_quantile(h, 1.0), 1000);
    /* One slow outlier shows in p99.9 of 1001 samples, not in p99. */
    load_hist_init(g);
    load_hist_add(g, 5000000);
    load_hist_merge(h, g);
    ck_assert_uint_eq(h->count, 1001);
    ck_assert_uint_le(load_hist_quantile(h, 0.99), 1000);
    ck_assert_uint_eq(load_hist_quantile(h, 0.9999), 5000000);
    free(h);
    free(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("load_hist");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;
    tcase_add_test(tc, test_buckets_contiguous);
    tcase_add_test(tc, test_quantiles);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
