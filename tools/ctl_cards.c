/* ctl_cards: `ota-ctl cards show|frozen|unfreeze`.
 *
 * unfreeze is the only way a frozen card gets top-ups again: one call of
 * ota_admin_unfreeze() (schema/001_base.sql) clears the freeze, resets the
 * card's consecutive integrity failures and records who and why in
 * card_events.  Must never unfreeze without a reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static int cards_unfreeze(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"reason", 1, NULL, 0}};
    const char *pos[1];
    size_t npos;
    char uid[32];
    if (ctl_parse_opts("cards unfreeze", argc, argv, o, 1, pos, 1, &npos) != 0 || npos != 1 ||
        ctl_opt(o, 1, "reason") == NULL || ctl_opt(o, 1, "reason")[0] == '\0') {
        fprintf(stderr, "usage: ota-ctl cards unfreeze UID --reason TEXT\n");
        return CTL_EXIT_USAGE;
    }
    if (ctl_uid_param(pos[0], uid, sizeof uid) != 0)
        return CTL_EXIT_USAGE;
    PGconn *db = ctl_connect(c);
    if (db == NULL)
        return CTL_EXIT_FAIL;
    char who[128];
    const char *v[] = {uid, ctl_opt(o, 1, "reason"), ctl_actor(who, sizeof who)};
    PGresult *r =
        ctl_exec(db, "unfreezing the card", "SELECT ota_admin_unfreeze($1::bytea, $2, $3)", 3, v);
    int rc = CTL_EXIT_FAIL;
    if (r != NULL && PQgetvalue(r, 0, 0)[0] == 't') {
        printf("card %s unfrozen (recorded)\n", pos[0]);
        rc = CTL_EXIT_OK;
    } else if (r != NULL) {
        fprintf(stderr, "ota-ctl: card %s is not frozen\n", pos[0]);
    }
    PQclear(r);
    PQfinish(db);
    return rc;
}

static int cards_show(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"format", 1, NULL, 0}};
    const char *pos[1];
    size_t npos;
    char uid[32];
    enum ctl_format fmt;
    if (ctl_parse_opts("cards show", argc, argv, o, 1, pos, 1, &npos) != 0 || npos != 1 ||
        ctl_parse_format(ctl_opt(o, 1, "format"), &fmt) != 0) {
        fprintf(stderr, "usage: ota-ctl cards show UID\n");
        return CTL_EXIT_USAGE;
    }
    if (ctl_uid_param(pos[0], uid, sizeof uid) != 0)
        return CTL_EXIT_USAGE;
    PGconn *db = ctl_connect(c);
    if (db == NULL)
        return CTL_EXIT_FAIL;
    const char *v[] = {uid};
    static const struct {
        const char *title, *sql;
    } parts[] = {
        {"card",
         "SELECT encode(c.card_uid, 'hex') AS card_uid, c.frozen, c.frozen_reason, "
         "c.frozen_detail, c.frozen_at, c.integrity_failures, c.personalized_at, c.first_seen_at, "
         "(SELECT count(*) FROM ledger l WHERE l.card_uid = c.card_uid AND l.kind = 'reserved') "
         "AS transactions, l.expires_at AS lease_expires_at "
         "FROM cards c LEFT JOIN card_leases l ON l.card_uid = c.card_uid WHERE c.card_uid = $1"},
        {"transactions", "SELECT txn_id, amount, currency, state, reserved_at, settled_at, flags "
                         "FROM finance_transactions WHERE card_uid = encode($1::bytea, 'hex') "
                         "ORDER BY reserved_at DESC LIMIT 20"},
        {"events", "SELECT event, reason, detail, actor, at FROM card_events "
                   "WHERE card_uid = $1 ORDER BY id"},
    };
    int rc = CTL_EXIT_OK;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0] && rc == CTL_EXIT_OK; i++) {
        PGresult *r = ctl_exec(db, "reading the card", parts[i].sql, 1, v);
        if (r == NULL) {
            rc = CTL_EXIT_FAIL;
            break;
        }
        if (i == 0 && PQntuples(r) == 0) {
            PQclear(r);
            r = ctl_exec(db, "reading the card", "SELECT count(*) FROM ledger WHERE card_uid = $1",
                         1, v);
            int known = r != NULL && strcmp(PQgetvalue(r, 0, 0), "0") != 0;
            PQclear(r);
            if (!known) {
                fprintf(stderr, "ota-ctl: no card %s in the database\n", pos[0]);
                rc = CTL_EXIT_FAIL;
                break;
            }
            continue;
        }
        if (fmt == CTL_FMT_TABLE)
            printf("%s== %s\n", i ? "\n" : "", parts[i].title);
        ctl_print_result(r, fmt);
        PQclear(r);
    }
    PQfinish(db);
    return rc;
}

static int cards_frozen(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"format", 1, NULL, 0}};
    const char *pos[1];
    size_t npos;
    enum ctl_format fmt;
    if (ctl_parse_opts("cards frozen", argc, argv, o, 1, pos, 0, &npos) != 0 ||
        ctl_parse_format(ctl_opt(o, 1, "format"), &fmt) != 0)
        return CTL_EXIT_USAGE;
    PGconn *db = ctl_connect(c);
    if (db == NULL)
        return CTL_EXIT_FAIL;
    PGresult *r = ctl_exec(db, "reading frozen cards",
                           "SELECT card_uid, frozen_reason, frozen_detail, frozen_at, "
                           "integrity_failures FROM finance_frozen_cards ORDER BY frozen_at",
                           0, NULL);
    if (r != NULL)
        ctl_print_result(r, fmt);
    PQclear(r);
    PQfinish(db);
    return r != NULL ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

int ctl_cmd_cards(struct ctl *c, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "unfreeze") == 0)
        return cards_unfreeze(c, argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "show") == 0)
        return cards_show(c, argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "frozen") == 0)
        return cards_frozen(c, argc - 1, argv + 1);
    fprintf(stderr, "usage: ota-ctl cards show UID | frozen | unfreeze UID --reason TEXT\n");
    return CTL_EXIT_USAGE;
}
