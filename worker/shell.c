/* shell: the live sessions of one worker and the dispatch of engine actions.
 *
 * Each gateway frame becomes one engine event; each action the engine
 * returns becomes a frame, a ledger request or a timer, executed in the
 * order given.  A session lives in a hash table keyed by the gateway's
 * session id from eng_open() until the engine says ENG_A_DONE; that is its
 * one free path.  A session belongs to the gateway incarnation that opened
 * it (wire.h, heartbeat): when another incarnation speaks, that gateway
 * and its clients are gone, so the session is ended as if its client had
 * left and sends nothing more (a new gateway must never receive an old
 * session's frames: they are not its clients').  Nothing here blocks or
 * does I/O of its own.  Never log the authcode of an OPEN frame (a top-up
 * code or an operator token), keys, or more than the tail of a UID. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <sodium.h>

#include "log.h"
#include "ota_err.h"
#include "shell.h"
#include "wire.h"

enum shs_state {
    SHS_RUNNING = 1, /* the client has not had its result yet */
    SHS_FINISHED,    /* result sent; the engine may still finish ledger work */
};

struct shs {
    uint64_t id;
    enum shs_state state;
    uint8_t op;
    uint8_t muted;    /* its gateway is gone: nothing more is sent for it */
    uint64_t gateway; /* the incarnation that opened it */
    uint8_t batch;    /* the client's batch size: 1 = v1 (WIRE_COMMAND) */
    struct eng_session *eng;
    struct event *timer;
    uint64_t timer_at; /* when the pending timer fires (shell_now_ms); 0: not pending */
    struct shell *sh;
    uint64_t ticket;  /* of its token check (0: none asked) */
    char uid_tail[8]; /* log_uid_tail of its card, for its result line */
    struct shs *next; /* hash chain */
};

struct shell {
    struct event_base *base;
    struct eng_ctx *eng;
    struct shell_io io;
    uint32_t capacity;
    uint32_t count;
    uint64_t next_ticket;
    int draining;
    uint64_t gateway; /* the incarnation of the gateway we talk to (0: none yet) */
    /* OPEN's authCode comes sealed to this pair, made at start and
     * announced in READY (sodium_malloc: locked, wiped at free). */
    struct wire_seal_key *seal;
    size_t nbuckets; /* a power of two */
    struct shs **buckets;
};

uint64_t shell_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t bucket_of(const struct shell *sh, uint64_t id)
{
    /* Session ids come from the gateway; a multiplicative hash spreads
     * sequential ids and costs nothing. */
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (sh->nbuckets - 1);
}

