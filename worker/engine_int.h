/* engine_int: the session object shared by the engine's files (engine.c,
 * card_io.c, settle.c, op_*.c).  Private to worker/: nothing outside the
 * engine includes it.
 *
 * A session is driven by continuations: every card command and every
 * ledger request is started with the function to call when its answer
 * comes, so each operation file reads top to bottom like PROTOCOL.md §6.
 * A step may queue several card commands at once; card_io.c sends them in
 * as few batches as the card's state and the client allow.  Each
 * operation keeps its own state in a struct hung off the session
 * (struct card_check, struct topup), as OpenSSH hangs struct kex off the
 * connection. */
#ifndef ENGINE_INT_H
#define ENGINE_INT_H

#include <stddef.h>
#include <stdint.h>
#include "card_profile.h"
#include "desfire_auth.h"
#include "desfire_session.h"
#include "engine.h"
#include "keyfile.h"
#include "ledger.h"
#include "topup_code.h"
#include "wire.h"

/* Usable records of the cyclic file: one of its slots is always the one
 * being written (DESFire keeps MaxNumberOfRecords - 1 readable records). */
#define ENG_RECORDS_KEPT (PROF_RECORD_COUNT - 1)

/* Key blocks kept for reuse (struct eng_ctx): more than the sessions a
 * worker usually runs at once; beyond it they are freed. */
#define ENG_SPARE_KEYS 256

struct eng_keys;

struct eng_ctx {
    struct eng_config cfg;
    const struct master_keys *keys;
    uint64_t next_req_id;
    /* Integrity failures noted in every session (at risk or not), for the
     * worker's metrics (eng_integrity_failures). */
    uint64_t integrity_total;
    /* The relay signs (WIRE_SIGN_*), counted where the engine decides them
     * (eng_signs). */
    uint64_t signs[WIRE_SIGN_COUNT];
    /* Wiped key blocks of ended sessions, reused by the next ones: a
     * sodium_malloc is about ten system calls (mmap, mlock, guard pages)
     * and a sodium_free as many again, once per session otherwise. */
    struct eng_keys *spare_keys[ENG_SPARE_KEYS];
    size_t nspare_keys;
};

enum eng_state {
    ES_RUNNING = 0, /* between events, nothing outstanding (transient) */
    ES_WAIT_TOKEN,  /* the operator token is being checked (ENG_A_TOKEN) */
    ES_WAIT_CARD,   /* an APDU is outstanding */
    ES_WAIT_LEDGER, /* a ledger request is outstanding */
    ES_CLOSING,     /* result decided; running the closing ledger requests */
    ES_DONE,        /* ENG_A_DONE emitted */
};

/* Per-card keys, in sodium_malloc memory for the session's lifetime. */
struct eng_keys {
    uint8_t app[PROF_NUM_KEYS][16]; /* diversified application keys 0..3 */
    uint8_t picc[16];               /* diversified PICC master key (AES) */
};

struct eng_session;
typedef void (*eng_card_cb)(struct eng_session *s, int rc);
typedef void (*eng_ledger_cb)(struct eng_session *s, const struct ledger_reply *r);

/* What step 3 read from the card. */
struct eng_card_view {
    int32_t balance;
    int n_records;
    uint8_t records[PROF_RECORD_COUNT][PROF_RECORD_SIZE]; /* oldest first */
};

struct eng_settle_plan {
    int freeze;      /* records disagree with the ledger */
    int unsupported; /* no history but a balance or records */
    char detail[LEDGER_MAX_DETAIL + 1];
    int n; /* entries of in_doubt to settle */
    enum ledger_outcome outcome[LEDGER_MAX_IN_DOUBT];
    uint32_t flags[LEDGER_MAX_IN_DOUBT];
};

/* card_io.c: one queued card command and the step that checks its answer. */
enum card_kind { CARD_CMD = 0, CARD_SELECT, CARD_AUTH, CARD_CHANGEKEY };

#define CARD_QUEUE_MAX 16

struct card_step {
    enum card_kind kind;
    struct dfc_cmd_spec spec; /* CARD_CMD, CARD_SELECT (hdr/data: the buffers below) */
    uint8_t hdr[16];
    uint8_t data[64];
    enum dfc_cipher cipher; /* CARD_AUTH */
    uint8_t keyno;          /* CARD_AUTH; CARD_CHANGEKEY: the key number byte */
    const uint8_t *key;     /* CARD_AUTH, CARD_CHANGEKEY (new key): session memory */
    const uint8_t *old_key; /* CARD_CHANGEKEY */
    eng_card_cb cb;
    const char *name; /* the step that queued it, for logs */
};

