/* test_sim_frames: the simulator's ISO 7816-4 wrapping and native frame
 * layer: class and length checks, PC/SC GET DATA, the 55-byte command frame
 * limit, AF chaining of commands and answers, GetVersion's three frames,
 * interrupted chains, unknown commands. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "desfire_crypto.h"
#include "ota_err.h"
#include "sim_card.h"
#include "test_sim_util.h"

static void sw(struct sim_card *c, const uint8_t *apdu, size_t len, uint8_t sw1, uint8_t sw2)
{
    uint8_t r[64];
    size_t rl = ts_apdu(c, apdu, len, r);
    ck_assert_uint_eq(rl, 2);
    ck_assert_uint_eq(r[0], sw1);
    ck_assert_uint_eq(r[1], sw2);
}

START_TEST(iso_wrapping_errors)
{
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    const uint8_t cla00[] = {0x00, 0x60, 0x00, 0x00, 0x00};
    const uint8_t no_le[] = {0x90, 0x60, 0x00, 0x00};
    const uint8_t short3[] = {0x90, 0x60, 0x00};
    const uint8_t bad_lc[] = {0x90, 0x5A, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00};
    const uint8_t lc0[] = {0x90, 0x5A, 0x00, 0x00, 0x00, 0x00};
    const uint8_t no_le4[] = {0x90, 0x5A, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00};
    const uint8_t le1[] = {0x90, 0x60, 0x00, 0x00, 0x01};
    const uint8_t p1[] = {0x90, 0x60, 0x01, 0x00, 0x00};
    uint8_t r[64];
    size_t rl = 99;

    sw(c, cla00, sizeof cla00, 0x6E, 0x00);
    sw(c, no_le, sizeof no_le, 0x67, 0x00);
    sw(c, short3, sizeof short3, 0x67, 0x00);
    sw(c, bad_lc, sizeof bad_lc, 0x67, 0x00);
    sw(c, lc0, sizeof lc0, 0x67, 0x00);
    sw(c, no_le4, sizeof no_le4, 0x67, 0x00);
    sw(c, le1, sizeof le1, 0x67, 0x00);
    sw(c, p1, sizeof p1, 0x6A, 0x86);
    /* Too small an answer buffer is our caller's bug, not a card answer. */
    ck_assert_int_eq(sim_card_transceive(c, cla00, sizeof cla00, r, 10, &rl), OTA_ERR_LENGTH);
    ck_assert_int_eq(sim_card_transceive(c, NULL, 5, r, sizeof r, &rl), OTA_ERR_INVAL);
    sim_card_free(c);
}
END_TEST

START_TEST(pcsc_get_data_uid)
{
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    const uint8_t get[] = {0xFF, 0xCA, 0x00, 0x00, 0x00};
    const uint8_t get_ats[] = {0xFF, 0xCA, 0x01, 0x00, 0x00};
    const uint8_t other[] = {0xFF, 0x82, 0x00, 0x00, 0x00};
    uint8_t r[64];
    size_t rl = ts_apdu(c, get, sizeof get, r);

    ck_assert_uint_eq(rl, 9);
    ck_assert_mem_eq(r, TS_UID, 7);
    ck_assert_uint_eq(r[7], 0x90);
    ck_assert_uint_eq(r[8], 0x00);
    sw(c, get_ats, sizeof get_ats, 0x6A, 0x81);
    sw(c, other, sizeof other, 0x6D, 0x00);
    sim_card_free(c);
}
END_TEST

START_TEST(get_version_three_frames)
{
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    uint8_t d[64];
    size_t n;

    ck_assert_int_eq(ts_frame(c, 0x60, NULL, 0, d, &n), 0xAF);
    ck_assert_uint_eq(n, 7);
    ck_assert_uint_eq(d[0], 0x04); /* NXP */
    ck_assert_uint_eq(d[3], 0x01); /* EV1 */
    ck_assert_uint_eq(d[5], 0x1A); /* 8 KB */
    ck_assert_int_eq(ts_frame(c, 0xAF, NULL, 0, d, &n), 0xAF);
    ck_assert_uint_eq(n, 7);
    ck_assert_uint_eq(d[4], 0x04);
    ck_assert_int_eq(ts_frame(c, 0xAF, NULL, 0, d, &n), 0x00);
    ck_assert_uint_eq(n, 14);
    ck_assert_mem_eq(d, TS_UID, 7);
    /* Nothing left to continue. */
    ck_assert_int_eq(ts_frame(c, 0xAF, NULL, 0, d, &n), 0x1C);
    ck_assert_uint_eq(n, 0);
    /* Length errors: data on GetVersion, data on a continuation request. */
    ck_assert_int_eq(ts_frame(c, 0x60, d, 1, NULL, NULL), 0x7E);
    ck_assert_int_eq(ts_frame(c, 0x60, NULL, 0, NULL, NULL), 0xAF);
    ck_assert_int_eq(ts_frame(c, 0xAF, d, 1, NULL, NULL), 0x7E);
    sim_card_free(c);
}
END_TEST

START_TEST(get_version_after_auth_is_maced)
{
    struct sim_card *c = ts_card(SIM_PICC_AES0);
    struct dfc_session s;
    struct dfc_cmd_spec sp = {.ins = 0x60, .resp_len = 28};
    uint8_t st, resp[64];
    size_t n;

    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(ts_cmd(c, &s, &sp, &st, resp, &n), 0);
    ck_assert_uint_eq(n, 28);
    ck_assert_mem_eq(resp + 14, TS_UID, 7);
    ck_assert_int_eq(s.active, 1);
    sim_card_free(c);
}
END_TEST

