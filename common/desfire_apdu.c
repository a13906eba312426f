/* desfire_apdu: ISO 7816-4 wrapping of native DESFire frames.  The only
 * place that knows the 90 INS 00 00 Lc ... 00 / data 91 status layout;
 * never trusts an answer length it has not checked. */
#include "desfire_apdu.h"

#include <string.h>

#include "desfire_session.h"
#include "ota_err.h"

int dfc_apdu_build(uint8_t ins, const uint8_t *data, size_t n, uint8_t *apdu, size_t cap,
                   size_t *apdu_len)
{
    size_t need = n == 0 ? 5 : 6 + n;

    if (apdu == NULL || apdu_len == NULL || (data == NULL && n != 0) || n > 255)
        return OTA_ERR_INVAL;
    if (cap < need)
        return OTA_ERR_LENGTH;
    apdu[0] = 0x90;
    apdu[1] = ins;
    apdu[2] = 0x00;
    apdu[3] = 0x00;
    if (n == 0) {
        apdu[4] = 0x00; /* Le */
    } else {
        apdu[4] = (uint8_t)n;
        memcpy(apdu + 5, data, n);
        apdu[5 + n] = 0x00; /* Le */
    }
    *apdu_len = need;
    return OTA_OK;
}

int dfc_apdu_parse(const uint8_t *r, size_t rlen, uint8_t *status, const uint8_t **data, size_t *n)
{
    if (r == NULL || rlen < 2)
        return OTA_ERR_LENGTH;
    if (r[rlen - 2] != 0x91)
        return OTA_ERR_SW1;
    if (rlen - 2 > DFC_FRAME_MAX_RESP)
        return OTA_ERR_LENGTH;
    *status = r[rlen - 1];
    *data = r;
    *n = rlen - 2;
    return OTA_OK;
}
