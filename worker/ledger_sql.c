/* ledger_sql: the PostgreSQL ledger's statements and the reading of their
 * answers; see ledger_sql.h.  One stored function per request type
 * (schema/): its call and parameters are built here, and its result is
 * checked here field by field; anything unexpected is OTA_ERR_PARSE, which
 * ledger_pg.c answers as "unknown outcome", never a guess. */
#include "ledger_sql.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "num.h"
#include "ota_err.h"

static void put_bytea(char *dst, const uint8_t *b, size_t n)
{
    dst[0] = '\\';
    dst[1] = 'x';
    sodium_bin2hex(dst + 2, LEDGER_SQL_PARAM_LEN - 2, b, n);
}

static void put_uuid(char *dst, const uint8_t id[16])
{
    char h[33];
    sodium_bin2hex(h, sizeof h, id, 16);
    snprintf(dst, LEDGER_SQL_PARAM_LEN, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16,
             h + 20);
}

static int get_uuid(const char *s, uint8_t out[16])
{
    char h[33];
    size_t j = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '-')
            continue;
        if (j >= 32)
            return OTA_ERR_PARSE;
        h[j++] = s[i];
    }
    h[j] = '\0';
    size_t bin = 0;
    if (j != 32 || sodium_hex2bin(out, 16, h, j, NULL, &bin, NULL) != 0 || bin != 16)
        return OTA_ERR_PARSE;
    return 0;
}

static int get_i64(const char *s, int64_t *out)
{
    long long v;
    if (num_parse_ll(s, INT64_MIN, INT64_MAX, &v) != 0)
        return OTA_ERR_PARSE;
    *out = v;
    return 0;
}

static int get_bool(const char *s)
{
    return s[0] == 't';
}

static void put_reserve_args(struct ledger_sql_call *c, int at, const struct ledger_reserve_args *a)
{
    put_bytea(c->buf[at], a->code_hash, CODE_HASH_LEN);
    snprintf(c->buf[at + 1], LEDGER_SQL_PARAM_LEN, "%s", a->peer);
    snprintf(c->buf[at + 2], LEDGER_SQL_PARAM_LEN, "%" PRIu32, a->max_card_failures);
    snprintf(c->buf[at + 3], LEDGER_SQL_PARAM_LEN, "%" PRIu32, a->max_peer_failures);
    snprintf(c->buf[at + 4], LEDGER_SQL_PARAM_LEN, "%" PRIu32, a->window_s);
}

/* How many in-doubt and committed txns CARD_STATE and BEGIN ask for. */
static void put_state_limits(struct ledger_sql_call *c, int at)
{
    /* One more than we keep, to know that there were more. */
    snprintf(c->buf[at], LEDGER_SQL_PARAM_LEN, "%d", LEDGER_MAX_IN_DOUBT + 1);
    snprintf(c->buf[at + 1], LEDGER_SQL_PARAM_LEN, "%d", LEDGER_MAX_COMMITTED);
}

static const char *SQL_LEASE_ACQUIRE = "SELECT ota_worker_lease_acquire($1, $2, $3)";
static const char *SQL_LEASE_RELEASE = "SELECT ota_worker_lease_release($1, $2)";
static const char *SQL_CARD_STATE =
    "SELECT kind, frozen, has_history, integrity_failures, txn_id, amount, flags "
    "FROM ota_worker_card_state($1, $2, $3) ORDER BY ord";
static const char *SQL_SETTLE = "SELECT ota_worker_settle($1, $2, $3, $4)";
static const char *SQL_SETTLE_RELEASE = "SELECT ota_worker_settle_release($1, $2, $3, $4, $5)";
static const char *SQL_RESERVE =
    "SELECT status, txn_id, amount, unix_time FROM ota_worker_reserve($1, $2, $3, $4, $5, $6)";