static void make_free_std_file(struct sim_card *c, uint8_t no, uint32_t size)
{
    const uint8_t app[5] = {0x01, 0x02, 0x03, 0x0F, 0x01};
    uint8_t f[7] = {no, 0x00, 0xEE, 0xEE, (uint8_t)size, (uint8_t)(size >> 8), 0};

    ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0);
    ck_assert_int_eq(ts_select(c, 0x030201), 0);
    ck_assert_int_eq(ts_native(c, 0xCD, f, sizeof f, NULL, NULL), 0);
}

START_TEST(command_frame_limit)
{
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    uint8_t d[64];

    make_free_std_file(c, 1, 200);
    memset(d, 0x5A, sizeof d);
    d[0] = 1;
    d[1] = d[2] = d[3] = 0;
    d[4] = 47;
    d[5] = d[6] = 0;
    /* INS + 54 bytes is the largest frame: 7 header + 47 data. */
    ck_assert_int_eq(ts_frame(c, 0x3D, d, 54, NULL, NULL), 0x00);
    /* INS + 55 bytes is one too many. */
    d[4] = 48;
    ck_assert_int_eq(ts_frame(c, 0x3D, d, 55, NULL, NULL), 0x7E);
    sim_card_free(c);
}
END_TEST

START_TEST(af_chaining_both_ways)
{
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    uint8_t cmd[7 + 150], d[64], back[200];
    size_t n, i, got = 0;
    int st;

    make_free_std_file(c, 1, 150);
    cmd[0] = 1;
    cmd[1] = cmd[2] = cmd[3] = 0;
    cmd[4] = 150;
    cmd[5] = cmd[6] = 0;
    for (i = 0; i < 150; i++)
        cmd[7 + i] = (uint8_t)i;
    /* 157 bytes: 54 + 54 + 49. */
    ck_assert_int_eq(ts_frame(c, 0x3D, cmd, 54, d, &n), 0xAF);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(ts_frame(c, 0xAF, cmd + 54, 54, d, &n), 0xAF);
    ck_assert_int_eq(ts_frame(c, 0xAF, cmd + 108, 49, d, &n), 0x00);
    /* The answer: 150 bytes in frames of 59, 59, 32. */
    cmd[4] = 0; /* length 0: the whole file */
    st = ts_frame(c, 0xBD, cmd, 7, d, &n);
    ck_assert_int_eq(st, 0xAF);
    ck_assert_uint_eq(n, 59);
    memcpy(back, d, n);
    got = n;
    ck_assert_int_eq(ts_frame(c, 0xAF, NULL, 0, d, &n), 0xAF);
    ck_assert_uint_eq(n, 59);
    memcpy(back + got, d, n);
    got += n;
    ck_assert_int_eq(ts_frame(c, 0xAF, NULL, 0, d, &n), 0x00);
    ck_assert_uint_eq(n, 32);
    memcpy(back + got, d, n);
    got += n;
    ck_assert_uint_eq(got, 150);
    ck_assert_mem_eq(back, cmd + 7, 150);
    /* Too much data in the last continuation frame. */
    cmd[4] = 60;
    ck_assert_int_eq(ts_frame(c, 0x3D, cmd, 54, d, &n), 0xAF);
    ck_assert_int_eq(ts_frame(c, 0xAF, cmd + 54, 20, d, &n), 0x7E);
    sim_card_free(c);
}
END_TEST

START_TEST(interrupted_chains)
{
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    uint8_t cmd[7 + 100], d[64];
    size_t n;

    memset(cmd, 0, sizeof cmd);
    make_free_std_file(c, 1, 150);
    cmd[0] = 1;
    cmd[4] = 100;
    ck_assert_int_eq(ts_frame(c, 0x3D, cmd, 54, d, &n), 0xAF);
    /* A new command instead of the continuation: command aborted. */
    ck_assert_int_eq(ts_frame(c, 0x6F, NULL, 0, d, &n), 0xCA);
    ck_assert_int_eq(ts_frame(c, 0x6F, NULL, 0, d, &n), 0x00);
    ck_assert_uint_eq(n, 1);
    /* An unread answer is simply dropped by the next command. */
    ck_assert_int_eq(ts_frame(c, 0x60, NULL, 0, d, &n), 0xAF);
    ck_assert_int_eq(ts_frame(c, 0x6F, NULL, 0, d, &n), 0x00);
    ck_assert_uint_eq(d[0], 1);
    /* Unknown command code. */
    ck_assert_int_eq(ts_frame(c, 0x99, NULL, 0, d, &n), 0x1C);
    /* A chained command whose file does not exist fails on its first frame. */
    cmd[0] = 9;
    ck_assert_int_eq(ts_frame(c, 0x3D, cmd, 54, d, &n), 0xF0);
    sim_card_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("sim_frames");
    TCase *tc = tcase_create("frames");
    tcase_add_test(tc, iso_wrapping_errors);
    tcase_add_test(tc, pcsc_get_data_uid);
    tcase_add_test(tc, get_version_three_frames);
    tcase_add_test(tc, get_version_after_auth_is_maced);
    tcase_add_test(tc, command_frame_limit);
    tcase_add_test(tc, af_chaining_both_ways);
    tcase_add_test(tc, interrupted_chains);
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
