/* test_engine_harness: the driver loop between the engine, the card
 * simulator and the in-memory ledger, with fault injection (see the
 * header).  Time is simulated: it advances only to the engine's timer. */
#include "test_engine_harness.h"

#include <check.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card_profile.h"
#include "config.h"
#include "engine_cfg.h"
#include "ota_err.h"

static const uint8_t default_uid[7] = {0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x80};

/* ---- the in-memory ledger as a struct hx_ledger_ops ---- */

static void *mem_open(void)
{
    return ledger_mem_new();
}
static void mem_close(void *l)
{
    ledger_mem_free(l);
}
static void mem_handle(void *l, const struct ledger_req *req, uint64_t now_ms,
                       struct ledger_reply *rep)
{
    ledger_mem_handle(l, req, now_ms, rep);
}
static void mem_advance(void *l, const struct ledger_card *card, uint64_t ms)
{
    /* Its clock is the harness's own. */
    (void)l;
    (void)card;
    (void)ms;
}
static int mem_add_code(void *l, const uint8_t hash[CODE_HASH_LEN], int64_t amount)
{
    return ledger_mem_add_code(l, hash, amount, 0);
}
static void mem_fail_next(void *l, enum ledger_req_type type, enum ledger_mem_fault fault)
{
    ledger_mem_fail_next(l, type, fault);
}
static void mem_fail_clear(void *l)
{
    ledger_mem_fail_clear(l);
}
static unsigned mem_faults_left(void *l)
{
    return ledger_mem_faults_left(l);
}
static unsigned mem_requests(void *l)
{
    return ledger_mem_requests(l, 0);
}
static enum ledger_mem_code_state mem_code_state(void *l, const uint8_t hash[CODE_HASH_LEN])
{
    return ledger_mem_code_state(l, hash);
}
static int mem_code_commits(void *l, const uint8_t hash[CODE_HASH_LEN])
{
    return ledger_mem_code_commits(l, hash);
}
static enum ledger_mem_txn_state mem_txn_state(void *l, const uint8_t txn[LEDGER_TXN_ID_LEN])
{
    return ledger_mem_txn_state(l, txn);
}
static uint32_t mem_txn_flags(void *l, const uint8_t txn[LEDGER_TXN_ID_LEN])
{
    return ledger_mem_txn_flags(l, txn);
}
static int64_t mem_committed_sum(void *l, const struct ledger_card *card)
{
    return ledger_mem_committed_sum(l, card);
}
static int mem_committed_count(void *l, const struct ledger_card *card)
{
    return ledger_mem_committed_count(l, card);
}
static int64_t mem_in_doubt_sum(void *l, const struct ledger_card *card)
{
    return ledger_mem_in_doubt_sum(l, card);
}
static int mem_in_doubt_count(void *l, const struct ledger_card *card)
{
    return ledger_mem_in_doubt_count(l, card);
}
static int mem_lease_held(void *l, const struct ledger_card *card, uint64_t now_ms)
{
    return ledger_mem_lease_held(l, card, now_ms);
}

static const struct hx_ledger_ops mem_ops = {
    .open = mem_open,
    .close = mem_close,
    .handle = mem_handle,
    .advance = mem_advance,
    .add_code = mem_add_code,
    .fail_next = mem_fail_next,
    .fail_clear = mem_fail_clear,
    .faults_left = mem_faults_left,
    .requests = mem_requests,
    .code_state = mem_code_state,
    .code_commits = mem_code_commits,
    .txn_state = mem_txn_state,
    .txn_flags = mem_txn_flags,
    .committed_sum = mem_committed_sum,
    .committed_count = mem_committed_count,
    .in_doubt_sum = mem_in_doubt_sum,
    .in_doubt_count = mem_in_doubt_count,
    .lease_held = mem_lease_held,
    .shared = 0,
};

static const struct hx_ledger_ops *ledger_ops = &mem_ops;

