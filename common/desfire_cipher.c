/* desfire_cipher: AES-128 and TDEA block operations (CBC with a running IV,
 * single ECB blocks) through OpenSSL EVP.  Single DES is 2-key TDEA with
 * K1 == K2, so no legacy provider is needed.  Never keeps a key beyond the
 * call and never pads: callers pad by DESFire rules themselves.
 *
 * The cipher implementations are fetched from the provider once per process
 * (they hold no key): with OpenSSL 3 the EVP_aes_128_cbc()-style objects are
 * fetched again on every EVP_CipherInit_ex, which was half of a worker's
 * instructions per exchange (issue 7).  Each call still has its own context,
 * freed (and so cleansed) before it returns. */
#include "desfire_crypto.h"

#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "ota_err.h"

size_t dfc_block_size(enum dfc_cipher c)
{
    return c == DFC_AES128 ? 16 : 8;
}

size_t dfc_key_size(enum dfc_cipher c)
{
    switch (c) {
    case DFC_AES128:
        return 16;
    case DFC_TDES2:
        return 16;
    case DFC_TDES3:
        return 24;
    }
    return 0;
}

/* [cipher][cbc]: fetched once; NULL where the fetch failed (then the
 * legacy getter below, fetched per call, still works). */
static EVP_CIPHER *dfc_fetched[3][2];
static pthread_once_t dfc_fetch_once = PTHREAD_ONCE_INIT;

static void dfc_fetch_all(void)
{
    static const char *const names[3][2] = {
        {"AES-128-ECB", "AES-128-CBC"},
        {"DES-EDE-ECB", "DES-EDE-CBC"},
        {"DES-EDE3-ECB", "DES-EDE3-CBC"},
    };
    for (int c = 0; c < 3; c++)
        for (int cbc = 0; cbc < 2; cbc++)
            dfc_fetched[c][cbc] = EVP_CIPHER_fetch(NULL, names[c][cbc], NULL);
}

static const EVP_CIPHER *evp_cipher(enum dfc_cipher c, int cbc)
{
    if ((unsigned)c <= DFC_TDES3 && pthread_once(&dfc_fetch_once, dfc_fetch_all) == 0 &&
        dfc_fetched[c][cbc != 0] != NULL)
        return dfc_fetched[c][cbc != 0];
    switch (c) {
    case DFC_AES128:
        return cbc ? EVP_aes_128_cbc() : EVP_aes_128_ecb();
    case DFC_TDES2:
        return cbc ? EVP_des_ede_cbc() : EVP_des_ede_ecb();
    case DFC_TDES3:
        return cbc ? EVP_des_ede3_cbc() : EVP_des_ede3_ecb();
    }
    return NULL;
}

/* One EVP pass without padding; out receives exactly len bytes. */
static int evp_run(enum dfc_cipher c, int cbc, int enc, const uint8_t *key, const uint8_t *iv,
                   const uint8_t *in, uint8_t *out, size_t len)
{
    const EVP_CIPHER *ciph = evp_cipher(c, cbc);
    EVP_CIPHER_CTX *ctx;
    int outl = 0, finl = 0, ok;

    if (ciph == NULL || key == NULL || len > (size_t)0x7fffffff)
        return OTA_ERR_INVAL;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return OTA_ERR_NOMEM;
    ok = EVP_CipherInit_ex(ctx, ciph, NULL, key, cbc ? iv : NULL, enc) == 1 &&
         EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
         EVP_CipherUpdate(ctx, out, &outl, in, (int)len) == 1 &&
         EVP_CipherFinal_ex(ctx, out + outl, &finl) == 1 && (size_t)(outl + finl) == len;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? OTA_OK : OTA_ERR_CRYPTO;
}

int dfc_cbc_encrypt(enum dfc_cipher c, const uint8_t *key, uint8_t *iv, const uint8_t *in,
                    uint8_t *out, size_t len)
{
    size_t bs = dfc_block_size(c);
    int rc;

    if (len == 0 || len % bs != 0)
        return OTA_ERR_LENGTH;
    rc = evp_run(c, 1, 1, key, iv, in, out, len);
    if (rc == OTA_OK)
        memcpy(iv, out + len - bs, bs);
    return rc;
}

int dfc_cbc_decrypt(enum dfc_cipher c, const uint8_t *key, uint8_t *iv, const uint8_t *in,
                    uint8_t *out, size_t len)
{
    size_t bs = dfc_block_size(c);
    uint8_t last[DFC_MAX_BLOCK];
    int rc;

    if (len == 0 || len % bs != 0)
        return OTA_ERR_LENGTH;
    /* in may equal out: keep the last ciphertext block before it is overwritten. */
    memcpy(last, in + len - bs, bs);
    rc = evp_run(c, 1, 0, key, iv, in, out, len);
    if (rc == OTA_OK)
        memcpy(iv, last, bs);
    return rc;
}

int dfc_block_encrypt(enum dfc_cipher c, const uint8_t *key, const uint8_t *in, uint8_t *out)
{
    return evp_run(c, 0, 1, key, NULL, in, out, dfc_block_size(c));
}

int dfc_block_decrypt(enum dfc_cipher c, const uint8_t *key, const uint8_t *in, uint8_t *out)
{
    return evp_run(c, 0, 0, key, NULL, in, out, dfc_block_size(c));
}
