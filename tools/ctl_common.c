/* ctl_common: option parsing, the database connection, key loading and
 * result printing shared by the ota-ctl command groups.
 *
 * Must never print a secret: the conninfo may hold a password (only
 * dbconn_describe's host, port, database and user are shown), and key
 * material never leaves ctl_open_keys' caller. */
#include "ctl.h"

#include <errno.h>
#include <jansson.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dbconn.h"
#include "hex.h"
#include "ota_err.h"
#include "num.h"

static int too_many(const char *what, const char *arg)
{
    fprintf(stderr, "ota-ctl %s: unexpected argument '%s'\n", what, arg);
    return -1;
}

int ctl_parse_opts(const char *what, int argc, char **argv, struct ctl_opt *opts, size_t nopts,
                   const char **pos, size_t maxpos, size_t *npos)
{
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (strcmp(a, "--") == 0) {
                for (i++; i < argc; i++) {
                    if (*npos == maxpos)
                        return too_many(what, argv[i]);
                    pos[(*npos)++] = argv[i];
                }
                break;
            }
            if (*npos == maxpos)
                return too_many(what, a);
            pos[(*npos)++] = a;
            continue;
        }
        const char *eq = strchr(a + 2, '=');
        size_t n = eq != NULL ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        struct ctl_opt *o = NULL;
        for (size_t j = 0; j < nopts; j++)
            if (strlen(opts[j].name) == n && strncmp(opts[j].name, a + 2, n) == 0)
                o = &opts[j];
        if (o == NULL) {
            fprintf(stderr, "ota-ctl %s: unknown option '%.*s'\n", what, (int)(n + 2), a);
            return -1;
        }
        if (!o->takes_value) {
            if (eq != NULL) {
                fprintf(stderr, "ota-ctl %s: --%s takes no value\n", what, o->name);
                return -1;
            }
            o->seen = 1;
            continue;
        }
        if (eq != NULL)
            o->value = eq + 1;
        else if (i + 1 < argc)
            o->value = argv[++i];
        else {
            fprintf(stderr, "ota-ctl %s: --%s needs a value\n", what, o->name);
            return -1;
        }
        o->seen = 1;
    }
    return 0;
}

const char *ctl_opt(const struct ctl_opt *opts, size_t nopts, const char *name)
{
    for (size_t i = 0; i < nopts; i++)
        if (strcmp(opts[i].name, name) == 0)
            return opts[i].seen ? opts[i].value : NULL;
    return NULL;
}

int ctl_flag(const struct ctl_opt *opts, size_t nopts, const char *name)
{
    for (size_t i = 0; i < nopts; i++)
        if (strcmp(opts[i].name, name) == 0)
            return opts[i].seen;
    return 0;
}

int ctl_parse_ll(const char *what, const char *s, long long min, long long max, long long *out)
{
    long long v;
    if (num_parse_ll(s, min, max, &v) != 0) {
        fprintf(stderr, "ota-ctl: %s must be an integer from %lld to %lld (got '%s')\n", what, min,
                max, s != NULL ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

static PGconn *connect_to(const char *given, const char *setup);

PGconn *ctl_connect(const struct ctl *c)
{
    return connect_to(c->conninfo != NULL ? c->conninfo : cfg_str(c->cfg, "db.conninfo"),
                      "SET TIME ZONE 'UTC'; SET client_min_messages = warning");
}

PGconn *ctl_connect_finance(const struct ctl *c)
{
    const char *ci = c->conninfo;
    if (ci == NULL)
        ci = cfg_str(c->cfg, "db.finance_conninfo");
    if (ci == NULL || ci[0] == '\0')
        ci = cfg_str(c->cfg, "db.conninfo");
    return connect_to(ci, "SET TIME ZONE 'UTC'; SET client_min_messages = warning; "
                          "SET default_transaction_read_only = on");
}

static PGconn *connect_to(const char *given, const char *setup)
{
    char err[512], where[512];
    char *conninfo = NULL;
    if (dbconn_resolve(given, &conninfo, err, sizeof err) != OTA_OK) {
        fprintf(stderr, "ota-ctl: %s\n", err);
        return NULL;
    }
    dbconn_describe(conninfo, where, sizeof where);
    PGconn *db = PQconnectdb(conninfo);
    dbconn_free(conninfo);
    if (db == NULL || PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "ota-ctl: cannot connect to the database (%s): %s",
                where[0] ? where : "libpq defaults",
                db != NULL ? PQerrorMessage(db) : "out of memory\n");
        PQfinish(db);
        return NULL;
    }
    PGresult *r = PQexec(db, setup);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        fprintf(stderr, "ota-ctl: setting up the session failed: %s", PQerrorMessage(db));
        PQfinish(db);
        return NULL;
    }
    return db;
}

PGresult *ctl_exec(PGconn *db, const char *what, const char *sql, int n, const char *const *values)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, values, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    const char *msg = PQresultErrorMessage(r);
    fprintf(stderr, "ota-ctl: %s failed: %s", what, msg != NULL && *msg ? msg : PQerrorMessage(db));
    PQclear(r);
    return NULL;
}

const char *ctl_actor(char *buf, size_t cap)
{
    const char *s = getenv("SUDO_USER");
    struct passwd *pw = getpwuid(getuid());
    snprintf(buf, cap, "ota-ctl:%s", s != NULL && *s ? s : pw != NULL ? pw->pw_name : "unknown");
    return buf;
}