/* card_io.c: the commands queued, the batch out at the client, and the
 * exchange in flight. */
struct card_io {
    int batch_max; /* APDUs per batch: 1 (v1) .. WIRE_MAX_BATCH */
    struct card_step queue[CARD_QUEUE_MAX];
    int nq;
    int overflow; /* a step could not be queued: the session fails */
    /* The batch sent, to check against the real commands in order. */
    uint8_t sent[WIRE_MAX_BATCH][DFC_APDU_MAX];
    size_t sent_len[WIRE_MAX_BATCH];
    int nsent;
    /* The command started for real, its next frame (pending). */
    struct card_step cur;
    int have_cur;
    uint8_t pending[DFC_APDU_MAX];
    size_t pending_len;
    int is_auth; /* cur is an authentication (auth), else a command (cmd) */
    struct dfc_auth auth;
    struct dfc_cmd cmd;
    struct dfc_session dsess; /* the card's secure-messaging session */
    int select_retried;
    int authed; /* the command in flight ran under an authenticated session */
};

/* op_check.c: steps 1-3, shared by check and topup; what the card showed
 * and what the ledger said about it. */
struct card_check {
    void (*then)(struct eng_session *s); /* the operation's next step */
    struct eng_card_view view;
    struct ledger_card_state lstate;
    struct eng_settle_plan plan;
    int settle_idx;
};

struct topup; /* op_topup.c: steps 4-7, private to that file */

struct eng_session {
    enum eng_state state;
    struct eng_ctx *ctx;
    uint64_t id;
    uint8_t op;       /* enum wire_op */
    uint8_t listener; /* enum wire_listener */
    struct ledger_card card;
    char peer[WIRE_MAX_PEER + 1];
    const char *step; /* name of the step in progress, for logs */

    struct eng_actions *out; /* the current event's actions */
    uint64_t now_ms;
    uint64_t op_deadline_ms;
    uint64_t resp_deadline_ms;  /* while ES_WAIT_CARD */
    uint64_t grace_deadline_ms; /* closing with a request outstanding */

    struct eng_keys *keys;
    struct card_io io;
    int client_lost;
    enum wire_error lost_err;

    /* The ledger request in flight. */
    uint64_t req_id;
    enum ledger_req_type req_type;
    eng_ledger_cb ledger_cb;
    /* The last ledger reply said the database was unreachable: a failure
     * from here on is answered `overloaded` (retry later), not `internal`. */
    int db_down;

    /* Each operation's own state, hung off the session (NULL when the
     * operation does not use it), as OpenSSH hangs struct kex off the
     * connection. */
    struct card_check *chk; /* check and topup: steps 1-3 */
    struct topup *topup;    /* topup: steps 4-7 */
    int perso_path;         /* personalize: next application key to change */
    eng_card_cb
        perso_then; /* personalize: runs after the GetCardUID that follows an authentication */

    /* Session-wide card facts. */
    int lease_requested;
    int book_releases;        /* the booking statement also releases the lease */
    int integrity_failures;   /* this session; > 0 means not clean */
    uint32_t prior_integrity; /* the ledger's counter at BEGIN (CARD_STATE) */

    /* Closing. */
    struct wire_result result;
    int result_sent;
    int throttle; /* a wrong code over the limits: answer after the delay */
    int need_integrity;
    int need_freeze;
    enum ledger_freeze_reason freeze_reason;
    char freeze_detail[LEDGER_MAX_DETAIL + 1];
    int need_reset;
    int need_personalized;
};

/* engine.c: actions, ledger requests, results, the closing chain. */
void eng_emit_apdu(struct eng_session *s, const uint8_t *apdu, size_t len);
void eng_emit_modal(struct eng_session *s, const char *text);
void eng_emit_phase(struct eng_session *s, int at_risk);
/* Fills the common fields of a request (id, session, card). */
void eng_ledger_init(struct eng_session *s, struct ledger_req *req, enum ledger_req_type type);
void eng_ledger_send(struct eng_session *s, const struct ledger_req *req, eng_ledger_cb cb);
/* Ends the operation with this error; status pending while a txn is at
 * risk (WriteRecord sent, not booked), failed otherwise. */
void eng_fail(struct eng_session *s, enum wire_error err);
/* Ends the operation successfully with s->result filled by the op. */
void eng_succeed(struct eng_session *s);
/* Records that an answer of the authenticated card failed its integrity
 * check (counted and reported at closing). */