static const char *SQL_CODE_FAILURE = "SELECT ota_worker_code_failure($1, $2)";
static const char *SQL_INTEGRITY_FAILURE = "SELECT ota_worker_integrity_failure($1, $2)";
static const char *SQL_INTEGRITY_RESET = "SELECT ota_worker_integrity_reset($1)";
static const char *SQL_FREEZE = "SELECT ota_worker_freeze($1, $2, $3)";
static const char *SQL_PERSONALIZED = "SELECT ota_worker_personalized($1)";
static const char *SQL_BEGIN =
    "SELECT kind, frozen, has_history, integrity_failures, txn_id, amount, flags, status, "
    "unix_time FROM ota_worker_begin($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ORDER BY ord";
static const char *SQL_COUNTS = "SELECT in_doubt, in_doubt_old, in_doubt_oldest_s, codes_reserved, "
                                "cards_frozen FROM ota_worker_stats($1)";

/* Every statement above by its prepared name (ota_ + the request's name). */
static const struct {
    const char *const *sql;
    const char *name;
} STATEMENTS[] = {
    {&SQL_LEASE_ACQUIRE, "ota_lease_acquire"},
    {&SQL_LEASE_RELEASE, "ota_lease_release"},
    {&SQL_CARD_STATE, "ota_card_state"},
    {&SQL_SETTLE, "ota_settle"},
    {&SQL_SETTLE_RELEASE, "ota_settle_release"},
    {&SQL_RESERVE, "ota_reserve"},
    {&SQL_CODE_FAILURE, "ota_code_failure"},
    {&SQL_INTEGRITY_FAILURE, "ota_integrity_failure"},
    {&SQL_INTEGRITY_RESET, "ota_integrity_reset"},
    {&SQL_FREEZE, "ota_freeze"},
    {&SQL_PERSONALIZED, "ota_personalized"},
    {&SQL_BEGIN, "ota_begin"},
    {&SQL_COUNTS, "ota_counts"},
};

int ledger_sql_statement(const char *sql)
{
    for (size_t i = 0; i < sizeof STATEMENTS / sizeof STATEMENTS[0]; i++)
        if (*STATEMENTS[i].sql == sql)
            return (int)i;
    return -1;
}

