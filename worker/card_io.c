/* card_io: the engine's card exchanges, and the one place that plans
 * batches (PROTOCOL v2).
 *
 * An operation queues the commands of its next step (card_select,
 * card_auth, card_cmd, card_changekey), each with the continuation that
 * checks its answer.  When the event ends, card_flush() sends what can go
 * now as one batch: the commands whose bytes the server already knows.  In
 * EV1 secure messaging a command's bytes depend on the running IV only when
 * it carries MACed or enciphered data, and the IV after an answer is known
 * in advance only when the answer carries no data the server does not know
 * (status only, or the status and its CMAC).  The planner finds out by
 * running the queued commands through the reader core on a scratch copy of
 * the session, feeding it the answers it can predict; it stops before the
 * first command whose bytes it cannot know, after an authentication's first
 * part, and at the client's batch size (1 for a v1 client: one APDU at a
 * time, as before).  Continuation frames of a long answer whose length is
 * known ("90 AF") join the batch too.
 *
 * The answers are then fed back in order through the real session, each
 * command started for real and checked to be byte for byte the one that was
 * sent, each answer verified exactly as if its command had been sent alone,
 * and each continuation called in turn.  A missing answer is the fault at
 * that command (lost tag); answers beyond the batch are ignored.
 *
 * Must never send a command past the operation's deadline or after the
 * client said it lost the card, never put a money-moving command
 * (WriteRecord, Credit, CommitTransaction) in a batch before the top-up's
 * code is reserved, and never keep a key beyond the session. */
#include <string.h>

#include "desfire_apdu.h"
#include "desfire_crypto.h"
#include "engine_int.h"
#include "log.h"
#include "ota_err.h"

#define INS_SELECT 0x5A
#define INS_WRITE_RECORD 0x3B
#define INS_CREDIT 0x0C
#define INS_COMMIT 0xC7
#define CMAC_LEN 8
#define CRC_LEN 4

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

/* ---- the queue ---- */

static struct card_step *enqueue(struct eng_session *s, enum card_kind kind, eng_card_cb cb)
{
    struct card_io *io = &s->io;
    if (io->nq >= CARD_QUEUE_MAX) {
        log_error("card_queue_full", "session=%llu step=%s", (unsigned long long)s->id, s->step);
        io->overflow = 1;
        return NULL;
    }
    struct card_step *st = &io->queue[io->nq++];
    memset(st, 0, sizeof(*st));
    st->kind = kind;
    st->cb = cb;
    st->name = s->step;
    return st;
}

void card_select(struct eng_session *s, uint32_t aid, eng_card_cb cb)
{
    struct card_step *st = enqueue(s, CARD_SELECT, cb);
    if (!st)
        return;
    st->hdr[0] = (uint8_t)aid;
    st->hdr[1] = (uint8_t)(aid >> 8);
    st->hdr[2] = (uint8_t)(aid >> 16);
    st->spec = (struct dfc_cmd_spec){.ins = INS_SELECT,
                                     .data_len = 3,
                                     .cmd_comm = DFC_COMM_PLAIN,
                                     .resp_comm = DFC_COMM_PLAIN,
                                     .resp_len = 0};
}

void card_auth(struct eng_session *s, enum dfc_cipher cipher, uint8_t keyno, const uint8_t *key,
               eng_card_cb cb)
{
    struct card_step *st = enqueue(s, CARD_AUTH, cb);
    if (!st)
        return;
    st->cipher = cipher;
    st->keyno = keyno;
    st->key = key;
}

void card_cmd(struct eng_session *s, const struct dfc_cmd_spec *spec, eng_card_cb cb)
{
    struct card_step *st = enqueue(s, CARD_CMD, cb);
    if (!st)
        return;
    if (spec->hdr_len > sizeof(st->hdr) || spec->data_len > sizeof(st->data)) {
        s->io.overflow = 1;
        return;
    }
    st->spec = *spec;
    /* A command without header or data bytes passes NULL pointers. */
    if (spec->hdr_len)
        memcpy(st->hdr, spec->hdr, spec->hdr_len);
    if (spec->data_len)
        memcpy(st->data, spec->data, spec->data_len);
}

