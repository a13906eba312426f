/* hostile_relay: a phone that attacks the server (issue 4, system level).
 * It plays the app for simulated DESFire cards held in memory (powered
 * between sessions, saved to their files at the end) and, at random but
 * reproducibly from a printed seed, misbehaves: it tampers with answers,
 * replays answers of the same or another session, drops the connection,
 * reports lost tags, slips its own CommitTransaction / AbortTransaction to
 * the card, tears the card, withholds answers, sends messages out of order
 * and lies about the UID.  Two sessions may even share one card.  With
 * --v2-pct it announces batches (docs/PROTOCOL.md section 8) in that share
 * of sessions, and every fault lands per APDU inside a batch; there it also
 * answers a prefix, answers more than asked (or ignores the stop rule),
 * reorders answers or runs two APDUs out of order, slips its own
 * ClearRecordFile between two APDUs, and sends `responses` that break the
 * protocol.  After the
 * run one clean `check` per card settles everything, and hostile_check.c
 * compares the cards with the ledger.  Exit 0 only when no invariant broke.
 *
 * Also: --until-file (a clean or hostile load that a test script stops
 * while it kills processes) and --race-code (N clients, one code).
 *
 * Each session's plan (card, operation, code, faults and where) is a pure
 * function of (seed, session number); with --concurrency 1 the whole run
 * repeats, up to the server's own randomness (txn ids, RndB).
 * It must never print a code, and never treat a missing result as a
 * violation by itself: only the money decides. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "card_profile.h"
#include "hex.h"
#include "hostile_relay.h"
#include "ota_err.h"
#include "sim_card.h"
#include "ws_client.h"
#include "ws_proto_msg.h"

#define HR_APDU_MAX 261
#define HR_ANSWER_MAX 300
#define HR_BANK 1024
#define HR_MAX_FAULTS 2
#define HR_FAULT_SPAN 20 /* faults land on commands 1..20 (a top-up has ~17) */
#define HR_MAX_OUTCOMES 64
#define HR_MAX_URLS 4
#define HR_BAD_CODE "ABCD-EFGH-JKMN-PQRS-TVWX"

enum hr_fault {
    HF_NONE = 0,
    HF_TAMPER,       /* run it, flip one byte of the answer */
    HF_REPLAY_SAME,  /* answer with this session's previous answer */
    HF_REPLAY_OTHER, /* answer with an answer of another session */
    HF_DROP_BEFORE,  /* drop the connection, the command not run */
    HF_DROP_AFTER,   /* run the command, drop before answering */
    HF_LOST_TAG,     /* error lost-tag instead of an answer */
    HF_RELAY_COMMIT, /* own CommitTransaction to the card before or after the command */
    HF_RELAY_ABORT,  /* own AbortTransaction likewise */
    HF_STALL,        /* withhold the answer (briefly, or past the response timeout) */
    HF_UNEXPECTED,   /* messages out of order, malformed or unknown */
    HF_TEAR,         /* run it, power-cycle the card, then answer */
    HF_REPLAY_CMD,   /* first send the card an earlier command of the server's */
    HF_LIE_UID,      /* session: another card's UID or a random one */
    HF_PRE_COMMIT,   /* session: own CommitTransaction before the first command */
    HF_POST_COMMIT,  /* session: own CommitTransaction after the session */
    HF_RELAY_CLEAR,  /* own ClearRecordFile (file 2) before or after the command */
    /* Batches only (a v2 session's `commands`): */
    HF_PREFIX,  /* answer only the APDUs before this one (run it or not) */
    HF_MORE,    /* an extra answer at the end, or ignore the stop rule */
    HF_REORDER, /* swap this answer with the next, or run the next APDU first */
    HF_COUNT
};
#define HF_FIRST_V2_ONLY HF_PREFIX

static const char *const FAULT_NAMES[HF_COUNT] = {
    [HF_NONE] = "none",
    [HF_TAMPER] = "tamper",
    [HF_REPLAY_SAME] = "replay_same",
    [HF_REPLAY_OTHER] = "replay_other",
    [HF_DROP_BEFORE] = "drop_before",
    [HF_DROP_AFTER] = "drop_after",
    [HF_LOST_TAG] = "lost_tag",
    [HF_RELAY_COMMIT] = "relay_commit",
    [HF_RELAY_ABORT] = "relay_abort",
    [HF_STALL] = "stall",
    [HF_UNEXPECTED] = "unexpected",
    [HF_TEAR] = "tear",
    [HF_REPLAY_CMD] = "replay_cmd",
    [HF_LIE_UID] = "lie_uid",
    [HF_PRE_COMMIT] = "pre_commit",
    [HF_POST_COMMIT] = "post_commit",
    [HF_RELAY_CLEAR] = "relay_clear",
    [HF_PREFIX] = "prefix",
    [HF_MORE] = "more",
    [HF_REORDER] = "reorder",
};

struct hr_opts {
    const char *url[HR_MAX_URLS];
    int nurls;
    const char *cards_dir, *codes_file, *master_keys, *until_file, *log_file;
    const char *race_code;
    int ncards, concurrency, fault_pct, check_pct, bad_code_pct, keep_pending_every, share_pct;
    int race_clients;
    int sweep;  /* the deterministic matrix instead of random plans */
    int v2_pct; /* sessions that announce batches (protocol v2) */
    long sessions, stall_ms, settle_timeout_ms, min_ok;
    uint64_t seed;
    uint8_t uid_base[HR_UID_LEN];
};

struct hr_bank_ent {
    uint8_t ins;
    uint8_t len;
    uint8_t data[HR_ANSWER_MAX];
};

struct hr_outcome {
    char key[64];
    long n;
};

struct hr_relay {
    struct hr_opts o;
    struct hr_run run;
    struct wsc_url url[HR_MAX_URLS]; /* gateways on one database: sessions spread over them */
    char **codes;
    size_t ncodes;
    FILE *log;
    atomic_long next;
    /* Answers and commands seen, for replays across sessions. */
    pthread_mutex_t bank_mu;
    struct hr_bank_ent *bank, *cmds;
    size_t nbank, bank_next, ncmds, cmds_next;
    /* Counters, under run.mu. */
    long started, connected, connect_failed, no_result, ok_topups, ok_checks;
    long faults, fault_kind[HF_COUNT], lie_sessions, power_cycles, settle_checks;
    long batches, batch_apdus, v2_sessions; /* `commands` messages received, their APDUs */
    struct hr_outcome outcome[HR_MAX_OUTCOMES];
    int noutcome;
    int *in_use; /* sessions on each card right now, under run.mu */
    /* Race mode. */
    pthread_barrier_t barrier;
};

enum hs_state { HS_WAIT_SERVER = 0, HS_DONE };

struct hr_fault_at {
    enum hr_fault kind;
    long at;
    uint32_t param;
    int done;
};

struct hr_session {
    enum hs_state state;
    struct hr_relay *R;
    unsigned long idx;
    uint64_t rng;
    int clean;  /* settling / race: no faults */
    int share;  /* may run on a card another session is using */
    int stride; /* claim_card: keep the card's parity (sweep: keep-pending or not) */
    int gw;     /* which --url */
    int race;   /* wait for every racer before the operation */
    int card;
    struct hr_card *c;
    const char *op;
    const char *code;
    int lie;
    int lie_other; /* > 0: lie with another card's UID (picked from this) */
    uint8_t lie_uid[HR_UID_LEN];
    uint8_t uid_sent[HR_UID_LEN];
    struct hr_fault_at f[HR_MAX_FAULTS];
    int nf;
    int pre_commit, post_commit;
    int batch; /* announced batch size; 0 = v1 */
    struct wsc_client *ws;
    long ncmd;
    uint8_t prev[HR_ANSWER_MAX];
    size_t prev_len;
    char end[16];
    char status[12], error[32], txn[40];
    char injected[160];
    void **db;
};

static volatile sig_atomic_t hr_stop;

static void on_signal(int sig)
{
    (void)sig;
    hr_stop = 1;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !hr_stop)
        ;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint32_t rnd(struct hr_session *s, uint32_t n)
{
    return n == 0 ? 0 : (uint32_t)(splitmix(&s->rng) % n);
}

