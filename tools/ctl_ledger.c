/* ctl_ledger: `ota-ctl ledger show|daily|in-doubt|liability|reconcile`:
 * the ledger as finance reads it, through the finance views of
 * schema/002_finance.sql (never the raw tables, so what ota-ctl shows is
 * what the ota_finance role sees, and a finance login can run every one of
 * these but `--code` with a typed code).  CSV and JSON columns are those of
 * the queries below, in order; FINANCE.md lists them and
 * tests/integration/test_finance.sh holds the two to each other.  Must
 * never show a code hash or a code. */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

/* Rows shown in table format unless --limit says otherwise; CSV and JSON
 * (exports) have no default limit. */
#define LEDGER_TABLE_LIMIT 50

/* SQL reads better one clause a line. */
/* clang-format off */
/* One transaction per row; `day` is the UTC day the transaction counts on
 * in the daily totals, and --from/--to select on the same instant. */
static const char SQL_SHOW[] =
    "SELECT txn_id, card_uid, amount, currency, code_id, state, "
    CTL_SQL_TS("reserved_at") " AS reserved_at, "
    CTL_SQL_TS("settled_at") " AS settled_at, "
    "day, flags "
    "FROM finance_transactions "
    "WHERE ($1::text IS NULL OR card_uid = $1) "
    "AND ($2::text IS NULL OR state = $2) "
    "AND ($3::bigint IS NULL OR code_id = $3) "
    "AND ($4::timestamptz IS NULL OR decided_at >= $4) "
    "AND ($5::timestamptz IS NULL OR decided_at < $5) "
    "ORDER BY decided_at DESC, txn_id LIMIT $6::bigint";

static const char SQL_DAILY[] =
    "SELECT day, state, currency, transactions, amount "
    "FROM finance_daily_totals "
    "WHERE ($1::date IS NULL OR day >= $1::date) "
    "AND ($2::date IS NULL OR day < $2::date) "
    "AND ($3::text IS NULL OR state = $3) "
    "ORDER BY day, state, currency";

static const char SQL_IN_DOUBT[] =
    "SELECT txn_id, card_uid, amount, currency, code_id, "
    CTL_SQL_TS("reserved_at") " AS reserved_at, "
    "age_seconds, flags "
    "FROM finance_in_doubt "
    "WHERE ($1::text IS NULL OR card_uid = $1) "
    "AND ($2::bigint IS NULL OR age_seconds >= $2) "
    "ORDER BY reserved_at, txn_id";

static const char SQL_LIABILITY_TOTAL[] =
    "SELECT currency, cards, topups, committed_amount "
    "FROM finance_liability_total ORDER BY currency";

static const char SQL_LIABILITY_CARD[] =
    "SELECT card_uid, currency, topups, committed_amount, "
    CTL_SQL_TS("first_topup_at") " AS first_topup_at, "
    CTL_SQL_TS("last_topup_at") " AS last_topup_at "
    "FROM finance_liability_per_card "
    "WHERE ($1::text IS NULL OR card_uid = $1) "
    "ORDER BY card_uid, currency";

static const char SQL_RECONCILE[] =
    "SELECT finding, severity, txn_id, code_id, card_uid, detail "
    "FROM finance_reconciliation "
    "WHERE ($1::text IS NULL OR severity = $1) "
    "ORDER BY severity DESC, finding, txn_id";
/* clang-format on */

/* The card filter as the views show UIDs (lower-case hex). */
static int parse_card(const char *s, char *hex, size_t cap, const char **out)
{
    char param[32];
    *out = NULL;
    if (s == NULL)
        return 0;
    if (ctl_uid_param(s, param, sizeof param) != 0)
        return -1;
    snprintf(hex, cap, "%s", param + 2);
    *out = hex;
    return 0;
}

static int parse_state(const char *s, const char **out)
{
    *out = NULL;
    if (s == NULL)
        return 0;
    if (strcmp(s, "committed") == 0 || strcmp(s, "voided") == 0)
        *out = s;
    else if (strcmp(s, "in_doubt") == 0 || strcmp(s, "in-doubt") == 0)
        *out = "in_doubt";
    else {
        fprintf(stderr, "ota-ctl: --state is committed, voided or in-doubt (got '%s')\n", s);
        return -1;
    }
    return 0;
}

