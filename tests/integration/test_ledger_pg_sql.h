/* test_ledger_pg_sql: the only place test_ledger_pg.c touches the ledger
 * tables directly (schema/), to set up codes and check what the stored
 * functions did.  Included once, by test_ledger_pg.c. */

/* Issues code n (its hash, hash_n) worth amount; expired: already past. */
static void issue_code(unsigned n, int64_t amount, int expired)
{
    uint8_t h[CODE_HASH_LEN];
    char hb[2 * CODE_HASH_LEN + 3], am[24];
    hash_n(n, h);
    hex_bytea(hb, h, sizeof h);
    snprintf(am, sizeof am, "%" PRId64, amount);
    const char *v[] = {hb, am, expired ? "-1 hour" : "1 day"};
    PQclear(sql("INSERT INTO codes (code_hash, amount, expires_at) "
                "VALUES ($1, $2, now() + $3::interval)",
                3, v));
}

/* The code's state ("issued", "reserved", "used", ...), in static memory. */
static const char *code_state(unsigned n)
{
    static char out[32];
    uint8_t h[CODE_HASH_LEN];
    char hb[2 * CODE_HASH_LEN + 3];
    hash_n(n, h);
    hex_bytea(hb, h, sizeof h);
    const char *v[] = {hb};
    PGresult *r = sql("SELECT state FROM codes WHERE code_hash = $1", 1, v);
    snprintf(out, sizeof out, "%s", PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "none");
    PQclear(r);
    return out;
}

static void uuid_text(char out[37], const uint8_t id[16])
{
    char h[33];
    sodium_bin2hex(h, sizeof h, id, 16);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

static int count_query(const char *q, const char *param)
{
    const char *v[] = {param};
    PGresult *r = sql(q, 1, v);
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

/* Ledger entries (any kind) of a txn. */
static int ledger_entries(const uint8_t txn[16])
{
    char u[37];
    uuid_text(u, txn);
    return count_query("SELECT count(*) FROM ledger WHERE txn_id = $1", u);
}

static int ledger_flags(const uint8_t txn[16])
{
    char u[37];
    uuid_text(u, txn);
    return count_query("SELECT COALESCE(max(flags), -1) FROM ledger "
                       "WHERE txn_id = $1 AND kind = 'committed'",
                       u);
}

static int reserved_entries_for_code(unsigned n)
{
    uint8_t h[CODE_HASH_LEN];
    char hb[2 * CODE_HASH_LEN + 3];
    hash_n(n, h);
    hex_bytea(hb, h, sizeof h);
    return count_query("SELECT count(*) FROM ledger WHERE code_hash = $1 AND kind = 'reserved'",
                       hb);
}

/* 1 if holder h holds a live lease on the card. */
static int lease_holder_is(const struct ledger_card *c, unsigned h)
{
    char uid[2 + 2 * WIRE_MAX_UID + 1], hb[2 + 2 * LEDGER_HOLDER_LEN + 1];
    uint8_t holder[LEDGER_HOLDER_LEN];
    holder_n(h, holder);
    hex_bytea(uid, c->uid, c->uid_len);
    hex_bytea(hb, holder, sizeof holder);
    const char *v[2] = {uid, hb};
    PGresult *r = sql("SELECT count(*) FROM card_leases WHERE card_uid = $1 AND holder = $2 "
                      "AND expires_at > clock_timestamp()",
                      2, v);
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

static int test_personalized(const struct ledger_card *c)
{
    char ub[2 * WIRE_MAX_UID + 3];
    hex_bytea(ub, c->uid, c->uid_len);
    return count_query("SELECT count(*) FROM cards "
                       "WHERE card_uid = $1 AND personalized_at IS NOT NULL",
                       ub);
}

/* 1 if the statement changed a row (it must not: the ledger is append-only). */
static int try_change(const char *q, const uint8_t txn[16])
{
    char u[37];
    uuid_text(u, txn);
    const char *v[] = {u};
    PGresult *r = PQexecParams(admin, q, 1, NULL, v, NULL, NULL, 0);
    int changed = PQresultStatus(r) == PGRES_COMMAND_OK && atoi(PQcmdTuples(r)) > 0;
    PQclear(r);
    return changed;
}

static int ledger_try_update(const uint8_t txn[16])
{
    return try_change("UPDATE ledger SET amount = amount + 1 WHERE txn_id = $1", txn);
}

static int ledger_try_delete(const uint8_t txn[16])
{
    return try_change("DELETE FROM ledger WHERE txn_id = $1", txn);
}

/* On l (inside BEGIN): lock the card's lease row. */
static void lease_row_lock(PGconn *l, const struct ledger_card *c)
{
    char ub[2 * WIRE_MAX_UID + 3];
    hex_bytea(ub, c->uid, c->uid_len);
    const char *v[] = {ub};
    PGresult *r = PQexecParams(l, "SELECT 1 FROM card_leases WHERE card_uid = $1 FOR UPDATE", 1,
                               NULL, v, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_int_eq(PQntuples(r), 1);
    PQclear(r);
}
