/* test_sim_util: helpers shared by the simulator's unit tests: cards with a
 * deterministic RNG, raw APDU exchange, native commands with AF chaining,
 * and commands through the reader-side core (dfc_auth_*, dfc_cmd_*). */
#ifndef TEST_SIM_UTIL_H
#define TEST_SIM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "desfire_session.h"
#include "sim_card.h"

extern const uint8_t TS_UID[7];
extern const uint8_t TS_ZERO_KEY[24];

/* A factory card with a counter-based RNG. */
struct sim_card *ts_card(enum sim_picc_key k);
/* One APDU; returns the answer length (asserts the call succeeded). */
size_t ts_apdu(struct sim_card *c, const uint8_t *apdu, size_t len, uint8_t *resp);
/* One native frame wrapped as 90 INS 00 00 [Lc data] 00: returns SW2
 * (asserts SW1 = 91) with the frame's data in out. */
int ts_frame(struct sim_card *c, uint8_t ins, const uint8_t *d, size_t n, uint8_t *out,
             size_t *outlen);
/* A whole unauthenticated native command: chains the command in 55-byte
 * frames and collects AF answer frames.  Returns the final status. */
int ts_native(struct sim_card *c, uint8_t ins, const uint8_t *d, size_t n, uint8_t *out,
              size_t *outlen);
/* Reader-side core: authentication and commands. */
int ts_auth(struct sim_card *c, struct dfc_session *s, enum dfc_cipher ci, uint8_t keyno,
            const uint8_t *key);
int ts_cmd(struct sim_card *c, struct dfc_session *s, const struct dfc_cmd_spec *spec,
           uint8_t *status, uint8_t *resp, size_t *rlen);
int ts_changekey(struct sim_card *c, struct dfc_session *s, uint8_t keyno_byte,
                 enum dfc_cipher type, const uint8_t *new_key, uint8_t ver, const uint8_t *old,
                 uint8_t *status);
/* SelectApplication, unauthenticated; returns the status. */
int ts_select(struct sim_card *c, uint32_t aid);
/* Personalized card (profile), master keys 0x10+n repeated, system "OTA1". */
struct sim_card *ts_profile_card(int32_t balance);
void ts_profile_key(struct sim_card *c, int n, uint8_t out[16]);

#endif
