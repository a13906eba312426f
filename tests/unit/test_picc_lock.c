/* test_picc_lock: a card personalized THROUGH THE SYSTEM (gateway, worker,
 * operator listener) keeps its application: the factory PICC keys (all-zero
 * DES and all-zero AES) no longer authenticate, and DeleteApplication,
 * CreateApplication and FormatPICC are refused without the PICC master key.
 * The card's own diversified PICC key still works (the control: the
 * refusals come from the key, not from a broken card).
 *
 * Run by tests/integration/test_hardening.sh with
 *   OTA_PICC_CARD = the card file the system personalized,
 *   OTA_PICC_KEY  = hex of that card's diversified PICC key;
 * never on its own (it needs the system to personalize the card).  Every
 * test loads the card afresh and never saves it. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "card_profile.h"
#include "desfire_auth.h"
#include "hex.h"
#include "ota_err.h"
#include "sim_card.h"
#include "test_sim_util.h"

static const uint8_t APP[3] = {PROF_AID_0, PROF_AID_1, PROF_AID_2};

static struct sim_card *load_card(void)
{
    const char *path = getenv("OTA_PICC_CARD");
    ck_assert_msg(path != NULL && *path, "OTA_PICC_CARD is not set");
    struct sim_card *c = sim_card_load(path);
    ck_assert_ptr_nonnull(c);
    return c;
}

static void picc_key(uint8_t key[16])
{
    const char *hex = getenv("OTA_PICC_KEY");
    ck_assert_msg(hex != NULL && strlen(hex) == 32, "OTA_PICC_KEY is not 32 hex characters");
    ck_assert_int_eq(hex_decode(hex, 32, key, 16), 16);
}

/* The factory PICC master key (all zero) of the given cipher no longer
 * authenticates. */
static void assert_zero_key_refused(enum dfc_cipher cipher)
{
    struct sim_card *c = load_card();
    struct dfc_session s;
    ck_assert_int_eq(ts_select(c, 0), 0);
    ck_assert_int_ne(ts_auth(c, &s, cipher, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(s.active, 0);
    sim_card_free(c);
}

START_TEST(zero_des_key_refused)
{
    assert_zero_key_refused(DFC_TDES2);
}
END_TEST

START_TEST(zero_aes_key_refused)
{
    assert_zero_key_refused(DFC_AES128);
}
END_TEST

START_TEST(delete_application_refused)
{
    struct sim_card *c = load_card();
    struct dfc_session s;
    ck_assert_int_eq(ts_select(c, 0), 0);
    ck_assert_int_ne(ts_native(c, 0xDA, APP, sizeof APP, NULL, NULL), 0x00);
    /* Also right after a failed attempt with the factory key. */
    ck_assert_int_eq(ts_select(c, 0), 0);
    ck_assert_int_ne(ts_auth(c, &s, DFC_TDES2, 0, TS_ZERO_KEY), 0);
    ck_assert_int_ne(ts_native(c, 0xDA, APP, sizeof APP, NULL, NULL), 0x00);
    ck_assert_int_eq(ts_select(c, PROF_AID_U32), 0x00);
    sim_card_free(c);
}
END_TEST

START_TEST(create_application_and_format_refused)
{
    struct sim_card *c = load_card();
    static const uint8_t newapp[5] = {0x12, 0x34, 0x56, 0x0F, 0x81};
    ck_assert_int_eq(ts_select(c, 0), 0);
    ck_assert_int_ne(ts_native(c, 0xCA, newapp, sizeof newapp, NULL, NULL), 0x00);
    ck_assert_int_ne(ts_native(c, 0xFC, NULL, 0, NULL, NULL), 0x00);
    ck_assert_int_eq(ts_select(c, PROF_AID_U32), 0x00);
    sim_card_free(c);
}
END_TEST

/* The control: with the card's diversified PICC key the same
 * DeleteApplication succeeds (on the in-memory copy only). */
START_TEST(own_picc_key_allows_delete)
{
    struct sim_card *c = load_card();
    struct dfc_session s;
    uint8_t key[16], st = 0xFF;
    picc_key(key);
    ck_assert_int_eq(ts_select(c, 0), 0);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, key), 0);
    struct dfc_cmd_spec del = {.ins = 0xDA,
                               .data = APP,
                               .data_len = sizeof APP,
                               .cmd_comm = DFC_COMM_PLAIN,
                               .resp_comm = DFC_COMM_MAC,
                               .resp_len = 0};
    ck_assert_int_eq(ts_cmd(c, &s, &del, &st, NULL, NULL), 0);
    ck_assert_uint_eq(st, 0x00);
    ck_assert_int_eq(ts_select(c, PROF_AID_U32), 0xA0);
    sim_card_free(c);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("picc_lock");
    TCase *tc = tcase_create("picc_lock");
    tcase_add_test(tc, zero_des_key_refused);
    tcase_add_test(tc, zero_aes_key_refused);
    tcase_add_test(tc, delete_application_refused);
    tcase_add_test(tc, create_application_and_format_refused);
    tcase_add_test(tc, own_picc_key_allows_delete);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_VERBOSE);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
