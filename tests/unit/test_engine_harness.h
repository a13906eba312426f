/* test_engine_harness: drives the session engine against the card
 * simulator and a ledger (the in-memory one, or PostgreSQL through
 * worker/ledger_pg.c when a program chose it with hx_set_ledger), shuttling
 * actions and events, with one deterministic fault injected at a chosen
 * card exchange; and the money invariants every engine test asserts. */
#ifndef TEST_ENGINE_HARNESS_H
#define TEST_ENGINE_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "keyfile.h"
#include "ledger_mem.h"
#include "sim_card.h"
#include "topup_code.h"
#include "wire.h"

#define HX_MAX_CODES 64

enum hx_fault_kind {
    HX_NONE = 0,
    HX_LOST_BEFORE,        /* client error lost-tag instead of sending command k */
    HX_LOST_AFTER,         /* command k reaches the card, then lost-tag */
    HX_GONE_AFTER,         /* command k reaches the card, then the client is gone */
    HX_TAMPER,             /* answer k has byte `pos` flipped */
    HX_DROP,               /* answer k never arrives (the engine's timer fires) */
    HX_TEAR,               /* command k reaches the card, then power is lost; lost-tag */
    HX_REPLAY,             /* answer k is replaced by the previous answer */
    HX_RELAY_COMMIT,       /* the relay sends its own CommitTransaction before command k */
    HX_RELAY_COMMIT_AFTER, /* ... after command k's answer */
    HX_REPLAY_OLD,         /* answer k is replaced by answer k of the previous session */
    /* Batches (h->batch > 1) only: */
    HX_PREFIX,      /* the answers before command k, no error: the rest never comes */
    HX_EXTRA,       /* one answer more than asked after answer k */
    HX_REORDER,     /* answers k and k+1 swap places in the message */
    HX_RELAY_CLEAR, /* the relay sends its own ClearRecordFile before command k */
};

struct hx_fault {
    enum hx_fault_kind kind;
    int at;  /* card exchange index, 0-based */
    int pos; /* HX_TAMPER: byte position in the answer */
};

/* A ledger the harness can run against.  Each struct hx opens its own
 * (fresh: no code, no txn of its card); `now_ms` is the harness's simulated
 * clock, `advance` tells the ledger that simulated time passed (leases). */
struct hx_ledger_ops {
    void *(*open)(void);
    void (*close)(void *l);
    void (*handle)(void *l, const struct ledger_req *req, uint64_t now_ms,
                   struct ledger_reply *rep);
    void (*advance)(void *l, const struct ledger_card *card, uint64_t ms);
    int (*add_code)(void *l, const uint8_t hash[CODE_HASH_LEN], int64_t amount);
    void (*fail_next)(void *l, enum ledger_req_type type, enum ledger_mem_fault fault);
    void (*fail_clear)(void *l);
    unsigned (*faults_left)(void *l); /* set by fail_next, not yet consumed */
    unsigned (*requests)(void *l);
    enum ledger_mem_code_state (*code_state)(void *l, const uint8_t hash[CODE_HASH_LEN]);
    int (*code_commits)(void *l, const uint8_t hash[CODE_HASH_LEN]);
    enum ledger_mem_txn_state (*txn_state)(void *l, const uint8_t txn[LEDGER_TXN_ID_LEN]);
    uint32_t (*txn_flags)(void *l, const uint8_t txn[LEDGER_TXN_ID_LEN]);
    int64_t (*committed_sum)(void *l, const struct ledger_card *card);
    int (*committed_count)(void *l, const struct ledger_card *card);
    int64_t (*in_doubt_sum)(void *l, const struct ledger_card *card);
    int (*in_doubt_count)(void *l, const struct ledger_card *card);
    int (*lease_held)(void *l, const struct ledger_card *card, uint64_t now_ms);
    /* 1: every struct hx gets its own random card UID and client address
     * (a ledger shared by many cases). */
    int shared;
};

/* The ledger of every struct hx initialised after this call (NULL: the
 * in-memory one, the default). */
void hx_set_ledger(const struct hx_ledger_ops *ops);

struct hx_code {
    char text[CODE_DISPLAY_LEN + 1];
    uint8_t hash[CODE_HASH_LEN];
    int64_t amount;
};

