/* ctl_ledger: `ota-ctl ledger show|daily|in-doubt|liability`: the ledger
 * as finance reads it, through the finance views of schema/002_finance.sql
 * (never the raw tables, so what ota-ctl shows is what the ota_finance role
 * sees).  CSV and JSON columns are those of the query, in order: stable.
 * Must never show a code hash. */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static int run_report(const struct ctl *c, const char *what, const char *sql, int n,
                      const char *const *v, enum ctl_format fmt)
{
    PGconn *db = ctl_connect(c);
    if (db == NULL)
        return CTL_EXIT_FAIL;
    PGresult *r = ctl_exec(db, what, sql, n, v);
    if (r != NULL)
        ctl_print_result(r, fmt);
    PQclear(r);
    PQfinish(db);
    return r != NULL ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

static int ledger_show(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"card", 1, NULL, 0},  {"state", 1, NULL, 0}, {"code", 1, NULL, 0},
                          {"since", 1, NULL, 0}, {"until", 1, NULL, 0}, {"limit", 1, NULL, 0},
                          {"format", 1, NULL, 0}};
    const size_t no = sizeof o / sizeof o[0];
    const char *pos[1];
    size_t npos;
    long long limit = 50, code = 0;
    enum ctl_format fmt;
    char uid[32];
    if (ctl_parse_opts("ledger show", argc, argv, o, no, pos, 0, &npos) != 0 ||
        ctl_parse_format(ctl_opt(o, no, "format"), &fmt) != 0 ||
        (ctl_opt(o, no, "limit") != NULL &&
         ctl_parse_ll("--limit", ctl_opt(o, no, "limit"), 1, 100000000, &limit) != 0) ||
        (ctl_opt(o, no, "code") != NULL &&
         ctl_parse_ll("--code", ctl_opt(o, no, "code"), 1, INT64_MAX, &code) != 0) ||
        (ctl_opt(o, no, "card") != NULL && ctl_uid_param(ctl_opt(o, no, "card"), uid, sizeof uid)))
        return CTL_EXIT_USAGE;
    const char *state = ctl_opt(o, no, "state");
    if (state != NULL && strcmp(state, "committed") && strcmp(state, "voided") &&
        strcmp(state, "in_doubt") && strcmp(state, "in-doubt")) {
        fprintf(stderr, "ota-ctl: --state is committed, voided or in-doubt\n");
        return CTL_EXIT_USAGE;
    }
    if (state != NULL && strcmp(state, "in-doubt") == 0)
        state = "in_doubt";
    char lim[24], uidhex[32] = "";
    snprintf(lim, sizeof lim, "%lld", limit);
    if (ctl_opt(o, no, "card") != NULL)
        snprintf(uidhex, sizeof uidhex, "%s", uid + 2);
    const char *v[] = {ctl_opt(o, no, "card") ? uidhex : NULL,
                       state,
                       ctl_opt(o, no, "code"),
                       ctl_opt(o, no, "since"),
                       ctl_opt(o, no, "until"),
                       lim};
    return run_report(c, "reading the ledger",
                      "SELECT txn_id, card_uid, amount, currency, code_id, state, reserved_at, "
                      "settled_at, flags FROM finance_transactions "
                      "WHERE ($1::text IS NULL OR card_uid = $1) "
                      "AND ($2::text IS NULL OR state = $2) "
                      "AND ($3::bigint IS NULL OR code_id = $3) "
                      "AND ($4::timestamptz IS NULL OR reserved_at >= $4) "
                      "AND ($5::timestamptz IS NULL OR reserved_at < $5) "
                      "ORDER BY reserved_at DESC, txn_id LIMIT $6::bigint",
                      6, v, fmt);
}

static int ledger_view(const struct ctl *c, const char *sub, int argc, char **argv)
{
    struct ctl_opt o[] = {{"format", 1, NULL, 0}};
    const char *pos[1];
    size_t npos;
    enum ctl_format fmt;
    if (ctl_parse_opts("ledger", argc, argv, o, 1, pos, 0, &npos) != 0 ||
        ctl_parse_format(ctl_opt(o, 1, "format"), &fmt) != 0)
        return CTL_EXIT_USAGE;
    if (strcmp(sub, "daily") == 0)
        return run_report(c, "reading daily totals",
                          "SELECT day, state, currency, transactions, amount "
                          "FROM finance_daily_totals ORDER BY day, state, currency",
                          0, NULL, fmt);
    if (strcmp(sub, "in-doubt") == 0)
        return run_report(c, "reading in-doubt transactions",
                          "SELECT txn_id, card_uid, amount, currency, code_id, reserved_at, "
                          "age_seconds, flags FROM finance_in_doubt ORDER BY reserved_at",
                          0, NULL, fmt);
    return run_report(c, "reading the liability",
                      "SELECT currency, cards, topups, committed_amount "
                      "FROM finance_liability_total ORDER BY currency",
                      0, NULL, fmt);
}

int ctl_cmd_ledger(struct ctl *c, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "show") == 0)
        return ledger_show(c, argc - 1, argv + 1);
    if (argc >= 1 && (strcmp(argv[0], "daily") == 0 || strcmp(argv[0], "in-doubt") == 0 ||
                      strcmp(argv[0], "liability") == 0))
        return ledger_view(c, argv[0], argc - 1, argv + 1);
    fprintf(stderr, "usage: ota-ctl ledger show|daily|in-doubt|liability [options]\n");
    return CTL_EXIT_USAGE;
}
