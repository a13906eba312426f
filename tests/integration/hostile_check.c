/* hostile_check: the hostile relay's view of the database (libpq).  Takes a
 * baseline of each card's committed ledger sums before the run, unfreezes
 * cards that the relay's own integrity faults froze, and after the run
 * checks issue 4's invariants against what the relay saw on its cards:
 *   1. card balance change == committed sum change, except committed
 *      entries flagged CREDIT_MISSING (docs/PROTOCOL.md section 10, rule 2), and no
 *      more of those than the relay sent CommitTransactions of its own;
 *   2. each code used at most once and only with a committed entry; a
 *      voided txn released its code;
 *   3. nothing in doubt, no code left reserved;
 *   4. every committed txn of a card had its record on the card, every
 *      record on the card is a committed txn with the same amount, and
 *      every `ok` result names a committed txn.
 * It must never write anything but an unfreeze, and never pass a value
 * into SQL other than as a parameter. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "hex.h"
#include "hostile_relay.h"

#define FLAG_CREDIT_MISSING 8

/* loud = 0 while the database may be down on purpose (a test restarts
 * it): the caller only counts the failure. */
static PGconn *db_open(const char *conninfo, int loud)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        if (loud)
            fprintf(stderr, "hostile_relay: database: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* One query with text parameters; NULL (reported) unless it returned rows. */
static PGresult *db_query_q(PGconn *c, const char *sql, int n, const char *const *params, int loud)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        if (loud)
            fprintf(stderr, "hostile_relay: query failed: %s", PQerrorMessage(c));
        PQclear(r);
        return NULL;
    }
    return r;
}

static PGresult *db_query(PGconn *c, const char *sql, int n, const char *const *params)
{
    return db_query_q(c, sql, n, params, 1);
}

