/* op_personalize: gives a factory card the profile of docs/PROTOCOL.md §5
 * (operator listener only; the operator token verified before it starts).
 *
 * Factory card:
 *   select PICC, authenticate the factory PICC key (all-zero DES via 0x1A,
 *   or all-zero AES via 0xAA per card.picc_key), CreateApplication C0FFEE,
 *   select it, authenticate key 0 (all-zero AES), CreateValueFile 1,
 *   CreateCyclicRecordFile 2, ChangeKey 1, 2, 3 (old key zero), ChangeKey 0
 *   (same-key form) -- all to the AN10922-diversified keys -- then the PICC
 *   part: select PICC, authenticate the factory PICC key again,
 *   ChangeKeySettings (PROF_PICC_KEY_SETTINGS), ChangeKey 0 to the
 *   diversified AES PICC key (key type 0x80); record PERSONALIZED.
 *
 * Recovery: the order makes every interrupted run finishable by a retry,
 * which first looks at where the card is:
 *   - C0FFEE missing: nothing was changed yet beyond maybe the
 *     application's absence; run the factory flow (the PICC key is still
 *     the factory key, because it is changed last).
 *   - C0FFEE present and its diversified key 0 authenticates: the
 *     application is complete (key 0 is changed last).  If the diversified
 *     PICC key also authenticates, the card already has the profile and is
 *     left as it is; otherwise only the PICC part runs again
 *     (ChangeKeySettings is idempotent, ChangeKey 0 comes last).
 *   - C0FFEE present but key 0 is still the all-zero key: a run stopped
 *     between CreateApplication and ChangeKey 0.  Which keys and files it
 *     reached is unknown (and anyone knowing the zero key could have
 *     changed them), so the half-made application is deleted under the
 *     factory PICC key and made again -- but only if the ledger has no
 *     history for this card (a card that was ever topped up is never
 *     deleted; ops handle it: unsupported-card).
 *
 * The card is the UID the client claims only once it says so itself: every
 * authentication is followed by GetCardUID under it (the answer enciphered
 * with CRC32 under the session key, so only the card that authenticated
 * can give it), and a UID other than the claimed one ends the session
 * before any command that changes the card.  Each authentication checks
 * again, since a relay could put another card on the reader between two.
 *
 * Must never change a PICC key before the application is complete, never
 * delete an application the ledger knows money for, and never change or
 * delete anything on a card whose real UID is not the claimed one. */
#include <string.h>

#include "engine_int.h"
#include "log.h"
#include "ota_err.h"

static const uint8_t zero_key[16];

static void step_select_app(struct eng_session *s);
static void after_select_app(struct eng_session *s, int rc);
static void step_auth_app_master(struct eng_session *s);
static void after_auth_app_master(struct eng_session *s, int rc);
/* The application is complete: check the PICC key. */
static void step_check_picc_select(struct eng_session *s);
static void after_check_picc_select(struct eng_session *s, int rc);
static void after_check_picc_auth(struct eng_session *s, int rc);
/* A half-made application. */
static void step_half_card_state(struct eng_session *s);
static void after_half_card_state(struct eng_session *s, const struct ledger_reply *r);
static void after_half_select_picc(struct eng_session *s, int rc);
static void after_half_auth_picc(struct eng_session *s, int rc);
static void after_delete_app(struct eng_session *s, int rc);
/* The factory flow. */
static void step_factory_select_picc(struct eng_session *s);
static void after_factory_select_picc(struct eng_session *s, int rc);
static void after_factory_auth_picc(struct eng_session *s, int rc);
static void step_create_app(struct eng_session *s);
static void after_create_app(struct eng_session *s, int rc);
static void after_select_new_app(struct eng_session *s, int rc);
static void after_auth_zero_master(struct eng_session *s, int rc);
static void after_create_value_file(struct eng_session *s, int rc);
static void after_create_record_file(struct eng_session *s, int rc);
static void step_change_app_key(struct eng_session *s);
static void after_change_app_key(struct eng_session *s, int rc);
static void after_change_app_master(struct eng_session *s, int rc);
/* The PICC part. */
static void step_picc_select(struct eng_session *s);
static void after_picc_select(struct eng_session *s, int rc);
static void after_picc_auth(struct eng_session *s, int rc);
static void after_picc_key_settings(struct eng_session *s, int rc);
static void after_picc_change_key(struct eng_session *s, int rc);
static void step_personalized(struct eng_session *s);
static void after_personalized(struct eng_session *s, const struct ledger_reply *r);