__attribute__((format(printf, 2, 3))) static void hr_violation(struct hr_relay *R, const char *fmt,
                                                               ...)
{
    va_list ap;
    pthread_mutex_lock(&R->run.mu);
    R->run.violations++;
    printf("VIOLATION: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    pthread_mutex_unlock(&R->run.mu);
}

/* A card frozen because its records disagree with the ledger: no relay
 * can cause that (records never vanish), so it is a violation. */
static void report_records_freeze(struct hr_relay *R, struct hr_card *c)
{
    pthread_mutex_lock(&R->run.mu);
    int first = !c->records_frozen;
    c->records_frozen = 1;
    pthread_mutex_unlock(&R->run.mu);
    if (first)
        hr_violation(R, "card %s frozen because its records disagree with the ledger", c->uid_hex);
}

/* ------------------------------------------------------------ the card */

static int card_xfer(struct hr_card *c, const uint8_t *apdu, size_t len, uint8_t *resp,
                     size_t *rlen)
{
    pthread_mutex_lock(&c->mu);
    int r = sim_card_transceive(c->sim, apdu, len, resp, HR_ANSWER_MAX, rlen);
    pthread_mutex_unlock(&c->mu);
    return r;
}

/* A command the relay sends on its own (no key needed for Commit and
 * Abort; ClearRecordFile of file 2 needs a right nobody has, and must
 * fail). */
static void card_own(struct hr_card *c, uint8_t ins)
{
    uint8_t apdu[7] = {0x90, ins, 0x00, 0x00, 0x00, PROF_FILE_RECORDS, 0x00}, resp[HR_ANSWER_MAX];
    size_t len = 5, n = 0;
    if (ins == 0xEB) { /* ClearRecordFile: Lc 1, the file number, Le */
        apdu[4] = 0x01;
        len = 7;
    }
    pthread_mutex_lock(&c->mu);
    (void)sim_card_transceive(c->sim, apdu, len, resp, sizeof resp, &n);
    if (ins == 0xC7)
        c->relay_commits++;
    pthread_mutex_unlock(&c->mu);
}

/* Adds the txn_ids of the card's committed records to what it has shown.
 * Called after every session: a session adds at most one record and the
 * cyclic file keeps seven, so none is missed. */
static void card_poll_records(struct hr_card *c, int initial)
{
    uint8_t recs[PROF_RECORD_COUNT * PROF_RECORD_SIZE];
    pthread_mutex_lock(&c->mu);
    int n = sim_card_records(c->sim, PROF_AID_U32, PROF_FILE_RECORDS, recs, PROF_RECORD_SIZE,
                             PROF_RECORD_COUNT);
    for (int i = 0; i < n; i++) {
        const uint8_t *rec = recs + (size_t)i * PROF_RECORD_SIZE;
        int known = 0;
        for (size_t k = 0; k < c->nseen && !known; k++)
            known = memcmp(c->seen[k].id, rec + PROF_REC_TXN, HR_TXN_LEN) == 0;
        if (known)
            continue;
        if (c->nseen == c->capseen) {
            size_t cap = c->capseen ? c->capseen * 2 : 64;
            struct hr_txn *p = realloc(c->seen, cap * sizeof *p);
            if (p == NULL)
                break;
            c->seen = p;
            c->capseen = cap;
        }
        struct hr_txn *t = &c->seen[c->nseen++];
        memcpy(t->id, rec + PROF_REC_TXN, HR_TXN_LEN);
        t->amount =
            (int32_t)((uint32_t)rec[PROF_REC_AMOUNT] | (uint32_t)rec[PROF_REC_AMOUNT + 1] << 8 |
                      (uint32_t)rec[PROF_REC_AMOUNT + 2] << 16 |
                      (uint32_t)rec[PROF_REC_AMOUNT + 3] << 24);
        t->initial = initial;
    }
    pthread_mutex_unlock(&c->mu);
}

static int32_t card_balance(struct hr_card *c)
{
    int32_t v = 0;
    pthread_mutex_lock(&c->mu);
    if (sim_card_value(c->sim, PROF_AID_U32, PROF_FILE_VALUE, &v) != 0)
        v = INT32_MIN;
    pthread_mutex_unlock(&c->mu);
    return v;
}

/* ------------------------------------------------------------ answers bank */

static void ring_add(struct hr_relay *R, struct hr_bank_ent *ring, size_t *count, size_t *next,
                     uint8_t ins, const uint8_t *p, size_t n)
{
    if (n > HR_ANSWER_MAX || n > UINT8_MAX)
        return;
    pthread_mutex_lock(&R->bank_mu);
    struct hr_bank_ent *e = &ring[*next];
    e->ins = ins;
    e->len = (uint8_t)n;
    memcpy(e->data, p, n);
    *next = (*next + 1) % HR_BANK;
    if (*count < HR_BANK)
        (*count)++;
    pthread_mutex_unlock(&R->bank_mu);
}

static void bank_add(struct hr_relay *R, uint8_t ins, const uint8_t *p, size_t n)
{
    ring_add(R, R->bank, &R->nbank, &R->bank_next, ins, p, n);
}

static void cmd_add(struct hr_relay *R, const uint8_t *apdu, size_t n)
{
    ring_add(R, R->cmds, &R->ncmds, &R->cmds_next, apdu[1], apdu, n);
}

/* Any earlier command of the server's (another session's or this one's). */
static size_t cmd_pick(struct hr_session *s, uint8_t *out)
{
    struct hr_relay *R = s->R;
    size_t n = 0;
    pthread_mutex_lock(&R->bank_mu);
    if (R->ncmds > 0) {
        const struct hr_bank_ent *e = &R->cmds[rnd(s, (uint32_t)R->ncmds)];
        n = e->len;
        memcpy(out, e->data, n);
    }
    pthread_mutex_unlock(&R->bank_mu);
    return n;
}

/* An earlier answer, preferably to the same instruction. */
static size_t bank_pick(struct hr_session *s, uint8_t ins, uint8_t *out)
{
    struct hr_relay *R = s->R;
    size_t n = 0;
    pthread_mutex_lock(&R->bank_mu);
    if (R->nbank > 0) {
        size_t pick = rnd(s, (uint32_t)R->nbank);
        for (int tries = 0; tries < 64; tries++) {
            size_t k = rnd(s, (uint32_t)R->nbank);
            if (R->bank[k].ins == ins) {
                pick = k;
                break;
            }
        }
        n = R->bank[pick].len;
        memcpy(out, R->bank[pick].data, n);
    }
    pthread_mutex_unlock(&R->bank_mu);
    return n;
}

/* ------------------------------------------------------------ messages */

static int send_text(struct hr_session *s, const char *text)
{
    if (wsc_client_send_text(s->ws, text, strlen(text)) != 0) {
        snprintf(s->end, sizeof s->end, "send_failed");
        s->state = HS_DONE;
        return -1;
    }
    return 0;
}

static int send_response(struct hr_session *s, const uint8_t *p, size_t n)
{
    char hex[2 * HR_ANSWER_MAX + 1], msg[2 * HR_ANSWER_MAX + 64];
    hex_encode(p, n, hex);
    snprintf(msg, sizeof msg, "{\"type\":\"response\",\"data\":\"%s\"}", hex);
    return send_text(s, msg);
}

static int send_operation(struct hr_session *s)
{
    char uid[2 * HR_UID_LEN + 1];
    hex_encode(s->uid_sent, HR_UID_LEN, uid);
    char *t = wsm_operation(s->op, uid, s->code, "hostile", s->batch);
    if (t == NULL)
        return -1;
    int r = send_text(s, t);
    sodium_memzero(t, strlen(t));
    free(t);
    return r;
}

static void drop(struct hr_session *s, const char *why)
{
    wsc_client_abort(s->ws);
    snprintf(s->end, sizeof s->end, "%s", why);
    s->state = HS_DONE;
}

/* ------------------------------------------------------------ faults */

static void note_fault(struct hr_session *s, enum hr_fault k, long at)
{
    struct hr_relay *R = s->R;
    size_t used = strlen(s->injected);
    snprintf(s->injected + used, sizeof s->injected - used, "%s%s@%ld", used ? "," : "",
             FAULT_NAMES[k], at);
    pthread_mutex_lock(&R->run.mu);
    R->faults++;
    R->fault_kind[k]++;
    pthread_mutex_unlock(&R->run.mu);
}

/* Faults that land on one APDU (the others concern the whole session). */
static int per_apdu(enum hr_fault k)
{
    return k != HF_NONE && k != HF_LIE_UID && k != HF_PRE_COMMIT && k != HF_POST_COMMIT;
}

static struct hr_fault_at *fault_for(struct hr_session *s, long at)
{
    for (int i = 0; i < s->nf; i++)
        if (!s->f[i].done && s->f[i].at == at && per_apdu(s->f[i].kind))
            return &s->f[i];
    return NULL;
}

/* Runs the command on the card and keeps the answer for later replays. */
static size_t run_card(struct hr_session *s, const uint8_t *apdu, size_t n, uint8_t *resp)
{
    size_t rlen = 0;
    if (card_xfer(s->c, apdu, n, resp, &rlen) != 0)
        rlen = 0;
    bank_add(s->R, apdu[1], resp, rlen);
    return rlen;
}

static void answer(struct hr_session *s, const uint8_t *resp, size_t rlen)
{
    memcpy(s->prev, resp, rlen);
    s->prev_len = rlen;
    send_response(s, resp, rlen);
}

static void unexpected(struct hr_session *s, uint32_t param, const uint8_t *apdu, size_t n)
{
    uint8_t resp[HR_ANSWER_MAX];
    size_t rlen;
    switch (param % 6) {
    case 0: /* the answer twice: the second arrives with no command outstanding */
        rlen = run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        send_response(s, resp, rlen);
        break;
    case 1: /* a second operation in the middle of the session */
        send_operation(s);
        rlen = run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        break;
    case 2: /* a message type nobody defined */
        send_text(s, "{\"type\":\"hello\",\"data\":\"9100\"}");
        rlen = run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        break;
    case 3:
        send_text(s, "{\"type\":\"response\",\"data\":");
        break;
    case 4:
        send_text(s, "{\"type\":\"response\",\"data\":\"9z0\"}");
        break;
    default:
        send_text(s, "{\"type\":\"error\",\"kind\":\"meteor\"}");
        rlen = run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        break;
    }
}

static uint8_t relay_ins(enum hr_fault k)
{
    return k == HF_RELAY_COMMIT ? 0xC7 : k == HF_RELAY_ABORT ? 0xA7 : 0xEB;
}

static void on_command(struct hr_session *s, const uint8_t *apdu, size_t n)
{
    uint8_t resp[HR_ANSWER_MAX];
    size_t rlen;
    s->ncmd++;
    if (n <= UINT8_MAX)
        cmd_add(s->R, apdu, n);
    struct hr_fault_at *f = s->clean ? NULL : fault_for(s, s->ncmd);
    /* Batch-only faults have no meaning for a single command. */
    if (f == NULL || f->kind >= HF_FIRST_V2_ONLY) {
        rlen = run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        return;
    }
    f->done = 1;
    note_fault(s, f->kind, s->ncmd);
    switch (f->kind) {
    case HF_TAMPER:
        rlen = run_card(s, apdu, n, resp);
        if (rlen > 0)
            resp[f->param % rlen] ^= (uint8_t)(1 + (f->param >> 8) % 255);
        answer(s, resp, rlen);
        break;
    case HF_REPLAY_SAME:
    case HF_REPLAY_OTHER:
        if (f->param & 1)
            (void)run_card(s, apdu, n, resp);
        if (f->kind == HF_REPLAY_SAME && s->prev_len > 0) {
            memcpy(resp, s->prev, s->prev_len);
            rlen = s->prev_len;
        } else {
            rlen = bank_pick(s, apdu[1], resp);
        }
        if (rlen == 0) {
            resp[0] = 0x91;
            resp[1] = 0x00;
            rlen = 2;
        }
        answer(s, resp, rlen);
        break;
    case HF_DROP_BEFORE:
        drop(s, "dropped");
        break;
    case HF_DROP_AFTER:
        (void)run_card(s, apdu, n, resp);
        drop(s, "dropped");
        break;
    case HF_LOST_TAG:
        send_text(s, "{\"type\":\"error\",\"kind\":\"lost-tag\",\"message\":\"hostile\"}");
        break;
    case HF_RELAY_COMMIT:
    case HF_RELAY_ABORT:
    case HF_RELAY_CLEAR: {
        uint8_t ins = relay_ins(f->kind);
        if (f->param & 1)
            card_own(s->c, ins);
        rlen = run_card(s, apdu, n, resp);
        if (!(f->param & 1))
            card_own(s->c, ins);
        answer(s, resp, rlen);
        break;
    }
    case HF_STALL:
        sleep_ms((f->param & 1) ? s->R->o.stall_ms : s->R->o.stall_ms / 5);
        rlen = run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        break;
    case HF_UNEXPECTED:
        unexpected(s, f->param, apdu, n);
        break;
    case HF_REPLAY_CMD: {
        uint8_t old[HR_ANSWER_MAX];
        size_t on = cmd_pick(s, old), olen = 0;
        if (on > 0)
            (void)card_xfer(s->c, old, on, resp, &olen);
        rlen = run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        break;
    }
    case HF_TEAR:
        rlen = run_card(s, apdu, n, resp);
        pthread_mutex_lock(&s->c->mu);
        sim_card_power_cycle(s->c->sim);
        pthread_mutex_unlock(&s->c->mu);
        answer(s, resp, rlen);
        break;
    default:
        rlen = run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        break;
    }
}

/* ------------------------------------------------------------ batches (v2) */

#define HR_OUT_MAX (WSM_BATCH_MAX + 2)

/* What the relay sends for one batch: answers (honest or not) and an
 * error kind. */
struct hr_out {
    size_t n;
    const char *error;
    size_t len[HR_OUT_MAX];
    uint8_t data[HR_OUT_MAX][HR_ANSWER_MAX];
};

static void out_add(struct hr_out *o, const uint8_t *p, size_t n)
{
    if (o->n == HR_OUT_MAX)
        return;
    memcpy(o->data[o->n], p, n);
    o->len[o->n++] = n;
}

/* {"type":"responses","data":[...],"error":...}; type "response" (one
 * answer) when single is set, the way a confused client would. */
static int send_out(struct hr_session *s, const struct hr_out *o, int single)
{
    char msg[HR_OUT_MAX * (2 * HR_ANSWER_MAX + 3) + 96];
    size_t at = (size_t)snprintf(msg, sizeof msg, "{\"type\":\"%s\",\"data\":%s",
                                 single ? "response" : "responses", single ? "" : "[");
    for (size_t i = 0; i < o->n && (!single || i == 0); i++) {
        if (i > 0)
            msg[at++] = ',';
        msg[at++] = '"';
        hex_encode(o->data[i], o->len[i], msg + at);
        at += 2 * o->len[i];
        msg[at++] = '"';
    }
    if (single && o->n == 0)
        at += (size_t)snprintf(msg + at, sizeof msg - at, "\"\"");
    if (!single)
        msg[at++] = ']';
    if (o->error != NULL)
        at += (size_t)snprintf(msg + at, sizeof msg - at, ",\"error\":\"%s\"", o->error);
    snprintf(msg + at, sizeof msg - at, "}");
    return send_text(s, msg);
}

/* Protocol breaches around a batch's answers (bad v2 input must get a
 * clear error and lose nothing). */
static void unexpected_batch(struct hr_session *s, uint32_t param, const struct hr_out *o)
{
    switch (param % 6) {
    case 0: /* the answers twice: the second with no batch outstanding */
        send_out(s, o, 0);
        send_out(s, o, 0);
        break;
    case 1: /* a second operation in the middle of the session */
        send_operation(s);
        send_out(s, o, 0);
        break;
    case 2: /* a message type nobody defined, then the answers */
        send_text(s, "{\"type\":\"hello\",\"data\":[\"9100\"]}");
        send_out(s, o, 0);
        break;
    case 3: /* responses whose data is not hex */
        send_text(s, "{\"type\":\"responses\",\"data\":[\"9100\",\"9z00\"]}");
        break;
    case 4: /* responses whose data is not an array */
        send_text(s, "{\"type\":\"responses\",\"data\":\"9100\"}");
        break;
    default: /* a single response to a batch */
        send_out(s, o, 1);
        break;
    }
}

/* Runs one APDU for a batch and adds its answer (the answer as sent
 * decides whether an honest client would go on). */
static size_t batch_run_one(struct hr_session *s, const uint8_t *apdu, size_t n, struct hr_out *o)
{
    uint8_t resp[HR_ANSWER_MAX];
    size_t rlen = run_card(s, apdu, n, resp);
    out_add(o, resp, rlen);
    return rlen;
}

static int last_goes_on(const struct hr_out *o)
{
    return o->n > 0 && wsm_answer_goes_on(o->data[o->n - 1], o->len[o->n - 1]);
}

static void swap_last_two(struct hr_out *o)
{
    uint8_t tmp[HR_ANSWER_MAX];
    size_t a = o->n - 2, b = o->n - 1, tl = o->len[a];
    memcpy(tmp, o->data[a], tl);
    memcpy(o->data[a], o->data[b], o->len[b]);
    o->len[a] = o->len[b];
    memcpy(o->data[b], tmp, tl);
    o->len[b] = tl;
}

/* One APDU of a batch with the fault planned for it.  Returns 0 to go on
 * with the next APDU, 1 to stop and send, -1 when the session is over
 * (dropped).  *i may move past the next APDU (reorder). */
static int batch_fault(struct hr_session *s, const struct wsm_batch *b, size_t *i,
                       struct hr_fault_at *f, struct hr_out *o, int *more, int *unexp)
{
    const uint8_t *apdu = b->apdu[*i];
    size_t n = b->len[*i];
    uint8_t resp[HR_ANSWER_MAX];
    size_t rlen;

    switch (f->kind) {
    case HF_TAMPER:
        rlen = batch_run_one(s, apdu, n, o);
        if (rlen > 0)
            o->data[o->n - 1][f->param % rlen] ^= (uint8_t)(1 + (f->param >> 8) % 255);
        return 0;
    case HF_REPLAY_SAME:
    case HF_REPLAY_OTHER:
        if (f->param & 1)
            (void)run_card(s, apdu, n, resp);
        rlen = 0;
        if (f->kind == HF_REPLAY_SAME && o->n > 0) {
            rlen = o->len[o->n - 1];
            memcpy(resp, o->data[o->n - 1], rlen);
        } else if (f->kind == HF_REPLAY_SAME && s->prev_len > 0) {
            rlen = s->prev_len;
            memcpy(resp, s->prev, rlen);
        } else {
            rlen = bank_pick(s, apdu[1], resp);
        }
        if (rlen == 0) {
            resp[0] = 0x91;
            resp[1] = 0x00;
            rlen = 2;
        }
        out_add(o, resp, rlen);
        return 0;
    case HF_DROP_BEFORE:
        drop(s, "dropped");
        return -1;
    case HF_DROP_AFTER:
        (void)run_card(s, apdu, n, resp);
        drop(s, "dropped");
        return -1;
    case HF_LOST_TAG:
        o->error = "lost-tag";
        return 1;
    case HF_RELAY_COMMIT:
    case HF_RELAY_ABORT:
    case HF_RELAY_CLEAR:
        /* Between two APDUs of the batch: before this one or after it. */
        if (f->param & 1)
            card_own(s->c, relay_ins(f->kind));
        batch_run_one(s, apdu, n, o);
        if (!(f->param & 1))
            card_own(s->c, relay_ins(f->kind));
        return 0;
    case HF_STALL:
        sleep_ms((f->param & 1) ? s->R->o.stall_ms : s->R->o.stall_ms / 5);
        batch_run_one(s, apdu, n, o);
        return 0;
    case HF_UNEXPECTED:
        *unexp = (int)(f->param % 6);
        batch_run_one(s, apdu, n, o);
        return 0;
    case HF_REPLAY_CMD: {
        uint8_t old[HR_ANSWER_MAX];
        size_t on = cmd_pick(s, old), olen = 0;
        if (on > 0)
            (void)card_xfer(s->c, old, on, resp, &olen);
        batch_run_one(s, apdu, n, o);
        return 0;
    }
    case HF_TEAR:
        batch_run_one(s, apdu, n, o);
        pthread_mutex_lock(&s->c->mu);
        sim_card_power_cycle(s->c->sim);
        pthread_mutex_unlock(&s->c->mu);
        return 0;
    case HF_PREFIX:
        if (f->param & 1)
            (void)run_card(s, apdu, n, resp);
        return 1;
    case HF_MORE:
        *more = (f->param & 1) ? 2 : 1;
        batch_run_one(s, apdu, n, o);
        return 0;
    case HF_REORDER:
        if (*i + 1 >= b->n) {
            batch_run_one(s, apdu, n, o);
            return 0;
        }
        s->ncmd++; /* the next APDU is taken with this one */
        if (f->param & 1) {
            /* The next APDU runs first; answers in the batch's order. */
            uint8_t r1[HR_ANSWER_MAX];
            size_t l1 = run_card(s, b->apdu[*i + 1], b->len[*i + 1], r1);
            batch_run_one(s, apdu, n, o);
            out_add(o, r1, l1);
        } else {
            batch_run_one(s, apdu, n, o);
            batch_run_one(s, b->apdu[*i + 1], b->len[*i + 1], o);
            swap_last_two(o);
        }
        (*i)++;
        return 0;
    default:
        batch_run_one(s, apdu, n, o);
        return 0;
    }
}

/* A `commands` message: every APDU in order, each with its planned
 * fault, then one `responses` (or worse). */
static void on_batch(struct hr_session *s, const struct wsm_batch *b)
{
    static _Thread_local struct hr_out o;
    int more = 0, unexp = -1;

    pthread_mutex_lock(&s->R->run.mu);
    s->R->batches++;
    s->R->batch_apdus += (long)b->n;
    pthread_mutex_unlock(&s->R->run.mu);
    o.n = 0;
    o.error = NULL;
    for (size_t i = 0; i < b->n; i++) {
        struct hr_fault_at *f;
        int r = 0;
        s->ncmd++;
        if (b->len[i] <= UINT8_MAX)
            cmd_add(s->R, b->apdu[i], b->len[i]);
        f = s->clean ? NULL : fault_for(s, s->ncmd);
        if (f == NULL) {
            batch_run_one(s, b->apdu[i], b->len[i], &o);
        } else {
            f->done = 1;
            note_fault(s, f->kind, s->ncmd);
            r = batch_fault(s, b, &i, f, &o, &more, &unexp);
        }
        if (r < 0)
            return;
        if (r > 0 || (more != 2 && !last_goes_on(&o)))
            break;
    }
    if (more > 0 && o.n > 0) /* one answer more than asked: the last one again */
        out_add(&o, o.data[o.n - 1], o.len[o.n - 1]);
    if (o.n > 0) {
        memcpy(s->prev, o.data[o.n - 1], o.len[o.n - 1]);
        s->prev_len = o.len[o.n - 1];
    }
    if (unexp >= 0)
        unexpected_batch(s, (uint32_t)unexp, &o);
    else
        send_out(s, &o, 0);
}

static void copy_str(char *dst, size_t cap, json_t *v)
{
    const char *t = json_string_value(v);
    snprintf(dst, cap, "%s", t != NULL ? t : "");
}

static void on_message(struct hr_session *s, const char *text, size_t len)
{
    static _Thread_local struct wsm_msg m;
    char why[200];
    if (wsm_parse(text, len, (size_t)s->batch, &m, why, sizeof why) != 0) {
        /* The gateway broke the protocol (a batch larger than announced,
         * commands in a v1 session, bad hex): never a relay's doing. */
        hr_violation(s->R, "session %lu: the gateway sent a message no client can take: %s", s->idx,
                     why);
        snprintf(s->end, sizeof s->end, "bad_message");
        s->state = HS_DONE;
    } else if (m.kind == WSM_CARD && m.batch.single) {
        on_command(s, m.batch.apdu[0], m.batch.len[0]);
    } else if (m.kind == WSM_CARD) {
        on_batch(s, &m.batch);
    } else if (m.kind == WSM_RESULT) {
        copy_str(s->status, sizeof s->status, json_object_get(m.json, "status"));
        copy_str(s->error, sizeof s->error, json_object_get(m.json, "error"));
        copy_str(s->txn, sizeof s->txn, json_object_get(m.json, "txn"));
        snprintf(s->end, sizeof s->end, "result");
        s->state = HS_DONE;
    }
    wsm_msg_clear(&m);
}

/* ------------------------------------------------------------ a session */

static void plan_session(struct hr_session *s)
{
    struct hr_relay *R = s->R;
    const struct hr_opts *o = &R->o;
    s->rng = o->seed ^ (s->idx * 0xD1B54A32D192ED03ULL);
    (void)splitmix(&s->rng);
    s->card = (int)rnd(s, (uint32_t)R->run.ncards);
    s->share = rnd(s, 100) < (uint32_t)o->share_pct;
    s->gw = (int)rnd(s, (uint32_t)o->nurls);
    s->op = rnd(s, 100) < (uint32_t)o->check_pct ? "check" : "topup";
    /* v2: mostly the largest batch, one session in four a smaller one (the
     * server must split its batches to fit). */
    if (rnd(s, 100) < (uint32_t)o->v2_pct)
        s->batch = rnd(s, 4) == 0 ? WSM_BATCH_MIN + (int)rnd(s, WSM_BATCH_MAX - WSM_BATCH_MIN)
                                  : WSM_BATCH_MAX;
    if (strcmp(s->op, "topup") == 0)
        s->code = rnd(s, 100) < (uint32_t)o->bad_code_pct || R->ncodes == 0
                      ? HR_BAD_CODE
                      : R->codes[rnd(s, (uint32_t)R->ncodes)];
    if (rnd(s, 100) < (uint32_t)o->fault_pct) {
        s->nf = rnd(s, 4) == 0 ? 2 : 1;
        for (int i = 0; i < s->nf; i++) {
            /* v1 sessions draw from the kinds that make sense without batches. */
            s->f[i].kind =
                (enum hr_fault)(1 + rnd(s, (s->batch > 0 ? HF_COUNT : HF_FIRST_V2_ONLY) - 1));
            s->f[i].at = 1 + (long)rnd(s, HR_FAULT_SPAN);
            s->f[i].param = (uint32_t)splitmix(&s->rng);
            if (s->f[i].kind == HF_LIE_UID) {
                s->lie = 1;
                s->lie_other = (s->f[i].param & 1) ? 1 + (int)rnd(s, 0x7fffffff) : 0;
                s->lie_uid[0] = 0x04;
                for (int k = 1; k < HR_UID_LEN; k++)
                    s->lie_uid[k] = (uint8_t)rnd(s, 256);
            }
            s->pre_commit |= s->f[i].kind == HF_PRE_COMMIT;
            s->post_commit |= s->f[i].kind == HF_POST_COMMIT;
        }
    }
}

/* The deterministic matrix (--sweep): every per-command fault, at every
 * command 1..HR_FAULT_SPAN of a top-up, in two variants (tamper: byte 0
 * or 1; replays: with or without running the command; relay commands:
 * before or after it; stall: short or past the response timeout), on a
 * card that keeps pending changes over select/auth and on one that does
 * not.  Each case is followed by a clean check and then the relay's own
 * CommitTransaction (issue 9: nothing left pending may be committed). */
static const enum hr_fault SWEEP_KINDS[] = {
    HF_TAMPER,
    HF_REPLAY_SAME,
    HF_REPLAY_OTHER,
    HF_DROP_BEFORE,
    HF_DROP_AFTER,
    HF_LOST_TAG,
    HF_RELAY_COMMIT,
    HF_RELAY_ABORT,
    HF_STALL,
    HF_UNEXPECTED,
    HF_TEAR,
    HF_REPLAY_CMD,
    /* with --v2-pct 100 (every case in batches) also: */
    HF_RELAY_CLEAR,
    HF_PREFIX,
    HF_MORE,
    HF_REORDER,
};
#define SWEEP_KINDS_V1 12L
#define SWEEP_PER_KIND (HR_FAULT_SPAN * 2 * 2)
#define SWEEP_KINDS_N(o)                                                                           \
    ((o)->v2_pct >= 100 ? (long)(sizeof SWEEP_KINDS / sizeof SWEEP_KINDS[0]) : SWEEP_KINDS_V1)
#define SWEEP_CASES(o) (SWEEP_KINDS_N(o) * SWEEP_PER_KIND)

static void plan_sweep(struct hr_session *s)
{
    struct hr_relay *R = s->R;
    unsigned long i = s->idx;
    int keep_pending = (int)(i % 2), variant = (int)(i / 2 % 2);
    s->rng = R->o.seed ^ (i * 0xD1B54A32D192ED03ULL);
    s->op = "topup";
    s->batch = R->o.v2_pct >= 100 ? WSM_BATCH_MAX : 0;
    s->code = R->ncodes > 0 ? R->codes[i % R->ncodes] : HR_BAD_CODE;
    s->gw = (int)(i % (unsigned long)R->o.nurls);
    s->card = (int)((i / 2 * 2 + (unsigned long)keep_pending) % (unsigned long)R->run.ncards);
    s->stride = 2;
    s->nf = 1;
    s->f[0].kind = SWEEP_KINDS[i / SWEEP_PER_KIND];
    s->f[0].at = 1 + (long)(i / 4 % HR_FAULT_SPAN);
    /* unexpected: its six variants spread over the positions */
    s->f[0].param = s->f[0].kind == HF_UNEXPECTED ? (uint32_t)(i / 2) : (uint32_t)variant;
}

/* Takes the planned card, or (unless the plan shares cards on purpose)
 * the next one no other session is using: two sessions on one card are a
 * fault of their own, and a clean load must not make it by accident. */
static void claim_card(struct hr_session *s)
{
    struct hr_relay *R = s->R;
    pthread_mutex_lock(&R->run.mu);
    int stride = s->stride > 0 ? s->stride : 1;
    if (!s->share)
        for (int k = 0; k < R->run.ncards; k += stride) {
            int i = (s->card + k) % R->run.ncards;
            if (R->in_use[i] == 0) {
                s->card = i;
                break;
            }
        }
    R->in_use[s->card]++;
    pthread_mutex_unlock(&R->run.mu);
    s->c = &R->run.cards[s->card];
    memcpy(s->uid_sent, s->c->uid, HR_UID_LEN);
    if (s->lie && s->lie_other > 0 && R->run.ncards > 1)
        memcpy(s->uid_sent, R->run.cards[(s->card + s->lie_other) % R->run.ncards].uid, HR_UID_LEN);
    else if (s->lie)
        memcpy(s->uid_sent, s->lie_uid, HR_UID_LEN);
    if (s->lie && memcmp(s->uid_sent, s->c->uid, HR_UID_LEN) == 0)
        s->uid_sent[HR_UID_LEN - 1] ^= 0x5A;
}

static void release_card(struct hr_session *s)
{
    pthread_mutex_lock(&s->R->run.mu);
    s->R->in_use[s->card]--;
    pthread_mutex_unlock(&s->R->run.mu);
}

static void count_outcome(struct hr_relay *R, const char *key)
{
    pthread_mutex_lock(&R->run.mu);
    int i;
    for (i = 0; i < R->noutcome; i++)
        if (strcmp(R->outcome[i].key, key) == 0)
            break;
    if (i == R->noutcome && R->noutcome < HR_MAX_OUTCOMES)
        snprintf(R->outcome[R->noutcome++].key, sizeof R->outcome[0].key, "%s", key);
    if (i < R->noutcome)
        R->outcome[i].n++;
    pthread_mutex_unlock(&R->run.mu);
}

static void record_txn(struct hr_session *s)
{
    struct hr_run *run = &s->R->run;
    pthread_mutex_lock(&run->mu);
    if (run->nrtxn == run->caprtxn) {
        size_t cap = run->caprtxn ? run->caprtxn * 2 : 256;
        struct hr_result_txn *p = realloc(run->rtxn, cap * sizeof *p);
        if (p == NULL) {
            pthread_mutex_unlock(&run->mu);
            return;
        }
        run->rtxn = p;
        run->caprtxn = cap;
    }
    struct hr_result_txn *t = &run->rtxn[run->nrtxn++];
    snprintf(t->uuid, sizeof t->uuid, "%s", s->txn);
    snprintf(t->status, sizeof t->status, "%s", s->status);
    t->card = s->card;
    pthread_mutex_unlock(&run->mu);
}

/* What a finished session tells: counters, txns, and the unfreeze that the
 * relay's own integrity faults make necessary. */
static void session_outcome(struct hr_session *s)
{
    struct hr_relay *R = s->R;
    char key[64];
    if (strcmp(s->end, "result") == 0)
        snprintf(key, sizeof key, "%s:%s%s%s", s->op, s->status, s->error[0] ? "/" : "", s->error);
    else
        snprintf(key, sizeof key, "%s:no-result/%s", s->op, s->end);
    count_outcome(R, key);
    pthread_mutex_lock(&R->run.mu);
    if (strcmp(s->end, "result") != 0)
        R->no_result++;
    if (strcmp(s->status, "ok") == 0)
        (*(strcmp(s->op, "topup") == 0 ? &R->ok_topups : &R->ok_checks))++;
    pthread_mutex_unlock(&R->run.mu);
    if (s->lie && strcmp(s->status, "ok") == 0)
        hr_violation(R, "session %lu: a client lying about the UID got an ok result", s->idx);
    if (s->txn[0] != '\0')
        record_txn(s);
    if (strcmp(s->error, "card-error") == 0 && s->db != NULL) {
        int frozen = 0, records = 0;
        if (hr_db_unfreeze(R->run.conninfo, s->db, s->c, &frozen, &records) == 0) {
            if (records)
                report_records_freeze(R, s->c);
            else if (frozen) {
                pthread_mutex_lock(&R->run.mu);
                R->run.unfrozen++;
                pthread_mutex_unlock(&R->run.mu);
            }
        }
    }
    if (R->log != NULL) {
        pthread_mutex_lock(&R->run.mu);
        fprintf(R->log,
                "s=%lu card=%s op=%s lie=%d injected=%s cmds=%ld end=%s status=%s error=%s\n",
                s->idx, s->c->uid_hex, s->op, s->lie, s->injected[0] ? s->injected : "-", s->ncmd,
                s->end, s->status[0] ? s->status : "-", s->error[0] ? s->error : "-");
        pthread_mutex_unlock(&R->run.mu);
    }
}

/* Runs one session to its end.  Returns 0 if it reached the server. */
static int run_session(struct hr_session *s)
{
    struct hr_relay *R = s->R;
    struct wsc_client_opts opts;
    char err[300];
    memset(&opts, 0, sizeof opts);
    opts.connect_timeout_ms = 5000;
    if (s->pre_commit) {
        note_fault(s, HF_PRE_COMMIT, 0);
        card_own(s->c, 0xC7);
    }
    if (s->lie)
        note_fault(s, HF_LIE_UID, 0);
    if (wsc_client_connect(&R->url[s->gw], &opts, &s->ws, err, sizeof err) != 0) {
        pthread_mutex_lock(&R->run.mu);
        R->connect_failed++;
        pthread_mutex_unlock(&R->run.mu);
        return -1;
    }
    pthread_mutex_lock(&R->run.mu);
    R->connected++;
    if (s->batch > 0)
        R->v2_sessions++;
    if (s->lie)
        R->lie_sessions++;
    pthread_mutex_unlock(&R->run.mu);
    if (s->race)
        pthread_barrier_wait(&R->barrier);
    s->state = HS_WAIT_SERVER;
    long long deadline = now_ms() + 40000 + 2 * R->o.stall_ms;
    if (send_operation(s) != 0)
        s->state = HS_DONE;
    while (s->state != HS_DONE) {
        long long left = deadline - now_ms();
        const char *text = NULL;
        size_t len = 0;
        if (left <= 0 || hr_stop) {
            drop(s, "timeout");
            break;
        }
        int r = wsc_client_recv(s->ws, (int)left, &text, &len);
        if (r == WSC_RECV_MESSAGE)
            on_message(s, text, len);
        else if (r == WSC_RECV_CLOSED || r < 0) {
            snprintf(s->end, sizeof s->end, "closed");
            s->state = HS_DONE;
        }
    }
    if (strcmp(s->end, "result") == 0)
        wsc_client_close(s->ws, WSC_CLOSE_NORMAL, NULL, 500);
    wsc_client_free(s->ws);
    s->ws = NULL;
    if (s->post_commit) {
        note_fault(s, HF_POST_COMMIT, s->ncmd);
        card_own(s->c, 0xC7);
    }
    card_poll_records(s->c, 0);
    return 0;
}

/* After a sweep case: a clean check on the same card (it settles the
 * case), then the relay's own CommitTransaction to that card. */
static void sweep_follow_up(const struct hr_session *f)
{
    struct hr_session s;
    memset(&s, 0, sizeof s);
    s.R = f->R;
    s.idx = f->idx;
    s.clean = 1;
    s.gw = f->gw;
    s.card = f->card;
    s.c = f->c;
    s.op = "check";
    s.db = f->db;
    memcpy(s.uid_sent, s.c->uid, HR_UID_LEN);
    if (run_session(&s) == 0)
        session_outcome(&s);
    card_own(s.c, 0xC7);
    card_poll_records(s.c, 0);
}

static int until_reached(const struct hr_relay *R)
{
    struct stat st;
    return R->o.until_file != NULL && stat(R->o.until_file, &st) == 0;
}

static void *worker_main(void *arg)
{
    struct hr_relay *R = arg;
    void *db = NULL;
    for (;;) {
        long idx = atomic_fetch_add(&R->next, 1);
        if (idx >= R->o.sessions || hr_stop || until_reached(R))
            break;
        struct hr_session s;
        memset(&s, 0, sizeof s);
        s.R = R;
        s.idx = (unsigned long)idx;
        s.db = &db;
        if (R->o.sweep)
            plan_sweep(&s);
        else
            plan_session(&s);
        claim_card(&s);
        pthread_mutex_lock(&R->run.mu);
        R->started++;
        pthread_mutex_unlock(&R->run.mu);
        int r = run_session(&s);
        if (r == 0 && R->o.sweep) {
            session_outcome(&s);
            sweep_follow_up(&s);
        }
        release_card(&s);
        if (r != 0) {
            sleep_ms(100); /* the gateway is down (a test is restarting it) */
            continue;
        }
        if (!R->o.sweep)
            session_outcome(&s);
        /* A phone retries later when the server is in trouble. */
        if (strcmp(s.error, "internal") == 0 || strcmp(s.error, "overloaded") == 0)
            sleep_ms(100);
        /* Sometimes the phone lets the card go between sessions. */
        if (!s.clean && rnd(&s, 100) < 3) {
            pthread_mutex_lock(&s.c->mu);
            sim_card_power_cycle(s.c->sim);
            pthread_mutex_unlock(&s.c->mu);
            pthread_mutex_lock(&R->run.mu);
            R->power_cycles++;
            pthread_mutex_unlock(&R->run.mu);
        }
    }
    hr_db_close(&db);
    return NULL;
}

/* ------------------------------------------------------------ race */

struct hr_racer {
    struct hr_relay *R;
    int card;
    struct hr_session s;
};

static void *racer_main(void *arg)
{
    struct hr_racer *q = arg;
    struct hr_session *s = &q->s;
    memset(s, 0, sizeof *s);
    s->R = q->R;
    s->idx = (unsigned long)q->card;
    s->clean = 1;
    s->race = 1;
    s->gw = q->card % q->R->o.nurls;
    s->card = q->card;
    s->c = &q->R->run.cards[q->card];
    s->op = "topup";
    s->code = q->R->o.race_code;
    memcpy(s->uid_sent, s->c->uid, HR_UID_LEN);
    if (run_session(s) != 0)
        pthread_barrier_wait(&q->R->barrier); /* never leave the others waiting */
    else
        session_outcome(s);
    return NULL;
}

static int run_race(struct hr_relay *R)
{
    int n = R->o.race_clients;
    struct hr_racer *q = calloc((size_t)n, sizeof *q);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    if (q == NULL || th == NULL || pthread_barrier_init(&R->barrier, NULL, (unsigned)n) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        q[i].R = R;
        q[i].card = i;
        if (pthread_create(&th[i], NULL, racer_main, &q[i]) != 0) {
            fprintf(stderr, "hostile_relay: cannot start racer %d\n", i);
            exit(1);
        }
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&R->barrier);
    free(q);
    free(th);
    return 0;
}

/* ------------------------------------------------------------ settling */

/* One clean check per card, retried while the system recovers (a lease of
 * a killed worker expires, a database comes back). */
static void settle_all(struct hr_relay *R)
{
    void *db = NULL;
    long long deadline = now_ms() + R->o.settle_timeout_ms;
    for (int i = 0; i < R->run.ncards; i++) {
        char last[64] = "none";
        for (;;) {
            struct hr_session s;
            memset(&s, 0, sizeof s);
            s.R = R;
            s.idx = (unsigned long)i;
            s.clean = 1;
            s.gw = i % R->o.nurls;
            s.card = i;
            s.c = &R->run.cards[i];
            s.op = "check";
            s.db = &db;
            memcpy(s.uid_sent, s.c->uid, HR_UID_LEN);
            int r = run_session(&s);
            pthread_mutex_lock(&R->run.mu);
            R->settle_checks++;
            pthread_mutex_unlock(&R->run.mu);
            if (r == 0 && strcmp(s.status, "ok") == 0)
                break;
            snprintf(last, sizeof last, "%s %s %s", s.end[0] ? s.end : "connect", s.status,
                     s.error);
            if (r == 0 && strcmp(s.error, "card-error") == 0) {
                int frozen = 0, records = 0;
                if (hr_db_unfreeze(R->run.conninfo, &db, s.c, &frozen, &records) == 0 && records) {
                    report_records_freeze(R, s.c);
                    break;
                }
                if (frozen) {
                    pthread_mutex_lock(&R->run.mu);
                    R->run.unfrozen++;
                    pthread_mutex_unlock(&R->run.mu);
                }
            }
            if (now_ms() > deadline || hr_stop) {
                hr_violation(R, "card %s could not be settled within %ld ms (last: %s)",
                             s.c->uid_hex, R->o.settle_timeout_ms, last);
                break;
            }
            sleep_ms(250);
        }
        card_poll_records(&R->run.cards[i], 0);
    }
    hr_db_close(&db);
}

/* ------------------------------------------------------------ setup */

static int parse_master_keys(const char *s, uint8_t keys[4][16])
{
    for (int k = 0; k < 4; k++) {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        if (len != 32 || hex_decode(s, len, keys[k], 16) != 16)
            return -1;
        if (k < 3) {
            if (comma == NULL)
                return -1;
            s = comma + 1;
        }
    }
    return 0;
}

static int setup_cards(struct hr_relay *R)
{
    const struct hr_opts *o = &R->o;
    uint8_t keys[4][16];
    int have_keys = o->master_keys != NULL && parse_master_keys(o->master_keys, keys) == 0;
    R->run.cards = calloc((size_t)o->ncards, sizeof *R->run.cards);
    if (R->run.cards == NULL)
        return -1;
    R->run.ncards = o->ncards;
    for (int i = 0; i < o->ncards; i++) {
        struct hr_card *c = &R->run.cards[i];
        memcpy(c->uid, o->uid_base, HR_UID_LEN);
        unsigned v = ((unsigned)c->uid[5] << 8 | c->uid[6]) + (unsigned)i;
        c->uid[5] = (uint8_t)(v >> 8);
        c->uid[6] = (uint8_t)v;
        hex_encode(c->uid, HR_UID_LEN, c->uid_hex);
        snprintf(c->path, sizeof c->path, "%s/%s.card", o->cards_dir, c->uid_hex);
        pthread_mutex_init(&c->mu, NULL);
        c->sim = sim_card_load(c->path);
        if (c->sim == NULL) {
            if (!have_keys) {
                fprintf(stderr, "hostile_relay: no card %s and no valid --master-keys to make it\n",
                        c->path);
                return -1;
            }
            c->sim = sim_card_new(c->uid, HR_UID_LEN, SIM_PICC_DES0);
            if (c->sim == NULL ||
                sim_card_personalize(c->sim, keys, PROF_SYSTEM_ID_DEFAULT, 0) != 0 ||
                sim_card_save(c->sim, c->path) != 0) {
                fprintf(stderr, "hostile_relay: cannot make card %s\n", c->path);
                return -1;
            }
        }
        if (o->keep_pending_every > 0 && i % o->keep_pending_every == o->keep_pending_every - 1)
            c->sim_flags = SIM_FLAG_KEEP_PENDING_ON_SELECT_AUTH;
        sim_card_set_flags(c->sim, c->sim_flags);
        c->balance0 = card_balance(c);
        card_poll_records(c, 1);
    }
    sodium_memzero(keys, sizeof keys);
    return 0;
}

static int load_codes(struct hr_relay *R)
{
    if (R->o.codes_file == NULL)
        return 0;
    FILE *f = fopen(R->o.codes_file, "r");
    if (f == NULL) {
        fprintf(stderr, "hostile_relay: cannot read %s\n", R->o.codes_file);
        return -1;
    }
    char line[128];
    size_t cap = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (R->ncodes == cap) {
            cap = cap ? cap * 2 : 256;
            char **p = realloc(R->codes, cap * sizeof *p);
            if (p == NULL) {
                fclose(f);
                return -1;
            }
            R->codes = p;
        }
        R->codes[R->ncodes++] = strdup(line);
    }
    fclose(f);
    return 0;
}