void card_changekey(struct eng_session *s, uint8_t keyno_byte, const uint8_t *new_key,
                    const uint8_t *old_key, eng_card_cb cb)
{
    struct card_step *st = enqueue(s, CARD_CHANGEKEY, cb);
    if (!st)
        return;
    st->keyno = keyno_byte;
    st->key = new_key;
    st->old_key = old_key;
}

/* The step's spec with its buffers pointing into the step. */
static struct dfc_cmd_spec spec_of(const struct card_step *st)
{
    struct dfc_cmd_spec sp = st->spec;
    sp.hdr = sp.hdr_len ? st->hdr : NULL;
    sp.data = st->kind == CARD_SELECT ? st->hdr : (sp.data_len ? st->data : NULL);
    return sp;
}

static void pop_head(struct card_io *io)
{
    memmove(&io->queue[0], &io->queue[1], (size_t)(io->nq - 1) * sizeof(io->queue[0]));
    io->nq--;
    dfc_wipe(&io->queue[io->nq], sizeof(io->queue[0]));
}

void card_drop(struct eng_session *s)
{
    struct card_io *io = &s->io;
    dfc_wipe(io->queue, sizeof(io->queue));
    io->nq = 0;
    io->have_cur = 0;
    io->nsent = 0;
    io->pending_len = 0;
    io->overflow = 0;
}

/* ---- planning a batch (dry run on a scratch session) ---- */

struct plan {
    struct eng_session *s;
    struct dfc_session sc; /* the session as it will be after the answers so far */
    int key_known;         /* sc's key is known (not just after an authentication) */
    int iv_known;          /* every answer so far carried nothing unknown */
    struct dfc_cmd c;
    int cap;
    int full;
};

static int money_moving(uint8_t ins)
{
    return ins == INS_WRITE_RECORD || ins == INS_CREDIT || ins == INS_COMMIT;
}

static void add(struct plan *p, const uint8_t *apdu, size_t len)
{
    struct card_io *io = &p->s->io;
    memcpy(io->sent[io->nsent], apdu, len);
    io->sent_len[io->nsent] = len;
    io->nsent++;
    if (io->nsent >= p->cap)
        p->full = 1;
}

/* The answer data length on the wire of a command whose data length is
 * known, or 0 if unknown. */
static size_t answer_wire_len(const struct dfc_cmd *c, int in_session, size_t bs)
{
    if (c->resp_len < 0)
        return 0;
    size_t d = (size_t)c->resp_len;
    if (!in_session)
        return d;
    if (c->resp_comm == DFC_COMM_ENC)
        return (d + CRC_LEN + bs - 1) / bs * bs;
    return d + CMAC_LEN;
}

/* Runs the scratch command p->c (its first APDU already in the batch) to
 * its end: command continuation frames (the card answers AF, no data),
 * then its answer, predicted when it carries nothing unknown, else the
 * continuation frames a long answer of known length needs. */
