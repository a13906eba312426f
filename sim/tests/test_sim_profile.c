/* test_sim_profile: the personalized profile card against the reader-side
 * core (dfc_auth_*, dfc_cmd_*): authentication with every profile key and
 * with a wrong key, the exact file settings, GetValue enciphered, the
 * top-up sequence (WriteRecord in two frames, Credit, Commit), ReadRecords,
 * the access rights of every key, value limits, the cyclic wrap, and a
 * tampered command (1E) ending the session. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "card_profile.h"
#include "desfire_crypto.h"
#include "ota_err.h"
#include "sim_card.h"
#include "test_sim_util.h"

static struct sim_card *auth_card(int32_t balance, int keyno, struct dfc_session *s)
{
    struct sim_card *c = ts_profile_card(balance);
    uint8_t k[16];

    ck_assert_int_eq(ts_select(c, PROF_AID_U32), 0);
    ts_profile_key(c, keyno, k);
    ck_assert_int_eq(ts_auth(c, s, DFC_AES128, (uint8_t)keyno, k), 0);
    return c;
}

static int get_value(struct sim_card *c, struct dfc_session *s, int32_t *v, uint8_t *st)
{
    uint8_t f = PROF_FILE_VALUE, r[8];
    size_t n = 0;
    struct dfc_cmd_spec sp = {.ins = 0x6C,
                              .hdr = &f,
                              .hdr_len = 1,
                              .cmd_comm = DFC_COMM_PLAIN,
                              .resp_comm = DFC_COMM_ENC,
                              .resp_len = 4};
    int rc = ts_cmd(c, s, &sp, st, r, &n);
    if (rc == 0)
        *v = (int32_t)dfc_get_le32(r);
    return rc;
}

static int value_op(struct sim_card *c, struct dfc_session *s, uint8_t ins, int32_t amount,
                    uint8_t *st)
{
    uint8_t f = PROF_FILE_VALUE, d[4];
    struct dfc_cmd_spec sp = {.ins = ins,
                              .hdr = &f,
                              .hdr_len = 1,
                              .data = d,
                              .data_len = 4,
                              .cmd_comm = DFC_COMM_ENC,
                              .resp_comm = DFC_COMM_MAC,
                              .resp_len = 0};
    dfc_put_le32(d, (uint32_t)amount);
    return ts_cmd(c, s, &sp, st, NULL, NULL);
}

static int write_record(struct sim_card *c, struct dfc_session *s, const uint8_t rec[32],
                        uint8_t *st)
{
    uint8_t h[7] = {PROF_FILE_RECORDS, 0, 0, 0, 32, 0, 0};
    struct dfc_cmd_spec sp = {.ins = 0x3B,
                              .hdr = h,
                              .hdr_len = 7,
                              .data = rec,
                              .data_len = 32,
                              .cmd_comm = DFC_COMM_ENC,
                              .resp_comm = DFC_COMM_MAC,
                              .resp_len = 0};
    return ts_cmd(c, s, &sp, st, NULL, NULL);
}

static int simple(struct sim_card *c, struct dfc_session *s, uint8_t ins, uint8_t *st)
{
    struct dfc_cmd_spec sp = {
        .ins = ins, .cmd_comm = DFC_COMM_PLAIN, .resp_comm = DFC_COMM_MAC, .resp_len = 0};
    return ts_cmd(c, s, &sp, st, NULL, NULL);
}

static int read_records(struct sim_card *c, struct dfc_session *s, uint32_t off, uint32_t cnt,
                        int want_len, uint8_t *out, size_t *n, uint8_t *st)
{
    uint8_t h[7] = {PROF_FILE_RECORDS, (uint8_t)off, 0, 0, (uint8_t)cnt, 0, 0};
    struct dfc_cmd_spec sp = {.ins = 0xBB,
                              .hdr = h,
                              .hdr_len = 7,
                              .cmd_comm = DFC_COMM_PLAIN,
                              .resp_comm = DFC_COMM_ENC,
                              .resp_len = want_len};
    return ts_cmd(c, s, &sp, st, out, n);
}

static void topup(struct sim_card *c, struct dfc_session *s, int32_t amount, uint8_t tag)
{
    uint8_t rec[32], st;
    memset(rec, tag, 16);
    dfc_put_le32(rec + 16, (uint32_t)amount);
    memset(rec + 20, 0, 12);
    ck_assert_int_eq(write_record(c, s, rec, &st), 0);
    ck_assert_int_eq(value_op(c, s, 0x0C, amount, &st), 0);
    ck_assert_int_eq(simple(c, s, 0xC7, &st), 0);
}

START_TEST(every_profile_key_authenticates)
{
    struct sim_card *c = ts_profile_card(0);
    struct dfc_session s;
    uint8_t k[16];
    int i;

    ck_assert_int_eq(ts_select(c, PROF_AID_U32), 0);
    for (i = 0; i < PROF_NUM_KEYS; i++) {
        ts_profile_key(c, i, k);
        ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, (uint8_t)i, k), 0);
        ck_assert_int_eq(s.active, 1);
    }
    /* Wrong key: the card answers AE to the token. */
    ts_profile_key(c, 1, k);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 2, k), OTA_ERR_AUTH);
    /* No such key. */
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 4, k), OTA_ERR_CARD_STATUS);
    /* AES key with the ISO (TDEA) authentication: wrong key type. */
    ck_assert_int_eq(ts_auth(c, &s, DFC_TDES2, 0, TS_ZERO_KEY), OTA_ERR_AUTH);
    sim_card_free(c);
}
END_TEST

