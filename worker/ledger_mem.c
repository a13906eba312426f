/* ledger_mem: the in-memory ledger of ledger_mem.h, with the semantics
 * ledger.h requires of the database (idempotent writes, committed and
 * voided excluding each other, atomic reservation, leases with expiry,
 * rate-limit windows).  For tests only: nothing here is durable.
 *
 * Must never be linked into the production worker's ledger path. */
#include "ledger_mem.h"

#include <stdlib.h>
#include <string.h>

#include "ota_err.h"

#define MEM_CODES 256
#define MEM_TXNS 1024
#define MEM_CARDS 64
#define MEM_FAILURES 1024
#define MEM_UNIX_BASE 1700000000LL

struct mem_code {
    uint8_t hash[CODE_HASH_LEN];
    int64_t amount;
    int expired;
    enum ledger_mem_code_state state;
    int txn; /* index of the reserving / using txn, -1 */
    int commits;
};

struct mem_txn {
    uint8_t id[LEDGER_TXN_ID_LEN];
    struct ledger_card card;
    int code;
    int64_t amount;
    enum ledger_mem_txn_state state;
    uint32_t flags;
    int integrity_seen;
};

struct mem_card {
    struct ledger_card card;
    int frozen;
    uint32_t integrity;
    int personalized;
    int lease;
    uint8_t holder[LEDGER_HOLDER_LEN];
    uint64_t lease_until;
};

struct mem_failure {
    struct ledger_card card;
    char peer[WIRE_MAX_PEER + 1];
    uint64_t at_ms;
};

struct ledger_mem {
    struct mem_code codes[MEM_CODES];
    int ncodes;
    struct mem_txn txns[MEM_TXNS];
    int ntxns;
    struct mem_card cards[MEM_CARDS];
    int ncards;
    struct mem_failure failures[MEM_FAILURES];
    int nfailures;
    enum ledger_mem_fault fail_next[LEDGER_REQ_LAST + 1];
    int fail_left[LEDGER_REQ_LAST + 1];
    unsigned requests[LEDGER_REQ_LAST + 1];
    unsigned total;
};

struct ledger_mem *ledger_mem_new(void)
{
    return calloc(1, sizeof(struct ledger_mem));
}

void ledger_mem_free(struct ledger_mem *m)
{
    free(m);
}

static int same_card(const struct ledger_card *a, const struct ledger_card *b)
{
    return a->uid_len == b->uid_len && a->uid_len <= WIRE_MAX_UID &&
           memcmp(a->uid, b->uid, a->uid_len) == 0;
}

static struct mem_card *find_card(const struct ledger_mem *m, const struct ledger_card *c)
{
    for (int i = 0; i < m->ncards; i++)
        if (same_card(&m->cards[i].card, c))
            return (struct mem_card *)&m->cards[i];
    return NULL;
}

static struct mem_card *get_card(struct ledger_mem *m, const struct ledger_card *c)
{
    struct mem_card *k = find_card(m, c);
    if (k || m->ncards >= MEM_CARDS)
        return k;
    k = &m->cards[m->ncards++];
    memset(k, 0, sizeof(*k));
    k->card = *c;
    return k;
}

static int find_code(const struct ledger_mem *m, const uint8_t *hash)
{
    for (int i = 0; i < m->ncodes; i++)
        if (memcmp(m->codes[i].hash, hash, CODE_HASH_LEN) == 0)
            return i;
    return -1;
}

static int find_txn(const struct ledger_mem *m, const uint8_t *id)
{
    for (int i = 0; i < m->ntxns; i++)
        if (memcmp(m->txns[i].id, id, LEDGER_TXN_ID_LEN) == 0)
            return i;
    return -1;
}

int ledger_mem_add_code(struct ledger_mem *m, const uint8_t hash[CODE_HASH_LEN], int64_t amount,
                        int expired)
{
    if (find_code(m, hash) >= 0)
        return OTA_ERR_INVAL;
    if (m->ncodes >= MEM_CODES)
        return OTA_ERR_LIMIT;
    struct mem_code *c = &m->codes[m->ncodes++];
    memset(c, 0, sizeof(*c));
    memcpy(c->hash, hash, CODE_HASH_LEN);
    c->amount = amount;
    c->expired = expired;
    c->state = LEDGER_MEM_CODE_ISSUED;
    c->txn = -1;
    return 0;
}

