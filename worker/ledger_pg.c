/* ledger_pg: ledger.h's requests as asynchronous libpq on a small pool.
 *
 * Each connection is a small state machine (pgbouncer's server.c is the
 * model): WAIT (back-off) -> CONNECTING (PQconnectPoll) -> CHECKING (SHOW
 * synchronous_commit) -> IDLE <-> BUSY (one request, or one group, in flight).  A request
 * is one statement: a call of the worker's stored function for its type
 * (schema/NNN_worker_ledger.sql), so each request is atomic in the database
 * (alone, one transaction; in a group, part of the group's one
 * transaction: see "Group commit" below).  A connection prepares each
 * statement the first time it needs it (one extra round trip, once) and
 * then runs it by name: the database parses and plans each statement once
 * per connection, not once per call.  Each is prepared on its own, so
 * pg_stat_activity shows the statement itself.  Requests wait in one FIFO for an
 * idle connection.  A dead connection, a request timeout or a database
 * error gives LEDGER_ST_ERROR ("unknown outcome"), never a guess; the
 * reply says (db_down) whether the database was unreachable.  A lease
 * release that could not reach it is kept and replayed, ahead of every
 * waiting request, when a connection is usable again.
 *
 * Group commit: when requests queue up (every connection busy), a
 * connection that comes free takes up to group_max of them at once and
 * sends them as one libpq pipeline ending in one Sync: the database runs
 * them in one implicit transaction, so they cost one round trip and one
 * commit (one WAL flush) instead of one each.  Each statement is still
 * the request's own stored function with its own answer; nothing in the
 * schema changes.  All or nothing: if any statement of the group fails
 * (a deadlock between two groups, a constraint, a database error), the
 * transaction rolled back and nothing of it happened, so each of its
 * requests is sent again alone, exactly as without grouping; a group
 * whose connection dies or times out answers every request ERROR
 * (unknown outcome), as a lone request would.  A group runs in card UID
 * order (requests of one card keep their order) so two groups take the
 * card leases in the same order.
 *
 * Must never: block once ledger_pg_new() returned (no synchronous libpq
 * call), call the reply callback from inside ledger_pg_submit(), or log a
 * code hash, a lease holder or a full UID. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <libpq-fe.h>
#include <sodium.h>

#include "dbconn.h"
#include "ledger_pg.h"
#include "ledger_sql.h"
#include "log.h"
#include "ota_err.h"
#include "num.h"

struct pg_job {
    struct ledger_req req;
    struct pg_job *next;
    uint64_t submit_us;
    /* A counting job (ledger_pg_counts) instead of a ledger request. */
    ledger_pg_counts_fn counts_cb;
    void *counts_arg;
    uint32_t old_s;
    /* A release of a lease whose session is gone (see struct orphan):
     * answered here, never through the callback. */
    int orphan;
    /* A LEASE_ACQUIRE or BEGIN that found the card busy, asked again
     * later (a busy BEGIN did nothing else, so asking again is safe). */
    unsigned busy_retries;
    struct event *ev_retry;
    struct ledger_pg *pg;
    /* A group it was in failed: it runs alone from now on. */
    int solo;
};

/* A card's lease held by another session is asked for again this many
 * times, this far apart, before the answer is BUSY: the holder has
 * usually just ended (a top-up's result goes out before its lease is
 * released, and a phone starts its next session at once; after an outage
 * another worker may be releasing the leases it cut).  A real second
 * session on the card still gets BUSY, 0.4 s later. */
#define BUSY_RETRIES 4
#define BUSY_RETRY_MS 100

/* The lease of a session that ended while the database was unreachable.
 * Its release failed, so the card would stay locked for the lease's whole
 * lifetime; we release it as soon as a connection is usable again
 * (ARCHITECTURE.md money rule 4).  Safe: the release deletes the lease
 * only if this holder (worker instance and session) still holds it, and
 * the session sends no card command any more. */
struct orphan {
    struct ledger_card card;
    uint8_t holder[LEDGER_HOLDER_LEN];
};
/* More cut sessions than this at once: the oldest simply expire. */
#define MAX_ORPHANS 65536

enum pgc_state {
    PGC_WAIT = 0, /* no connection; back-off timer armed */
    PGC_CONNECTING,
    PGC_CHECKING, /* SHOW synchronous_commit in flight */
    PGC_IDLE,
    PGC_BUSY, /* job in flight */
};

struct pgc {
    struct ledger_pg *pg;
    unsigned idx;
    enum pgc_state state;
    PGconn *conn;
    struct event *ev_io;    /* during connect: one-shot on the current socket */
    struct event *ev_read;  /* once connected: persistent read */
    struct event *ev_write; /* once connected: one-shot, while output is queued */
    struct event *ev_timer; /* back-off, connect timeout or request timeout */
    struct pg_job *job;
    PGresult *res;     /* first result of the job's statement */
    uint32_t prepared; /* bit i: ledger_sql statement i is prepared here */
    int preparing;     /* the statement being prepared for the job, or -1 */
    int no_prepare;    /* a prepare failed: statements go by their text */
    uint32_t backoff_ms;
    int was_up; /* for "connection restored" logs */
    /* A group in flight (job is NULL then): its jobs in the order sent,
     * the first result of each, the job whose results come next. */
    struct pg_job *group[LEDGER_PG_MAX_GROUP];
    PGresult *gres[LEDGER_PG_MAX_GROUP];
    unsigned ngroup, gnext;
    int gfailed; /* a statement of the group failed: it rolled back */
};

