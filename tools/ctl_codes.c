/* ctl_codes: `ota-ctl codes issue|list|summary|find|revoke|generate`.
 *
 * issue makes fresh codes (common/topup_code.h), stores only their
 * HMAC-SHA-256 under the code key of the sealed key file, and prints each
 * code once on stdout, one per line, after the database committed them all
 * (a code printed is a code that exists).  Must never print anything else
 * on stdout during issue, never log a code, never keep a code outside
 * sodium_malloc memory.  find looks a typed code up by its HMAC (support:
 * "my code did not work") and never echoes it; generate prints
 * well-formed codes that are stored nowhere (tests, mock-ups). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "hex.h"
#include "ota_err.h"
#include "topup_code.h"

#define CODES_MAX_COUNT 10000
#define CODES_SLOT (CODE_DISPLAY_LEN + 1)

static const char SQL_INSERT_CODE[] =
    "INSERT INTO codes (code_hash, amount, currency, batch, expires_at) "
    "VALUES ($1::bytea, $2::bigint, $3, NULLIF($4, ''), "
    "        CASE WHEN $5::integer IS NULL THEN NULL ELSE now() + $5::integer * interval '1 day' "
    "END)";

/* Generates count codes into slots and inserts their hashes in one
 * transaction.  0 when committed. */
static int store_codes(PGconn *db, const struct master_keys *k, char *slots, long long count,
                       const char *amount, const char *currency, const char *batch,
                       const char *days)
{
    PGresult *r = ctl_exec(db, "starting the transaction", "BEGIN", 0, NULL);
    if (r == NULL)
        return -1;
    PQclear(r);
    int rc = 0;
    for (long long i = 0; i < count && rc == 0; i++) {
        char *disp = slots + i * CODES_SLOT;
        char norm[CODE_NORM_LEN + 1];
        uint8_t h[CODE_HASH_LEN];
        char hb[2 * CODE_HASH_LEN + 3] = "\\x";
        if (code_generate(disp, CODES_SLOT) != OTA_OK ||
            code_normalize(disp, norm, sizeof norm) != OTA_OK) {
            fprintf(stderr, "ota-ctl: generating a code failed\n");
            rc = -1;
            break;
        }
        code_hash(k->code_hmac, norm, h);
        sodium_memzero(norm, sizeof norm);
        hex_encode(h, sizeof h, hb + 2);
        const char *v[] = {hb, amount, currency, batch != NULL ? batch : "", days};
        r = ctl_exec(db, "storing a code", SQL_INSERT_CODE, 5, v);
        rc = r != NULL ? 0 : -1;
        PQclear(r);
    }
    if (rc == 0) {
        r = ctl_exec(db, "committing the codes", "COMMIT", 0, NULL);
        rc = r != NULL ? 0 : -1;
        PQclear(r);
    } else {
        PQclear(PQexec(db, "ROLLBACK"));
    }
    return rc;
}

