/* test_sim_txn: transactions of the simulated card: commit, abort, and
 * the discarding of pending changes by select, authentication, errors and
 * power loss (and SIM_FLAG_KEEP_PENDING_ON_SELECT_AUTH keeping them over
 * select and authentication); backup files, linear record files, limited
 * credit; save/load round trip, file mode, corrupt files; describe. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "card_profile.h"
#include "desfire_crypto.h"
#include "ota_err.h"
#include "sim_card.h"
#include "test_sim_util.h"

#define AID 0x445566u

/* A free-access application: std 1, backup 2, value 3 (limited credit on),
 * linear 4 (3 records of 4 bytes), cyclic 5 (3 records: 2 usable). */
static struct sim_card *txn_card(void)
{
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    const uint8_t app[5] = {0x66, 0x55, 0x44, 0x0F, 0x82};
    const uint8_t std[7] = {1, 0, 0xEE, 0xEE, 16, 0, 0};
    const uint8_t bak[7] = {2, 0, 0xEE, 0xEE, 16, 0, 0};
    const uint8_t val[17] = {3, 0, 0xEE, 0xEE, 0, 0, 0, 0, 0x10, 0x27, 0, 0, 0, 0, 0, 0, 1};
    const uint8_t lin[10] = {4, 0, 0xEE, 0xEE, 4, 0, 0, 3, 0, 0};
    const uint8_t cyc[10] = {5, 0, 0xEE, 0xEE, 4, 0, 0, 3, 0, 0};

    ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0);
    ck_assert_int_eq(ts_select(c, AID), 0);
    ck_assert_int_eq(ts_native(c, 0xCD, std, sizeof std, NULL, NULL), 0);
    ck_assert_int_eq(ts_native(c, 0xCB, bak, sizeof bak, NULL, NULL), 0);
    ck_assert_int_eq(ts_native(c, 0xCC, val, sizeof val, NULL, NULL), 0);
    ck_assert_int_eq(ts_native(c, 0xC1, lin, sizeof lin, NULL, NULL), 0);
    ck_assert_int_eq(ts_native(c, 0xC0, cyc, sizeof cyc, NULL, NULL), 0);
    return c;
}

static int value_cmd(struct sim_card *c, uint8_t ins, int32_t amount)
{
    uint8_t d[5] = {3};
    dfc_put_le32(d + 1, (uint32_t)amount);
    return ts_native(c, ins, d, sizeof d, NULL, NULL);
}

static int32_t card_value(struct sim_card *c)
{
    uint8_t d = 3, out[8];
    size_t n;
    ck_assert_int_eq(ts_native(c, 0x6C, &d, 1, out, &n), 0);
    ck_assert_uint_eq(n, 4);
    return (int32_t)dfc_get_le32(out);
}

static int write_rec(struct sim_card *c, uint8_t file, uint8_t off, const char *s)
{
    uint8_t d[7 + 4] = {file, off, 0, 0, (uint8_t)strlen(s), 0, 0};
    memcpy(d + 7, s, strlen(s));
    return ts_native(c, 0x3B, d, 7 + strlen(s), NULL, NULL);
}

static int commit(struct sim_card *c)
{
    return ts_native(c, 0xC7, NULL, 0, NULL, NULL);
}

