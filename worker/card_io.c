/* card_io: the engine's card exchanges.  Starts one DESFire command or
 * authentication (through the sans-I/O reader core), emits its APDUs, feeds
 * the card's answers back and calls the step's continuation with the
 * result.  Also derives the session's per-card keys (AN10922).
 *
 * Must never send a command past the operation's deadline or after the
 * client said it lost the card, and never keep a key beyond the session. */
#include <string.h>

#include "desfire_crypto.h"
#include "engine_int.h"
#include "log.h"
#include "ota_err.h"

int card_derive_keys(struct eng_session *s)
{
    const struct eng_config *cfg = &s->ctx->cfg;
    size_t sid_len = strnlen(cfg->system_id, sizeof(cfg->system_id));
    uint8_t m[WIRE_MAX_UID + 3 + ENG_SYSTEM_ID_MAX];
    size_t n = 0;
    memcpy(m, s->card.uid, s->card.uid_len);
    n += s->card.uid_len;
    m[n++] = PROF_AID_0;
    m[n++] = PROF_AID_1;
    m[n++] = PROF_AID_2;
    memcpy(m + n, cfg->system_id, sid_len);
    n += sid_len;
    int rc = 0;
    for (int k = 0; k < PROF_NUM_KEYS && rc == 0; k++)
        rc = dfc_an10922_aes128(s->ctx->keys->app[k], m, n, s->keys->app[k]);
    /* The PICC key: the same input with the PICC's AID 000000. */
    m[s->card.uid_len] = 0;
    m[s->card.uid_len + 1] = 0;
    m[s->card.uid_len + 2] = 0;
    if (rc == 0)
        rc = dfc_an10922_aes128(s->ctx->keys->app[PROF_MASTER_PICC], m, n, s->keys->picc);
    dfc_wipe(m, sizeof(m));
    return rc;
}

/* Refuses to send when the client lost the card or the operation's time is
 * up; the session then fails through the one closing path. */
static int may_send(struct eng_session *s)
{
    if (s->client_lost) {
        eng_fail(s, s->lost_err);
        return 0;
    }
    if (s->now_ms >= s->op_deadline_ms) {
        log_info("operation_timeout", "session=%llu step=%s", (unsigned long long)s->id, s->step);
        eng_fail(s, WIRE_E_TIMEOUT);
        return 0;
    }
    return 1;
}

static int started(struct eng_session *s, int rc, const uint8_t *apdu, size_t len, eng_card_cb cb)
{
    if (rc != 0) {
        log_error("card_command_build_failed", "session=%llu step=%s err=%s",
                  (unsigned long long)s->id, s->step, ota_strerror(rc));
        eng_fail(s, WIRE_E_INTERNAL);
        return rc;
    }
    s->io.cb = cb;
    eng_emit_apdu(s, apdu, len);
    return 0;
}

static void select_answered(struct eng_session *s, int rc);

static void send_select(struct eng_session *s)
{
    if (!may_send(s))
        return;
    uint32_t aid = s->io.select_aid;
    uint8_t data[3] = {(uint8_t)aid, (uint8_t)(aid >> 8), (uint8_t)(aid >> 16)};
    struct dfc_cmd_spec spec = {.ins = 0x5A,
                                .data = data,
                                .data_len = sizeof(data),
                                .cmd_comm = DFC_COMM_PLAIN,
                                .resp_comm = DFC_COMM_PLAIN,
                                .resp_len = 0};
    /* Selecting ends any authentication, on the card and here. */
    dfc_session_clear(&s->io.dsess);
    uint8_t apdu[DFC_APDU_MAX];
    size_t len = 0;
    s->io.is_auth = 0;
    s->io.authed = 0;
    int rc = dfc_cmd_start(&s->io.cmd, NULL, &spec, apdu, sizeof(apdu), &len);
    started(s, rc, apdu, len, select_answered);
}

/* A card left in the middle of a chained command (an earlier session cut
 * between two frames) answers the next command with 0xCA and does not run
 * it; selecting is harmless to repeat, so it is sent once more. */
static void select_answered(struct eng_session *s, int rc)
{
    if (rc == OTA_ERR_CARD_STATUS && s->io.cmd.status == DFC_ST_COMMAND_ABORTED &&
        !s->io.select_retried) {
        s->io.select_retried = 1;
        send_select(s);
        return;
    }
    s->io.select_retried = 0;
    eng_card_cb cb = s->io.select_cb;
    s->io.select_cb = NULL;
    cb(s, rc);
}

void card_select(struct eng_session *s, uint32_t aid, eng_card_cb cb)
{
    s->io.select_aid = aid;
    s->io.select_cb = cb;
    s->io.select_retried = 0;
    send_select(s);
}

