/* test_desfire_session: the reader-side EV1 handshake and secure messaging
 * against a small card model written here from CONVENTIONS.md with the
 * primitives alone: every cipher, random RndA, AF chaining both ways, and
 * every refusal path (MAC, CRC, padding, SW1, status, lengths, state). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "desfire_apdu.h"
#include "desfire_auth.h"
#include "desfire_crypto.h"
#include "desfire_session.h"
#include "ota_err.h"

/* ---- the card model ---- */

struct card {
    enum dfc_cipher cipher;
    uint8_t key[24];          /* long-term key */
    uint8_t skey[24], iv[16]; /* session */
    uint8_t rnda[16], rndb[16];
};

static size_t rl_of(enum dfc_cipher c)
{
    return c == DFC_TDES2 ? 8 : 16;
}

static void rotl(const uint8_t *in, uint8_t *out, size_t n)
{
    memcpy(out, in + 1, n - 1);
    out[n - 1] = in[0];
}

/* ISO answer data||91||st. */
static size_t answer(const uint8_t *data, size_t n, uint8_t st, uint8_t *out)
{
    if (n)
        memcpy(out, data, n);
    out[n] = 0x91;
    out[n + 1] = st;
    return n + 2;
}

/* Runs the whole handshake; the card side checks the reader's token. */
static int handshake(struct card *k, struct dfc_session *s, int is_des)
{
    uint8_t apdu[128], r[128], ct[32], pt[32], iv[16] = {0}, want[16];
    size_t alen, rl = rl_of(k->cipher), i;
    struct dfc_auth a;
    int rc;

    ck_assert_int_eq(dfc_auth_start(&a, k->cipher, 2, k->key, apdu, sizeof apdu, &alen), 0);
    ck_assert_uint_eq(alen, 7);
    ck_assert_uint_eq(apdu[1], k->cipher == DFC_AES128 ? 0xAA : 0x1A);
    ck_assert_uint_eq(apdu[5], 2);
    dfc_random(k->rndb, rl);
    ck_assert_int_eq(dfc_cbc_encrypt(k->cipher, k->key, iv, k->rndb, ct, rl), 0);
    rc = dfc_auth_feed(&a, r, answer(ct, rl, 0xAF, r), apdu, sizeof apdu, &alen, s);
    ck_assert_int_eq(rc, DFC_MORE);
    ck_assert_uint_eq(alen, 6 + 2 * rl);
    ck_assert_uint_eq(apdu[1], 0xAF);
    /* Card: IV = RndB ciphertext (still in iv), decrypt RndA || RndB'. */
    ck_assert_int_eq(dfc_cbc_decrypt(k->cipher, k->key, iv, apdu + 5, pt, 2 * rl), 0);
    rotl(k->rndb, want, rl);
    ck_assert_mem_eq(pt + rl, want, rl);
    memcpy(k->rnda, pt, rl);
    rotl(k->rnda, pt, rl);
    ck_assert_int_eq(dfc_cbc_encrypt(k->cipher, k->key, iv, pt, ct, rl), 0);
    rc = dfc_auth_feed(&a, r, answer(ct, rl, 0x00, r), apdu, sizeof apdu, &alen, s);
    ck_assert_int_eq(rc, 0);
    /* Card's own session key. */
    memcpy(k->skey, k->rnda, 4);
    memcpy(k->skey + 4, k->rndb, 4);
    if (k->cipher == DFC_AES128) {
        memcpy(k->skey + 8, k->rnda + 12, 4);
        memcpy(k->skey + 12, k->rndb + 12, 4);
    } else if (k->cipher == DFC_TDES2 && is_des) {
        memcpy(k->skey + 8, k->skey, 8);
    } else if (k->cipher == DFC_TDES2) {
        memcpy(k->skey + 8, k->rnda + 4, 4);
        memcpy(k->skey + 12, k->rndb + 4, 4);
    } else {
        memcpy(k->skey + 8, k->rnda + 6, 4);
        memcpy(k->skey + 12, k->rndb + 6, 4);
        memcpy(k->skey + 16, k->rnda + 12, 4);
        memcpy(k->skey + 20, k->rndb + 12, 4);
    }
    memset(k->iv, 0, sizeof k->iv);
    ck_assert_int_eq(s->active, 1);
    ck_assert_mem_eq(s->key, k->skey, dfc_key_size(k->cipher));
    for (i = 0; i < dfc_block_size(k->cipher); i++)
        ck_assert_uint_eq(s->iv[i], 0);
    return 0;
}

static void card_init(struct card *k, enum dfc_cipher c)
{
    size_t i;

    memset(k, 0, sizeof *k);
    k->cipher = c;
    for (i = 0; i < 24; i++)
        k->key[i] = (uint8_t)(0x30 + 3 * i);
}

static size_t bsz(const struct card *k)
{
    return dfc_block_size(k->cipher);
}