#define USAGE                                                                                      \
    "usage: hostile_relay --url WS_URL [--url WS_URL2 ...] --conninfo PGCONNINFO --cards-dir DIR " \
    "--cards N\n"                                                                                  \
    "         --uid-base HEX14 [--master-keys K0,K1,K2,K3] [--codes FILE]\n"                       \
    "         [--sessions S] [--concurrency C] [--seed N] [--fault-pct P] [--check-pct P]\n"       \
    "         [--bad-code-pct P] [--share-pct P] [--keep-pending-every K] [--stall-ms MS]\n"       \
    "         [--until-file F] [--settle-timeout-ms MS] [--min-ok N] [--log FILE]\n"               \
    "         [--race-code CODE --race-clients N] [--sweep 1] [--v2-pct P]\n"

static int parse_args(int argc, char **argv, struct hr_opts *o, const char **conninfo)
{
    memset(o, 0, sizeof *o);
    o->sessions = 100;
    o->concurrency = 4;
    o->fault_pct = 60;
    o->check_pct = 25;
    o->bad_code_pct = 3;
    o->keep_pending_every = 2;
    o->share_pct = 5;
    o->stall_ms = 2500;
    o->settle_timeout_ms = 120000;
    o->min_ok = 1;
    o->seed = 0;
    int have_seed = 0, have_uid = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            fprintf(stderr, "hostile_relay: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--url") == 0) {
            if (o->nurls == HR_MAX_URLS) {
                fprintf(stderr, "hostile_relay: at most %d --url\n", HR_MAX_URLS);
                return -1;
            }
            o->url[o->nurls++] = v;
        } else if (strcmp(a, "--conninfo") == 0)
            *conninfo = v;
        else if (strcmp(a, "--cards-dir") == 0)
            o->cards_dir = v;
        else if (strcmp(a, "--cards") == 0)
            o->ncards = atoi(v);
        else if (strcmp(a, "--uid-base") == 0)
            have_uid = hex_decode(v, strlen(v), o->uid_base, HR_UID_LEN) == HR_UID_LEN;
        else if (strcmp(a, "--master-keys") == 0)
            o->master_keys = v;
        else if (strcmp(a, "--codes") == 0)
            o->codes_file = v;
        else if (strcmp(a, "--sessions") == 0)
            o->sessions = atol(v);
        else if (strcmp(a, "--concurrency") == 0)
            o->concurrency = atoi(v);
        else if (strcmp(a, "--seed") == 0) {
            o->seed = strtoull(v, NULL, 0);
            have_seed = 1;
        } else if (strcmp(a, "--fault-pct") == 0)
            o->fault_pct = atoi(v);
        else if (strcmp(a, "--check-pct") == 0)
            o->check_pct = atoi(v);
        else if (strcmp(a, "--bad-code-pct") == 0)
            o->bad_code_pct = atoi(v);
        else if (strcmp(a, "--share-pct") == 0)
            o->share_pct = atoi(v);
        else if (strcmp(a, "--keep-pending-every") == 0)
            o->keep_pending_every = atoi(v);
        else if (strcmp(a, "--stall-ms") == 0)
            o->stall_ms = atol(v);
        else if (strcmp(a, "--until-file") == 0)
            o->until_file = v;
        else if (strcmp(a, "--settle-timeout-ms") == 0)
            o->settle_timeout_ms = atol(v);
        else if (strcmp(a, "--min-ok") == 0)
            o->min_ok = atol(v);
        else if (strcmp(a, "--log") == 0)
            o->log_file = v;
        else if (strcmp(a, "--sweep") == 0)
            o->sweep = atoi(v);
        else if (strcmp(a, "--v2-pct") == 0)
            o->v2_pct = atoi(v);
        else if (strcmp(a, "--race-code") == 0)
            o->race_code = v;
        else if (strcmp(a, "--race-clients") == 0)
            o->race_clients = atoi(v);
        else {
            fprintf(stderr, "hostile_relay: unknown option %s\n", a);
            return -1;
        }
    }
    if (o->nurls == 0 || *conninfo == NULL || o->cards_dir == NULL || o->ncards < 1 ||
        o->ncards > 4096 || !have_uid || o->concurrency < 1 || o->concurrency > 512 ||
        o->sessions < 0 ||
        (o->race_code != NULL && (o->race_clients < 1 || o->race_clients > o->ncards)))
        return -1;
    if (o->sweep) {
        /* Both kinds of card, and every case exactly once. */
        if (o->ncards < 2 || o->ncards % 2 != 0 || o->keep_pending_every != 2)
            return -1;
        if (o->v2_pct != 0 && o->v2_pct != 100)
            return -1;
        o->sessions = SWEEP_CASES(o);
    }
    if (!have_seed)
        randombytes_buf(&o->seed, sizeof o->seed);
    return 0;
}

