/* test_desfire_crypto: unit tests of the DESFire block-cipher primitives,
 * CMAC, CRCs, AN10922 and the secret helpers (known answers from FIPS-197,
 * FIPS 46/SP 800-67, the CRC catalogue, plus the structural properties the
 * EV1 rules rely on: running IV, in-place CBC, exact length refusals). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "desfire_crypto.h"
#include "hex.h"
#include "ota_err.h"

static void unhex(const char *s, uint8_t *out, size_t n)
{
    ck_assert_int_eq(hex_decode(s, strlen(s), out, n), (int)n);
}

START_TEST(test_sizes)
{
    ck_assert_uint_eq(dfc_block_size(DFC_AES128), 16);
    ck_assert_uint_eq(dfc_block_size(DFC_TDES2), 8);
    ck_assert_uint_eq(dfc_block_size(DFC_TDES3), 8);
    ck_assert_uint_eq(dfc_key_size(DFC_AES128), 16);
    ck_assert_uint_eq(dfc_key_size(DFC_TDES2), 16);
    ck_assert_uint_eq(dfc_key_size(DFC_TDES3), 24);
    ck_assert_uint_eq(dfc_key_size((enum dfc_cipher)7), 0);
}
END_TEST

START_TEST(test_block_known_answers)
{
    uint8_t key[24], in[16], out[16], want[16], back[16];

    /* FIPS-197 C.1 */
    unhex("000102030405060708090a0b0c0d0e0f", key, 16);
    unhex("00112233445566778899aabbccddeeff", in, 16);
    unhex("69c4e0d86a7b0430d8cdb78070b4c55a", want, 16);
    ck_assert_int_eq(dfc_block_encrypt(DFC_AES128, key, in, out), 0);
    ck_assert_mem_eq(out, want, 16);
    ck_assert_int_eq(dfc_block_decrypt(DFC_AES128, key, out, back), 0);
    ck_assert_mem_eq(back, in, 16);

    /* Single DES as 2-key TDEA with K1 == K2 ("Now is t"). */
    unhex("0123456789abcdef0123456789abcdef", key, 16);
    unhex("4e6f772069732074", in, 8);
    unhex("3fa40e8a984d4815", want, 8);
    ck_assert_int_eq(dfc_block_encrypt(DFC_TDES2, key, in, out), 0);
    ck_assert_mem_eq(out, want, 8);
    ck_assert_int_eq(dfc_block_decrypt(DFC_TDES2, key, out, back), 0);
    ck_assert_mem_eq(back, in, 8);

    /* SP 800-67 3-key example ("The qufc"). */
    unhex("0123456789abcdef23456789abcdef01456789abcdef0123", key, 24);
    memcpy(in, "The qufc", 8);
    unhex("a826fd8ce53b855f", want, 8);
    ck_assert_int_eq(dfc_block_encrypt(DFC_TDES3, key, in, out), 0);
    ck_assert_mem_eq(out, want, 8);
    ck_assert_int_eq(dfc_block_decrypt(DFC_TDES3, key, out, back), 0);
    ck_assert_mem_eq(back, in, 8);
}
END_TEST

/* CBC = XOR with the previous block, then the block cipher; iv ends as
 * the last ciphertext block both ways (the EV1 running-IV rule). */