/* The card MACs what it received into its IV. */
static void card_mac_cmd(struct card *k, const uint8_t *msg, size_t n)
{
    ck_assert_int_eq(dfc_cmac(k->cipher, k->skey, k->iv, msg, n, k->iv), 0);
}

/* data || CMAC(IV, data || 00)[0..7] */
static size_t card_mac_answer(struct card *k, const uint8_t *data, size_t n, uint8_t *out)
{
    uint8_t tmp[1024];

    if (n > 0) {
        memcpy(tmp, data, n);
        memcpy(out, data, n);
    }
    tmp[n] = 0x00;
    ck_assert_int_eq(dfc_cmac(k->cipher, k->skey, k->iv, tmp, n + 1, k->iv), 0);
    memcpy(out + n, k->iv, 8);
    return n + 8;
}

/* E(IV, data || CRC32(data || 00) || padding); pad80 selects 80 00.. */
static size_t card_enc_answer(struct card *k, const uint8_t *data, size_t n, int pad80,
                              int crc_flip, uint8_t *out)
{
    uint8_t tmp[1024];
    size_t bs = bsz(k), len;

    if (n > 0)
        memcpy(tmp, data, n);
    tmp[n] = 0x00;
    dfc_put_le32(tmp + n, dfc_crc32(tmp, n + 1) ^ (crc_flip ? 1u : 0u));
    len = n + 4;
    if (pad80) {
        tmp[len++] = 0x80;
    }
    while (len % bs)
        tmp[len++] = 0x00;
    ck_assert_int_eq(dfc_cbc_encrypt(k->cipher, k->skey, k->iv, tmp, out, len), 0);
    return len;
}

/* Splits a native answer into ISO frames of at most 59 data bytes. */
struct rframes {
    uint8_t f[16][64];
    size_t n[16], count;
};

static void split_answer(const uint8_t *data, size_t n, uint8_t st, struct rframes *rf)
{
    size_t off = 0, take;

    rf->count = 0;
    do {
        take = n - off > DFC_FRAME_MAX_RESP ? DFC_FRAME_MAX_RESP : n - off;
        ck_assert_uint_lt(rf->count, 16);
        rf->n[rf->count] = answer(data + off, take, off + take < n ? 0xAF : st, rf->f[rf->count]);
        rf->count++;
        off += take;
    } while (off < n);
}

/* Feeds answer frames; every AF request must be exactly 90 AF 00 00 00. */
static int feed_frames(struct dfc_cmd *c, const struct rframes *rf)
{
    static const uint8_t more[] = {0x90, 0xAF, 0x00, 0x00, 0x00};
    uint8_t apdu[128];
    size_t alen, i;
    int rc = OTA_ERR_INTERNAL;

    for (i = 0; i < rf->count; i++) {
        alen = 0;
        rc = dfc_cmd_feed(c, rf->f[i], rf->n[i], apdu, sizeof apdu, &alen);
        if (i + 1 < rf->count) {
            if (rc != DFC_MORE)
                return rc;
            ck_assert_uint_eq(alen, 5);
            ck_assert_mem_eq(apdu, more, 5);
        }
    }
    return rc;
}

static void auth_card(struct card *k, struct dfc_session *s, enum dfc_cipher c)
{
    card_init(k, c);
    memset(s, 0, sizeof *s);
    handshake(k, s, 0);
}

static const uint8_t zero24[24];

/* ---- authentication ---- */

START_TEST(test_auth_all_ciphers)
{
    struct card k;
    struct dfc_session s;

    auth_card(&k, &s, DFC_AES128);
    auth_card(&k, &s, DFC_TDES2);
    auth_card(&k, &s, DFC_TDES3);
    /* DES: K1 == K2 up to parity bits -> RndA[0..3]||RndB[0..3] twice. */
    card_init(&k, DFC_TDES2);
    memcpy(k.key + 8, k.key, 8);
    k.key[9] ^= 0x01;
    memset(&s, 0, sizeof s);
    handshake(&k, &s, 1);
    ck_assert_mem_eq(s.key, s.key + 8, 8);
}
END_TEST

