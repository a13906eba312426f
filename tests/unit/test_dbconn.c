/* Tests for common/dbconn.c: relative socket directories become absolute
 * (keyword and URI forms, host lists, "./"; an existing one by its
 * canonical path), everything else passes
 * through unchanged (checked by parsing the result back with libpq),
 * quoting survives spaces, quotes and backslashes, parse errors are
 * reported without echoing the conninfo, and describe never shows a
 * password. */
#include <check.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dbconn.h"
#include "ota_err.h"

/* The value libpq parses for `keyword` in conninfo, or NULL. */
static char *parsed(const char *conninfo, const char *keyword)
{
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    ck_assert_ptr_nonnull(opts);
    char *v = NULL;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, keyword) == 0 && o->val != NULL)
            v = strdup(o->val);
    PQconninfoFree(opts);
    return v;
}

static void expect_value(const char *conninfo, const char *keyword, const char *want)
{
    char *v = parsed(conninfo, keyword);
    if (want == NULL) {
        ck_assert_ptr_null(v);
    } else {
        ck_assert_ptr_nonnull(v);
        ck_assert_str_eq(v, want);
    }
    free(v);
}

static char *resolve_at(const char *in, const char *cwd)
{
    char *out = NULL, err[256] = "";
    int rc = dbconn_resolve_at(in, cwd, &out, err, sizeof err);
    ck_assert_msg(rc == OTA_OK, "resolve failed: %s", err);
    ck_assert_ptr_nonnull(out);
    return out;
}

START_TEST(relative_host_becomes_absolute)
{
    char *out = resolve_at("host=var/pg dbname=ota", "/srv/ota");
    expect_value(out, "host", "/srv/ota/var/pg");
    expect_value(out, "dbname", "ota");
    dbconn_free(out);
    out = resolve_at("host=./pg dbname=ota", "/srv/ota/");
    expect_value(out, "host", "/srv/ota/pg");
    dbconn_free(out);
    out = resolve_at("host=.//run/pg", "/");
    expect_value(out, "host", "/run/pg");
    dbconn_free(out);
    out = resolve_at("host=../pg", "/srv/ota");
    expect_value(out, "host", "/srv/ota/../pg");
    dbconn_free(out);
}
END_TEST

/* An existing directory is named by its canonical path when that is not
 * longer, so "../.." from a deep directory keeps socket paths short. */
START_TEST(existing_directory_is_canonical)
{
    char base[] = "/tmp/ota-dbconn.XXXXXX", deep[PATH_MAX], pg[PATH_MAX];
    ck_assert_ptr_nonnull(mkdtemp(base));
    snprintf(pg, sizeof pg, "%s/pg", base);
    snprintf(deep, sizeof deep, "%s/a", base);
    ck_assert_int_eq(mkdir(pg, 0700), 0);
    ck_assert_int_eq(mkdir(deep, 0700), 0);
    char *out = resolve_at("host=../pg dbname=ota", deep);
    expect_value(out, "host", pg);
    dbconn_free(out);
    /* A directory that does not exist (yet) keeps the joined form. */
    out = resolve_at("host=../nothing dbname=ota", deep);
    char want[PATH_MAX + 16];
    snprintf(want, sizeof want, "%s/../nothing", deep);
    expect_value(out, "host", want);
    dbconn_free(out);
    ck_assert_int_eq(rmdir(deep), 0);
    ck_assert_int_eq(rmdir(pg), 0);
    ck_assert_int_eq(rmdir(base), 0);
}
END_TEST

