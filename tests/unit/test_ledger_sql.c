/* Tests for worker/ledger_sql.c without PostgreSQL: the statement and
 * parameters built for each ledger request (and the requests refused
 * before they reach the database), and the parsing of answers made with
 * libpq's PQmakeEmptyPGresult: good rows, and every unexpected shape
 * refused as OTA_ERR_PARSE (ledger_pg answers it "unknown outcome"). */
#include <check.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "ledger_sql.h"
#include "ota_err.h"

static struct ledger_req request(enum ledger_req_type type)
{
    struct ledger_req r;
    memset(&r, 0, sizeof r);
    r.type = type;
    r.card.uid_len = 7;
    memcpy(r.card.uid, "\x04\xa1\xb2\xc3\xd4\xe5\xf6", 7);
    return r;
}

/* A result of ncols text columns; each row is ncols strings, NULL = SQL NULL. */
static PGresult *rows(int ncols, int nrows, ...)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    ck_assert_ptr_nonnull(res);
    PGresAttDesc att[10];
    static char names[10][4] = {"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"};
    ck_assert_int_le(ncols, 10);
    memset(att, 0, sizeof att);
    for (int i = 0; i < ncols; i++) {
        att[i].name = names[i];
        att[i].typid = 25; /* text */
        att[i].typlen = -1;
    }
    ck_assert_int_eq(PQsetResultAttrs(res, ncols, att), 1);
    va_list ap;
    va_start(ap, nrows);
    for (int r = 0; r < nrows; r++)
        for (int c = 0; c < ncols; c++) {
            const char *v = va_arg(ap, const char *);
            ck_assert_int_eq(PQsetvalue(res, r, c, (char *)v, v ? (int)strlen(v) : -1), 1);
        }
    va_end(ap);
    return res;
}

static enum ledger_status parse(const struct ledger_req *req, PGresult *res,
                                struct ledger_reply *rep, int *rc)
{
    memset(rep, 0, sizeof *rep);
    *rc = ledger_sql_parse(req, res, rep);
    PQclear(res);
    return rep->status;
}

#define UID_PARAM "\\x04a1b2c3d4e5f6"
#define TXN "0123456789abcdef0123456789abcdef"
#define TXN_UUID "01234567-89ab-cdef-0123-456789abcdef"