static int64_t get_i64(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char SQL_SUMS[] =
    "SELECT coalesce(sum(amount), 0), "
    "       coalesce(sum(amount) FILTER (WHERE flags & 8 <> 0), 0) "
    "  FROM ledger WHERE kind = 'committed' AND card_uid = decode($1, 'hex')";

int hr_db_baseline(struct hr_run *run)
{
    PGconn *c = db_open(run->conninfo, 1);
    if (c == NULL)
        return -1;
    PGresult *b = db_query(c, "SELECT coalesce(max(id), 0) FROM ledger", 0, NULL);
    if (b == NULL) {
        PQfinish(c);
        return -1;
    }
    run->base_ledger_id = get_i64(b, 0, 0);
    PQclear(b);
    for (int i = 0; i < run->ncards; i++) {
        const char *p[1] = {run->cards[i].uid_hex};
        PGresult *r = db_query(c, SQL_SUMS, 1, p);
        if (r == NULL) {
            PQfinish(c);
            return -1;
        }
        run->cards[i].base_sum = get_i64(r, 0, 0);
        run->cards[i].base_missing = get_i64(r, 0, 1);
        PQclear(r);
    }
    PQfinish(c);
    return 0;
}

int hr_db_unfreeze(const char *conninfo, void **conn, const struct hr_card *card, int *was_frozen,
                   int *records_frozen)
{
    PGconn *c = *conn;
    *was_frozen = 0;
    *records_frozen = 0;
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        c = db_open(conninfo, 0);
        *conn = c;
        if (c == NULL)
            return -1;
    }
    const char *p[1] = {card->uid_hex};
    PGresult *r = db_query_q(
        c,
        "SELECT frozen, coalesce(frozen_reason, '') FROM cards WHERE card_uid = decode($1, 'hex')",
        1, p, 0);
    if (r == NULL)
        return -1;
    int frozen = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    int integrity = frozen && strcmp(PQgetvalue(r, 0, 1), "integrity") == 0;
    PQclear(r);
    *was_frozen = frozen;
    if (!frozen)
        return 0;
    if (!integrity) {
        *records_frozen = 1;
        return 0;
    }
    r = db_query_q(
        c,
        "SELECT ota_admin_unfreeze(decode($1, 'hex'), "
        "'safety test: integrity faults injected by the hostile relay', 'hostile_relay')",
        1, p, 0);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

void hr_db_close(void **conn)
{
    PQfinish(*conn);
    *conn = NULL;
}

__attribute__((format(printf, 1, 2))) static long violation(const char *fmt, ...)
{
    va_list ap;
    printf("VIOLATION: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    return 1;
}

static const struct hr_txn *find_seen(const struct hr_card *card, const uint8_t id[HR_TXN_LEN])
{
    for (size_t i = 0; i < card->nseen; i++)
        if (memcmp(card->seen[i].id, id, HR_TXN_LEN) == 0)
            return &card->seen[i];
    return NULL;
}

static long verify_card(PGconn *c, const struct hr_card *card, int64_t base_ledger_id,
                        int32_t final_balance, long *missing_out)
{
    long v = 0;
    const char *p[1] = {card->uid_hex};
    PGresult *r = db_query(c, SQL_SUMS, 1, p);
    if (r == NULL)
        return -1;
    int64_t sum = get_i64(r, 0, 0) - card->base_sum;
    int64_t missing = get_i64(r, 0, 1) - card->base_missing;
    PQclear(r);
    int64_t delta = (int64_t)final_balance - card->balance0;
    if (delta != sum - missing)
        v += violation("card %s: balance change %lld != committed sum change minus "
                       "CREDIT_MISSING (%lld)",
                       card->uid_hex, (long long)delta, (long long)(sum - missing));

    r = db_query(c,
                 "SELECT count(*) FROM ledger r WHERE r.kind = 'reserved' "
                 "   AND r.card_uid = decode($1, 'hex') AND NOT EXISTS "
                 "   (SELECT 1 FROM ledger f WHERE f.txn_id = r.txn_id AND f.kind <> 'reserved')",
                 1, p);
    if (r == NULL)
        return -1;
    if (get_i64(r, 0, 0) != 0)
        v += violation("card %s: %lld entries still in doubt after the settling check",
                       card->uid_hex, (long long)get_i64(r, 0, 0));
    PQclear(r);

    r = db_query(c,
                 "SELECT frozen, coalesce(frozen_reason, '') FROM cards "
                 " WHERE card_uid = decode($1, 'hex') AND frozen",
                 1, p);
    if (r == NULL)
        return -1;
    if (PQntuples(r) > 0)
        v += violation("card %s: frozen (%s) after the settling check", card->uid_hex,
                       PQgetvalue(r, 0, 1));
    PQclear(r);

    /* Committed txns against the records the relay saw on the card. */
    /* Every committed txn of the card, and which were booked in this run. */
    char base_id[24];
    snprintf(base_id, sizeof base_id, "%lld", (long long)base_ledger_id);
    const char *p2[2] = {card->uid_hex, base_id};
    r = db_query(c,
                 "SELECT replace(txn_id::text, '-', ''), amount, flags, id > $2::bigint "
                 "  FROM ledger WHERE kind = 'committed' AND card_uid = decode($1, 'hex')",
                 2, p2);
    if (r == NULL)
        return -1;
    long n_missing = 0;
    int rows = PQntuples(r);
    uint8_t(*ids)[HR_TXN_LEN] = calloc((size_t)rows + 1, HR_TXN_LEN);
    for (int i = 0; i < rows; i++) {
        const char *hex = PQgetvalue(r, i, 0);
        int64_t amount = get_i64(r, i, 1);
        int64_t flags = get_i64(r, i, 2);
        if (hex_decode(hex, strlen(hex), ids[i], HR_TXN_LEN) != HR_TXN_LEN) {
            v += violation("card %s: unreadable txn id %s", card->uid_hex, hex);
            continue;
        }
        int booked_now = strcmp(PQgetvalue(r, i, 3), "t") == 0;
        const struct hr_txn *t = find_seen(card, ids[i]);
        if (t == NULL) {
            /* Booked before this run, its record may have been pushed off
             * the card long ago; booked in this run without a record that
             * the relay ever saw committed on the card is invariant 4. */
            if (booked_now)
                v += violation("card %s: txn %s booked committed but its record was never "
                               "committed on the card",
                               card->uid_hex, hex);
            continue;
        }
        if (t->amount != amount)
            v += violation("card %s: txn %s: record amount %lld != ledger amount %lld",
                           card->uid_hex, hex, (long long)t->amount, (long long)amount);
        if ((flags & FLAG_CREDIT_MISSING) && booked_now)
            n_missing++;
    }
    PQclear(r);
    for (size_t k = 0; k < card->nseen; k++) {
        const struct hr_txn *t = &card->seen[k];
        int found = 0;
        for (int i = 0; i < rows && !found; i++)
            found = memcmp(ids[i], t->id, HR_TXN_LEN) == 0;
        if (!found && !t->initial) {
            char hex[2 * HR_TXN_LEN + 1];
            hex_encode(t->id, HR_TXN_LEN, hex);
            v += violation("card %s: record of txn %s is on the card but the ledger has no "
                           "committed entry",
                           card->uid_hex, hex);
        }
    }
    free(ids);
    if (n_missing > card->relay_commits)
        v += violation("card %s: %ld CREDIT_MISSING entries but the relay sent only %ld "
                       "CommitTransactions of its own",
                       card->uid_hex, n_missing, card->relay_commits);
    *missing_out = n_missing;
    return v;
}

/* Global code rules (issue 4, invariant 2 and 3). */
static const struct {
    const char *what;
    const char *sql;
} GLOBAL_CHECKS[] = {
    {"used codes without exactly one committed entry",
     "SELECT count(*) FROM codes c WHERE c.state = 'used' AND "
     "(SELECT count(*) FROM ledger l WHERE l.code_hash = c.code_hash AND l.kind = 'committed') <> "
     "1"},
    {"committed entries whose code is not `used`",
     "SELECT count(*) FROM ledger l JOIN codes c ON c.code_hash = l.code_hash "
     " WHERE l.kind = 'committed' AND c.state <> 'used'"},
    {"codes committed more than once",
     "SELECT count(*) FROM (SELECT code_hash FROM ledger WHERE kind = 'committed' "
     " GROUP BY code_hash HAVING count(*) > 1) x"},
    {"codes still reserved after settling", "SELECT count(*) FROM codes WHERE state = 'reserved'"},
    {"voided txns whose code was not released",
     "SELECT count(*) FROM ledger v JOIN codes c ON c.id = v.code_id "
     " WHERE v.kind = 'voided' AND c.txn_id = v.txn_id"},
    {"txns both committed and voided",
     "SELECT count(*) FROM ledger a JOIN ledger b ON a.txn_id = b.txn_id "
     " WHERE a.kind = 'committed' AND b.kind = 'voided'"},
    {"entries in doubt (any card)",
     "SELECT count(*) FROM ledger r WHERE r.kind = 'reserved' AND NOT EXISTS "
     " (SELECT 1 FROM ledger f WHERE f.txn_id = r.txn_id AND f.kind <> 'reserved')"},
};

long hr_db_verify(struct hr_run *run, int32_t const *final_balances)
{
    PGconn *c = db_open(run->conninfo, 1);
    if (c == NULL)
        return -1;
    long v = 0, missing = 0, committed_new = 0;
    for (int i = 0; i < run->ncards; i++) {
        long m = 0;
        long cv = verify_card(c, &run->cards[i], run->base_ledger_id, final_balances[i], &m);
        if (cv < 0) {
            PQfinish(c);
            return -1;
        }
        v += cv;
        missing += m;
    }
    for (size_t i = 0; i < sizeof GLOBAL_CHECKS / sizeof GLOBAL_CHECKS[0]; i++) {
        PGresult *r = db_query(c, GLOBAL_CHECKS[i].sql, 0, NULL);
        if (r == NULL) {
            PQfinish(c);
            return -1;
        }
        if (get_i64(r, 0, 0) != 0)
            v += violation("%s: %s", GLOBAL_CHECKS[i].what, PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    for (size_t i = 0; i < run->nrtxn; i++) {
        const struct hr_result_txn *t = &run->rtxn[i];
        const char *p[1] = {t->uuid};
        PGresult *r = db_query(c,
                               "SELECT coalesce(string_agg(kind, ','), '') FROM ledger "
                               " WHERE txn_id = $1::uuid AND kind <> 'reserved'",
                               1, p);
        if (r == NULL) {
            PQfinish(c);
            return -1;
        }
        const char *kind = PQgetvalue(r, 0, 0);
        if (strcmp(t->status, "ok") == 0 && strcmp(kind, "committed") != 0)
            v += violation("result ok for txn %s but the ledger says '%s'", t->uuid, kind);
        else if (strcmp(t->status, "ok") == 0)
            committed_new++;
        PQclear(r);
    }
    PQfinish(c);
    printf("hostile_relay: verified %d cards, %zu result txns (%ld ok and committed), "
           "%ld CREDIT_MISSING entries (relay commits between WriteRecord and Credit)\n",
           run->ncards, run->nrtxn, committed_new, missing);
    return v;
}