void eng_note_integrity(struct eng_session *s, const char *what);
/* The lease holder id of this session: instance(8) || session id(8, BE). */
void eng_session_holder(const struct eng_session *s, uint8_t holder[LEDGER_HOLDER_LEN]);

/* card_io.c: card commands.  Each call queues one command with the
 * continuation that checks its answer; the queue goes out when the event
 * ends (card_flush), as one batch as far as the card's state allows.  The
 * continuations run in order; one that only checks its answer and returns
 * lets the next queued command's answer be checked. */
void card_select(struct eng_session *s, uint32_t aid, eng_card_cb cb);
void card_auth(struct eng_session *s, enum dfc_cipher cipher, uint8_t keyno, const uint8_t *key,
               eng_card_cb cb);
void card_cmd(struct eng_session *s, const struct dfc_cmd_spec *spec, eng_card_cb cb);
void card_changekey(struct eng_session *s, uint8_t keyno_byte, const uint8_t *new_key,
                    const uint8_t *old_key, eng_card_cb cb);
/* The card's status byte of the last command (valid after
 * OTA_ERR_CARD_STATUS). */
uint8_t card_status(const struct eng_session *s);
const uint8_t *card_resp(const struct eng_session *s, size_t *len);
/* Maps a failed card exchange to the wire error (counting integrity). */
enum wire_error card_error(struct eng_session *s, int rc);
/* Sends the queued commands that can go now (engine.c, at each event's end). */
void card_flush(struct eng_session *s);
/* Forgets the queue and the batch (the session is failing). */
void card_drop(struct eng_session *s);
/* The answers to the batch, in order (fewer: the client stopped or lost
 * the card, client_err says which). */
void card_on_answers(struct eng_session *s, const struct wire_bytes *a, size_t n,
                     uint8_t client_err);
/* A command queued now would go out (client there, time left). */
int card_may_send(const struct eng_session *s);
/* Derives s->keys for the session's UID.  0 or a negative ota_err. */
int card_derive_keys(struct eng_session *s);

/* op_check.c: steps 1-3 for check and topup. */
void op_open_card(struct eng_session *s, void (*then)(struct eng_session *s));
void op_check_start(struct eng_session *s);
/* GetValue (file 1, enciphered, 4 bytes), for the read-back of step 6. */
void op_get_value(struct eng_session *s, eng_card_cb cb);

/* op_topup.c: the top-up's state (struct topup) and steps 4-7.  The
 * engine's one closing path asks it what a failure means for money. */
/* Allocates s->topup and hashes the code; WIRE_E_NONE, CODE_INVALID or
 * INTERNAL. */
enum wire_error topup_open(struct eng_session *s, const char *code, size_t len);
void op_topup_start(struct eng_session *s);
/* The WriteRecord went out and the commit is not booked: a failure now
 * leaves the entry in doubt (`pending`).  0 without a top-up. */
int topup_at_risk(const struct eng_session *s);
/* The WriteRecord went out (money may be at risk, booked or not). */
int topup_write_sent(const struct eng_session *s);
/* The verified commit is booked: the top-up's outcome is final. */
int topup_booked(const struct eng_session *s);
/* The code is reserved: money-moving commands may be planned. */
int topup_reserved(const struct eng_session *s);
/* The operation failed: note what the closing path must undo. */
void topup_on_fail(struct eng_session *s);
/* txn and amount of a result once the WriteRecord went out. */
void topup_fill_result(const struct eng_session *s, struct wire_result *r);
/* Copies the txn at risk (for the integrity report); 0 if none. */
int topup_txn_at_risk(const struct eng_session *s, uint8_t txn[LEDGER_TXN_ID_LEN]);
/* Sends the top-up's next closing request (void, code failure) with cb;
 * 0 when it has none left. */
int topup_closing_step(struct eng_session *s, eng_ledger_cb cb);
/* A RESERVE or BEGIN reply that arrived while closing. */
void topup_closing_reply(struct eng_session *s, const struct ledger_reply *r);
/* Step 3's BEGIN: a top-up asks it to reserve the code (u.begin.code). */
void topup_begin_args(const struct eng_session *s, struct ledger_req *req);
/* BEGIN's reply: keeps a reservation; a code answer fails the session
 * (returns 1: the caller stops).  0 without a top-up. */
int topup_begin_reply(struct eng_session *s, const struct ledger_reply *r);
void topup_free(struct eng_session *s);
/* op_personalize.c */
void op_personalize_start(struct eng_session *s);

/* settle.c: the step-3 decision, a pure function of what was read. */
void settle_plan(const struct eng_card_view *v, const struct ledger_card_state *st,
                 struct eng_settle_plan *plan);

#endif