void op_personalize_start(struct eng_session *s)
{
    step_select_app(s);
}

static int failed(struct eng_session *s, int rc)
{
    if (rc == 0)
        return 0;
    eng_fail(s, card_error(s, rc));
    return 1;
}

static void plain_cmd(struct eng_session *s, uint8_t ins, const uint8_t *data, size_t len,
                      eng_card_cb cb)
{
    struct dfc_cmd_spec spec = {.ins = ins,
                                .data = data,
                                .data_len = len,
                                .cmd_comm = DFC_COMM_PLAIN,
                                .resp_comm = DFC_COMM_MAC,
                                .resp_len = 0};
    card_cmd(s, &spec, cb);
}

static void after_auth_read_uid(struct eng_session *s, int rc);
static void after_get_card_uid(struct eng_session *s, int rc);

/* Authenticates, then reads the real UID under the new session; cb gets
 * the authentication's error, or 0 once the UID is the claimed one. */
static void auth_then_uid(struct eng_session *s, enum dfc_cipher cipher, uint8_t keyno,
                          const uint8_t *key, eng_card_cb cb)
{
    s->perso_then = cb;
    card_auth(s, cipher, keyno, key, after_auth_read_uid);
}

static void after_auth_read_uid(struct eng_session *s, int rc)
{
    if (rc != 0) {
        eng_card_cb then = s->perso_then;
        s->perso_then = NULL;
        then(s, rc);
        return;
    }
    /* The length is the card's own (4 or 7 bytes): it is compared below,
     * so a card with another UID length is refused, not an integrity
     * failure.  The CRC32 and the padding are still checked exactly. */
    struct dfc_cmd_spec spec = {
        .ins = 0x51, .cmd_comm = DFC_COMM_PLAIN, .resp_comm = DFC_COMM_ENC, .resp_len = -1};
    card_cmd(s, &spec, after_get_card_uid);
}

static void after_get_card_uid(struct eng_session *s, int rc)
{
    eng_card_cb then = s->perso_then;
    s->perso_then = NULL;
    if (failed(s, rc))
        return;
    size_t n = 0;
    const uint8_t *uid = card_resp(s, &n);
    if (n != s->card.uid_len || memcmp(uid, s->card.uid, n) != 0) {
        char claimed[8], real[8];
        log_warn("card_uid_mismatch", "session=%llu step=%s uid=%s card_uid=%s card_uid_len=%zu",
                 (unsigned long long)s->id, s->step,
                 log_uid_tail(s->card.uid, s->card.uid_len, claimed), log_uid_tail(uid, n, real),
                 n);
        eng_emit_modal(s, "This card's UID is not the UID that was sent: personalization refused, "
                          "nothing was changed");
        eng_fail(s, WIRE_E_AUTH_FAILED);
        return;
    }
    then(s, 0);
}

static void auth_factory_picc(struct eng_session *s, eng_card_cb cb)
{
    if (s->ctx->cfg.picc_key == ENG_PICC_AES0)
        auth_then_uid(s, DFC_AES128, 0, zero_key, cb);
    else
        auth_then_uid(s, DFC_TDES2, 0, zero_key, cb); /* DES K||K, ISO 0x1A */
}

static void step_select_app(struct eng_session *s)
{
    s->step = "select_app";
    card_select(s, PROF_AID_U32, after_select_app);
}

static void after_select_app(struct eng_session *s, int rc)
{
    if (rc == OTA_ERR_CARD_STATUS && card_status(s) == DFC_ST_APPLICATION_NOT_FOUND) {
        step_factory_select_picc(s);
        return;
    }
    if (failed(s, rc))
        return;
    step_auth_app_master(s);
}

static void step_auth_app_master(struct eng_session *s)
{
    s->step = "auth_app_master";
    auth_then_uid(s, DFC_AES128, PROF_KEY_MASTER, s->keys->app[PROF_KEY_MASTER],
                  after_auth_app_master);
}