static void dry_finish(struct plan *p)
{
    uint8_t apdu[DFC_APDU_MAX];
    size_t alen = 0;
    static const uint8_t more[2] = {0x91, DFC_ST_ADDITIONAL_FRAME};
    while (p->c.state == DFC_CMD_SENDING) {
        if (p->full)
            return;
        if (dfc_cmd_feed(&p->c, more, sizeof(more), apdu, sizeof(apdu), &alen) != DFC_MORE) {
            p->full = 1;
            return;
        }
        add(p, apdu, alen);
    }
    int in_session = p->c.sess != NULL || !p->key_known;
    if (p->c.state != DFC_CMD_RECEIVING)
        return;
    if (p->c.resp_len == 0 && !p->c.changekey_same && p->iv_known &&
        (p->c.sess != NULL || !in_session) && p->c.resp_comm != DFC_COMM_ENC) {
        /* Status only: the answer is 91 00, after its CMAC in a session. */
        uint8_t ans[CMAC_LEN + 2];
        size_t n = 0;
        if (p->c.sess) {
            uint8_t full[DFC_MAX_BLOCK];
            static const uint8_t ok = DFC_ST_OK;
            dfc_cmac(p->sc.cipher, p->sc.key, p->sc.iv, &ok, 1, full);
            memcpy(ans, full, CMAC_LEN);
            dfc_wipe(full, sizeof(full));
            n = CMAC_LEN;
        }
        ans[n++] = 0x91;
        ans[n++] = DFC_ST_OK;
        if (dfc_cmd_feed(&p->c, ans, n, apdu, sizeof(apdu), &alen) != 0)
            p->iv_known = 0;
        return;
    }
    if (p->c.changekey_same) {
        p->sc.active = 0; /* the card ends the session */
        return;
    }
    size_t len = answer_wire_len(&p->c, in_session, dfc_block_size(p->sc.cipher));
    /* The frame last added brings up to DFC_FRAME_MAX_RESP more bytes. */
    for (size_t got = p->c.acc_len + DFC_FRAME_MAX_RESP; got < len && !p->full;
         got += DFC_FRAME_MAX_RESP) {
        if (dfc_apdu_build(DFC_ST_ADDITIONAL_FRAME, NULL, 0, apdu, sizeof(apdu), &alen) != 0)
            return;
        add(p, apdu, alen);
    }
    if (in_session)
        p->iv_known = 0;
}

/* Adds queued step j if its bytes are known; returns 0 to go on planning. */
static int plan_step(struct plan *p, const struct card_step *st)
{
    uint8_t apdu[DFC_APDU_MAX];
    size_t alen = 0;
    struct dfc_cmd_spec sp = spec_of(st);
    int in_session = p->sc.active || !p->key_known;
    int rc;
    switch (st->kind) {
    case CARD_SELECT:
        dfc_session_clear(&p->sc);
        p->key_known = 1;
        p->iv_known = 1;
        rc = dfc_cmd_start(&p->c, NULL, &sp, apdu, sizeof(apdu), &alen);
        break;
    case CARD_AUTH: {
        struct dfc_auth a;
        memset(&a, 0, sizeof(a));
        rc = dfc_auth_start(&a, st->cipher, st->keyno, st->key, apdu, sizeof(apdu), &alen);
        dfc_auth_clear(&a);
        if (rc == 0)
            add(p, apdu, alen);
        return 1; /* its second part depends on the card's answer */
    }
    case CARD_CHANGEKEY:
        if (!p->iv_known || !p->key_known)
            return 1;
        rc = dfc_cmd_start_changekey(&p->c, &p->sc, st->keyno, DFC_AES128, st->key, 1, st->old_key,
                                     apdu, sizeof(apdu), &alen);
        break;
    default:
        if (money_moving(sp.ins) && !topup_reserved(p->s))
            return -1;
        if (in_session && sp.cmd_comm != DFC_COMM_PLAIN && (!p->iv_known || !p->key_known))
            return 1;
        /* A plain command's bytes are the same with or without the
         * session; with an unknown key only its bytes are planned. */
        rc = dfc_cmd_start(&p->c, p->sc.active && p->key_known ? &p->sc : NULL, &sp, apdu,
                           sizeof(apdu), &alen);
        break;
    }
    if (rc != 0)
        return -1;
    add(p, apdu, alen);
    dry_finish(p);
    return 0;
}

/* Fills io->sent with the next batch.  0, or -1 when a command cannot be
 * built (or a money-moving one would go out unreserved). */