START_TEST(test_auth_refusals)
{
    struct dfc_auth a;
    struct dfc_session s;
    uint8_t key[16] = {0}, apdu[128], r[64], ct[32] = {0}, iv[16] = {0}, rb[16] = {1, 2, 3};
    size_t alen;

    /* Card answers AE to the key number. */
    memset(&s, 0, sizeof s);
    s.active = 1;
    ck_assert_int_eq(dfc_auth_start(&a, DFC_AES128, 0, key, apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(dfc_auth_feed(&a, r, answer(NULL, 0, 0xAE, r), apdu, sizeof apdu, &alen, &s),
                     OTA_ERR_AUTH);
    ck_assert_int_eq(a.state, DFC_AUTH_FAILED);
    ck_assert_int_eq(s.active, 0);
    /* Feeding a failed handshake again. */
    ck_assert_int_eq(dfc_auth_feed(&a, r, 2, apdu, sizeof apdu, &alen, &s), OTA_ERR_STATE);
    /* Other error status, wrong SW1, short and long RndB. */
    ck_assert_int_eq(dfc_auth_start(&a, DFC_AES128, 0, key, apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(dfc_auth_feed(&a, r, answer(NULL, 0, 0x40, r), apdu, sizeof apdu, &alen, &s),
                     OTA_ERR_CARD_STATUS);
    ck_assert_int_eq(dfc_auth_start(&a, DFC_AES128, 0, key, apdu, sizeof apdu, &alen), 0);
    r[0] = 0x90;
    r[1] = 0x00;
    ck_assert_int_eq(dfc_auth_feed(&a, r, 2, apdu, sizeof apdu, &alen, &s), OTA_ERR_SW1);
    ck_assert_int_eq(dfc_auth_start(&a, DFC_AES128, 0, key, apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(dfc_auth_feed(&a, r, answer(ct, 15, 0xAF, r), apdu, sizeof apdu, &alen, &s),
                     OTA_ERR_LENGTH);
    ck_assert_int_eq(dfc_auth_start(&a, DFC_AES128, 0, key, apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(dfc_auth_feed(&a, r, 1, apdu, sizeof apdu, &alen, &s), OTA_ERR_LENGTH);
    ck_assert_int_eq(dfc_auth_start(&a, DFC_AES128, 0, key, apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(dfc_auth_feed(&a, r, answer(ct, 16, 0x00, r), apdu, sizeof apdu, &alen, &s),
                     OTA_ERR_CARD_STATUS);
    /* Wrong RndA' (card does not know the key). */
    ck_assert_int_eq(dfc_auth_start(&a, DFC_AES128, 0, key, apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(dfc_cbc_encrypt(DFC_AES128, key, iv, rb, ct, 16), 0);
    ck_assert_int_eq(dfc_auth_feed(&a, r, answer(ct, 16, 0xAF, r), apdu, sizeof apdu, &alen, &s),
                     DFC_MORE);
    ck_assert_int_eq(dfc_auth_feed(&a, r, answer(ct, 16, 0x00, r), apdu, sizeof apdu, &alen, &s),
                     OTA_ERR_AUTH);
    ck_assert_int_eq(s.active, 0);
    ck_assert_mem_eq(a.rnda, zero24, 16);
    ck_assert_mem_eq(a.key, zero24, 24);
    /* AE on the second step; an answer to step 2 that is too long. */
    ck_assert_int_eq(dfc_auth_start(&a, DFC_AES128, 0, key, apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(dfc_auth_feed(&a, r, answer(ct, 16, 0xAF, r), apdu, sizeof apdu, &alen, &s),
                     DFC_MORE);
    ck_assert_int_eq(dfc_auth_feed(&a, r, answer(NULL, 0, 0xAE, r), apdu, sizeof apdu, &alen, &s),
                     OTA_ERR_AUTH);
    ck_assert_int_eq(dfc_auth_start(&a, DFC_AES128, 0, key, apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(dfc_auth_feed(&a, r, answer(ct, 16, 0xAF, r), apdu, sizeof apdu, &alen, &s),
                     DFC_MORE);
    ck_assert_int_eq(dfc_auth_feed(&a, r, answer(ct, 17, 0x00, r), apdu, sizeof apdu, &alen, &s),
                     OTA_ERR_LENGTH);
    /* Output buffer too small. */
    ck_assert_int_eq(dfc_auth_start(&a, DFC_AES128, 0, key, apdu, 6, &alen), OTA_ERR_LENGTH);
    ck_assert_int_eq(dfc_auth_start(&a, DFC_AES128, 0, key, apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(dfc_auth_feed(&a, r, answer(ct, 16, 0xAF, r), apdu, 20, &alen, &s),
                     OTA_ERR_LENGTH);
    dfc_auth_clear(&a);
    ck_assert_int_eq(a.state, DFC_AUTH_IDLE);
}
END_TEST

/* ---- commands ---- */

START_TEST(test_unauthenticated_plain)
{
    static const uint8_t want[] = {0x90, 0x6A, 0x00, 0x00, 0x00};
    static const uint8_t want2[] = {0x90, 0x5A, 0x00, 0x00, 0x03, 0x01, 0x02, 0x03, 0x00};
    static const uint8_t aid[] = {1, 2, 3};
    uint8_t apdu[128], r[64], ids[6] = {1, 2, 3, 4, 5, 6};
    struct dfc_cmd_spec sp = {.ins = 0x6A, .resp_comm = DFC_COMM_MAC, .resp_len = -1};
    struct dfc_session off = {0};
    struct dfc_cmd c;
    size_t alen;

    ck_assert_int_eq(dfc_cmd_start(&c, NULL, &sp, apdu, sizeof apdu, &alen), 0);
    ck_assert_uint_eq(alen, 5);
    ck_assert_mem_eq(apdu, want, 5);
    /* No MAC expected: the 6 bytes are all data. */
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(ids, 6, 0x00, r), apdu, sizeof apdu, &alen), 0);
    ck_assert_uint_eq(c.resp_len_out, 6);
    ck_assert_mem_eq(c.resp, ids, 6);
    /* Inactive session = unauthenticated; exact length enforced. */
    sp.ins = 0x5A;
    sp.data = aid;
    sp.data_len = 3;
    sp.cmd_comm = DFC_COMM_MAC;
    sp.resp_len = 0;
    ck_assert_int_eq(dfc_cmd_start(&c, &off, &sp, apdu, sizeof apdu, &alen), 0);
    ck_assert_uint_eq(alen, sizeof want2);
    ck_assert_mem_eq(apdu, want2, sizeof want2);
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(ids, 1, 0x00, r), apdu, sizeof apdu, &alen),
                     OTA_ERR_LENGTH);
    /* A failed or finished command refuses more answers. */
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(NULL, 0, 0x00, r), apdu, sizeof apdu, &alen),
                     OTA_ERR_STATE);
}
END_TEST

/* A MACed read (GetValue-like) in each cipher, then the same with one
 * answer byte changed. */
static void maced_case(enum dfc_cipher ci)
{
    static const uint8_t hdr[1] = {0x01};
    uint8_t apdu[128], msg[2] = {0x6C, 0x01}, val[4] = {0xE8, 0x03, 0, 0}, ans[64], r[128];
    struct dfc_cmd_spec sp = {.ins = 0x6C,
                              .hdr = hdr,
                              .hdr_len = 1,
                              .cmd_comm = DFC_COMM_PLAIN,
                              .resp_comm = DFC_COMM_MAC,
                              .resp_len = 4};
    struct card k;
    struct dfc_session s;
    struct dfc_cmd c;
    size_t alen, n;

    auth_card(&k, &s, ci);
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), 0);
    ck_assert_uint_eq(alen, 7); /* plain: nothing appended */
    card_mac_cmd(&k, msg, 2);
    ck_assert_mem_eq(s.iv, k.iv, bsz(&k));
    n = card_mac_answer(&k, val, 4, ans);
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(ans, n, 0x00, r), apdu, sizeof apdu, &alen), 0);
    ck_assert_uint_eq(c.resp_len_out, 4);
    ck_assert_mem_eq(c.resp, val, 4);
    ck_assert_mem_eq(s.iv, k.iv, bsz(&k));
    ck_assert_int_eq(s.active, 1);

    /* Tampered MAC byte. */
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), 0);
    card_mac_cmd(&k, msg, 2);
    n = card_mac_answer(&k, val, 4, ans);
    ans[n - 1] ^= 0x01;
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(ans, n, 0x00, r), apdu, sizeof apdu, &alen),
                     OTA_ERR_MAC);
    ck_assert_int_eq(s.active, 0);
    ck_assert_mem_eq(s.key, zero24, 24);
    ck_assert_int_eq(c.state, DFC_CMD_FAILED);
    /* A dead session cannot carry an authenticated command. */
    ck_assert_int_eq(
        dfc_cmd_start_changekey(&c, &s, 0, DFC_AES128, zero24, 0, NULL, apdu, sizeof apdu, &alen),
        OTA_ERR_STATE);

    /* Tampered data byte. */
    auth_card(&k, &s, ci);
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), 0);
    card_mac_cmd(&k, msg, 2);
    n = card_mac_answer(&k, val, 4, ans);
    ans[0] ^= 0x80;
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(ans, n, 0x00, r), apdu, sizeof apdu, &alen),
                     OTA_ERR_MAC);
    ck_assert_int_eq(s.active, 0);
}

