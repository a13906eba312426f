/* test_engine_uid: a personalization changes only the card whose real UID
 * (GetCardUID, enciphered under the authentication) is the one the client
 * sent.  A client claiming another UID, a random-ID card claimed by the ID
 * the reader sees, the recovery of a half-made application under a
 * claimed UID, and a relay that swaps in another card between two
 * authentications are all refused before anything on the card changes: the
 * card's whole description and its zero keys are the same afterwards, and
 * the ledger records no personalization. */
#include <check.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "card_profile.h"
#include "desfire_auth.h"
#include "desfire_session.h"
#include "log.h"
#include "test_engine_harness.h"

#define TOKEN "operator-token-for-tests"

static const uint8_t other_uid[7] = {0x04, 0x99, 0x88, 0x77, 0x66, 0x55, 0x80};
static const uint8_t zero_key[16];

static void set_token(struct hx *h)
{
    ck_assert_int_eq(crypto_pwhash_str(h->token_hash, TOKEN, strlen(TOKEN),
                                       crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN),
                     0);
}

static void factory(struct hx *h, enum sim_picc_key picc)
{
    hx_init_factory(h, picc);
    h->cfg.picc_key = picc == SIM_PICC_AES0 ? ENG_PICC_AES0 : ENG_PICC_DES0;
    hx_reconfigure(h);
    set_token(h);
}

static void describe(const struct hx *h, char *out, size_t cap)
{
    ck_assert_int_eq(sim_card_describe(h->card, out, cap), 0);
}

static void raw(struct hx *h, const uint8_t *apdu, size_t len, uint8_t *resp, size_t *rlen)
{
    ck_assert_int_eq(sim_card_transceive(h->card, apdu, len, resp, WIRE_MAX_APDU, rlen), 0);
}

static void select_aid(struct hx *h, uint32_t aid)
{
    uint8_t sel[] = {
        0x90, 0x5A, 0x00, 0x00, 0x03, (uint8_t)aid, (uint8_t)(aid >> 8), (uint8_t)(aid >> 16),
        0x00};
    uint8_t resp[WIRE_MAX_APDU];
    size_t rlen;
    raw(h, sel, sizeof sel, resp, &rlen);
    ck_assert(rlen == 2 && resp[0] == 0x91 && resp[1] == 0x00);
}

/* Authenticates the selected level with a key, as any reader would. */
static int auth(struct hx *h, enum dfc_cipher c, struct dfc_session *s)
{
    uint8_t apdu[DFC_APDU_MAX], resp[WIRE_MAX_APDU];
    size_t alen, rlen;
    struct dfc_auth a;
    memset(&a, 0, sizeof a);
    memset(s, 0, sizeof *s);
    ck_assert_int_eq(dfc_auth_start(&a, c, 0, zero_key, apdu, sizeof apdu, &alen), 0);
    int rc;
    do {
        raw(h, apdu, alen, resp, &rlen);
        rc = dfc_auth_feed(&a, resp, rlen, apdu, sizeof apdu, &alen, s);
    } while (rc == DFC_MORE);
    dfc_auth_clear(&a);
    return rc;
}

static int zero_key_authenticates(struct hx *h, uint32_t aid, enum dfc_cipher c)
{
    struct dfc_session s;
    select_aid(h, aid);
    int rc = auth(h, c, &s);
    dfc_session_clear(&s);
    return rc == 0;
}

static void run_cmd(struct hx *h, struct dfc_session *s, uint8_t ins, const uint8_t *data,
                    size_t len)
{
    struct dfc_cmd_spec spec = {.ins = ins,
                                .data = data,
                                .data_len = len,
                                .cmd_comm = DFC_COMM_PLAIN,
                                .resp_comm = DFC_COMM_MAC,
                                .resp_len = 0};
    struct dfc_cmd cmd;
    uint8_t apdu[DFC_APDU_MAX], resp[WIRE_MAX_APDU];
    size_t alen, rlen;
    memset(&cmd, 0, sizeof cmd);
    ck_assert_int_eq(dfc_cmd_start(&cmd, s, &spec, apdu, sizeof apdu, &alen), 0);
    int rc;
    do {
        raw(h, apdu, alen, resp, &rlen);
        rc = dfc_cmd_feed(&cmd, resp, rlen, apdu, sizeof apdu, &alen);
    } while (rc == DFC_MORE);
    ck_assert_int_eq(rc, 0);
    dfc_cmd_clear(&cmd);
}

/* What a personalization cut after CreateApplication and CreateValueFile
 * leaves: C0FFEE with its all-zero key 0 and one file. */
