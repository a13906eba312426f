/* hx_ledger_pg: the engine harness's ledger (struct hx_ledger_ops) as the
 * real PostgreSQL ledger, so the engine's fault matrix runs against
 * worker/ledger_pg.c and schema/ exactly as the worker uses them.
 *
 * Every request goes through one asynchronous ledger_pg pool on a libevent
 * loop (the worker's code, replies by callback); what the tests inspect is
 * read with plain SQL on a second, synchronous connection.  Every case gets
 * its own card UID and client address (hx_ledger_ops.shared), so cases never
 * see each other's rows.  Ledger faults are injected around the pool: lost
 * before the commit (never sent) or after it (applied, reply replaced by
 * ERROR), the same two cases as ledger_mem_fail_next(). */
#include "hx_ledger_pg.h"

#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <libpq-fe.h>
#include <sodium.h>

#include "ledger_pg.h"
#include "test_engine_harness.h"

static PGconn *admin;
static struct event_base *base;
static struct ledger_pg *pool;
static int got_reply;
static struct ledger_reply last_reply;

struct pgl {
    enum ledger_mem_fault fault[LEDGER_REQ_LAST + 1];
    int fail_left[LEDGER_REQ_LAST + 1];
    unsigned requests;
};

/* ---- SQL helpers ---- */

static void bytea_param(char *out, size_t cap, const uint8_t *b, size_t n)
{
    ck_assert_uint_ge(cap, 2 * n + 3);
    out[0] = '\\';
    out[1] = 'x';
    sodium_bin2hex(out + 2, cap - 2, b, n);
}