START_TEST(test_maced_answer_and_tamper)
{
    maced_case(DFC_AES128);
    maced_case(DFC_TDES2);
    maced_case(DFC_TDES3);
}
END_TEST

START_TEST(test_maced_command)
{
    static const uint8_t hdr[7] = {0x02, 0, 0, 0, 4, 0, 0};
    static const uint8_t data[4] = {9, 8, 7, 6};
    uint8_t apdu[128], msg[12], ans[16], r[64];
    struct dfc_cmd_spec sp = {.ins = 0x3D,
                              .hdr = hdr,
                              .hdr_len = 7,
                              .data = data,
                              .data_len = 4,
                              .cmd_comm = DFC_COMM_MAC,
                              .resp_comm = DFC_COMM_MAC,
                              .resp_len = 0};
    struct card k;
    struct dfc_session s;
    struct dfc_cmd c;
    size_t alen, n;

    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), 0);
    msg[0] = 0x3D;
    memcpy(msg + 1, hdr, 7);
    memcpy(msg + 8, data, 4);
    card_mac_cmd(&k, msg, 12);
    ck_assert_uint_eq(apdu[4], 11 + 8);
    ck_assert_mem_eq(apdu + 5, msg + 1, 11);
    ck_assert_mem_eq(apdu + 16, k.iv, 8); /* CMAC[0..7] appended */
    n = card_mac_answer(&k, NULL, 0, ans);
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(ans, n, 0x00, r), apdu, sizeof apdu, &alen), 0);
    ck_assert_uint_eq(c.resp_len_out, 0);
}
END_TEST