void hx_set_ledger(const struct hx_ledger_ops *ops)
{
    ledger_ops = ops ? ops : &mem_ops;
}

static void init_common(struct hx *h)
{
    memset(h, 0, sizeof(*h));
    ck_assert_int_ge(sodium_init(), 0);
    randombytes_buf(&h->keys, sizeof(h->keys));
    memcpy(h->uid, default_uid, sizeof(h->uid));
    snprintf(h->peer, sizeof(h->peer), "192.0.2.7");
    h->lops = ledger_ops;
    if (h->lops->shared) {
        /* A ledger that outlives this case: a card and an address of its own. */
        randombytes_buf(h->uid + 1, sizeof(h->uid) - 1);
        uint32_t p = randombytes_random();
        snprintf(h->peer, sizeof(h->peer), "10.%u.%u.%u", (p >> 16) & 0xff, (p >> 8) & 0xff,
                 p & 0xff);
    }
    h->lcard.uid_len = sizeof(h->uid);
    memcpy(h->lcard.uid, h->uid, sizeof(h->uid));
    /* The defaults of the configuration table, as ota-worker reads them. */
    struct cfg *c = cfg_new();
    char err[256];
    ck_assert_ptr_nonnull(c);
    ck_assert_msg(eng_config_read(c, &h->cfg, err, sizeof err) == 0, "%s", err);
    cfg_free(c);
    h->ctx = eng_new(&h->cfg, &h->keys);
    ck_assert_ptr_nonnull(h->ctx);
    h->ldb = h->lops->open();
    ck_assert_ptr_nonnull(h->ldb);
    h->lm = h->lops == &mem_ops ? h->ldb : NULL;
    h->now = 1000;
    h->next_session = 1;
}

void hx_init(struct hx *h, int32_t balance)
{
    init_common(h);
    h->card = sim_card_new(h->uid, sizeof(h->uid), SIM_PICC_DES0);
    ck_assert_ptr_nonnull(h->card);
    uint8_t app[4][16];
    memcpy(app, h->keys.app, sizeof(app));
    ck_assert_int_eq(
        sim_card_personalize(h->card, (const uint8_t(*)[16])app, h->cfg.system_id, balance), 0);
    sodium_memzero(app, sizeof(app));
    h->initial_balance = balance;
}

void hx_init_factory(struct hx *h, enum sim_picc_key picc)
{
    init_common(h);
    h->card = sim_card_new(h->uid, sizeof(h->uid), picc);
    ck_assert_ptr_nonnull(h->card);
    h->initial_balance = 0;
}

void hx_reconfigure(struct hx *h)
{
    eng_ctx_free(h->ctx);
    h->ctx = eng_new(&h->cfg, &h->keys);
    ck_assert_ptr_nonnull(h->ctx);
}

void hx_free(struct hx *h)
{
    eng_ctx_free(h->ctx);
    h->lops->close(h->ldb);
    sim_card_free(h->card);
    sodium_memzero(&h->keys, sizeof(h->keys));
}

int hx_add_code(struct hx *h, int64_t amount)
{
    ck_assert_int_lt(h->ncodes, HX_MAX_CODES);
    struct hx_code *c = &h->codes[h->ncodes];
    ck_assert_int_eq(code_generate(c->text, sizeof(c->text)), 0);
    char norm[CODE_NORM_LEN + 1];
    ck_assert_int_eq(code_normalize(c->text, norm, sizeof(norm)), 0);
    code_hash(h->keys.code_hmac, norm, c->hash);
    c->amount = amount;
    ck_assert_int_eq(h->lops->add_code(h->ldb, c->hash, amount), 0);
    return h->ncodes++;
}