static void make_half_made(struct hx *h)
{
    struct dfc_session s;
    select_aid(h, 0);
    ck_assert_int_eq(auth(h, DFC_TDES2, &s), 0);
    uint8_t app[5] = {PROF_AID_0, PROF_AID_1, PROF_AID_2, PROF_APP_KEY_SETTINGS,
                      0x80 | PROF_NUM_KEYS};
    run_cmd(h, &s, 0xCA, app, sizeof app);
    select_aid(h, PROF_AID_U32);
    ck_assert_int_eq(auth(h, DFC_AES128, &s), 0);
    uint8_t vf[17] = {PROF_FILE_VALUE, PROF_COMM_ENC, PROF_VALUE_ACCESS & 0xFF,
                      PROF_VALUE_ACCESS >> 8};
    dfc_put_le32(vf + 4, (uint32_t)PROF_VALUE_LOWER);
    dfc_put_le32(vf + 8, (uint32_t)PROF_VALUE_UPPER);
    dfc_put_le32(vf + 12, (uint32_t)PROF_VALUE_INITIAL);
    vf[16] = PROF_LIMITED_CREDIT;
    run_cmd(h, &s, 0xCC, vf, sizeof vf);
    dfc_session_clear(&s);
}

static void personalize(struct hx *h, const uint8_t *uid, size_t uid_len, struct hx_run *r)
{
    hx_run_op(h, WIRE_OP_PERSONALIZE, TOKEN, WIRE_LISTENER_OPERATOR, uid, uid_len, NULL, r);
    ck_assert(r->have_result);
}

static void assert_refused_untouched(struct hx *h, const struct hx_run *r, const char *before,
                                     const uint8_t *claimed, size_t claimed_len)
{
    char after[4096];
    ck_assert_msg(r->result.status == WIRE_ST_FAILED && r->result.error == WIRE_E_AUTH_FAILED,
                  "expected failed/auth-failed, got %s/%s", wire_status_name(r->result.status),
                  wire_error_name(r->result.error));
    ck_assert_int_ge(r->modals, 1); /* the operator is told why */
    describe(h, after, sizeof after);
    ck_assert_str_eq(after, before);
    struct ledger_card lc = {.uid_len = (uint8_t)claimed_len};
    memcpy(lc.uid, claimed, claimed_len);
    ck_assert(!ledger_mem_personalized(h->lm, &lc));
    ck_assert(!ledger_mem_personalized(h->lm, &h->lcard));
}