/* WriteRecord with 32 enciphered bytes: 7 clear + 48 ciphertext = INS +
 * 55 bytes, one more than a frame holds, so two frames. */
static void enc_write_case(enum dfc_cipher ci)
{
    static const uint8_t hdr[7] = {0x04, 0, 0, 0, 32, 0, 0};
    uint8_t data[32], apdu[128], wire[128], msg[64], pt[64], ans[16], r[64], iv[16];
    struct dfc_cmd_spec sp = {.ins = 0x3B,
                              .hdr = hdr,
                              .hdr_len = 7,
                              .data = data,
                              .data_len = 32,
                              .cmd_comm = DFC_COMM_ENC,
                              .resp_comm = DFC_COMM_MAC,
                              .resp_len = 0};
    struct card k;
    struct dfc_session s;
    struct dfc_cmd c;
    size_t alen, wl = 0, n, bs, plen, i;

    for (i = 0; i < 32; i++)
        data[i] = (uint8_t)(0xC0 + i);
    auth_card(&k, &s, ci);
    bs = bsz(&k);
    plen = (32 + 4 + bs - 1) / bs * bs;
    memcpy(iv, k.iv, bs);
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), 0);
    ck_assert_uint_eq(apdu[1], 0x3B);
    ck_assert_uint_le(apdu[4] + 1u, DFC_FRAME_MAX_CMD);
    memcpy(wire, apdu + 5, apdu[4]);
    wl = apdu[4];
    ck_assert_int_eq(c.state,
                     7 + plen > DFC_FRAME_MAX_CMD - 1 ? DFC_CMD_SENDING : DFC_CMD_RECEIVING);
    if (c.state == DFC_CMD_SENDING) {
        ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(NULL, 0, 0xAF, r), apdu, sizeof apdu, &alen),
                         DFC_MORE);
        ck_assert_uint_eq(apdu[1], 0xAF);
        memcpy(wire + wl, apdu + 5, apdu[4]);
        wl += apdu[4];
    }
    ck_assert_uint_eq(wl, 7 + plen);
    /* Card: clear header, then data || CRC32(INS||hdr||data) || zeros. */
    ck_assert_mem_eq(wire, hdr, 7);
    ck_assert_int_eq(dfc_cbc_decrypt(ci, k.skey, k.iv, wire + 7, pt, plen), 0);
    ck_assert_mem_eq(pt, data, 32);
    msg[0] = 0x3B;
    memcpy(msg + 1, hdr, 7);
    memcpy(msg + 8, data, 32);
    ck_assert_uint_eq(dfc_get_le32(pt + 32), dfc_crc32(msg, 40));
    for (i = 36; i < plen; i++)
        ck_assert_uint_eq(pt[i], 0);
    ck_assert_mem_eq(s.iv, k.iv, bs); /* IV = last ciphertext block */
    n = card_mac_answer(&k, NULL, 0, ans);
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(ans, n, 0x00, r), apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(s.active, 1);
    ck_assert_mem_eq(s.iv, k.iv, bs);
}

START_TEST(test_enc_write_two_frames)
{
    enc_write_case(DFC_AES128);
    enc_write_case(DFC_TDES2);
    enc_write_case(DFC_TDES3);
}
END_TEST

/* ReadRecords with a long answer, MACed and enciphered, known and
 * unknown length. */
static int long_read(struct card *k, struct dfc_session *s, enum dfc_comm mode, size_t len,
                     int resp_len, int pad80, int crc_flip, struct dfc_cmd *c)
{
    static const uint8_t hdr[7] = {0x05, 0, 0, 0, 0, 0, 0};
    uint8_t data[600], ans[700], apdu[128], msg[8] = {0xBB};
    struct dfc_cmd_spec sp = {.ins = 0xBB,
                              .hdr = hdr,
                              .hdr_len = 7,
                              .cmd_comm = DFC_COMM_PLAIN,
                              .resp_comm = mode,
                              .resp_len = resp_len};
    struct rframes rf;
    size_t alen, n, i;
    int rc;

    for (i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 13 + 1);
    ck_assert_int_eq(dfc_cmd_start(c, s, &sp, apdu, sizeof apdu, &alen), 0);
    memcpy(msg + 1, hdr, 7);
    card_mac_cmd(k, msg, 8);
    if (mode == DFC_COMM_ENC)
        n = card_enc_answer(k, data, len, pad80, crc_flip, ans);
    else
        n = card_mac_answer(k, data, len, ans);
    split_answer(ans, n, 0x00, &rf);
    rc = feed_frames(c, &rf);
    if (rc == 0) {
        ck_assert_uint_eq(c->resp_len_out, len);
        ck_assert_mem_eq(c->resp, data, len);
        ck_assert_mem_eq(s->iv, k->iv, bsz(k));
    }
    return rc;
}

