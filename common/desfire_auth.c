/* desfire_auth: reader side of EV1 AuthenticateAES (0xAA) and ISO
 * authentication (0x1A) as a sans-I/O state machine (CONVENTIONS.md §3):
 * one IV chained through the handshake, RndB' and RndA' rotated one byte,
 * the session key assembled from the two randoms.  Never performs I/O,
 * never accepts RndA' without a constant-time check, never leaves the
 * randoms or the long-term key in memory after finishing. */
#include "desfire_auth.h"

#include <string.h>

#include "desfire_apdu.h"
#include "ota_err.h"

#define INS_AUTH_AES 0xAA
#define INS_AUTH_ISO 0x1A

/* RndA and RndB have the length of one AES block or of the TDEA key's
 * strength: 8 bytes for 2-key, 16 for 3-key TDEA. */
static size_t rnd_len(enum dfc_cipher c)
{
    return c == DFC_TDES2 ? 8 : 16;
}

static void rotate_left(const uint8_t *in, uint8_t *out, size_t n)
{
    memcpy(out, in + 1, n - 1);
    out[n - 1] = in[0];
}

/* A 2-key TDEA key whose halves are equal up to the parity bits (where DES
 * keys carry their version) is single DES and gets a DES session key. */
static int is_single_des(const uint8_t *key)
{
    uint8_t diff = 0;
    size_t i;

    for (i = 0; i < 8; i++)
        diff |= (uint8_t)((key[i] ^ key[i + 8]) & 0xFE);
    return diff == 0;
}

static void session_key(const struct dfc_auth *a, uint8_t *out)
{
    const uint8_t *ra = a->rnda, *rb = a->rndb;

    memcpy(out, ra, 4);
    memcpy(out + 4, rb, 4);
    switch (a->cipher) {
    case DFC_AES128:
        memcpy(out + 8, ra + 12, 4);
        memcpy(out + 12, rb + 12, 4);
        break;
    case DFC_TDES2:
        if (is_single_des(a->key)) {
            memcpy(out + 8, out, 8);
        } else {
            memcpy(out + 8, ra + 4, 4);
            memcpy(out + 12, rb + 4, 4);
        }
        break;
    case DFC_TDES3:
        memcpy(out + 8, ra + 6, 4);
        memcpy(out + 12, rb + 6, 4);
        memcpy(out + 16, ra + 12, 4);
        memcpy(out + 20, rb + 12, 4);
        break;
    }
}

/* Wipes everything secret but keeps the final state for the caller. */
static void auth_finish(struct dfc_auth *a, enum dfc_auth_state st)
{
    dfc_wipe(a->key, sizeof a->key);
    dfc_wipe(a->rnda, sizeof a->rnda);
    dfc_wipe(a->rndb, sizeof a->rndb);
    dfc_wipe(a->iv, sizeof a->iv);
    a->rnda_fixed = 0;
    a->state = st;
}

static int auth_fail(struct dfc_auth *a, struct dfc_session *out, int err)
{
    auth_finish(a, DFC_AUTH_FAILED);
    if (out != NULL)
        dfc_session_clear(out);
    return err;
}

int dfc_auth_start(struct dfc_auth *a, enum dfc_cipher c, uint8_t keyno, const uint8_t *key,
                   uint8_t *apdu, size_t cap, size_t *apdu_len)
{
    size_t klen = dfc_key_size(c);
    int rc;

    if (a == NULL || key == NULL || klen == 0)
        return OTA_ERR_INVAL;
    memset(a, 0, sizeof *a);
    a->cipher = c;
    a->keyno = keyno;
    memcpy(a->key, key, klen);
    rc = dfc_apdu_build(c == DFC_AES128 ? INS_AUTH_AES : INS_AUTH_ISO, &keyno, 1, apdu, cap,
                        apdu_len);
    if (rc != OTA_OK) {
        auth_finish(a, DFC_AUTH_FAILED);
        return rc;
    }
    a->state = DFC_AUTH_SENT_KEYNO;
    return OTA_OK;
}

void dfc_auth_set_rnda(struct dfc_auth *a, const uint8_t *rnda)
{
    if (a == NULL || rnda == NULL || a->state != DFC_AUTH_SENT_KEYNO)
        return;
    memcpy(a->rnda, rnda, rnd_len(a->cipher));
    a->rnda_fixed = 1;
}