static void transceive(struct hx *h, struct hx_run *r, const uint8_t *apdu, size_t len,
                       uint8_t *resp, size_t *rlen)
{
    static const uint8_t select_app[] = {0x90,       0x5A,       0x00,       0x00, 0x03,
                                         PROF_AID_0, PROF_AID_1, PROF_AID_2, 0x00};
    if (len == sizeof select_app && memcmp(apdu, select_app, len) == 0)
        r->select_app_seen++;
    struct sim_card *card =
        h->relay_card && r->select_app_seen >= h->relay_select_app ? h->relay_card : h->card;
    ck_assert_int_eq(sim_card_transceive(card, apdu, len, resp, WIRE_MAX_APDU, rlen), 0);
    r->card_exchanges++;
}

static void relay_send(struct hx *h, const uint8_t *apdu, size_t len)
{
    uint8_t resp[WIRE_MAX_APDU];
    size_t rlen = 0;
    ck_assert_int_eq(sim_card_transceive(h->card, apdu, len, resp, sizeof(resp), &rlen), 0);
}

static void relay_commit(struct hx *h)
{
    static const uint8_t commit[] = {0x90, 0xC7, 0x00, 0x00, 0x00};
    relay_send(h, commit, sizeof(commit));
}

/* ClearRecordFile of file 2: the profile grants it to no key. */
static void relay_clear(struct hx *h)
{
    static const uint8_t clear[] = {0x90, 0xEB, 0x00, 0x00, 0x01, 0x02, 0x00};
    relay_send(h, clear, sizeof(clear));
}

/* What a v2 client does: the card's answers in order, stopping after the
 * first that does not end in 91 00 / 91 AF. */
static int answer_goes_on(const uint8_t *resp, size_t rlen)
{
    return rlen >= 2 && resp[rlen - 2] == 0x91 &&
           (resp[rlen - 1] == 0x00 || resp[rlen - 1] == 0xAF);
}

struct batch_state {
    uint8_t prev[WIRE_MAX_APDU];
    size_t prev_len;
    uint8_t (*old)[WIRE_MAX_APDU];
    size_t *old_len;
};

static void keep_answer(struct hx *h, struct hx_run *r, int k, const uint8_t *resp, size_t rlen)
{
    if (k < 64) {
        r->answer_len[k] = (int)rlen;
        memcpy(h->answers[k], resp, rlen);
        h->answer_lens[k] = rlen;
    }
}

/* One batch of a v2 client through the card and the relay's fault; feeds
 * the engine the one `responses` message (or none, or client gone). */
