/* sim_auth: the card's side of the three DESFire authentications.
 * AuthenticateAES (0xAA) and ISO (0x1A) give an EV1 session: E(K, RndB)
 * with a zero IV, the reader's token decrypted with IV = that ciphertext,
 * E(K, RndA') with IV = the token's last block; the session IV is zero.
 * Legacy (0x0A) gives a DES/2K3DES session without running IV: the card
 * enciphers RndB, deciphers the reader's "send mode" token by enciphering,
 * and enciphers RndA'.  Starting any of them ends the current session (and
 * discards pending changes unless SIM_FLAG_KEEP_PENDING_ON_SELECT_AUTH);
 * a wrong key type or a wrong RndB' is 0xAE.  Never compare RndB' with a
 * non-constant-time comparison. */
#include "sim_priv.h"

#include <string.h>

#define INS_LEGACY 0x0A
#define INS_ISO 0x1A
#define INS_AES 0xAA

static size_t rnd_len(uint8_t ins, uint8_t key_type)
{
    if (ins == INS_AES || key_type == SIM_KT_3K)
        return 16;
    return 8;
}

static void rotl(const uint8_t *in, uint8_t *out, size_t n)
{
    memmove(out, in + 1, n - 1);
    out[n - 1] = in[0];
}

/* DES keys are 2-key TDEA with equal halves (up to the parity bits). */
static int single_des(const uint8_t *k)
{
    uint8_t d = 0;
    int i;

    for (i = 0; i < 8; i++)
        d |= (uint8_t)((k[i] ^ k[i + 8]) & 0xFE);
    return d == 0;
}

int sim_cmd_auth_start(struct sim_card *c)
{
    struct sim_app *a = c->sel;
    uint8_t ins = c->cmd[0];
    uint8_t keyno, kt;
    uint8_t ek[16];
    size_t rl;
    int rc;

    if (!(c->flags & SIM_FLAG_KEEP_PENDING_ON_SELECT_AUTH))
        sim_txn_discard(c);
    sim_session_end(c);
    if (c->cmd_len != 2)
        return SIM_LENGTH;
    keyno = c->cmd[1];
    if (keyno >= a->nkeys)
        return SIM_NO_SUCH_KEY;
    kt = a->key_type;
    if ((ins == INS_AES && kt != SIM_KT_AES) || (ins == INS_ISO && kt == SIM_KT_AES) ||
        (ins == INS_LEGACY && kt != SIM_KT_DES))
        return SIM_AUTH;
    rl = rnd_len(ins, kt);
    c->hs.ins = ins;
    c->hs.keyno = keyno;
    c->hs.cipher = sim_key_cipher(kt);
    memcpy(c->hs.key, a->keys[keyno].key, DFC_MAX_KEY);
    sim_random(c, c->hs.rndb, rl);
    memset(c->hs.iv, 0, sizeof c->hs.iv);
    if (ins == INS_LEGACY)
        rc = dfc_block_encrypt(c->hs.cipher, c->hs.key, c->hs.rndb, ek);
    else
        rc = dfc_cbc_encrypt(c->hs.cipher, c->hs.key, c->hs.iv, c->hs.rndb, ek, rl);
    if (rc != 0)
        return SIM_AUTH;
    sim_answer_raw(c, ek, rl);
    c->out_status = SIM_MORE; /* the reader's token follows in an AF frame */
    return 0;
}

static void session_key(const struct sim_handshake *h, const uint8_t *ra, const uint8_t *rb,
                        uint8_t *out)
{
    memset(out, 0, DFC_MAX_KEY);
    memcpy(out, ra, 4);
    memcpy(out + 4, rb, 4);
    switch (h->cipher) {
    case DFC_AES128:
        memcpy(out + 8, ra + 12, 4);
        memcpy(out + 12, rb + 12, 4);
        break;
    case DFC_TDES2:
        if (single_des(h->key)) {
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

/* Legacy token: X1 = D(RndA), X2 = D(RndB' ^ X1); the card recovers
 * RndA = E(X1) and RndB' = E(X2) ^ X1. */
static int legacy_open(const struct sim_handshake *h, const uint8_t *tok, uint8_t *ra, uint8_t *rbp)
{
    int i;

    if (dfc_block_encrypt(h->cipher, h->key, tok, ra) != 0 ||
        dfc_block_encrypt(h->cipher, h->key, tok + 8, rbp) != 0)
        return -1;
    for (i = 0; i < 8; i++)
        rbp[i] ^= tok[i];
    return 0;
}

int sim_cmd_auth_token(struct sim_card *c, const uint8_t *d, size_t n)
{
    struct sim_handshake *h = &c->hs;
    uint8_t plain[32], want[16], rap[16], resp[16];
    size_t rl = h->ins == INS_AES ? 16 : (h->cipher == DFC_TDES3 ? 16 : 8);
    int rc, ok;

    if (n != 2 * rl) {
        dfc_wipe(h, sizeof *h);
        return SIM_LENGTH;
    }
    if (h->ins == INS_LEGACY) {
        rc = legacy_open(h, d, plain, plain + 8);
    } else {
        /* IV = E(RndB) as sent; afterwards the token's last block. */
        rc = dfc_cbc_decrypt(h->cipher, h->key, h->iv, d, plain, 2 * rl);
    }
    rotl(h->rndb, want, rl);
    ok = rc == 0 && dfc_ct_equal(plain + rl, want, rl);
    if (!ok) {
        dfc_wipe(plain, sizeof plain);
        dfc_wipe(h, sizeof *h);
        return SIM_AUTH;
    }
    rotl(plain, rap, rl);
    if (h->ins == INS_LEGACY)
        rc = dfc_block_encrypt(h->cipher, h->key, rap, resp);
    else
        rc = dfc_cbc_encrypt(h->cipher, h->key, h->iv, rap, resp, rl);
    if (rc != 0) {
        dfc_wipe(plain, sizeof plain);
        dfc_wipe(h, sizeof *h);
        return SIM_AUTH;
    }
    dfc_wipe(&c->s, sizeof c->s);
    c->s.kind = h->ins == INS_LEGACY ? SIM_SESS_LEGACY : SIM_SESS_EV1;
    c->s.cipher = h->cipher;
    c->s.keyno = h->keyno;
    session_key(h, plain, h->rndb, c->s.key);
    memset(c->s.iv, 0, sizeof c->s.iv);
    dfc_wipe(plain, sizeof plain);
    dfc_wipe(rap, sizeof rap);
    dfc_wipe(h, sizeof *h);
    sim_answer_raw(c, resp, rl);
    return 0;
}