START_TEST(commit_and_abort)
{
    struct sim_card *c = txn_card();
    uint8_t w[7 + 3] = {2, 0, 0, 0, 3, 0, 0, 'a', 'b', 'c'}, r[7] = {2, 0, 0, 0, 3, 0, 0};
    uint8_t out[64];
    size_t n;

    ck_assert_int_eq(value_cmd(c, 0x0C, 50), 0);
    ck_assert_int_eq(value_cmd(c, 0xDC, 20), 0);
    ck_assert_int_eq(ts_native(c, 0x3D, w, sizeof w, NULL, NULL), 0);
    ck_assert_int_eq(write_rec(c, 4, 0, "r1"), 0);
    /* Reads see committed state only. */
    ck_assert_int_eq(card_value(c), 0);
    ck_assert_int_eq(ts_native(c, 0xBD, r, sizeof r, out, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(out, "\0\0\0", 3);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(card_value(c), 30);
    ck_assert_int_eq(ts_native(c, 0xBD, r, sizeof r, out, &n), 0);
    ck_assert_mem_eq(out, "abc", 3);
    /* Abort throws everything pending away. */
    ck_assert_int_eq(value_cmd(c, 0x0C, 7), 0);
    ck_assert_int_eq(write_rec(c, 4, 0, "r2"), 0);
    ck_assert_int_eq(ts_native(c, 0xA7, NULL, 0, NULL, NULL), 0);
    ck_assert_int_eq(commit(c), 0); /* nothing pending: still 00 */
    ck_assert_int_eq(card_value(c), 30);
    ck_assert_int_eq(sim_card_records(c, AID, 4, out, 4, 8), 1);
    ck_assert_mem_eq(out, "r1\0\0", 4);
    sim_card_free(c);
}
END_TEST

START_TEST(discarded_by_select_auth_error_power)
{
    struct sim_card *c = txn_card();
    struct dfc_session s;
    uint8_t d = 9;

    ck_assert_int_eq(value_cmd(c, 0x0C, 5), 0);
    ck_assert_int_eq(ts_select(c, AID), 0);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(card_value(c), 0);

    ck_assert_int_eq(value_cmd(c, 0x0C, 5), 0);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(ts_select(c, AID), 0);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(card_value(c), 0);

    ck_assert_int_eq(value_cmd(c, 0x0C, 5), 0);
    ck_assert_int_eq(ts_native(c, 0xF5, &d, 1, NULL, NULL), 0xF0); /* any error */
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(card_value(c), 0);

    ck_assert_int_eq(value_cmd(c, 0x0C, 5), 0);
    sim_card_power_cycle(c);
    ck_assert_int_eq(ts_select(c, AID), 0);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(card_value(c), 0);
    sim_card_free(c);
}
END_TEST

START_TEST(keep_pending_flag)
{
    struct sim_card *c = txn_card();
    struct dfc_session s;
    uint8_t d = 9;

    sim_card_set_flags(c, SIM_FLAG_KEEP_PENDING_ON_SELECT_AUTH);
    ck_assert_int_eq(value_cmd(c, 0x0C, 5), 0);
    ck_assert_int_eq(ts_select(c, AID), 0);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(ts_select(c, AID), 0);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(card_value(c), 5);
    /* Errors and power loss still discard. */
    ck_assert_int_eq(value_cmd(c, 0x0C, 5), 0);
    ck_assert_int_eq(ts_native(c, 0xF5, &d, 1, NULL, NULL), 0xF0);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(card_value(c), 5);
    ck_assert_int_eq(value_cmd(c, 0x0C, 5), 0);
    sim_card_power_cycle(c);
    ck_assert_int_eq(ts_select(c, AID), 0);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(card_value(c), 5);
    sim_card_free(c);
}
END_TEST

START_TEST(records_linear_cyclic)
{
    struct sim_card *c = txn_card();
    uint8_t out[64], rr[7] = {4, 0, 0, 0, 0, 0, 0};
    size_t n;
    char s[3] = "x0";
    int i;

    /* Empty: BE. */
    ck_assert_int_eq(ts_native(c, 0xBB, rr, sizeof rr, out, &n), 0xBE);
    /* Two writes in one transaction fill one record. */
    ck_assert_int_eq(write_rec(c, 4, 0, "ab"), 0);
    ck_assert_int_eq(write_rec(c, 4, 2, "cd"), 0);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(ts_native(c, 0xBB, rr, sizeof rr, out, &n), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert_mem_eq(out, "abcd", 4);
    /* Linear: 3 records, then full. */
    ck_assert_int_eq(write_rec(c, 4, 0, "2"), 0);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(write_rec(c, 4, 0, "3"), 0);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(write_rec(c, 4, 0, "4"), 0xBE);
    /* Beyond the record size. */
    ck_assert_int_eq(write_rec(c, 4, 3, "zz"), 0xBE);
    /* Cyclic with 3 slots keeps 2. */
    for (i = 0; i < 5; i++) {
        s[1] = (char)('0' + i);
        ck_assert_int_eq(write_rec(c, 5, 0, s), 0);
        ck_assert_int_eq(commit(c), 0);
    }
    ck_assert_int_eq(sim_card_records(c, AID, 5, out, 4, 8), 2);
    ck_assert_mem_eq(out, "x3", 2);
    ck_assert_mem_eq(out + 4, "x4", 2);
    /* ClearRecordFile is pending too, and blocks writes in its transaction. */
    rr[0] = 5;
    ck_assert_int_eq(ts_native(c, 0xEB, rr, 1, NULL, NULL), 0);
    ck_assert_int_eq(write_rec(c, 5, 0, "no"), 0x9D);
    ck_assert_int_eq(sim_card_records(c, AID, 5, out, 4, 8), 2);
    ck_assert_int_eq(ts_native(c, 0xEB, rr, 1, NULL, NULL), 0);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(sim_card_records(c, AID, 5, out, 4, 8), 0);
    sim_card_free(c);
}
END_TEST

START_TEST(limited_credit)
{
    struct sim_card *c = txn_card();
    uint8_t d = 3, out[32];
    size_t n;

    ck_assert_int_eq(value_cmd(c, 0x0C, 100), 0);
    ck_assert_int_eq(commit(c), 0);
    /* No debit yet: nothing to give back. */
    ck_assert_int_eq(value_cmd(c, 0x1C, 1), 0xBE);
    ck_assert_int_eq(value_cmd(c, 0xDC, 30), 0);
    ck_assert_int_eq(value_cmd(c, 0xDC, 10), 0);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(ts_native(c, 0xF5, &d, 1, out, &n), 0);
    ck_assert_uint_eq(n, 17);
    ck_assert_uint_eq(dfc_get_le32(out + 12), 40); /* limited credit value */
    ck_assert_int_eq(value_cmd(c, 0x1C, 41), 0xBE);
    ck_assert_int_eq(value_cmd(c, 0x1C, 25), 0);
    ck_assert_int_eq(commit(c), 0);
    ck_assert_int_eq(card_value(c), 85);
    ck_assert_int_eq(value_cmd(c, 0x1C, 1), 0xBE); /* used up */
    /* Upper limit 10000 counts pending credits. */
    ck_assert_int_eq(value_cmd(c, 0x0C, 9000), 0);
    ck_assert_int_eq(value_cmd(c, 0x0C, 916), 0xBE);
    sim_card_free(c);
}
END_TEST

START_TEST(save_load_round_trip)
{
    char dir[] = "/tmp/test_sim_XXXXXX", path[64], text[4096];
    struct sim_card *c, *d;
    struct dfc_session s;
    struct stat st;
    uint8_t a[64], b[64], k[16];
    int32_t v;
    FILE *f;
    long len;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/card.bin", dir);
    c = ts_profile_card(4321);
    /* A pending change is not saved. */
    ck_assert_int_eq(ts_select(c, PROF_AID_U32), 0);
    ts_profile_key(c, PROF_KEY_CREDIT, k);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, PROF_KEY_CREDIT, k), 0);
    ck_assert_int_eq(sim_card_save(c, path), 0);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    d = sim_card_load(path);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(sim_card_value(d, PROF_AID_U32, PROF_FILE_VALUE, &v), 0);
    ck_assert_int_eq(v, 4321);
    ck_assert_int_eq(sim_card_describe(c, text, sizeof text), 0);
    ck_assert_ptr_nonnull(strstr(text, "application C0FFEE"));
    ck_assert_ptr_nonnull(strstr(text, "value 4321"));
    ck_assert_int_eq(sim_card_describe(d, (char *)a, 10), OTA_ERR_LENGTH);
    /* The loaded card answers like the saved one (same keys). */
    ck_assert_int_eq(ts_select(d, PROF_AID_U32), 0);
    ck_assert_int_eq(ts_auth(d, &s, DFC_AES128, PROF_KEY_CREDIT, k), 0);
    ck_assert_int_eq(sim_card_records(d, PROF_AID_U32, PROF_FILE_RECORDS, a, 32, 8), 0);
    sim_card_free(d);
    /* Corruption anywhere is refused. */
    f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, len / 2, SEEK_SET);
    ck_assert_int_eq((int)fread(b, 1, 1, f), 1);
    b[0] ^= 0x40;
    fseek(f, len / 2, SEEK_SET);
    fwrite(b, 1, 1, f);
    fclose(f);
    ck_assert_ptr_null(sim_card_load(path));
    ck_assert_ptr_null(sim_card_load("/nonexistent/card.bin"));
    /* Saving over it works again (atomic replace). */
    ck_assert_int_eq(sim_card_save(c, path), 0);
    d = sim_card_load(path);
    ck_assert_ptr_nonnull(d);
    sim_card_free(d);
    unlink(path);
    rmdir(dir);
    sim_card_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("sim_txn");
    TCase *tc = tcase_create("txn");
    tcase_add_test(tc, commit_and_abort);
    tcase_add_test(tc, discarded_by_select_auth_error_power);
    tcase_add_test(tc, keep_pending_flag);
    tcase_add_test(tc, records_linear_cyclic);
    tcase_add_test(tc, limited_credit);
    tcase_add_test(tc, save_load_round_trip);
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
