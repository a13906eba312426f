/* desfire_kdf: NXP AN10922 key diversification (AES-128, 2TDEA, 3TDEA).
 * The input is always padded to two cipher blocks, unlike plain CMAC;
 * that is the point of this file.  Never adjusts DES parity bits: the raw
 * CMAC output is the application note's "Derived Key". */
#include "desfire_crypto.h"

#include <string.h>

#include "ota_err.h"

/* One AN10922 CMAC: constant || m padded to exactly two blocks. */
static int an10922_block(enum dfc_cipher c, const uint8_t *master, uint8_t constant,
                         const uint8_t *m, size_t mlen, uint8_t *out)
{
    size_t bs = dfc_block_size(c);
    uint8_t d[2 * DFC_MAX_BLOCK], k1[DFC_MAX_BLOCK], k2[DFC_MAX_BLOCK];
    uint8_t iv[DFC_MAX_BLOCK] = {0};
    const uint8_t *sub;
    size_t dlen = 1 + mlen, j;
    int rc;

    if (mlen == 0 || dlen > 2 * bs)
        return OTA_ERR_LENGTH;
    rc = dfc_cmac_subkeys(c, master, NULL, k1, k2);
    if (rc != OTA_OK)
        return rc;
    memset(d, 0, sizeof d);
    d[0] = constant;
    memcpy(d + 1, m, mlen);
    if (dlen == 2 * bs) {
        sub = k1;
    } else {
        d[dlen] = 0x80;
        sub = k2;
    }
    for (j = 0; j < bs; j++)
        d[bs + j] ^= sub[j];
    rc = dfc_cbc_encrypt(c, master, iv, d, d, 2 * bs);
    if (rc == OTA_OK)
        memcpy(out, d + bs, bs);
    dfc_wipe(d, sizeof d);
    dfc_wipe(k1, sizeof k1);
    dfc_wipe(k2, sizeof k2);
    dfc_wipe(iv, sizeof iv);
    return rc;
}

int dfc_an10922_aes128(const uint8_t master[16], const uint8_t *m, size_t mlen, uint8_t out[16])
{
    if (master == NULL || m == NULL || out == NULL)
        return OTA_ERR_INVAL;
    return an10922_block(DFC_AES128, master, 0x01, m, mlen, out);
}

int dfc_an10922_tdes(enum dfc_cipher c, const uint8_t *master, const uint8_t *m, size_t mlen,
                     uint8_t *out)
{
    uint8_t tmp[24];
    size_t n, i;
    int rc = OTA_OK;

    if (master == NULL || m == NULL || out == NULL)
        return OTA_ERR_INVAL;
    if (c == DFC_TDES2)
        n = 2;
    else if (c == DFC_TDES3)
        n = 3;
    else
        return OTA_ERR_INVAL;
    for (i = 0; i < n && rc == OTA_OK; i++)
        rc = an10922_block(c, master, (uint8_t)((n == 2 ? 0x21 : 0x31) + i), m, mlen, tmp + 8 * i);
    if (rc == OTA_OK)
        memcpy(out, tmp, 8 * n);
    dfc_wipe(tmp, sizeof tmp);
    return rc;
}