int ctl_uid_param(const char *hex, char *out, size_t cap)
{
    uint8_t uid[10];
    size_t len = hex != NULL ? strlen(hex) : 0;
    int n = len <= 2 * sizeof uid ? hex_decode(hex, len, uid, sizeof uid) : OTA_ERR_LENGTH;
    if (n != 4 && n != 7 && n != 10) {
        fprintf(stderr, "ota-ctl: '%s' is not a card UID (hex of 4, 7 or 10 bytes)\n",
                hex != NULL ? hex : "");
        return -1;
    }
    if (cap < 2 * (size_t)n + 3)
        return -1;
    out[0] = '\\';
    out[1] = 'x';
    hex_encode(uid, (size_t)n, out + 2);
    return 0;
}

int ctl_kek_source(const struct ctl *c, const char *kek_file, enum keyfile_kek *kind,
                   const char **source)
{
    if (kek_file == NULL || *kek_file == '\0')
        kek_file = cfg_str(c->cfg, "worker.kek_file");
    if (kek_file != NULL && *kek_file != '\0') {
        *kind = KEYFILE_KEK_FILE;
        *source = kek_file;
        return 0;
    }
    const char *var = cfg_str(c->cfg, "worker.kek_passphrase_env");
    const char *pass = var != NULL && *var != '\0' ? getenv(var) : NULL;
    if (pass == NULL || *pass == '\0') {
        fprintf(stderr,
                "ota-ctl: no key-encryption key: give --kek-file, set worker.kek_file, or put "
                "the passphrase in the environment variable %s\n",
                var != NULL && *var ? var : "(worker.kek_passphrase_env is empty)");
        return -1;
    }
    *kind = KEYFILE_KEK_PASSPHRASE;
    *source = pass;
    return 0;
}

int ctl_open_keys(const struct ctl *c, const char *kek_file, struct master_keys *k)
{
    enum keyfile_kek kind;
    const char *source;
    if (ctl_kek_source(c, kek_file, &kind, &source) != 0)
        return -1;
    char err[512];
    int rc = keyfile_open(cfg_str(c->cfg, "worker.keyfile"), k, kind, source, err, sizeof err);
    if (rc != OTA_OK) {
        fprintf(stderr, "ota-ctl: %s\n", err);
        return -1;
    }
    return 0;
}

int ctl_parse_format(const char *s, enum ctl_format *out)
{
    if (s == NULL || strcmp(s, "table") == 0)
        *out = CTL_FMT_TABLE;
    else if (strcmp(s, "csv") == 0)
        *out = CTL_FMT_CSV;
    else if (strcmp(s, "json") == 0)
        *out = CTL_FMT_JSON;
    else {
        fprintf(stderr, "ota-ctl: --format must be table, csv or json (got '%s')\n", s);
        return -1;
    }
    return 0;
}

static void print_csv_field(const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

/* Type OIDs from PostgreSQL's pg_type.dat (stable since forever). */
#define CTL_OID_BOOL 16
#define CTL_OID_INT8 20
#define CTL_OID_INT2 21
#define CTL_OID_INT4 23

static json_t *json_value(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return json_null();
    const char *v = PQgetvalue(res, row, col);
    switch (PQftype(res, col)) {
    case CTL_OID_BOOL:
        return json_boolean(v[0] == 't');
    case CTL_OID_INT2:
    case CTL_OID_INT4:
    case CTL_OID_INT8:
        return json_integer(strtoll(v, NULL, 10));
    default:
        return json_string(v);
    }
}

void ctl_print_result(const PGresult *res, enum ctl_format fmt)
{
    int rows = PQntuples(res), cols = PQnfields(res);
    if (fmt == CTL_FMT_CSV) {
        for (int j = 0; j < cols; j++) {
            if (j)
                putchar(',');
            print_csv_field(PQfname(res, j));
        }
        putchar('\n');
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < cols; j++) {
                if (j)
                    putchar(',');
                print_csv_field(PQgetvalue(res, i, j));
            }
            putchar('\n');
        }
        return;
    }
    if (fmt == CTL_FMT_JSON) {
        json_t *arr = json_array();
        for (int i = 0; arr != NULL && i < rows; i++) {
            json_t *o = json_object();
            for (int j = 0; o != NULL && j < cols; j++)
                json_object_set_new(o, PQfname(res, j), json_value(res, i, j));
            json_array_append_new(arr, o);
        }
        char *s = arr != NULL ? json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        if (s != NULL)
            puts(s);
        free(s);
        json_decref(arr);
        return;
    }
    size_t width[64] = {0};
    if (cols > 64)
        cols = 64;
    for (int j = 0; j < cols; j++) {
        width[j] = strlen(PQfname(res, j));
        for (int i = 0; i < rows; i++)
            if ((size_t)PQgetlength(res, i, j) > width[j])
                width[j] = (size_t)PQgetlength(res, i, j);
    }
    for (int j = 0; j < cols; j++)
        printf("%s%-*s", j ? "  " : "", (int)width[j], PQfname(res, j));
    putchar('\n');
    for (int j = 0; j < cols; j++) {
        printf("%s", j ? "  " : "");
        for (size_t w = 0; w < width[j]; w++)
            putchar('-');
    }
    putchar('\n');
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < cols; j++)
            printf("%s%-*s", j ? "  " : "", (int)width[j], PQgetvalue(res, i, j));
        putchar('\n');
    }
    printf("(%d row%s)\n", rows, rows == 1 ? "" : "s");
}

int ctl_report(const struct ctl *c, const char *what, const char *sql, int n,
               const char *const *values, enum ctl_format fmt)
{
    PGconn *db = ctl_connect_finance(c);
    if (db == NULL)
        return CTL_EXIT_FAIL;
    PGresult *r = ctl_exec(db, what, sql, n, values);
    if (r != NULL)
        ctl_print_result(r, fmt);
    PQclear(r);
    PQfinish(db);
    return r != NULL ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}