static struct shs *find(const struct shell *sh, uint64_t id)
{
    for (struct shs *s = sh->buckets[bucket_of(sh, id)]; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

static void unlink_session(struct shell *sh, struct shs *s)
{
    struct shs **pp = &sh->buckets[bucket_of(sh, s->id)];
    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp)
        *pp = s->next;
    sh->count--;
}

/* The one free path of a session. */
static void session_free(struct shell *sh, struct shs *s)
{
    unlink_session(sh, s);
    if (s->timer)
        event_free(s->timer);
    eng_free(s->eng);
    free(s);
}

static void send_frame(struct shell *sh, uint64_t session, const uint8_t *frame, int n,
                       const char *what)
{
    if (n < 0) {
        log_error("encode_failed", "session=%" PRIu64 " frame=%s err=%s", session, what,
                  ota_strerror(n));
        return;
    }
    int rc = sh->io.send(sh->io.arg, frame, (size_t)n);
    if (rc < 0)
        log_error("send_failed", "session=%" PRIu64 " frame=%s err=%s", session, what,
                  ota_strerror(rc));
}

/* The one log line of a session's result, engine-made or not (the engine
 * does not log it): here every result leaves the worker, or is dropped
 * for a gateway that is gone (muted). */
static void log_result(uint64_t session, const char *uid, const struct wire_result *r, int muted)
{
    char txn[33] = "-";
    if (r->has & WIRE_RES_HAS_TXN)
        sodium_bin2hex(txn, sizeof txn, r->txn, sizeof r->txn);
    log_info("session_result",
             "session=%" PRIu64 " op=%s uid=%s status=%s error=%s txn=%s amount=%" PRId64
             " balance=%" PRId64 "%s",
             session, wire_op_name(r->op), uid, wire_status_name(r->status),
             r->status == WIRE_ST_OK ? "-" : wire_error_name(r->error), txn,
             (r->has & WIRE_RES_HAS_AMOUNT) ? r->amount : 0,
             (r->has & WIRE_RES_HAS_BALANCE) ? r->balance : -1, muted ? " muted=1" : "");
}

static void send_result(struct shell *sh, uint64_t session, const char *uid,
                        const struct wire_result *r)
{
    uint8_t frame[WIRE_MAX_FRAME];
    log_result(session, uid, r, 0);
    send_frame(sh, session, frame, wire_encode_result(frame, sizeof frame, session, r), "result");
}

static void on_timer(evutil_socket_t fd, short what, void *arg);

/* Executes the engine's actions in order; frees the session on DONE.  A
 * token verdict decided at once is fed back after the other actions (the
 * engine asks once per session, so this recurses once at most). */
static void run_actions(struct shell *sh, struct shs *s, const struct eng_actions *out)
{
    uint8_t frame[WIRE_MAX_FRAME];
    int done = 0;
    int verdict = 0;
    size_t n = out->n <= ENG_MAX_ACTIONS ? out->n : ENG_MAX_ACTIONS;
    struct wire_apdus batch; /* one event's APDUs: one frame (v2) */
    batch.n = 0;
    batch.err = 0;

    for (size_t i = 0; i < n; i++) {
        const struct eng_action *a = &out->a[i];
        if (s->muted && a->type != ENG_A_LEDGER && a->type != ENG_A_DONE) {
            if (a->type == ENG_A_RESULT) {
                log_result(s->id, s->uid_tail, &a->u.result, 1);
                s->state = SHS_FINISHED;
            }
            continue;
        }
        switch (a->type) {
        case ENG_A_APDU:
            if (s->batch > 1) {
                if (batch.n < WIRE_MAX_BATCH)
                    batch.a[batch.n++] = a->u.apdu;
                if (i + 1 < n && out->a[i + 1].type == ENG_A_APDU)
                    break;
                send_frame(sh, s->id, frame,
                           wire_encode_apdus(frame, sizeof frame, WIRE_COMMANDS, s->id, &batch),
                           "commands");
                batch.n = 0;
                break;
            }
            send_frame(sh, s->id, frame,
                       wire_encode_bytes(frame, sizeof frame, WIRE_COMMAND, s->id, a->u.apdu.data,
                                         a->u.apdu.len),
                       "command");
            break;
        case ENG_A_MODAL:
            send_frame(sh, s->id, frame,
                       wire_encode_bytes(frame, sizeof frame, WIRE_MODAL, s->id,
                                         (const uint8_t *)a->u.text,
                                         strnlen(a->u.text, WIRE_MAX_TEXT)),
                       "modal");
            break;
        case ENG_A_LEDGER: {
            /* Its session id is set in one place, eng_ledger_init (the
             * engine's id is this session's: eng_open got it from here);
             * replies are routed by it. */
            struct ledger_req req = a->u.ledger;
            sh->io.ledger(sh->io.arg, &req);
            sodium_memzero(&req, sizeof req);
            break;
        }
        case ENG_A_PHASE: {
            struct wire_phase ph = {.at_risk = a->u.at_risk ? 1 : 0};
            send_frame(sh, s->id, frame, wire_encode_phase(frame, sizeof frame, s->id, &ph),
                       "phase");
            break;
        }
        case ENG_A_RESULT:
            if (s->state == SHS_RUNNING) {
                send_result(sh, s->id, s->uid_tail, &a->u.result);
                s->state = SHS_FINISHED;
            } else {
                log_error("second_result", "session=%" PRIu64, s->id);
            }
            break;
        case ENG_A_TOKEN:
            s->ticket = ++sh->next_ticket;
            verdict = sh->io.token(sh->io.arg, s->id, s->ticket, &a->u.token);
            break;
        case ENG_A_DONE:
            done = 1;
            break;
        default:
            log_error("unknown_action", "session=%" PRIu64 " type=%d", s->id, (int)a->type);
            break;
        }
    }

    if (done) {
        if (s->state == SHS_RUNNING && !s->muted) {
            /* The engine promised a result before DONE; the client must
             * not be left without one. */
            struct wire_result r = {
                .op = s->op, .status = WIRE_ST_FAILED, .error = WIRE_E_INTERNAL};
            log_error("done_without_result", "session=%" PRIu64, s->id);
            send_result(sh, s->id, s->uid_tail, &r);
        }
        session_free(sh, s);
        return;
    }
    if (verdict) {
        struct eng_actions next;
        eng_on_token_verdict(s->eng, (enum eng_token_verdict)verdict, shell_now_ms(), &next);
        run_actions(sh, s, &next);
        return;
    }
    /* A pending timer that fires no later than the engine's deadline is
     * left alone: eng_on_timeout() called early changes nothing and names
     * the deadline again.  Each exchange moves the deadline later, so this
     * saves a timer reschedule per exchange; a session usually ends before
     * its first timer fires. */
    if (out->timer_at_ms) {
        if (s->timer_at && s->timer_at <= out->timer_at_ms)
            return;
        uint64_t now = shell_now_ms();
        uint64_t delta = out->timer_at_ms > now ? out->timer_at_ms - now : 0;
        struct timeval tv = {.tv_sec = (time_t)(delta / 1000),
                             .tv_usec = (suseconds_t)((delta % 1000) * 1000)};
        evtimer_add(s->timer, &tv);
        s->timer_at = now + delta;
    } else if (s->timer_at) {
        evtimer_del(s->timer);
        s->timer_at = 0;
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct shs *s = arg;
    struct eng_actions out;
    s->timer_at = 0; /* fired: no longer pending */
    eng_on_timeout(s->eng, shell_now_ms(), &out);
    run_actions(s->sh, s, &out);
}

static void refuse_open(struct shell *sh, uint64_t session, const char *uid, uint8_t op,
                        uint8_t error)
{
    struct wire_result r = {.op = op, .status = WIRE_ST_FAILED, .error = error};
    send_result(sh, session, uid, &r);
}

static void handle_open(struct shell *sh, const struct wire_hdr *h, const uint8_t *frame)
{
    struct wire_open open;
    char tail[8];

    if (wire_decode_open(h, frame, &open, sh->seal) != 0) {
        sodium_memzero(&open, sizeof open);
        log_warn("bad_frame", "session=%" PRIu64 " type=open", h->session);
        return;
    }
    if (find(sh, h->session)) {
        sodium_memzero(&open, sizeof open);
        log_warn("duplicate_open", "session=%" PRIu64, h->session);
        return;
    }
    uint8_t op = open.op; /* a refusal's result names it, after the wipe */
    log_info("session_open", "session=%" PRIu64 " op=%s listener=%s uid=%s", h->session,
             wire_op_name(open.op), open.listener == WIRE_LISTENER_OPERATOR ? "operator" : "public",
             log_uid_tail(open.uid, open.uid_len, tail));
    if (sh->draining || sh->count >= sh->capacity) {
        sodium_memzero(&open, sizeof open);
        log_warn("session_refused", "session=%" PRIu64 " reason=%s sessions=%" PRIu32, h->session,
                 sh->draining ? "draining" : "capacity", sh->count);
        refuse_open(sh, h->session, tail, op, WIRE_E_OVERLOADED);
        return;
    }

    struct shs *s = calloc(1, sizeof *s);
    struct event *timer = NULL;
    if (s)
        timer = evtimer_new(sh->base, on_timer, s);
    if (!s || !timer) {
        free(s);
        sodium_memzero(&open, sizeof open);
        log_error("session_alloc_failed", "session=%" PRIu64, h->session);
        refuse_open(sh, h->session, tail, op, WIRE_E_INTERNAL);
        return;
    }
    struct eng_actions out;
    s->eng = eng_open(sh->eng, h->session, &open, shell_now_ms(), &out);
    uint8_t batch = open.batch;
    /* The authcode (a top-up code or an operator token) lives on only in
     * the engine, which needs it. */
    sodium_memzero(&open, sizeof open);
    if (!s->eng) {
        event_free(timer);
        free(s);
        log_error("engine_open_failed", "session=%" PRIu64, h->session);
        refuse_open(sh, h->session, tail, op, WIRE_E_INTERNAL);
        return;
    }
    s->id = h->session;
    memcpy(s->uid_tail, tail, sizeof s->uid_tail);
    s->gateway = sh->gateway;
    s->op = op;
    s->batch = batch;
    s->state = SHS_RUNNING;
    s->timer = timer;
    s->sh = sh;
    size_t b = bucket_of(sh, s->id);
    s->next = sh->buckets[b];
    sh->buckets[b] = s;
    sh->count++;
    run_actions(sh, s, &out);
    sodium_memzero(&out, sizeof out); /* an ENG_A_TOKEN holds the token */
}

/* A gateway incarnation spoke: the sessions of any other one are ended
 * (their client went with their gateway) and muted. */
static void gateway_seen(struct shell *sh, uint64_t gateway)
{
    if (gateway == 0 || gateway == sh->gateway)
        return;
    uint32_t n = 0;
    for (size_t b = 0; b < sh->nbuckets; b++) {
        struct shs *s = sh->buckets[b], *next;
        for (; s; s = next) {
            next = s->next;
            if (s->gateway == gateway || s->muted)
                continue;
            struct eng_actions out;
            s->muted = 1;
            n++;
            eng_on_client_gone(s->eng, shell_now_ms(), &out);
            run_actions(sh, s, &out);
        }
    }
    if (sh->gateway || n)
        log_warn("gateway_changed", "sessions_dropped=%" PRIu32, n);
    sh->gateway = gateway;
}

static struct shs *session_for(struct shell *sh, const struct wire_hdr *h, const char *what)
{
    struct shs *s = find(sh, h->session);
    if (!s)
        log_debug("frame_for_unknown_session", "session=%" PRIu64 " type=%s", h->session, what);
    return s;
}

int shell_on_frame(struct shell *sh, const uint8_t *frame, size_t len)
{
    struct wire_hdr h;
    struct eng_actions out;
    struct shs *s;

    if (wire_decode_hdr(frame, len, &h) != 0) {
        log_warn("bad_frame", "len=%zu", len);
        return 0;
    }
    int per_session = h.type == WIRE_OPEN || h.type == WIRE_CARD_RESPONSE ||
                      h.type == WIRE_CARD_RESPONSES || h.type == WIRE_CLIENT_ERROR ||
                      h.type == WIRE_CLIENT_GONE;
    if (per_session && h.session == 0) {
        log_warn("bad_frame", "type=%u reason=no_session", (unsigned)h.type);
        return 0;
    }

    switch (h.type) {
    case WIRE_HEARTBEAT: {
        struct wire_heartbeat hb;
        if (wire_decode_heartbeat(&h, frame, &hb) != 0) {
            log_warn("bad_frame", "type=heartbeat");
            return 0;
        }
        gateway_seen(sh, hb.gateway);
        return WIRE_HEARTBEAT;
    }
    case WIRE_OPEN:
        handle_open(sh, &h, frame);
        return WIRE_OPEN;
    case WIRE_CARD_RESPONSE: {
        struct wire_bytes b;
        if (wire_decode_bytes(&h, frame, &b) != 0) {
            log_warn("bad_frame", "session=%" PRIu64 " type=card_response", h.session);
            return 0;
        }
        if ((s = session_for(sh, &h, "card_response"))) {
            eng_on_card_response(s->eng, b.data, b.len, shell_now_ms(), &out);
            run_actions(sh, s, &out);
        }
        return WIRE_CARD_RESPONSE;
    }
    case WIRE_CARD_RESPONSES: {
        static struct wire_apdus b; /* 4.8 KB: not on the stack of every frame */
        if (wire_decode_apdus(&h, frame, &b) != 0) {
            log_warn("bad_frame", "session=%" PRIu64 " type=card_responses", h.session);
            return 0;
        }
        if ((s = session_for(sh, &h, "card_responses"))) {
            eng_on_card_responses(s->eng, b.a, b.n, b.err, shell_now_ms(), &out);
            run_actions(sh, s, &out);
        }
        return WIRE_CARD_RESPONSES;
    }
    case WIRE_CLIENT_ERROR: {
        struct wire_client_error ce;
        if (wire_decode_client_error(&h, frame, &ce) != 0) {
            log_warn("bad_frame", "session=%" PRIu64 " type=client_error", h.session);
            return 0;
        }
        if ((s = session_for(sh, &h, "client_error"))) {
            eng_on_client_error(s->eng, ce.kind, shell_now_ms(), &out);
            run_actions(sh, s, &out);
        }
        return WIRE_CLIENT_ERROR;
    }
    case WIRE_CLIENT_GONE:
        if (h.len != 0) {
            log_warn("bad_frame", "session=%" PRIu64 " type=client_gone", h.session);
            return 0;
        }
        if ((s = session_for(sh, &h, "client_gone"))) {
            eng_on_client_gone(s->eng, shell_now_ms(), &out);
            run_actions(sh, s, &out);
        }
        return WIRE_CLIENT_GONE;
    default:
        log_warn("unexpected_frame", "type=%u session=%" PRIu64, (unsigned)h.type, h.session);
        return 0;
    }
}

void shell_on_ledger_reply(struct shell *sh, uint64_t session, const struct ledger_reply *r)
{
    struct shs *s = find(sh, session);
    if (!s) {
        log_debug("ledger_reply_for_gone_session", "session=%" PRIu64 " req=%s status=%s", session,
                  ledger_req_name(r->type), ledger_status_name(r->status));
        return;
    }
    struct eng_actions out;
    eng_on_ledger_reply(s->eng, r, shell_now_ms(), &out);
    run_actions(sh, s, &out);
}

void shell_on_token_verdict(struct shell *sh, uint64_t session, uint64_t ticket, int verdict)
{
    struct shs *s = find(sh, session);
    if (!s || s->ticket != ticket) {
        log_debug("token_verdict_for_gone_session", "session=%" PRIu64, session);
        return;
    }
    struct eng_actions out;
    eng_on_token_verdict(s->eng, (enum eng_token_verdict)verdict, shell_now_ms(), &out);
    run_actions(sh, s, &out);
}

struct shell *shell_new(struct event_base *base, struct eng_ctx *eng, uint32_t capacity,
                        const struct shell_io *io)
{
    if (!base || !eng || !io || !io->send || !io->ledger || !io->token || capacity == 0 ||
        capacity > (1u << 24))
        return NULL;
    struct shell *sh = calloc(1, sizeof *sh);
    if (!sh)
        return NULL;
    sh->base = base;
    sh->eng = eng;
    sh->io = *io;
    sh->capacity = capacity;
    sh->nbuckets = 64;
    while (sh->nbuckets < (size_t)capacity * 2)
        sh->nbuckets <<= 1;
    sh->buckets = calloc(sh->nbuckets, sizeof *sh->buckets);
    sh->seal = sodium_malloc(sizeof *sh->seal);
    if (!sh->buckets || !sh->seal || crypto_box_keypair(sh->seal->pk, sh->seal->sk) != 0) {
        sodium_free(sh->seal);
        free(sh->buckets);
        free(sh);
        return NULL;
    }
    return sh;
}

void shell_free(struct shell *sh)
{
    if (!sh)
        return;
    for (size_t b = 0; b < sh->nbuckets; b++)
        while (sh->buckets[b])
            session_free(sh, sh->buckets[b]);
    free(sh->buckets);
    sodium_free(sh->seal);
    free(sh);
}

const uint8_t *shell_seal_pk(const struct shell *sh)
{
    return sh->seal->pk;
}

void shell_set_draining(struct shell *sh, int draining)
{
    sh->draining = draining ? 1 : 0;
}

uint32_t shell_sessions(const struct shell *sh)
{
    return sh->count;
}