struct hx {
    struct master_keys keys;
    struct eng_config cfg;
    struct eng_ctx *ctx;
    const struct hx_ledger_ops *lops;
    void *ldb;                    /* lops's ledger */
    struct ledger_mem *lm;        /* = ldb with the in-memory ledger, else NULL */
    char peer[WIRE_MAX_PEER + 1]; /* the client address of every session */
    struct sim_card *card;
    uint8_t uid[7];
    struct ledger_card lcard;
    int32_t initial_balance;
    uint64_t now;
    uint64_t next_session;
    struct hx_code codes[HX_MAX_CODES];
    int ncodes;
    /* ENG_A_TOKEN: the harness plays worker/token_check.c, synchronously:
     * token_verdict if set, else crypto_pwhash_str_verify against
     * token_hash (empty: wrong). */
    char token_hash[128];
    enum eng_token_verdict token_verdict;
    /* A relay that swaps cards: from the relay_select_app-th
     * SelectApplication C0FFEE of a session on, the commands go to
     * relay_card (NULL: never). */
    struct sim_card *relay_card;
    int relay_select_app;
    int batch; /* the client's batch size: 0/1 = v1, 2..16 = v2 (set after hx_init) */
    /* The card's answers of the last session, for HX_REPLAY_OLD. */
    uint8_t answers[64][WIRE_MAX_APDU];
    size_t answer_lens[64];
};

struct hx_run {
    int have_result;
    struct wire_result result;
    int done;
    int exchanges;      /* APDUs the engine emitted */
    int batches;        /* round trips to the client (messages with APDUs) */
    char plan[256];     /* the INS byte of every APDU, batches in brackets: "[5a aa] [af ...]" */
    int reserve_at;     /* APDUs emitted before the request whose reply says the
                         * code was reserved (BEGIN or RESERVE; -1: none) */
    int first_money;    /* index of the first WriteRecord/Credit/Commit APDU (-1) */
    int card_exchanges; /* APDUs that reached the card */
    int ledger_requests;
    int at_risk_seen;
    int fault_applied;
    int modals;
    int token_checks;      /* ENG_A_TOKEN actions */
    int select_app_seen;   /* SelectApplication C0FFEE commands */
    int answer_len[64];    /* length of the card's answer to exchange k */
    uint64_t open_ms;      /* simulated time of eng_open */
    uint64_t last_apdu_ms; /* time of the event that emitted the last APDU */
};

/* A personalized card (sim_card_personalize) with the given balance and
 * fresh random master keys; a fresh ledger. Factory: an unpersonalized
 * card (for personalize), PICC key per picc. */
void hx_init(struct hx *h, int32_t balance);
void hx_init_factory(struct hx *h, enum sim_picc_key picc);
void hx_free(struct hx *h);
/* Re-creates the engine context after h->cfg changed. */
void hx_reconfigure(struct hx *h);
/* Issues a code in the ledger; returns its index. */
int hx_add_code(struct hx *h, int64_t amount);

/* Runs one session to its end (ENG_A_DONE).  uid NULL = the card's UID. */
void hx_run_op(struct hx *h, uint8_t op, const char *authcode, uint8_t listener, const uint8_t *uid,
               size_t uid_len, const struct hx_fault *f, struct hx_run *r);
void hx_check(struct hx *h, struct hx_run *r);
void hx_topup(struct hx *h, int code, const struct hx_fault *f, struct hx_run *r);

/* The invariants of the fault matrix, asserted with Check:
 * card balance change == committed sum (minus the amounts of committed
 * txns flagged CREDIT_MISSING when allow_relay_loss: the relay's own loss
 * of docs/PROTOCOL.md section 10, rule 2), every code committed at most once and used
 * iff committed, each of the card's newest committed txns has its record,
 * and (when settled) nothing of the card in doubt. */
void hx_assert_invariants(struct hx *h, int settled, int allow_relay_loss);
int32_t hx_balance(const struct hx *h);
/* Simulated time passes (ledger leases expire with it). */
void hx_advance(struct hx *h, uint64_t ms);
/* The ledger behind h, whichever it is (see struct hx_ledger_ops). */
void hx_fail_next(struct hx *h, enum ledger_req_type type, enum ledger_mem_fault fault);
void hx_fail_clear(struct hx *h);
unsigned hx_faults_left(struct hx *h);
enum ledger_mem_code_state hx_code_state(struct hx *h, int code);
int hx_code_commits(struct hx *h, int code);
enum ledger_mem_txn_state hx_txn_state(struct hx *h, const uint8_t txn[LEDGER_TXN_ID_LEN]);
uint32_t hx_txn_flags(struct hx *h, const uint8_t txn[LEDGER_TXN_ID_LEN]);
int hx_in_doubt_count(struct hx *h);
int hx_lease_held(struct hx *h);
int hx_records(const struct hx *h, uint8_t out[][32], int max);

#endif