static void print_summary(struct hr_relay *R)
{
    printf("hostile_relay: seed=%llu sessions_started=%ld connected=%ld connect_failed=%ld "
           "no_result=%ld settle_checks=%ld\n",
           (unsigned long long)R->o.seed, R->started, R->connected, R->connect_failed, R->no_result,
           R->settle_checks);
    int kinds = 0;
    /* Batch-only kinds can happen only when some sessions announce batches. */
    int possible = (R->o.v2_pct > 0 ? HF_COUNT : HF_FIRST_V2_ONLY) - 1;
    for (int k = 1; k < HF_COUNT; k++)
        kinds += R->fault_kind[k] > 0;
    printf("hostile_relay: faults_injected=%ld fault_kinds=%d/%d", R->faults, kinds, possible);
    for (int k = 1; k < HF_COUNT; k++)
        if (R->fault_kind[k] > 0)
            printf(" %s=%ld", FAULT_NAMES[k], R->fault_kind[k]);
    printf("\nhostile_relay: v2_sessions=%ld batches=%ld batch_apdus=%ld", R->v2_sessions,
           R->batches, R->batch_apdus);
    printf("\nhostile_relay: lying_sessions=%ld power_cycles=%ld integrity_unfreezes=%ld "
           "ok_topups=%ld ok_checks=%ld\n",
           R->lie_sessions, R->power_cycles, R->run.unfrozen, R->ok_topups, R->ok_checks);
    printf("hostile_relay: outcomes:");
    for (int i = 0; i < R->noutcome; i++)
        printf(" %s=%ld", R->outcome[i].key, R->outcome[i].n);
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static struct hr_relay R;
    const char *conninfo = NULL;
    if (parse_args(argc, argv, &R.o, &conninfo) != 0) {
        fputs(USAGE, stderr);
        return 2;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "hostile_relay: libsodium failed to initialize\n");
        return 2;
    }
    for (int i = 0; i < R.o.nurls; i++)
        if (wsc_url_parse(R.o.url[i], &R.url[i]) != 0) {
            fprintf(stderr, "hostile_relay: bad --url %s\n", R.o.url[i]);
            return 2;
        }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    R.run.conninfo = conninfo;
    pthread_mutex_init(&R.run.mu, NULL);
    pthread_mutex_init(&R.bank_mu, NULL);
    R.bank = calloc(HR_BANK, sizeof *R.bank);
    R.cmds = calloc(HR_BANK, sizeof *R.cmds);
    R.in_use = calloc((size_t)R.o.ncards, sizeof *R.in_use);
    if (R.bank == NULL || R.cmds == NULL || R.in_use == NULL || load_codes(&R) != 0 ||
        setup_cards(&R) != 0)
        return 2;
    if (R.o.log_file != NULL)
        R.log = fopen(R.o.log_file, "w");
    if (R.o.race_code != NULL)
        printf("hostile_relay: race: %d clients on %d cards, one code\n", R.o.race_clients,
               R.run.ncards);
    else if (R.o.sweep)
        printf("hostile_relay: sweep: %ld cases (%ld fault kinds x commands 1..%d x 2 variants x "
               "2 card kinds), each followed by a clean check and the relay's own commit\n",
               SWEEP_CASES(&R.o), SWEEP_KINDS_N(&R.o), HR_FAULT_SPAN);
    else
        printf("hostile_relay: seed=%llu cards=%d (every %d-th keeps pending changes over "
               "select/auth) codes=%zu sessions=%ld concurrency=%d fault_pct=%d share_pct=%d "
               "gateways=%d\n",
               (unsigned long long)R.o.seed, R.run.ncards, R.o.keep_pending_every, R.ncodes,
               R.o.sessions, R.o.concurrency, R.o.fault_pct, R.o.share_pct, R.o.nurls);
    if (hr_db_baseline(&R.run) != 0)
        return 1;

    if (R.o.race_code != NULL) {
        if (run_race(&R) != 0)
            return 2;
    } else {
        pthread_t *th = calloc((size_t)R.o.concurrency, sizeof *th);
        if (th == NULL)
            return 2;
        for (int i = 0; i < R.o.concurrency; i++)
            if (pthread_create(&th[i], NULL, worker_main, &R) != 0) {
                fprintf(stderr, "hostile_relay: cannot start thread %d\n", i);
                return 2;
            }
        for (int i = 0; i < R.o.concurrency; i++)
            pthread_join(th[i], NULL);
        free(th);
    }
    long ok_before_settle = R.ok_topups;
    settle_all(&R);

    int32_t *final = calloc((size_t)R.run.ncards, sizeof *final);
    if (final == NULL)
        return 2;
    for (int i = 0; i < R.run.ncards; i++) {
        struct hr_card *c = &R.run.cards[i];
        final[i] = card_balance(c);
        if (sim_card_save(c->sim, c->path) != 0)
            fprintf(stderr, "hostile_relay: cannot save %s\n", c->path);
    }
    print_summary(&R);
    long v = hr_db_verify(&R.run, final);
    if (v < 0) {
        printf("hostile_relay: the database could not be read for the final check\n");
        return 1;
    }
    R.run.violations += v;
    if (R.o.race_code != NULL && ok_before_settle != 1) {
        printf("VIOLATION: %ld clients racing one code got ok (expected exactly 1)\n",
               ok_before_settle);
        R.run.violations++;
    } else if (R.o.race_code == NULL && ok_before_settle < R.o.min_ok) {
        printf("hostile_relay: only %ld top-ups succeeded (expected at least %ld): the run "
               "proved nothing\n",
               ok_before_settle, R.o.min_ok);
        R.run.violations++;
    }
    printf("RESULT sessions=%ld faults=%ld ok_topups=%ld violations=%ld\n", R.connected, R.faults,
           ok_before_settle, R.run.violations);
    if (R.log != NULL)
        fclose(R.log);
    for (int i = 0; i < R.run.ncards; i++) {
        sim_card_free(R.run.cards[i].sim);
        free(R.run.cards[i].seen);
    }
    for (size_t i = 0; i < R.ncodes; i++) {
        sodium_memzero(R.codes[i], strlen(R.codes[i]));
        free(R.codes[i]);
    }
    free(R.codes);
    free(R.run.cards);
    free(R.run.rtxn);
    free(R.bank);
    free(R.cmds);
    free(R.in_use);
    free(final);
    return R.run.violations == 0 ? 0 : 1;
}