struct ledger_pg {
    struct event_base *base;
    char *conninfo;
    unsigned nconns;
    uint32_t timeout_ms, backoff_min_ms, backoff_max_ms;
    int busy_once;
    unsigned group_max;
    uint64_t groups, grouped, groups_failed;
    ledger_pg_reply_fn cb;
    void *cb_arg;
    struct pgc conns[LEDGER_PG_MAX_CONNS];
    struct pg_job *q_head, *q_tail; /* waiting for a connection */
    size_t queued, inflight;
    struct pg_job *busy; /* LEASE_ACQUIREs and BEGINs waiting to ask again */
    size_t nbusy;
    /* Replies decided without a connection (no database), delivered from
     * the loop so the callback never runs inside ledger_pg_submit(). */
    struct {
        struct pg_job *job;
        enum ledger_status st;
        int down; /* the database was unreachable (reply.db_down) */
    } * failed;
    size_t nfailed, capfailed;
    struct event *ev_deliver;
    struct ledger_pg_latency lat;
    struct orphan *orphans; /* leases to release once the database is back */
    size_t norphans, caporphans;
    uint64_t orphans_dropped;
};

/* ---- small helpers ------------------------------------------------------- */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A database message made fit for one logfmt value. */
static void clean_msg(const char *in, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; in && in[i] && j + 1 < cap; i++) {
        char c = in[i];
        if (c == '"' || c == '\\')
            c = '\'';
        else if (c == '\n' || c == '\r' || c == '\t')
            c = ' ';
        out[j++] = c;
    }
    while (j > 0 && out[j - 1] == ' ')
        j--;
    out[j] = '\0';
}

/* ---- replies --------------------------------------------------------------- */

static void observe(struct ledger_pg *pg, const struct pg_job *job, enum ledger_status st)
{
    uint64_t us = mono_us() - job->submit_us;
    struct ledger_pg_latency *l = &pg->lat;
    for (size_t i = 0; i < WIRE_STATS_DB_BUCKETS; i++) {
        if (us <= wire_stats_db_bounds_us[i]) {
            l->buckets[i]++;
            break;
        }
    }
    l->count++;
    l->sum_us += us;
    if (st == LEDGER_ST_ERROR)
        l->errors++;
}

static void remember_orphan(struct ledger_pg *pg, const struct ledger_req *req);

static void reply(struct ledger_pg *pg, struct pg_job *job, const struct ledger_reply *rep)
{
    int unreleased =
        job->req.type == LEDGER_LEASE_RELEASE && rep->status == LEDGER_ST_ERROR && rep->db_down;
    if (job->orphan) {
        if (unreleased)
            remember_orphan(pg, &job->req);
        sodium_memzero(&job->req, sizeof job->req);
        free(job);
        return;
    }
    if (unreleased)
        remember_orphan(pg, &job->req);
    if (job->counts_cb) {
        /* Only failures come this way; finish_job answers the others. */
        ledger_pg_counts_fn cb = job->counts_cb;
        void *arg = job->counts_arg;
        free(job);
        cb(arg, NULL);
        return;
    }
    observe(pg, job, rep->status);
    uint64_t session = job->req.session;
    if (job->ev_retry)
        event_free(job->ev_retry);
    sodium_memzero(&job->req, sizeof job->req);
    free(job);
    pg->cb(pg->cb_arg, session, rep);
}

static void reply_status(struct ledger_pg *pg, struct pg_job *job, enum ledger_status st, int down)
{
    struct ledger_reply rep;
    memset(&rep, 0, sizeof rep);
    rep.id = job->req.id;
    rep.type = job->req.type;
    rep.status = st;
    rep.db_down = (uint8_t)(down != 0);
    reply(pg, job, &rep);
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ledger_pg *pg = arg;
    /* Take the current batch: callbacks may submit (and fail) more. */
    size_t n = pg->nfailed;
    for (size_t i = 0; i < n; i++)
        reply_status(pg, pg->failed[i].job, pg->failed[i].st, pg->failed[i].down);
    memmove(pg->failed, pg->failed + n, (pg->nfailed - n) * sizeof *pg->failed);
    pg->nfailed -= n;
    if (pg->nfailed)
        event_active(pg->ev_deliver, EV_READ, 0);
}

/* Answers job with st from the loop.  Falls back to a direct call only if
 * memory is exhausted (never from ledger_pg_submit's own stack then: the
 * caller guarantees that). */
static void fail_later(struct ledger_pg *pg, struct pg_job *job, enum ledger_status st, int down)
{
    if (pg->nfailed == pg->capfailed) {
        size_t cap = pg->capfailed ? pg->capfailed * 2 : 64;
        void *p = realloc(pg->failed, cap * sizeof *pg->failed);
        if (!p) {
            log_error("out_of_memory", "what=ledger_reply req=%s session=%" PRIu64,
                      ledger_req_name(job->req.type), job->req.session);
            /* The session's own timeouts end it; its request is lost. */
            if (job->ev_retry)
                event_free(job->ev_retry);
            sodium_memzero(&job->req, sizeof job->req);
            free(job);
            return;
        }
        pg->failed = p;
        pg->capfailed = cap;
    }
    pg->failed[pg->nfailed].job = job;
    pg->failed[pg->nfailed].st = st;
    pg->failed[pg->nfailed].down = down;
    pg->nfailed++;
    event_active(pg->ev_deliver, EV_READ, 0);
}

/* ---- connections ----------------------------------------------------------- */

static void conn_connect(struct pgc *c);
static void dispatch(struct ledger_pg *pg);

static int usable_conns(const struct ledger_pg *pg)
{
    int n = 0;
    for (unsigned i = 0; i < pg->nconns; i++)
        if (pg->conns[i].state == PGC_IDLE || pg->conns[i].state == PGC_BUSY)
            n++;
    return n;
}

