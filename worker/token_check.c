/* token_check: operator-token checks on a verifier thread (see
 * token_check.h).
 *
 * The slots are the bound: a check holds its slot from tokc_submit()
 * until the loop has taken its verdict (queued, running, done), so at most
 * `queue` tokens are ever held and at most one Argon2id runs at a time (it
 * takes 64 MB).  The thread only reads a running slot and the hash; the
 * loop owns everything else (the limiter, the cache).  The thread wakes
 * the loop through a pipe.
 *
 * Must never run Argon2id on the loop, never hold a token longer than its
 * check, and never log one. */
#include "token_check.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "log.h"
#include "peer_limit.h"
#include "wire.h"

#define TOKC_MAX_PEERS 1024

enum slot_state { SLOT_FREE = 0, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE };

struct tokc_slot {
    enum slot_state state;
    uint64_t seq; /* first in, first checked */
    uint64_t session, ticket;
    size_t len;
    char token[WIRE_MAX_AUTHCODE];
    char peer[WIRE_MAX_PEER + 1];
    uint8_t digest[crypto_generichash_BYTES];
    int ok;
};

/* A verdict taken off its slot, handled after the lock is released. */
struct tokc_result {
    uint64_t session, ticket;
    int ok;
    char peer[WIRE_MAX_PEER + 1];
    uint8_t digest[crypto_generichash_BYTES];
};

struct tokc {
    struct tokc_config cfg;
    struct plim *lim;
    struct tokc_slot *slots; /* sodium_malloc: they hold tokens */
    struct tokc_result *results;
    uint64_t next_seq;
    tokc_done_cb done;
    void *arg;
    uint64_t (*now)(void);

    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    uint64_t verifications;

    int pipe_r, pipe_w;
    struct event *ev;

    uint8_t cache_key[crypto_generichash_KEYBYTES];
    uint8_t cache[crypto_generichash_BYTES];
    int cached;
};

const char *tokc_verdict_name(enum tokc_verdict v)
{
    switch (v) {
    case TOKC_QUEUED:
        return "queued";
    case TOKC_OK:
        return "ok";
    case TOKC_WRONG:
        return "wrong";
    case TOKC_LIMITED:
        return "limited";
    case TOKC_BUSY:
        return "busy";
    }
    return "unknown";
}

static struct tokc_slot *next_queued(struct tokc *t)
{
    struct tokc_slot *best = NULL;
    for (uint32_t i = 0; i < t->cfg.queue; i++) {
        struct tokc_slot *s = &t->slots[i];
        if (s->state == SLOT_QUEUED && (!best || s->seq < best->seq))
            best = s;
    }
    return best;
}

static void *verifier_main(void *arg)
{
    struct tokc *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        struct tokc_slot *s = next_queued(t);
        if (!s) {
            pthread_cond_wait(&t->cv, &t->mu);
            continue;
        }
        s->state = SLOT_RUNNING;
        pthread_mutex_unlock(&t->mu);
        int ok = crypto_pwhash_str_verify(t->cfg.hash, s->token, s->len) == 0;
        pthread_mutex_lock(&t->mu);
        sodium_memzero(s->token, sizeof s->token);
        s->ok = ok;
        s->state = SLOT_DONE;
        t->verifications++;
        /* A full pipe already holds a wake-up; the loop takes every done
         * slot on each one. */
        ssize_t w = write(t->pipe_w, "v", 1);
        (void)w;
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void log_verdict(uint64_t session, const char *peer, enum tokc_verdict v, int argon2)
{
    log_info("operator_token", "session=%llu peer=%s verdict=%s argon2=%d",
             (unsigned long long)session, peer, tokc_verdict_name(v), argon2);
}

/* The loop's side of a finished check: the limiter, the cache, the
 * caller. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct tokc *t = arg;
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    size_t n = 0;
    pthread_mutex_lock(&t->mu);
    for (uint32_t i = 0; i < t->cfg.queue; i++) {
        struct tokc_slot *s = &t->slots[i];
        if (s->state != SLOT_DONE)
            continue;
        struct tokc_result *r = &t->results[n++];
        r->session = s->session;
        r->ticket = s->ticket;
        r->ok = s->ok;
        memcpy(r->peer, s->peer, sizeof r->peer);
        memcpy(r->digest, s->digest, sizeof r->digest);
        sodium_memzero(s, sizeof *s); /* SLOT_FREE */
    }
    pthread_mutex_unlock(&t->mu);
    uint64_t now = t->now();
    for (size_t i = 0; i < n; i++) {
        struct tokc_result *r = &t->results[i];
        plim_end(t->lim, r->peer, !r->ok, now);
        if (r->ok) {
            memcpy(t->cache, r->digest, sizeof t->cache);
            t->cached = 1;
        }
        enum tokc_verdict v = r->ok ? TOKC_OK : TOKC_WRONG;
        log_verdict(r->session, r->peer, v, 1);
        uint64_t session = r->session, ticket = r->ticket;
        sodium_memzero(r, sizeof *r);
        t->done(t->arg, session, ticket, v);
    }
}

