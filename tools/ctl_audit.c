/* ctl_audit: `ota-ctl audit`: checks, in one consistent snapshot, what the
 * database can show of the money invariants (issue "money safety"):
 * every final entry has its reservation and repeats it; no txn is both
 * committed and voided; every used code has exactly one committed entry,
 * its own; every reserved code belongs to an open (in-doubt) txn of its
 * card; a voided txn's code is neither used nor held by it; every entry
 * names an existing code, and a reservation carries its code's amount and
 * currency (what the foreign keys and the insert trigger checked on every
 * insert before schema/097_ledger_hot_path.sql took them off the hot
 * path); the ledger's append-only triggers, the codes guard and the unique
 * indexes that hold the money rules are in place and enabled.  The per-txn rules live
 * in the finance_reconciliation view (schema/002_finance.sql), so finance
 * and ota-ctl see the same findings.  Prints every finding and a summary;
 * exits 1 on any violation (flagged entries for review do not fail it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

/* The triggers and indexes that make the ledger rules hold in the database
 * itself; a missing or disabled one is a violation. */
static const char SQL_GUARDS[] =
    "SELECT g.name, g.kind, "
    "       CASE WHEN g.kind = 'trigger' THEN "
    "              (SELECT t.tgenabled <> 'D' FROM pg_trigger t "
    "                WHERE t.tgname = g.name AND t.tgrelid = g.rel::regclass) "
    "            ELSE (SELECT i.indisvalid AND i.indisunique FROM pg_index i "
    "                   JOIN pg_class x ON x.oid = i.indexrelid "
    "                  WHERE x.relname = g.name AND i.indrelid = g.rel::regclass) END AS ok "
    "  FROM (VALUES ('ledger_no_update', 'trigger', 'ledger'), "
    "               ('ledger_no_truncate', 'trigger', 'ledger'), "
    "               ('ledger_check_insert', 'trigger', 'ledger'), "
    "               ('codes_guard', 'trigger', 'codes'), "
    "               ('ledger_one_final', 'index', 'ledger'), "
    "               ('ledger_code_committed_once', 'index', 'ledger'), "
    "               ('ledger_reserved_once', 'index', 'ledger'), "
    "               ('codes_txn_key', 'index', 'codes')) AS g(name, kind, rel)";

static const char SQL_FINDINGS[] =
    "SELECT severity, finding, txn_id, code_id, card_uid, detail FROM finance_reconciliation "
    "ORDER BY severity DESC, finding, txn_id";

static const char SQL_SUMMARY[] =
    "SELECT (SELECT count(*) FROM finance_transactions) AS transactions, "
    "       (SELECT count(*) FROM finance_transactions WHERE state = 'committed') AS committed, "
    "       (SELECT count(*) FROM finance_transactions WHERE state = 'voided') AS voided, "
    "       (SELECT count(*) FROM finance_in_doubt) AS in_doubt, "
    "       (SELECT COALESCE(max(age_seconds), 0) FROM finance_in_doubt) AS oldest_in_doubt_s, "
    "       (SELECT count(*) FROM finance_frozen_cards) AS frozen_cards";

static int audit_run(PGconn *db)
{
    int violations = 0, reviews = 0;
    PGresult *g = ctl_exec(db, "checking the ledger's guards", SQL_GUARDS, 0, NULL);
    if (g == NULL)
        return -1;
    for (int i = 0; i < PQntuples(g); i++)
        if (PQgetisnull(g, i, 2) || PQgetvalue(g, i, 2)[0] != 't') {
            printf("VIOLATION guard-missing: %s %s is %s\n", PQgetvalue(g, i, 1),
                   PQgetvalue(g, i, 0), PQgetisnull(g, i, 2) ? "missing" : "disabled");
            violations++;
        }
    PQclear(g);
    PGresult *f = ctl_exec(db, "reading reconciliation findings", SQL_FINDINGS, 0, NULL);
    if (f == NULL)
        return -1;
    for (int i = 0; i < PQntuples(f); i++) {
        int viol = strcmp(PQgetvalue(f, i, 0), "violation") == 0;
        printf("%s %s: txn=%s code=%s card=%s: %s\n", viol ? "VIOLATION" : "review",
               PQgetvalue(f, i, 1), PQgetisnull(f, i, 2) ? "-" : PQgetvalue(f, i, 2),
               PQgetisnull(f, i, 3) ? "-" : PQgetvalue(f, i, 3),
               PQgetisnull(f, i, 4) ? "-" : PQgetvalue(f, i, 4), PQgetvalue(f, i, 5));
        if (viol)
            violations++;
        else
            reviews++;
    }
    PQclear(f);
    PGresult *s = ctl_exec(db, "summarizing", SQL_SUMMARY, 0, NULL);
    if (s == NULL)
        return -1;
    printf("transactions=%s committed=%s voided=%s in_doubt=%s oldest_in_doubt_s=%s "
           "frozen_cards=%s violations=%d reviews=%d\n",
           PQgetvalue(s, 0, 0), PQgetvalue(s, 0, 1), PQgetvalue(s, 0, 2), PQgetvalue(s, 0, 3),
           PQgetvalue(s, 0, 4), PQgetvalue(s, 0, 5), violations, reviews);
    PQclear(s);
    printf("audit: %s\n", violations ? "FAILED" : "ok");
    return violations;
}

int ctl_cmd_audit(struct ctl *c, int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        fprintf(stderr, "usage: ota-ctl audit\n");
        return CTL_EXIT_USAGE;
    }
    PGconn *db = ctl_connect_finance(c);
    if (db == NULL)
        return CTL_EXIT_FAIL;
    /* One snapshot for every check, read-only. */
    PGresult *r = ctl_exec(db, "starting the audit",
                           "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL);
    int v = r != NULL ? audit_run(db) : -1;
    PQclear(r);
    PQclear(PQexec(db, "ROLLBACK"));
    PQfinish(db);
    return v == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}