static void cbc_case(enum dfc_cipher c)
{
    size_t bs = dfc_block_size(c), i;
    uint8_t key[24], iv0[16], iv[16], in[48], out[48], back[48], x[16], blk[16];

    for (i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(0x11 * i + 3);
    for (i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)i;
    for (i = 0; i < sizeof iv0; i++)
        iv0[i] = (uint8_t)(0xA0 + i);
    memcpy(iv, iv0, bs);
    ck_assert_int_eq(dfc_cbc_encrypt(c, key, iv, in, out, 3 * bs), 0);
    ck_assert_mem_eq(iv, out + 2 * bs, bs);
    memcpy(x, iv0, bs);
    for (i = 0; i < 3; i++) {
        size_t j;
        for (j = 0; j < bs; j++)
            x[j] ^= in[i * bs + j];
        ck_assert_int_eq(dfc_block_encrypt(c, key, x, blk), 0);
        ck_assert_mem_eq(blk, out + i * bs, bs);
        memcpy(x, blk, bs);
    }
    memcpy(iv, iv0, bs);
    ck_assert_int_eq(dfc_cbc_decrypt(c, key, iv, out, back, 3 * bs), 0);
    ck_assert_mem_eq(back, in, 3 * bs);
    ck_assert_mem_eq(iv, out + 2 * bs, bs);
    /* In place, both ways. */
    memcpy(back, in, 3 * bs);
    memcpy(iv, iv0, bs);
    ck_assert_int_eq(dfc_cbc_encrypt(c, key, iv, back, back, 3 * bs), 0);
    ck_assert_mem_eq(back, out, 3 * bs);
    memcpy(iv, iv0, bs);
    ck_assert_int_eq(dfc_cbc_decrypt(c, key, iv, back, back, 3 * bs), 0);
    ck_assert_mem_eq(back, in, 3 * bs);
    ck_assert_mem_eq(iv, out + 2 * bs, bs);
    /* Lengths that are not whole blocks are refused and leave iv alone. */
    memcpy(iv, iv0, bs);
    ck_assert_int_eq(dfc_cbc_encrypt(c, key, iv, in, out, bs + 1), OTA_ERR_LENGTH);
    ck_assert_int_eq(dfc_cbc_decrypt(c, key, iv, in, out, 0), OTA_ERR_LENGTH);
    ck_assert_mem_eq(iv, iv0, bs);
}

START_TEST(test_cbc)
{
    cbc_case(DFC_AES128);
    cbc_case(DFC_TDES2);
    cbc_case(DFC_TDES3);
}
END_TEST

/* OpenSSL's own CMAC (EVP_MAC) of msg with a zero IV: the reference. */
static void openssl_cmac(const char *cipher, const uint8_t *key, size_t klen, const uint8_t *msg,
                         size_t len, uint8_t *mac, size_t bs)
{
    EVP_MAC *m = EVP_MAC_fetch(NULL, "CMAC", NULL);
    ck_assert_ptr_nonnull(m);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(m);
    ck_assert_ptr_nonnull(ctx);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, (char *)cipher, 0),
        OSSL_PARAM_construct_end()};
    size_t out = 0;
    ck_assert_int_eq(EVP_MAC_init(ctx, key, klen, params), 1);
    ck_assert_int_eq(EVP_MAC_update(ctx, msg, len), 1);
    ck_assert_int_eq(EVP_MAC_final(ctx, mac, &out, bs), 1);
    ck_assert_uint_eq(out, bs);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
}

/* Long messages (the full blocks are enciphered in chunks of several
 * blocks per cipher pass): every length up to 40 blocks and past several
 * chunk boundaries agrees with OpenSSL's CMAC, for AES and both TDEAs. */
START_TEST(test_cmac_long_messages)
{
    static const struct {
        enum dfc_cipher c;
        const char *name;
        size_t klen;
    } ciphers[] = {{DFC_AES128, "AES-128-CBC", 16},
                   {DFC_TDES2, "DES-EDE-CBC", 16},
                   {DFC_TDES3, "DES-EDE3-CBC", 24}};
    uint8_t key[24], msg[640], a[16], b[16];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(0x31 * i + 5);
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 13 + 1);
    for (size_t k = 0; k < sizeof ciphers / sizeof ciphers[0]; k++) {
        size_t bs = dfc_block_size(ciphers[k].c);
        for (size_t len = 0; len <= sizeof msg && len <= 40 * bs; len += (len < 4 * bs ? 1 : 7)) {
            ck_assert_int_eq(dfc_cmac(ciphers[k].c, key, NULL, msg, len, a), 0);
            openssl_cmac(ciphers[k].name, key, ciphers[k].klen, msg, len, b, bs);
            ck_assert_msg(memcmp(a, b, bs) == 0, "cipher %zu length %zu", k, len);
        }
    }
}
END_TEST

START_TEST(test_cmac_running_iv)
{
    uint8_t key[16], iv[16], m[16], x[16], a[16], b[16];
    size_t i;

    unhex("2b7e151628aed2a6abf7158809cf4f3c", key, 16);
    for (i = 0; i < 16; i++) {
        iv[i] = (uint8_t)(i * 7);
        m[i] = (uint8_t)(0xF0 - i);
        x[i] = iv[i] ^ m[i];
    }
    /* One full block: the chain from iv equals a zero-IV CMAC of iv ^ M. */
    ck_assert_int_eq(dfc_cmac(DFC_AES128, key, iv, m, 16, a), 0);
    ck_assert_int_eq(dfc_cmac(DFC_AES128, key, NULL, x, 16, b), 0);
    ck_assert_mem_eq(a, b, 16);
    /* iv and mac may alias (the session updates its IV in place). */
    ck_assert_int_eq(dfc_cmac(DFC_AES128, key, iv, m, 16, iv), 0);
    ck_assert_mem_eq(iv, a, 16);
    /* A zero IV equals no IV. */
    memset(iv, 0, sizeof iv);
    ck_assert_int_eq(dfc_cmac(DFC_AES128, key, iv, m, 5, a), 0);
    ck_assert_int_eq(dfc_cmac(DFC_AES128, key, NULL, m, 5, b), 0);
    ck_assert_mem_eq(a, b, 16);
    ck_assert_int_eq(dfc_cmac(DFC_AES128, key, NULL, NULL, 3, a), OTA_ERR_INVAL);
    ck_assert_int_eq(dfc_cmac(DFC_AES128, key, NULL, NULL, 0, a), 0);
}
END_TEST