void ledger_mem_fail_next(struct ledger_mem *m, enum ledger_req_type type,
                          enum ledger_mem_fault fault)
{
    if ((int)type >= 1 && type <= LEDGER_REQ_LAST) {
        m->fail_next[type] = fault;
        m->fail_left[type]++;
    }
}

void ledger_mem_fail_clear(struct ledger_mem *m)
{
    memset(m->fail_left, 0, sizeof(m->fail_left));
}

unsigned ledger_mem_faults_left(const struct ledger_mem *m)
{
    unsigned n = 0;
    for (int i = 0; i <= LEDGER_REQ_LAST; i++)
        n += (unsigned)m->fail_left[i];
    return n;
}

static void card_state(const struct ledger_mem *m, const struct ledger_card *c,
                       struct ledger_card_state *st)
{
    memset(st, 0, sizeof(*st));
    const struct mem_card *k = find_card(m, c);
    if (k) {
        st->frozen = (uint8_t)k->frozen;
        st->integrity_failures = k->integrity;
    }
    for (int i = 0; i < m->ntxns; i++) {
        const struct mem_txn *t = &m->txns[i];
        if (!same_card(&t->card, c))
            continue;
        st->has_history = 1;
        if (t->state != LEDGER_MEM_TXN_RESERVED)
            continue;
        if (st->n_in_doubt >= LEDGER_MAX_IN_DOUBT) {
            st->in_doubt_more = 1;
            continue;
        }
        struct ledger_txn *o = &st->in_doubt[st->n_in_doubt++];
        memcpy(o->txn_id, t->id, LEDGER_TXN_ID_LEN);
        o->amount = t->amount;
        o->flags = t->integrity_seen ? LEDGER_FLAG_INTEGRITY : 0;
    }
    for (int i = m->ntxns - 1; i >= 0 && st->n_committed < LEDGER_MAX_COMMITTED; i--) {
        const struct mem_txn *t = &m->txns[i];
        if (!same_card(&t->card, c) || t->state != LEDGER_MEM_TXN_COMMITTED)
            continue;
        struct ledger_txn *o = &st->committed[st->n_committed++];
        memcpy(o->txn_id, t->id, LEDGER_TXN_ID_LEN);
        o->amount = t->amount;
        o->flags = 0;
    }
}

static enum ledger_status settle(struct ledger_mem *m, const struct ledger_req *req)
{
    int ti = find_txn(m, req->u.settle.txn_id);
    if (ti < 0 || !same_card(&m->txns[ti].card, &req->card))
        return LEDGER_ST_CONFLICT;
    struct mem_txn *t = &m->txns[ti];
    enum ledger_mem_txn_state want = req->u.settle.outcome == LEDGER_COMMITTED
                                         ? LEDGER_MEM_TXN_COMMITTED
                                         : LEDGER_MEM_TXN_VOIDED;
    if (req->u.settle.outcome != LEDGER_COMMITTED && req->u.settle.outcome != LEDGER_VOIDED)
        return LEDGER_ST_ERROR;
    if (t->state == want)
        return LEDGER_ST_OK;
    if (t->state != LEDGER_MEM_TXN_RESERVED)
        return LEDGER_ST_CONFLICT;
    t->state = want;
    struct mem_code *c = &m->codes[t->code];
    if (want == LEDGER_MEM_TXN_COMMITTED) {
        t->flags |= req->u.settle.flags;
        c->state = LEDGER_MEM_CODE_USED;
        c->commits++;
    } else {
        c->state = LEDGER_MEM_CODE_ISSUED;
        c->txn = -1;
    }
    return LEDGER_ST_OK;
}

static int failures_since(const struct ledger_mem *m, const struct ledger_card *card,
                          const char *peer, uint64_t since)
{
    int n = 0;
    for (int i = 0; i < m->nfailures; i++) {
        const struct mem_failure *f = &m->failures[i];
        if (f->at_ms < since)
            continue;
        if (card && same_card(&f->card, card))
            n++;
        if (peer && strcmp(f->peer, peer) == 0)
            n++;
    }
    return n;
}

