/* desfire_apdu: ISO 7816-4 wrapping of native DESFire frames, shared by
 * desfire_auth and desfire_session.  Commands go out as
 * 90 INS 00 00 [Lc data] 00; answers come back as data 91 status. */
#ifndef DESFIRE_APDU_H
#define DESFIRE_APDU_H

#include <stddef.h>
#include <stdint.h>

/* Writes 90 ins 00 00 [n data] 00.  n <= 255.  Returns 0 or OTA_ERR_LENGTH
 * (cap too small) / OTA_ERR_INVAL. */
int dfc_apdu_build(uint8_t ins, const uint8_t *data, size_t n, uint8_t *apdu, size_t cap,
                   size_t *apdu_len);
/* Splits an answer into its native status and data.  Returns 0,
 * OTA_ERR_LENGTH (shorter than SW1 SW2, or more than DFC_FRAME_MAX_RESP
 * data bytes) or OTA_ERR_SW1 (SW1 is not 0x91).  *data points into r. */
int dfc_apdu_parse(const uint8_t *r, size_t rlen, uint8_t *status, const uint8_t **data, size_t *n);

#endif