START_TEST(test_long_answers)
{
    struct card k;
    struct dfc_session s;
    struct dfc_cmd c;
    enum dfc_cipher ci[3] = {DFC_AES128, DFC_TDES2, DFC_TDES3};
    size_t lens[6] = {0, 1, 3, 200, 327, 500};
    size_t i, j;

    for (i = 0; i < 3; i++) {
        auth_card(&k, &s, ci[i]);
        for (j = 0; j < 6; j++) {
            ck_assert_int_eq(long_read(&k, &s, DFC_COMM_MAC, lens[j], (int)lens[j], 0, 0, &c), 0);
            ck_assert_int_eq(long_read(&k, &s, DFC_COMM_MAC, lens[j], -1, 0, 0, &c), 0);
            ck_assert_int_eq(long_read(&k, &s, DFC_COMM_ENC, lens[j], (int)lens[j], 0, 0, &c), 0);
            ck_assert_int_eq(long_read(&k, &s, DFC_COMM_ENC, lens[j], -1, 0, 0, &c), 0);
            /* libfreefare's 80 00.. padding is accepted too. */
            ck_assert_int_eq(long_read(&k, &s, DFC_COMM_ENC, lens[j], -1, 1, 0, &c), 0);
            ck_assert_int_eq(long_read(&k, &s, DFC_COMM_ENC, lens[j], (int)lens[j], 1, 0, &c), 0);
        }
        ck_assert_int_eq(s.active, 1);
    }
}
END_TEST