START_TEST(each_request_has_its_statement_and_parameters)
{
    struct ledger_sql_call c;
    struct ledger_req r = request(LEDGER_LEASE_ACQUIRE);
    memset(r.u.lease.holder, 0xaa, LEDGER_HOLDER_LEN);
    r.u.lease.ttl_ms = 90000;
    ck_assert_int_eq(ledger_sql_build(&r, &c), 0);
    ck_assert_ptr_nonnull(strstr(c.sql, "ota_worker_lease_acquire("));
    ck_assert_int_eq(c.nparams, 3);
    ck_assert_str_eq(c.values[0], UID_PARAM);
    ck_assert_str_eq(c.values[1], "\\xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    ck_assert_str_eq(c.values[2], "90000");

    r = request(LEDGER_SETTLE);
    memcpy(r.u.settle.txn_id, "\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef",
           16);
    r.u.settle.outcome = LEDGER_COMMITTED;
    r.u.settle.flags = LEDGER_FLAG_SETTLED_LATER;
    ck_assert_int_eq(ledger_sql_build(&r, &c), 0);
    ck_assert_ptr_nonnull(strstr(c.sql, "ota_worker_settle("));
    ck_assert_int_eq(c.nparams, 4);
    ck_assert_str_eq(c.values[1], TXN_UUID);
    ck_assert_str_eq(c.values[2], "committed");
    ck_assert_str_eq(c.values[3], "4");
    r.u.settle.outcome = LEDGER_VOIDED; /* flags go with committed entries only */
    ck_assert_int_eq(ledger_sql_build(&r, &c), 0);
    ck_assert_str_eq(c.values[2], "voided");
    ck_assert_str_eq(c.values[3], "0");
    /* With the lease's release in the same statement: the holder too. */
    r.u.settle.outcome = LEDGER_COMMITTED;
    r.u.settle.release = 1;
    memset(r.u.settle.holder, 0xbb, LEDGER_HOLDER_LEN);
    ck_assert_int_eq(ledger_sql_build(&r, &c), 0);
    ck_assert_ptr_nonnull(strstr(c.sql, "ota_worker_settle_release("));
    ck_assert_int_eq(c.nparams, 5);
    ck_assert_str_eq(c.values[4], "\\xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    /* Every statement has a prepared name; other text has none. */
    int st = ledger_sql_statement(c.sql);
    ck_assert_int_ge(st, 0);
    ck_assert_str_eq(ledger_sql_statement_name(st), "ota_settle_release");
    ck_assert_int_eq(ledger_sql_statement("SELECT 1"), -1);

    r = request(LEDGER_RESERVE);
    memset(r.u.reserve.code_hash, 0x5c, CODE_HASH_LEN);
    strcpy(r.u.reserve.peer, "192.0.2.7");
    r.u.reserve.max_card_failures = 5;
    r.u.reserve.max_peer_failures = 20;
    r.u.reserve.window_s = 3600;
    ck_assert_int_eq(ledger_sql_build(&r, &c), 0);
    ck_assert_int_eq(c.nparams, 6);
    ck_assert_uint_eq(strlen(c.values[1]), 2 + 2 * CODE_HASH_LEN);
    ck_assert_str_eq(c.values[2], "192.0.2.7");
    ck_assert_str_eq(c.values[3], "5");
    ck_assert_str_eq(c.values[4], "20");
    ck_assert_str_eq(c.values[5], "3600");

    r = request(LEDGER_FREEZE);
    r.u.freeze.reason = LEDGER_FREEZE_INTEGRITY;
    strcpy(r.u.freeze.detail, "three integrity failures");
    ck_assert_int_eq(ledger_sql_build(&r, &c), 0);
    ck_assert_int_eq(c.nparams, 3);
    ck_assert_str_eq(c.values[1], "integrity");
    ck_assert_ptr_eq(c.values[2], r.u.freeze.detail);

    r = request(LEDGER_CARD_STATE);
    ck_assert_int_eq(ledger_sql_build(&r, &c), 0);
    ck_assert_int_eq(c.nparams, 3);

    /* An integrity failure names the txn at risk, or NULL. */
    r = request(LEDGER_INTEGRITY_FAILURE);
    ck_assert_int_eq(ledger_sql_build(&r, &c), 0);
    ck_assert_int_eq(c.nparams, 2);
    ck_assert_ptr_null(c.values[1]);
    r.u.integrity.has_txn = 1;
    memcpy(r.u.integrity.txn_id, "\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef",
           16);
    ck_assert_int_eq(ledger_sql_build(&r, &c), 0);
    ck_assert_str_eq(c.values[1], TXN_UUID);

    static const enum ledger_req_type one_param[] = {LEDGER_INTEGRITY_RESET, LEDGER_PERSONALIZED};
    for (size_t i = 0; i < 2; i++) {
        r = request(one_param[i]);
        ck_assert_int_eq(ledger_sql_build(&r, &c), 0);
        ck_assert_int_eq(c.nparams, 1);
        ck_assert_str_eq(c.values[0], UID_PARAM);
    }

    ledger_sql_build_counts(86400, &c);
    ck_assert_int_eq(c.nparams, 1);
    ck_assert_str_eq(c.values[0], "86400");
}
END_TEST

START_TEST(begin_request)
{
    /* A top-up's BEGIN: the lease, the state's bounds, the code. */
    struct ledger_sql_call c;
    struct ledger_req r = request(LEDGER_BEGIN);
    memset(r.u.begin.lease.holder, 0xaa, LEDGER_HOLDER_LEN);
    r.u.begin.lease.ttl_ms = 90000;
    r.u.begin.reserve = 1;
    memset(r.u.begin.code.code_hash, 0x5c, CODE_HASH_LEN);
    strcpy(r.u.begin.code.peer, "192.0.2.7");
    r.u.begin.code.max_card_failures = 5;
    r.u.begin.code.max_peer_failures = 20;
    r.u.begin.code.window_s = 3600;
    ck_assert_int_eq(ledger_sql_build(&r, &c), 0);
    ck_assert_ptr_nonnull(strstr(c.sql, "ota_worker_begin("));
    ck_assert_int_eq(c.nparams, 10);
    ck_assert_str_eq(c.values[0], UID_PARAM);
    ck_assert_str_eq(c.values[1], "\\xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    ck_assert_str_eq(c.values[2], "90000");
    ck_assert_str_eq(c.values[3], "9"); /* LEDGER_MAX_IN_DOUBT + 1 */
    ck_assert_str_eq(c.values[4], "8");
    ck_assert_uint_eq(strlen(c.values[5]), 2 + 2 * CODE_HASH_LEN);
    ck_assert_str_eq(c.values[6], "192.0.2.7");
    ck_assert_str_eq(c.values[7], "5");
    ck_assert_str_eq(c.values[8], "20");
    ck_assert_str_eq(c.values[9], "3600");
    int st = ledger_sql_statement(c.sql);
    ck_assert_int_ge(st, 0);
    ck_assert_str_eq(ledger_sql_statement_name(st), "ota_begin");
    /* A check's: no code, NULL from the hash on. */
    r.u.begin.reserve = 0;
    ck_assert_int_eq(ledger_sql_build(&r, &c), 0);
    ck_assert_int_eq(c.nparams, 10);
    ck_assert_str_eq(c.values[3], "9");
    for (int i = 5; i < 10; i++)
        ck_assert_ptr_null(c.values[i]);
    /* No time to live; a top-up's peer without its NUL. */
    r.u.begin.lease.ttl_ms = 0;
    ck_assert_int_eq(ledger_sql_build(&r, &c), OTA_ERR_INVAL);
    r.u.begin.lease.ttl_ms = 1;
    r.u.begin.reserve = 1;
    memset(r.u.begin.code.peer, 'x', sizeof r.u.begin.code.peer);
    ck_assert_int_eq(ledger_sql_build(&r, &c), OTA_ERR_INVAL);
}
END_TEST

/* BEGIN's rows: CARD_STATE's seven columns, status, unix_time. */
#define CARD_ROW(frozen) "card", frozen, "t", "0", NULL, NULL, NULL, NULL, NULL
#define DOUBT_ROW "in_doubt", NULL, NULL, NULL, TXN_UUID, "300", "0", NULL, NULL
#define BEGIN_ROW(st) "begin", NULL, NULL, NULL, NULL, NULL, NULL, st, NULL

START_TEST(begin_answers)
{
    struct ledger_reply rep;
    int rc;
    struct ledger_req r = request(LEDGER_BEGIN);
    r.u.begin.reserve = 1;
    /* Reserved: the state (before the reservation) and the new txn. */
    ck_assert_int_eq(parse(&r,
                           rows(9, 2, CARD_ROW("f"), "begin", NULL, NULL, NULL, TXN_UUID, "500",
                                NULL, "ok", "1765000000"),
                           &rep, &rc),
                     LEDGER_ST_OK);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(rep.u.begin.reserved, 1);
    ck_assert_mem_eq(rep.u.begin.res.txn_id,
                     "\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef", 16);
    ck_assert_int_eq(rep.u.begin.res.amount, 500);
    ck_assert_int_eq(rep.u.begin.res.unix_time, 1765000000);
    ck_assert_uint_eq(rep.u.begin.card.has_history, 1);
    ck_assert_uint_eq(rep.u.begin.card.n_in_doubt, 0);
    /* Leased only (an entry in doubt): the state, nothing reserved. */
    ck_assert_int_eq(
        parse(&r, rows(9, 3, CARD_ROW("f"), DOUBT_ROW, BEGIN_ROW("leased")), &rep, &rc),
        LEDGER_ST_OK);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(rep.u.begin.reserved, 0);
    ck_assert_uint_eq(rep.u.begin.card.n_in_doubt, 1);
    ck_assert_int_eq(rep.u.begin.card.in_doubt[0].amount, 300);
    /* The 'begin' row may come anywhere. */
    ck_assert_int_eq(parse(&r, rows(9, 2, BEGIN_ROW("leased"), CARD_ROW("t")), &rep, &rc),
                     LEDGER_ST_OK);
    ck_assert_uint_eq(rep.u.begin.card.frozen, 1);
    /* Busy: that row alone. */
    ck_assert_int_eq(parse(&r, rows(9, 1, BEGIN_ROW("busy")), &rep, &rc), LEDGER_ST_BUSY);
    ck_assert_int_eq(rc, 0);
    /* The code answers. */
    ck_assert_int_eq(parse(&r, rows(9, 2, CARD_ROW("f"), BEGIN_ROW("code-used")), &rep, &rc),
                     LEDGER_ST_CODE_USED);
    ck_assert_int_eq(parse(&r, rows(9, 2, CARD_ROW("f"), BEGIN_ROW("code-invalid")), &rep, &rc),
                     LEDGER_ST_CODE_INVALID);
    ck_assert_int_eq(parse(&r, rows(9, 2, CARD_ROW("f"), BEGIN_ROW("limit-exceeded")), &rep, &rc),
                     LEDGER_ST_LIMIT_EXCEEDED);
    ck_assert_int_eq(rc, 0);

    /* Unexpected: no 'begin' row; two; busy with the card's rows; no card
     * row; 'ok' without its txn; an unknown status; seven columns. */
    parse(&r, rows(9, 1, CARD_ROW("f")), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(9, 3, CARD_ROW("f"), BEGIN_ROW("leased"), BEGIN_ROW("leased")), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(9, 2, CARD_ROW("f"), BEGIN_ROW("busy")), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(9, 1, BEGIN_ROW("leased")), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(9, 2, CARD_ROW("f"), BEGIN_ROW("ok")), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(9, 2, CARD_ROW("f"), BEGIN_ROW("granted")), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(7, 1, "card", "f", "t", "0", NULL, NULL, NULL), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);

    /* A check sent no code: a reservation or a code answer is impossible. */
    r.u.begin.reserve = 0;
    parse(&r,
          rows(9, 2, CARD_ROW("f"), "begin", NULL, NULL, NULL, TXN_UUID, "500", NULL, "ok",
               "1765000000"),
          &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(9, 2, CARD_ROW("f"), BEGIN_ROW("code-used")), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    ck_assert_int_eq(parse(&r, rows(9, 2, CARD_ROW("f"), BEGIN_ROW("leased")), &rep, &rc),
                     LEDGER_ST_OK);
    ck_assert_int_eq(rc, 0);
}
END_TEST

START_TEST(requests_it_cannot_express_are_refused)
{
    struct ledger_sql_call c;
    struct ledger_req r = request(LEDGER_PERSONALIZED);
    r.card.uid_len = 5;
    ck_assert_int_eq(ledger_sql_build(&r, &c), OTA_ERR_INVAL);
    r = request(LEDGER_LEASE_ACQUIRE); /* no time to live */
    ck_assert_int_eq(ledger_sql_build(&r, &c), OTA_ERR_INVAL);
    r = request(LEDGER_SETTLE); /* neither committed nor voided */
    ck_assert_int_eq(ledger_sql_build(&r, &c), OTA_ERR_INVAL);
    r = request(LEDGER_RESERVE);
    memset(r.u.reserve.peer, 'x', sizeof r.u.reserve.peer); /* no NUL */
    ck_assert_int_eq(ledger_sql_build(&r, &c), OTA_ERR_INVAL);
    r = request(LEDGER_FREEZE);
    memset(r.u.freeze.detail, 'x', sizeof r.u.freeze.detail);
    ck_assert_int_eq(ledger_sql_build(&r, &c), OTA_ERR_INVAL);
    r = request((enum ledger_req_type)99);
    ck_assert_int_eq(ledger_sql_build(&r, &c), OTA_ERR_INVAL);
}
END_TEST

START_TEST(simple_answers)
{
    struct ledger_reply rep;
    int rc;
    struct ledger_req r = request(LEDGER_LEASE_ACQUIRE);
    ck_assert_int_eq(parse(&r, rows(1, 1, "t"), &rep, &rc), LEDGER_ST_OK);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(parse(&r, rows(1, 1, "f"), &rep, &rc), LEDGER_ST_BUSY);
    ck_assert_int_eq(rc, 0);
    parse(&r, rows(1, 1, NULL), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(1, 0), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);

    r = request(LEDGER_SETTLE);
    ck_assert_int_eq(parse(&r, rows(1, 1, "ok"), &rep, &rc), LEDGER_ST_OK);
    ck_assert_uint_eq(rep.u.released, 0);
    /* "ok-held" only answers a settle that asked for the release. */
    parse(&r, rows(1, 1, "ok-held"), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    r.u.settle.release = 1;
    ck_assert_int_eq(parse(&r, rows(1, 1, "ok"), &rep, &rc), LEDGER_ST_OK);
    ck_assert_uint_eq(rep.u.released, 1);
    ck_assert_int_eq(parse(&r, rows(1, 1, "ok-held"), &rep, &rc), LEDGER_ST_OK);
    ck_assert_uint_eq(rep.u.released, 0);
    r.u.settle.release = 0;
    ck_assert_int_eq(parse(&r, rows(1, 1, "conflict"), &rep, &rc), LEDGER_ST_CONFLICT);
    ck_assert_int_eq(rc, 0);
    parse(&r, rows(1, 1, "maybe"), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);

    r = request(LEDGER_INTEGRITY_FAILURE);
    parse(&r, rows(1, 1, "2"), &rep, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(rep.u.integrity_failures, 2);
    parse(&r, rows(1, 1, "-1"), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(1, 1, "4294967296"), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);

    r = request(LEDGER_FREEZE); /* any one row will do */
    parse(&r, rows(1, 1, ""), &rep, &rc);
    ck_assert_int_eq(rc, 0);
    parse(&r, rows(1, 2, "", ""), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
}
END_TEST

START_TEST(reserve_answers)
{
    struct ledger_reply rep;
    int rc;
    struct ledger_req r = request(LEDGER_RESERVE);
    ck_assert_int_eq(parse(&r, rows(4, 1, "ok", TXN_UUID, "500", "1765000000"), &rep, &rc),
                     LEDGER_ST_OK);
    ck_assert_int_eq(rc, 0);
    ck_assert_mem_eq(rep.u.reserve.txn_id,
                     "\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef", 16);
    ck_assert_int_eq(rep.u.reserve.amount, 500);
    ck_assert_int_eq(rep.u.reserve.unix_time, 1765000000);
    ck_assert_int_eq(parse(&r, rows(4, 1, "code-used", NULL, NULL, NULL), &rep, &rc),
                     LEDGER_ST_CODE_USED);
    ck_assert_int_eq(parse(&r, rows(4, 1, "code-invalid", NULL, NULL, NULL), &rep, &rc),
                     LEDGER_ST_CODE_INVALID);
    ck_assert_int_eq(parse(&r, rows(4, 1, "limit-exceeded", NULL, NULL, NULL), &rep, &rc),
                     LEDGER_ST_LIMIT_EXCEEDED);
    ck_assert_int_eq(rc, 0);
    /* A short txn id, a non-number, three columns, an unknown status. */
    parse(&r, rows(4, 1, "ok", "01234567-89ab", "500", "1"), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(4, 1, "ok", TXN_UUID, "5x", "1"), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(3, 1, "ok", TXN_UUID, "500"), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(4, 1, "granted", NULL, NULL, NULL), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
}
END_TEST

START_TEST(card_state_answers)
{
    struct ledger_reply rep;
    int rc;
    struct ledger_req r = request(LEDGER_CARD_STATE);
    parse(&r,
          rows(7, 3, "card", "f", "t", "1", NULL, NULL, NULL, "in_doubt", NULL, NULL, NULL,
               TXN_UUID, "300", "1", "committed", NULL, NULL, NULL, TXN, "200", NULL),
          &rep, &rc);
    ck_assert_int_eq(rc, 0);
    const struct ledger_card_state *cs = &rep.u.card;
    ck_assert_uint_eq(cs->frozen, 0);
    ck_assert_uint_eq(cs->has_history, 1);
    ck_assert_uint_eq(cs->integrity_failures, 1);
    ck_assert_uint_eq(cs->n_in_doubt, 1);
    ck_assert_int_eq(cs->in_doubt[0].amount, 300);
    ck_assert_uint_eq(cs->in_doubt[0].flags, LEDGER_FLAG_INTEGRITY);
    ck_assert_uint_eq(cs->n_committed, 1);
    ck_assert_int_eq(cs->committed[0].amount, 200);
    ck_assert_mem_eq(cs->committed[0].txn_id, cs->in_doubt[0].txn_id, 16);

    /* No card row; an unknown kind; a txn row without its id; an in-doubt
     * row without its flags; one column short. */
    parse(&r, rows(7, 1, "in_doubt", NULL, NULL, NULL, TXN_UUID, "1", "0"), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r,
          rows(7, 2, "card", "f", "f", "0", NULL, NULL, NULL, "refund", NULL, NULL, NULL, TXN, "1",
               "0"),
          &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r,
          rows(7, 2, "card", "f", "f", "0", NULL, NULL, NULL, "committed", NULL, NULL, NULL, NULL,
               "1", NULL),
          &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r,
          rows(7, 2, "card", "f", "f", "0", NULL, NULL, NULL, "in_doubt", NULL, NULL, NULL, TXN,
               "1", NULL),
          &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
    parse(&r, rows(6, 1, "card", "f", "f", "0", NULL, NULL), &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
}
END_TEST

START_TEST(card_state_bounds)
{
    /* One in-doubt row more than kept sets in_doubt_more; one committed
     * row more than the statement asks for is an unexpected answer. */
    enum { N = LEDGER_MAX_IN_DOUBT + 1 };
    PGresult *res = rows(7, 1, "card", "t", "t", "0", NULL, NULL, NULL);
    for (int i = 0; i < N; i++) {
        const char *v[7] = {"in_doubt", NULL, NULL, NULL, TXN_UUID, "10", "0"};
        for (int c = 0; c < 7; c++)
            PQsetvalue(res, 1 + i, c, (char *)v[c], v[c] ? (int)strlen(v[c]) : -1);
    }
    struct ledger_req r = request(LEDGER_CARD_STATE);
    struct ledger_reply rep;
    int rc;
    parse(&r, res, &rep, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(rep.u.card.frozen, 1);
    ck_assert_uint_eq(rep.u.card.n_in_doubt, LEDGER_MAX_IN_DOUBT);
    ck_assert_uint_eq(rep.u.card.in_doubt_more, 1);

    res = rows(7, 1, "card", "f", "t", "0", NULL, NULL, NULL);
    for (int i = 0; i < LEDGER_MAX_COMMITTED + 1; i++) {
        const char *v[7] = {"committed", NULL, NULL, NULL, TXN_UUID, "10", NULL};
        for (int c = 0; c < 7; c++)
            PQsetvalue(res, 1 + i, c, (char *)v[c], v[c] ? (int)strlen(v[c]) : -1);
    }
    parse(&r, res, &rep, &rc);
    ck_assert_int_eq(rc, OTA_ERR_PARSE);
}
END_TEST

START_TEST(counts_answers)
{
    uint64_t v[LEDGER_SQL_NCOUNTS];
    PGresult *res = rows(5, 1, "7", "2", "3600", "7", "4");
    ck_assert_int_eq(ledger_sql_parse_counts(res, v), 0);
    PQclear(res);
    ck_assert_uint_eq(v[0], 7);
    ck_assert_uint_eq(v[2], 3600);
    ck_assert_uint_eq(v[4], 4);
    res = rows(5, 1, "7", "-2", "0", "0", "0");
    ck_assert_int_eq(ledger_sql_parse_counts(res, v), OTA_ERR_PARSE);
    PQclear(res);
    res = rows(5, 1, "7", NULL, "0", "0", "0");
    ck_assert_int_eq(ledger_sql_parse_counts(res, v), OTA_ERR_PARSE);
    PQclear(res);
    res = rows(4, 1, "7", "2", "0", "0");
    ck_assert_int_eq(ledger_sql_parse_counts(res, v), OTA_ERR_PARSE);
    PQclear(res);
    ck_assert_int_eq(ledger_sql_parse_counts(NULL, v), OTA_ERR_PARSE);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ledger_sql");
    TCase *t = tcase_create("ledger_sql");
    tcase_add_test(t, each_request_has_its_statement_and_parameters);
    tcase_add_test(t, begin_request);
    tcase_add_test(t, begin_answers);
    tcase_add_test(t, requests_it_cannot_express_are_refused);
    tcase_add_test(t, simple_answers);
    tcase_add_test(t, reserve_answers);
    tcase_add_test(t, card_state_answers);
    tcase_add_test(t, card_state_bounds);
    tcase_add_test(t, counts_answers);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
