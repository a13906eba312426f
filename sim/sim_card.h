/* sim_card: a faithful DESFire EV1 model (the card side), in process.
 * sim_card_transceive() takes one ISO 7816-4 APDU (90 INS 00 00 Lc data 00)
 * and returns the answer (data || 91 SW2), with the real frame limits,
 * status codes, access rights, communication modes, key settings, value
 * limits and transactions (pending until CommitTransaction; discarded by
 * select, authenticate, errors and power loss).  Used by the unit tests,
 * the fault matrix, ota-card (file-backed cards, the vpcd virtual card) and
 * the load generator.  It must never share code paths with the reader side
 * beyond the block-cipher primitives: it is the reader's test oracle. */
#ifndef SIM_CARD_H
#define SIM_CARD_H

#include <stddef.h>
#include <stdint.h>
#include "desfire_crypto.h"

struct sim_card;

enum sim_picc_key {
    SIM_PICC_DES0 = 0, /* factory: all-zero DES key */
    SIM_PICC_AES0 = 1, /* all-zero AES key */
};

/* Behaviour switches for tests. */
enum sim_flag {
    /* Worst case from the protocol review: SelectApplication and
     * authentication do NOT discard pending changes (a real EV1 may). */
    SIM_FLAG_KEEP_PENDING_ON_SELECT_AUTH = 1 << 0,
    /* Random ID (SetConfiguration, a privacy option of EV1): the reader's
     * GET DATA sees a random 4-byte ID (08 xx xx xx, new at every power-up)
     * and GetVersion zeros; the real UID only comes from GetCardUID, which
     * needs an authentication. */
    SIM_FLAG_RANDOM_UID = 1 << 1,
};

/* A factory card: empty PICC, PICC master key as given. uid_len 4 or 7. */
struct sim_card *sim_card_new(const uint8_t *uid, size_t uid_len, enum sim_picc_key picc_key);
void sim_card_free(struct sim_card *card);

/* Personalizes directly (no APDUs) with the profile of card_profile.h:
 * application C0FFEE, value file 1 holding balance, cyclic record file 2,
 * key n = AN10922(master_keys[n], UID || AID || system_id).  The PICC key
 * is left as it is.  Returns 0 or a negative ota_err. */
int sim_card_personalize(struct sim_card *card, const uint8_t master_keys[4][16],
                         const char *system_id, int32_t balance);

/* One APDU in, one answer out.  Returns 0 (answer in resp) or a negative
 * ota_err if resp is too small.  Malformed APDUs get the card's own error
 * answer (e.g. 6700 / 91 7E), never a crash. */
int sim_card_transceive(struct sim_card *card, const uint8_t *apdu, size_t apdu_len, uint8_t *resp,
                        size_t cap, size_t *resp_len);

/* Power loss: only committed state survives; session and selection end. */
void sim_card_power_cycle(struct sim_card *card);
void sim_card_set_flags(struct sim_card *card, unsigned flags);
/* Deterministic RndB for tests (NULL restores libsodium randomness). */
void sim_card_set_rng(struct sim_card *card, void (*rng)(void *ctx, uint8_t *p, size_t n),
                      void *ctx);

/* Persistence: committed state only. */
int sim_card_save(const struct sim_card *card, const char *path);
struct sim_card *sim_card_load(const char *path);

/* Inspection (committed state), for tests and `ota-card show`. */
const uint8_t *sim_card_uid(const struct sim_card *card, size_t *len);
int sim_card_value(const struct sim_card *card, uint32_t aid, uint8_t file, int32_t *value);
/* Records oldest first; returns the count (<= max) or a negative ota_err. */
int sim_card_records(const struct sim_card *card, uint32_t aid, uint8_t file, uint8_t *out,
                     size_t record_size, int max);
/* Human-readable dump of applications, files, values and records. */
int sim_card_describe(const struct sim_card *card, char *out, size_t cap);

#endif
