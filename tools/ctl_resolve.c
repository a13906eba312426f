/* ctl_resolve: `ota-ctl ledger resolve TXN --committed|--voided --reason
 * TEXT`, an operator's decision on an entry in doubt whose card never
 * comes back (FINANCE.md, "Entries in doubt for days").
 *
 * One call of ota_admin_resolve() (schema/094_ledger_resolve.sql) appends
 * the final entry, moves the code (committed: used; voided: released) and
 * records who, when and why in ledger_resolutions, in one transaction; it
 * refuses a txn that already has its final entry or whose card is in a
 * session.  Must never run without a reason or guess the outcome. */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

/* A txn id as a person gives it: a UUID (36 characters, hex and dashes). */
static int is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        char ch = s[i];
        int hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
        if (dash ? ch != '-' : !hex)
            return 0;
    }
    return 1;
}

int ctl_ledger_resolve(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {
        {"committed", 0, NULL, 0}, {"voided", 0, NULL, 0}, {"reason", 1, NULL, 0}};
    const size_t no = sizeof o / sizeof o[0];
    const char *pos[1];
    size_t npos;
    const char *reason = NULL;
    int committed = 0, voided = 0;
    if (ctl_parse_opts("ledger resolve", argc, argv, o, no, pos, 1, &npos) == 0) {
        reason = ctl_opt(o, no, "reason");
        committed = ctl_flag(o, no, "committed");
        voided = ctl_flag(o, no, "voided");
    }
    if (npos != 1 || committed == voided || reason == NULL || reason[0] == '\0') {
        fprintf(stderr, "usage: ota-ctl ledger resolve TXN --committed|--voided --reason TEXT\n");
        return CTL_EXIT_USAGE;
    }
    if (!is_uuid(pos[0])) {
        fprintf(stderr, "ota-ctl: '%s' is not a transaction id (a UUID)\n", pos[0]);
        return CTL_EXIT_USAGE;
    }
    PGconn *db = ctl_connect(c);
    if (db == NULL)
        return CTL_EXIT_FAIL;
    char who[128];
    const char *outcome = committed ? "committed" : "voided";
    const char *v[] = {pos[0], outcome, reason, ctl_actor(who, sizeof who)};
    PGresult *r = ctl_exec(db, "resolving the transaction",
                           "SELECT ota_admin_resolve($1::uuid, $2, $3, $4)", 4, v);
    int rc = CTL_EXIT_FAIL;
    if (r != NULL) {
        printf("transaction %s of card %s resolved %s (recorded)\n", pos[0], PQgetvalue(r, 0, 0),
               outcome);
        rc = CTL_EXIT_OK;
    }
    PQclear(r);
    PQfinish(db);
    return rc;
}