/* Maps a non-success native status of the handshake to an error. */
static int status_error(uint8_t st)
{
    return st == DFC_ST_AUTHENTICATION_ERROR ? OTA_ERR_AUTH : OTA_ERR_CARD_STATUS;
}

/* Card sent E(K, RndB); answer with E(K, RndA || RndB'). */
static int on_rndb(struct dfc_auth *a, const uint8_t *data, size_t n, uint8_t *apdu, size_t cap,
                   size_t *apdu_len)
{
    size_t rl = rnd_len(a->cipher);
    uint8_t token[32];
    int rc;

    if (n != rl)
        return OTA_ERR_LENGTH;
    /* The IV is zero only here; it then chains through the handshake. */
    memset(a->iv, 0, sizeof a->iv);
    rc = dfc_cbc_decrypt(a->cipher, a->key, a->iv, data, a->rndb, rl);
    if (rc != OTA_OK)
        return rc;
    if (!a->rnda_fixed)
        dfc_random(a->rnda, rl);
    memcpy(token, a->rnda, rl);
    rotate_left(a->rndb, token + rl, rl);
    rc = dfc_cbc_encrypt(a->cipher, a->key, a->iv, token, token, 2 * rl);
    if (rc == OTA_OK)
        rc = dfc_apdu_build(DFC_ST_ADDITIONAL_FRAME, token, 2 * rl, apdu, cap, apdu_len);
    dfc_wipe(token, sizeof token);
    return rc;
}

/* Card sent E(K, RndA'); check it and build the session. */
static int on_rnda(struct dfc_auth *a, const uint8_t *data, size_t n, struct dfc_session *out)
{
    size_t rl = rnd_len(a->cipher);
    uint8_t got[16], want[16];
    int rc, ok;

    if (n != rl)
        return OTA_ERR_LENGTH;
    rc = dfc_cbc_decrypt(a->cipher, a->key, a->iv, data, got, rl);
    if (rc != OTA_OK)
        return rc;
    rotate_left(a->rnda, want, rl);
    ok = dfc_ct_equal(got, want, rl);
    dfc_wipe(got, sizeof got);
    dfc_wipe(want, sizeof want);
    if (!ok)
        return OTA_ERR_AUTH;
    dfc_session_clear(out);
    out->cipher = a->cipher;
    session_key(a, out->key);
    out->keyno = a->keyno;
    out->active = 1;
    return OTA_OK;
}

int dfc_auth_feed(struct dfc_auth *a, const uint8_t *rapdu, size_t rlen, uint8_t *apdu, size_t cap,
                  size_t *apdu_len, struct dfc_session *out)
{
    const uint8_t *data;
    uint8_t st;
    size_t n;
    int rc;

    if (a == NULL || out == NULL)
        return OTA_ERR_INVAL;
    if (a->state != DFC_AUTH_SENT_KEYNO && a->state != DFC_AUTH_SENT_TOKEN)
        return auth_fail(a, out, OTA_ERR_STATE);
    if (rapdu == NULL)
        return auth_fail(a, out, OTA_ERR_INVAL);
    rc = dfc_apdu_parse(rapdu, rlen, &st, &data, &n);
    if (rc != OTA_OK)
        return auth_fail(a, out, rc);
    if (a->state == DFC_AUTH_SENT_KEYNO) {
        if (st != DFC_ST_ADDITIONAL_FRAME)
            return auth_fail(a, out, status_error(st));
        if (apdu == NULL || apdu_len == NULL)
            return auth_fail(a, out, OTA_ERR_INVAL);
        rc = on_rndb(a, data, n, apdu, cap, apdu_len);
        if (rc != OTA_OK)
            return auth_fail(a, out, rc);
        a->state = DFC_AUTH_SENT_TOKEN;
        return DFC_MORE;
    }
    if (st != DFC_ST_OK)
        return auth_fail(a, out, status_error(st));
    rc = on_rnda(a, data, n, out);
    if (rc != OTA_OK)
        return auth_fail(a, out, rc);
    auth_finish(a, DFC_AUTH_DONE);
    return OTA_OK;
}

void dfc_auth_clear(struct dfc_auth *a)
{
    if (a == NULL)
        return;
    dfc_wipe(a, sizeof *a);
    a->state = DFC_AUTH_IDLE;
}