static int codes_issue(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"amount", 1, NULL, 0},
                          {"count", 1, NULL, 0},
                          {"expires", 1, NULL, 0},
                          {"batch", 1, NULL, 0},
                          {"kek-file", 1, NULL, 0}};
    const size_t no = sizeof o / sizeof o[0];
    const char *pos[1];
    size_t npos;
    long long amount, count, days = 0;
    if (ctl_parse_opts("codes issue", argc, argv, o, no, pos, 0, &npos) != 0 ||
        ctl_opt(o, no, "amount") == NULL || ctl_opt(o, no, "count") == NULL) {
        fprintf(stderr, "usage: ota-ctl codes issue --amount N --count M [--expires DAYS] "
                        "[--batch NAME]\n");
        return CTL_EXIT_USAGE;
    }
    if (ctl_parse_ll("--amount", ctl_opt(o, no, "amount"), 1, cfg_int(c->cfg, "topup.max_amount"),
                     &amount) != 0 ||
        ctl_parse_ll("--count", ctl_opt(o, no, "count"), 1, CODES_MAX_COUNT, &count) != 0 ||
        (ctl_opt(o, no, "expires") != NULL &&
         ctl_parse_ll("--expires", ctl_opt(o, no, "expires"), 1, 36500, &days) != 0))
        return CTL_EXIT_USAGE;
    const char *batch = ctl_opt(o, no, "batch");
    if (batch != NULL && strlen(batch) > 64) {
        fprintf(stderr, "ota-ctl: --batch is at most 64 characters\n");
        return CTL_EXIT_USAGE;
    }
    if (sodium_init() < 0)
        return CTL_EXIT_FAIL;
    struct master_keys *k = keyfile_alloc();
    char *slots = sodium_malloc((size_t)count * CODES_SLOT);
    if (k == NULL || slots == NULL) {
        fprintf(stderr, "ota-ctl: out of locked memory\n");
        keyfile_free(k);
        if (slots != NULL)
            sodium_free(slots);
        return CTL_EXIT_FAIL;
    }
    int rc = CTL_EXIT_FAIL;
    PGconn *db = NULL;
    if (ctl_open_keys(c, ctl_opt(o, no, "kek-file"), k) == 0 && (db = ctl_connect(c)) != NULL) {
        char am[24], dd[24];
        snprintf(am, sizeof am, "%lld", amount);
        snprintf(dd, sizeof dd, "%lld", days);
        if (store_codes(db, k, slots, count, am, cfg_str(c->cfg, "currency"), batch,
                        days > 0 ? dd : NULL) == 0) {
            for (long long i = 0; i < count; i++)
                puts(slots + i * CODES_SLOT);
            fflush(stdout);
            fprintf(stderr, "ota-ctl: issued %lld code%s worth %lld %s each", count,
                    count == 1 ? "" : "s", amount, cfg_str(c->cfg, "currency"));
            if (days > 0)
                fprintf(stderr, ", expiring in %lld day%s", days, days == 1 ? "" : "s");
            fputc('\n', stderr);
            rc = CTL_EXIT_OK;
        }
    }
    PQfinish(db);
    sodium_free(slots);
    keyfile_free(k);
    return rc;
}

/* SQL reads better one clause a line. */
/* clang-format off */
static const char SQL_LIST[] =
    "SELECT code_id, state, amount, currency, batch, "
    CTL_SQL_TS("issued_at") " AS issued_at, "
    CTL_SQL_TS("expires_at") " AS expires_at, "
    CTL_SQL_TS("reserved_at") " AS reserved_at, "
    CTL_SQL_TS("used_at") " AS used_at, "
    CTL_SQL_TS("revoked_at") " AS revoked_at, "
    "txn_id, card_uid FROM finance_codes "
    "WHERE ($1::text IS NULL OR state = $1) "
    "AND ($2::text IS NULL OR batch = $2) "
    "AND ($3::timestamptz IS NULL OR issued_at >= $3) "
    "AND ($4::timestamptz IS NULL OR issued_at < $4) "
    "AND ($5::bigint IS NULL OR code_id = $5) "
    "ORDER BY code_id DESC LIMIT $6::bigint";

static const char SQL_SUMMARY[] =
    "SELECT state, currency, codes, amount FROM finance_codes_by_state "
    "WHERE ($1::text IS NULL OR currency = $1) ORDER BY currency, state";
/* clang-format on */

static int parse_code_state(const char *s)
{
    static const char *const states[] = {"issued", "expired", "reserved", "used", "revoked"};
    if (s == NULL)
        return 0;
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        if (strcmp(s, states[i]) == 0)
            return 0;
    fprintf(stderr, "ota-ctl: --state is issued, expired, reserved, used or revoked (got '%s')\n",
            s);
    return -1;
}

static int codes_list(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"state", 1, NULL, 0}, {"batch", 1, NULL, 0}, {"from", 1, NULL, 0},
                          {"to", 1, NULL, 0},    {"limit", 1, NULL, 0}, {"format", 1, NULL, 0}};
    const size_t no = sizeof o / sizeof o[0];
    const char *pos[1];
    size_t npos;
    long long limit = 100;
    enum ctl_format fmt;
    if (ctl_parse_opts("codes list", argc, argv, o, no, pos, 0, &npos) != 0 ||
        ctl_parse_format(ctl_opt(o, no, "format"), &fmt) != 0 ||
        parse_code_state(ctl_opt(o, no, "state")) != 0 ||
        (ctl_opt(o, no, "limit") != NULL &&
         ctl_parse_ll("--limit", ctl_opt(o, no, "limit"), 1, 1000000000LL, &limit) != 0))
        return CTL_EXIT_USAGE;
    /* Table output is for a screen (100 rows unless told); CSV and JSON
     * are exports (every row unless told). */
    char lim[24];
    snprintf(lim, sizeof lim, "%lld", limit);
    const char *v[] = {ctl_opt(o, no, "state"),
                       ctl_opt(o, no, "batch"),
                       ctl_opt(o, no, "from"),
                       ctl_opt(o, no, "to"),
                       NULL,
                       ctl_opt(o, no, "limit") != NULL || fmt == CTL_FMT_TABLE ? lim : NULL};
    return ctl_report(c, "listing codes", SQL_LIST, 6, v, fmt);
}

