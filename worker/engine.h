/* engine: the worker's sans-I/O session engine (check, topup, personalize).
 *
 * Events go in (operation opened, card answer, client error or gone, ledger
 * reply, timer), actions come out (send this APDU, show this text, run this
 * ledger request, enter/leave the money-at-risk phase, finish with this
 * result, the session is over).  The engine never does I/O, never reads a
 * clock (every event carries the caller's monotonic `now_ms`) and never
 * blocks: even the operator token of `personalize` is checked by the
 * caller (ENG_A_TOKEN; worker/token_check.c runs Argon2id off the loop).
 *
 * Contract with the I/O shell (worker/main.c) and the tests:
 *  - Each event call first empties `out`, then appends actions in the order
 *    they must be executed.  out->timer_at_ms is the absolute time (the
 *    caller's monotonic clock) at which eng_on_timeout() must be called, or
 *    0 for no timer; it replaces any earlier timer.
 *  - ENG_A_APDU: send exactly these bytes to the client.  The APDU actions
 *    of one event form one batch (at most the `batch` of the open frame:
 *    always one for a v1 client, sent as a `command`; v2: `commands`); the
 *    next card event carries their answers (eng_on_card_response for one,
 *    eng_on_card_responses for a batch).  At most one batch is outstanding.
 *  - ENG_A_LEDGER: run the request and call eng_on_ledger_reply() with the
 *    reply (same id), even after ENG_A_RESULT.  At most one is outstanding.
 *  - ENG_A_RESULT: send the result to the client (the session's last
 *    message).  The engine may still emit ledger requests after it (lease
 *    release, counters); the shell keeps delivering their replies.  A
 *    success is emitted as soon as it is final (a top-up: once booked),
 *    before any closing request, so nothing after it can change it.
 *  - ENG_A_TOKEN: check the operator token (and the address's failure
 *    limit) and call eng_on_token_verdict(), later or at once after this
 *    event's actions; only eng_open() emits it, before any card command.
 *    The action holds the token: wipe it once used.
 *  - ENG_A_DONE: the engine wants no more events; the shell calls
 *    eng_free().  ENG_A_DONE always comes after (or with) ENG_A_RESULT.
 *  - Events after ENG_A_DONE, card answers when no APDU is outstanding and
 *    replies with a stale id are ignored (out stays empty).
 *  - The shell must not call eng_free() before ENG_A_DONE unless the
 *    worker is shutting down (then the leases simply expire).
 *
 * Keys: per-card diversified keys live in the session only (sodium_malloc)
 * and are wiped by eng_free(). */
#ifndef ENGINE_H
#define ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include "keyfile.h"
#include "ledger.h"
#include "wire.h"

enum eng_picc_key {
    ENG_PICC_DES0 = 0, /* factory card: all-zero DES PICC master key (ISO 0x1A) */
    ENG_PICC_AES0 = 1, /* issuer set an all-zero AES PICC master key (0xAA) */
};

#define ENG_SYSTEM_ID_MAX 16

/* Built from the configuration by eng_config_read (engine_cfg.h). */
struct eng_config {
    char system_id[ENG_SYSTEM_ID_MAX + 1]; /* card.system_id (1..16 bytes) */
    enum eng_picc_key picc_key;            /* card.picc_key */
    uint32_t response_timeout_ms;          /* worker.response_timeout_ms */
    uint32_t operation_timeout_ms;         /* worker.operation_timeout_ms */
    uint32_t lease_ms;                     /* worker.lease_ms (> operation timeout) */
    int64_t max_amount;                    /* topup.max_amount */
    uint32_t code_failures_per_card;       /* worker.code_failures_per_card */
    uint32_t code_failures_per_peer;       /* worker.code_failures_per_peer */
    uint32_t code_failure_window_s;        /* worker.code_failure_window_s */
    /* worker.code_failure_delay_ms: a wrong code over one of the two limits
     * above is answered `limit-exceeded` only after this long (a valid code
     * is never refused by the limits; see LEDGER_RESERVE). */
    uint32_t code_failure_delay_ms;
    /* db.request_timeout_ms: the ledger's own bound on one request.  The
     * closing path waits this plus ENG_CLOSING_MARGIN_MS for each of its
     * replies, so a slow reply is still absorbed (lease released,
     * reservation voided) instead of dropped. */
    uint32_t ledger_timeout_ms;
    /* Unique per worker process (random at start): the first half of every
     * lease holder id, so two workers never share a holder. */
    uint8_t instance[8];
};

#define ENG_CLOSING_MARGIN_MS 5000