static enum ledger_status reserve(struct ledger_mem *m, const struct ledger_card *card,
                                  const struct ledger_reserve_args *a, uint64_t now_ms,
                                  struct ledger_reservation *out)
{
    int ci = find_code(m, a->code_hash);
    enum ledger_status wrong = LEDGER_ST_OK;
    if (ci < 0 || m->codes[ci].expired)
        wrong = LEDGER_ST_CODE_INVALID;
    else if (m->codes[ci].state != LEDGER_MEM_CODE_ISSUED)
        wrong = LEDGER_ST_CODE_USED;
    if (wrong != LEDGER_ST_OK) {
        /* Only a wrong code meets the limits: a valid one always goes on. */
        uint64_t window = (uint64_t)a->window_s * 1000;
        uint64_t since = now_ms > window ? now_ms - window : 0;
        if (failures_since(m, card, NULL, since) >= (int)a->max_card_failures)
            return LEDGER_ST_LIMIT_EXCEEDED;
        if (a->peer[0] != '\0' &&
            failures_since(m, NULL, a->peer, since) >= (int)a->max_peer_failures)
            return LEDGER_ST_LIMIT_EXCEEDED;
        return wrong;
    }
    struct mem_code *c = &m->codes[ci];
    if (m->ntxns >= MEM_TXNS)
        return LEDGER_ST_ERROR;
    int ti = m->ntxns++;
    struct mem_txn *t = &m->txns[ti];
    memset(t, 0, sizeof(*t));
    /* Deterministic, unique ids: "memtxn" || counter. */
    memcpy(t->id, "memtxn", 6);
    t->id[12] = (uint8_t)(ti >> 24);
    t->id[13] = (uint8_t)(ti >> 16);
    t->id[14] = (uint8_t)(ti >> 8);
    t->id[15] = (uint8_t)ti;
    t->card = *card;
    t->code = ci;
    t->amount = c->amount;
    t->state = LEDGER_MEM_TXN_RESERVED;
    c->state = LEDGER_MEM_CODE_RESERVED;
    c->txn = ti;
    memcpy(out->txn_id, t->id, LEDGER_TXN_ID_LEN);
    out->amount = t->amount;
    out->unix_time = MEM_UNIX_BASE + (int64_t)(now_ms / 1000);
    return LEDGER_ST_OK;
}

static enum ledger_status lease_acquire(struct ledger_mem *m, const struct ledger_card *card,
                                        const struct ledger_lease_args *a, uint64_t now_ms)
{
    struct mem_card *k = get_card(m, card);
    if (!k)
        return LEDGER_ST_ERROR;
    if (k->lease && k->lease_until > now_ms && memcmp(k->holder, a->holder, LEDGER_HOLDER_LEN) != 0)
        return LEDGER_ST_BUSY;
    k->lease = 1;
    memcpy(k->holder, a->holder, LEDGER_HOLDER_LEN);
    k->lease_until = now_ms + a->ttl_ms;
    return LEDGER_ST_OK;
}

/* BEGIN: the lease, the state under it, and for a top-up on a clean card
 * (neither frozen nor in doubt) the reservation; the state is the one
 * before it. */
static enum ledger_status begin(struct ledger_mem *m, const struct ledger_req *req, uint64_t now_ms,
                                struct ledger_reply *rep)
{
    enum ledger_status st = lease_acquire(m, &req->card, &req->u.begin.lease, now_ms);
    if (st != LEDGER_ST_OK)
        return st;
    struct ledger_card_state *cs = &rep->u.begin.card;
    card_state(m, &req->card, cs);
    if (!req->u.begin.reserve || cs->frozen || cs->n_in_doubt > 0)
        return LEDGER_ST_OK;
    st = reserve(m, &req->card, &req->u.begin.code, now_ms, &rep->u.begin.res);
    rep->u.begin.reserved = st == LEDGER_ST_OK;
    return st;
}