static void after_auth_app_master(struct eng_session *s, int rc)
{
    if (rc == 0) {
        step_check_picc_select(s);
        return;
    }
    if (rc == OTA_ERR_AUTH) {
        step_half_card_state(s);
        return;
    }
    eng_fail(s, card_error(s, rc));
}

/* The application is complete; is the PICC key ours already? */
static void step_check_picc_select(struct eng_session *s)
{
    s->step = "check_picc_select";
    card_select(s, 0, after_check_picc_select);
}

static void after_check_picc_select(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    s->step = "check_picc_auth";
    auth_then_uid(s, DFC_AES128, 0, s->keys->picc, after_check_picc_auth);
}

static void after_check_picc_auth(struct eng_session *s, int rc)
{
    if (rc == 0) {
        char tail[8];
        log_info("card_already_personalized", "session=%llu uid=%s", (unsigned long long)s->id,
                 log_uid_tail(s->card.uid, s->card.uid_len, tail));
        step_personalized(s);
        return;
    }
    if (rc == OTA_ERR_AUTH || rc == OTA_ERR_CARD_STATUS) {
        step_picc_select(s);
        return;
    }
    eng_fail(s, card_error(s, rc));
}

/* A half-made application: delete and redo, only for a card without money. */
static void step_half_card_state(struct eng_session *s)
{
    struct ledger_req req;
    s->step = "half_card_state";
    eng_ledger_init(s, &req, LEDGER_CARD_STATE);
    eng_ledger_send(s, &req, after_half_card_state);
}

static void after_half_card_state(struct eng_session *s, const struct ledger_reply *r)
{
    if (r->status != LEDGER_ST_OK) {
        eng_fail(s, WIRE_E_INTERNAL);
        return;
    }
    if (r->u.card.has_history) {
        char tail[8];
        log_warn("card_unsupported",
                 "session=%llu uid=%s why=\"application key 0 unknown on a "
                 "card with ledger history\"",
                 (unsigned long long)s->id, log_uid_tail(s->card.uid, s->card.uid_len, tail));
        eng_fail(s, WIRE_E_UNSUPPORTED_CARD);
        return;
    }
    s->step = "half_select_picc";
    card_select(s, 0, after_half_select_picc);
}

static void after_half_select_picc(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    s->step = "half_auth_picc";
    auth_factory_picc(s, after_half_auth_picc);
}

static void after_half_auth_picc(struct eng_session *s, int rc)
{
    if (rc == OTA_ERR_AUTH) {
        eng_fail(s, WIRE_E_UNSUPPORTED_CARD);
        return;
    }
    if (failed(s, rc))
        return;
    s->step = "delete_app";
    uint8_t aid[3] = {PROF_AID_0, PROF_AID_1, PROF_AID_2};
    plain_cmd(s, 0xDA, aid, sizeof(aid), after_delete_app);
}

static void after_delete_app(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    step_create_app(s);
}

/* The factory flow. */
static void step_factory_select_picc(struct eng_session *s)
{
    s->step = "factory_select_picc";
    card_select(s, 0, after_factory_select_picc);
}

static void after_factory_select_picc(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    s->step = "factory_auth_picc";
    auth_factory_picc(s, after_factory_auth_picc);
}

static void after_factory_auth_picc(struct eng_session *s, int rc)
{
    if (rc == OTA_ERR_AUTH) {
        eng_fail(s, WIRE_E_UNSUPPORTED_CARD); /* not a factory PICC key */
        return;
    }
    if (failed(s, rc))
        return;
    step_create_app(s);
}

static void step_create_app(struct eng_session *s)
{
    s->step = "create_app";
    uint8_t data[5] = {PROF_AID_0, PROF_AID_1, PROF_AID_2, PROF_APP_KEY_SETTINGS,
                       0x80 | PROF_NUM_KEYS};
    plain_cmd(s, 0xCA, data, sizeof(data), after_create_app);
}

static void after_create_app(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    s->step = "select_new_app";
    card_select(s, PROF_AID_U32, after_select_new_app);
}