int ledger_sql_build(const struct ledger_req *req, struct ledger_sql_call *c)
{
    const struct ledger_card *card = &req->card;
    if (card->uid_len != 4 && card->uid_len != 7)
        return OTA_ERR_INVAL;
    memset(c, 0, sizeof *c);
    put_bytea(c->buf[0], card->uid, card->uid_len);
    c->nparams = 1;

    switch (req->type) {
    case LEDGER_LEASE_ACQUIRE:
        if (req->u.lease.ttl_ms == 0)
            return OTA_ERR_INVAL;
        c->sql = SQL_LEASE_ACQUIRE;
        put_bytea(c->buf[1], req->u.lease.holder, LEDGER_HOLDER_LEN);
        snprintf(c->buf[2], LEDGER_SQL_PARAM_LEN, "%" PRIu32, req->u.lease.ttl_ms);
        c->nparams = 3;
        break;
    case LEDGER_LEASE_RELEASE:
        c->sql = SQL_LEASE_RELEASE;
        put_bytea(c->buf[1], req->u.lease.holder, LEDGER_HOLDER_LEN);
        c->nparams = 2;
        break;
    case LEDGER_CARD_STATE:
        c->sql = SQL_CARD_STATE;
        put_state_limits(c, 1);
        c->nparams = 3;
        break;
    case LEDGER_BEGIN:
        if (req->u.begin.lease.ttl_ms == 0 ||
            (req->u.begin.reserve &&
             memchr(req->u.begin.code.peer, '\0', sizeof req->u.begin.code.peer) == NULL))
            return OTA_ERR_INVAL;
        c->sql = SQL_BEGIN;
        put_bytea(c->buf[1], req->u.begin.lease.holder, LEDGER_HOLDER_LEN);
        snprintf(c->buf[2], LEDGER_SQL_PARAM_LEN, "%" PRIu32, req->u.begin.lease.ttl_ms);
        put_state_limits(c, 3);
        /* A check: no code (NULL hash, peer and limits). */
        if (req->u.begin.reserve)
            put_reserve_args(c, 5, &req->u.begin.code);
        c->nparams = 10;
        break;
    case LEDGER_SETTLE:
        if (req->u.settle.outcome != LEDGER_COMMITTED && req->u.settle.outcome != LEDGER_VOIDED)
            return OTA_ERR_INVAL;
        c->sql = SQL_SETTLE;
        put_uuid(c->buf[1], req->u.settle.txn_id);
        snprintf(c->buf[2], LEDGER_SQL_PARAM_LEN, "%s",
                 req->u.settle.outcome == LEDGER_COMMITTED ? "committed" : "voided");
        snprintf(c->buf[3], LEDGER_SQL_PARAM_LEN, "%" PRIu32,
                 req->u.settle.outcome == LEDGER_COMMITTED ? req->u.settle.flags : 0);
        c->nparams = 4;
        if (req->u.settle.release) {
            c->sql = SQL_SETTLE_RELEASE;
            put_bytea(c->buf[4], req->u.settle.holder, LEDGER_HOLDER_LEN);
            c->nparams = 5;
        }
        break;
    case LEDGER_RESERVE:
        if (memchr(req->u.reserve.peer, '\0', sizeof req->u.reserve.peer) == NULL)
            return OTA_ERR_INVAL;
        c->sql = SQL_RESERVE;
        put_reserve_args(c, 1, &req->u.reserve);
        c->nparams = 6;
        break;
    case LEDGER_CODE_FAILURE:
        if (memchr(req->u.code_failure.peer, '\0', sizeof req->u.code_failure.peer) == NULL)
            return OTA_ERR_INVAL;
        c->sql = SQL_CODE_FAILURE;
        snprintf(c->buf[1], LEDGER_SQL_PARAM_LEN, "%s", req->u.code_failure.peer);
        c->nparams = 2;
        break;
    case LEDGER_INTEGRITY_FAILURE:
        c->sql = SQL_INTEGRITY_FAILURE;
        /* The txn at risk gets LEDGER_FLAG_INTEGRITY (NULL: none). */
        if (req->u.integrity.has_txn)
            put_uuid(c->buf[1], req->u.integrity.txn_id);
        c->nparams = 2;
        break;
    case LEDGER_INTEGRITY_RESET:
        c->sql = SQL_INTEGRITY_RESET;
        break;
    case LEDGER_FREEZE:
        if (memchr(req->u.freeze.detail, '\0', sizeof req->u.freeze.detail) == NULL)
            return OTA_ERR_INVAL;
        c->sql = SQL_FREEZE;
        snprintf(c->buf[1], LEDGER_SQL_PARAM_LEN, "%s",
                 req->u.freeze.reason == LEDGER_FREEZE_RECORDS     ? "records"
                 : req->u.freeze.reason == LEDGER_FREEZE_INTEGRITY ? "integrity"
                                                                   : "other");
        c->nparams = 3;
        break;
    case LEDGER_PERSONALIZED:
        c->sql = SQL_PERSONALIZED;
        break;
    default:
        return OTA_ERR_INVAL;
    }
    for (int i = 0; i < c->nparams; i++)
        c->values[i] = c->buf[i];
    if (req->type == LEDGER_INTEGRITY_FAILURE && !req->u.integrity.has_txn)
        c->values[1] = NULL;
    if (req->type == LEDGER_BEGIN && !req->u.begin.reserve)
        for (int i = 5; i < 10; i++)
            c->values[i] = NULL;
    if (req->type == LEDGER_FREEZE)
        c->values[2] = req->u.freeze.detail; /* up to LEDGER_MAX_DETAIL bytes */
    return 0;
}

/* The rows of CARD_STATE (nfields 7), or BEGIN's (nfields 9: the same
 * seven columns first, and its own 'begin' row, skipped here). */