static int codes_summary(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"currency", 1, NULL, 0}, {"format", 1, NULL, 0}};
    const size_t no = sizeof o / sizeof o[0];
    const char *pos[1];
    size_t npos;
    enum ctl_format fmt;
    if (ctl_parse_opts("codes summary", argc, argv, o, no, pos, 0, &npos) != 0 ||
        ctl_parse_format(ctl_opt(o, no, "format"), &fmt) != 0)
        return CTL_EXIT_USAGE;
    const char *v[] = {ctl_opt(o, no, "currency")};
    return ctl_report(c, "summarizing codes", SQL_SUMMARY, 1, v, fmt);
}

int ctl_is_code_id(const char *s)
{
    size_t n = strspn(s, "0123456789");
    return n >= 1 && n <= 18 && s[n] == '\0';
}

/* Reads one line of stdin into buf (locked memory), without its newline. */
static int read_code_line(char *buf, size_t cap)
{
    if (fgets(buf, (int)cap, stdin) == NULL) {
        fprintf(stderr, "ota-ctl: no code on stdin\n");
        return -1;
    }
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

int ctl_code_lookup(const struct ctl *c, PGconn *db, const char *typed, const char *kek_file,
                    char *id, size_t cap)
{
    /* Room for a code with spaces or extra dashes as people type them. */
    enum { LINE_CAP = 128 };
    if (sodium_init() < 0)
        return -1;
    char *line = sodium_malloc(LINE_CAP + CODE_NORM_LEN + 1);
    struct master_keys *k = keyfile_alloc();
    int rc = -1;
    if (line == NULL || k == NULL) {
        fprintf(stderr, "ota-ctl: out of locked memory\n");
        goto out;
    }
    char *norm = line + LINE_CAP;
    if (strcmp(typed, "-") == 0) {
        if (read_code_line(line, LINE_CAP) != 0)
            goto out;
        typed = line;
    }
    int nrc = code_normalize(typed, norm, CODE_NORM_LEN + 1);
    if (nrc != OTA_OK) {
        fprintf(stderr, "ota-ctl: that is not a well-formed code (%s)\n",
                nrc == OTA_ERR_MAC ? "its check character does not match: a typo?"
                                   : "wrong characters or length");
        goto out;
    }
    if (ctl_open_keys(c, kek_file, k) != 0)
        goto out;
    uint8_t h[CODE_HASH_LEN];
    char hb[2 * CODE_HASH_LEN + 3] = "\\x";
    code_hash(k->code_hmac, norm, h);
    hex_encode(h, sizeof h, hb + 2);
    const char *v[] = {hb};
    PGresult *r = ctl_exec(db, "looking the code up",
                           "SELECT id FROM codes WHERE code_hash = $1::bytea", 1, v);
    if (r != NULL && PQntuples(r) == 1) {
        snprintf(id, cap, "%s", PQgetvalue(r, 0, 0));
        rc = 0;
    } else if (r != NULL) {
        fprintf(stderr, "ota-ctl: no such code was issued (with this code key)\n");
    }
    PQclear(r);
    sodium_memzero(h, sizeof h);
    sodium_memzero(hb, sizeof hb);
out:
    if (line != NULL)
        sodium_free(line);
    keyfile_free(k);
    return rc;
}

static int codes_find(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"kek-file", 1, NULL, 0}, {"format", 1, NULL, 0}};
    const size_t no = sizeof o / sizeof o[0];
    const char *pos[1];
    size_t npos;
    enum ctl_format fmt;
    if (ctl_parse_opts("codes find", argc, argv, o, no, pos, 1, &npos) != 0 || npos != 1 ||
        ctl_parse_format(ctl_opt(o, no, "format"), &fmt) != 0) {
        fprintf(stderr, "usage: ota-ctl codes find CODE|- [--format table|csv|json]\n");
        return CTL_EXIT_USAGE;
    }
    PGconn *db = ctl_connect(c);
    if (db == NULL)
        return CTL_EXIT_FAIL;
    char id[24];
    int rc = CTL_EXIT_FAIL;
    if (ctl_code_lookup(c, db, pos[0], ctl_opt(o, no, "kek-file"), id, sizeof id) == 0) {
        const char *v[] = {NULL, NULL, NULL, NULL, id, NULL};
        PGresult *r = ctl_exec(db, "reading the code", SQL_LIST, 6, v);
        if (r != NULL) {
            ctl_print_result(r, fmt);
            rc = CTL_EXIT_OK;
        }
        PQclear(r);
    }
    PQfinish(db);
    return rc;
}