static void fail_queue(struct ledger_pg *pg)
{
    while (pg->q_head) {
        struct pg_job *job = pg->q_head;
        pg->q_head = job->next;
        pg->queued--;
        fail_later(pg, job, LEDGER_ST_ERROR, 1);
    }
    pg->q_tail = NULL;
}

static void conn_close(struct pgc *c)
{
    struct event **evs[] = {&c->ev_io, &c->ev_read, &c->ev_write};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (*evs[i]) {
            event_free(*evs[i]);
            *evs[i] = NULL;
        }
    evtimer_del(c->ev_timer);
    if (c->res) {
        PQclear(c->res);
        c->res = NULL;
    }
    for (unsigned k = 0; k < LEDGER_PG_MAX_GROUP; k++)
        if (c->gres[k]) {
            PQclear(c->gres[k]);
            c->gres[k] = NULL;
        }
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_connect(arg);
}

/* The connection is gone or unusable: its job (if any) gets ERROR, and it
 * tries again after the back-off. */
static void conn_fail(struct pgc *c, const char *why, const char *detail)
{
    struct ledger_pg *pg = c->pg;
    char msg[200];
    clean_msg(detail, msg, sizeof msg);
    if (c->was_up || c->state >= PGC_CHECKING)
        log_warn("db_connection_lost", "conn=%u reason=%s detail=\"%s\" retry_ms=%" PRIu32, c->idx,
                 why, msg, c->backoff_ms);
    else
        log_debug("db_connect_failed", "conn=%u reason=%s detail=\"%s\" retry_ms=%" PRIu32, c->idx,
                  why, msg, c->backoff_ms);
    c->was_up = 0;
    struct pg_job *job = c->job;
    unsigned ngroup = c->ngroup;
    c->job = NULL;
    c->ngroup = 0;
    conn_close(c);
    c->state = PGC_WAIT;
    struct timeval tv = {.tv_sec = c->backoff_ms / 1000,
                         .tv_usec = (suseconds_t)(c->backoff_ms % 1000) * 1000};
    event_assign(c->ev_timer, pg->base, -1, 0, on_backoff, c);
    evtimer_add(c->ev_timer, &tv);
    c->backoff_ms = c->backoff_ms * 2 > pg->backoff_max_ms ? pg->backoff_max_ms : c->backoff_ms * 2;
    if (job) {
        pg->inflight--;
        fail_later(pg, job, LEDGER_ST_ERROR, 1);
    }
    /* A group may have committed or not: unknown outcome for each. */
    for (unsigned k = 0; k < ngroup; k++) {
        pg->inflight--;
        fail_later(pg, c->group[k], LEDGER_ST_ERROR, 1);
    }
    /* With no usable connection at all, waiting helps nobody: the engine
     * answers pending/failed now rather than at its own timeout. */
    if (usable_conns(pg) == 0)
        fail_queue(pg);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pgc *c = arg;
    if (c->state == PGC_BUSY && c->job)
        log_warn("db_request_timeout", "conn=%u req=%s session=%" PRIu64, c->idx,
                 ledger_req_name(c->job->req.type), c->job->req.session);
    else if (c->state == PGC_BUSY && c->ngroup)
        log_warn("db_request_timeout", "conn=%u group=%u", c->idx, c->ngroup);
    conn_fail(c, "timeout", "no answer in time");
}

static void arm_timeout(struct pgc *c)
{
    struct ledger_pg *pg = c->pg;
    struct timeval tv = {.tv_sec = pg->timeout_ms / 1000,
                         .tv_usec = (suseconds_t)(pg->timeout_ms % 1000) * 1000};
    /* event_assign() needs a non-pending event. */
    evtimer_del(c->ev_timer);
    event_assign(c->ev_timer, pg->base, -1, 0, on_timeout, c);
    evtimer_add(c->ev_timer, &tv);
}

/* Sends what libpq has queued; arms the write event if the socket is full. */
static int conn_flush(struct pgc *c)
{
    int r = PQflush(c->conn);
    if (r < 0)
        return -1;
    if (r == 1)
        event_add(c->ev_write, NULL);
    return 0;
}

/* Sends sql by name if it is prepared here, prepares it first if not (the
 * job's statement follows when the prepare answers: send_job again), or
 * sends its text (not a ledger_sql statement, or prepares fail here). */
static void conn_send(struct pgc *c, const char *sql, int n, const char *const *values)
{
    int i = c->no_prepare ? -1 : ledger_sql_statement(sql);
    int sent;
    if (i >= 0 && (c->prepared & (1u << i))) {
        sent = PQsendQueryPrepared(c->conn, ledger_sql_statement_name(i), n, values, NULL, NULL, 0);
    } else if (i >= 0) {
        c->preparing = i;
        sent = PQsendPrepare(c->conn, ledger_sql_statement_name(i), sql, n, NULL);
    } else {
        sent = PQsendQueryParams(c->conn, sql, n, NULL, values, NULL, NULL, 0);
    }
    if (!sent || conn_flush(c) != 0) {
        conn_fail(c, "send", PQerrorMessage(c->conn));
        return;
    }
    arm_timeout(c);
}

/* Sends the statement of c's job (again, after its prepare). */
static void send_job(struct pgc *c)
{
    struct pg_job *job = c->job;
    struct ledger_sql_call call;
    if (job->counts_cb) {
        ledger_sql_build_counts(job->old_s, &call);
        conn_send(c, call.sql, call.nparams, call.values);
        return;
    }
    /* start_job built it once already: this cannot fail here. */
    if (ledger_sql_build(&job->req, &call) != 0) {
        conn_fail(c, "request", "cannot build the request");
        return;
    }
    conn_send(c, call.sql, call.nparams, call.values);
    sodium_memzero(&call, sizeof call);
}