static int parse_card_state(const PGresult *res, int nfields, struct ledger_card_state *cs)
{
    int n = PQntuples(res);
    int seen_card = 0;
    memset(cs, 0, sizeof *cs);
    if (PQnfields(res) != nfields)
        return OTA_ERR_PARSE;
    for (int i = 0; i < n; i++) {
        const char *kind = PQgetvalue(res, i, 0);
        if (nfields == 9 && strcmp(kind, "begin") == 0)
            continue;
        if (strcmp(kind, "card") == 0) {
            if (seen_card)
                return OTA_ERR_PARSE;
            int64_t f;
            if (get_i64(PQgetvalue(res, i, 3), &f) || f < 0 || f > UINT32_MAX)
                return OTA_ERR_PARSE;
            cs->frozen = (uint8_t)get_bool(PQgetvalue(res, i, 1));
            cs->has_history = (uint8_t)get_bool(PQgetvalue(res, i, 2));
            cs->integrity_failures = (uint32_t)f;
            seen_card = 1;
            continue;
        }
        struct ledger_txn t;
        memset(&t, 0, sizeof t);
        if (PQgetisnull(res, i, 4) || get_uuid(PQgetvalue(res, i, 4), t.txn_id) ||
            get_i64(PQgetvalue(res, i, 5), &t.amount))
            return OTA_ERR_PARSE;
        if (strcmp(kind, "in_doubt") == 0) {
            /* Only in-doubt rows carry flags (txn_flags, INTEGRITY_FAILURE). */
            int64_t f;
            if (PQgetisnull(res, i, 6) || get_i64(PQgetvalue(res, i, 6), &f) || f < 0 ||
                f > UINT32_MAX)
                return OTA_ERR_PARSE;
            t.flags = (uint32_t)f;
            if (cs->n_in_doubt < LEDGER_MAX_IN_DOUBT)
                cs->in_doubt[cs->n_in_doubt++] = t;
            else
                cs->in_doubt_more = 1;
        } else if (strcmp(kind, "committed") == 0) {
            if (cs->n_committed >= LEDGER_MAX_COMMITTED)
                return OTA_ERR_PARSE;
            cs->committed[cs->n_committed++] = t;
        } else {
            return OTA_ERR_PARSE;
        }
    }
    return seen_card ? 0 : OTA_ERR_PARSE;
}

/* A reservation's txn_id, amount and unix_time, from these columns of row. */
static int parse_reservation(const PGresult *res, int row, int id_col, int amount_col, int time_col,
                             struct ledger_reservation *out)
{
    if (PQgetisnull(res, row, id_col) || get_uuid(PQgetvalue(res, row, id_col), out->txn_id) ||
        get_i64(PQgetvalue(res, row, amount_col), &out->amount) ||
        get_i64(PQgetvalue(res, row, time_col), &out->unix_time))
        return OTA_ERR_PARSE;
    return 0;
}

/* A status of RESERVE's (and BEGIN's) code answers; -1 for another. */
static int code_status(const char *v)
{
    if (strcmp(v, "code-invalid") == 0)
        return LEDGER_ST_CODE_INVALID;
    if (strcmp(v, "code-used") == 0)
        return LEDGER_ST_CODE_USED;
    if (strcmp(v, "limit-exceeded") == 0)
        return LEDGER_ST_LIMIT_EXCEEDED;
    return -1;
}

/* BEGIN: its one 'begin' row says what happened; the card's rows follow
 * CARD_STATE's (none when busy).  A code answer is only possible when a
 * code was sent. */
static int parse_begin(const struct ledger_req *req, const PGresult *res, struct ledger_reply *rep)
{
    int row = -1;
    if (PQnfields(res) != 9)
        return OTA_ERR_PARSE;
    for (int i = 0; i < PQntuples(res); i++) {
        if (strcmp(PQgetvalue(res, i, 0), "begin") != 0)
            continue;
        if (row >= 0 || PQgetisnull(res, i, 7))
            return OTA_ERR_PARSE;
        row = i;
    }
    if (row < 0)
        return OTA_ERR_PARSE;
    const char *st = PQgetvalue(res, row, 7);
    if (strcmp(st, "busy") == 0) {
        if (PQntuples(res) != 1)
            return OTA_ERR_PARSE;
        rep->status = LEDGER_ST_BUSY;
        return 0;
    }
    if (parse_card_state(res, 9, &rep->u.begin.card) != 0)
        return OTA_ERR_PARSE;
    int code = code_status(st);
    if (strcmp(st, "leased") == 0) {
        rep->status = LEDGER_ST_OK;
    } else if (strcmp(st, "ok") == 0 && req->u.begin.reserve) {
        if (parse_reservation(res, row, 4, 5, 8, &rep->u.begin.res) != 0)
            return OTA_ERR_PARSE;
        rep->u.begin.reserved = 1;
        rep->status = LEDGER_ST_OK;
    } else if (code >= 0 && req->u.begin.reserve) {
        rep->status = (enum ledger_status)code;
    } else {
        return OTA_ERR_PARSE;
    }
    return 0;
}