static void run_batch(struct hx *h, struct hx_run *r, struct eng_session *s,
                      struct wire_bytes *apdus, int n, const struct hx_fault *f,
                      struct batch_state *bs, struct eng_actions *acts)
{
    struct wire_bytes ans[WIRE_MAX_BATCH + 1];
    int na = 0;
    uint8_t err = 0;
    enum { DELIVER, DROP, GONE } how = DELIVER;
    int extra = 0, swap_at = -1;
    r->batches++;
    h->now += 3;
    size_t pl = strlen(r->plan);
    for (int j = 0; j < n && pl + 5 < sizeof(r->plan); j++)
        pl += (size_t)snprintf(r->plan + pl, sizeof(r->plan) - pl, "%s%02x%s",
                               j == 0 ? (pl ? " [" : "[") : " ", apdus[j].data[1],
                               j == n - 1 ? "]" : "");
    for (int j = 0; j < n; j++) {
        int k = r->exchanges++;
        struct wire_bytes *a = &ans[na];
        uint8_t *resp = a->data;
        size_t rlen = 0;
        int faulted = f && f->kind != HX_NONE && f->at == k;
        if (faulted)
            r->fault_applied = 1;
        enum hx_fault_kind kind = faulted ? f->kind : HX_NONE;
        if (kind == HX_LOST_BEFORE) {
            err = WIRE_CERR_LOST_TAG;
            break;
        }
        if (kind == HX_PREFIX)
            break;
        if (kind == HX_RELAY_COMMIT)
            relay_commit(h);
        if (kind == HX_RELAY_CLEAR)
            relay_clear(h);
        transceive(h, r, apdus[j].data, apdus[j].len, resp, &rlen);
        if (kind == HX_LOST_AFTER || kind == HX_TEAR) {
            if (kind == HX_TEAR)
                sim_card_power_cycle(h->card);
            err = WIRE_CERR_LOST_TAG;
            break;
        }
        if (kind == HX_GONE_AFTER) {
            how = GONE;
            break;
        }
        if (kind == HX_DROP) {
            how = DROP;
            break;
        }
        if (kind == HX_RELAY_COMMIT_AFTER)
            relay_commit(h);
        if (kind == HX_TAMPER)
            resp[(size_t)f->pos % rlen] ^= 0x01;
        if (kind == HX_REPLAY && bs->prev_len > 0) {
            memcpy(resp, bs->prev, bs->prev_len);
            rlen = bs->prev_len;
        }
        if (kind == HX_REPLAY_OLD && k < 64 && bs->old_len[k] > 0) {
            memcpy(resp, bs->old[k], bs->old_len[k]);
            rlen = bs->old_len[k];
        }
        if (kind == HX_EXTRA)
            extra = 1;
        if (kind == HX_REORDER)
            swap_at = na;
        a->len = (uint16_t)rlen;
        keep_answer(h, r, k, resp, rlen);
        memcpy(bs->prev, resp, rlen);
        bs->prev_len = rlen;
        na++;
        if (extra) {
            /* One answer more than asked, right after this one. */
            ans[na] = ans[na - 1];
            na++;
            break;
        }
        if (!answer_goes_on(resp, rlen))
            break;
    }
    if (swap_at >= 0 && swap_at + 1 < na) {
        struct wire_bytes tmp = ans[swap_at];
        ans[swap_at] = ans[swap_at + 1];
        ans[swap_at + 1] = tmp;
    }
    if (how == GONE) {
        eng_on_client_gone(s, h->now, acts);
    } else if (how == DROP) {
        ck_assert(acts->timer_at_ms > h->now);
        h->now = acts->timer_at_ms;
        eng_on_timeout(s, h->now, acts);
    } else if (na == 0 && err == 0) {
        /* An empty `responses` is bad input: the gateway ends the session. */
        eng_on_client_gone(s, h->now, acts);
    } else if (na == 0) {
        eng_on_client_error(s, err, h->now, acts);
    } else {
        eng_on_card_responses(s, ans, (size_t)na, err, h->now, acts);
    }
}

static enum eng_token_verdict token_verdict(const struct hx *h, const struct eng_token *t)
{
    if (h->token_verdict)
        return h->token_verdict;
    if (h->token_hash[0] == '\0')
        return ENG_TOKEN_WRONG;
    return crypto_pwhash_str_verify(h->token_hash, t->token, t->len) == 0 ? ENG_TOKEN_OK
                                                                          : ENG_TOKEN_WRONG;
}

