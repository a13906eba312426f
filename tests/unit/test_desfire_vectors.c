/* test_desfire_vectors: reproduces every entry of every public vector file
 * (tests/vectors/\*.json) with the DESFire core: primitives directly,
 * handshakes through dfc_auth, whole sessions through dfc_auth / dfc_cmd /
 * dfc_cmd_start_changekey with one running session, every produced frame
 * compared byte for byte.  An entry of an unknown type fails the test. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "desfire_apdu.h"
#include "desfire_auth.h"
#include "desfire_crypto.h"
#include "desfire_session.h"
#include "ota_err.h"
#include "vectors.h"

#define EXPECTED_ENTRIES 70
#define MAX_FRAMES 24
#define BIG 1024

struct frames {
    uint8_t b[MAX_FRAMES][80];
    size_t n[MAX_FRAMES];
    size_t count;
};

static int g_replay_framing; /* trace steps that needed a framing override */

static void hexs(const uint8_t *p, size_t n, char *out, size_t cap)
{
    size_t i;

    out[0] = '\0';
    for (i = 0; i < n && 2 * i + 3 <= cap; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static void expect_bytes(const char *id, const char *what, const uint8_t *got, size_t glen,
                         const uint8_t *want, size_t wlen)
{
    char g[2 * BIG + 1], w[2 * BIG + 1];

    if (glen == wlen && memcmp(got, want, glen) == 0)
        return;
    hexs(got, glen, g, sizeof g);
    hexs(want, wlen, w, sizeof w);
    ck_abort_msg("%s: %s\n  got  %s\n  want %s", id, what, g, w);
}

/* Compares field key (when present) with got. */
static int check_field(const json_t *e, const char *key, const char *id, const uint8_t *got,
                       size_t glen)
{
    uint8_t want[BIG];
    int n = vec_hex(e, key, want, sizeof want);

    ck_assert_msg(n != VEC_BAD, "%s: field %s is not hex", id, key);
    if (n == VEC_ABSENT)
        return 0;
    expect_bytes(id, key, got, glen, want, (size_t)n);
    return 1;
}

static size_t need_hex(const json_t *e, const char *key, const char *id, uint8_t *out, size_t cap)
{
    int n = vec_hex(e, key, out, cap);

    ck_assert_msg(n >= 0, "%s: field %s missing or bad", id, key);
    return (size_t)n;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void load_frames(const json_t *e, const char *key, const char *id, struct frames *f)
{
    const json_t *arr = json_object_get(e, key), *v;
    size_t i;
    int n;

    f->count = 0;
    if (arr == NULL)
        return;
    ck_assert_msg(json_is_array(arr), "%s: %s not an array", id, key);
    ck_assert_msg(json_array_size(arr) <= MAX_FRAMES, "%s: too many frames", id);
    json_array_foreach(arr, i, v)
    {
        n = vec_hex_value(v, f->b[i], sizeof f->b[i]);
        ck_assert_msg(n >= 1, "%s: bad frame %zu in %s", id, i, key);
        f->n[i] = (size_t)n;
    }
    f->count = json_array_size(arr);
}

/* Native command frame INS||data -> ISO 7816-4 APDU. */
static size_t iso_cmd(const uint8_t *nat, size_t n, uint8_t *out, size_t cap)
{
    size_t len = 0;

    ck_assert_int_eq(dfc_apdu_build(nat[0], nat + 1, n - 1, out, cap, &len), 0);
    return len;
}

/* Native answer status||data -> data||91||status. */
static size_t iso_resp(const uint8_t *nat, size_t n, uint8_t *out)
{
    memcpy(out, nat + 1, n - 1);
    out[n - 1] = 0x91;
    out[n] = nat[0];
    return n + 1;
}

static void expect_apdu(const char *id, const char *what, const uint8_t *apdu, size_t alen,
                        const uint8_t *nat, size_t nlen)
{
    uint8_t want[128];
    size_t wl = iso_cmd(nat, nlen, want, sizeof want);

    expect_bytes(id, what, apdu, alen, want, wl);
}

/* ---- primitives ---- */

static enum dfc_cipher cmac_cipher(const json_t *e, size_t klen, const char *id)
{
    const char *c = vec_str(e, "cipher");

    if (c == NULL || strcmp(c, "aes128") == 0) {
        ck_assert_msg(klen == 16, "%s: AES key length", id);
        return DFC_AES128;
    }
    ck_assert_msg(strcmp(c, "tdea") == 0 || strcmp(c, "2tdea") == 0 || strcmp(c, "3tdea") == 0,
                  "%s: unknown cipher %s", id, c);
    ck_assert_msg(klen == 16 || klen == 24, "%s: TDEA key length", id);
    return klen == 16 ? DFC_TDES2 : DFC_TDES3;
}

static void run_cmac(const json_t *e, const char *id)
{
    uint8_t key[32], k0[16], k1[16], k2[16], iv[16], msg[BIG], mac[16], odd[8];
    size_t klen = need_hex(e, "key", id, key, sizeof key), bs, i;
    enum dfc_cipher c = cmac_cipher(e, klen, id);
    int n, mlen, checked = 0;

    bs = dfc_block_size(c);
    ck_assert_int_eq(dfc_cmac_subkeys(c, key, k0, k1, k2), 0);
    checked += check_field(e, "k0", id, k0, bs);
    checked += check_field(e, "k1", id, k1, bs);
    checked += check_field(e, "k2", id, k2, bs);
    mlen = vec_hex(e, "msg", msg, sizeof msg);
    ck_assert(mlen != VEC_BAD);
    if (mlen >= 0) {
        n = vec_hex(e, "iv", iv, sizeof iv);
        ck_assert(n == VEC_ABSENT || (size_t)n == bs);
        ck_assert_int_eq(dfc_cmac(c, key, n == VEC_ABSENT ? NULL : iv, msg, (size_t)mlen, mac), 0);
        checked += check_field(e, "cmac", id, mac, bs);
        checked += check_field(e, "mac_ev1_first8", id, mac, 8);
        for (i = 0; i < 8; i++)
            odd[i] = mac[2 * i + 1];
        checked += check_field(e, "mac_ev2_odd_bytes", id, odd, 8);
    }
    ck_assert_msg(checked > 0, "%s: nothing to check", id);
}

static void run_crc32(const json_t *e, const char *id)
{
    uint8_t data[BIG], le[4], v[4];
    size_t n = need_hex(e, "data", id, data, sizeof data);
    uint32_t crc = dfc_crc32(data, n);
    int checked = 0;

    dfc_put_le32(le, crc);
    checked += check_field(e, "crc_le", id, le, 4);
    if (vec_hex(e, "crc_value", v, sizeof v) == 4) {
        ck_assert_msg(be32(v) == crc, "%s: crc_value %08x, got %08x", id, be32(v), crc);
        checked++;
    }
    if (vec_hex(e, "standard_crc32_value", v, sizeof v) == 4) {
        ck_assert_msg(be32(v) == (crc ^ 0xFFFFFFFFu), "%s: standard CRC32", id);
        checked++;
    }
    ck_assert_int_eq(dfc_get_le32(le), crc);
    ck_assert_msg(checked > 0, "%s: nothing to check", id);
}

/* The non-compliant variant the negative entries were made with: plain
 * CMAC padding (to one block) instead of AN10922's two blocks. */
static void an10922_wrong_padding(const uint8_t *master, const uint8_t *m, size_t mlen,
                                  uint8_t *out)
{
    uint8_t d[64];

    d[0] = 0x01;
    memcpy(d + 1, m, mlen);
    ck_assert_int_eq(dfc_cmac(DFC_AES128, master, NULL, d, 1 + mlen, out), 0);
}

/* AES-192 is outside the core (no DESFire EV1 key type); the one entry
 * that uses it is reproduced with OpenSSL here, AN10922 padding included. */
static void aes192_block(const uint8_t *key, const uint8_t *in, uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0;

    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(EVP_EncryptInit_ex(ctx, EVP_aes_192_ecb(), NULL, key, NULL), 1);
    EVP_CIPHER_CTX_set_padding(ctx, 0);
    ck_assert_int_eq(EVP_EncryptUpdate(ctx, out, &l1, in, 16), 1);
    ck_assert_int_eq(EVP_EncryptFinal_ex(ctx, out + l1, &l2), 1);
    ck_assert_int_eq(l1 + l2, 16);
    EVP_CIPHER_CTX_free(ctx);
}

static void dbl(const uint8_t *in, uint8_t *out)
{
    int i;

    for (i = 0; i < 15; i++)
        out[i] = (uint8_t)(in[i] << 1 | in[i + 1] >> 7);
    out[15] = (uint8_t)(in[15] << 1 ^ ((in[0] & 0x80) ? 0x87 : 0));
}

static void run_aes192_first(const json_t *e, const char *id, const uint8_t *m, size_t mlen)
{
    uint8_t key[24], zero[16] = {0}, k0[16], k1[16], k2[16], d[32] = {0}, x[16] = {0};
    size_t i, j;

    ck_assert_int_eq(need_hex(e, "master_key", id, key, sizeof key), 24);
    aes192_block(key, zero, k0);
    dbl(k0, k1);
    dbl(k1, k2);
    check_field(e, "k0", id, k0, 16);
    check_field(e, "k1", id, k1, 16);
    check_field(e, "k2", id, k2, 16);
    ck_assert(1 + mlen < 32);
    d[0] = 0x11;
    memcpy(d + 1, m, mlen);
    d[1 + mlen] = 0x80;
    for (j = 0; j < 16; j++)
        d[16 + j] ^= k2[j];
    for (i = 0; i < 2; i++) {
        for (j = 0; j < 16; j++)
            x[j] ^= d[16 * i + j];
        aes192_block(key, x, x);
    }
    ck_assert_int_eq(check_field(e, "cmac_block1", id, x, 16), 1);
}

/* libfreefare writes the master key's version (parity bits of its bytes
 * 0..7) into the derived key: bytes 0..7 get it, bytes 8..15 its inverse. */
static void restore_version(const uint8_t *master, uint8_t *key)
{
    uint8_t ver = 0;
    int i;

    for (i = 0; i < 8; i++)
        ver = (uint8_t)(ver << 1 | (master[i] & 1));
    for (i = 0; i < 8; i++) {
        key[i] = (uint8_t)((key[i] & 0xFE) | ((ver >> (7 - i)) & 1));
        key[8 + i] = (uint8_t)((key[8 + i] & 0xFE) | ((~ver >> (7 - i)) & 1));
    }
}

static void run_an10922(const json_t *e, const char *id)
{
    uint8_t master[24], m[64], uid[16], aid[8], sys[32], out[24], k[3][16], d[32];
    uint8_t iv[16] = {0}, want[24];
    const char *alg = vec_str(e, "algorithm"), *pad = vec_str(e, "padding");
    size_t mlen, klen, j;
    int nu, na, ns, wl;

    ck_assert_ptr_nonnull(alg);
    mlen = need_hex(e, "m", id, m, sizeof m);
    nu = vec_hex(e, "uid", uid, sizeof uid);
    na = vec_hex(e, "aid", aid, sizeof aid);
    ns = vec_hex(e, "system_identifier", sys, sizeof sys);
    if (nu >= 0 && na >= 0 && ns >= 0) {
        /* M = UID || AID || system identifier */
        uint8_t cat[64];
        ck_assert((size_t)(nu + na + ns) <= sizeof cat);
        memcpy(cat, uid, (size_t)nu);
        memcpy(cat + nu, aid, (size_t)na);
        memcpy(cat + nu + na, sys, (size_t)ns);
        expect_bytes(id, "m = uid||aid||sysid", cat, (size_t)(nu + na + ns), m, mlen);
    }
    if (strcmp(alg, "aes192_first_block") == 0) {
        run_aes192_first(e, id, m, mlen);
        return;
    }
    klen = need_hex(e, "master_key", id, master, sizeof master);
    wl = (int)need_hex(e, "diversified_key", id, want, sizeof want);
    if (strcmp(alg, "aes128") == 0) {
        ck_assert_int_eq(klen, 16);
        ck_assert_int_eq(dfc_an10922_aes128(master, m, mlen, out), 0);
        if (pad != NULL) {
            /* Negative entry: the compliant code must NOT give it ... */
            ck_assert_str_eq(pad, "cmac");
            ck_assert_msg(memcmp(out, want, 16) != 0, "%s: compliant code matched", id);
            /* ... and the wrong padding must. */
            an10922_wrong_padding(master, m, mlen, out);
            expect_bytes(id, "wrong-padding key", out, 16, want, (size_t)wl);
            return;
        }
        expect_bytes(id, "diversified_key", out, 16, want, (size_t)wl);
        ck_assert_int_eq(dfc_cmac_subkeys(DFC_AES128, master, k[0], k[1], k[2]), 0);
        check_field(e, "k0", id, k[0], 16);
        check_field(e, "k1", id, k[1], 16);
        check_field(e, "k2", id, k[2], 16);
        memset(d, 0, sizeof d);
        d[0] = 0x01;
        memcpy(d + 1, m, mlen);
        check_field(e, "cmac_input", id, d, 1 + mlen);
        if (1 + mlen < 32) {
            d[1 + mlen] = 0x80;
            for (j = 0; j < 16; j++)
                d[16 + j] ^= k[2][j];
            ck_assert_int_eq(dfc_cbc_encrypt(DFC_AES128, master, iv, d, d, 32), 0);
            check_field(e, "cbc_output", id, d, 32);
            expect_bytes(id, "cbc last block", d + 16, 16, want, (size_t)wl);
        }
        return;
    }
    ck_assert_msg(pad == NULL, "%s: unexpected padding variant", id);
    if (strcmp(alg, "2tdea") == 0 || strcmp(alg, "3tdea") == 0) {
        enum dfc_cipher c = alg[0] == '2' ? DFC_TDES2 : DFC_TDES3;
        ck_assert_int_eq(klen, dfc_key_size(c));
        ck_assert_int_eq(dfc_an10922_tdes(c, master, m, mlen, out), 0);
        expect_bytes(id, "diversified_key", out, klen, want, (size_t)wl);
        check_field(e, "derived_key_1", id, out, 8);
        ck_assert_int_eq(dfc_cmac_subkeys(c, master, k[0], k[1], k[2]), 0);
        check_field(e, "k1", id, k[1], 8);
        check_field(e, "k2", id, k[2], 8);
        if (c == DFC_TDES2) {
            restore_version(master, out);
            check_field(e, "diversified_key_libfreefare_version_restored", id, out, 16);
        }
        return;
    }
    ck_abort_msg("%s: unknown algorithm %s", id, alg);
}

/* ---- handshakes ---- */

static void rotl(const uint8_t *in, uint8_t *out, size_t n)
{
    memcpy(out, in + 1, n - 1);
    out[n - 1] = in[0];
}

/* Drives dfc_auth with the entry's RndA and compares every frame. */
static void run_auth(const json_t *e, const char *id, int iso, struct dfc_session *s)
{
    uint8_t key[24], rnda[16], rndb[16], rndb_enc[16], crypt[32], resp[16], apdu[128], r[128];
    uint8_t nat[80], iv[16] = {0}, dec[16];
    struct frames tx, rx;
    struct dfc_auth a;
    enum dfc_cipher c = DFC_AES128;
    size_t klen, alen = 0, rl, n;
    long long keyno = 0;
    int cl, rc;

    klen = need_hex(e, "key", id, key, sizeof key);
    if (iso) {
        if (klen == 8) {
            memcpy(key + 8, key, 8); /* single DES = K || K */
            klen = 16;
        }
        c = klen == 16 ? DFC_TDES2 : DFC_TDES3;
    }
    ck_assert_int_eq(klen, dfc_key_size(c));
    rl = c == DFC_TDES2 ? 8 : 16;
    ck_assert_int_ne(vec_int(e, "key_no", &keyno), VEC_BAD);
    ck_assert_int_eq(need_hex(e, "rnda", id, rnda, sizeof rnda), rl);
    load_frames(e, "tx_frames", id, &tx);
    load_frames(e, "rx_frames", id, &rx);
    ck_assert(tx.count == 0 || tx.count == 2);
    ck_assert(rx.count == 0 || rx.count == 2);

    ck_assert_int_eq(dfc_auth_start(&a, c, (uint8_t)keyno, key, apdu, sizeof apdu, &alen), 0);
    nat[0] = iso ? 0x1A : 0xAA;
    nat[1] = (uint8_t)keyno;
    if (tx.count)
        expect_bytes(id, "tx frame 0 (native)", tx.b[0], tx.n[0], nat, 2);
    expect_apdu(id, "tx frame 0", apdu, alen, nat, 2);
    dfc_auth_set_rnda(&a, rnda);

    /* Card: AF || E(K, RndB). */
    if (rx.count) {
        n = rx.n[0];
        memcpy(nat, rx.b[0], n);
        check_field(e, "rndb_enc", id, nat + 1, n - 1);
    } else {
        n = 1 + need_hex(e, "rndb_enc", id, nat + 1, sizeof nat - 1);
        nat[0] = 0xAF;
    }
    memcpy(rndb_enc, nat + 1, rl);
    rc = dfc_auth_feed(&a, r, iso_resp(nat, n, r), apdu, sizeof apdu, &alen, s);
    ck_assert_msg(rc == DFC_MORE, "%s: feed 1 -> %d", id, rc);
    ck_assert_int_eq(a.state, DFC_AUTH_SENT_TOKEN);
    ck_assert_uint_eq(alen, 6 + 2 * rl);
    if (tx.count)
        expect_apdu(id, "tx frame 1", apdu, alen, tx.b[1], tx.n[1]);
    check_field(e, "reader_cryptogram", id, apdu + 5, 2 * rl);
    memcpy(crypt, apdu + 5, 2 * rl);

    /* RndB: decrypted independently (IV 0) from what the card sent. */
    ck_assert_int_eq(dfc_cbc_decrypt(c, key, iv, rndb_enc, rndb, rl), 0);
    check_field(e, "rndb", id, rndb, rl);

    /* Card: 00 || E(K, RndA'). */
    if (rx.count) {
        n = rx.n[1];
        memcpy(nat, rx.b[1], n);
        check_field(e, "card_response", id, nat + 1, n - 1);
    } else {
        n = 1 + need_hex(e, "card_response", id, nat + 1, sizeof nat - 1);
        nat[0] = 0x00;
    }
    /* The card's answer really is RndA' under IV = last block sent. */
    memcpy(iv, crypt + rl, rl);
    ck_assert_int_eq(dfc_cbc_decrypt(c, key, iv, nat + 1, resp, rl), 0);
    rotl(rnda, dec, rl);
    expect_bytes(id, "card's RndA'", resp, rl, dec, rl);

    rc = dfc_auth_feed(&a, r, iso_resp(nat, n, r), apdu, sizeof apdu, &alen, s);
    ck_assert_msg(rc == 0, "%s: feed 2 -> %d", id, rc);
    ck_assert_int_eq(a.state, DFC_AUTH_DONE);
    ck_assert_int_eq(s->active, 1);
    ck_assert_int_eq(s->cipher, c);
    ck_assert_int_eq(s->keyno, (uint8_t)keyno);
    cl = (int)dfc_key_size(c);
    ck_assert_int_eq(check_field(e, "session_key", id, s->key, (size_t)cl), 1);
    memset(iv, 0, sizeof iv);
    expect_bytes(id, "IV after auth", s->iv, dfc_block_size(c), iv, dfc_block_size(c));
    /* Secrets gone from the state machine. */
    memset(dec, 0, sizeof dec);
    expect_bytes(id, "rnda wiped", a.rnda, 16, dec, 16);
    expect_bytes(id, "rndb wiped", a.rndb, 16, dec, 16);
    dfc_auth_clear(&a);
}

/* Session key alone: a handshake with a test-side card that knows the key. */
static void run_session_key(const json_t *e, const char *id)
{
    uint8_t key[16] = {0}, rnda[16], rndb[16], nat[40], apdu[128], r[128], iv[16] = {0};
    struct dfc_session s = {0};
    struct dfc_auth a;
    size_t alen;

    ck_assert_int_eq(need_hex(e, "rnda", id, rnda, sizeof rnda), 16);
    ck_assert_int_eq(need_hex(e, "rndb", id, rndb, sizeof rndb), 16);
    ck_assert_int_eq(dfc_auth_start(&a, DFC_AES128, 0, key, apdu, sizeof apdu, &alen), 0);
    dfc_auth_set_rnda(&a, rnda);
    nat[0] = 0xAF;
    ck_assert_int_eq(dfc_cbc_encrypt(DFC_AES128, key, iv, rndb, nat + 1, 16), 0);
    ck_assert_int_eq(dfc_auth_feed(&a, r, iso_resp(nat, 17, r), apdu, sizeof apdu, &alen, &s),
                     DFC_MORE);
    memcpy(iv, apdu + 5 + 16, 16);
    nat[0] = 0x00;
    rotl(rnda, r, 16);
    ck_assert_int_eq(dfc_cbc_encrypt(DFC_AES128, key, iv, r, nat + 1, 16), 0);
    ck_assert_int_eq(dfc_auth_feed(&a, r, iso_resp(nat, 17, r), apdu, sizeof apdu, &alen, &s), 0);
    ck_assert_int_eq(check_field(e, "session_key", id, s.key, 16), 1);
}

/* ---- session traces ---- */

/* Sends the frames of one command and feeds the recorded answers. */
static void replay(const char *id, struct dfc_cmd *c, const uint8_t *apdu0, size_t alen0,
                   const struct frames *tx, const struct frames *rx)
{
    uint8_t apdu[128], r[128];
    size_t alen, i;
    int rc;

    ck_assert_msg(tx->count == rx->count && tx->count > 0, "%s: frame counts", id);
    expect_apdu(id, "tx frame 0", apdu0, alen0, tx->b[0], tx->n[0]);
    for (i = 0; i < rx->count; i++) {
        alen = 0;
        rc = dfc_cmd_feed(c, r, iso_resp(rx->b[i], rx->n[i], r), apdu, sizeof apdu, &alen);
        if (i + 1 < rx->count) {
            ck_assert_msg(rc == DFC_MORE, "%s: frame %zu -> %d (%s)", id, i, rc, ota_strerror(rc));
            expect_apdu(id, "tx frame", apdu, alen, tx->b[i + 1], tx->n[i + 1]);
        } else {
            ck_assert_msg(rc == 0, "%s: last frame -> %d (%s)", id, rc, ota_strerror(rc));
        }
    }
    ck_assert_int_eq(c->state, DFC_CMD_DONE);
}

static void step_cmd(const json_t *st, const char *id, const char *op, struct dfc_session *s)
{
    uint8_t logical[BIG], plain[BIG], apdu[128], want[BIG], ivb[16], civ[16], dec[BIG];
    uint8_t crcb[4];
    struct frames tx, rx;
    struct dfc_cmd_spec sp;
    struct dfc_cmd c;
    size_t ll, i, pl = 0, alen = 0, bs = dfc_block_size(s->cipher), acc = 0;
    int multi_cmd = 0, n;
    long long clear_len = 0;

    load_frames(st, "tx_frames", id, &tx);
    load_frames(st, "rx_frames", id, &rx);
    ck_assert(tx.count > 0 && rx.count > 0);
    ck_assert_msg(s->active, "%s: no session", id);
    memcpy(logical, tx.b[0], tx.n[0]);
    ll = tx.n[0];
    for (i = 1; i < tx.count; i++) {
        ck_assert_int_eq(tx.b[i][0], 0xAF);
        if (tx.n[i] > 1) {
            multi_cmd = 1;
            memcpy(logical + ll, tx.b[i] + 1, tx.n[i] - 1);
            ll += tx.n[i] - 1;
        }
    }
    memset(&sp, 0, sizeof sp);
    sp.ins = logical[0];
    sp.resp_comm = DFC_COMM_MAC;
    sp.resp_len = -1;
    if (multi_cmd || tx.n[0] > DFC_FRAME_MAX_CMD) {
        sp.first_frame_max = (uint8_t)tx.n[0];
        sp.next_frame_max = multi_cmd ? (uint8_t)tx.n[1] : 0;
        g_replay_framing++;
    }
    if (strcmp(op, "plain") == 0 || strcmp(op, "enc_resp") == 0) {
        sp.cmd_comm = DFC_COMM_PLAIN;
        sp.data = logical + 1;
        sp.data_len = ll - 1;
    } else if (strcmp(op, "maced") == 0) {
        ck_assert(ll >= 9);
        sp.cmd_comm = DFC_COMM_MAC;
        sp.data = logical + 1;
        sp.data_len = ll - 9;
    } else {
        ck_assert_str_eq(op, "enc_cmd");
        ck_assert_int_eq(vec_int(st, "clear_len", &clear_len), 1);
        ck_assert(clear_len >= 1 && (size_t)clear_len <= ll);
        pl = need_hex(st, "plaintext", id, plain, sizeof plain);
        sp.cmd_comm = DFC_COMM_ENC;
        sp.hdr = logical + 1;
        sp.hdr_len = (size_t)clear_len - 1;
        sp.data = plain;
        sp.data_len = pl;
        sp.resp_len = 0;
        /* crc_le: CRC32 over INS || clear header || plaintext. */
        memcpy(dec, logical, (size_t)clear_len);
        memcpy(dec + clear_len, plain, pl);
        dfc_put_le32(crcb, dfc_crc32(dec, (size_t)clear_len + pl));
        check_field(st, "crc_le", id, crcb, 4);
    }
    if (strcmp(op, "enc_resp") == 0) {
        sp.resp_comm = DFC_COMM_ENC;
        pl = need_hex(st, "plaintext", id, plain, sizeof plain);
        sp.resp_len = (int)pl;
    } else if ((n = vec_hex(st, "rx_data_plain", want, sizeof want)) >= 0) {
        sp.resp_len = n;
    }
    memcpy(ivb, s->iv, bs);

    ck_assert_int_eq(dfc_cmd_start(&c, s, &sp, apdu, sizeof apdu, &alen), 0);
    check_field(st, "tx_cmac", id, s->iv, bs);
    memcpy(civ, s->iv, bs);
    replay(id, &c, apdu, alen, &tx, &rx);
    ck_assert_int_eq(s->active, 1);
    check_field(st, "rx_cmac", id, s->iv, bs);

    if (strcmp(op, "enc_resp") == 0) {
        /* Independent decryption with IV = the command's CMAC. */
        uint8_t ct[BIG], ivx[16];
        size_t ctl = 0;
        memcpy(ivx, ivb, bs);
        ck_assert_int_eq(dfc_cmac(s->cipher, s->key, ivx, logical, ll, ivx), 0);
        expect_bytes(id, "decrypt IV = command CMAC", civ, bs, ivx, bs);
        for (i = 0; i < rx.count; i++) {
            memcpy(ct + ctl, rx.b[i] + 1, rx.n[i] - 1);
            ctl += rx.n[i] - 1;
        }
        ck_assert_int_eq(dfc_cbc_decrypt(s->cipher, s->key, ivx, ct, dec, ctl), 0);
        expect_bytes(id, "IV after enc answer", s->iv, bs, ct + ctl - bs, bs);
        expect_bytes(id, "plaintext", c.resp, c.resp_len_out, plain, pl);
        expect_bytes(id, "decrypted data", dec, pl, plain, pl);
        memcpy(want, plain, pl);
        want[pl] = 0x00;
        dfc_put_le32(crcb, dfc_crc32(want, pl + 1));
        expect_bytes(id, "CRC32(data||00)", dec + pl, 4, crcb, 4);
        ck_assert_int_eq(check_field(st, "padding", id, dec + pl + 4, ctl - pl - 4), 1);
    } else if (vec_hex(st, "rx_data_plain", want, sizeof want) >= 0) {
        check_field(st, "rx_data_plain", id, c.resp, c.resp_len_out);
    } else {
        /* Data is what the card sent, less the MAC. */
        for (i = 0; i < rx.count; i++) {
            memcpy(want + acc, rx.b[i] + 1, rx.n[i] - 1);
            acc += rx.n[i] - 1;
        }
        ck_assert(acc >= 8);
        expect_bytes(id, "answer data", c.resp, c.resp_len_out, want, acc - 8);
    }
    dfc_cmd_clear(&c);
}

static void step_changekey(const json_t *st, const char *id, struct dfc_session *s)
{
    uint8_t newk[24], oldk[24], apdu[128], v[4], buf[64];
    struct frames tx, rx;
    struct dfc_cmd c;
    size_t nl, ol = 0, alen = 0, bs = dfc_block_size(s->cipher), i, bl;
    long long keyno = 0, authno = 0, ver = 0;
    int has_ver, has_old, same, rxmac;
    const json_t *jr = json_object_get(st, "rx_mac");
    enum dfc_cipher nt;

    load_frames(st, "tx_frames", id, &tx);
    load_frames(st, "rx_frames", id, &rx);
    ck_assert_int_eq(vec_int(st, "key_no", &keyno), 1);
    if (vec_int(st, "auth_key_no", &authno) == 1)
        ck_assert_int_eq(authno, s->keyno);
    nl = need_hex(st, "new_key", id, newk, sizeof newk);
    has_ver = vec_int(st, "key_version", &ver);
    ck_assert_int_ne(has_ver, VEC_BAD);
    nt = has_ver ? DFC_AES128 : (nl == 24 ? DFC_TDES3 : DFC_TDES2);
    ck_assert_int_eq(nl, dfc_key_size(nt));
    has_old = vec_hex(st, "old_key", oldk, sizeof oldk) >= 0;
    if (has_old)
        ol = need_hex(st, "old_key", id, oldk, sizeof oldk);
    ck_assert(!has_old || ol == nl);
    same = ((uint8_t)keyno & 0x0F) == (s->keyno & 0x0F);
    ck_assert_int_eq(same, !has_old);
    check_field(st, "iv_before", id, s->iv, bs);

    /* crc_crypto / crc_new_key as printed by the source. */
    buf[0] = 0xC4;
    buf[1] = (uint8_t)keyno;
    for (i = 0; i < nl; i++)
        buf[2 + i] = (uint8_t)(newk[i] ^ (has_old ? oldk[i] : 0));
    bl = 2 + nl;
    if (has_ver)
        buf[bl++] = (uint8_t)ver;
    if (vec_hex(st, "crc_crypto", v, sizeof v) == 4)
        ck_assert_msg(be32(v) == dfc_crc32(buf, bl), "%s: crc_crypto", id);
    if (vec_hex(st, "crc_new_key", v, sizeof v) == 4)
        ck_assert_msg(be32(v) == dfc_crc32(newk, nl), "%s: crc_new_key", id);

    ck_assert_int_eq(dfc_cmd_start_changekey(&c, s, (uint8_t)keyno, nt, newk, (uint8_t)ver,
                                             has_old ? oldk : NULL, apdu, sizeof apdu, &alen),
                     0);
    replay(id, &c, apdu, alen, &tx, &rx);
    rxmac = jr != NULL ? json_is_true(jr) : !same;
    ck_assert_int_eq(rxmac, !same);
    if (same) {
        ck_assert_msg(s->active == 0, "%s: session must end", id);
    } else {
        ck_assert_int_eq(s->active, 1);
        check_field(st, "rx_cmac", id, s->iv, bs);
    }
    dfc_cmd_clear(&c);
}

static void run_trace(const json_t *e, const char *id)
{
    const json_t *steps = json_object_get(e, "steps"), *st;
    struct dfc_session s;
    char sid[256];
    const char *op;
    size_t i;

    memset(&s, 0, sizeof s);
    ck_assert_msg(json_is_array(steps) && json_array_size(steps) > 0, "%s: no steps", id);
    json_array_foreach(steps, i, st)
    {
        op = vec_str(st, "op");
        ck_assert_ptr_nonnull(op);
        snprintf(sid, sizeof sid, "%s step %zu (%s)", id, i,
                 vec_str(st, "name") ? vec_str(st, "name") : op);
        if (strcmp(op, "auth_aes") == 0 || strcmp(op, "auth_iso") == 0)
            run_auth(st, sid, op[5] == 'i', &s);
        else if (strcmp(op, "changekey") == 0)
            step_changekey(st, sid, &s);
        else if (strcmp(op, "plain") == 0 || strcmp(op, "maced") == 0 ||
                 strcmp(op, "enc_cmd") == 0 || strcmp(op, "enc_resp") == 0)
            step_cmd(st, sid, op, &s);
        else
            ck_abort_msg("%s: unknown op %s", sid, op);
    }
    dfc_session_clear(&s);
}

static void run_entry(const json_t *e)
{
    const char *id = vec_str(e, "id"), *type = vec_str(e, "type");
    struct dfc_session s;

    ck_assert_msg(id != NULL && type != NULL, "entry without id or type");
    if (strcmp(type, "aes_cmac") == 0 || strcmp(type, "cmac") == 0) {
        run_cmac(e, id);
    } else if (strcmp(type, "desfire_crc32") == 0) {
        run_crc32(e, id);
    } else if (strcmp(type, "an10922") == 0) {
        run_an10922(e, id);
    } else if (strcmp(type, "ev1_auth_aes") == 0) {
        memset(&s, 0, sizeof s);
        run_auth(e, id, 0, &s);
        dfc_session_clear(&s);
    } else if (strcmp(type, "ev1_session_key") == 0) {
        run_session_key(e, id);
    } else if (strcmp(type, "ev1_trace") == 0) {
        run_trace(e, id);
    } else {
        ck_abort_msg("%s: unknown vector type %s", id, type);
    }
}

START_TEST(test_all_vectors)
{
    char dir[4096], **names = NULL;
    int nfiles, f, total = 0;
    const json_t *entries, *e;
    json_t *root;
    size_t i;

    ck_assert_int_eq(vec_dir(dir, sizeof dir), 0);
    nfiles = vec_list(dir, &names);
    ck_assert_msg(nfiles > 0, "no vector files in %s", dir);
    for (f = 0; f < nfiles; f++) {
        root = vec_load(dir, names[f]);
        ck_assert_msg(root != NULL, "cannot load %s", names[f]);
        entries = json_object_get(root, "entries");
        json_array_foreach(entries, i, e)
        {
            run_entry(e);
            total++;
        }
        json_decref(root);
    }
    vec_list_free(names, nfiles);
    printf("vectors: %d reproduced (%d trace steps replayed with the recorded framing)\n", total,
           g_replay_framing);
    ck_assert_int_eq(total, EXPECTED_ENTRIES);
}
END_TEST

/* The shared copies (when present) must be the same bytes as ours. */
START_TEST(test_shared_copies_identical)
{
    char dir[4096], shared[4096], pa[8192], pb[8192], **names = NULL, **snames = NULL;
    const char *src = getenv("OTA_SRCDIR");
    int n, sn, i, found = 0;
    size_t la, lb;
    uint8_t *a, *b;

    ck_assert_int_eq(vec_dir(dir, sizeof dir), 0);
    snprintf(shared, sizeof shared, "/work/shared/vectors");
    if (access(shared, R_OK) != 0 && src != NULL)
        snprintf(shared, sizeof shared, "%s/../shared/vectors", src);
    if (access(shared, R_OK) != 0) {
        printf("shared vectors: not present, nothing to compare\n");
        return;
    }
    n = vec_list(dir, &names);
    sn = vec_list(shared, &snames);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(n, sn);
    for (i = 0; i < n; i++) {
        ck_assert_str_eq(names[i], snames[i]);
        snprintf(pa, sizeof pa, "%s/%s", dir, names[i]);
        snprintf(pb, sizeof pb, "%s/%s", shared, names[i]);
        a = vec_read_file(pa, &la);
        b = vec_read_file(pb, &lb);
        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(b);
        ck_assert_msg(la == lb && memcmp(a, b, la) == 0, "%s differs from %s", pa, pb);
        free(a);
        free(b);
        found++;
    }
    printf("shared vectors: %d files identical\n", found);
    vec_list_free(names, n);
    vec_list_free(snames, sn);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("desfire_vectors");
    TCase *tc = tcase_create("vectors");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_all_vectors);
    tcase_add_test(tc, test_shared_copies_identical);
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
