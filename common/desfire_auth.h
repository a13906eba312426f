/* desfire_auth: reader side of EV1 authentication as a state machine.
 * AES keys use AuthenticateAES (0xAA); TDEA keys (a DES key is 2-key TDEA
 * with K1 == K2) use the ISO authentication (0x1A), which yields an EV1
 * session with CMAC and CRC32.  dfc_auth_start() writes the first APDU;
 * dfc_auth_feed() consumes each answer and writes the next APDU (DFC_MORE)
 * or fills the session (0).  No I/O. */
#ifndef DESFIRE_AUTH_H
#define DESFIRE_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include "desfire_crypto.h"
#include "desfire_session.h"

enum dfc_auth_state {
    DFC_AUTH_IDLE = 0,
    DFC_AUTH_SENT_KEYNO,
    DFC_AUTH_SENT_TOKEN,
    DFC_AUTH_DONE,
    DFC_AUTH_FAILED
};

struct dfc_auth {
    enum dfc_auth_state state;
    enum dfc_cipher cipher;
    uint8_t key[DFC_MAX_KEY];
    uint8_t keyno;
    uint8_t rnda[16], rndb[16];
    uint8_t iv[DFC_MAX_BLOCK];
    int rnda_fixed; /* tests: RndA set by dfc_auth_set_rnda() */
};

int dfc_auth_start(struct dfc_auth *a, enum dfc_cipher c, uint8_t keyno, const uint8_t *key,
                   uint8_t *apdu, size_t cap, size_t *apdu_len);
/* For reproducing recorded handshakes; call after start, before feed. */
void dfc_auth_set_rnda(struct dfc_auth *a, const uint8_t *rnda);
/* Returns DFC_MORE, 0 (out filled, IV zero, active), OTA_ERR_AUTH (card
 * answered AE or RndA' did not match), OTA_ERR_SW1, OTA_ERR_LENGTH,
 * OTA_ERR_CARD_STATUS, OTA_ERR_STATE. */
int dfc_auth_feed(struct dfc_auth *a, const uint8_t *rapdu, size_t rlen, uint8_t *apdu, size_t cap,
                  size_t *apdu_len, struct dfc_session *out);
void dfc_auth_clear(struct dfc_auth *a);

#endif