/* Queues the check in a free slot; TOKC_BUSY if there is none. */
static enum tokc_verdict enqueue(struct tokc *t, uint64_t session, uint64_t ticket,
                                 const char *token, size_t len, const char *peer,
                                 const uint8_t *digest)
{
    pthread_mutex_lock(&t->mu);
    struct tokc_slot *s = NULL;
    for (uint32_t i = 0; i < t->cfg.queue && !s; i++)
        if (t->slots[i].state == SLOT_FREE)
            s = &t->slots[i];
    if (s) {
        s->state = SLOT_QUEUED;
        s->seq = t->next_seq++;
        s->session = session;
        s->ticket = ticket;
        s->len = len;
        memcpy(s->token, token, len);
        snprintf(s->peer, sizeof s->peer, "%s", peer);
        memcpy(s->digest, digest, sizeof s->digest);
        pthread_cond_signal(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
    return s ? TOKC_QUEUED : TOKC_BUSY;
}

/* The cheap decisions first, in this order: nothing to check against, the
 * token that verified last, the address's limit, room in the queue. */
static enum tokc_verdict decide(struct tokc *t, uint64_t session, uint64_t ticket,
                                const char *token, size_t len, const char *peer)
{
    if (t->cfg.hash[0] == '\0' || len == 0 || len > WIRE_MAX_AUTHCODE)
        return TOKC_WRONG;
    uint8_t digest[crypto_generichash_BYTES];
    crypto_generichash(digest, sizeof digest, (const uint8_t *)token, len, t->cache_key,
                       sizeof t->cache_key);
    enum tokc_verdict v;
    uint64_t now = t->now();
    if (t->cached && sodium_memcmp(digest, t->cache, sizeof digest) == 0)
        v = TOKC_OK;
    else if (!plim_begin(t->lim, peer, now))
        v = TOKC_LIMITED;
    else if ((v = enqueue(t, session, ticket, token, len, peer, digest)) == TOKC_BUSY)
        plim_end(t->lim, peer, 0, now);
    sodium_memzero(digest, sizeof digest);
    return v;
}

enum tokc_verdict tokc_submit(struct tokc *t, uint64_t session, uint64_t ticket, const char *token,
                              size_t len, const char *peer)
{
    enum tokc_verdict v = decide(t, session, ticket, token, len, peer);
    if (v != TOKC_QUEUED)
        log_verdict(session, peer, v, 0);
    return v;
}

uint64_t tokc_verifications(const struct tokc *t)
{
    struct tokc *m = (struct tokc *)t; /* the mutex, not the state, changes */
    pthread_mutex_lock(&m->mu);
    uint64_t n = t->verifications;
    pthread_mutex_unlock(&m->mu);
    return n;
}

static int make_pipe(struct tokc *t)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    t->pipe_r = fds[0];
    t->pipe_w = fds[1];
    return 0;
}

struct tokc *tokc_new(struct event_base *base, const struct tokc_config *cfg, tokc_done_cb done,
                      void *arg, uint64_t (*now)(void))
{
    if (!base || !cfg || !done || !now || cfg->queue == 0 || cfg->queue > 4096 ||
        memchr(cfg->hash, '\0', sizeof cfg->hash) == NULL)
        return NULL;
    if (sodium_init() < 0)
        return NULL;
    struct tokc *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cfg = *cfg;
    t->done = done;
    t->arg = arg;
    t->now = now;
    t->pipe_r = t->pipe_w = -1;
    t->next_seq = 1;
    randombytes_buf(t->cache_key, sizeof t->cache_key);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->lim = plim_new(cfg->max_failures, cfg->window_s,
                      cfg->max_peers ? cfg->max_peers : TOKC_MAX_PEERS);
    t->slots = sodium_allocarray(cfg->queue, sizeof *t->slots);
    t->results = sodium_allocarray(cfg->queue, sizeof *t->results);
    if (!t->lim || !t->slots || !t->results || make_pipe(t) != 0)
        goto fail;
    sodium_memzero(t->slots, cfg->queue * sizeof *t->slots);
    sodium_memzero(t->results, cfg->queue * sizeof *t->results);
    t->ev = event_new(base, t->pipe_r, EV_READ | EV_PERSIST, on_wake, t);
    if (!t->ev || event_add(t->ev, NULL) != 0)
        goto fail;
    if (pthread_create(&t->thread, NULL, verifier_main, t) != 0)
        goto fail;
    t->thread_started = 1;
    return t;
fail:
    tokc_free(t);
    return NULL;
}

void tokc_free(struct tokc *t)
{
    if (!t)
        return;
    if (t->thread_started) {
        pthread_mutex_lock(&t->mu);
        t->stop = 1;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->thread, NULL);
    }
    if (t->ev)
        event_free(t->ev);
    if (t->pipe_r >= 0)
        close(t->pipe_r);
    if (t->pipe_w >= 0)
        close(t->pipe_w);
    if (t->slots)
        sodium_free(t->slots); /* wipes */
    if (t->results)
        sodium_free(t->results);
    plim_free(t->lim);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    sodium_memzero(t, sizeof *t);
    free(t);
}