static void after_select_new_app(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    s->step = "auth_zero_master";
    auth_then_uid(s, DFC_AES128, PROF_KEY_MASTER, zero_key, after_auth_zero_master);
}

static void after_auth_zero_master(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    s->step = "create_value_file";
    uint8_t d[17];
    d[0] = PROF_FILE_VALUE;
    d[1] = PROF_COMM_ENC;
    d[2] = PROF_VALUE_ACCESS & 0xFF;
    d[3] = PROF_VALUE_ACCESS >> 8;
    dfc_put_le32(d + 4, (uint32_t)PROF_VALUE_LOWER);
    dfc_put_le32(d + 8, (uint32_t)PROF_VALUE_UPPER);
    dfc_put_le32(d + 12, (uint32_t)PROF_VALUE_INITIAL);
    d[16] = PROF_LIMITED_CREDIT;
    plain_cmd(s, 0xCC, d, sizeof(d), after_create_value_file);
}

static void after_create_value_file(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    s->step = "create_record_file";
    uint8_t d[10] = {PROF_FILE_RECORDS,
                     PROF_COMM_ENC,
                     PROF_RECORD_ACCESS & 0xFF,
                     PROF_RECORD_ACCESS >> 8,
                     PROF_RECORD_SIZE,
                     0,
                     0,
                     PROF_RECORD_COUNT,
                     0,
                     0};
    plain_cmd(s, 0xC0, d, sizeof(d), after_create_record_file);
}

static void after_create_record_file(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    s->perso_path = 1; /* next application key to change */
    step_change_app_key(s);
}

static void step_change_app_key(struct eng_session *s)
{
    s->step = "change_app_key";
    uint8_t k = (uint8_t)s->perso_path;
    card_changekey(s, k, s->keys->app[k], zero_key, after_change_app_key);
}

static void after_change_app_key(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    if (++s->perso_path < PROF_NUM_KEYS) {
        step_change_app_key(s);
        return;
    }
    /* Key 0 last: from here on the application is complete. */
    s->step = "change_app_master";
    card_changekey(s, PROF_KEY_MASTER, s->keys->app[PROF_KEY_MASTER], NULL,
                   after_change_app_master);
}

static void after_change_app_master(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    step_picc_select(s);
}

/* The PICC part: settings first, the key last. */
static void step_picc_select(struct eng_session *s)
{
    s->step = "picc_select";
    card_select(s, 0, after_picc_select);
}

static void after_picc_select(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    s->step = "picc_auth";
    auth_factory_picc(s, after_picc_auth);
}

static void after_picc_auth(struct eng_session *s, int rc)
{
    if (rc == OTA_ERR_AUTH) {
        eng_fail(s, WIRE_E_UNSUPPORTED_CARD);
        return;
    }
    if (failed(s, rc))
        return;
    s->step = "picc_key_settings";
    uint8_t settings = PROF_PICC_KEY_SETTINGS;
    struct dfc_cmd_spec spec = {.ins = 0x54,
                                .data = &settings,
                                .data_len = 1,
                                .cmd_comm = DFC_COMM_ENC,
                                .resp_comm = DFC_COMM_MAC,
                                .resp_len = 0};
    card_cmd(s, &spec, after_picc_key_settings);
}

static void after_picc_key_settings(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    s->step = "picc_change_key";
    card_changekey(s, 0x80, s->keys->picc, NULL, after_picc_change_key);
}

static void after_picc_change_key(struct eng_session *s, int rc)
{
    if (failed(s, rc))
        return;
    char tail[8];
    log_info("card_personalized", "session=%llu uid=%s", (unsigned long long)s->id,
             log_uid_tail(s->card.uid, s->card.uid_len, tail));
    step_personalized(s);
}

static void step_personalized(struct eng_session *s)
{
    struct ledger_req req;
    s->step = "personalized";
    eng_ledger_init(s, &req, LEDGER_PERSONALIZED);
    eng_ledger_send(s, &req, after_personalized);
}

static void after_personalized(struct eng_session *s, const struct ledger_reply *r)
{
    if (r->status != LEDGER_ST_OK)
        log_warn("ledger_personalized_failed", "session=%llu status=%s", (unsigned long long)s->id,
                 ledger_status_name(r->status));
    eng_succeed(s);
}