void card_auth(struct eng_session *s, enum dfc_cipher cipher, uint8_t keyno, const uint8_t *key,
               eng_card_cb cb)
{
    if (!may_send(s))
        return;
    dfc_session_clear(&s->io.dsess);
    uint8_t apdu[DFC_APDU_MAX];
    size_t len = 0;
    s->io.is_auth = 1;
    s->io.authed = 0;
    int rc = dfc_auth_start(&s->io.auth, cipher, keyno, key, apdu, sizeof(apdu), &len);
    started(s, rc, apdu, len, cb);
}

void card_cmd(struct eng_session *s, const struct dfc_cmd_spec *spec, eng_card_cb cb)
{
    if (!may_send(s))
        return;
    uint8_t apdu[DFC_APDU_MAX];
    size_t len = 0;
    s->io.is_auth = 0;
    s->io.authed = s->io.dsess.active;
    int rc = dfc_cmd_start(&s->io.cmd, s->io.dsess.active ? &s->io.dsess : NULL, spec, apdu,
                           sizeof(apdu), &len);
    started(s, rc, apdu, len, cb);
}

void card_changekey(struct eng_session *s, uint8_t keyno_byte, const uint8_t *new_key,
                    const uint8_t *old_key, eng_card_cb cb)
{
    if (!may_send(s))
        return;
    uint8_t apdu[DFC_APDU_MAX];
    size_t len = 0;
    s->io.is_auth = 0;
    s->io.authed = s->io.dsess.active;
    int rc = dfc_cmd_start_changekey(&s->io.cmd, &s->io.dsess, keyno_byte, DFC_AES128, new_key, 1,
                                     old_key, apdu, sizeof(apdu), &len);
    started(s, rc, apdu, len, cb);
}

void card_on_answer(struct eng_session *s, const uint8_t *data, size_t len)
{
    uint8_t apdu[DFC_APDU_MAX];
    size_t alen = 0;
    int rc;
    if (s->io.is_auth)
        rc = dfc_auth_feed(&s->io.auth, data, len, apdu, sizeof(apdu), &alen, &s->io.dsess);
    else
        rc = dfc_cmd_feed(&s->io.cmd, data, len, apdu, sizeof(apdu), &alen);
    if (rc == DFC_MORE) {
        /* A continuation frame is a card command too: none past the
         * operation's deadline (the lease must never be outlived). */
        if (s->now_ms >= s->op_deadline_ms) {
            dfc_wipe(apdu, sizeof(apdu));
            s->state = ES_RUNNING;
            eng_fail(s, WIRE_E_TIMEOUT);
            return;
        }
        eng_emit_apdu(s, apdu, alen);
        return;
    }
    s->state = ES_RUNNING;
    if (s->io.is_auth)
        dfc_auth_clear(&s->io.auth);
    eng_card_cb cb = s->io.cb;
    s->io.cb = NULL;
    cb(s, rc);
}

uint8_t card_status(const struct eng_session *s)
{
    return s->io.is_auth ? 0 : s->io.cmd.status; /* the auth core keeps no status */
}

const uint8_t *card_resp(const struct eng_session *s, size_t *len)
{
    *len = s->io.cmd.resp_len_out;
    return s->io.cmd.resp;
}

enum wire_error card_error(struct eng_session *s, int rc)
{
    switch (rc) {
    case OTA_ERR_MAC:
    case OTA_ERR_CRC:
    case OTA_ERR_LENGTH:
        if (s->io.authed) {
            eng_note_integrity(s, ota_strerror(rc));
            return WIRE_E_INTEGRITY;
        }
        return WIRE_E_CARD_ERROR;
    case OTA_ERR_CARD_STATUS:
        if (!s->io.is_auth && s->io.cmd.status == DFC_ST_INTEGRITY_ERROR && s->io.authed) {
            /* The card could not verify our command: its IV moved, which
             * is what a command slipped in by the relay does. */
            eng_note_integrity(s, "card status 1E");
            return WIRE_E_INTEGRITY;
        }
        log_info("card_status", "session=%llu step=%s status=%02x", (unsigned long long)s->id,
                 s->step, (unsigned)s->io.cmd.status);
        return WIRE_E_CARD_ERROR;
    case OTA_ERR_AUTH:
        return WIRE_E_AUTH_FAILED;
    case OTA_ERR_SW1:
        return WIRE_E_CARD_ERROR;
    default:
        log_error("card_exchange_failed", "session=%llu step=%s err=%s", (unsigned long long)s->id,
                  s->step, ota_strerror(rc));
        return WIRE_E_INTERNAL;
    }
}