/* --limit N, or the default for the format (NULL: no limit). */
static int parse_limit(const char *s, enum ctl_format fmt, char *buf, size_t cap, const char **out)
{
    long long limit = LEDGER_TABLE_LIMIT;
    *out = NULL;
    if (s != NULL && ctl_parse_ll("--limit", s, 1, 1000000000LL, &limit) != 0)
        return -1;
    if (s != NULL || fmt == CTL_FMT_TABLE) {
        snprintf(buf, cap, "%lld", limit);
        *out = buf;
    }
    return 0;
}

static const char *opt_either(const struct ctl_opt *o, size_t no, const char *a, const char *b)
{
    const char *v = ctl_opt(o, no, a);
    return v != NULL ? v : ctl_opt(o, no, b);
}

static int ledger_show(const struct ctl *c, int argc, char **argv)
{
    /* --since/--until: the names of the first release, kept as aliases. */
    struct ctl_opt o[] = {{"card", 1, NULL, 0},    {"state", 1, NULL, 0}, {"code", 1, NULL, 0},
                          {"from", 1, NULL, 0},    {"to", 1, NULL, 0},    {"since", 1, NULL, 0},
                          {"until", 1, NULL, 0},   {"limit", 1, NULL, 0}, {"format", 1, NULL, 0},
                          {"kek-file", 1, NULL, 0}};
    const size_t no = sizeof o / sizeof o[0];
    const char *pos[1], *card, *state, *limit;
    size_t npos;
    char uidhex[32], lim[24], code_id[24];
    long long id;
    enum ctl_format fmt;
    if (ctl_parse_opts("ledger show", argc, argv, o, no, pos, 0, &npos) != 0 ||
        ctl_parse_format(ctl_opt(o, no, "format"), &fmt) != 0 ||
        parse_limit(ctl_opt(o, no, "limit"), fmt, lim, sizeof lim, &limit) != 0 ||
        parse_state(ctl_opt(o, no, "state"), &state) != 0 ||
        parse_card(ctl_opt(o, no, "card"), uidhex, sizeof uidhex, &card) != 0)
        return CTL_EXIT_USAGE;
    const char *code = ctl_opt(o, no, "code");
    if (code != NULL && ctl_is_code_id(code) &&
        ctl_parse_ll("--code", code, 1, 999999999999999999LL, &id) != 0)
        return CTL_EXIT_USAGE;
    PGconn *db = ctl_connect_finance(c);
    if (db == NULL)
        return CTL_EXIT_FAIL;
    if (code != NULL && !ctl_is_code_id(code)) {
        if (ctl_code_lookup(c, db, code, ctl_opt(o, no, "kek-file"), code_id, sizeof code_id) !=
            0) {
            PQfinish(db);
            return CTL_EXIT_FAIL;
        }
        code = code_id;
    }
    const char *v[] = {
        card, state, code, opt_either(o, no, "from", "since"), opt_either(o, no, "to", "until"),
        limit};
    PGresult *r = ctl_exec(db, "reading the ledger", SQL_SHOW, 6, v);
    if (r != NULL)
        ctl_print_result(r, fmt);
    PQclear(r);
    PQfinish(db);
    return r != NULL ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

static int ledger_daily(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {
        {"from", 1, NULL, 0}, {"to", 1, NULL, 0}, {"state", 1, NULL, 0}, {"format", 1, NULL, 0}};
    const size_t no = sizeof o / sizeof o[0];
    const char *pos[1], *state;
    size_t npos;
    enum ctl_format fmt;
    if (ctl_parse_opts("ledger daily", argc, argv, o, no, pos, 0, &npos) != 0 ||
        ctl_parse_format(ctl_opt(o, no, "format"), &fmt) != 0 ||
        parse_state(ctl_opt(o, no, "state"), &state) != 0)
        return CTL_EXIT_USAGE;
    const char *v[] = {ctl_opt(o, no, "from"), ctl_opt(o, no, "to"), state};
    return ctl_report(c, "reading daily totals", SQL_DAILY, 3, v, fmt);
}

static int ledger_in_doubt(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"card", 1, NULL, 0}, {"min-age", 1, NULL, 0}, {"format", 1, NULL, 0}};
    const size_t no = sizeof o / sizeof o[0];
    const char *pos[1], *card;
    size_t npos;
    char uidhex[32];
    long long age;
    enum ctl_format fmt;
    if (ctl_parse_opts("ledger in-doubt", argc, argv, o, no, pos, 0, &npos) != 0 ||
        ctl_parse_format(ctl_opt(o, no, "format"), &fmt) != 0 ||
        parse_card(ctl_opt(o, no, "card"), uidhex, sizeof uidhex, &card) != 0 ||
        (ctl_opt(o, no, "min-age") != NULL &&
         ctl_parse_ll("--min-age", ctl_opt(o, no, "min-age"), 0, 1000000000LL, &age) != 0))
        return CTL_EXIT_USAGE;
    const char *v[] = {card, ctl_opt(o, no, "min-age")};
    return ctl_report(c, "reading in-doubt transactions", SQL_IN_DOUBT, 2, v, fmt);
}