static void uuid_param(char out[37], const uint8_t id[LEDGER_TXN_ID_LEN])
{
    char h[33];
    sodium_bin2hex(h, sizeof h, id, LEDGER_TXN_ID_LEN);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

/* One statement with one text parameter; the first column of its one row as
 * an integer (0 for no row or NULL). */
static int64_t sql_int(const char *q, const char *param)
{
    const char *v[1] = {param};
    PGresult *r = PQexecParams(admin, q, 1, NULL, v, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK,
                  "%s: %s", q, PQresultErrorMessage(r));
    int64_t n = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

static int64_t card_int(const char *q, const struct ledger_card *card)
{
    char uid[2 * WIRE_MAX_UID + 3];
    bytea_param(uid, sizeof uid, card->uid, card->uid_len);
    return sql_int(q, uid);
}

/* ---- the pool ---- */

static void on_reply(void *arg, uint64_t session, const struct ledger_reply *r)
{
    (void)arg;
    (void)session;
    last_reply = *r;
    got_reply = 1;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Runs the loop until the reply came (at most 30 s: the pool's own request
 * timeout answers ERROR well before). */
static void wait_reply(void)
{
    int expired = 0;
    struct timeval tv = {30, 0};
    struct event *dl = evtimer_new(base, on_deadline, &expired);
    evtimer_add(dl, &tv);
    while (!got_reply && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(dl);
    ck_assert_msg(got_reply, "no ledger reply within 30 s");
}

static void *pgl_open(void)
{
    return calloc(1, sizeof(struct pgl));
}

static void pgl_close(void *l)
{
    free(l);
}

static void pgl_handle(void *l, const struct ledger_req *req, uint64_t now_ms,
                       struct ledger_reply *rep)
{
    (void)now_ms; /* the database's clock rules; see pgl_advance */
    struct pgl *p = l;
    p->requests++;
    enum ledger_mem_fault fault = 0;
    if (req->type <= LEDGER_REQ_LAST && p->fail_left[req->type] > 0) {
        fault = p->fault[req->type];
        p->fail_left[req->type]--;
    }
    /* BEFORE and DOWN never reach the database; DOWN answers as an
     * unreachable one would (ledger_pg sets db_down). */
    if (fault != LEDGER_MEM_FAIL_BEFORE && fault != LEDGER_MEM_FAIL_DOWN) {
        got_reply = 0;
        ledger_pg_submit(pool, req);
        wait_reply();
        *rep = last_reply;
        ck_assert_uint_eq(rep->id, req->id);
    }
    if (fault) {
        memset(rep, 0, sizeof *rep);
        rep->id = req->id;
        rep->type = req->type;
        rep->status = LEDGER_ST_ERROR;
        rep->db_down = fault == LEDGER_MEM_FAIL_DOWN;
    }
}

/* Simulated time passes: the card's lease gets that much closer to its end
 * (the database's leases run on its own clock). */
static void pgl_advance(void *l, const struct ledger_card *card, uint64_t ms)
{
    (void)l;
    char uid[2 * WIRE_MAX_UID + 3], q[200];
    bytea_param(uid, sizeof uid, card->uid, card->uid_len);
    snprintf(q, sizeof q,
             "UPDATE card_leases SET expires_at = expires_at - %" PRIu64
             " * interval '1 millisecond' WHERE card_uid = $1",
             ms);
    (void)sql_int(q, uid);
}

static int pgl_add_code(void *l, const uint8_t hash[CODE_HASH_LEN], int64_t amount)
{
    (void)l;
    char h[2 * CODE_HASH_LEN + 3], a[24];
    bytea_param(h, sizeof h, hash, CODE_HASH_LEN);
    snprintf(a, sizeof a, "%" PRId64, amount);
    const char *v[2] = {h, a};
    PGresult *r = PQexecParams(admin, "INSERT INTO codes (code_hash, amount) VALUES ($1, $2)", 2,
                               NULL, v, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

static void pgl_fail_next(void *l, enum ledger_req_type type, enum ledger_mem_fault fault)
{
    struct pgl *p = l;
    ck_assert_int_le(type, LEDGER_REQ_LAST);
    p->fault[type] = fault;
    p->fail_left[type]++;
}

static void pgl_fail_clear(void *l)
{
    struct pgl *p = l;
    memset(p->fail_left, 0, sizeof p->fail_left);
}

static unsigned pgl_faults_left(void *l)
{
    struct pgl *p = l;
    unsigned n = 0;
    for (int i = 0; i <= LEDGER_REQ_LAST; i++)
        n += (unsigned)p->fail_left[i];
    return n;
}

static unsigned pgl_requests(void *l)
{
    return ((struct pgl *)l)->requests;
}

static enum ledger_mem_code_state pgl_code_state(void *l, const uint8_t hash[CODE_HASH_LEN])
{
    (void)l;
    char h[2 * CODE_HASH_LEN + 3];
    bytea_param(h, sizeof h, hash, CODE_HASH_LEN);
    return (enum ledger_mem_code_state)sql_int(
        "SELECT CASE state WHEN 'issued' THEN 1 WHEN 'reserved' THEN 2 WHEN 'used' THEN 3 "
        "ELSE 0 END FROM codes WHERE code_hash = $1",
        h);
}

static int pgl_code_commits(void *l, const uint8_t hash[CODE_HASH_LEN])
{
    (void)l;
    char h[2 * CODE_HASH_LEN + 3];
    bytea_param(h, sizeof h, hash, CODE_HASH_LEN);
    return (int)sql_int("SELECT count(*) FROM ledger WHERE code_hash = $1 AND kind = 'committed'",
                        h);
}

static enum ledger_mem_txn_state pgl_txn_state(void *l, const uint8_t txn[LEDGER_TXN_ID_LEN])
{
    (void)l;
    char id[37];
    uuid_param(id, txn);
    return (enum ledger_mem_txn_state)sql_int(
        "SELECT max(CASE kind WHEN 'reserved' THEN 1 WHEN 'committed' THEN 2 ELSE 3 END) "
        "FROM ledger WHERE txn_id = $1::uuid",
        id);
}

static uint32_t pgl_txn_flags(void *l, const uint8_t txn[LEDGER_TXN_ID_LEN])
{
    (void)l;
    char id[37];
    uuid_param(id, txn);
    return (uint32_t)sql_int(
        "SELECT flags FROM ledger WHERE txn_id = $1::uuid AND kind IN ('committed', 'voided')", id);
}

static int64_t pgl_committed_sum(void *l, const struct ledger_card *card)
{
    (void)l;
    return card_int("SELECT sum(amount) FROM ledger WHERE card_uid = $1 AND kind = 'committed'",
                    card);
}

static int pgl_committed_count(void *l, const struct ledger_card *card)
{
    (void)l;
    return (int)card_int("SELECT count(*) FROM ledger WHERE card_uid = $1 AND kind = 'committed'",
                         card);
}

#define IN_DOUBT                                                                                   \
    "FROM ledger r WHERE r.card_uid = $1 AND r.kind = 'reserved' AND NOT EXISTS "                  \
    "(SELECT 1 FROM ledger f WHERE f.txn_id = r.txn_id AND f.kind IN ('committed', 'voided'))"

static int64_t pgl_in_doubt_sum(void *l, const struct ledger_card *card)
{
    (void)l;
    return card_int("SELECT sum(r.amount) " IN_DOUBT, card);
}

static int pgl_in_doubt_count(void *l, const struct ledger_card *card)
{
    (void)l;
    return (int)card_int("SELECT count(*) " IN_DOUBT, card);
}

static int pgl_lease_held(void *l, const struct ledger_card *card, uint64_t now_ms)
{
    (void)l;
    (void)now_ms;
    return (int)card_int(
        "SELECT count(*) FROM card_leases WHERE card_uid = $1 AND expires_at > clock_timestamp()",
        card);
}

static const struct hx_ledger_ops pg_ops = {
    .open = pgl_open,
    .close = pgl_close,
    .handle = pgl_handle,
    .advance = pgl_advance,
    .add_code = pgl_add_code,
    .fail_next = pgl_fail_next,
    .fail_clear = pgl_fail_clear,
    .faults_left = pgl_faults_left,
    .requests = pgl_requests,
    .code_state = pgl_code_state,
    .code_commits = pgl_code_commits,
    .txn_state = pgl_txn_state,
    .txn_flags = pgl_txn_flags,
    .committed_sum = pgl_committed_sum,
    .committed_count = pgl_committed_count,
    .in_doubt_sum = pgl_in_doubt_sum,
    .in_doubt_count = pgl_in_doubt_count,
    .lease_held = pgl_lease_held,
    .shared = 1,
};

int hx_ledger_pg_setup(const char *conninfo)
{
    admin = PQconnectdb(conninfo);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "hx_ledger_pg: %s", PQerrorMessage(admin));
        return -1;
    }
    base = event_base_new();
    struct ledger_pg_opts o = {.conninfo = conninfo, .nconns = 2};
    pool = base ? ledger_pg_new(base, &o, on_reply, NULL) : NULL;
    if (!pool)
        return -1;
    for (int i = 0; i < 400 && !ledger_pg_ready(pool); i++) {
        int expired = 0;
        struct timeval tv = {0, 50000};
        struct event *dl = evtimer_new(base, on_deadline, &expired);
        evtimer_add(dl, &tv);
        while (!expired)
            event_base_loop(base, EVLOOP_ONCE);
        event_free(dl);
    }
    if (!ledger_pg_ready(pool)) {
        fprintf(stderr, "hx_ledger_pg: no database connection within 20 s\n");
        return -1;
    }
    hx_set_ledger(&pg_ops);
    return 0;
}

void hx_ledger_pg_teardown(void)
{
    ledger_pg_free(pool);
    pool = NULL;
    if (base)
        event_base_free(base);
    base = NULL;
    PQfinish(admin);
    admin = NULL;
}