static enum ledger_status apply(struct ledger_mem *m, const struct ledger_req *req, uint64_t now_ms,
                                struct ledger_reply *rep)
{
    struct mem_card *k;
    switch (req->type) {
    case LEDGER_LEASE_ACQUIRE:
        return lease_acquire(m, &req->card, &req->u.lease, now_ms);
    case LEDGER_BEGIN:
        return begin(m, req, now_ms, rep);
    case LEDGER_LEASE_RELEASE:
        k = find_card(m, &req->card);
        if (k && k->lease && memcmp(k->holder, req->u.lease.holder, LEDGER_HOLDER_LEN) == 0)
            k->lease = 0;
        return LEDGER_ST_OK;
    case LEDGER_CARD_STATE:
        card_state(m, &req->card, &rep->u.card);
        return LEDGER_ST_OK;
    case LEDGER_SETTLE: {
        enum ledger_status st = settle(m, req);
        k = find_card(m, &req->card);
        if (st == LEDGER_ST_OK && req->u.settle.release && k && k->lease &&
            memcmp(k->holder, req->u.settle.holder, LEDGER_HOLDER_LEN) == 0)
            k->lease = 0;
        rep->u.released = st == LEDGER_ST_OK && req->u.settle.release;
        return st;
    }
    case LEDGER_RESERVE:
        return reserve(m, &req->card, &req->u.reserve, now_ms, &rep->u.reserve);
    case LEDGER_CODE_FAILURE:
        if (m->nfailures >= MEM_FAILURES)
            return LEDGER_ST_ERROR;
        m->failures[m->nfailures].card = req->card;
        memcpy(m->failures[m->nfailures].peer, req->u.code_failure.peer, WIRE_MAX_PEER + 1);
        m->failures[m->nfailures].peer[WIRE_MAX_PEER] = '\0';
        m->failures[m->nfailures].at_ms = now_ms;
        m->nfailures++;
        return LEDGER_ST_OK;
    case LEDGER_INTEGRITY_FAILURE:
        if (!(k = get_card(m, &req->card)))
            return LEDGER_ST_ERROR;
        k->integrity++;
        rep->u.integrity_failures = k->integrity;
        if (req->u.integrity.has_txn) {
            int ti = find_txn(m, req->u.integrity.txn_id);
            if (ti >= 0 && same_card(&m->txns[ti].card, &req->card))
                m->txns[ti].integrity_seen = 1;
        }
        return LEDGER_ST_OK;
    case LEDGER_INTEGRITY_RESET:
        if ((k = find_card(m, &req->card)))
            k->integrity = 0;
        return LEDGER_ST_OK;
    case LEDGER_FREEZE:
        if (!(k = get_card(m, &req->card)))
            return LEDGER_ST_ERROR;
        k->frozen = 1;
        return LEDGER_ST_OK;
    case LEDGER_PERSONALIZED:
        if (!(k = get_card(m, &req->card)))
            return LEDGER_ST_ERROR;
        k->personalized = 1;
        return LEDGER_ST_OK;
    }
    return LEDGER_ST_ERROR;
}

int ledger_mem_handle(struct ledger_mem *m, const struct ledger_req *req, uint64_t now_ms,
                      struct ledger_reply *rep)
{
    memset(rep, 0, sizeof(*rep));
    rep->id = req->id;
    rep->type = req->type;
    m->total++;
    if ((int)req->type < 1 || req->type > LEDGER_REQ_LAST) {
        rep->status = LEDGER_ST_ERROR;
        return OTA_ERR_INVAL;
    }
    m->requests[req->type]++;
    enum ledger_mem_fault fault = 0;
    if (m->fail_left[req->type] > 0) {
        fault = m->fail_next[req->type];
        m->fail_left[req->type]--;
    }
    if (fault == LEDGER_MEM_FAIL_BEFORE || fault == LEDGER_MEM_FAIL_DOWN) {
        rep->status = LEDGER_ST_ERROR;
        rep->db_down = fault == LEDGER_MEM_FAIL_DOWN;
        return 0;
    }
    rep->status = apply(m, req, now_ms, rep);
    if (fault == LEDGER_MEM_FAIL_AFTER) {
        memset(&rep->u, 0, sizeof(rep->u));
        rep->status = LEDGER_ST_ERROR;
    }
    return rep->status == LEDGER_ST_ERROR && !fault ? OTA_ERR_LIMIT : 0;
}