static void start_job(struct pgc *c, struct pg_job *job)
{
    struct ledger_pg *pg = c->pg;
    struct ledger_sql_call call;
    if (!job->counts_cb) {
        if (ledger_sql_build(&job->req, &call) != 0) {
            log_error("ledger_bad_request", "req=%s session=%" PRIu64,
                      ledger_req_name(job->req.type), job->req.session);
            fail_later(pg, job, LEDGER_ST_ERROR, 0);
            return;
        }
        sodium_memzero(&call, sizeof call);
    }
    c->job = job;
    c->state = PGC_BUSY;
    pg->inflight++;
    send_job(c);
}

/* Takes the job at the head of the queue (there is one). */
static struct pg_job *pop_head(struct ledger_pg *pg)
{
    struct pg_job *job = pg->q_head;
    pg->q_head = job->next;
    if (!pg->q_head)
        pg->q_tail = NULL;
    pg->queued--;
    job->next = NULL;
    return job;
}

/* ---- group commit ------------------------------------------------------------ */

/* A job that may go in a group on c: a ledger request (not a count), not
 * one whose group failed, whose statement c has prepared (a group sends
 * no prepares: the first of each kind on a connection goes alone). */
static int groupable(const struct pgc *c, const struct pg_job *job)
{
    struct ledger_sql_call call;
    if (job->counts_cb || job->solo || c->no_prepare || ledger_sql_build(&job->req, &call) != 0)
        return 0;
    int i = ledger_sql_statement(call.sql);
    sodium_memzero(&call, sizeof call);
    return i >= 0 && (c->prepared & (1u << i));
}

static int card_cmp(const struct ledger_card *a, const struct ledger_card *b)
{
    if (a->uid_len != b->uid_len)
        return a->uid_len < b->uid_len ? -1 : 1;
    return memcmp(a->uid, b->uid, a->uid_len);
}

/* Takes the longest run of groupable jobs at the head of the queue, up
 * to group_max, into out (the queue stays first come, first served). */
static unsigned take_group(struct ledger_pg *pg, const struct pgc *c, struct pg_job **out)
{
    unsigned n = 0;
    while (pg->q_head && n < pg->group_max && groupable(c, pg->q_head))
        out[n++] = pop_head(pg);
    /* Card UID order, stable: groups take leases in one order, and the
     * requests of one card keep theirs. */
    for (unsigned i = 1; i < n; i++) {
        struct pg_job *j = out[i];
        unsigned k = i;
        for (; k > 0 && card_cmp(&out[k - 1]->req.card, &j->req.card) > 0; k--)
            out[k] = out[k - 1];
        out[k] = j;
    }
    return n;
}

/* Puts jobs back at the head of the queue, in their order. */
static void requeue_front(struct ledger_pg *pg, struct pg_job **jobs, unsigned n)
{
    for (unsigned k = n; k-- > 0;) {
        jobs[k]->next = pg->q_head;
        pg->q_head = jobs[k];
        if (!pg->q_tail)
            pg->q_tail = jobs[k];
        pg->queued++;
    }
}

/* Sends n jobs as one pipeline ending in one Sync: one transaction. */
static void start_group(struct pgc *c, struct pg_job **jobs, unsigned n)
{
    struct ledger_pg *pg = c->pg;
    memcpy(c->group, jobs, n * sizeof *jobs);
    c->ngroup = n;
    c->gnext = 0;
    c->gfailed = 0;
    c->state = PGC_BUSY;
    pg->inflight += n;
    if (!PQenterPipelineMode(c->conn)) {
        conn_fail(c, "send", PQerrorMessage(c->conn));
        return;
    }
    for (unsigned k = 0; k < n; k++) {
        struct ledger_sql_call call;
        int ok =
            ledger_sql_build(&jobs[k]->req, &call) == 0 &&
            PQsendQueryPrepared(c->conn, ledger_sql_statement_name(ledger_sql_statement(call.sql)),
                                call.nparams, call.values, NULL, NULL, 0);
        sodium_memzero(&call, sizeof call);
        if (!ok) {
            conn_fail(c, "send", PQerrorMessage(c->conn));
            return;
        }
    }
    if (!PQpipelineSync(c->conn) || conn_flush(c) != 0) {
        conn_fail(c, "send", PQerrorMessage(c->conn));
        return;
    }
    arm_timeout(c);
}

static void dispatch(struct ledger_pg *pg)
{
    for (unsigned i = 0; i < pg->nconns && pg->q_head; i++) {
        struct pgc *c = &pg->conns[i];
        if (c->state != PGC_IDLE)
            continue;
        struct pg_job *jobs[LEDGER_PG_MAX_GROUP];
        unsigned n = pg->group_max > 1 && pg->queued > 1 ? take_group(pg, c, jobs) : 0;
        if (n > 1)
            start_group(c, jobs, n);
        else
            start_job(c, n == 1 ? jobs[0] : pop_head(pg));
    }
}

/* Keeps a lease whose release could not reach the database. */
static void remember_orphan(struct ledger_pg *pg, const struct ledger_req *req)
{
    if (pg->norphans == pg->caporphans) {
        size_t cap = pg->caporphans ? pg->caporphans * 2 : 64;
        void *p = cap <= MAX_ORPHANS ? realloc(pg->orphans, cap * sizeof *pg->orphans) : NULL;
        if (!p) {
            /* The oldest goes; its lease expires by itself. */
            if (pg->norphans == 0)
                return;
            sodium_memzero(&pg->orphans[0], sizeof pg->orphans[0]);
            memmove(pg->orphans, pg->orphans + 1, (pg->norphans - 1) * sizeof *pg->orphans);
            pg->norphans--;
            pg->orphans_dropped++;
        } else {
            pg->orphans = p;
            pg->caporphans = cap;
        }
    }
    struct orphan *o = &pg->orphans[pg->norphans++];
    o->card = req->card;
    memcpy(o->holder, req->u.lease.holder, LEDGER_HOLDER_LEN);
}