START_TEST(test_enc_answer_refusals)
{
    struct card k;
    struct dfc_session s;
    struct dfc_cmd c;

    /* Wrong CRC, known and unknown length. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(long_read(&k, &s, DFC_COMM_ENC, 20, 20, 0, 1, &c), OTA_ERR_CRC);
    ck_assert_int_eq(s.active, 0);
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(long_read(&k, &s, DFC_COMM_ENC, 100, -1, 0, 1, &c), OTA_ERR_CRC);
    ck_assert_int_eq(s.active, 0);
    auth_card(&k, &s, DFC_TDES2);
    ck_assert_int_eq(long_read(&k, &s, DFC_COMM_ENC, 20, 20, 0, 1, &c), OTA_ERR_CRC);
    /* The card holds more (or less) than the reader asked for. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(long_read(&k, &s, DFC_COMM_ENC, 40, 20, 0, 0, &c), OTA_ERR_LENGTH);
    ck_assert_int_eq(s.active, 0);
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(long_read(&k, &s, DFC_COMM_ENC, 12, 20, 0, 0, &c), OTA_ERR_LENGTH);
    /* Same block count, but the CRC is not where the length says. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(long_read(&k, &s, DFC_COMM_ENC, 18, 20, 0, 0, &c), OTA_ERR_CRC);
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(long_read(&k, &s, DFC_COMM_MAC, 21, 20, 0, 0, &c), OTA_ERR_LENGTH);
    ck_assert_int_eq(s.active, 0);
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(long_read(&k, &s, DFC_COMM_MAC, 19, 20, 0, 0, &c), OTA_ERR_LENGTH);
    /* Longer than the core ever accepts. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(long_read(&k, &s, DFC_COMM_MAC, 580, -1, 0, 0, &c), OTA_ERR_LENGTH);
    ck_assert_int_eq(s.active, 0);
}
END_TEST

static int one_answer(struct dfc_session *s, const uint8_t *r, size_t rl, enum dfc_comm mode,
                      struct dfc_cmd *c)
{
    uint8_t apdu[128];
    size_t alen;
    struct dfc_cmd_spec sp = {
        .ins = 0x6C, .cmd_comm = DFC_COMM_PLAIN, .resp_comm = mode, .resp_len = -1};

    ck_assert_int_eq(dfc_cmd_start(c, s, &sp, apdu, sizeof apdu, &alen), 0);
    return dfc_cmd_feed(c, r, rl, apdu, sizeof apdu, &alen);
}

START_TEST(test_frame_refusals)
{
    struct card k;
    struct dfc_session s;
    struct dfc_cmd c;
    uint8_t r[128] = {0};

    /* SW1 not 0x91 (ISO success 90 00 included). */
    auth_card(&k, &s, DFC_AES128);
    r[8] = 0x90;
    r[9] = 0x00;
    ck_assert_int_eq(one_answer(&s, r, 10, DFC_COMM_MAC, &c), OTA_ERR_SW1);
    ck_assert_int_eq(s.active, 0);
    auth_card(&k, &s, DFC_AES128);
    r[0] = 0x6A;
    r[1] = 0x82;
    ck_assert_int_eq(one_answer(&s, r, 2, DFC_COMM_MAC, &c), OTA_ERR_SW1);
    /* Error status: the card's code is kept, the session ends. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(one_answer(&s, r, answer(NULL, 0, 0x9D, r), DFC_COMM_MAC, &c),
                     OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(c.status, 0x9D);
    ck_assert_int_eq(s.active, 0);
    /* Too short for SW1 SW2, or for a MAC. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(one_answer(&s, r, 1, DFC_COMM_MAC, &c), OTA_ERR_LENGTH);
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(one_answer(&s, r, answer(r, 7, 0x00, r), DFC_COMM_MAC, &c), OTA_ERR_LENGTH);
    /* Enciphered answer not a whole number of blocks, or empty. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(one_answer(&s, r, answer(r, 15, 0x00, r), DFC_COMM_ENC, &c), OTA_ERR_LENGTH);
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(one_answer(&s, r, answer(NULL, 0, 0x00, r), DFC_COMM_ENC, &c), OTA_ERR_LENGTH);
    /* A frame larger than the card's 59 data bytes. */
    auth_card(&k, &s, DFC_AES128);
    memset(r, 0, sizeof r);
    ck_assert_int_eq(one_answer(&s, r, answer(r, 60, 0x00, r), DFC_COMM_MAC, &c), OTA_ERR_LENGTH);
    /* An empty AF frame would loop forever. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(one_answer(&s, r, answer(NULL, 0, 0xAF, r), DFC_COMM_MAC, &c), OTA_ERR_LENGTH);
    ck_assert_int_eq(s.active, 0);
}
END_TEST

START_TEST(test_sending_refusals)
{
    uint8_t data[100] = {0}, apdu[128], r[64];
    struct dfc_cmd_spec sp = {.ins = 0x3D,
                              .data = data,
                              .data_len = 100,
                              .cmd_comm = DFC_COMM_PLAIN,
                              .resp_comm = DFC_COMM_MAC,
                              .resp_len = 0};
    struct card k;
    struct dfc_session s;
    struct dfc_cmd c;
    size_t alen;

    /* The card must answer a non-final frame with a bare AF. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), 0);
    ck_assert_uint_eq(alen, 6 + 54);
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(NULL, 0, 0x00, r), apdu, sizeof apdu, &alen),
                     OTA_ERR_LENGTH);
    ck_assert_int_eq(s.active, 0);
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(r, 3, 0xAF, r), apdu, sizeof apdu, &alen),
                     OTA_ERR_LENGTH);
    /* Output too small for the next frame. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(NULL, 0, 0xAF, r), apdu, 10, &alen),
                     OTA_ERR_LENGTH);
    /* Start: bad specs and a small buffer. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, 20, &alen), OTA_ERR_LENGTH);
    ck_assert_int_eq(s.active, 0);
    auth_card(&k, &s, DFC_AES128);
    sp.data_len = DFC_DATA_MAX + 1;
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), OTA_ERR_INVAL);
    sp.data_len = 10;
    sp.hdr_len = 17;
    sp.hdr = data;
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), OTA_ERR_INVAL);
    sp.hdr_len = 0;
    sp.first_frame_max = DFC_FRAME_MAX_REPLAY + 1;
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), OTA_ERR_INVAL);
    sp.first_frame_max = 0;
    sp.resp_len = DFC_DATA_MAX + 1;
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), OTA_ERR_INVAL);
    sp.resp_len = -2;
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), OTA_ERR_INVAL);
    sp.resp_len = 0;
    sp.cmd_comm = (enum dfc_comm)2;
    ck_assert_int_eq(dfc_cmd_start(&c, &s, &sp, apdu, sizeof apdu, &alen), OTA_ERR_INVAL);
    /* Refused specs do not touch the session. */
    ck_assert_int_eq(s.active, 1);
    ck_assert_mem_eq(s.iv, k.iv, 16);
}
END_TEST