int ledger_sql_parse(const struct ledger_req *req, const PGresult *res, struct ledger_reply *rep)
{
    int one = PQntuples(res) == 1 && PQnfields(res) >= 1;
    const char *v = one ? PQgetvalue(res, 0, 0) : "";
    int64_t n;

    rep->status = LEDGER_ST_OK;
    switch (req->type) {
    case LEDGER_LEASE_ACQUIRE:
        if (!one || PQgetisnull(res, 0, 0))
            return OTA_ERR_PARSE;
        rep->status = get_bool(v) ? LEDGER_ST_OK : LEDGER_ST_BUSY;
        return 0;
    case LEDGER_CARD_STATE:
        return parse_card_state(res, 7, &rep->u.card);
    case LEDGER_BEGIN:
        return parse_begin(req, res, rep);
    case LEDGER_SETTLE:
        if (!one)
            return OTA_ERR_PARSE;
        if (strcmp(v, "ok") == 0) {
            rep->status = LEDGER_ST_OK;
            rep->u.released = req->u.settle.release;
        } else if (strcmp(v, "ok-held") == 0 && req->u.settle.release)
            rep->status = LEDGER_ST_OK; /* booked; the lease stays */
        else if (strcmp(v, "conflict") == 0)
            rep->status = LEDGER_ST_CONFLICT;
        else
            return OTA_ERR_PARSE;
        return 0;
    case LEDGER_RESERVE:
        if (!one || PQnfields(res) != 4)
            return OTA_ERR_PARSE;
        if (strcmp(v, "ok") == 0) {
            if (parse_reservation(res, 0, 1, 2, 3, &rep->u.reserve))
                return OTA_ERR_PARSE;
            rep->status = LEDGER_ST_OK;
        } else if (code_status(v) >= 0) {
            rep->status = (enum ledger_status)code_status(v);
        } else {
            return OTA_ERR_PARSE;
        }
        return 0;
    case LEDGER_INTEGRITY_FAILURE:
        if (!one || get_i64(v, &n) || n < 0 || n > UINT32_MAX)
            return OTA_ERR_PARSE;
        rep->u.integrity_failures = (uint32_t)n;
        return 0;
    case LEDGER_LEASE_RELEASE:
    case LEDGER_CODE_FAILURE:
    case LEDGER_INTEGRITY_RESET:
    case LEDGER_FREEZE:
    case LEDGER_PERSONALIZED:
        return one ? 0 : OTA_ERR_PARSE;
    default:
        return OTA_ERR_PARSE;
    }
}

const char *ledger_sql_statement_name(int i)
{
    return STATEMENTS[i].name;
}

void ledger_sql_build_counts(uint32_t old_s, struct ledger_sql_call *c)
{
    memset(c, 0, sizeof *c);
    c->sql = SQL_COUNTS;
    snprintf(c->buf[0], LEDGER_SQL_PARAM_LEN, "%" PRIu32, old_s);
    c->values[0] = c->buf[0];
    c->nparams = 1;
}

int ledger_sql_parse_counts(const PGresult *res, uint64_t out[LEDGER_SQL_NCOUNTS])
{
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        PQnfields(res) != LEDGER_SQL_NCOUNTS)
        return OTA_ERR_PARSE;
    for (int i = 0; i < LEDGER_SQL_NCOUNTS; i++) {
        int64_t v;
        if (PQgetisnull(res, 0, i) || get_i64(PQgetvalue(res, 0, i), &v) != 0 || v < 0)
            return OTA_ERR_PARSE;
        out[i] = (uint64_t)v;
    }
    return 0;
}
