/* Tests for common/config.c: defaults, file syntax, type checks, unknown
 * keys, flag overrides, and that deploy/ota.conf.example documents every
 * key with exactly the default of the table. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "ota_err.h"

static char tmp_path[64];

static const char *write_tmp(const char *text)
{
    snprintf(tmp_path, sizeof tmp_path, "/tmp/test_config.XXXXXX");
    int fd = mkstemp(tmp_path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return tmp_path;
}

START_TEST(defaults)
{
    struct cfg *c = cfg_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(cfg_str(c, "gateway.listen"), "127.0.0.1:8080");
    ck_assert_int_eq(cfg_int(c, "gateway.max_message"), 4096);
    ck_assert_int_eq(cfg_bool(c, "gateway.behind_tls_proxy"), 0);
    ck_assert_str_eq(cfg_str(c, "db.conninfo"), "host=var/pg dbname=ota");
    ck_assert_str_eq(cfg_str(c, "gateway.tls_cert"), "");
    ck_assert_ptr_null(cfg_path(c));
    cfg_free(c);
}
END_TEST

START_TEST(file_values_and_comments)
{
    char err[256];
    struct cfg *c = cfg_new();
    const char *p = write_tmp("# comment\n\n  gateway.workers = 5  \n"
                              "log.format=json\n"
                              "gateway.behind_tls_proxy = yes\n"
                              "db.conninfo = \" host=/x dbname=y \"\r\n"
                              "   # indented comment\n"
                              "worker.user = nobody");
    ck_assert_int_eq(cfg_load_file(c, p, err, sizeof err), 0);
    ck_assert_int_eq(cfg_int(c, "gateway.workers"), 5);
    ck_assert_str_eq(cfg_str(c, "log.format"), "json");
    ck_assert_int_eq(cfg_bool(c, "gateway.behind_tls_proxy"), 1);
    ck_assert_str_eq(cfg_str(c, "db.conninfo"), " host=/x dbname=y ");
    ck_assert_str_eq(cfg_str(c, "worker.user"), "nobody");
    ck_assert_str_eq(cfg_path(c), p);
    unlink(p);
    cfg_free(c);
}
END_TEST

START_TEST(unknown_key_names_file_and_line)
{
    char err[256] = "";
    struct cfg *c = cfg_new();
    const char *p = write_tmp("gateway.workers = 3\ngateway.listne = 1.2.3.4:5\n");
    ck_assert_int_eq(cfg_load_file(c, p, err, sizeof err), OTA_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err, ":2:"));
    ck_assert_ptr_nonnull(strstr(err, "gateway.listne"));
    unlink(p);
    cfg_free(c);
}
END_TEST

START_TEST(bad_values_rejected)
{
    char err[256];
    struct cfg *c = cfg_new();
    ck_assert_int_eq(cfg_set(c, "gateway.workers", "two", err, sizeof err), OTA_ERR_PARSE);
    ck_assert_int_eq(cfg_set(c, "gateway.workers", "3x", err, sizeof err), OTA_ERR_PARSE);
    ck_assert_int_eq(cfg_set(c, "gateway.workers", "", err, sizeof err), OTA_ERR_PARSE);
    ck_assert_int_eq(cfg_set(c, "gateway.workers", "-1", err, sizeof err), OTA_ERR_PARSE);
    ck_assert_int_eq(cfg_set(c, "gateway.max_message", "99999999999999999999", err, sizeof err),
                     OTA_ERR_PARSE);
    ck_assert_int_eq(cfg_set(c, "gateway.behind_tls_proxy", "maybe", err, sizeof err),
                     OTA_ERR_PARSE);
    ck_assert_int_eq(cfg_set(c, "log.file", "a\nb", err, sizeof err), OTA_ERR_PARSE);
    ck_assert_int_eq(cfg_set(c, "no.such.key", "1", err, sizeof err), OTA_ERR_NOT_FOUND);
    /* A rejected value leaves the previous one. */
    ck_assert_int_eq(cfg_int(c, "gateway.workers"), 2);
    const char *p = write_tmp("gateway.workers 3\n");
    ck_assert_int_eq(cfg_load_file(c, p, err, sizeof err), OTA_ERR_PARSE);
    unlink(p);
    ck_assert_int_eq(cfg_load_file(c, "/nonexistent/ota.conf", err, sizeof err), OTA_ERR_IO);
    cfg_free(c);
}
END_TEST

