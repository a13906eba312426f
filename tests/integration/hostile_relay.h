/* hostile_relay: what the hostile relay's session driver (hostile_relay.c)
 * and its database checker (hostile_check.c) share: the cards it plays,
 * the results it saw, and its counters.  Test code only; it must never be
 * linked into a product binary. */
#ifndef HOSTILE_RELAY_H
#define HOSTILE_RELAY_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define HR_UID_LEN 7
#define HR_TXN_LEN 16

struct sim_card;

/* A txn_id seen in a committed record on a card. */
struct hr_txn {
    uint8_t id[HR_TXN_LEN];
    int32_t amount;
    int initial; /* already on the card when the run started */
};

struct hr_card {
    char path[512];
    struct sim_card *sim; /* kept in memory (powered) between sessions */
    pthread_mutex_t mu;   /* one APDU at a time, also across sessions */
    uint8_t uid[HR_UID_LEN];
    char uid_hex[2 * HR_UID_LEN + 1];
    unsigned sim_flags;
    int32_t balance0; /* committed balance when the run started */
    struct hr_txn *seen;
    size_t nseen, capseen;
    long relay_commits; /* CommitTransaction sent by the relay on its own */
    int records_frozen; /* reported once: frozen because its records disagree */
    /* Ledger baseline when the run started. */
    int64_t base_sum, base_missing;
};

/* A txn named by a result: ok ones must end committed. */
struct hr_result_txn {
    char uuid[40];
    char status[12];
    int card;
};

struct hr_run {
    const char *conninfo;
    struct hr_card *cards;
    int ncards;
    int64_t base_ledger_id; /* ledger entries above it were written during the run */
    pthread_mutex_t mu;     /* guards everything below */
    struct hr_result_txn *rtxn;
    size_t nrtxn, caprtxn;
    long violations;
    long unfrozen;
};

/* hostile_check.c.  Each returns 0 or -1 (database unreachable: reported
 * on stderr, and the caller counts it as a failure). */
int hr_db_baseline(struct hr_run *run);
/* Unfreezes the card if an integrity freeze stopped it (expected under a
 * hostile relay); a freeze for records that disagree with the ledger is a
 * violation and stays.  *records_frozen tells which. */
int hr_db_unfreeze(const char *conninfo, void **conn, const struct hr_card *card, int *was_frozen,
                   int *records_frozen);
void hr_db_close(void **conn);
/* Checks every invariant; prints each violation.  Returns the count, or
 * -1 if the database could not be read. */
long hr_db_verify(struct hr_run *run, int32_t const *final_balances);

#endif