static int ledger_liability(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"per-card", 0, NULL, 0}, {"card", 1, NULL, 0}, {"format", 1, NULL, 0}};
    const size_t no = sizeof o / sizeof o[0];
    const char *pos[1], *card;
    size_t npos;
    char uidhex[32];
    enum ctl_format fmt;
    if (ctl_parse_opts("ledger liability", argc, argv, o, no, pos, 0, &npos) != 0 ||
        ctl_parse_format(ctl_opt(o, no, "format"), &fmt) != 0 ||
        parse_card(ctl_opt(o, no, "card"), uidhex, sizeof uidhex, &card) != 0)
        return CTL_EXIT_USAGE;
    if (!ctl_flag(o, no, "per-card") && card == NULL)
        return ctl_report(c, "reading the liability", SQL_LIABILITY_TOTAL, 0, NULL, fmt);
    const char *v[] = {card};
    return ctl_report(c, "reading the liability per card", SQL_LIABILITY_CARD, 1, v, fmt);
}

static int ledger_reconcile(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"severity", 1, NULL, 0}, {"format", 1, NULL, 0}};
    const size_t no = sizeof o / sizeof o[0];
    const char *pos[1];
    size_t npos;
    enum ctl_format fmt;
    const char *sev = NULL;
    if (ctl_parse_opts("ledger reconcile", argc, argv, o, no, pos, 0, &npos) != 0 ||
        ctl_parse_format(ctl_opt(o, no, "format"), &fmt) != 0)
        return CTL_EXIT_USAGE;
    sev = ctl_opt(o, no, "severity");
    if (sev != NULL && strcmp(sev, "violation") != 0 && strcmp(sev, "review") != 0) {
        fprintf(stderr, "ota-ctl: --severity is violation or review\n");
        return CTL_EXIT_USAGE;
    }
    const char *v[] = {sev};
    return ctl_report(c, "reading reconciliation findings", SQL_RECONCILE, 1, v, fmt);
}

int ctl_cmd_ledger(struct ctl *c, int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(const struct ctl *, int, char **);
    } subs[] = {
        {"show", ledger_show},           {"list", ledger_show},
        {"daily", ledger_daily},         {"in-doubt", ledger_in_doubt},
        {"liability", ledger_liability}, {"reconcile", ledger_reconcile},
        {"resolve", ctl_ledger_resolve},
    };
    for (size_t i = 0; argc >= 1 && i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(argv[0], subs[i].name) == 0)
            return subs[i].fn(c, argc - 1, argv + 1);
    fprintf(stderr, "usage: ota-ctl ledger show|list|daily|in-doubt|liability|reconcile|resolve "
                    "[options]\n");
    return CTL_EXIT_USAGE;
}