/* A connection is usable again: the remembered releases go first, ahead
 * of every waiting request, so a card whose session the outage cut is
 * free before a new session of this worker asks for it. */
static void replay_orphans(struct ledger_pg *pg)
{
    if (pg->norphans == 0)
        return;
    size_t n = pg->norphans, queued = 0;
    struct pg_job *head = NULL, *last = NULL;
    for (size_t i = 0; i < n; i++) {
        struct pg_job *job = calloc(1, sizeof *job);
        if (!job)
            break;
        job->orphan = 1;
        job->req.type = LEDGER_LEASE_RELEASE;
        job->req.card = pg->orphans[i].card;
        memcpy(job->req.u.lease.holder, pg->orphans[i].holder, LEDGER_HOLDER_LEN);
        job->submit_us = mono_us();
        if (last)
            last->next = job;
        else
            head = job;
        last = job;
        queued++;
    }
    /* What did not fit in memory stays for the next connection. */
    sodium_memzero(pg->orphans, queued * sizeof *pg->orphans);
    memmove(pg->orphans, pg->orphans + queued, (n - queued) * sizeof *pg->orphans);
    pg->norphans = n - queued;
    if (!head)
        return;
    last->next = pg->q_head;
    if (!pg->q_head)
        pg->q_tail = last;
    pg->q_head = head;
    pg->queued += queued;
    log_info("db_lease_release_replay", "leases=%zu dropped_total=%" PRIu64, queued,
             pg->orphans_dropped);
}

/* The SHOW synchronous_commit answer of a fresh connection. */
static void finish_check(struct pgc *c, const PGresult *res)
{
    struct ledger_pg *pg = c->pg;
    const char *v = "";
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        v = PQgetvalue(res, 0, 0);
    if (strcmp(v, "on") != 0 && strcmp(v, "remote_apply") != 0) {
        log_error("db_not_durable", "conn=%u synchronous_commit=\"%s\"", c->idx, v);
        conn_fail(c, "synchronous_commit", "synchronous_commit is not on");
        return;
    }
    c->state = PGC_IDLE;
    c->backoff_ms = pg->backoff_min_ms;
    c->was_up = 1;
    log_info("db_connected", "conn=%u server_version=%d", c->idx, PQserverVersion(c->conn));
    replay_orphans(pg);
    dispatch(pg);
}

/* A counting job's answer: one row of five non-negative integers. */
static void finish_counts(struct ledger_pg *pg, struct pg_job *job, PGresult *res)
{
    struct ledger_pg_counts counts;
    uint64_t v[LEDGER_SQL_NCOUNTS];
    int ok = ledger_sql_parse_counts(res, v) == 0;
    if (ok) {
        counts.in_doubt = v[0];
        counts.in_doubt_old = v[1];
        counts.in_doubt_oldest_s = v[2];
        counts.codes_reserved = v[3];
        counts.cards_frozen = v[4];
    }
    if (!ok) {
        char msg[200];
        clean_msg(res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "no result", msg,
                  sizeof msg);
        log_warn("db_counts_failed", "err=\"%s\"", msg[0] ? msg : "unexpected answer");
    }
    if (res)
        PQclear(res);
    ledger_pg_counts_fn cb = job->counts_cb;
    void *arg = job->counts_arg;
    free(job);
    dispatch(pg);
    cb(arg, ok ? &counts : NULL);
}

static void enqueue(struct ledger_pg *pg, struct pg_job *job);

static void on_busy_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pg_job *job = arg;
    struct ledger_pg *pg = job->pg;
    for (struct pg_job **p = &pg->busy; *p; p = &(*p)->next)
        if (*p == job) {
            *p = job->next;
            break;
        }
    pg->nbusy--;
    job->next = NULL;
    enqueue(pg, job);
}

/* Parks a LEASE_ACQUIRE or BEGIN that found the card busy (see BUSY_RETRIES);
 * 0 when it has asked often enough (or no timer): answer BUSY now. */
static int retry_busy_later(struct ledger_pg *pg, struct pg_job *job)
{
    if ((job->req.type != LEDGER_LEASE_ACQUIRE && job->req.type != LEDGER_BEGIN) ||
        job->busy_retries >= BUSY_RETRIES || pg->busy_once)
        return 0;
    if (!job->ev_retry) {
        job->pg = pg;
        job->ev_retry = evtimer_new(pg->base, on_busy_retry, job);
        if (!job->ev_retry)
            return 0;
    }
    struct timeval tv = {0, BUSY_RETRY_MS * 1000};
    if (evtimer_add(job->ev_retry, &tv) != 0)
        return 0;
    job->busy_retries++;
    job->next = pg->busy;
    pg->busy = job;
    pg->nbusy++;
    return 1;
}

/* SQLSTATEs that mean "the database is not there for us right now" (a
 * failover, a restart) rather than "it refused this statement": connection
 * exceptions, operator intervention (shutdown, crash recovery), and a read
 * only transaction (a node that became a standby).  No state: no result. */
static int unreachable_state(const char *state)
{
    return state == NULL || strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
           strcmp(state, "25006") == 0;
}

