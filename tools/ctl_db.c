/* ctl_db: `ota-ctl db migrate` and `ota-ctl db status`.
 *
 * Applies the numbered files NNN_name.sql of the schema directory in order,
 * each in its own transaction together with its row in schema_migrations
 * (version = file name without .sql, checksum = SHA-256 of the file), under
 * an advisory lock so two migrators never interleave.  Applying twice is a
 * no-op.  Must never edit or skip a migration silently: a file whose
 * checksum changed after it was applied is reported, not re-run. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"

#define DB_MAX_MIGRATIONS 256
#define DB_MAX_FILE (4 * 1024 * 1024)
/* pg_advisory_lock key: a constant of our own, the same for every ota-ctl. */
#define DB_LOCK_KEY "5715571841411634"

static const char SQL_MIGRATIONS_TABLE[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                           " version text PRIMARY KEY, checksum text,"
                                           " applied_at timestamptz NOT NULL DEFAULT now())";

struct migration {
    char name[NAME_MAX + 1];    /* file name */
    char version[NAME_MAX + 1]; /* without .sql */
};

static int is_dir(const char *p)
{
    struct stat st;
    return p != NULL && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* --schema-dir, $OTA_SCHEMA_DIR, ../schema next to the binary, the
 * installed directory, the source tree it was built from. */
static const char *schema_dir(const struct ctl *c, const char *opt, char *buf, size_t cap)
{
    if (opt != NULL)
        return is_dir(opt) ? opt : NULL;
    const char *env = getenv("OTA_SCHEMA_DIR");
    if (env != NULL && *env != '\0')
        return is_dir(env) ? env : NULL;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
    } else if (c->argv0 != NULL && strchr(c->argv0, '/') != NULL) {
        snprintf(exe, sizeof exe, "%s", c->argv0);
    } else {
        exe[0] = '\0';
    }
    char *slash = strrchr(exe, '/');
    if (slash != NULL) {
        *slash = '\0';
        if ((size_t)snprintf(buf, cap, "%s/../schema", exe) < cap && is_dir(buf))
            return buf;
    }
#ifdef OTA_SCHEMA_DIR
    if (is_dir(OTA_SCHEMA_DIR))
        return OTA_SCHEMA_DIR;
#endif
#ifdef OTA_SRCDIR
    if ((size_t)snprintf(buf, cap, "%s/schema", OTA_SRCDIR) < cap && is_dir(buf))
        return buf;
#endif
    return NULL;
}

static int cmp_migration(const void *a, const void *b)
{
    return strcmp(((const struct migration *)a)->name, ((const struct migration *)b)->name);
}

/* NNN_name.sql: digits, an underscore, a name, ".sql". */
static int is_migration_name(const char *s)
{
    size_t len = strlen(s), d = 0;
    while (isdigit((unsigned char)s[d]))
        d++;
    return d > 0 && s[d] == '_' && len > d + 5 && strcmp(s + len - 4, ".sql") == 0;
}

static int list_migrations(const char *dir, struct migration *m, size_t *n)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "ota-ctl: cannot read schema directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    *n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!is_migration_name(e->d_name))
            continue;
        if (*n == DB_MAX_MIGRATIONS) {
            fprintf(stderr, "ota-ctl: more than %d migrations in %s\n", DB_MAX_MIGRATIONS, dir);
            closedir(d);
            return -1;
        }
        snprintf(m[*n].name, sizeof m[*n].name, "%s", e->d_name);
        snprintf(m[*n].version, sizeof m[*n].version, "%.*s", (int)(strlen(e->d_name) - 4),
                 e->d_name);
        (*n)++;
    }
    closedir(d);
    qsort(m, *n, sizeof *m, cmp_migration);
    return 0;
}

/* Reads dir/name into a NUL-terminated malloc'd buffer and its SHA-256
 * as hex. */
static char *read_migration(const char *dir, const char *name, char sum[65])
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (f == NULL) {
        fprintf(stderr, "ota-ctl: cannot open %s: %s\n", p, strerror(errno));
        return NULL;
    }
    char *buf = malloc(DB_MAX_FILE + 1);
    size_t n = buf != NULL ? fread(buf, 1, DB_MAX_FILE + 1, f) : 0;
    int bad = buf == NULL || ferror(f) || n > DB_MAX_FILE || memchr(buf, '\0', n) != NULL;
    fclose(f);
    if (bad) {
        fprintf(stderr, "ota-ctl: %s: unreadable, too large or not text\n", p);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)buf, n);
    sodium_bin2hex(sum, 65, h, sizeof h);
    return buf;
}

/* The applied versions and checksums, or NULL (error printed). */
static PGresult *applied(PGconn *db)
{
    PGresult *r = ctl_exec(db, "creating schema_migrations", SQL_MIGRATIONS_TABLE, 0, NULL);
    if (r == NULL)
        return NULL;
    PQclear(r);
    return ctl_exec(db, "reading schema_migrations",
                    "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version",
                    0, NULL);
}

static int find_applied(const PGresult *r, const char *version)
{
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, 0), version) == 0)
            return i;
    return -1;
}

static int simple(PGconn *db, const char *what, const char *sql)
{
    PGresult *r = ctl_exec(db, what, sql, 0, NULL);
    PQclear(r);
    return r != NULL ? 0 : -1;
}

