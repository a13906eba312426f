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
#include "hostile_session.h"
#include "ota_err.h"
#include "sim_card.h"
#include "ws_client.h"
#include "ws_proto_msg.h"

volatile sig_atomic_t hr_stop;

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

void hr_sleep_ms(long ms)
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

uint32_t hr_rnd(struct hr_session *s, uint32_t n)
{
    return n == 0 ? 0 : (uint32_t)(splitmix(&s->rng) % n);
}

__attribute__((format(printf, 2, 3))) void hr_violation(struct hr_relay *R, const char *fmt, ...)
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

/* ------------------------------------------------------------ a session */

static void plan_session(struct hr_session *s)
{
    struct hr_relay *R = s->R;
    const struct hr_opts *o = &R->o;
    s->rng = o->seed ^ (s->idx * 0xD1B54A32D192ED03ULL);
    (void)splitmix(&s->rng);
    s->card = (int)hr_rnd(s, (uint32_t)R->run.ncards);
    s->share = hr_rnd(s, 100) < (uint32_t)o->share_pct;
    s->gw = (int)hr_rnd(s, (uint32_t)o->nurls);
    s->op = hr_rnd(s, 100) < (uint32_t)o->check_pct ? "check" : "topup";
    /* v2: mostly the largest batch, one session in four a smaller one (the
     * server must split its batches to fit). */
    if (hr_rnd(s, 100) < (uint32_t)o->v2_pct)
        s->batch = hr_rnd(s, 4) == 0 ? WSM_BATCH_MIN + (int)hr_rnd(s, WSM_BATCH_MAX - WSM_BATCH_MIN)
                                     : WSM_BATCH_MAX;
    if (strcmp(s->op, "topup") == 0)
        s->code = hr_rnd(s, 100) < (uint32_t)o->bad_code_pct || R->ncodes == 0
                      ? HR_BAD_CODE
                      : R->codes[hr_rnd(s, (uint32_t)R->ncodes)];
    if (hr_rnd(s, 100) < (uint32_t)o->fault_pct) {
        s->nf = hr_rnd(s, 4) == 0 ? 2 : 1;
        for (int i = 0; i < s->nf; i++) {
            /* v1 sessions draw from the kinds that make sense without batches. */
            s->f[i].kind =
                (enum hr_fault)(1 + hr_rnd(s, (s->batch > 0 ? HF_COUNT : HF_FIRST_V2_ONLY) - 1));
            s->f[i].at = 1 + (long)hr_rnd(s, HR_FAULT_SPAN);
            s->f[i].param = (uint32_t)splitmix(&s->rng);
            if (s->f[i].kind == HF_LIE_UID) {
                s->lie = 1;
                s->lie_other = (s->f[i].param & 1) ? 1 + (int)hr_rnd(s, 0x7fffffff) : 0;
                s->lie_uid[0] = 0x04;
                for (int k = 1; k < HR_UID_LEN; k++)
                    s->lie_uid[k] = (uint8_t)hr_rnd(s, 256);
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
        hr_note_fault(s, HF_PRE_COMMIT, 0);
        hr_card_own(s->c, 0xC7);
    }
    if (s->lie)
        hr_note_fault(s, HF_LIE_UID, 0);
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
    if (hr_send_operation(s) != 0)
        s->state = HS_DONE;
    while (s->state != HS_DONE) {
        long long left = deadline - now_ms();
        const char *text = NULL;
        size_t len = 0;
        if (left <= 0 || hr_stop) {
            hr_drop(s, "timeout");
            break;
        }
        int r = wsc_client_recv(s->ws, (int)left, &text, &len);
        if (r == WSC_RECV_MESSAGE)
            hr_on_message(s, text, len);
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
        hr_note_fault(s, HF_POST_COMMIT, s->ncmd);
        hr_card_own(s->c, 0xC7);
    }
    hr_card_poll_records(s->c, 0);
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
    hr_card_own(s.c, 0xC7);
    hr_card_poll_records(s.c, 0);
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
            hr_sleep_ms(100); /* the gateway is down (a test is restarting it) */
            continue;
        }
        if (!R->o.sweep)
            session_outcome(&s);
        /* A phone retries later when the server is in trouble. */
        if (strcmp(s.error, "internal") == 0 || strcmp(s.error, "overloaded") == 0)
            hr_sleep_ms(100);
        /* Sometimes the phone lets the card go between sessions. */
        if (!s.clean && hr_rnd(&s, 100) < 3) {
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
            hr_sleep_ms(250);
        }
        hr_card_poll_records(&R->run.cards[i], 0);
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
        c->balance0 = hr_card_balance(c);
        hr_card_poll_records(c, 1);
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
            printf(" %s=%ld", hr_fault_names[k], R->fault_kind[k]);
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
        final[i] = hr_card_balance(c);
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