/* The job's statement is complete: result in c->res (or none). */
static void finish_job(struct pgc *c)
{
    struct ledger_pg *pg = c->pg;
    struct pg_job *job = c->job;
    PGresult *res = c->res;
    struct ledger_reply rep;

    c->job = NULL;
    c->res = NULL;
    c->state = PGC_IDLE;
    pg->inflight--;
    evtimer_del(c->ev_timer);

    if (job->counts_cb) {
        finish_counts(pg, job, res);
        return;
    }
    memset(&rep, 0, sizeof rep);
    rep.id = job->req.id;
    rep.type = job->req.type;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[200];
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        /* Only the primary message: DETAIL may quote key values. */
        clean_msg(res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "no result", msg,
                  sizeof msg);
        log_error("db_request_failed", "conn=%u req=%s session=%" PRIu64 " sqlstate=%s err=\"%s\"",
                  c->idx, ledger_req_name(job->req.type), job->req.session, state ? state : "-",
                  msg);
        rep.status = LEDGER_ST_ERROR;
        rep.db_down = (uint8_t)unreachable_state(state);
    } else if (ledger_sql_parse(&job->req, res, &rep) != 0) {
        log_error("db_bad_answer", "conn=%u req=%s session=%" PRIu64 " rows=%d cols=%d", c->idx,
                  ledger_req_name(job->req.type), job->req.session, PQntuples(res), PQnfields(res));
        memset(&rep.u, 0, sizeof rep.u);
        rep.status = LEDGER_ST_ERROR;
    }
    if (res)
        PQclear(res);
    /* Hand the connection on before the callback, which may submit more. */
    dispatch(pg);
    if (rep.status == LEDGER_ST_BUSY && retry_busy_later(pg, job))
        return;
    reply(pg, job, &rep);
}

/* The prepare of the job's statement answered: run the statement (by name,
 * or by its text from now on if the prepare failed). */
static void finish_prepare(struct pgc *c)
{
    PGresult *res = c->res;
    int i = c->preparing;
    c->res = NULL;
    c->preparing = -1;
    if (res && PQresultStatus(res) == PGRES_COMMAND_OK) {
        c->prepared |= 1u << i;
    } else {
        char msg[200];
        clean_msg(res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "no result", msg,
                  sizeof msg);
        log_warn("db_prepare_failed", "conn=%u statement=%s err=\"%s\"", c->idx,
                 ledger_sql_statement_name(i), msg);
        c->no_prepare = 1;
    }
    if (res)
        PQclear(res);
    if (c->job)
        send_job(c);
}

/* The group's Sync answered: every statement's result is in.  Committed:
 * each job gets its own answer.  Rolled back (a statement failed): each
 * job goes again alone, at the head of the queue. */
static void finish_group(struct pgc *c)
{
    struct ledger_pg *pg = c->pg;
    struct pg_job *jobs[LEDGER_PG_MAX_GROUP];
    PGresult *res[LEDGER_PG_MAX_GROUP];
    unsigned n = c->ngroup;
    /* An error result before the Sync's answer: the transaction rolled
     * back.  No error but not every statement answered cannot happen; if
     * it did, the commit may have happened: answered as a lost
     * connection's group, unknown outcome. */
    int failed = c->gfailed;
    if ((!failed && c->gnext != n) || !PQexitPipelineMode(c->conn)) {
        conn_fail(c, "pipeline", PQerrorMessage(c->conn));
        return;
    }
    memcpy(jobs, c->group, n * sizeof *jobs);
    memcpy(res, c->gres, n * sizeof *res);
    memset(c->gres, 0, sizeof c->gres);
    c->ngroup = 0;
    evtimer_del(c->ev_timer);
    pg->inflight -= n;
    c->state = PGC_IDLE;
    if (failed) {
        const char *state = "-";
        char msg[200] = "";
        for (unsigned k = 0; k < n; k++)
            if (res[k] && PQresultStatus(res[k]) == PGRES_FATAL_ERROR) {
                const char *st = PQresultErrorField(res[k], PG_DIAG_SQLSTATE);
                state = st ? st : "-";
                clean_msg(PQresultErrorField(res[k], PG_DIAG_MESSAGE_PRIMARY), msg, sizeof msg);
                break;
            }
        log_warn("db_group_failed", "conn=%u requests=%u sqlstate=%s err=\"%s\" then=alone", c->idx,
                 n, state, msg);
        for (unsigned k = 0; k < n; k++) {
            if (res[k])
                PQclear(res[k]);
            jobs[k]->solo = 1;
        }
        pg->groups_failed++;
        requeue_front(pg, jobs, n);
        dispatch(pg);
        return;
    }
    pg->groups++;
    pg->grouped += n;
    /* Hand the connection on before the callbacks, which may submit more. */
    dispatch(pg);
    for (unsigned k = 0; k < n; k++) {
        struct ledger_reply rep;
        memset(&rep, 0, sizeof rep);
        rep.id = jobs[k]->req.id;
        rep.type = jobs[k]->req.type;
        if (ledger_sql_parse(&jobs[k]->req, res[k], &rep) != 0) {
            log_error("db_bad_answer", "conn=%u req=%s session=%" PRIu64 " rows=%d cols=%d", c->idx,
                      ledger_req_name(jobs[k]->req.type), jobs[k]->req.session, PQntuples(res[k]),
                      PQnfields(res[k]));
            memset(&rep.u, 0, sizeof rep.u);
            rep.status = LEDGER_ST_ERROR;
        }
        PQclear(res[k]);
        if (rep.status == LEDGER_ST_BUSY && retry_busy_later(pg, jobs[k]))
            continue;
        reply(pg, jobs[k], &rep);
    }
}

/* Reads a group's results: per statement one result then NULL, then the
 * Sync's.  A failed statement gives an error and the ones after it
 * PGRES_PIPELINE_ABORTED; a failed commit, an error after the last. */
