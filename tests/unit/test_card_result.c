/* Unit tests of tools/card_result.c: every docs/PROTOCOL.md §4 code has a
 * sentence, and each result status maps to its line and exit status. */
#include <check.h>
#include <string.h>

#include <jansson.h>

#include "card_cmd.h"
#include "card_result.h"

static int fmt(const char *json, char *out, size_t cap)
{
    json_error_t e;
    json_t *o = json_loads(json, 0, &e);
    int r;
    ck_assert_ptr_nonnull(o);
    r = card_result_format(o, out, cap);
    json_decref(o);
    return r;
}

START_TEST(test_all_codes_explained)
{
    static const char *const codes[] = {
        "bad-request",  "unsupported-card", "auth-failed",    "card-error", "integrity",
        "code-invalid", "code-used",        "limit-exceeded", "card-busy",  "timeout",
        "lost-tag",     "overloaded",       "internal"};
    ck_assert_int_eq(card_result_code_count(), 13);
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char line[512], json[128];
        ck_assert_ptr_nonnull(card_result_explain(codes[i]));
        ck_assert_str_eq(card_result_code((int)i), codes[i]);
        snprintf(json, sizeof json,
                 "{\"type\":\"result\",\"operation\":\"topup\",\"status\":\"failed\","
                 "\"error\":\"%s\"}",
                 codes[i]);
        ck_assert_int_eq(fmt(json, line, sizeof line), CARD_EXIT_FAIL);
        ck_assert_ptr_nonnull(strstr(line, codes[i]));
        ck_assert_ptr_nonnull(strstr(line, card_result_explain(codes[i])));
    }
    ck_assert_ptr_null(card_result_explain("no-such-code"));
    ck_assert_ptr_null(card_result_code(13));
}
END_TEST

START_TEST(test_lines_and_exit_status)
{
    char line[512];
    ck_assert_int_eq(fmt("{\"type\":\"result\",\"operation\":\"topup\",\"status\":\"ok\","
                         "\"amount\":500,\"balance\":1500,\"txn\":\"abc\"}",
                         line, sizeof line),
                     CARD_EXIT_OK);
    ck_assert_str_eq(line, "top-up ok: +500, balance 1500 (txn abc)");
    ck_assert_int_eq(fmt("{\"type\":\"result\",\"operation\":\"check\",\"status\":\"ok\","
                         "\"balance\":0}",
                         line, sizeof line),
                     CARD_EXIT_OK);
    ck_assert_str_eq(line, "check ok: balance 0");
    ck_assert_int_eq(fmt("{\"type\":\"result\",\"operation\":\"topup\",\"status\":\"failed\","
                         "\"error\":\"code-used\"}",
                         line, sizeof line),
                     CARD_EXIT_FAIL);
    ck_assert_str_eq(line, "top-up failed: code-used \xe2\x80\x94 this code was already used");
    ck_assert_int_eq(fmt("{\"type\":\"result\",\"operation\":\"topup\",\"status\":\"pending\","
                         "\"txn\":\"t1\",\"error\":\"lost-tag\"}",
                         line, sizeof line),
                     CARD_EXIT_PENDING);
    ck_assert_ptr_nonnull(strstr(line, "pending"));
    ck_assert_ptr_nonnull(strstr(line, "t1"));
    ck_assert_int_eq(fmt("{\"type\":\"result\",\"status\":\"failed\",\"error\":\"new-code\"}", line,
                         sizeof line),
                     CARD_EXIT_FAIL);
    ck_assert_ptr_nonnull(strstr(line, "new-code"));
    ck_assert_int_eq(fmt("{\"type\":\"result\",\"status\":\"maybe\"}", line, sizeof line),
                     CARD_EXIT_CONN);
    ck_assert_int_eq(fmt("{\"type\":\"result\",\"status\":7}", line, sizeof line), CARD_EXIT_CONN);
    /* A short buffer truncates, never overflows. */
    ck_assert_int_eq(fmt("{\"type\":\"result\",\"operation\":\"topup\",\"status\":\"ok\","
                         "\"amount\":500,\"balance\":1500,\"txn\":\"abc\"}",
                         line, 8),
                     CARD_EXIT_OK);
    ck_assert_uint_eq(strlen(line), 7);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("card_result");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;
    tcase_add_test(tc, test_all_codes_explained);
    tcase_add_test(tc, test_lines_and_exit_status);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