START_TEST(profile_file_settings_exact)
{
    struct dfc_session s;
    struct sim_card *c = auth_card(1234, PROF_KEY_CREDIT, &s);
    const uint8_t want_v[17] = {0x02, 0x03, 0x20, 0x13, 0, 0, 0, 0,   0x40,
                                0x42, 0x0F, 0x00, 0,    0, 0, 0, 0x00};
    const uint8_t want_r[13] = {0x04, 0x03, 0xF0, 0x22, 32, 0, 0, 8, 0, 0, 0, 0, 0};
    uint8_t f = PROF_FILE_VALUE, r[32], st;
    size_t n;
    struct dfc_cmd_spec sp = {.ins = 0xF5,
                              .hdr = &f,
                              .hdr_len = 1,
                              .cmd_comm = DFC_COMM_PLAIN,
                              .resp_comm = DFC_COMM_MAC,
                              .resp_len = 17};
    int32_t v = 0;

    ck_assert_int_eq(ts_cmd(c, &s, &sp, &st, r, &n), 0);
    ck_assert_mem_eq(r, want_v, 17);
    f = PROF_FILE_RECORDS;
    sp.resp_len = 13;
    ck_assert_int_eq(ts_cmd(c, &s, &sp, &st, r, &n), 0);
    ck_assert_mem_eq(r, want_r, 13);
    ck_assert_int_eq(get_value(c, &s, &v, &st), 0);
    ck_assert_int_eq(v, 1234);
    /* Empty record file: boundary error, and the session is gone. */
    ck_assert_int_eq(read_records(c, &s, 0, 1, 32, r, &n, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xBE);
    ck_assert_int_eq(s.active, 0);
    sim_card_free(c);
}
END_TEST

START_TEST(topup_sequence_round_trip)
{
    struct dfc_session s;
    struct sim_card *c = auth_card(500, PROF_KEY_CREDIT, &s);
    uint8_t rec[32], out[64], st, uid[16];
    size_t n;
    int32_t v = 0;
    struct dfc_cmd_spec uid_sp = {
        .ins = 0x51, .cmd_comm = DFC_COMM_PLAIN, .resp_comm = DFC_COMM_ENC, .resp_len = 7};

    ck_assert_int_eq(simple(c, &s, 0xA7, &st), 0); /* AbortTransaction, MAC verified */
    memset(rec, 0xA1, sizeof rec);
    ck_assert_int_eq(write_record(c, &s, rec, &st), 0);
    ck_assert_int_eq(value_op(c, &s, 0x0C, 250, &st), 0);
    /* Before the commit nothing is visible. */
    ck_assert_int_eq(get_value(c, &s, &v, &st), 0);
    ck_assert_int_eq(v, 500);
    ck_assert_int_eq(sim_card_records(c, PROF_AID_U32, PROF_FILE_RECORDS, out, 32, 8), 0);
    ck_assert_int_eq(simple(c, &s, 0xC7, &st), 0);
    ck_assert_int_eq(get_value(c, &s, &v, &st), 0);
    ck_assert_int_eq(v, 750);
    ck_assert_int_eq(read_records(c, &s, 0, 1, 32, out, &n, &st), 0);
    ck_assert_uint_eq(n, 32);
    ck_assert_mem_eq(out, rec, 32);
    ck_assert_int_eq(sim_card_value(c, PROF_AID_U32, PROF_FILE_VALUE, &v), 0);
    ck_assert_int_eq(v, 750);
    ck_assert_int_eq(ts_cmd(c, &s, &uid_sp, &st, uid, &n), 0);
    ck_assert_mem_eq(uid, TS_UID, 7);
    ck_assert_int_eq(s.active, 1);
    sim_card_free(c);
}
END_TEST

START_TEST(cyclic_wrap_keeps_seven)
{
    struct dfc_session s;
    struct sim_card *c = auth_card(0, PROF_KEY_CREDIT, &s);
    uint8_t out[8 * 32], st;
    size_t n;
    int i;

    for (i = 1; i <= 10; i++)
        topup(c, &s, i, (uint8_t)i);
    ck_assert_int_eq(sim_card_records(c, PROF_AID_U32, PROF_FILE_RECORDS, out, 32, 8), 7);
    ck_assert_uint_eq(out[0], 4); /* oldest kept */
    ck_assert_uint_eq(out[6 * 32], 10);
    /* Offset 0 = newest; count 0 = all down to the oldest. */
    ck_assert_int_eq(read_records(c, &s, 0, 0, 7 * 32, out, &n, &st), 0);
    ck_assert_uint_eq(n, 7 * 32);
    ck_assert_uint_eq(out[0], 4);
    ck_assert_uint_eq(out[6 * 32], 10);
    ck_assert_int_eq(read_records(c, &s, 2, 2, 64, out, &n, &st), 0);
    ck_assert_uint_eq(out[0], 7);
    ck_assert_uint_eq(out[32], 8);
    ck_assert_int_eq(read_records(c, &s, 6, 2, 64, out, &n, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xBE);
    sim_card_free(c);
}
END_TEST

START_TEST(value_limits)
{
    struct dfc_session s;
    struct sim_card *c = auth_card(PROF_VALUE_UPPER - 100, PROF_KEY_CREDIT, &s);
    uint8_t st;
    int32_t v;
    uint8_t k[16];

    ck_assert_int_eq(value_op(c, &s, 0x0C, 60, &st), 0);
    /* Committed + pending would pass the upper limit. */
    ck_assert_int_eq(value_op(c, &s, 0x0C, 41, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xBE);
    /* The error discarded the pending credit too. */
    ck_assert_int_eq(sim_card_value(c, PROF_AID_U32, PROF_FILE_VALUE, &v), 0);
    ck_assert_int_eq(v, PROF_VALUE_UPPER - 100);
    ts_profile_key(c, PROF_KEY_CREDIT, k);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, PROF_KEY_CREDIT, k), 0);
    ck_assert_int_eq(value_op(c, &s, 0x0C, -5, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x9E);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, PROF_KEY_CREDIT, k), 0);
    ck_assert_int_eq(value_op(c, &s, 0x0C, 100, &st), 0);
    ck_assert_int_eq(simple(c, &s, 0xC7, &st), 0);
    ck_assert_int_eq(sim_card_value(c, PROF_AID_U32, PROF_FILE_VALUE, &v), 0);
    ck_assert_int_eq(v, PROF_VALUE_UPPER);
    /* Debit (key 1, Read right) below the lower limit. */
    ts_profile_key(c, PROF_KEY_READ, k);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, PROF_KEY_READ, k), 0);
    ck_assert_int_eq(value_op(c, &s, 0xDC, PROF_VALUE_UPPER + 1, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xBE);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, PROF_KEY_READ, k), 0);
    ck_assert_int_eq(value_op(c, &s, 0xDC, 300, &st), 0);
    ck_assert_int_eq(simple(c, &s, 0xC7, &st), 0);
    ck_assert_int_eq(sim_card_value(c, PROF_AID_U32, PROF_FILE_VALUE, &v), 0);
    ck_assert_int_eq(v, PROF_VALUE_UPPER - 300);
    sim_card_free(c);
}
END_TEST