START_TEST(test_crc)
{
    const uint8_t *s = (const uint8_t *)"123456789";
    uint8_t le[4], z[2] = {0, 0};

    ck_assert_uint_eq(dfc_crc32(s, 9), 0x340BC6D9u);
    ck_assert_uint_eq(dfc_crc32(s, 9) ^ 0xFFFFFFFFu, 0xCBF43926u); /* zlib's crc32 */
    ck_assert_uint_eq(dfc_crc32(NULL, 0), 0xFFFFFFFFu);
    ck_assert_uint_eq(dfc_crc32_update(dfc_crc32(s, 4), s + 4, 5), 0x340BC6D9u);
    dfc_put_le32(le, 0x6BE6C6D2u);
    ck_assert_uint_eq(le[0], 0xD2);
    ck_assert_uint_eq(le[3], 0x6B);
    ck_assert_uint_eq(dfc_get_le32(le), 0x6BE6C6D2u);
    ck_assert_uint_eq(dfc_crc16(s, 9), 0xBF05);
    ck_assert_uint_eq(dfc_crc16(z, 2), 0x1EA0); /* ISO 14443-3 Annex B: 00 00 -> A0 1E */
}
END_TEST

START_TEST(test_an10922_limits)
{
    uint8_t key[24] = {0}, m[40], out[24], d[32], k1[16], k2[16], iv[16] = {0}, want[16];
    size_t i;

    for (i = 0; i < sizeof m; i++)
        m[i] = (uint8_t)(i + 1);
    ck_assert_int_eq(dfc_an10922_aes128(key, m, 0, out), OTA_ERR_LENGTH);
    ck_assert_int_eq(dfc_an10922_aes128(key, m, 32, out), OTA_ERR_LENGTH);
    ck_assert_int_eq(dfc_an10922_tdes(DFC_TDES2, key, m, 16, out), OTA_ERR_LENGTH);
    ck_assert_int_eq(dfc_an10922_tdes(DFC_AES128, key, m, 5, out), OTA_ERR_INVAL);
    /* Exactly two blocks (31 bytes of M): K1, no padding. */
    ck_assert_int_eq(dfc_an10922_aes128(key, m, 31, out), 0);
    ck_assert_int_eq(dfc_cmac_subkeys(DFC_AES128, key, NULL, k1, k2), 0);
    d[0] = 0x01;
    memcpy(d + 1, m, 31);
    for (i = 0; i < 16; i++)
        d[16 + i] ^= k1[i];
    ck_assert_int_eq(dfc_cbc_encrypt(DFC_AES128, key, iv, d, d, 32), 0);
    memcpy(want, d + 16, 16);
    ck_assert_mem_eq(out, want, 16);
    /* 15 bytes of M is the longest TDEA input; 3TDEA gives 24 bytes. */
    ck_assert_int_eq(dfc_an10922_tdes(DFC_TDES3, key, m, 15, out), 0);
    ck_assert_int_eq(dfc_an10922_tdes(DFC_TDES2, key, m, 15, out), 0);
}
END_TEST

START_TEST(test_secret_helpers)
{
    uint8_t a[32], b[32], z[32] = {0};

    dfc_random(a, sizeof a);
    dfc_random(b, sizeof b);
    ck_assert(memcmp(a, b, sizeof a) != 0);
    ck_assert(memcmp(a, z, sizeof a) != 0);
    ck_assert_int_eq(dfc_ct_equal(a, a, sizeof a), 1);
    memcpy(b, a, sizeof a);
    b[31] ^= 1;
    ck_assert_int_eq(dfc_ct_equal(a, b, sizeof a), 0);
    ck_assert_int_eq(dfc_ct_equal(a, b, 31), 1);
    dfc_wipe(a, sizeof a);
    ck_assert_mem_eq(a, z, sizeof a);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("desfire_crypto");
    TCase *tc = tcase_create("primitives");

    tcase_add_test(tc, test_sizes);
    tcase_add_test(tc, test_block_known_answers);
    tcase_add_test(tc, test_cbc);
    tcase_add_test(tc, test_cmac_long_messages);
    tcase_add_test(tc, test_cmac_running_iv);
    tcase_add_test(tc, test_crc);
    tcase_add_test(tc, test_an10922_limits);
    tcase_add_test(tc, test_secret_helpers);
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