/* Well-formed codes that exist nowhere: for tests and for printing
 * mock-ups.  Nothing is stored; the database never knows them. */
static int codes_generate(const struct ctl *c, int argc, char **argv)
{
    (void)c;
    struct ctl_opt o[] = {{"count", 1, NULL, 0}};
    const char *pos[1];
    size_t npos;
    long long count = 1;
    if (ctl_parse_opts("codes generate", argc, argv, o, 1, pos, 0, &npos) != 0 ||
        (ctl_opt(o, 1, "count") != NULL &&
         ctl_parse_ll("--count", ctl_opt(o, 1, "count"), 1, CODES_MAX_COUNT, &count) != 0))
        return CTL_EXIT_USAGE;
    if (sodium_init() < 0)
        return CTL_EXIT_FAIL;
    char *slot = sodium_malloc(CODES_SLOT);
    if (slot == NULL)
        return CTL_EXIT_FAIL;
    int rc = CTL_EXIT_OK;
    for (long long i = 0; i < count && rc == CTL_EXIT_OK; i++)
        if (code_generate(slot, CODES_SLOT) != OTA_OK)
            rc = CTL_EXIT_FAIL;
        else
            puts(slot);
    sodium_free(slot);
    return rc;
}

static int codes_revoke(const struct ctl *c, int argc, char **argv)
{
    const char *pos[256];
    size_t npos;
    if (ctl_parse_opts("codes revoke", argc, argv, NULL, 0, pos, 256, &npos) != 0 || npos == 0) {
        fprintf(stderr, "usage: ota-ctl codes revoke CODE_ID...\n");
        return CTL_EXIT_USAGE;
    }
    long long id;
    for (size_t i = 0; i < npos; i++)
        if (ctl_parse_ll("CODE_ID", pos[i], 1, INT64_MAX, &id) != 0)
            return CTL_EXIT_USAGE;
    PGconn *db = ctl_connect(c);
    if (db == NULL)
        return CTL_EXIT_FAIL;
    int rc = CTL_EXIT_OK;
    for (size_t i = 0; i < npos; i++) {
        const char *v[] = {pos[i]};
        PGresult *r = ctl_exec(db, "revoking a code",
                               "UPDATE codes SET state = 'revoked', revoked_at = now() "
                               "WHERE id = $1::bigint AND state = 'issued' RETURNING id",
                               1, v);
        if (r == NULL) {
            rc = CTL_EXIT_FAIL;
        } else if (PQntuples(r) == 1) {
            printf("revoked code %s\n", pos[i]);
        } else {
            fprintf(stderr,
                    "ota-ctl: code %s is not an issued code (unknown, reserved, used or "
                    "already revoked)\n",
                    pos[i]);
            rc = CTL_EXIT_FAIL;
        }
        PQclear(r);
    }
    PQfinish(db);
    return rc;
}

int ctl_cmd_codes(struct ctl *c, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "issue") == 0)
        return codes_issue(c, argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "list") == 0)
        return codes_list(c, argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "revoke") == 0)
        return codes_revoke(c, argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "summary") == 0)
        return codes_summary(c, argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "find") == 0)
        return codes_find(c, argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "generate") == 0)
        return codes_generate(c, argc - 1, argv + 1);
    fprintf(stderr, "usage: ota-ctl codes issue|list|summary|find|revoke|generate ...\n");
    return CTL_EXIT_USAGE;
}