enum ledger_mem_code_state ledger_mem_code_state(const struct ledger_mem *m,
                                                 const uint8_t hash[CODE_HASH_LEN])
{
    int i = find_code(m, hash);
    return i < 0 ? LEDGER_MEM_CODE_NONE : m->codes[i].state;
}

int ledger_mem_code_commits(const struct ledger_mem *m, const uint8_t hash[CODE_HASH_LEN])
{
    int i = find_code(m, hash);
    return i < 0 ? 0 : m->codes[i].commits;
}

enum ledger_mem_txn_state ledger_mem_txn_state(const struct ledger_mem *m,
                                               const uint8_t txn_id[LEDGER_TXN_ID_LEN])
{
    int i = find_txn(m, txn_id);
    return i < 0 ? LEDGER_MEM_TXN_NONE : m->txns[i].state;
}

uint32_t ledger_mem_txn_flags(const struct ledger_mem *m, const uint8_t txn_id[LEDGER_TXN_ID_LEN])
{
    int i = find_txn(m, txn_id);
    return i < 0 ? 0 : m->txns[i].flags;
}

int64_t ledger_mem_committed_sum(const struct ledger_mem *m, const struct ledger_card *card)
{
    int64_t sum = 0;
    for (int i = 0; i < m->ntxns; i++)
        if (same_card(&m->txns[i].card, card) && m->txns[i].state == LEDGER_MEM_TXN_COMMITTED)
            sum += m->txns[i].amount;
    return sum;
}

int ledger_mem_committed_count(const struct ledger_mem *m, const struct ledger_card *card)
{
    int n = 0;
    for (int i = 0; i < m->ntxns; i++)
        if (same_card(&m->txns[i].card, card) && m->txns[i].state == LEDGER_MEM_TXN_COMMITTED)
            n++;
    return n;
}

int ledger_mem_in_doubt_count(const struct ledger_mem *m, const struct ledger_card *card)
{
    int n = 0;
    for (int i = 0; i < m->ntxns; i++)
        if (same_card(&m->txns[i].card, card) && m->txns[i].state == LEDGER_MEM_TXN_RESERVED)
            n++;
    return n;
}

int64_t ledger_mem_in_doubt_sum(const struct ledger_mem *m, const struct ledger_card *card)
{
    int64_t sum = 0;
    for (int i = 0; i < m->ntxns; i++)
        if (same_card(&m->txns[i].card, card) && m->txns[i].state == LEDGER_MEM_TXN_RESERVED)
            sum += m->txns[i].amount;
    return sum;
}

int ledger_mem_frozen(const struct ledger_mem *m, const struct ledger_card *card)
{
    const struct mem_card *k = find_card(m, card);
    return k ? k->frozen : 0;
}

int ledger_mem_personalized(const struct ledger_mem *m, const struct ledger_card *card)
{
    const struct mem_card *k = find_card(m, card);
    return k ? k->personalized : 0;
}

uint32_t ledger_mem_integrity_failures(const struct ledger_mem *m, const struct ledger_card *card)
{
    const struct mem_card *k = find_card(m, card);
    return k ? k->integrity : 0;
}

int ledger_mem_lease_held(const struct ledger_mem *m, const struct ledger_card *card,
                          uint64_t now_ms)
{
    const struct mem_card *k = find_card(m, card);
    return k && k->lease && k->lease_until > now_ms;
}

unsigned ledger_mem_requests(const struct ledger_mem *m, enum ledger_req_type type)
{
    if ((int)type == 0)
        return m->total;
    if ((int)type < 1 || type > LEDGER_REQ_LAST)
        return 0;
    return m->requests[type];
}

void ledger_mem_set_frozen(struct ledger_mem *m, const struct ledger_card *card, int frozen)
{
    struct mem_card *k = get_card(m, card);
    if (k)
        k->frozen = frozen;
}