static int apply_one(PGconn *db, const char *dir, const struct migration *m)
{
    char sum[65];
    char *sql = read_migration(dir, m->name, sum);
    if (sql == NULL)
        return -1;
    char what[NAME_MAX + 32];
    snprintf(what, sizeof what, "migration %.*s", NAME_MAX, m->name);
    int rc = simple(db, what, "BEGIN");
    if (rc == 0) {
        PGresult *r = PQexec(db, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "ota-ctl: migration %s failed: %s", m->name, PQerrorMessage(db));
            rc = -1;
        }
        PQclear(r);
        /* The file may have ended its own transaction (it must not). */
        if (rc == 0 && PQtransactionStatus(db) != PQTRANS_INTRANS) {
            fprintf(stderr, "ota-ctl: migration %s must not BEGIN/COMMIT itself\n", m->name);
            rc = -1;
        }
    }
    if (rc == 0) {
        const char *v[] = {m->version, sum};
        PGresult *r = ctl_exec(
            db, what, "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)", 2, v);
        rc = r != NULL ? 0 : -1;
        PQclear(r);
    }
    if (rc == 0)
        rc = simple(db, what, "COMMIT");
    if (rc != 0 && PQtransactionStatus(db) != PQTRANS_IDLE)
        PQclear(PQexec(db, "ROLLBACK"));
    /* A migration's SET must not leak into the next one. */
    PQclear(PQexec(db, "RESET ALL; SET TIME ZONE 'UTC'; SET client_min_messages = warning"));
    free(sql);
    return rc;
}

static int db_migrate(PGconn *db, const char *dir)
{
    static struct migration m[DB_MAX_MIGRATIONS];
    size_t n;
    if (list_migrations(dir, m, &n) != 0)
        return CTL_EXIT_FAIL;
    if (n == 0) {
        fprintf(stderr, "ota-ctl: no migrations (NNN_name.sql) in %s\n", dir);
        return CTL_EXIT_FAIL;
    }
    if (simple(db, "taking the migration lock", "SELECT pg_advisory_lock(" DB_LOCK_KEY ")") != 0)
        return CTL_EXIT_FAIL;
    PGresult *done = applied(db);
    if (done == NULL)
        return CTL_EXIT_FAIL;
    int rc = CTL_EXIT_OK, count = 0;
    for (size_t i = 0; i < n && rc == CTL_EXIT_OK; i++) {
        int at = find_applied(done, m[i].version);
        if (at >= 0) {
            char sum[65];
            char *sql = read_migration(dir, m[i].name, sum);
            if (sql != NULL && !PQgetisnull(done, at, 1) && strcmp(sum, PQgetvalue(done, at, 1)))
                fprintf(stderr, "ota-ctl: warning: %s changed after it was applied (not re-run)\n",
                        m[i].name);
            free(sql);
            continue;
        }
        if (apply_one(db, dir, &m[i]) != 0) {
            rc = CTL_EXIT_FAIL;
            break;
        }
        printf("applied %s\n", m[i].version);
        count++;
    }
    PQclear(done);
    if (rc == CTL_EXIT_OK && count == 0)
        printf("nothing to apply: the database is up to date\n");
    PQclear(PQexec(db, "SELECT pg_advisory_unlock(" DB_LOCK_KEY ")"));
    return rc;
}

static int db_status(PGconn *db, const char *dir)
{
    static struct migration m[DB_MAX_MIGRATIONS];
    size_t n;
    if (list_migrations(dir, m, &n) != 0)
        return CTL_EXIT_FAIL;
    PGresult *done = applied(db);
    if (done == NULL)
        return CTL_EXIT_FAIL;
    int pending = 0;
    for (size_t i = 0; i < n; i++) {
        int at = find_applied(done, m[i].version);
        if (at < 0) {
            printf("pending  %s\n", m[i].version);
            pending++;
            continue;
        }
        char sum[65];
        char *sql = read_migration(dir, m[i].name, sum);
        int changed =
            sql != NULL && !PQgetisnull(done, at, 1) && strcmp(sum, PQgetvalue(done, at, 1));
        free(sql);
        printf("applied  %s  %s%s\n", m[i].version, PQgetvalue(done, at, 2),
               changed ? "  (file changed since)" : "");
    }
    for (int j = 0; j < PQntuples(done); j++) {
        int known = 0;
        for (size_t i = 0; i < n; i++)
            known |= strcmp(m[i].version, PQgetvalue(done, j, 0)) == 0;
        if (!known)
            printf("applied  %s  %s  (no such file in %s)\n", PQgetvalue(done, j, 0),
                   PQgetvalue(done, j, 2), dir);
    }
    printf("%d pending\n", pending);
    PQclear(done);
    return CTL_EXIT_OK;
}

int ctl_cmd_db(struct ctl *c, int argc, char **argv)
{
    if (argc < 1 || (strcmp(argv[0], "migrate") != 0 && strcmp(argv[0], "status") != 0)) {
        fprintf(stderr, "usage: ota-ctl db migrate|status [--schema-dir DIR]\n");
        return CTL_EXIT_USAGE;
    }
    struct ctl_opt o[] = {{"schema-dir", 1, NULL, 0}};
    const char *pos[1];
    size_t npos;
    if (ctl_parse_opts("db", argc - 1, argv + 1, o, 1, pos, 0, &npos) != 0)
        return CTL_EXIT_USAGE;
    if (sodium_init() < 0)
        return CTL_EXIT_FAIL;
    char buf[PATH_MAX];
    const char *dir = schema_dir(c, ctl_opt(o, 1, "schema-dir"), buf, sizeof buf);
    if (dir == NULL) {
        fprintf(stderr, "ota-ctl: no schema directory found (give --schema-dir or set "
                        "OTA_SCHEMA_DIR)\n");
        return CTL_EXIT_FAIL;
    }
    PGconn *db = ctl_connect(c);
    if (db == NULL)
        return CTL_EXIT_FAIL;
    int rc = strcmp(argv[0], "migrate") == 0 ? db_migrate(db, dir) : db_status(db, dir);
    PQfinish(db);
    return rc;
}