void hx_run_op(struct hx *h, uint8_t op, const char *authcode, uint8_t listener, const uint8_t *uid,
               size_t uid_len, const struct hx_fault *f, struct hx_run *r)
{
    memset(r, 0, sizeof(*r));
    r->reserve_at = -1;
    r->first_money = -1;
    struct wire_open open;
    memset(&open, 0, sizeof(open));
    open.op = op;
    open.listener = listener;
    if (!uid) {
        uid = h->uid;
        uid_len = sizeof(h->uid);
    }
    open.uid_len = (uint8_t)uid_len;
    memcpy(open.uid, uid, uid_len);
    if (authcode) {
        open.authcode_len = (uint16_t)strlen(authcode);
        ck_assert_int_le(open.authcode_len, WIRE_MAX_AUTHCODE);
        memcpy(open.authcode, authcode, open.authcode_len);
    }
    snprintf(open.peer, sizeof(open.peer), "%s", h->peer);
    open.peer_len = (uint8_t)strlen(open.peer);
    open.batch = (uint8_t)(h->batch > 1 ? h->batch : 1);

    struct eng_actions acts;
    unsigned ledger_before = h->lops->requests(h->ldb);
    r->open_ms = h->now;
    struct eng_session *s = eng_open(h->ctx, h->next_session++, &open, h->now, &acts);
    ck_assert_ptr_nonnull(s);
    uint8_t prev_answer[WIRE_MAX_APDU];
    size_t prev_len = 0;
    static uint8_t old[64][WIRE_MAX_APDU];
    static size_t old_len[64];
    memcpy(old, h->answers, sizeof(old));
    memcpy(old_len, h->answer_lens, sizeof(old_len));
    memset(h->answer_lens, 0, sizeof(h->answer_lens));
    struct batch_state bs = {.prev_len = 0, .old = old, .old_len = old_len};
    for (int iter = 0; iter < 10000; iter++) {
        int have_apdu = 0, have_req = 0, have_token = 0;
        enum eng_token_verdict verdict = ENG_TOKEN_WRONG;
        struct wire_bytes apdu;
        struct wire_bytes batch[WIRE_MAX_BATCH];
        struct ledger_req req;
        for (size_t i = 0; i < acts.n; i++) {
            const struct eng_action *a = &acts.a[i];
            ck_assert(!r->done);
            switch (a->type) {
            case ENG_A_APDU:
                ck_assert(!have_req);
                ck_assert_int_lt(have_apdu, h->batch > 1 ? h->batch : 1);
                apdu = a->u.apdu;
                batch[have_apdu] = a->u.apdu;
                have_apdu++;
                if (r->first_money < 0 && a->u.apdu.len > 1 &&
                    (a->u.apdu.data[1] == 0x3B || a->u.apdu.data[1] == 0x0C ||
                     a->u.apdu.data[1] == 0xC7))
                    r->first_money = r->exchanges + have_apdu - 1;
                r->last_apdu_ms = h->now;
                break;
            case ENG_A_LEDGER:
                ck_assert(!have_apdu && !have_req);
                req = a->u.ledger;
                have_req = 1;
                break;
            case ENG_A_RESULT:
                ck_assert(!r->have_result);
                r->have_result = 1;
                r->result = a->u.result;
                break;
            case ENG_A_PHASE:
                if (a->u.at_risk)
                    r->at_risk_seen = 1;
                break;
            case ENG_A_MODAL:
                r->modals++;
                break;
            case ENG_A_TOKEN:
                ck_assert(!have_token && !have_apdu && !have_req);
                have_token = 1;
                r->token_checks++;
                verdict = token_verdict(h, &a->u.token);
                break;
            case ENG_A_DONE:
                ck_assert(r->have_result);
                r->done = 1;
                break;
            }
        }
        if (r->done) {
            ck_assert(!have_apdu && !have_req && !have_token);
            break;
        }
        if (have_token) {
            eng_on_token_verdict(s, verdict, h->now, &acts);
            continue;
        }
        if (have_req) {
            struct ledger_reply rep;
            h->lops->handle(h->ldb, &req, h->now, &rep);
            int reserved =
                (req.type == LEDGER_RESERVE && rep.status == LEDGER_ST_OK) ||
                (req.type == LEDGER_BEGIN && rep.status == LEDGER_ST_OK && rep.u.begin.reserved);
            if (reserved && r->reserve_at < 0)
                r->reserve_at = r->exchanges;
            eng_on_ledger_reply(s, &rep, h->now, &acts);
            continue;
        }
        if (!have_apdu) {
            ck_assert_msg(acts.timer_at_ms != 0, "engine stuck without a timer");
            if (acts.timer_at_ms > h->now)
                hx_advance(h, acts.timer_at_ms - h->now);
            eng_on_timeout(s, h->now, &acts);
            continue;
        }
        if (h->batch > 1) {
            run_batch(h, r, s, batch, have_apdu, f, &bs, &acts);
            continue;
        }
        r->batches++;
        int k = r->exchanges++;
        uint8_t resp[WIRE_MAX_APDU];
        size_t rlen = 0;
        h->now += 3;
        if (f && f->kind != HX_NONE && f->at == k) {
            r->fault_applied = 1;
            switch (f->kind) {
            case HX_LOST_BEFORE:
                eng_on_client_error(s, WIRE_CERR_LOST_TAG, h->now, &acts);
                continue;
            case HX_LOST_AFTER:
                transceive(h, r, apdu.data, apdu.len, resp, &rlen);
                eng_on_client_error(s, WIRE_CERR_LOST_TAG, h->now, &acts);
                continue;
            case HX_GONE_AFTER:
                transceive(h, r, apdu.data, apdu.len, resp, &rlen);
                eng_on_client_gone(s, h->now, &acts);
                continue;
            case HX_TEAR:
                transceive(h, r, apdu.data, apdu.len, resp, &rlen);
                sim_card_power_cycle(h->card);
                eng_on_client_error(s, WIRE_CERR_LOST_TAG, h->now, &acts);
                continue;
            case HX_DROP:
                transceive(h, r, apdu.data, apdu.len, resp, &rlen);
                ck_assert(acts.timer_at_ms > h->now);
                hx_advance(h, acts.timer_at_ms - h->now);
                eng_on_timeout(s, h->now, &acts);
                continue;
            case HX_TAMPER:
                transceive(h, r, apdu.data, apdu.len, resp, &rlen);
                resp[(size_t)f->pos % rlen] ^= 0x01;
                break;
            case HX_REPLAY:
                transceive(h, r, apdu.data, apdu.len, resp, &rlen);
                if (prev_len > 0) {
                    memcpy(resp, prev_answer, prev_len);
                    rlen = prev_len;
                }
                break;
            case HX_REPLAY_OLD:
                transceive(h, r, apdu.data, apdu.len, resp, &rlen);
                if (k < 64 && old_len[k] > 0) {
                    memcpy(resp, old[k], old_len[k]);
                    rlen = old_len[k];
                }
                break;
            case HX_RELAY_COMMIT:
                relay_commit(h);
                transceive(h, r, apdu.data, apdu.len, resp, &rlen);
                break;
            case HX_RELAY_COMMIT_AFTER:
                transceive(h, r, apdu.data, apdu.len, resp, &rlen);
                relay_commit(h);
                break;
            default:
                transceive(h, r, apdu.data, apdu.len, resp, &rlen);
                break;
            }
        } else {
            transceive(h, r, apdu.data, apdu.len, resp, &rlen);
        }
        if (k < 64) {
            r->answer_len[k] = (int)rlen;
            memcpy(h->answers[k], resp, rlen);
            h->answer_lens[k] = rlen;
        }
        memcpy(prev_answer, resp, rlen);
        prev_len = rlen;
        eng_on_card_response(s, resp, rlen, h->now, &acts);
    }
    ck_assert_msg(r->done, "session did not finish");
    r->ledger_requests = (int)(h->lops->requests(h->ldb) - ledger_before);
    /* After DONE every event is ignored. */
    eng_on_timeout(s, h->now + 1000000, &acts);
    ck_assert_uint_eq(acts.n, 0);
    eng_free(s);
    h->now += 10;
}