enum eng_action_type {
    ENG_A_APDU = 1,   /* u.apdu: a command for the card */
    ENG_A_MODAL = 2,  /* u.text: a message for a person */
    ENG_A_LEDGER = 3, /* u.ledger: a ledger request */
    ENG_A_PHASE = 4,  /* u.at_risk: entered (1) / left (0) the money-at-risk phase; a
                       * result ends it too */
    ENG_A_RESULT = 5, /* u.result: the outcome */
    ENG_A_DONE = 6,   /* no more events wanted; call eng_free() */
    ENG_A_TOKEN = 7,  /* u.token: check this operator token, then eng_on_token_verdict() */
};

struct eng_token {
    char token[WIRE_MAX_AUTHCODE]; /* len bytes, a secret */
    uint16_t len;
    char peer[WIRE_MAX_PEER + 1]; /* the client's address, for the failure limit */
};

enum eng_token_verdict {
    ENG_TOKEN_OK = 1,  /* the token verified */
    ENG_TOKEN_WRONG,   /* it did not (or no token hash is configured): auth-failed */
    ENG_TOKEN_LIMITED, /* too many failures from the address: limit-exceeded */
    ENG_TOKEN_BUSY,    /* no room to check it now: overloaded */
};

struct eng_action {
    enum eng_action_type type;
    union {
        struct wire_bytes apdu;
        char text[WIRE_MAX_TEXT + 1];
        struct ledger_req ledger;
        uint8_t at_risk;
        struct wire_result result;
        struct eng_token token;
    } u;
};

#define ENG_MAX_ACTIONS (6 + WIRE_MAX_BATCH)

struct eng_actions {
    size_t n;
    struct eng_action a[ENG_MAX_ACTIONS];
    uint64_t timer_at_ms; /* 0 = no timer */
};

struct eng_ctx;
struct eng_session;

/* cfg is copied; keys must outlive the context (the worker's sodium_malloc
 * master keys).  NULL on allocation failure or a bad configuration. */
struct eng_ctx *eng_new(const struct eng_config *cfg, const struct master_keys *keys);
void eng_ctx_free(struct eng_ctx *ctx);

/* Starts the operation of `open` (already decoded by wire_decode_open).
 * Returns NULL only when out of memory (the shell answers `internal`);
 * any bad request still gives a session whose actions are RESULT + DONE. */
struct eng_session *eng_open(struct eng_ctx *ctx, uint64_t session_id, const struct wire_open *open,
                             uint64_t now_ms, struct eng_actions *out);
void eng_on_card_response(struct eng_session *s, const uint8_t *data, size_t len, uint64_t now_ms,
                          struct eng_actions *out);
/* The answers to the outstanding batch, in order; fewer than sent when the
 * client stopped after an error answer or lost the card (client_err: enum
 * wire_client_err, or 0).  Answers beyond the batch are ignored. */
void eng_on_card_responses(struct eng_session *s, const struct wire_bytes *answers, size_t n,
                           uint8_t client_err, uint64_t now_ms, struct eng_actions *out);
/* kind: enum wire_client_err. */
void eng_on_client_error(struct eng_session *s, uint8_t kind, uint64_t now_ms,
                         struct eng_actions *out);
/* The client connection is gone: no more card answers will come. */
void eng_on_client_gone(struct eng_session *s, uint64_t now_ms, struct eng_actions *out);
void eng_on_ledger_reply(struct eng_session *s, const struct ledger_reply *r, uint64_t now_ms,
                         struct eng_actions *out);
void eng_on_timeout(struct eng_session *s, uint64_t now_ms, struct eng_actions *out);
/* The answer to ENG_A_TOKEN. */
void eng_on_token_verdict(struct eng_session *s, enum eng_token_verdict v, uint64_t now_ms,
                          struct eng_actions *out);
/* Wipes the session's keys and frees it.  NULL is fine. */
void eng_free(struct eng_session *s);

/* For logs and the shell's metrics. */
uint64_t eng_session_id(const struct eng_session *s);
/* Card answers that failed their integrity check, in every session of ctx
 * (only those after a WriteRecord count toward freezing the card). */
uint64_t eng_integrity_failures(const struct eng_ctx *ctx);
/* The relay signs of every session of ctx, by WIRE_SIGN_* (a committed
 * entry's flags counted once, at its first settle; money at risk at an
 * integrity failure; a settle the ledger refused as a conflict). */
void eng_signs(const struct eng_ctx *ctx, uint64_t out[WIRE_SIGN_COUNT]);
const char *eng_action_name(enum eng_action_type t);

#endif
