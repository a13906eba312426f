/* Tests for common/log.c: logfmt and JSON lines, one line per event even
 * with hostile values, level filtering, reopen after rotation, UID tails
 * and quoting. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static char dir[64];
static char path[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_log.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.log", dir);
}

static void teardown(void)
{
    log_init("test", "-", 0, LOG_LVL_INFO);
    char rot[160];
    snprintf(rot, sizeof rot, "%s.1", path);
    unlink(rot);
    unlink(path);
    rmdir(dir);
}

/* Reads the whole log file into a static buffer. */
static const char *slurp(const char *p)
{
    static char buf[65536];
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

START_TEST(logfmt_line)
{
    ck_assert_int_eq(log_init("ota-test", path, 0, LOG_LVL_INFO), 0);
    log_info("session_open", "session=%d peer=%s", 42, "127.0.0.1");
    const char *s = slurp(path);
    ck_assert_int_eq(count_lines(s), 1);
    ck_assert_ptr_nonnull(strstr(s, "level=info prog=ota-test pid="));
    ck_assert_ptr_nonnull(strstr(s, "func=logfmt_line_fn event=session_open"));
    ck_assert_ptr_nonnull(strstr(s, "session=42 peer=127.0.0.1\n"));
    ck_assert(strncmp(s, "ts=", 3) == 0);
}
END_TEST

START_TEST(control_characters_escaped)
{
    ck_assert_int_eq(log_init("ota-test", path, 0, LOG_LVL_INFO), 0);
    log_warn("bad\nevent", "path=%s", "/a\r\nlevel=error fake\x01");
    const char *s = slurp(path);
    ck_assert_int_eq(count_lines(s), 1);
    ck_assert_ptr_nonnull(strstr(s, "event=bad\\nevent"));
    ck_assert_ptr_nonnull(strstr(s, "\\x0d\\nlevel=error fake\\x01"));
}
END_TEST

START_TEST(json_line)
{
    ck_assert_int_eq(log_init("ota-test", path, 1, LOG_LVL_DEBUG), 0);
    log_debug("result",
              "session=7 status=ok detail=\"two words \\\"q\\\"\" neg=-3 lead=007 "
              "ctl=%s",
              "a\nb");
    const char *s = slurp(path);
    ck_assert_int_eq(count_lines(s), 1);
    json_error_t e;
    json_t *j = json_loads(s, 0, &e);
    ck_assert_msg(j != NULL, "%s: %s", e.text, s);
    ck_assert_str_eq(json_string_value(json_object_get(j, "level")), "debug");
    ck_assert_str_eq(json_string_value(json_object_get(j, "event")), "result");
    ck_assert_str_eq(json_string_value(json_object_get(j, "prog")), "ota-test");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "session")), 7);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "neg")), -3);
    ck_assert_str_eq(json_string_value(json_object_get(j, "lead")), "007");
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    ck_assert_str_eq(json_string_value(json_object_get(j, "detail")), "two words \"q\"");
    ck_assert_str_eq(json_string_value(json_object_get(j, "ctl")), "a\nb");
    json_decref(j);
}
END_TEST

START_TEST(json_survives_garbage_and_long_lines)
{
    ck_assert_int_eq(log_init("ota-test", path, 1, LOG_LVL_INFO), 0);
    log_info("odd", "not logfmt at all \"unterminated");
    char big[6000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_info("big", "v=%s", big);
    const char *s = slurp(path);
    ck_assert_int_eq(count_lines(s), 2);
    json_error_t e;
    char first[8192];
    size_t n = strcspn(s, "\n");
    memcpy(first, s, n);
    first[n] = '\0';
    json_t *j = json_loads(first, 0, &e);
    ck_assert_msg(j != NULL, "%s", e.text);
    ck_assert_ptr_nonnull(json_object_get(j, "msg"));
    json_decref(j);
    j = json_loads(s + n + 1, 0, &e);
    ck_assert_msg(j != NULL, "truncated long line is not JSON: %s", e.text);
    json_decref(j);
}
END_TEST

START_TEST(level_filter)
{
    ck_assert_int_eq(log_init("ota-test", path, 0, LOG_LVL_WARN), 0);
    log_info("hidden", "a=1");
    log_debug("hidden", "a=2");
    log_error("shown", "a=3");
    const char *s = slurp(path);
    ck_assert_int_eq(count_lines(s), 1);
    ck_assert_ptr_nonnull(strstr(s, "event=shown"));
    ck_assert_ptr_null(strstr(s, "hidden"));
    ck_assert_int_eq(log_parse_level("debug"), LOG_LVL_DEBUG);
    ck_assert_int_eq(log_parse_level("error"), LOG_LVL_ERROR);
    ck_assert_int_eq(log_parse_level("bogus"), LOG_LVL_INFO);
}
END_TEST

START_TEST(reopen_after_rotation)
{
    char rot[160];
    snprintf(rot, sizeof rot, "%s.1", path);
    ck_assert_int_eq(log_init("ota-test", path, 0, LOG_LVL_INFO), 0);
    log_info("before", "x=1");
    ck_assert_int_eq(rename(path, rot), 0);
    ck_assert_int_eq(log_reopen(), 0);
    log_info("after", "x=2");
    ck_assert_ptr_nonnull(strstr(slurp(rot), "event=before"));
    const char *s = slurp(path);
    ck_assert_ptr_nonnull(strstr(s, "event=after"));
    ck_assert_ptr_null(strstr(s, "event=before"));
}
END_TEST

START_TEST(uid_tail_and_quote)
{
    char tail[8], q[32];
    const uint8_t uid[7] = {0x04, 0x11, 0x22, 0x33, 0x44, 0xa1, 0xb2};
    ck_assert_str_eq(log_uid_tail(uid, 7, tail), "..a1b2");
    ck_assert_str_eq(log_uid_tail(uid, 1, tail), "..");
    ck_assert_str_eq(log_quote("a \"b\"\n", q, sizeof q), "\"a \\\"b\\\"\\x0a\"");
    ck_assert_str_eq(log_quote("abcdefghijklmnopqrstuvwxyz0123456789", q, 10), "\"abcdefg\"");
    ck_assert_int_eq(log_init("ota-test", "/nonexistent/dir/x.log", 0, LOG_LVL_INFO), -12);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("log");
    TCase *t = tcase_create("core");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, logfmt_line);
    tcase_add_test(t, control_characters_escaped);
    tcase_add_test(t, json_line);
    tcase_add_test(t, json_survives_garbage_and_long_lines);
    tcase_add_test(t, level_filter);
    tcase_add_test(t, reopen_after_rotation);
    tcase_add_test(t, uid_tail_and_quote);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