START_TEST(absolute_names_and_addresses_unchanged)
{
    const char *cases[][2] = {
        {"host=/var/run/postgresql", "/var/run/postgresql"},
        {"host=db.example.org port=6432", "db.example.org"},
        {"host=127.0.0.1", "127.0.0.1"},
        {"host=@abstract", "@abstract"},
        {"host=pg", "pg"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = resolve_at(cases[i][0], "/srv/ota");
        expect_value(out, "host", cases[i][1]);
        dbconn_free(out);
    }
    char *out = resolve_at("host=db.example.org port=6432", "/srv/ota");
    expect_value(out, "port", "6432");
    dbconn_free(out);
}
END_TEST

START_TEST(host_lists)
{
    char *out =
        resolve_at("host=var/pg,db2.example.org,/abs/pg,./b port=5432,5433,5434,5435", "/w");
    expect_value(out, "host", "/w/var/pg,db2.example.org,/abs/pg,/w/b");
    expect_value(out, "port", "5432,5433,5434,5435");
    dbconn_free(out);
}
END_TEST

START_TEST(uri_form)
{
    char *out = resolve_at("postgresql://u@/ota?host=var%2Fpg&application_name=x", "/srv");
    expect_value(out, "host", "/srv/var/pg");
    expect_value(out, "dbname", "ota");
    expect_value(out, "user", "u");
    expect_value(out, "application_name", "x");
    dbconn_free(out);
}
END_TEST

START_TEST(quoting_round_trips)
{
    char *out = resolve_at("host='my dir/pg' password='it\\'s \\\\ secret' options='-c a=b'",
                           "/srv/it's here");
    expect_value(out, "host", "/srv/it's here/my dir/pg");
    expect_value(out, "password", "it's \\ secret");
    expect_value(out, "options", "-c a=b");
    dbconn_free(out);
    /* Nothing given, nothing added (libpq's defaults stay libpq's). */
    out = resolve_at("", "/srv");
    ck_assert_str_eq(out, "");
    dbconn_free(out);
}
END_TEST

START_TEST(errors)
{
    char *out = (char *)1, err[256] = "";
    ck_assert_int_eq(
        dbconn_resolve_at("host=var/pg nosuchoption=secretvalue", "/srv", &out, err, sizeof err),
        OTA_ERR_PARSE);
    ck_assert_ptr_null(out);
    ck_assert_ptr_nonnull(strstr(err, "cannot be parsed"));
    ck_assert_ptr_null(strstr(err, "secretvalue"));
    ck_assert_ptr_null(strchr(err, '\n'));
    ck_assert_int_eq(dbconn_resolve_at("host='unterminated", "/srv", &out, err, sizeof err),
                     OTA_ERR_PARSE);
    ck_assert_int_eq(dbconn_resolve_at("host=a/b", "relative", &out, err, sizeof err),
                     OTA_ERR_INVAL);
    char longdir[PATH_MAX + 16];
    memset(longdir, 'd', sizeof longdir - 1);
    longdir[0] = '/';
    longdir[sizeof longdir - 1] = '\0';
    ck_assert_int_eq(dbconn_resolve_at("host=a/b", longdir, &out, err, sizeof err), OTA_ERR_LENGTH);
    ck_assert_ptr_null(out);
}
END_TEST

START_TEST(uses_working_directory)
{
    char cwd[PATH_MAX], want[PATH_MAX + 16], *out = NULL, err[128];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    snprintf(want, sizeof want, "%s%svar/pg", cwd, strcmp(cwd, "/") ? "/" : "");
    ck_assert_int_eq(dbconn_resolve("host=var/pg dbname=ota", &out, err, sizeof err), OTA_OK);
    expect_value(out, "host", want);
    dbconn_free(out);
}
END_TEST

START_TEST(describe_hides_password)
{
    char d[256];
    ck_assert_int_eq(dbconn_describe("host=/srv/pg port=5433 dbname=ota user=fin password=hunter2 "
                                     "sslkey=/k",
                                     d, sizeof d),
                     OTA_OK);
    ck_assert_str_eq(d, "host=/srv/pg port=5433 dbname=ota user=fin");
    ck_assert_int_eq(dbconn_describe("postgresql://a:pw@h/db", d, sizeof d), OTA_OK);
    ck_assert_str_eq(d, "host=h dbname=db user=a");
    ck_assert_int_eq(dbconn_describe("host=/a/very/long/directory dbname=ota", d, 12),
                     OTA_ERR_LENGTH);
    ck_assert_uint_eq(strlen(d), 11);
    ck_assert_int_eq(dbconn_describe("bogus=1", d, sizeof d), OTA_ERR_PARSE);
    ck_assert_str_eq(d, "");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dbconn");
    TCase *tc = tcase_create("dbconn");
    tcase_add_test(tc, relative_host_becomes_absolute);
    tcase_add_test(tc, existing_directory_is_canonical);
    tcase_add_test(tc, absolute_names_and_addresses_unchanged);
    tcase_add_test(tc, host_lists);
    tcase_add_test(tc, uri_form);
    tcase_add_test(tc, quoting_round_trips);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, uses_working_directory);
    tcase_add_test(tc, describe_hides_password);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
