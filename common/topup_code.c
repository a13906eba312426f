/* topup_code: generating, normalizing and hashing the top-up codes people
 * type (format in topup_code.h).
 *
 * Check character: the 17 characters s_0..s_16 (16 data, then the check),
 * read as elements of GF(32) (x^5 + x^2 + 1), satisfy
 *     sum_j alpha^(17-j) * s_j = 0   over j = 0..16 (the check's weight is alpha),
 * with alpha = x, a primitive element.  The weights alpha^1..alpha^17 are 17
 * distinct non-zero field elements, so (the code being linear) every single
 * substitution (error w_j * d, d != 0) and every transposition of two
 * adjacent different characters (error (w_j + w_{j+1}) * d, w_j != w_{j+1})
 * changes the sum: both are always detected, including errors that touch
 * the check character.  The check uses the same 32 symbols as the data.
 *
 * Must never: log or keep a code; compare a code or a hash in variable time
 * (callers compare hashes in the database, by equality of HMACs). */
#include "topup_code.h"

#include <sodium.h>
#include <string.h>

#include "ota_err.h"

static const char CODE_ALPHABET[33] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#define GF32_POLY 0x25 /* x^5 + x^2 + 1 */

static unsigned gf32_mul(unsigned a, unsigned b)
{
    unsigned r = 0;
    for (int i = 0; i < 5; i++) {
        if (b & 1u)
            r ^= a;
        b >>= 1;
        a <<= 1;
        if (a & 0x20u)
            a ^= GF32_POLY;
    }
    return r & 0x1fu;
}

/* alpha^e for alpha = x (2). */
static unsigned gf32_pow_alpha(unsigned e)
{
    unsigned r = 1;
    for (unsigned i = 0; i < e; i++)
        r = gf32_mul(r, 2);
    return r;
}

/* The value (0..31) of a character after normalization, or -1. */
static int code_char_value(char ch)
{
    if (ch >= 'a' && ch <= 'z')
        ch = (char)(ch - 'a' + 'A');
    if (ch == 'I' || ch == 'L')
        ch = '1';
    else if (ch == 'O')
        ch = '0';
    const char *p = ch != '\0' ? strchr(CODE_ALPHABET, ch) : NULL;
    return p != NULL ? (int)(p - CODE_ALPHABET) : -1;
}

/* The check symbol that makes the weighted sum of v[0..15] and it zero. */
static unsigned code_check_value(const unsigned char v[CODE_DATA_CHARS])
{
    unsigned sum = 0;
    for (unsigned j = 0; j < CODE_DATA_CHARS; j++)
        sum ^= gf32_mul(gf32_pow_alpha(CODE_NORM_LEN - j), v[j]);
    /* The check's weight is alpha^1 (j = 16): s_16 = sum / alpha.  In
     * characteristic 2 minus is plus; divide by multiplying with alpha^30. */
    return gf32_mul(sum, gf32_pow_alpha(30));
}

int code_generate(char *out, size_t cap)
{
    if (out == NULL || cap < CODE_DISPLAY_LEN + 1)
        return OTA_ERR_INVAL;
    if (sodium_init() < 0)
        return OTA_ERR_CRYPTO;
    uint8_t rnd[10]; /* 80 bits = 16 symbols of 5 bits */
    unsigned char v[CODE_DATA_CHARS];
    randombytes_buf(rnd, sizeof rnd);
    for (unsigned j = 0; j < CODE_DATA_CHARS; j++) {
        unsigned bit = j * 5, byte = bit / 8, shift = bit % 8;
        unsigned w = (unsigned)rnd[byte] << 8 | (byte + 1 < sizeof rnd ? rnd[byte + 1] : 0u);
        v[j] = (unsigned char)((w >> (11 - shift)) & 0x1fu);
    }
    unsigned check = code_check_value(v);
    size_t o = 0;
    for (unsigned j = 0; j < CODE_DATA_CHARS; j++) {
        if (j > 0 && j % 4 == 0)
            out[o++] = '-';
        out[o++] = CODE_ALPHABET[v[j]];
    }
    out[o++] = '-';
    out[o++] = CODE_ALPHABET[check];
    out[o] = '\0';
    sodium_memzero(rnd, sizeof rnd);
    sodium_memzero(v, sizeof v);
    return OTA_OK;
}

int code_normalize(const char *in, char *out, size_t cap)
{
    if (in == NULL || out == NULL || cap < CODE_NORM_LEN + 1)
        return OTA_ERR_INVAL;
    unsigned char v[CODE_NORM_LEN];
    size_t n = 0;
    int rc = OTA_OK;
    for (const char *p = in; *p != '\0'; p++) {
        if (*p == '-' || *p == ' ')
            continue;
        int val = code_char_value(*p);
        if (val < 0 || n == CODE_NORM_LEN) {
            rc = OTA_ERR_PARSE;
            break;
        }
        v[n++] = (unsigned char)val;
    }
    if (rc == OTA_OK && n != CODE_NORM_LEN)
        rc = OTA_ERR_PARSE;
    if (rc == OTA_OK && code_check_value(v) != v[CODE_DATA_CHARS])
        rc = OTA_ERR_MAC;
    if (rc == OTA_OK) {
        for (size_t j = 0; j < CODE_NORM_LEN; j++)
            out[j] = CODE_ALPHABET[v[j]];
        out[CODE_NORM_LEN] = '\0';
    } else {
        out[0] = '\0';
    }
    sodium_memzero(v, sizeof v);
    return rc;
}

void code_hash(const uint8_t key[CODE_HMAC_KEY_LEN], const char *normalized,
               uint8_t out[CODE_HASH_LEN])
{
    crypto_auth_hmacsha256(out, (const unsigned char *)normalized, strlen(normalized), key);
}