static void read_group(struct pgc *c)
{
    while (!PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);
        if (!r) {
            if (c->gnext < c->ngroup && c->gres[c->gnext])
                c->gnext++;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            finish_group(c);
            return;
        }
        if (st != PGRES_TUPLES_OK)
            c->gfailed = 1;
        if (c->gnext < c->ngroup && !c->gres[c->gnext])
            c->gres[c->gnext] = r;
        else
            PQclear(r);
    }
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pgc *c = arg;
    if (c->conn && conn_flush(c) != 0)
        conn_fail(c, "flush", PQerrorMessage(c->conn));
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pgc *c = arg;

    if (!PQconsumeInput(c->conn) || PQstatus(c->conn) == CONNECTION_BAD) {
        conn_fail(c, "read", PQerrorMessage(c->conn));
        return;
    }
    PGnotify *nt;
    while ((nt = PQnotifies(c->conn)) != NULL)
        PQfreemem(nt);
    if (c->state != PGC_BUSY && c->state != PGC_CHECKING) {
        /* Nothing asked: the server may be telling us it shuts down. */
        return;
    }
    if (c->ngroup) {
        read_group(c);
        return;
    }
    while (!PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);
        if (!r) {
            /* The statement is complete. */
            if (c->preparing >= 0) {
                finish_prepare(c);
            } else if (c->state == PGC_CHECKING) {
                PGresult *res = c->res;
                c->res = NULL;
                evtimer_del(c->ev_timer);
                finish_check(c, res);
                if (res)
                    PQclear(res);
            } else {
                finish_job(c);
            }
            return;
        }
        if (!c->res)
            c->res = r;
        else
            PQclear(r);
    }
}

/* Server messages outside a query (e.g. "terminating connection due to
 * administrator command") go to our log, not to stderr. */
static void on_notice(void *arg, const char *message)
{
    const struct pgc *c = arg;
    char msg[200];
    clean_msg(message, msg, sizeof msg);
    log_debug("db_notice", "conn=%u detail=\"%s\"", c->idx, msg);
}

static int conn_watch_connected(struct pgc *c)
{
    struct ledger_pg *pg = c->pg;
    int fd = PQsocket(c->conn);
    if (c->ev_io) {
        event_free(c->ev_io);
        c->ev_io = NULL;
    }
    if (fd < 0 || PQsetnonblocking(c->conn, 1) != 0)
        return -1;
    c->ev_read = event_new(pg->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->ev_write = event_new(pg->base, fd, EV_WRITE, on_write, c);
    if (!c->ev_read || !c->ev_write || event_add(c->ev_read, NULL) != 0)
        return -1;
    return 0;
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg);

/* One step of PQconnectPoll; re-arms on whatever socket libpq now uses. */
static void connect_step(struct pgc *c, PostgresPollingStatusType st)
{
    struct ledger_pg *pg = c->pg;
    if (st == PGRES_POLLING_FAILED) {
        conn_fail(c, "connect", PQerrorMessage(c->conn));
        return;
    }
    if (st == PGRES_POLLING_OK) {
        if (conn_watch_connected(c) != 0) {
            conn_fail(c, "setup", "cannot watch the connection");
            return;
        }
        c->state = PGC_CHECKING;
        conn_send(c, "SHOW synchronous_commit", 0, NULL);
        return;
    }
    short ev = st == PGRES_POLLING_READING ? EV_READ : EV_WRITE;
    if (c->ev_io)
        event_free(c->ev_io);
    c->ev_io = event_new(pg->base, PQsocket(c->conn), ev, on_connect_io, c);
    if (!c->ev_io || event_add(c->ev_io, NULL) != 0)
        conn_fail(c, "setup", "cannot watch the connection");
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pgc *c = arg;
    connect_step(c, PQconnectPoll(c->conn));
}

static void conn_connect(struct pgc *c)
{
    struct ledger_pg *pg = c->pg;
    c->state = PGC_CONNECTING;
    c->prepared = 0; /* a new session has no prepared statements */
    c->preparing = -1;
    c->no_prepare = 0;
    c->conn = PQconnectStart(pg->conninfo);
    if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD) {
        conn_fail(c, "connect", c->conn ? PQerrorMessage(c->conn) : "out of memory");
        return;
    }
    PQsetNoticeProcessor(c->conn, on_notice, c);
    /* Bounds the whole connect as well as each request. */
    arm_timeout(c);
    connect_step(c, PGRES_POLLING_WRITING);
}

/* ---- public ----------------------------------------------------------------- */

struct ledger_pg *ledger_pg_new(struct event_base *base, const struct ledger_pg_opts *o,
                                ledger_pg_reply_fn cb, void *arg)
{
    if (!base || !o || !o->conninfo || !cb || o->nconns > LEDGER_PG_MAX_CONNS)
        return NULL;
    struct ledger_pg *pg = calloc(1, sizeof *pg);
    if (!pg)
        return NULL;
    pg->base = base;
    pg->cb = cb;
    pg->cb_arg = arg;
    pg->nconns = o->nconns ? o->nconns : 4;
    pg->timeout_ms = o->request_timeout_ms ? o->request_timeout_ms : 15000;
    pg->busy_once = o->busy_once;
    pg->group_max = o->group_max ? o->group_max : 16;
    if (pg->group_max > LEDGER_PG_MAX_GROUP)
        pg->group_max = LEDGER_PG_MAX_GROUP;
    pg->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : 100;
    pg->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : 1000;
    if (pg->backoff_max_ms < pg->backoff_min_ms)
        pg->backoff_max_ms = pg->backoff_min_ms;
    /* A relative socket directory means the working directory of now. */
    char err[256], msg[256];
    if (dbconn_resolve(o->conninfo, &pg->conninfo, err, sizeof err) != OTA_OK) {
        clean_msg(err, msg, sizeof msg);
        log_error("db_conninfo", "detail=\"%s\"", msg);
        goto fail;
    }
    pg->ev_deliver = event_new(base, -1, 0, on_deliver, pg);
    if (!pg->ev_deliver)
        goto fail;
    for (unsigned i = 0; i < pg->nconns; i++) {
        struct pgc *c = &pg->conns[i];
        c->pg = pg;
        c->idx = i;
        c->backoff_ms = pg->backoff_min_ms;
        c->ev_timer = evtimer_new(base, on_backoff, c);
        if (!c->ev_timer)
            goto fail;
    }
    for (unsigned i = 0; i < pg->nconns; i++)
        conn_connect(&pg->conns[i]);
    return pg;
fail:
    ledger_pg_free(pg);
    return NULL;
}