static int plan_batch(struct eng_session *s)
{
    struct card_io *io = &s->io;
    struct plan p;
    memset(&p, 0, sizeof(p));
    p.s = s;
    p.sc = io->dsess;
    p.key_known = 1;
    p.iv_known = 1;
    p.cap = io->batch_max;
    io->nsent = 0;
    int rc = 0;
    if (io->have_cur) {
        /* The exchange in flight already wrote its next frame. */
        add(&p, io->pending, io->pending_len);
        if (io->cur.kind == CARD_AUTH) {
            /* After the authentication's last part the session's key is
             * not known yet: only plain commands' bytes are. */
            p.sc.active = 0;
            p.sc.cipher = io->cur.cipher;
            p.key_known = 0;
            p.iv_known = 0;
            p.full = p.full || io->auth.state != DFC_AUTH_SENT_TOKEN;
        } else {
            p.c = io->cmd;
            if (p.c.sess)
                p.c.sess = &p.sc;
            dry_finish(&p);
        }
    }
    for (int j = 0; j < io->nq && !p.full && rc == 0; j++) {
        if (money_moving(io->queue[j].spec.ins) && io->queue[j].kind == CARD_CMD &&
            !topup_reserved(s)) {
            rc = -1;
            break;
        }
        int r = plan_step(&p, &io->queue[j]);
        if (r < 0)
            rc = -1;
        if (r != 0)
            break;
    }
    dfc_session_clear(&p.sc);
    dfc_cmd_clear(&p.c);
    return io->nsent > 0 ? rc : -1;
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

int card_may_send(const struct eng_session *s)
{
    return !s->client_lost && s->now_ms < s->op_deadline_ms;
}

void card_flush(struct eng_session *s)
{
    struct card_io *io = &s->io;
    if (s->state != ES_RUNNING || io->nsent > 0 || (io->nq == 0 && !io->have_cur))
        return;
    if (io->overflow) {
        eng_fail(s, WIRE_E_INTERNAL);
        return;
    }
    if (!may_send(s))
        return;
    if (plan_batch(s) != 0) {
        log_error("card_batch_plan_failed", "session=%llu step=%s", (unsigned long long)s->id,
                  s->step);
        eng_fail(s, WIRE_E_INTERNAL);
        return;
    }
    for (int i = 0; i < io->nsent; i++)
        eng_emit_apdu(s, io->sent[i], io->sent_len[i]);
}

/* ---- feeding the answers back, in order ---- */

/* Starts the queue's head for real; its first APDU goes to io->pending. */
static int start_head(struct eng_session *s)
{
    struct card_io *io = &s->io;
    io->cur = io->queue[0];
    pop_head(io);
    io->have_cur = 1;
    struct card_step *st = &io->cur;
    struct dfc_cmd_spec sp = spec_of(st);
    io->is_auth = st->kind == CARD_AUTH;
    io->authed = io->dsess.active && st->kind != CARD_SELECT && st->kind != CARD_AUTH;
    s->step = st->name;
    switch (st->kind) {
    case CARD_SELECT:
        /* Selecting ends any authentication, on the card and here. */
        dfc_session_clear(&io->dsess);
        return dfc_cmd_start(&io->cmd, NULL, &sp, io->pending, sizeof(io->pending),
                             &io->pending_len);
    case CARD_AUTH:
        dfc_session_clear(&io->dsess);
        return dfc_auth_start(&io->auth, st->cipher, st->keyno, st->key, io->pending,
                              sizeof(io->pending), &io->pending_len);
    case CARD_CHANGEKEY:
        return dfc_cmd_start_changekey(&io->cmd, &io->dsess, st->keyno, DFC_AES128, st->key, 1,
                                       st->old_key, io->pending, sizeof(io->pending),
                                       &io->pending_len);
    default:
        return dfc_cmd_start(&io->cmd, io->dsess.active ? &io->dsess : NULL, &sp, io->pending,
                             sizeof(io->pending), &io->pending_len);
    }
}

/* A card left in the middle of a chained command (an earlier session cut
 * between two frames) answers the next command with 0xCA and does not run
 * it; selecting is harmless to repeat, so it is sent once more, and the
 * commands planned after it with it. */
static int retry_select(struct eng_session *s, int rc)
{
    struct card_io *io = &s->io;
    if (io->cur.kind != CARD_SELECT || rc != OTA_ERR_CARD_STATUS ||
        io->cmd.status != DFC_ST_COMMAND_ABORTED || io->select_retried)
        return 0;
    io->select_retried = 1;
    memmove(&io->queue[1], &io->queue[0], (size_t)io->nq * sizeof(io->queue[0]));
    io->queue[0] = io->cur;
    io->nq++;
    io->have_cur = 0;
    return 1;
}

/* One answer to the exchange in flight.  Returns 1 to go on with the
 * batch's next answer, 0 to stop. */
static int feed_one(struct eng_session *s, const uint8_t *data, size_t len)
{
    struct card_io *io = &s->io;
    int rc;
    io->pending_len = 0;
    if (io->is_auth)
        rc = dfc_auth_feed(&io->auth, data, len, io->pending, sizeof(io->pending), &io->pending_len,
                           &io->dsess);
    else
        rc = dfc_cmd_feed(&io->cmd, data, len, io->pending, sizeof(io->pending), &io->pending_len);
    if (rc == DFC_MORE)
        return 1;
    io->pending_len = 0;
    if (io->is_auth)
        dfc_auth_clear(&io->auth);
    if (retry_select(s, rc))
        return 0;
    io->have_cur = 0;
    if (io->cur.kind == CARD_SELECT)
        io->select_retried = 0;
    if (rc != 0 && io->nq > 0) {
        /* The client stops after an error answer, and the card's state is
         * no longer what the queued commands assumed. */
        dfc_wipe(io->queue, sizeof(io->queue));
        io->nq = 0;
    }
    io->cur.cb(s, rc);
    /* After an error answer the client ran nothing more of this batch. */
    return rc == 0 && s->state == ES_RUNNING && (io->have_cur || io->nq > 0);
}

void card_on_answers(struct eng_session *s, const struct wire_bytes *a, size_t n,
                     uint8_t client_err)
{
    struct card_io *io = &s->io;
    int nsent = io->nsent;
    uint8_t sent[WIRE_MAX_BATCH][DFC_APDU_MAX];
    size_t sent_len[WIRE_MAX_BATCH];
    memcpy(sent, io->sent, sizeof(sent));
    memcpy(sent_len, io->sent_len, sizeof(sent_len));
    io->nsent = 0;
    s->state = ES_RUNNING;
    for (int i = 0; i < nsent; i++) {
        if (!io->have_cur && start_head(s) != 0) {
            eng_fail(s, WIRE_E_INTERNAL);
            return;
        }
        if (io->pending_len != sent_len[i] || memcmp(io->pending, sent[i], sent_len[i]) != 0) {
            /* A bug of the planner: what was sent is not what this
             * command is now.  Nothing it answered can be trusted. */
            log_error("card_batch_mismatch", "session=%llu step=%s index=%d",
                      (unsigned long long)s->id, s->step, i);
            eng_fail(s, WIRE_E_INTERNAL);
            return;
        }
        if ((size_t)i >= n) {
            /* The client did not run this command (or the answer is
             * lost): the fault at this command, as if sent alone. */
            eng_fail(s, client_err == WIRE_CERR_TIMEOUT ? WIRE_E_TIMEOUT : WIRE_E_LOST_TAG);
            return;
        }
        if (!feed_one(s, a[i].data, a[i].len))
            break;
    }
    dfc_wipe(sent, sizeof(sent));
    if (s->state == ES_RUNNING && client_err != 0 && (io->have_cur || io->nq > 0))
        eng_fail(s, client_err == WIRE_CERR_TIMEOUT ? WIRE_E_TIMEOUT : WIRE_E_LOST_TAG);
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
