/* token_check: the worker's operator-token checks, off the event loop.
 *
 * crypto_pwhash_str_verify (Argon2id) takes about 100 ms and 64 MB by
 * design; run on the loop, every wrong token would stop all the worker's
 * sessions for that long.  Here one verifier thread works through a
 * bounded queue, and the loop only does what is cheap:
 *   - an address with `max_failures` failed (or pending) attempts in the
 *     window is refused at once (TOKC_LIMITED, no Argon2id), see
 *     peer_limit.h;
 *   - the token that verified last is recognised by a keyed BLAKE2b digest
 *     (TOKC_OK at once), so an operator personalizing card after card pays
 *     for Argon2id once, even from a limited address;
 *   - no hash configured or an empty token: TOKC_WRONG at once;
 *   - a full queue: TOKC_BUSY at once (the session answers `overloaded`).
 * Everything else is queued; its verdict comes back on the loop through
 * the `done` callback, never from inside tokc_submit().
 *
 * The token is copied into sodium_malloc memory and wiped as soon as it
 * was checked; it is never logged.  All functions but the thread's own are
 * called from the loop's thread. */
#ifndef TOKEN_CHECK_H
#define TOKEN_CHECK_H

#include <stddef.h>
#include <stdint.h>

#define TOKC_HASH_MAX 128 /* crypto_pwhash_STRBYTES */

enum tokc_verdict {
    TOKC_QUEUED = 0, /* tokc_submit only: the verdict will come through `done` */
    TOKC_OK,
    TOKC_WRONG,
    TOKC_LIMITED,
    TOKC_BUSY,
};

struct tokc_config {
    char hash[TOKC_HASH_MAX]; /* worker.operator_token_hash; empty = every token is wrong */
    uint32_t max_failures;    /* worker.token_failures_per_peer */
    uint32_t window_s;        /* worker.token_failure_window_s */
    uint32_t queue;           /* worker.token_check_queue: checks queued or running */
    uint32_t max_peers;       /* addresses remembered (0: 1024) */
};

struct event_base;
struct tokc;

/* session and ticket are the caller's, given back as they were. */
typedef void (*tokc_done_cb)(void *arg, uint64_t session, uint64_t ticket, enum tokc_verdict v);

/* Starts the verifier thread.  `now` is the caller's monotonic clock in
 * milliseconds (the limiter's windows).  NULL on a bad configuration or
 * when the thread cannot start. */
struct tokc *tokc_new(struct event_base *base, const struct tokc_config *cfg, tokc_done_cb done,
                      void *arg, uint64_t (*now)(void));
/* Stops the thread (after the check it is running) and wipes what is left;
 * queued checks get no verdict. */
void tokc_free(struct tokc *t);

/* Checks `token` (len bytes) from address `peer` for `session`.  Returns
 * TOKC_QUEUED or a verdict decided at once. */
enum tokc_verdict tokc_submit(struct tokc *t, uint64_t session, uint64_t ticket, const char *token,
                              size_t len, const char *peer);

/* Argon2id verifications run so far (tests, logs). */
uint64_t tokc_verifications(const struct tokc *t);
const char *tokc_verdict_name(enum tokc_verdict v);

#endif