static void other_uid_refused(enum sim_picc_key picc)
{
    struct hx h;
    factory(&h, picc);
    char before[4096];
    describe(&h, before, sizeof before);
    struct hx_run r;
    personalize(&h, other_uid, sizeof other_uid, &r);
    assert_refused_untouched(&h, &r, before, other_uid, sizeof other_uid);
    ck_assert(zero_key_authenticates(&h, 0, picc == SIM_PICC_AES0 ? DFC_AES128 : DFC_TDES2));
    /* The same card under its own UID personalizes. */
    personalize(&h, NULL, 0, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    ck_assert(ledger_mem_personalized(h.lm, &h.lcard));
    hx_free(&h);
}

START_TEST(other_uid_refused_des)
{
    other_uid_refused(SIM_PICC_DES0);
}
END_TEST

START_TEST(other_uid_refused_aes)
{
    other_uid_refused(SIM_PICC_AES0);
}
END_TEST

START_TEST(random_id_refused)
{
    /* A random-ID card shows the reader 08 xx xx xx; a client that sends
     * that ID is refused, the card's real UID is accepted. */
    struct hx h;
    factory(&h, SIM_PICC_DES0);
    sim_card_set_flags(h.card, SIM_FLAG_RANDOM_UID);
    static const uint8_t get_data[] = {0xFF, 0xCA, 0x00, 0x00, 0x00};
    uint8_t id[WIRE_MAX_APDU];
    size_t idlen;
    raw(&h, get_data, sizeof get_data, id, &idlen);
    ck_assert_uint_eq(idlen, 6);
    ck_assert_uint_eq(id[0], 0x08);
    char before[4096];
    describe(&h, before, sizeof before);
    struct hx_run r;
    personalize(&h, id, 4, &r);
    assert_refused_untouched(&h, &r, before, id, 4);
    ck_assert(zero_key_authenticates(&h, 0, DFC_TDES2));
    personalize(&h, NULL, 0, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    hx_free(&h);
}
END_TEST

START_TEST(recovery_other_uid_deletes_nothing)
{
    /* A half-made application on this card; the client claims a card the
     * ledger has no history for.  The old recovery deleted the application
     * (the claimed UID's key 0 does not authenticate, the ledger knows no
     * money, the factory PICC key does) and made the card the claimed one. */
    struct hx h;
    factory(&h, SIM_PICC_DES0);
    make_half_made(&h);
    char before[4096];
    describe(&h, before, sizeof before);
    ck_assert_ptr_nonnull(strstr(before, "application C0FFEE"));
    struct hx_run r;
    personalize(&h, other_uid, sizeof other_uid, &r);
    assert_refused_untouched(&h, &r, before, other_uid, sizeof other_uid);
    ck_assert(zero_key_authenticates(&h, PROF_AID_U32, DFC_AES128));
    ck_assert(zero_key_authenticates(&h, 0, DFC_TDES2));
    /* Under its own UID the recovery does its job. */
    personalize(&h, NULL, 0, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    ck_assert(!zero_key_authenticates(&h, PROF_AID_U32, DFC_AES128));
    int c = hx_add_code(&h, 60);
    hx_topup(&h, c, NULL, &r);
    ck_assert_int_eq(r.result.status, WIRE_ST_OK);
    hx_assert_invariants(&h, 1, 0);
    hx_free(&h);
}
END_TEST

START_TEST(swapped_card_refused_before_changes)
{
    /* The relay runs the first part on the claimed card and then answers
     * from another factory card on which it made C0FFEE with the zero key
     * (anyone can): from the second SelectApplication C0FFEE (the one
     * after CreateApplication) every command goes to that card.  Its own
     * authentication is checked again, so nothing is created or keyed on
     * it (before, it got the files and the claimed card's keys). */
    struct hx h;
    factory(&h, SIM_PICC_DES0);
    struct sim_card *mine = h.card;
    struct sim_card *other = sim_card_new(other_uid, sizeof other_uid, SIM_PICC_DES0);
    ck_assert_ptr_nonnull(other);
    h.card = other;
    struct dfc_session s;
    select_aid(&h, 0);
    ck_assert_int_eq(auth(&h, DFC_TDES2, &s), 0);
    uint8_t app[5] = {PROF_AID_0, PROF_AID_1, PROF_AID_2, PROF_APP_KEY_SETTINGS,
                      0x80 | PROF_NUM_KEYS};
    run_cmd(&h, &s, 0xCA, app, sizeof app);
    dfc_session_clear(&s);
    char before[4096], after[4096];
    describe(&h, before, sizeof before);
    h.card = mine;

    h.relay_card = other;
    h.relay_select_app = 2;
    struct hx_run r;
    personalize(&h, NULL, 0, &r);
    ck_assert_msg(r.result.status == WIRE_ST_FAILED && r.result.error == WIRE_E_AUTH_FAILED,
                  "expected failed/auth-failed, got %s/%s", wire_status_name(r.result.status),
                  wire_error_name(r.result.error));
    h.relay_card = NULL;
    h.card = other;
    describe(&h, after, sizeof after);
    ck_assert_str_eq(after, before);
    ck_assert(zero_key_authenticates(&h, PROF_AID_U32, DFC_AES128));
    h.card = mine;
    ck_assert(!ledger_mem_personalized(h.lm, &h.lcard));
    sim_card_free(other);
    hx_free(&h);
}
END_TEST

START_TEST(tampered_card_uid_is_integrity)
{
    /* GetCardUID is the exchange right after the first authentication
     * (select app, select PICC, auth x2, GetCardUID = index 4): one flipped
     * bit fails its CRC32 and nothing changes on the card. */
    struct hx h;
    factory(&h, SIM_PICC_DES0);
    char before[4096], after[4096];
    describe(&h, before, sizeof before);
    struct hx_fault f = {.kind = HX_TAMPER, .at = 4, .pos = 3};
    struct hx_run r;
    hx_run_op(&h, WIRE_OP_PERSONALIZE, TOKEN, WIRE_LISTENER_OPERATOR, NULL, 0, &f, &r);
    ck_assert(r.fault_applied);
    ck_assert_int_eq(r.result.status, WIRE_ST_FAILED);
    ck_assert_int_eq(r.result.error, WIRE_E_INTEGRITY);
    describe(&h, after, sizeof after);
    ck_assert_str_eq(after, before);
    hx_free(&h);
}
END_TEST

static Suite *uid_suite(void)
{
    Suite *s = suite_create("engine_uid");
    TCase *tc = tcase_create("uid");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, other_uid_refused_des);
    tcase_add_test(tc, other_uid_refused_aes);
    tcase_add_test(tc, random_id_refused);
    tcase_add_test(tc, recovery_other_uid_deletes_nothing);
    tcase_add_test(tc, swapped_card_refused_before_changes);
    tcase_add_test(tc, tampered_card_uid_is_integrity);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test_engine_uid", "-", 0, LOG_LVL_ERROR);
    SRunner *sr = srunner_create(uid_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
