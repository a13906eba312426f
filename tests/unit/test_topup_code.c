/* Tests for common/topup_code.c: the display format, 80 bits of entropy,
 * normalization of what people type, and the check character, which must
 * catch every single-character substitution and every transposition of
 * two adjacent characters (tested exhaustively over all such errors on
 * many codes), and the keyed hash. */
#include <check.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_err.h"
#include "topup_code.h"

static const char ALPHA[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* A fresh code in normalized form. */
static void fresh_norm(char norm[CODE_NORM_LEN + 1])
{
    char disp[CODE_DISPLAY_LEN + 1];
    ck_assert_int_eq(code_generate(disp, sizeof disp), OTA_OK);
    ck_assert_int_eq(code_normalize(disp, norm, CODE_NORM_LEN + 1), OTA_OK);
}

START_TEST(display_format)
{
    for (int n = 0; n < 200; n++) {
        char d[CODE_DISPLAY_LEN + 1];
        ck_assert_int_eq(code_generate(d, sizeof d), OTA_OK);
        ck_assert_uint_eq(strlen(d), CODE_DISPLAY_LEN);
        for (size_t i = 0; i < CODE_DISPLAY_LEN; i++) {
            if (i == 4 || i == 9 || i == 14 || i == 19)
                ck_assert_msg(d[i] == '-', "dash expected at %zu in %s", i, d);
            else
                ck_assert_msg(d[i] != '\0' && strchr(ALPHA, d[i]) != NULL,
                              "bad character at %zu in %s", i, d);
        }
    }
    char small[CODE_DISPLAY_LEN];
    ck_assert_int_eq(code_generate(small, sizeof small), OTA_ERR_INVAL);
}
END_TEST

/* Each of the 80 data bits takes both values, and codes do not repeat:
 * a generator with fewer random bits (or a constant one) fails this. */
START_TEST(entropy_80_bits)
{
    enum { N = 2000 };
    static char seen[N][CODE_NORM_LEN + 1];
    unsigned ones[80] = {0};
    for (int n = 0; n < N; n++) {
        fresh_norm(seen[n]);
        for (int j = 0; j < CODE_DATA_CHARS; j++) {
            unsigned v = (unsigned)(strchr(ALPHA, seen[n][j]) - ALPHA);
            for (int b = 0; b < 5; b++)
                ones[j * 5 + b] += (v >> (4 - b)) & 1u;
        }
    }
    for (int b = 0; b < 80; b++)
        ck_assert_msg(ones[b] > N / 2 - N / 8 && ones[b] < N / 2 + N / 8,
                      "bit %d is set in %u of %d codes", b, ones[b], N);
    for (int a = 0; a < N; a++)
        for (int b = a + 1; b < N; b++)
            ck_assert_msg(strcmp(seen[a], seen[b]) != 0, "repeated code");
    /* 16 symbols of 32 values: 80 bits. */
    ck_assert_int_ge(CODE_DATA_CHARS * 5, 80);
}
END_TEST

START_TEST(normalization)
{
    char norm[CODE_NORM_LEN + 1], disp[CODE_DISPLAY_LEN + 1], typed[64], out[CODE_NORM_LEN + 1];
    ck_assert_int_eq(code_generate(disp, sizeof disp), OTA_OK);
    ck_assert_int_eq(code_normalize(disp, norm, sizeof norm), OTA_OK);
    ck_assert_uint_eq(strlen(norm), CODE_NORM_LEN);
    ck_assert_ptr_null(strchr(norm, '-'));

    /* Lower case, spaces instead of dashes, no separators at all. */
    size_t o = 0;
    for (const char *p = disp; *p; p++)
        typed[o++] = *p == '-' ? ' ' : (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    typed[o] = '\0';
    ck_assert_int_eq(code_normalize(typed, out, sizeof out), OTA_OK);
    ck_assert_str_eq(out, norm);
    ck_assert_int_eq(code_normalize(norm, out, sizeof out), OTA_OK);
    ck_assert_str_eq(out, norm);

    /* I and L read as 1, O as 0. */
    char ones[CODE_NORM_LEN + 1];
    do
        fresh_norm(ones);
    while (strchr(ones, '1') == NULL && strchr(ones, '0') == NULL);
    strcpy(typed, ones);
    for (char *p = typed; *p; p++)
        if (*p == '1')
            *p = (p - typed) % 2 ? 'I' : 'l';
        else if (*p == '0')
            *p = (p - typed) % 2 ? 'O' : 'o';
    ck_assert_int_eq(code_normalize(typed, out, sizeof out), OTA_OK);
    ck_assert_str_eq(out, ones);

    /* Wrong length, bad characters, U (not in the alphabet), small buffer. */
    ck_assert_int_eq(code_normalize("", out, sizeof out), OTA_ERR_PARSE);
    strcpy(typed, norm);
    typed[CODE_NORM_LEN - 1] = '\0';
    ck_assert_int_eq(code_normalize(typed, out, sizeof out), OTA_ERR_PARSE);
    snprintf(typed, sizeof typed, "%sA", norm);
    ck_assert_int_eq(code_normalize(typed, out, sizeof out), OTA_ERR_PARSE);
    strcpy(typed, norm);
    typed[3] = 'U';
    ck_assert_int_eq(code_normalize(typed, out, sizeof out), OTA_ERR_PARSE);
    typed[3] = '*';
    ck_assert_int_eq(code_normalize(typed, out, sizeof out), OTA_ERR_PARSE);
    typed[3] = '_';
    ck_assert_int_eq(code_normalize(typed, out, sizeof out), OTA_ERR_PARSE);
    ck_assert_int_eq(code_normalize(norm, out, CODE_NORM_LEN), OTA_ERR_INVAL);
}
END_TEST

/* Every single-character substitution (each position, each of the 31
 * other symbols) and every swap of two adjacent different characters,
 * check character included, on many codes. */
START_TEST(check_catches_substitutions_and_transpositions)
{
    unsigned long subs = 0, swaps = 0;
    for (int n = 0; n < 300; n++) {
        char norm[CODE_NORM_LEN + 1], bad[CODE_NORM_LEN + 1], out[CODE_NORM_LEN + 1];
        fresh_norm(norm);
        for (int i = 0; i < CODE_NORM_LEN; i++) {
            for (int s = 0; s < 32; s++) {
                if (ALPHA[s] == norm[i])
                    continue;
                strcpy(bad, norm);
                bad[i] = ALPHA[s];
                ck_assert_msg(code_normalize(bad, out, sizeof out) == OTA_ERR_MAC,
                              "substitution at %d not caught", i);
                subs++;
            }
        }
        for (int i = 0; i + 1 < CODE_NORM_LEN; i++) {
            if (norm[i] == norm[i + 1])
                continue;
            strcpy(bad, norm);
            bad[i] = norm[i + 1];
            bad[i + 1] = norm[i];
            ck_assert_msg(code_normalize(bad, out, sizeof out) == OTA_ERR_MAC,
                          "transposition at %d not caught", i);
            swaps++;
        }
    }
    ck_assert_uint_eq(subs, 300ul * CODE_NORM_LEN * 31);
    ck_assert_uint_gt(swaps, 300ul * 15);
}
END_TEST

/* The check is linear, so an error is caught on every code iff it is
 * caught on one: this walks every error pattern of both kinds on the code
 * 0000000000000000 + its check, i.e. a proof over all codes. */
START_TEST(check_exhaustive_error_patterns)
{
    char zero[CODE_NORM_LEN + 1], out[CODE_NORM_LEN + 1], bad[CODE_NORM_LEN + 1];
    memset(zero, '0', CODE_NORM_LEN);
    zero[CODE_NORM_LEN] = '\0';
    ck_assert_int_eq(code_normalize(zero, out, sizeof out), OTA_OK);
    for (int i = 0; i < CODE_NORM_LEN; i++)
        for (int d = 1; d < 32; d++) {
            strcpy(bad, zero);
            bad[i] = ALPHA[d];
            ck_assert_int_eq(code_normalize(bad, out, sizeof out), OTA_ERR_MAC);
        }
    /* A transposition of a and b adds (w_i + w_{i+1}) * (a xor b): the same
     * as the pattern d, d at positions i, i+1 on the zero code. */
    for (int i = 0; i + 1 < CODE_NORM_LEN; i++)
        for (int d = 1; d < 32; d++) {
            strcpy(bad, zero);
            bad[i] = ALPHA[d];
            bad[i + 1] = ALPHA[d];
            ck_assert_int_eq(code_normalize(bad, out, sizeof out), OTA_ERR_MAC);
        }
}
END_TEST

START_TEST(hash_is_keyed_hmac_sha256)
{
    uint8_t key[CODE_HMAC_KEY_LEN], key2[CODE_HMAC_KEY_LEN];
    uint8_t h1[CODE_HASH_LEN], h2[CODE_HASH_LEN], h3[CODE_HASH_LEN], ref[CODE_HASH_LEN];
    char norm[CODE_NORM_LEN + 1], other[CODE_NORM_LEN + 1];
    randombytes_buf(key, sizeof key);
    memcpy(key2, key, sizeof key2);
    key2[0] ^= 1;
    fresh_norm(norm);
    fresh_norm(other);
    code_hash(key, norm, h1);
    crypto_auth_hmacsha256(ref, (const unsigned char *)norm, strlen(norm), key);
    ck_assert_mem_eq(h1, ref, sizeof ref);
    code_hash(key2, norm, h2);
    ck_assert_int_ne(memcmp(h1, h2, sizeof h1), 0);
    code_hash(key, other, h3);
    ck_assert_int_ne(memcmp(h1, h3, sizeof h1), 0);
    /* RFC 4231 test case 2 (HMAC pads a short key with zeros, so "Jefe"
     * padded to 32 bytes is the same key): the primitive is HMAC-SHA-256. */
    static const uint8_t jefe[CODE_HMAC_KEY_LEN] = {'J', 'e', 'f', 'e'};
    static const uint8_t rfc[CODE_HASH_LEN] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e,
                                               0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
                                               0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83,
                                               0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    code_hash(jefe, "what do ya want for nothing?", h3);
    ck_assert_mem_eq(h3, rfc, sizeof rfc);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("topup_code");
    TCase *t = tcase_create("core");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, display_format);
    tcase_add_test(t, entropy_80_bits);
    tcase_add_test(t, normalization);
    tcase_add_test(t, check_catches_substitutions_and_transpositions);
    tcase_add_test(t, check_exhaustive_error_patterns);
    tcase_add_test(t, hash_is_keyed_hmac_sha256);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    if (sodium_init() < 0)
        return EXIT_FAILURE;
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