START_TEST(test_changekey)
{
    uint8_t nk[16], ok_[16] = {0}, apdu[128], r[64], pt[64], ans[16], msg[32];
    struct card k;
    struct dfc_session s;
    struct dfc_cmd c;
    size_t alen, n, i;

    for (i = 0; i < 16; i++)
        nk[i] = (uint8_t)(0x10 * i);
    /* Another key (1; authenticated with 2): XORed key, two CRCs, MACed answer. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(
        dfc_cmd_start_changekey(&c, &s, 0x01, DFC_AES128, nk, 0x42, ok_, apdu, sizeof apdu, &alen),
        0);
    ck_assert_uint_eq(apdu[1], 0xC4);
    ck_assert_uint_eq(apdu[4], 33);
    ck_assert_uint_eq(apdu[5], 0x01);
    ck_assert_int_eq(dfc_cbc_decrypt(DFC_AES128, k.skey, k.iv, apdu + 6, pt, 32), 0);
    ck_assert_mem_eq(pt, nk, 16);
    ck_assert_uint_eq(pt[16], 0x42);
    msg[0] = 0xC4;
    msg[1] = 0x01;
    memcpy(msg + 2, pt, 17);
    ck_assert_uint_eq(dfc_get_le32(pt + 17), dfc_crc32(msg, 19));
    ck_assert_uint_eq(dfc_get_le32(pt + 21), dfc_crc32(nk, 16));
    n = card_mac_answer(&k, NULL, 0, ans);
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(ans, n, 0x00, r), apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(s.active, 1);
    ck_assert_mem_eq(s.iv, k.iv, 16);
    /* The authenticated key itself: bare 00, session over. */
    ck_assert_int_eq(
        dfc_cmd_start_changekey(&c, &s, 0x02, DFC_AES128, nk, 1, NULL, apdu, sizeof apdu, &alen),
        0);
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(NULL, 0, 0x00, r), apdu, sizeof apdu, &alen), 0);
    ck_assert_int_eq(s.active, 0);
    ck_assert_mem_eq(s.key, zero24, 24);
    /* ... and if the card MACs that answer anyway, it is refused. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(
        dfc_cmd_start_changekey(&c, &s, 0x02, DFC_AES128, nk, 1, NULL, apdu, sizeof apdu, &alen),
        0);
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(ans, 8, 0x00, r), apdu, sizeof apdu, &alen),
                     OTA_ERR_LENGTH);
    /* Inconsistent calls: old key for the auth key, none for another. */
    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(
        dfc_cmd_start_changekey(&c, &s, 0x02, DFC_AES128, nk, 1, ok_, apdu, sizeof apdu, &alen),
        OTA_ERR_INVAL);
    ck_assert_int_eq(
        dfc_cmd_start_changekey(&c, &s, 0x01, DFC_AES128, nk, 1, NULL, apdu, sizeof apdu, &alen),
        OTA_ERR_INVAL);
    ck_assert_int_eq(s.active, 1);
    /* 3K3DES new key from a TDEA session: 24 bytes, no version, 8-byte padding. */
    auth_card(&k, &s, DFC_TDES3);
    {
        uint8_t nk3[24], old3[24] = {0};
        for (i = 0; i < 24; i++)
            nk3[i] = (uint8_t)(i + 1);
        ck_assert_int_eq(dfc_cmd_start_changekey(&c, &s, 0x00 | 0x01, DFC_TDES3, nk3, 0, old3, apdu,
                                                 sizeof apdu, &alen),
                         0);
        ck_assert_uint_eq(apdu[4], 1 + 32); /* 24 + 4 + 4 = 32 */
        ck_assert_int_eq(dfc_cbc_decrypt(DFC_TDES3, k.skey, k.iv, apdu + 6, pt, 32), 0);
        ck_assert_mem_eq(pt, nk3, 24);
        msg[0] = 0xC4;
        msg[1] = 0x01;
        memcpy(msg + 2, nk3, 24);
        ck_assert_uint_eq(dfc_get_le32(pt + 24), dfc_crc32(msg, 26));
        ck_assert_uint_eq(dfc_get_le32(pt + 28), dfc_crc32(nk3, 24));
        n = card_mac_answer(&k, NULL, 0, ans);
        ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(ans, n, 0x00, r), apdu, sizeof apdu, &alen), 0);
        ck_assert_int_eq(s.active, 1);
    }
}
END_TEST

START_TEST(test_finished_command_leaves_session)
{
    struct card k;
    struct dfc_session s;
    struct dfc_cmd c;
    uint8_t apdu[128], r[64];
    size_t alen;

    auth_card(&k, &s, DFC_AES128);
    ck_assert_int_eq(long_read(&k, &s, DFC_COMM_MAC, 10, 10, 0, 0, &c), 0);
    ck_assert_int_eq(dfc_cmd_feed(&c, r, answer(NULL, 0, 0x00, r), apdu, sizeof apdu, &alen),
                     OTA_ERR_STATE);
    ck_assert_int_eq(s.active, 1);
    dfc_cmd_clear(&c);
    ck_assert_int_eq(c.state, DFC_CMD_IDLE);
    dfc_session_clear(&s);
    ck_assert_int_eq(s.active, 0);
    ck_assert_mem_eq(s.key, zero24, 24);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("desfire_session");
    TCase *ta = tcase_create("auth"), *tc = tcase_create("commands");

    tcase_add_test(ta, test_auth_all_ciphers);
    tcase_add_test(ta, test_auth_refusals);
    tcase_add_test(tc, test_unauthenticated_plain);
    tcase_add_test(tc, test_maced_answer_and_tamper);
    tcase_add_test(tc, test_maced_command);
    tcase_add_test(tc, test_enc_write_two_frames);
    tcase_add_test(tc, test_long_answers);
    tcase_add_test(tc, test_enc_answer_refusals);
    tcase_add_test(tc, test_frame_refusals);
    tcase_add_test(tc, test_sending_refusals);
    tcase_add_test(tc, test_changekey);
    tcase_add_test(tc, test_finished_command_leaves_session);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, ta);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
