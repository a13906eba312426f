/* ledger_mem: an in-memory ledger that answers the requests of ledger.h
 * with the same semantics the PostgreSQL ledger must give, for the engine's
 * unit tests and the deterministic fault matrix.  Synchronous; the caller's
 * clock (now_ms) drives lease expiry and rate-limit windows.  Never used by
 * the worker in production (it is not durable).
 *
 * Fault injection: ledger_mem_fail_next() makes the next request of a type
 * (called n times: the next n requests) answer LEDGER_ST_ERROR, either without applying it (the
 * connection was lost before the commit) or after applying it (lost after the commit). */
#ifndef LEDGER_MEM_H
#define LEDGER_MEM_H

#include <stddef.h>
#include <stdint.h>
#include "ledger.h"

struct ledger_mem;

enum ledger_mem_code_state {
    LEDGER_MEM_CODE_NONE = 0, /* unknown hash */
    LEDGER_MEM_CODE_ISSUED,
    LEDGER_MEM_CODE_RESERVED,
    LEDGER_MEM_CODE_USED,
};

enum ledger_mem_txn_state {
    LEDGER_MEM_TXN_NONE = 0,
    LEDGER_MEM_TXN_RESERVED, /* in doubt */
    LEDGER_MEM_TXN_COMMITTED,
    LEDGER_MEM_TXN_VOIDED,
};

enum ledger_mem_fault {
    LEDGER_MEM_FAIL_BEFORE = 1, /* answer ERROR, change nothing */
    LEDGER_MEM_FAIL_AFTER = 2,  /* apply, then answer ERROR */
    LEDGER_MEM_FAIL_DOWN = 3,   /* answer ERROR with db_down (unreachable), change nothing */
};

struct ledger_mem *ledger_mem_new(void);
void ledger_mem_free(struct ledger_mem *m);

/* Answers one request.  Returns 0, or OTA_ERR_LIMIT when the in-memory
 * tables are full (the reply is then LEDGER_ST_ERROR). */
int ledger_mem_handle(struct ledger_mem *m, const struct ledger_req *req, uint64_t now_ms,
                      struct ledger_reply *rep);

/* Issues a code (its HMAC hash) worth amount; expired codes answer
 * CODE_INVALID.  Returns 0 or OTA_ERR_LIMIT / OTA_ERR_INVAL (duplicate). */
int ledger_mem_add_code(struct ledger_mem *m, const uint8_t hash[CODE_HASH_LEN], int64_t amount,
                        int expired);
void ledger_mem_fail_next(struct ledger_mem *m, enum ledger_req_type type,
                          enum ledger_mem_fault fault);
/* Cancels every fault not yet consumed. */
void ledger_mem_fail_clear(struct ledger_mem *m);
/* Faults set and not yet consumed (a test checks that its fault fired). */
unsigned ledger_mem_faults_left(const struct ledger_mem *m);

/* Inspection for tests. */
enum ledger_mem_code_state ledger_mem_code_state(const struct ledger_mem *m,
                                                 const uint8_t hash[CODE_HASH_LEN]);
/* How many txns ever used (reserved, committed) this code; a released code
 * may be reserved again, but only one txn may ever be committed with it. */
int ledger_mem_code_commits(const struct ledger_mem *m, const uint8_t hash[CODE_HASH_LEN]);
enum ledger_mem_txn_state ledger_mem_txn_state(const struct ledger_mem *m,
                                               const uint8_t txn_id[LEDGER_TXN_ID_LEN]);
uint32_t ledger_mem_txn_flags(const struct ledger_mem *m, const uint8_t txn_id[LEDGER_TXN_ID_LEN]);
int64_t ledger_mem_committed_sum(const struct ledger_mem *m, const struct ledger_card *card);
int ledger_mem_committed_count(const struct ledger_mem *m, const struct ledger_card *card);
int ledger_mem_in_doubt_count(const struct ledger_mem *m, const struct ledger_card *card);
int64_t ledger_mem_in_doubt_sum(const struct ledger_mem *m, const struct ledger_card *card);
int ledger_mem_frozen(const struct ledger_mem *m, const struct ledger_card *card);
int ledger_mem_personalized(const struct ledger_mem *m, const struct ledger_card *card);
uint32_t ledger_mem_integrity_failures(const struct ledger_mem *m, const struct ledger_card *card);
/* 1 if a lease on the card is live at now_ms. */
int ledger_mem_lease_held(const struct ledger_mem *m, const struct ledger_card *card,
                          uint64_t now_ms);
/* Number of requests handled, per type (0 = all types). */
unsigned ledger_mem_requests(const struct ledger_mem *m, enum ledger_req_type type);
/* Freezes / unfreezes directly (the operator's `ota-ctl cards unfreeze`). */
void ledger_mem_set_frozen(struct ledger_mem *m, const struct ledger_card *card, int frozen);

#endif