void hx_check(struct hx *h, struct hx_run *r)
{
    hx_run_op(h, WIRE_OP_CHECK, "", WIRE_LISTENER_PUBLIC, NULL, 0, NULL, r);
}

void hx_topup(struct hx *h, int code, const struct hx_fault *f, struct hx_run *r)
{
    hx_run_op(h, WIRE_OP_TOPUP, h->codes[code].text, WIRE_LISTENER_PUBLIC, NULL, 0, f, r);
}

int32_t hx_balance(const struct hx *h)
{
    int32_t v = 0;
    ck_assert_int_eq(sim_card_value(h->card, PROF_AID_U32, PROF_FILE_VALUE, &v), 0);
    return v;
}

int hx_records(const struct hx *h, uint8_t out[][32], int max)
{
    int n = sim_card_records(h->card, PROF_AID_U32, PROF_FILE_RECORDS, &out[0][0], 32, max);
    ck_assert_int_ge(n, 0);
    return n;
}

void hx_assert_invariants(struct hx *h, int settled, int allow_relay_loss)
{
    uint8_t recs[PROF_RECORD_COUNT][32];
    int n = hx_records(h, recs, PROF_RECORD_COUNT);
    int64_t loss = 0;
    for (int i = 0; i < n; i++) {
        /* Every record on the card is a committed txn of the ledger. */
        if (settled)
            ck_assert_int_eq(hx_txn_state(h, recs[i]), LEDGER_MEM_TXN_COMMITTED);
        if (hx_txn_flags(h, recs[i]) & LEDGER_FLAG_CREDIT_MISSING)
            loss += (int32_t)(recs[i][16] | recs[i][17] << 8 | recs[i][18] << 16 |
                              (uint32_t)recs[i][19] << 24);
    }
    int64_t change = (int64_t)hx_balance(h) - h->initial_balance;
    int64_t committed = h->lops->committed_sum(h->ldb, &h->lcard);
    if (!allow_relay_loss)
        ck_assert_int_eq(loss, 0);
    if (settled) {
        ck_assert_int_eq(change, committed - loss);
    } else {
        /* Before the card's next session, in-doubt entries may or may not
         * be on the card; never anything beyond them. */
        int64_t doubt = h->lops->in_doubt_sum(h->ldb, &h->lcard);
        ck_assert_int_ge(change, committed - loss);
        ck_assert_int_le(change, committed - loss + doubt);
    }
    /* Each code committed at most once; used iff committed. */
    for (int c = 0; c < h->ncodes; c++) {
        int commits = hx_code_commits(h, c);
        ck_assert_int_le(commits, 1);
        enum ledger_mem_code_state st = hx_code_state(h, c);
        ck_assert_int_eq(st == LEDGER_MEM_CODE_USED, commits == 1);
        if (settled)
            ck_assert_int_ne(st, LEDGER_MEM_CODE_RESERVED);
    }
    /* No credit without its record: as many records as committed txns
     * (up to what the cyclic file keeps). */
    int ncommitted = h->lops->committed_count(h->ldb, &h->lcard);
    if (settled)
        ck_assert_int_eq(n,
                         ncommitted < PROF_RECORD_COUNT - 1 ? ncommitted : PROF_RECORD_COUNT - 1);
    if (settled)
        ck_assert_int_eq(hx_in_doubt_count(h), 0);
}