START_TEST(access_rights_per_key)
{
    struct dfc_session s;
    struct sim_card *c = auth_card(100, PROF_KEY_READ, &s);
    uint8_t st, k[16], rec[32] = {0}, f = PROF_FILE_RECORDS;
    int32_t v;
    struct dfc_cmd_spec clear = {.ins = 0xEB,
                                 .hdr = &f,
                                 .hdr_len = 1,
                                 .cmd_comm = DFC_COMM_PLAIN,
                                 .resp_comm = DFC_COMM_MAC,
                                 .resp_len = 0};

    /* Key 1: GetValue yes, Credit no (RW is key 2), records no. */
    ck_assert_int_eq(get_value(c, &s, &v, &st), 0);
    ck_assert_int_eq(value_op(c, &s, 0x0C, 1, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xAE);
    ts_profile_key(c, PROF_KEY_READ, k);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, PROF_KEY_READ, k), 0);
    ck_assert_int_eq(write_record(c, &s, rec, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xAE);
    /* Key 3: LimitedCredit is off in the profile; Credit denied. */
    ts_profile_key(c, PROF_KEY_DEBIT, k);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, PROF_KEY_DEBIT, k), 0);
    ck_assert_int_eq(value_op(c, &s, 0x1C, 1, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x9D);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, PROF_KEY_DEBIT, k), 0);
    ck_assert_int_eq(value_op(c, &s, 0x0C, 1, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xAE);
    /* Key 2: ClearRecordFile needs RW, which is "never". */
    ts_profile_key(c, PROF_KEY_CREDIT, k);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, PROF_KEY_CREDIT, k), 0);
    ck_assert_int_eq(ts_cmd(c, &s, &clear, &st, NULL, NULL), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x9D);
    /* Unauthenticated: AE. */
    ck_assert_int_eq(ts_select(c, PROF_AID_U32), 0);
    ck_assert_int_eq(get_value(c, NULL, &v, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xAE);
    sim_card_free(c);
}
END_TEST

