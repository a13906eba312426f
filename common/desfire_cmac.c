/* desfire_cmac: SP 800-38B CMAC (AES-128 and TDEA) whose CBC chain may
 * start from the EV1 running session IV instead of zero.  Returns the full
 * block; truncation to the 8 bytes on the wire is the caller's job.  Never
 * keeps keys or subkeys after the call. */
#include "desfire_crypto.h"

#include <string.h>

#include "ota_err.h"

/* Doubling in GF(2^n): shift left one bit, XOR Rb if the top bit fell out. */
static void gf_double(const uint8_t *in, uint8_t *out, size_t bs)
{
    uint8_t rb = bs == 16 ? 0x87 : 0x1B;
    uint8_t carry = in[0] >> 7;
    size_t i;

    for (i = 0; i + 1 < bs; i++)
        out[i] = (uint8_t)((in[i] << 1) | (in[i + 1] >> 7));
    out[bs - 1] = (uint8_t)(in[bs - 1] << 1);
    /* Branch-free so the subkey's top bit does not leak through timing. */
    out[bs - 1] ^= (uint8_t)(rb & (uint8_t)(0 - carry));
}

int dfc_cmac_subkeys(enum dfc_cipher c, const uint8_t *key, uint8_t *k0, uint8_t *k1, uint8_t *k2)
{
    size_t bs = dfc_block_size(c);
    uint8_t zero[DFC_MAX_BLOCK] = {0};
    uint8_t l[DFC_MAX_BLOCK], a[DFC_MAX_BLOCK], b[DFC_MAX_BLOCK];
    int rc;

    rc = dfc_block_encrypt(c, key, zero, l);
    if (rc == OTA_OK) {
        gf_double(l, a, bs);
        gf_double(a, b, bs);
        if (k0 != NULL)
            memcpy(k0, l, bs);
        if (k1 != NULL)
            memcpy(k1, a, bs);
        if (k2 != NULL)
            memcpy(k2, b, bs);
    }
    dfc_wipe(l, sizeof l);
    dfc_wipe(a, sizeof a);
    dfc_wipe(b, sizeof b);
    return rc;
}

/* Blocks of the message enciphered per cipher pass. */
#define CMAC_CHUNK_BLOCKS 16

int dfc_cmac(enum dfc_cipher c, const uint8_t *key, const uint8_t *iv, const uint8_t *msg,
             size_t len, uint8_t *mac)
{
    size_t bs = dfc_block_size(c);
    uint8_t k1[DFC_MAX_BLOCK], k2[DFC_MAX_BLOCK], x[DFC_MAX_BLOCK], last[DFC_MAX_BLOCK];
    uint8_t chunk[CMAC_CHUNK_BLOCKS * DFC_MAX_BLOCK];
    size_t nfull, i, j, rest;
    int rc;

    if (key == NULL || mac == NULL || (msg == NULL && len != 0))
        return OTA_ERR_INVAL;
    rc = dfc_cmac_subkeys(c, key, NULL, k1, k2);
    if (rc != OTA_OK)
        return rc;
    if (iv != NULL)
        memcpy(x, iv, bs);
    else
        memset(x, 0, bs);
    /* The last block is the final complete one, or the padded remainder. */
    nfull = len == 0 ? 0 : (len - 1) / bs;
    /* The full blocks before the last are a CBC encryption with x as its
     * IV (x becomes the last ciphertext block): one cipher pass per chunk
     * instead of one per block, each pass a cipher context of its own. */
    for (i = 0; i < nfull && rc == OTA_OK; i += CMAC_CHUNK_BLOCKS) {
        size_t n = nfull - i < CMAC_CHUNK_BLOCKS ? nfull - i : CMAC_CHUNK_BLOCKS;
        rc = dfc_cbc_encrypt(c, key, x, msg + i * bs, chunk, n * bs);
    }
    dfc_wipe(chunk, sizeof chunk);
    if (rc == OTA_OK) {
        rest = len - nfull * bs;
        memset(last, 0, bs);
        if (rest > 0)
            memcpy(last, msg + nfull * bs, rest);
        if (rest == bs) {
            for (j = 0; j < bs; j++)
                last[j] ^= k1[j];
        } else {
            last[rest] = 0x80;
            for (j = 0; j < bs; j++)
                last[j] ^= k2[j];
        }
        for (j = 0; j < bs; j++)
            x[j] ^= last[j];
        rc = dfc_block_encrypt(c, key, x, x);
    }
    if (rc == OTA_OK)
        memcpy(mac, x, bs);
    dfc_wipe(k1, sizeof k1);
    dfc_wipe(k2, sizeof k2);
    dfc_wipe(x, sizeof x);
    dfc_wipe(last, sizeof last);
    return rc;
}
