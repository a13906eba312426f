/* test_ledger_pg: worker/ledger_pg.c against a real PostgreSQL.
 *
 * Run by tests/integration/test_ledger_pg.sh, which starts a throwaway
 * cluster (tests/integration/pg.sh), applies schema/ and passes
 * OTA_TEST_CONNINFO (and OTA_TEST_PG_RESTART, a command that restarts the
 * cluster).  Every request of ledger.h is driven through the asynchronous
 * pool exactly as the worker does (libevent loop, replies by callback), and
 * the database's own state is checked with plain SQL on a second
 * connection.  The ledger tables themselves are reached only through the
 * few helpers at the top (issue_code, code_state, ...). */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>
#include <sodium.h>

#include "ledger_pg.h"
#include "log.h"
#include "ota_err.h"

#define MAX_WAIT 64

static const char *conninfo;
static PGconn *admin; /* synchronous connection for set-up and checks */
static struct event_base *base;
static struct ledger_pg *pg;

/* Replies collected by the callback, by request id. */
static struct {
    int got;
    uint64_t session;
    struct ledger_reply rep;
} replies[MAX_WAIT];
static int nreplies;
static uint64_t next_id = 1;

static void on_reply(void *arg, uint64_t session, const struct ledger_reply *r)
{
    (void)arg;
    ck_assert_int_lt(nreplies, MAX_WAIT);
    replies[nreplies].got = 1;
    replies[nreplies].session = session;
    replies[nreplies].rep = *r;
    nreplies++;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Runs the loop until `want` replies arrived or 20 s passed. */
static void wait_replies(int want)
{
    int expired = 0;
    struct timeval tv = {20, 0};
    struct event *dl = evtimer_new(base, on_deadline, &expired);
    evtimer_add(dl, &tv);
    while (nreplies < want && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(dl);
    ck_assert_msg(nreplies >= want, "only %d of %d replies within 20 s", nreplies, want);
}

/* Runs the loop for ms milliseconds (lets connections come up or die). */
static void spin(int ms)
{
    int expired = 0;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    struct event *dl = evtimer_new(base, on_deadline, &expired);
    evtimer_add(dl, &tv);
    while (!expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(dl);
}

static void wait_ready(void)
{
    for (int i = 0; i < 200 && !ledger_pg_ready(pg); i++)
        spin(50);
    ck_assert_msg(ledger_pg_ready(pg), "no database connection within 10 s");
}

static struct ledger_req mkreq(enum ledger_req_type t, const struct ledger_card *card)
{
    struct ledger_req r;
    memset(&r, 0, sizeof r);
    r.id = next_id++;
    r.session = 1000 + r.id;
    r.type = t;
    r.card = *card;
    return r;
}

/* Submits one request and waits for its reply. */
static struct ledger_reply run(const struct ledger_req *req)
{
    nreplies = 0;
    ledger_pg_submit(pg, req);
    ck_assert_int_eq(nreplies, 0); /* never from inside submit */
    wait_replies(1);
    ck_assert_int_eq(nreplies, 1);
    ck_assert_uint_eq(replies[0].rep.id, req->id);
    ck_assert_uint_eq(replies[0].session, req->session);
    ck_assert_int_eq(replies[0].rep.type, req->type);
    return replies[0].rep;
}

static struct ledger_card card_n(unsigned n)
{
    struct ledger_card c = {.uid_len = 7, .uid = {0x04, 0x11, 0x22, 0x33, 0x44, 0, 0}};
    c.uid[5] = (uint8_t)(n >> 8);
    c.uid[6] = (uint8_t)n;
    return c;
}

static void hash_n(unsigned n, uint8_t h[CODE_HASH_LEN])
{
    memset(h, 0, CODE_HASH_LEN);
    h[0] = 0xC0;
    h[30] = (uint8_t)(n >> 8);
    h[31] = (uint8_t)n;
}

static void holder_n(unsigned n, uint8_t h[LEDGER_HOLDER_LEN])
{
    memset(h, 0xAB, LEDGER_HOLDER_LEN);
    h[15] = (uint8_t)n;
}

/* ---- direct SQL ------------------------------------------------------------ */

static PGresult *sql(const char *q, int n, const char *const *v)
{
    PGresult *r = PQexecParams(admin, q, n, NULL, v, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK,
                  "%s: %s", q, PQresultErrorMessage(r));
    return r;
}

static void hex_bytea(char *out, const uint8_t *b, size_t n)
{
    out[0] = '\\';
    out[1] = 'x';
    sodium_bin2hex(out + 2, 2 * n + 1, b, n);
}

#include "test_ledger_pg_sql.h"

/* ---- tests ------------------------------------------------------------------ */

START_TEST(test_startup_check)
{
    char err[256];
    ck_assert_int_eq(ledger_pg_check(conninfo, err, sizeof err), 0);
    char weak[512];
    snprintf(weak, sizeof weak, "%s options='-c synchronous_commit=off'", conninfo);
    ck_assert_int_eq(ledger_pg_check(weak, err, sizeof err), OTA_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(err, "off"));
    snprintf(weak, sizeof weak, "%s options='-c synchronous_commit=local'", conninfo);
    ck_assert_int_eq(ledger_pg_check(weak, err, sizeof err), OTA_ERR_STATE);
    ck_assert_int_eq(ledger_pg_check("host=/nonexistent-dir dbname=ota", err, sizeof err),
                     OTA_ERR_IO);
}
END_TEST

START_TEST(test_weak_pool_never_ready)
{
    /* A pool whose sessions commit asynchronously must never serve. */
    char weak[512];
    snprintf(weak, sizeof weak, "%s options='-c synchronous_commit=off'", conninfo);
    struct ledger_pg_opts o = {.conninfo = weak, .nconns = 2};
    struct ledger_pg *p2 = ledger_pg_new(base, &o, on_reply, NULL);
    ck_assert_ptr_nonnull(p2);
    spin(500);
    ck_assert_int_eq(ledger_pg_ready(p2), 0);
    struct ledger_card c = card_n(1);
    struct ledger_req r = mkreq(LEDGER_PERSONALIZED, &c);
    nreplies = 0;
    ledger_pg_submit(p2, &r);
    wait_replies(1);
    ck_assert_int_eq(replies[0].rep.status, LEDGER_ST_ERROR);
    ck_assert_int_eq(test_personalized(&c), 0);
    ledger_pg_free(p2);
}
END_TEST

START_TEST(test_lease)
{
    struct ledger_card c = card_n(10);
    struct ledger_req a = mkreq(LEDGER_LEASE_ACQUIRE, &c);
    holder_n(1, a.u.lease.holder);
    a.u.lease.ttl_ms = 60000;
    struct ledger_req b = mkreq(LEDGER_LEASE_ACQUIRE, &c);
    holder_n(2, b.u.lease.holder);
    b.u.lease.ttl_ms = 60000;

    ck_assert_int_eq(run(&a).status, LEDGER_ST_OK);
    ck_assert_int_eq(run(&b).status, LEDGER_ST_BUSY);
    a.id = next_id++;
    ck_assert_int_eq(run(&a).status, LEDGER_ST_OK); /* same holder renews */

    /* Another holder's release does not free it. */
    struct ledger_req rb = mkreq(LEDGER_LEASE_RELEASE, &c);
    holder_n(2, rb.u.lease.holder);
    ck_assert_int_eq(run(&rb).status, LEDGER_ST_OK);
    b.id = next_id++;
    ck_assert_int_eq(run(&b).status, LEDGER_ST_BUSY);

    struct ledger_req ra = mkreq(LEDGER_LEASE_RELEASE, &c);
    holder_n(1, ra.u.lease.holder);
    ck_assert_int_eq(run(&ra).status, LEDGER_ST_OK);
    b.id = next_id++;
    ck_assert_int_eq(run(&b).status, LEDGER_ST_OK);

    /* Expiry: a short lease of holder 2; after it, holder 3 takes it. */
    struct ledger_card c2 = card_n(11);
    struct ledger_req s = mkreq(LEDGER_LEASE_ACQUIRE, &c2);
    holder_n(2, s.u.lease.holder);
    s.u.lease.ttl_ms = 300;
    ck_assert_int_eq(run(&s).status, LEDGER_ST_OK);
    struct ledger_req t = mkreq(LEDGER_LEASE_ACQUIRE, &c2);
    holder_n(3, t.u.lease.holder);
    t.u.lease.ttl_ms = 60000;
    ck_assert_int_eq(run(&t).status, LEDGER_ST_BUSY);
    usleep(400 * 1000);
    t.id = next_id++;
    ck_assert_int_eq(run(&t).status, LEDGER_ST_OK);
}
END_TEST

START_TEST(test_concurrent_leases)
{
    /* Eight holders race for one card: exactly one wins. */
    struct ledger_card c = card_n(12);
    nreplies = 0;
    for (unsigned i = 0; i < 8; i++) {
        struct ledger_req r = mkreq(LEDGER_LEASE_ACQUIRE, &c);
        holder_n(20 + i, r.u.lease.holder);
        r.u.lease.ttl_ms = 60000;
        ledger_pg_submit(pg, &r);
    }
    wait_replies(8);
    int ok = 0, busy = 0;
    for (int i = 0; i < 8; i++) {
        ok += replies[i].rep.status == LEDGER_ST_OK;
        busy += replies[i].rep.status == LEDGER_ST_BUSY;
    }
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(busy, 7);
}
END_TEST

START_TEST(test_card_state_empty)
{
    struct ledger_card c = card_n(20);
    struct ledger_req r = mkreq(LEDGER_CARD_STATE, &c);
    struct ledger_reply rep = run(&r);
    ck_assert_int_eq(rep.status, LEDGER_ST_OK);
    ck_assert_int_eq(rep.u.card.frozen, 0);
    ck_assert_int_eq(rep.u.card.has_history, 0);
    ck_assert_int_eq(rep.u.card.integrity_failures, 0);
    ck_assert_int_eq(rep.u.card.n_in_doubt, 0);
    ck_assert_int_eq(rep.u.card.in_doubt_more, 0);
    ck_assert_int_eq(rep.u.card.n_committed, 0);
}
END_TEST

static struct ledger_reply reserve(const struct ledger_card *c, unsigned code, const char *peer)
{
    struct ledger_req r = mkreq(LEDGER_RESERVE, c);
    hash_n(code, r.u.reserve.code_hash);
    snprintf(r.u.reserve.peer, sizeof r.u.reserve.peer, "%s", peer);
    r.u.reserve.max_card_failures = 5;
    r.u.reserve.max_peer_failures = 20;
    r.u.reserve.window_s = 3600;
    return run(&r);
}

static struct ledger_reply settle(const struct ledger_card *c, const uint8_t txn[16],
                                  enum ledger_outcome o, uint32_t flags)
{
    struct ledger_req r = mkreq(LEDGER_SETTLE, c);
    memcpy(r.u.settle.txn_id, txn, 16);
    r.u.settle.outcome = o;
    r.u.settle.flags = flags;
    return run(&r);
}

START_TEST(test_reserve_and_settle)
{
    struct ledger_card c = card_n(30);
    issue_code(100, 500, 0);
    struct ledger_reply r1 = reserve(&c, 100, "192.0.2.1");
    ck_assert_int_eq(r1.status, LEDGER_ST_OK);
    ck_assert_int_eq(r1.u.reserve.amount, 500);
    int64_t now = (int64_t)time(NULL);
    ck_assert_int_ge(r1.u.reserve.unix_time, now - 60);
    ck_assert_int_le(r1.u.reserve.unix_time, now + 60);
    ck_assert_str_eq(code_state(100), "reserved");
    ck_assert_int_eq(ledger_entries(r1.u.reserve.txn_id), 1);

    /* The same code again, by the same card or another: code-used. */
    ck_assert_int_eq(reserve(&c, 100, "192.0.2.1").status, LEDGER_ST_CODE_USED);
    struct ledger_card other = card_n(31);
    ck_assert_int_eq(reserve(&other, 100, "192.0.2.2").status, LEDGER_ST_CODE_USED);
    /* Unknown, expired: code-invalid. */
    ck_assert_int_eq(reserve(&c, 101, "192.0.2.1").status, LEDGER_ST_CODE_INVALID);
    issue_code(102, 700, 1);
    ck_assert_int_eq(reserve(&c, 102, "192.0.2.1").status, LEDGER_ST_CODE_INVALID);

    /* In doubt until settled. */
    struct ledger_req cs = mkreq(LEDGER_CARD_STATE, &c);
    struct ledger_reply st = run(&cs);
    ck_assert_int_eq(st.status, LEDGER_ST_OK);
    ck_assert_int_eq(st.u.card.has_history, 1);
    ck_assert_int_eq(st.u.card.n_in_doubt, 1);
    ck_assert_mem_eq(st.u.card.in_doubt[0].txn_id, r1.u.reserve.txn_id, 16);
    ck_assert_int_eq(st.u.card.in_doubt[0].amount, 500);
    ck_assert_int_eq(st.u.card.n_committed, 0);

    /* Settling against another card is refused and changes nothing. */
    ck_assert_int_eq(settle(&other, r1.u.reserve.txn_id, LEDGER_COMMITTED, 0).status,
                     LEDGER_ST_CONFLICT);
    ck_assert_int_eq(ledger_entries(r1.u.reserve.txn_id), 1);

    /* Committed, idempotently; voided is then a conflict. */
    ck_assert_int_eq(settle(&c, r1.u.reserve.txn_id, LEDGER_COMMITTED, LEDGER_FLAG_READBACK).status,
                     LEDGER_ST_OK);
    ck_assert_int_eq(settle(&c, r1.u.reserve.txn_id, LEDGER_COMMITTED, LEDGER_FLAG_READBACK).status,
                     LEDGER_ST_OK);
    ck_assert_int_eq(settle(&c, r1.u.reserve.txn_id, LEDGER_VOIDED, 0).status, LEDGER_ST_CONFLICT);
    ck_assert_int_eq(ledger_entries(r1.u.reserve.txn_id), 2);
    ck_assert_str_eq(code_state(100), "used");
    ck_assert_int_eq(ledger_flags(r1.u.reserve.txn_id), LEDGER_FLAG_READBACK);

    st = run(&cs);
    ck_assert_int_eq(st.u.card.n_in_doubt, 0);
    ck_assert_int_eq(st.u.card.n_committed, 1);
    ck_assert_mem_eq(st.u.card.committed[0].txn_id, r1.u.reserve.txn_id, 16);
    ck_assert_int_eq(st.u.card.committed[0].amount, 500);

    /* A used code stays used. */
    ck_assert_int_eq(reserve(&other, 100, "192.0.2.2").status, LEDGER_ST_CODE_USED);
}
END_TEST

/* SETTLE with release: the lease goes in the same statement when the
 * settle is OK, and stays when it is a conflict. */
START_TEST(test_settle_releases_lease)
{
    struct ledger_card c = card_n(36), other = card_n(37);
    struct ledger_req a = mkreq(LEDGER_LEASE_ACQUIRE, &c);
    holder_n(5, a.u.lease.holder);
    a.u.lease.ttl_ms = 60000;
    ck_assert_int_eq(run(&a).status, LEDGER_ST_OK);
    issue_code(170, 400, 0);
    struct ledger_reply r1 = reserve(&c, 170, "192.0.2.1");
    ck_assert_int_eq(r1.status, LEDGER_ST_OK);
    struct ledger_req b = mkreq(LEDGER_LEASE_ACQUIRE, &c);
    holder_n(6, b.u.lease.holder);
    b.u.lease.ttl_ms = 60000;

    /* A conflict (another card's txn) keeps the lease. */
    struct ledger_req s = mkreq(LEDGER_SETTLE, &other);
    memcpy(s.u.settle.txn_id, r1.u.reserve.txn_id, 16);
    s.u.settle.outcome = LEDGER_COMMITTED;
    s.u.settle.release = 1;
    holder_n(5, s.u.settle.holder);
    ck_assert_int_eq(run(&s).status, LEDGER_ST_CONFLICT);
    ck_assert_int_eq(run(&b).status, LEDGER_ST_BUSY);
    s.card = c;

    /* Committed with release by another holder: booked, the lease stays. */
    s.id = next_id++;
    s.u.settle.outcome = LEDGER_COMMITTED;
    s.u.settle.release = 1;
    holder_n(6, s.u.settle.holder);
    ck_assert_int_eq(run(&s).status, LEDGER_ST_OK);
    ck_assert_str_eq(code_state(170), "used");
    b.id = next_id++;
    ck_assert_int_eq(run(&b).status, LEDGER_ST_BUSY);

    /* The holder's own while another transaction holds the lease row
     * locked: booked without waiting, the lease stays (released = 0). */
    PGconn *l = PQconnectdb(conninfo);
    ck_assert_int_eq(PQstatus(l), CONNECTION_OK);
    PQclear(PQexec(l, "BEGIN"));
    lease_row_lock(l, &c);
    s.id = next_id++;
    holder_n(5, s.u.settle.holder);
    struct ledger_reply held = run(&s);
    ck_assert_int_eq(held.status, LEDGER_ST_OK);
    ck_assert_int_eq(held.u.released, 0);
    PQclear(PQexec(l, "ROLLBACK"));
    PQfinish(l);
    b.id = next_id++;
    ck_assert_int_eq(run(&b).status, LEDGER_ST_BUSY);

    /* Unlocked (a retry, idempotent): booked once, lease gone. */
    s.id = next_id++;
    struct ledger_reply done = run(&s);
    ck_assert_int_eq(done.status, LEDGER_ST_OK);
    ck_assert_int_eq(done.u.released, 1);
    ck_assert_int_eq(ledger_entries(r1.u.reserve.txn_id), 2);
    b.id = next_id++;
    ck_assert_int_eq(run(&b).status, LEDGER_ST_OK);
}
END_TEST

START_TEST(test_void_releases_code)
{
    struct ledger_card c = card_n(40);
    issue_code(110, 300, 0);
    struct ledger_reply r1 = reserve(&c, 110, "");
    ck_assert_int_eq(r1.status, LEDGER_ST_OK);
    ck_assert_int_eq(settle(&c, r1.u.reserve.txn_id, LEDGER_VOIDED, 0).status, LEDGER_ST_OK);
    ck_assert_int_eq(settle(&c, r1.u.reserve.txn_id, LEDGER_VOIDED, 0).status, LEDGER_ST_OK);
    ck_assert_int_eq(settle(&c, r1.u.reserve.txn_id, LEDGER_COMMITTED, 0).status,
                     LEDGER_ST_CONFLICT);
    ck_assert_int_eq(ledger_entries(r1.u.reserve.txn_id), 2);
    ck_assert_str_eq(code_state(110), "issued");

    /* The released code serves a new transaction, which commits once. */
    struct ledger_reply r2 = reserve(&c, 110, "");
    ck_assert_int_eq(r2.status, LEDGER_ST_OK);
    ck_assert_mem_ne(r2.u.reserve.txn_id, r1.u.reserve.txn_id, 16);
    ck_assert_int_eq(settle(&c, r2.u.reserve.txn_id, LEDGER_COMMITTED, 0).status, LEDGER_ST_OK);
    ck_assert_str_eq(code_state(110), "used");
    /* A late replay of the first void changes nothing. */
    ck_assert_int_eq(settle(&c, r1.u.reserve.txn_id, LEDGER_VOIDED, 0).status, LEDGER_ST_OK);
    ck_assert_str_eq(code_state(110), "used");

    /* Unknown txn: conflict. */
    uint8_t unknown[16];
    randombytes_buf(unknown, sizeof unknown);
    ck_assert_int_eq(settle(&c, unknown, LEDGER_COMMITTED, 0).status, LEDGER_ST_CONFLICT);
    ck_assert_int_eq(ledger_entries(unknown), 0);
}
END_TEST

START_TEST(test_concurrent_reserve)
{
    /* Eight cards race for one code over the pool: exactly one wins. */
    issue_code(120, 900, 0);
    nreplies = 0;
    for (unsigned i = 0; i < 8; i++) {
        struct ledger_card c = card_n(50 + i);
        struct ledger_req r = mkreq(LEDGER_RESERVE, &c);
        hash_n(120, r.u.reserve.code_hash);
        r.u.reserve.max_card_failures = 5;
        r.u.reserve.max_peer_failures = 20;
        r.u.reserve.window_s = 3600;
        ledger_pg_submit(pg, &r);
    }
    wait_replies(8);
    int ok = 0, used = 0;
    for (int i = 0; i < 8; i++) {
        ok += replies[i].rep.status == LEDGER_ST_OK;
        used += replies[i].rep.status == LEDGER_ST_CODE_USED;
    }
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(used, 7);
    ck_assert_int_eq(reserved_entries_for_code(120), 1);
}
END_TEST

START_TEST(test_concurrent_settle)
{
    /* Committed and voided racing for one txn: exactly one final entry. */
    struct ledger_card c = card_n(60);
    issue_code(130, 100, 0);
    struct ledger_reply r1 = reserve(&c, 130, "");
    ck_assert_int_eq(r1.status, LEDGER_ST_OK);
    nreplies = 0;
    uint64_t first = next_id;
    for (int i = 0; i < 8; i++) {
        struct ledger_req r = mkreq(LEDGER_SETTLE, &c);
        memcpy(r.u.settle.txn_id, r1.u.reserve.txn_id, 16);
        r.u.settle.outcome = i % 2 ? LEDGER_VOIDED : LEDGER_COMMITTED;
        ledger_pg_submit(pg, &r);
    }
    wait_replies(8);
    /* ok[k]/conflict[k]: replies to requests asking for committed (k=0) or
     * voided (k=1). */
    int ok[2] = {0, 0}, conflict[2] = {0, 0};
    for (int i = 0; i < 8; i++) {
        int k = (int)((replies[i].rep.id - first) % 2);
        ck_assert(replies[i].rep.status == LEDGER_ST_OK ||
                  replies[i].rep.status == LEDGER_ST_CONFLICT);
        if (replies[i].rep.status == LEDGER_ST_OK)
            ok[k]++;
        else
            conflict[k]++;
    }
    /* One kind won all four of its requests, the other lost all four. */
    ck_assert((ok[0] == 4 && conflict[1] == 4) || (ok[1] == 4 && conflict[0] == 4));
    ck_assert_str_eq(code_state(130), ok[0] == 4 ? "used" : "issued");
    ck_assert_int_eq(ledger_entries(r1.u.reserve.txn_id), 2);
}
END_TEST

/* A RESERVE of code n by card c from peer with the limits given. */
static struct ledger_reply reserve_limited(const struct ledger_card *c, unsigned code,
                                           const char *peer, uint32_t max_card, uint32_t max_peer)
{
    struct ledger_req r = mkreq(LEDGER_RESERVE, c);
    hash_n(code, r.u.reserve.code_hash);
    snprintf(r.u.reserve.peer, sizeof r.u.reserve.peer, "%s", peer);
    r.u.reserve.max_card_failures = max_card;
    r.u.reserve.max_peer_failures = max_peer;
    r.u.reserve.window_s = 3600;
    return run(&r);
}

START_TEST(test_rate_limits)
{
    /* Issue 16: the limits throttle wrong codes only; a valid code is
     * reserved whatever the card's or the address's failures. */
    struct ledger_card c = card_n(70);
    issue_code(140, 100, 0);
    issue_code(141, 100, 0);
    for (int i = 0; i < 3; i++) {
        struct ledger_req f = mkreq(LEDGER_CODE_FAILURE, &c);
        snprintf(f.u.code_failure.peer, sizeof f.u.code_failure.peer, "198.51.100.7");
        ck_assert_int_eq(run(&f).status, LEDGER_ST_OK);
    }
    /* Per card: a wrong code is over the limit, a valid one goes through. */
    ck_assert_int_eq(reserve_limited(&c, 149, "203.0.113.9", 3, 100).status,
                     LEDGER_ST_LIMIT_EXCEEDED);
    ck_assert_int_eq(reserve_limited(&c, 140, "203.0.113.9", 3, 100).status, LEDGER_ST_OK);
    ck_assert_str_eq(code_state(140), "reserved");
    /* ... and a used code is a wrong code. */
    ck_assert_int_eq(reserve_limited(&c, 140, "203.0.113.9", 3, 100).status,
                     LEDGER_ST_LIMIT_EXCEEDED);

    /* Per peer: the three failures above came from 198.51.100.7. */
    struct ledger_card c2 = card_n(71);
    ck_assert_int_eq(reserve_limited(&c2, 148, "198.51.100.7", 3, 3).status,
                     LEDGER_ST_LIMIT_EXCEEDED);
    /* Another peer is not limited: its wrong code is just invalid. */
    ck_assert_int_eq(reserve_limited(&c2, 148, "198.51.100.8", 3, 3).status,
                     LEDGER_ST_CODE_INVALID);
    /* A valid code from the limited peer is reserved. */
    ck_assert_int_eq(reserve_limited(&c2, 141, "198.51.100.7", 3, 3).status, LEDGER_ST_OK);
    ck_assert_str_eq(code_state(141), "reserved");
}
END_TEST

START_TEST(test_integrity_freeze_personalized)
{
    struct ledger_card c = card_n(80);
    for (uint32_t i = 1; i <= 3; i++) {
        struct ledger_req f = mkreq(LEDGER_INTEGRITY_FAILURE, &c);
        struct ledger_reply rep = run(&f);
        ck_assert_int_eq(rep.status, LEDGER_ST_OK);
        ck_assert_uint_eq(rep.u.integrity_failures, i);
    }
    struct ledger_req cs = mkreq(LEDGER_CARD_STATE, &c);
    ck_assert_uint_eq(run(&cs).u.card.integrity_failures, 3);
    struct ledger_req z = mkreq(LEDGER_INTEGRITY_RESET, &c);
    ck_assert_int_eq(run(&z).status, LEDGER_ST_OK);
    struct ledger_req f = mkreq(LEDGER_INTEGRITY_FAILURE, &c);
    ck_assert_uint_eq(run(&f).u.integrity_failures, 1);

    struct ledger_req fr = mkreq(LEDGER_FREEZE, &c);
    fr.u.freeze.reason = LEDGER_FREEZE_INTEGRITY;
    snprintf(fr.u.freeze.detail, sizeof fr.u.freeze.detail, "3 integrity failures");
    ck_assert_int_eq(run(&fr).status, LEDGER_ST_OK);
    fr.id = next_id++;
    ck_assert_int_eq(run(&fr).status, LEDGER_ST_OK);
    cs.id = next_id++;
    ck_assert_int_eq(run(&cs).u.card.frozen, 1);

    struct ledger_card c2 = card_n(81);
    ck_assert_int_eq(test_personalized(&c2), 0);
    struct ledger_req p = mkreq(LEDGER_PERSONALIZED, &c2);
    ck_assert_int_eq(run(&p).status, LEDGER_ST_OK);
    p.id = next_id++;
    ck_assert_int_eq(run(&p).status, LEDGER_ST_OK);
    ck_assert_int_eq(test_personalized(&c2), 1);
}
END_TEST

START_TEST(test_integrity_flag_of_txn_at_risk)
{
    /* Issue 16 point 2: the txn at risk when the card answered wrongly is
     * flagged in the database, CARD_STATE reports it, and the committed
     * entry carries it; an in-doubt txn without it reads exactly 0. */
    struct ledger_card c = card_n(85);
    issue_code(160, 300, 0);
    issue_code(161, 400, 0);
    struct ledger_reply r1 = reserve(&c, 160, "192.0.2.1");
    ck_assert_int_eq(r1.status, LEDGER_ST_OK);
    struct ledger_req f = mkreq(LEDGER_INTEGRITY_FAILURE, &c);
    f.u.integrity.has_txn = 1;
    memcpy(f.u.integrity.txn_id, r1.u.reserve.txn_id, 16);
    struct ledger_reply fr = run(&f);
    ck_assert_int_eq(fr.status, LEDGER_ST_OK);
    ck_assert_uint_eq(fr.u.integrity_failures, 1);
    /* Without a txn: counted, nothing flagged. */
    struct ledger_req f2 = mkreq(LEDGER_INTEGRITY_FAILURE, &c);
    ck_assert_uint_eq(run(&f2).u.integrity_failures, 2);

    struct ledger_req cs = mkreq(LEDGER_CARD_STATE, &c);
    struct ledger_reply st = run(&cs);
    ck_assert_int_eq(st.status, LEDGER_ST_OK);
    ck_assert_int_eq(st.u.card.n_in_doubt, 1);
    ck_assert_uint_eq(st.u.card.in_doubt[0].flags, LEDGER_FLAG_INTEGRITY);
    ck_assert_int_eq(settle(&c, r1.u.reserve.txn_id, LEDGER_COMMITTED,
                            LEDGER_FLAG_SETTLED_LATER | st.u.card.in_doubt[0].flags)
                         .status,
                     LEDGER_ST_OK);
    ck_assert_int_eq(ledger_flags(r1.u.reserve.txn_id),
                     LEDGER_FLAG_SETTLED_LATER | LEDGER_FLAG_INTEGRITY);

    struct ledger_reply r2 = reserve(&c, 161, "192.0.2.1");
    ck_assert_int_eq(r2.status, LEDGER_ST_OK);
    cs.id = next_id++;
    st = run(&cs);
    ck_assert_int_eq(st.u.card.n_in_doubt, 1);
    ck_assert_mem_eq(st.u.card.in_doubt[0].txn_id, r2.u.reserve.txn_id, 16);
    ck_assert_uint_eq(st.u.card.in_doubt[0].flags, 0);
    ck_assert_uint_eq(st.u.card.committed[0].flags, 0);
}
END_TEST

START_TEST(test_card_state_lists)
{
    /* Ten in-doubt transactions: eight returned oldest first, "more" set;
     * nine committed: the newest eight, newest first. */
    struct ledger_card c = card_n(90);
    uint8_t txn[19][16];
    for (unsigned i = 0; i < 19; i++) {
        issue_code(200 + i, 10 + i, 0);
        struct ledger_reply r = reserve(&c, 200 + i, "");
        ck_assert_int_eq(r.status, LEDGER_ST_OK);
        memcpy(txn[i], r.u.reserve.txn_id, 16);
    }
    for (unsigned i = 0; i < 9; i++)
        ck_assert_int_eq(settle(&c, txn[i], LEDGER_COMMITTED, 0).status, LEDGER_ST_OK);
    struct ledger_req cs = mkreq(LEDGER_CARD_STATE, &c);
    struct ledger_reply st = run(&cs);
    ck_assert_int_eq(st.status, LEDGER_ST_OK);
    ck_assert_int_eq(st.u.card.n_in_doubt, LEDGER_MAX_IN_DOUBT);
    ck_assert_int_eq(st.u.card.in_doubt_more, 1);
    for (unsigned i = 0; i < LEDGER_MAX_IN_DOUBT; i++) {
        ck_assert_mem_eq(st.u.card.in_doubt[i].txn_id, txn[9 + i], 16);
        ck_assert_int_eq(st.u.card.in_doubt[i].amount, 10 + 9 + i);
    }
    ck_assert_int_eq(st.u.card.n_committed, LEDGER_MAX_COMMITTED);
    for (unsigned i = 0; i < LEDGER_MAX_COMMITTED; i++)
        ck_assert_mem_eq(st.u.card.committed[i].txn_id, txn[8 - i], 16);
}
END_TEST

START_TEST(test_append_only)
{
    struct ledger_card c = card_n(100);
    issue_code(150, 100, 0);
    struct ledger_reply r = reserve(&c, 150, "");
    ck_assert_int_eq(r.status, LEDGER_ST_OK);
    ck_assert_int_eq(settle(&c, r.u.reserve.txn_id, LEDGER_COMMITTED, 0).status, LEDGER_ST_OK);
    /* Even the owner of the tables cannot rewrite history. */
    ck_assert_int_eq(ledger_try_update(r.u.reserve.txn_id), 0);
    ck_assert_int_eq(ledger_try_delete(r.u.reserve.txn_id), 0);
    ck_assert_int_eq(ledger_entries(r.u.reserve.txn_id), 2);
}
END_TEST

/* Holds a row lock so the pool's next LEASE_ACQUIRE on card blocks. */
static PGconn *lock_lease(const struct ledger_card *c)
{
    PGconn *l = PQconnectdb(conninfo);
    ck_assert_int_eq(PQstatus(l), CONNECTION_OK);
    PQclear(PQexec(l, "BEGIN"));
    lease_row_lock(l, c);
    return l;
}

START_TEST(test_request_timeout)
{
    struct ledger_pg_opts o = {.conninfo = conninfo, .nconns = 2, .request_timeout_ms = 500};
    struct ledger_pg *saved = pg;
    pg = ledger_pg_new(base, &o, on_reply, NULL);
    ck_assert_ptr_nonnull(pg);
    wait_ready();
    struct ledger_card c = card_n(110);
    struct ledger_req a = mkreq(LEDGER_LEASE_ACQUIRE, &c);
    holder_n(1, a.u.lease.holder);
    a.u.lease.ttl_ms = 60000;
    ck_assert_int_eq(run(&a).status, LEDGER_ST_OK);

    PGconn *l = lock_lease(&c);
    a.id = next_id++;
    ck_assert_int_eq(run(&a).status, LEDGER_ST_ERROR); /* blocked, then timed out */
    /* Another card is not held up meanwhile. */
    struct ledger_card c2 = card_n(111);
    struct ledger_req p = mkreq(LEDGER_PERSONALIZED, &c2);
    ck_assert_int_eq(run(&p).status, LEDGER_ST_OK);
    PQclear(PQexec(l, "ROLLBACK"));
    PQfinish(l);
    wait_ready();
    a.id = next_id++;
    ck_assert_int_eq(run(&a).status, LEDGER_ST_OK);
    ledger_pg_free(pg);
    pg = saved;
}
END_TEST

START_TEST(test_backend_killed)
{
    /* A request in flight when its connection dies gets ERROR; the pool
     * reconnects and serves again. */
    wait_ready();
    struct ledger_card c = card_n(120);
    struct ledger_req a = mkreq(LEDGER_LEASE_ACQUIRE, &c);
    holder_n(1, a.u.lease.holder);
    a.u.lease.ttl_ms = 60000;
    ck_assert_int_eq(run(&a).status, LEDGER_ST_OK);
    PGconn *l = lock_lease(&c);
    nreplies = 0;
    a.id = next_id++;
    ledger_pg_submit(pg, &a);
    spin(300); /* it is now waiting for the lock */
    ck_assert_int_eq(nreplies, 0);
    PQclear(sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend' AND state <> 'idle in transaction'",
                0, NULL));
    wait_replies(1);
    ck_assert_int_eq(replies[0].rep.status, LEDGER_ST_ERROR);
    PQclear(PQexec(l, "ROLLBACK"));
    PQfinish(l);
    wait_ready();
    spin(300);
    a.id = next_id++;
    ck_assert_int_eq(run(&a).status, LEDGER_ST_OK);
}
END_TEST

static int lease_rows(const struct ledger_card *c)
{
    char uid[2 + 2 * WIRE_MAX_UID + 1];
    hex_bytea(uid, c->uid, c->uid_len);
    const char *v[1] = {uid};
    PGresult *r = sql("SELECT count(*) FROM card_leases WHERE card_uid = $1", 1, v);
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

START_TEST(test_release_replayed_after_outage)
{
    /* Money rule 4: the lease of a session that ended while the database
     * was unreachable is released as soon as it is back, not after its
     * ttl.  The outage: the pool's role can no longer log in and its
     * sessions are cut (a failover looks the same to the pool). */
    PQclear(sql("DROP ROLE IF EXISTS ota_test_outage", 0, NULL));
    PQclear(sql("CREATE ROLE ota_test_outage LOGIN IN ROLE ota_worker", 0, NULL));
    char ci[1024];
    snprintf(ci, sizeof ci, "%s user=ota_test_outage", conninfo);
    struct ledger_pg_opts o = {
        .conninfo = ci, .nconns = 2, .backoff_min_ms = 50, .backoff_max_ms = 200};
    struct ledger_pg *saved = pg;
    pg = ledger_pg_new(base, &o, on_reply, NULL);
    ck_assert_ptr_nonnull(pg);
    wait_ready();
    struct ledger_card c = card_n(140);
    struct ledger_req a = mkreq(LEDGER_LEASE_ACQUIRE, &c);
    holder_n(1, a.u.lease.holder);
    a.u.lease.ttl_ms = 600000;
    ck_assert_int_eq(run(&a).status, LEDGER_ST_OK);

    PQclear(sql("ALTER ROLE ota_test_outage NOLOGIN", 0, NULL));
    PQclear(sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE usename = 'ota_test_outage'",
                0, NULL));
    for (int i = 0; i < 200 && ledger_pg_ready(pg); i++)
        spin(50);
    ck_assert_msg(!ledger_pg_ready(pg), "the pool still had a connection 10 s into the outage");
    struct ledger_req rel = mkreq(LEDGER_LEASE_RELEASE, &c);
    holder_n(1, rel.u.lease.holder);
    struct ledger_reply rep = run(&rel);
    ck_assert_int_eq(rep.status, LEDGER_ST_ERROR);
    ck_assert_int_eq(rep.db_down, 1); /* unreachable, not refused */
    spin(300);
    ck_assert_int_eq(lease_rows(&c), 1);

    /* Back: the pool releases the lease by itself. */
    PQclear(sql("ALTER ROLE ota_test_outage LOGIN", 0, NULL));
    wait_ready();
    for (int i = 0; i < 200 && lease_rows(&c) != 0; i++)
        spin(50);
    ck_assert_msg(lease_rows(&c) == 0, "the lease was not released within 10 s of reconnecting");
    /* A replayed release answers nobody: still only our own reply. */
    ck_assert_int_eq(nreplies, 1);
    struct ledger_req b = mkreq(LEDGER_LEASE_ACQUIRE, &c);
    holder_n(2, b.u.lease.holder);
    b.u.lease.ttl_ms = 60000;
    ck_assert_int_eq(run(&b).status, LEDGER_ST_OK);
    ledger_pg_free(pg);
    pg = saved;
    PQclear(sql("DROP ROLE ota_test_outage", 0, NULL));
}
END_TEST

/* BEGIN of a top-up (code n) or of a check (no code), by holder h. */
static struct ledger_req begin_req(const struct ledger_card *c, unsigned h, int code)
{
    struct ledger_req r = mkreq(LEDGER_BEGIN, c);
    holder_n(h, r.u.begin.lease.holder);
    r.u.begin.lease.ttl_ms = 60000;
    if (code >= 0) {
        r.u.begin.reserve = 1;
        hash_n((unsigned)code, r.u.begin.code.code_hash);
        snprintf(r.u.begin.code.peer, sizeof r.u.begin.code.peer, "192.0.2.9");
        r.u.begin.code.max_card_failures = 5;
        r.u.begin.code.max_peer_failures = 20;
        r.u.begin.code.window_s = 3600;
    }
    return r;
}

START_TEST(test_begin)
{
    struct ledger_card c = card_n(210);
    issue_code(300, 500, 0);
    issue_code(301, 250, 0);

    /* A clean card: lease, state (before the reservation) and reservation. */
    struct ledger_req b1 = begin_req(&c, 1, 300);
    struct ledger_reply r1 = run(&b1);
    ck_assert_int_eq(r1.status, LEDGER_ST_OK);
    ck_assert_uint_eq(r1.u.begin.reserved, 1);
    ck_assert_int_eq(r1.u.begin.res.amount, 500);
    int64_t now = (int64_t)time(NULL);
    ck_assert_int_ge(r1.u.begin.res.unix_time, now - 60);
    ck_assert_int_le(r1.u.begin.res.unix_time, now + 60);
    ck_assert_uint_eq(r1.u.begin.card.has_history, 0);
    ck_assert_uint_eq(r1.u.begin.card.n_in_doubt, 0);
    ck_assert_str_eq(code_state(300), "reserved");
    ck_assert_int_eq(ledger_entries(r1.u.begin.res.txn_id), 1);
    ck_assert_int_eq(lease_holder_is(&c, 1), 1);

    /* Another holder: busy, and nothing else done. */
    struct ledger_req b2 = begin_req(&c, 2, 301);
    ck_assert_int_eq(run(&b2).status, LEDGER_ST_BUSY);
    ck_assert_str_eq(code_state(301), "issued");
    ck_assert_int_eq(lease_holder_is(&c, 1), 1);

    /* An entry in doubt: leased and read, never reserved. */
    struct ledger_req b3 = begin_req(&c, 1, 301);
    struct ledger_reply r3 = run(&b3);
    ck_assert_int_eq(r3.status, LEDGER_ST_OK);
    ck_assert_uint_eq(r3.u.begin.reserved, 0);
    ck_assert_uint_eq(r3.u.begin.card.has_history, 1);
    ck_assert_uint_eq(r3.u.begin.card.n_in_doubt, 1);
    ck_assert_mem_eq(r3.u.begin.card.in_doubt[0].txn_id, r1.u.begin.res.txn_id, 16);
    ck_assert_str_eq(code_state(301), "issued");

    /* Settled: the next BEGIN reserves, and shows the committed history. */
    ck_assert_int_eq(settle(&c, r1.u.begin.res.txn_id, LEDGER_COMMITTED, 0).status, LEDGER_ST_OK);
    struct ledger_req b4 = begin_req(&c, 1, 301);
    struct ledger_reply r4 = run(&b4);
    ck_assert_int_eq(r4.status, LEDGER_ST_OK);
    ck_assert_uint_eq(r4.u.begin.reserved, 1);
    ck_assert_uint_eq(r4.u.begin.card.n_in_doubt, 0);
    ck_assert_uint_eq(r4.u.begin.card.n_committed, 1);
    ck_assert_mem_eq(r4.u.begin.card.committed[0].txn_id, r1.u.begin.res.txn_id, 16);
    ck_assert_str_eq(code_state(301), "reserved");
    /* Voided by the worker (its write never went out): the code is free. */
    ck_assert_int_eq(settle(&c, r4.u.begin.res.txn_id, LEDGER_VOIDED, 0).status, LEDGER_ST_OK);
    ck_assert_str_eq(code_state(301), "issued");

    /* The code answers, with the lease held and the state read. */
    struct ledger_req b5 = begin_req(&c, 1, 300);
    struct ledger_reply r5 = run(&b5);
    ck_assert_int_eq(r5.status, LEDGER_ST_CODE_USED);
    ck_assert_uint_eq(r5.u.begin.card.n_committed, 1);
    struct ledger_req b6 = begin_req(&c, 1, 399);
    ck_assert_int_eq(run(&b6).status, LEDGER_ST_CODE_INVALID);
    ck_assert_int_eq(lease_holder_is(&c, 1), 1);

    /* A check: leased and read, nothing reserved. */
    struct ledger_req b7 = begin_req(&c, 1, -1);
    struct ledger_reply r7 = run(&b7);
    ck_assert_int_eq(r7.status, LEDGER_ST_OK);
    ck_assert_uint_eq(r7.u.begin.reserved, 0);
    ck_assert_uint_eq(r7.u.begin.card.n_committed, 1);

    /* A frozen card is never reserved for. */
    struct ledger_req fr = mkreq(LEDGER_FREEZE, &c);
    fr.u.freeze.reason = LEDGER_FREEZE_RECORDS;
    snprintf(fr.u.freeze.detail, sizeof fr.u.freeze.detail, "test");
    ck_assert_int_eq(run(&fr).status, LEDGER_ST_OK);
    struct ledger_req b8 = begin_req(&c, 1, 301);
    struct ledger_reply r8 = run(&b8);
    ck_assert_int_eq(r8.status, LEDGER_ST_OK);
    ck_assert_uint_eq(r8.u.begin.reserved, 0);
    ck_assert_uint_eq(r8.u.begin.card.frozen, 1);
    ck_assert_str_eq(code_state(301), "issued");
}
END_TEST

START_TEST(test_begin_rate_limits)
{
    /* BEGIN applies RESERVE's limits: a wrong code over the card's limit
     * is throttled, a valid one is reserved all the same. */
    struct ledger_card c = card_n(211);
    issue_code(310, 100, 0);
    for (int i = 0; i < 5; i++) {
        struct ledger_req f = mkreq(LEDGER_CODE_FAILURE, &c);
        snprintf(f.u.code_failure.peer, sizeof f.u.code_failure.peer, "198.51.100.70");
        ck_assert_int_eq(run(&f).status, LEDGER_ST_OK);
    }
    struct ledger_req w = begin_req(&c, 1, 319);
    ck_assert_int_eq(run(&w).status, LEDGER_ST_LIMIT_EXCEEDED);
    struct ledger_req ok = begin_req(&c, 1, 310);
    struct ledger_reply r = run(&ok);
    ck_assert_int_eq(r.status, LEDGER_ST_OK);
    ck_assert_uint_eq(r.u.begin.reserved, 1);
    ck_assert_str_eq(code_state(310), "reserved");
}
END_TEST

START_TEST(test_concurrent_begin)
{
    /* Eight cards race for one code in BEGIN: one reserves it, seven are
     * told it is used; eight holders race for one card: one lease. */
    issue_code(320, 100, 0);
    nreplies = 0;
    for (unsigned i = 0; i < 8; i++) {
        struct ledger_card c = card_n(220 + i);
        struct ledger_req r = begin_req(&c, 1, 320);
        ledger_pg_submit(pg, &r);
    }
    wait_replies(8);
    int ok = 0, used = 0;
    for (int i = 0; i < 8; i++) {
        ok += replies[i].rep.status == LEDGER_ST_OK && replies[i].rep.u.begin.reserved;
        used += replies[i].rep.status == LEDGER_ST_CODE_USED;
    }
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(used, 7);
    ck_assert_int_eq(reserved_entries_for_code(320), 1);

    struct ledger_card one = card_n(230);
    issue_code(321, 100, 0);
    nreplies = 0;
    for (unsigned i = 0; i < 8; i++) {
        struct ledger_req r = begin_req(&one, 40 + i, 321);
        ledger_pg_submit(pg, &r);
    }
    wait_replies(8);
    int leased = 0, busy = 0;
    for (int i = 0; i < 8; i++) {
        leased += replies[i].rep.status == LEDGER_ST_OK;
        busy += replies[i].rep.status == LEDGER_ST_BUSY;
    }
    ck_assert_int_eq(leased, 1);
    ck_assert_int_eq(busy, 7);
    ck_assert_int_eq(reserved_entries_for_code(321), 1);
}
END_TEST

/* The reply to the request with this id (after wait_replies). */
static const struct ledger_reply *reply_of(uint64_t id)
{
    for (int i = 0; i < nreplies; i++)
        if (replies[i].rep.id == id)
            return &replies[i].rep;
    ck_abort_msg("no reply to request %" PRIu64, id);
    return NULL;
}

/* A BEGIN of a top-up on card n with a new code n worth amount. */
static struct ledger_req top_up_req(unsigned n, int64_t amount)
{
    issue_code(n, amount, 0);
    struct ledger_card c = card_n(n);
    return begin_req(&c, 1, (int)n);
}

/* A pool of one connection: what queues behind its busy connection goes
 * as one group (one transaction).  Its first request, a top-up on card n,
 * goes alone (the connection is idle) and prepares BEGIN there. */
static void one_connection_pool(unsigned n)
{
    ledger_pg_free(pg);
    struct ledger_pg_opts o = {.conninfo = conninfo, .nconns = 1, .group_max = 16, .busy_once = 1};
    pg = ledger_pg_new(base, &o, on_reply, NULL);
    ck_assert_ptr_nonnull(pg);
    wait_ready();
    struct ledger_req b0 = top_up_req(n, 100);
    ck_assert_int_eq(run(&b0).status, LEDGER_ST_OK);
}

START_TEST(test_group_commit)
{
    one_connection_pool(400);
    struct ledger_card first = card_n(400);

    /* Thirteen at once: the first goes alone, the rest queue behind it and
     * go as one group, each with its own answer: ten reservations, the
     * leased card busy, a code taken twice in the group used once. */
    struct ledger_req reqs[13];
    for (unsigned i = 0; i < 10; i++)
        reqs[i] = top_up_req(401 + i, 100 + i);
    issue_code(411, 50, 0);
    reqs[10] = begin_req(&first, 2, 411); /* card 400 is leased to holder 1 */
    struct ledger_card c12 = card_n(412), c13 = card_n(413);
    reqs[11] = begin_req(&c12, 1, 411);
    reqs[12] = begin_req(&c13, 1, 411);
    nreplies = 0;
    for (unsigned i = 0; i < 13; i++)
        ledger_pg_submit(pg, &reqs[i]);
    wait_replies(13);
    struct ledger_pg_groups g;
    ledger_pg_group_stats(pg, &g);
    ck_assert_uint_ge(g.groups, 1);
    ck_assert_uint_ge(g.grouped, 12);
    ck_assert_uint_eq(g.failed, 0);
    for (unsigned i = 0; i < 10; i++) {
        const struct ledger_reply *r = reply_of(reqs[i].id);
        ck_assert_int_eq(r->status, LEDGER_ST_OK);
        ck_assert_uint_eq(r->u.begin.reserved, 1);
        ck_assert_int_eq(r->u.begin.res.amount, 100 + (int)i);
        ck_assert_int_eq(reserved_entries_for_code(401 + i), 1);
    }
    ck_assert_int_eq(reply_of(reqs[10].id)->status, LEDGER_ST_BUSY);
    int s12 = reply_of(reqs[11].id)->status, s13 = reply_of(reqs[12].id)->status;
    ck_assert_msg((s12 == LEDGER_ST_OK) != (s13 == LEDGER_ST_OK), "one of two takes the code");
    ck_assert_int_eq(s12 == LEDGER_ST_OK ? s13 : s12, LEDGER_ST_CODE_USED);
    ck_assert_int_eq(reserved_entries_for_code(411), 1);

    /* Booked with release, grouped too: every code used once, every lease
     * gone.  SETTLE is prepared alone first. */
    uint8_t txns[10][16];
    for (unsigned i = 0; i < 10; i++)
        memcpy(txns[i], reply_of(reqs[i].id)->u.begin.res.txn_id, 16);
    struct ledger_req settles[10];
    for (unsigned i = 0; i < 10; i++) {
        struct ledger_card c = card_n(401 + i);
        settles[i] = mkreq(LEDGER_SETTLE, &c);
        memcpy(settles[i].u.settle.txn_id, txns[i], 16);
        settles[i].u.settle.outcome = LEDGER_COMMITTED;
        settles[i].u.settle.release = 1;
        holder_n(1, settles[i].u.settle.holder);
    }
    ck_assert_int_eq(run(&settles[0]).status, LEDGER_ST_OK);
    nreplies = 0;
    for (unsigned i = 1; i < 10; i++)
        ledger_pg_submit(pg, &settles[i]);
    wait_replies(9);
    ledger_pg_group_stats(pg, &g);
    ck_assert_uint_ge(g.groups, 2);
    for (unsigned i = 0; i < 10; i++) {
        if (i > 0)
            ck_assert_int_eq(reply_of(settles[i].id)->status, LEDGER_ST_OK);
        ck_assert_str_eq(code_state(401 + i), "used");
        ck_assert_int_eq(ledger_entries(txns[i]), 2);
        struct ledger_card c = card_n(401 + i);
        ck_assert_int_eq(lease_holder_is(&c, 1), 0);
    }
}
END_TEST

START_TEST(test_group_commit_all_or_nothing)
{
    /* One statement of a group fails (a peer address that is not UTF-8):
     * the group's transaction rolls back, every request goes again alone,
     * and each gets its own answer once: nothing is reserved twice. */
    one_connection_pool(420);
    struct ledger_req reqs[6];
    for (unsigned i = 0; i < 6; i++)
        reqs[i] = top_up_req(421 + i, 100);
    memcpy(reqs[3].u.begin.code.peer, "\xff\xfe", 3);
    nreplies = 0;
    for (unsigned i = 0; i < 6; i++)
        ledger_pg_submit(pg, &reqs[i]);
    wait_replies(6);
    struct ledger_pg_groups g;
    ledger_pg_group_stats(pg, &g);
    ck_assert_uint_ge(g.failed, 1);
    for (unsigned i = 0; i < 6; i++) {
        const struct ledger_reply *r = reply_of(reqs[i].id);
        if (i == 3) {
            ck_assert_int_eq(r->status, LEDGER_ST_ERROR);
            ck_assert_str_eq(code_state(421 + i), "issued");
            ck_assert_int_eq(reserved_entries_for_code(421 + i), 0);
        } else {
            ck_assert_int_eq(r->status, LEDGER_ST_OK);
            ck_assert_uint_eq(r->u.begin.reserved, 1);
            ck_assert_int_eq(reserved_entries_for_code(421 + i), 1);
        }
    }
}
END_TEST

START_TEST(test_busy_asked_again)
{
    /* A lease released a moment after a second session asked for it goes
     * to that session (a top-up's result goes out before its release); one
     * that stays held is still BUSY. */
    struct ledger_pg_opts o = {.conninfo = conninfo, .nconns = 2};
    struct ledger_pg *saved = pg;
    pg = ledger_pg_new(base, &o, on_reply, NULL);
    ck_assert_ptr_nonnull(pg);
    wait_ready();
    struct ledger_card c = card_n(150);
    struct ledger_req a = mkreq(LEDGER_LEASE_ACQUIRE, &c);
    holder_n(1, a.u.lease.holder);
    a.u.lease.ttl_ms = 600000;
    ck_assert_int_eq(run(&a).status, LEDGER_ST_OK);
    struct ledger_req b = mkreq(LEDGER_LEASE_ACQUIRE, &c);
    holder_n(2, b.u.lease.holder);
    b.u.lease.ttl_ms = 60000;
    nreplies = 0;
    ledger_pg_submit(pg, &b);
    spin(150); /* b found it busy and waits to ask again */
    ck_assert_int_eq(nreplies, 0);
    char uid[2 + 2 * WIRE_MAX_UID + 1];
    hex_bytea(uid, c.uid, c.uid_len);
    const char *v[1] = {uid};
    PQclear(sql("DELETE FROM card_leases WHERE card_uid = $1", 1, v));
    wait_replies(1);
    ck_assert_int_eq(replies[0].rep.status, LEDGER_ST_OK);

    a.id = next_id++;
    ck_assert_int_eq(run(&a).status, LEDGER_ST_BUSY); /* b holds it now */

    /* BEGIN is asked again the same way; its busy answers reserved
     * nothing, so asking again is safe. */
    struct ledger_card c2 = card_n(151);
    issue_code(330, 100, 0);
    struct ledger_req h1 = mkreq(LEDGER_LEASE_ACQUIRE, &c2);
    holder_n(1, h1.u.lease.holder);
    h1.u.lease.ttl_ms = 600000;
    ck_assert_int_eq(run(&h1).status, LEDGER_ST_OK);
    struct ledger_req bg = begin_req(&c2, 2, 330);
    nreplies = 0;
    ledger_pg_submit(pg, &bg);
    spin(150);
    ck_assert_int_eq(nreplies, 0);
    ck_assert_str_eq(code_state(330), "issued");
    hex_bytea(uid, c2.uid, c2.uid_len);
    PQclear(sql("DELETE FROM card_leases WHERE card_uid = $1", 1, v));
    wait_replies(1);
    ck_assert_int_eq(replies[0].rep.status, LEDGER_ST_OK);
    ck_assert_uint_eq(replies[0].rep.u.begin.reserved, 1);
    ck_assert_str_eq(code_state(330), "reserved");
    ck_assert_int_eq(reserved_entries_for_code(330), 1);
    ledger_pg_free(pg);
    pg = saved;
}
END_TEST

START_TEST(test_server_restart)
{
    const char *cmd = getenv("OTA_TEST_PG_RESTART");
    if (!cmd || !*cmd)
        return;
    wait_ready();
    /* Blocks the loop while the server restarts: the pool sees dead
     * sockets afterwards, exactly as after a real outage. */
    PQfinish(admin);
    admin = NULL;
    ck_assert_int_eq(system(cmd), 0);
    admin = PQconnectdb(conninfo);
    ck_assert_int_eq(PQstatus(admin), CONNECTION_OK);
    /* The first request may fail (ERROR, outcome unknown) or succeed; within
     * ten seconds the pool must serve again. */
    struct ledger_card c = card_n(130);
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) {
        struct ledger_req p = mkreq(LEDGER_PERSONALIZED, &c);
        struct ledger_reply rep = run(&p);
        ck_assert(rep.status == LEDGER_ST_OK || rep.status == LEDGER_ST_ERROR);
        ok = rep.status == LEDGER_ST_OK;
        if (!ok)
            spin(100);
    }
    ck_assert_msg(ok, "the pool did not recover within 10 s of the restart");
    ck_assert_int_eq(test_personalized(&c), 1);
}
END_TEST

static void setup(void)
{
    conninfo = getenv("OTA_TEST_CONNINFO");
    ck_assert_msg(conninfo && *conninfo, "OTA_TEST_CONNINFO not set (run test_ledger_pg.sh)");
    admin = PQconnectdb(conninfo);
    ck_assert_int_eq(PQstatus(admin), CONNECTION_OK);
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    struct ledger_pg_opts o = {.conninfo = conninfo,
                               .nconns = 4,
                               .backoff_min_ms = 50,
                               .backoff_max_ms = 400,
                               .busy_once = 1};
    pg = ledger_pg_new(base, &o, on_reply, NULL);
    ck_assert_ptr_nonnull(pg);
    wait_ready();
}

static void teardown(void)
{
    ledger_pg_free(pg);
    pg = NULL;
    event_base_free(base);
    base = NULL;
    PQfinish(admin);
    admin = NULL;
}

static Suite *suite(void)
{
    Suite *s = suite_create("ledger_pg");
    TCase *t = tcase_create("requests");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_startup_check);
    tcase_add_test(t, test_weak_pool_never_ready);
    tcase_add_test(t, test_lease);
    tcase_add_test(t, test_concurrent_leases);
    tcase_add_test(t, test_card_state_empty);
    tcase_add_test(t, test_reserve_and_settle);
    tcase_add_test(t, test_settle_releases_lease);
    tcase_add_test(t, test_void_releases_code);
    tcase_add_test(t, test_concurrent_reserve);
    tcase_add_test(t, test_concurrent_settle);
    tcase_add_test(t, test_rate_limits);
    tcase_add_test(t, test_integrity_freeze_personalized);
    tcase_add_test(t, test_integrity_flag_of_txn_at_risk);
    tcase_add_test(t, test_card_state_lists);
    tcase_add_test(t, test_append_only);
    tcase_add_test(t, test_request_timeout);
    tcase_add_test(t, test_backend_killed);
    tcase_add_test(t, test_release_replayed_after_outage);
    tcase_add_test(t, test_begin);
    tcase_add_test(t, test_begin_rate_limits);
    tcase_add_test(t, test_concurrent_begin);
    tcase_add_test(t, test_busy_asked_again);
    tcase_add_test(t, test_group_commit);
    tcase_add_test(t, test_group_commit_all_or_nothing);
    tcase_add_test(t, test_server_restart);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    log_init("test_ledger_pg", NULL, 0, LOG_LVL_WARN);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