START_TEST(long_line_rejected)
{
    char err[256];
    size_t n = 10000;
    char *text = malloc(n + 32);
    strcpy(text, "db.conninfo = ");
    memset(text + strlen(text), 'a', n);
    text[n + 14] = '\0';
    struct cfg *c = cfg_new();
    const char *p = write_tmp(text);
    ck_assert_int_lt(cfg_load_file(c, p, err, sizeof err), 0);
    unlink(p);
    free(text);
    cfg_free(c);
}
END_TEST

START_TEST(args_override_and_are_kept_for_children)
{
    char err[256];
    char *argv[] = {"prog",          "--config",   "x.conf",      "--gateway.workers=7",
                    "--log.level",   "debug",      "--worker-id", "3",
                    "--not-a-key=1", "positional", NULL};
    int argc = 10;
    struct cfg *c = cfg_new();
    int n = cfg_apply_args(c, argc, argv, err, sizeof err);
    ck_assert_int_eq(n, 7);
    ck_assert_str_eq(argv[0], "prog");
    ck_assert_str_eq(argv[1], "--config");
    ck_assert_str_eq(argv[2], "x.conf");
    ck_assert_str_eq(argv[3], "--worker-id");
    ck_assert_str_eq(argv[4], "3");
    ck_assert_str_eq(argv[5], "--not-a-key=1");
    ck_assert_str_eq(argv[6], "positional");
    ck_assert_ptr_null(argv[7]);
    ck_assert_int_eq(cfg_int(c, "gateway.workers"), 7);
    ck_assert_str_eq(cfg_str(c, "log.level"), "debug");
    size_t no;
    const char *const *ov = cfg_override_args(c, &no);
    ck_assert_uint_eq(no, 2);
    ck_assert_str_eq(ov[0], "--gateway.workers=7");
    ck_assert_str_eq(ov[1], "--log.level=debug");
    cfg_free(c);
}
END_TEST

START_TEST(args_errors)
{
    char err[256];
    char *a1[] = {"prog", "--gateway.workers", NULL};
    struct cfg *c = cfg_new();
    ck_assert_int_eq(cfg_apply_args(c, 2, a1, err, sizeof err), OTA_ERR_PARSE);
    char *a2[] = {"prog", "--gateway.workers=lots", NULL};
    ck_assert_int_eq(cfg_apply_args(c, 2, a2, err, sizeof err), OTA_ERR_PARSE);
    cfg_free(c);
}
END_TEST

/* Every key of the table appears exactly once in the example, set to its
 * default, and the example holds no key outside the table. */
START_TEST(example_documents_every_default)
{
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/deploy/ota.conf.example", OTA_SRCDIR);
    struct cfg *c = cfg_new();
    ck_assert_msg(cfg_load_file(c, path, err, sizeof err) == 0, "%s", err);
    cfg_free(c);

    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t nk = cfg_key_count();
    ck_assert_uint_gt(nk, 40);
    int *seen = calloc(nk, sizeof *seen);
    char line[4096];
    int prev_comment = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#') {
            prev_comment = 1;
            continue;
        }
        if (!line[0]) {
            prev_comment = 0;
            continue;
        }
        char *eq = strstr(line, " =");
        ck_assert_msg(eq != NULL, "line '%s'", line);
        *eq = '\0';
        const char *val = eq[2] == ' ' ? eq + 3 : eq + 2;
        size_t i;
        for (i = 0; i < nk; i++)
            if (strcmp(cfg_key_name(i), line) == 0)
                break;
        ck_assert_msg(i < nk, "key %s not in the table", line);
        ck_assert_msg(strcmp(val, cfg_key_default(i)) == 0, "%s: example '%s' table '%s'", line,
                      val, cfg_key_default(i));
        ck_assert_msg(prev_comment, "%s has no comment", line);
        seen[i]++;
        prev_comment = 0;
    }
    fclose(f);
    for (size_t i = 0; i < nk; i++)
        ck_assert_msg(seen[i] == 1, "%s appears %d times", cfg_key_name(i), seen[i]);
    free(seen);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("config");
    TCase *t = tcase_create("core");
    tcase_add_test(t, defaults);
    tcase_add_test(t, file_values_and_comments);
    tcase_add_test(t, unknown_key_names_file_and_line);
    tcase_add_test(t, bad_values_rejected);
    tcase_add_test(t, long_line_rejected);
    tcase_add_test(t, args_override_and_are_kept_for_children);
    tcase_add_test(t, args_errors);
    tcase_add_test(t, example_documents_every_default);
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