void hx_advance(struct hx *h, uint64_t ms)
{
    h->now += ms;
    h->lops->advance(h->ldb, &h->lcard, ms);
}

void hx_fail_next(struct hx *h, enum ledger_req_type type, enum ledger_mem_fault fault)
{
    h->lops->fail_next(h->ldb, type, fault);
}

unsigned hx_faults_left(struct hx *h)
{
    return h->lops->faults_left(h->ldb);
}

void hx_fail_clear(struct hx *h)
{
    h->lops->fail_clear(h->ldb);
}

enum ledger_mem_code_state hx_code_state(struct hx *h, int code)
{
    return h->lops->code_state(h->ldb, h->codes[code].hash);
}

int hx_code_commits(struct hx *h, int code)
{
    return h->lops->code_commits(h->ldb, h->codes[code].hash);
}

enum ledger_mem_txn_state hx_txn_state(struct hx *h, const uint8_t txn[LEDGER_TXN_ID_LEN])
{
    return h->lops->txn_state(h->ldb, txn);
}

uint32_t hx_txn_flags(struct hx *h, const uint8_t txn[LEDGER_TXN_ID_LEN])
{
    return h->lops->txn_flags(h->ldb, txn);
}

int hx_in_doubt_count(struct hx *h)
{
    return h->lops->in_doubt_count(h->ldb, &h->lcard);
}

int hx_lease_held(struct hx *h)
{
    return h->lops->lease_held(h->ldb, &h->lcard, h->now);
}