/* Sends a dfc_cmd's frames with one bit of the last frame flipped. */
static int tampered(struct sim_card *c, struct dfc_session *s, const struct dfc_cmd_spec *sp)
{
    struct dfc_cmd cmd;
    uint8_t apdu[DFC_APDU_MAX + 8], r[64];
    size_t alen, rl;
    int rc = dfc_cmd_start(&cmd, s, sp, apdu, sizeof apdu, &alen);

    ck_assert_int_eq(rc, 0);
    for (;;) {
        apdu[alen - 2] ^= 0x01; /* last data byte before Le */
        rl = ts_apdu(c, apdu, alen, r);
        apdu[alen - 2] ^= 0x01;
        if (r[rl - 1] != 0xAF)
            break;
        rc = dfc_cmd_feed(&cmd, r, rl, apdu, sizeof apdu, &alen);
        ck_assert_int_eq(rc, DFC_MORE);
    }
    dfc_cmd_clear(&cmd);
    ck_assert_uint_eq(r[rl - 2], 0x91);
    return r[rl - 1];
}

START_TEST(tampered_commands_are_integrity_errors)
{
    struct dfc_session s;
    struct sim_card *c = auth_card(100, PROF_KEY_CREDIT, &s);
    uint8_t f = PROF_FILE_VALUE, d[4] = {1, 0, 0, 0}, st, k[16];
    uint8_t h[7] = {PROF_FILE_RECORDS, 0, 0, 0, 32, 0, 0}, rec[32] = {0};
    struct dfc_cmd_spec credit = {.ins = 0x0C,
                                  .hdr = &f,
                                  .hdr_len = 1,
                                  .data = d,
                                  .data_len = 4,
                                  .cmd_comm = DFC_COMM_ENC,
                                  .resp_comm = DFC_COMM_MAC,
                                  .resp_len = 0};
    struct dfc_cmd_spec wr = {.ins = 0x3B,
                              .hdr = h,
                              .hdr_len = 7,
                              .data = rec,
                              .data_len = 32,
                              .cmd_comm = DFC_COMM_ENC,
                              .resp_comm = DFC_COMM_MAC,
                              .resp_len = 0};
    int32_t v;

    ck_assert_int_eq(tampered(c, &s, &credit), 0x1E);
    /* The session ended: an authenticated-only command now fails. */
    ck_assert_int_eq(get_value(c, NULL, &v, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xAE);
    ts_profile_key(c, PROF_KEY_CREDIT, k);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, PROF_KEY_CREDIT, k), 0);
    ck_assert_int_eq(tampered(c, &s, &wr), 0x1E);
    ck_assert_int_eq(sim_card_records(c, PROF_AID_U32, PROF_FILE_RECORDS, rec, 32, 8), 0);
    sim_card_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("sim_profile");
    TCase *tc = tcase_create("profile");
    tcase_add_test(tc, every_profile_key_authenticates);
    tcase_add_test(tc, profile_file_settings_exact);
    tcase_add_test(tc, topup_sequence_round_trip);
    tcase_add_test(tc, cyclic_wrap_keeps_seven);
    tcase_add_test(tc, value_limits);
    tcase_add_test(tc, access_rights_per_key);
    tcase_add_test(tc, tampered_commands_are_integrity_errors);
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