void ledger_pg_free(struct ledger_pg *pg)
{
    if (!pg)
        return;
    for (unsigned i = 0; i < pg->nconns; i++) {
        struct pgc *c = &pg->conns[i];
        conn_close(c);
        if (c->ev_timer)
            event_free(c->ev_timer);
        if (c->job) {
            if (c->job->ev_retry)
                event_free(c->job->ev_retry);
            sodium_memzero(&c->job->req, sizeof c->job->req);
            free(c->job);
        }
        for (unsigned k = 0; k < c->ngroup; k++) {
            sodium_memzero(&c->group[k]->req, sizeof c->group[k]->req);
            free(c->group[k]);
        }
    }
    while (pg->q_head) {
        struct pg_job *j = pg->q_head;
        pg->q_head = j->next;
        if (j->ev_retry)
            event_free(j->ev_retry);
        sodium_memzero(&j->req, sizeof j->req);
        free(j);
    }
    while (pg->busy) {
        struct pg_job *j = pg->busy;
        pg->busy = j->next;
        event_free(j->ev_retry);
        sodium_memzero(&j->req, sizeof j->req);
        free(j);
    }
    for (size_t i = 0; i < pg->nfailed; i++) {
        if (pg->failed[i].job->ev_retry)
            event_free(pg->failed[i].job->ev_retry);
        sodium_memzero(&pg->failed[i].job->req, sizeof pg->failed[i].job->req);
        free(pg->failed[i].job);
    }
    free(pg->failed);
    if (pg->orphans)
        sodium_memzero(pg->orphans, pg->caporphans * sizeof *pg->orphans);
    free(pg->orphans);
    if (pg->ev_deliver)
        event_free(pg->ev_deliver);
    dbconn_free(pg->conninfo);
    free(pg);
}

void ledger_pg_submit(struct ledger_pg *pg, const struct ledger_req *req)
{
    struct pg_job *job = calloc(1, sizeof *job);
    if (!job) {
        log_error("out_of_memory", "what=ledger_job req=%s session=%" PRIu64,
                  ledger_req_name(req->type), req->session);
        return;
    }
    job->req = *req;
    job->submit_us = mono_us();
    enqueue(pg, job);
}

/* Queues a job, or answers it ERROR from the loop without a database. */
static void enqueue(struct ledger_pg *pg, struct pg_job *job)
{
    if (usable_conns(pg) == 0) {
        fail_later(pg, job, LEDGER_ST_ERROR, 1);
        return;
    }
    if (pg->q_tail)
        pg->q_tail->next = job;
    else
        pg->q_head = job;
    pg->q_tail = job;
    pg->queued++;
    dispatch(pg);
}

int ledger_pg_ready(const struct ledger_pg *pg)
{
    return pg && usable_conns(pg) > 0;
}

size_t ledger_pg_pending(const struct ledger_pg *pg)
{
    return pg ? pg->queued + pg->inflight + pg->nfailed + pg->nbusy : 0;
}

void ledger_pg_latency(const struct ledger_pg *pg, struct ledger_pg_latency *out)
{
    *out = pg->lat;
}

void ledger_pg_group_stats(const struct ledger_pg *pg, struct ledger_pg_groups *out)
{
    out->groups = pg->groups;
    out->grouped = pg->grouped;
    out->failed = pg->groups_failed;
}

void ledger_pg_counts(struct ledger_pg *pg, uint32_t old_s, ledger_pg_counts_fn cb, void *arg)
{
    struct pg_job *job = calloc(1, sizeof *job);
    if (!job) {
        log_error("out_of_memory", "what=ledger_counts");
        return;
    }
    job->counts_cb = cb;
    job->counts_arg = arg;
    job->old_s = old_s;
    job->submit_us = mono_us();
    enqueue(pg, job);
}

int ledger_pg_check(const char *conninfo, char *err, size_t errlen)
{
    char *resolved = NULL, why[256];
    int rc = dbconn_resolve(conninfo, &resolved, why, sizeof why);
    if (rc != OTA_OK) {
        clean_msg(why, err, errlen);
        return rc == OTA_ERR_NOMEM ? rc : OTA_ERR_IO;
    }
    PGconn *conn = PQconnectdb(resolved);
    dbconn_free(resolved);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        clean_msg(conn ? PQerrorMessage(conn) : "out of memory", err, errlen);
        PQfinish(conn);
        return OTA_ERR_IO;
    }
    PGresult *res = PQexec(conn, "SHOW synchronous_commit");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        clean_msg(PQerrorMessage(conn), err, errlen);
        rc = OTA_ERR_IO;
    } else {
        const char *v = PQgetvalue(res, 0, 0);
        if (strcmp(v, "on") != 0 && strcmp(v, "remote_apply") != 0) {
            char msg[64];
            clean_msg(v, msg, sizeof msg);
            snprintf(err, errlen, "synchronous_commit is '%s'; the ledger needs 'on'", msg);
            rc = OTA_ERR_STATE;
        }
    }
    PQclear(res);
    PQfinish(conn);
    return rc;
}
