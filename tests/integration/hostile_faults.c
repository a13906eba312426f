/* hostile_faults: the hostile relay's cards, its bank of earlier answers
 * and commands, its messages and its faults on single commands (protocol
 * v1, and a v2 session's single `command`).  See hostile_session.h. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "card_profile.h"
#include "hex.h"
#include "hostile_session.h"
#include "sim_card.h"

const char *const hr_fault_names[HF_COUNT] = {
    [HF_NONE] = "none",
    [HF_TAMPER] = "tamper",
    [HF_REPLAY_SAME] = "replay_same",
    [HF_REPLAY_OTHER] = "replay_other",
    [HF_DROP_BEFORE] = "drop_before",
    [HF_DROP_AFTER] = "drop_after",
    [HF_LOST_TAG] = "lost_tag",
    [HF_RELAY_COMMIT] = "relay_commit",
    [HF_RELAY_ABORT] = "relay_abort",
    [HF_STALL] = "stall",
    [HF_UNEXPECTED] = "unexpected",
    [HF_TEAR] = "tear",
    [HF_REPLAY_CMD] = "replay_cmd",
    [HF_LIE_UID] = "lie_uid",
    [HF_PRE_COMMIT] = "pre_commit",
    [HF_POST_COMMIT] = "post_commit",
    [HF_RELAY_CLEAR] = "relay_clear",
    [HF_PREFIX] = "prefix",
    [HF_MORE] = "more",
    [HF_REORDER] = "reorder",
};

/* ------------------------------------------------------------ the card */

int hr_card_xfer(struct hr_card *c, const uint8_t *apdu, size_t len, uint8_t *resp, size_t *rlen)
{
    pthread_mutex_lock(&c->mu);
    int r = sim_card_transceive(c->sim, apdu, len, resp, HR_ANSWER_MAX, rlen);
    pthread_mutex_unlock(&c->mu);
    return r;
}

/* A command the relay sends on its own (no key needed for Commit and
 * Abort; ClearRecordFile of file 2 needs a right nobody has, and must
 * fail). */
void hr_card_own(struct hr_card *c, uint8_t ins)
{
    uint8_t apdu[7] = {0x90, ins, 0x00, 0x00, 0x00, PROF_FILE_RECORDS, 0x00}, resp[HR_ANSWER_MAX];
    size_t len = 5, n = 0;
    if (ins == 0xEB) { /* ClearRecordFile: Lc 1, the file number, Le */
        apdu[4] = 0x01;
        len = 7;
    }
    pthread_mutex_lock(&c->mu);
    (void)sim_card_transceive(c->sim, apdu, len, resp, sizeof resp, &n);
    if (ins == 0xC7)
        c->relay_commits++;
    pthread_mutex_unlock(&c->mu);
}

/* Adds the txn_ids of the card's committed records to what it has shown.
 * Called after every session: a session adds at most one record and the
 * cyclic file keeps seven, so none is missed. */
void hr_card_poll_records(struct hr_card *c, int initial)
{
    uint8_t recs[PROF_RECORD_COUNT * PROF_RECORD_SIZE];
    pthread_mutex_lock(&c->mu);
    int n = sim_card_records(c->sim, PROF_AID_U32, PROF_FILE_RECORDS, recs, PROF_RECORD_SIZE,
                             PROF_RECORD_COUNT);
    for (int i = 0; i < n; i++) {
        const uint8_t *rec = recs + (size_t)i * PROF_RECORD_SIZE;
        int known = 0;
        for (size_t k = 0; k < c->nseen && !known; k++)
            known = memcmp(c->seen[k].id, rec + PROF_REC_TXN, HR_TXN_LEN) == 0;
        if (known)
            continue;
        if (c->nseen == c->capseen) {
            size_t cap = c->capseen ? c->capseen * 2 : 64;
            struct hr_txn *p = realloc(c->seen, cap * sizeof *p);
            if (p == NULL)
                break;
            c->seen = p;
            c->capseen = cap;
        }
        struct hr_txn *t = &c->seen[c->nseen++];
        memcpy(t->id, rec + PROF_REC_TXN, HR_TXN_LEN);
        t->amount =
            (int32_t)((uint32_t)rec[PROF_REC_AMOUNT] | (uint32_t)rec[PROF_REC_AMOUNT + 1] << 8 |
                      (uint32_t)rec[PROF_REC_AMOUNT + 2] << 16 |
                      (uint32_t)rec[PROF_REC_AMOUNT + 3] << 24);
        t->initial = initial;
    }
    pthread_mutex_unlock(&c->mu);
}

int32_t hr_card_balance(struct hr_card *c)
{
    int32_t v = 0;
    pthread_mutex_lock(&c->mu);
    if (sim_card_value(c->sim, PROF_AID_U32, PROF_FILE_VALUE, &v) != 0)
        v = INT32_MIN;
    pthread_mutex_unlock(&c->mu);
    return v;
}

/* ------------------------------------------------------------ answers bank */

static void ring_add(struct hr_relay *R, struct hr_bank_ent *ring, size_t *count, size_t *next,
                     uint8_t ins, const uint8_t *p, size_t n)
{
    if (n > HR_ANSWER_MAX || n > UINT8_MAX)
        return;
    pthread_mutex_lock(&R->bank_mu);
    struct hr_bank_ent *e = &ring[*next];
    e->ins = ins;
    e->len = (uint8_t)n;
    memcpy(e->data, p, n);
    *next = (*next + 1) % HR_BANK;
    if (*count < HR_BANK)
        (*count)++;
    pthread_mutex_unlock(&R->bank_mu);
}

static void bank_add(struct hr_relay *R, uint8_t ins, const uint8_t *p, size_t n)
{
    ring_add(R, R->bank, &R->nbank, &R->bank_next, ins, p, n);
}

void hr_cmd_add(struct hr_relay *R, const uint8_t *apdu, size_t n)
{
    ring_add(R, R->cmds, &R->ncmds, &R->cmds_next, apdu[1], apdu, n);
}

/* Any earlier command of the server's (another session's or this one's). */
size_t hr_cmd_pick(struct hr_session *s, uint8_t *out)
{
    struct hr_relay *R = s->R;
    size_t n = 0;
    pthread_mutex_lock(&R->bank_mu);
    if (R->ncmds > 0) {
        const struct hr_bank_ent *e = &R->cmds[hr_rnd(s, (uint32_t)R->ncmds)];
        n = e->len;
        memcpy(out, e->data, n);
    }
    pthread_mutex_unlock(&R->bank_mu);
    return n;
}

/* An earlier answer, preferably to the same instruction. */
size_t hr_bank_pick(struct hr_session *s, uint8_t ins, uint8_t *out)
{
    struct hr_relay *R = s->R;
    size_t n = 0;
    pthread_mutex_lock(&R->bank_mu);
    if (R->nbank > 0) {
        size_t pick = hr_rnd(s, (uint32_t)R->nbank);
        for (int tries = 0; tries < 64; tries++) {
            size_t k = hr_rnd(s, (uint32_t)R->nbank);
            if (R->bank[k].ins == ins) {
                pick = k;
                break;
            }
        }
        n = R->bank[pick].len;
        memcpy(out, R->bank[pick].data, n);
    }
    pthread_mutex_unlock(&R->bank_mu);
    return n;
}

/* ------------------------------------------------------------ messages */

int hr_send_text(struct hr_session *s, const char *text)
{
    if (wsc_client_send_text(s->ws, text, strlen(text)) != 0) {
        snprintf(s->end, sizeof s->end, "send_failed");
        s->state = HS_DONE;
        return -1;
    }
    return 0;
}

static int send_response(struct hr_session *s, const uint8_t *p, size_t n)
{
    char hex[2 * HR_ANSWER_MAX + 1], msg[2 * HR_ANSWER_MAX + 64];
    hex_encode(p, n, hex);
    snprintf(msg, sizeof msg, "{\"type\":\"response\",\"data\":\"%s\"}", hex);
    return hr_send_text(s, msg);
}

int hr_send_operation(struct hr_session *s)
{
    char uid[2 * HR_UID_LEN + 1];
    hex_encode(s->uid_sent, HR_UID_LEN, uid);
    char *t = wsm_operation(s->op, uid, s->code, "hostile", s->batch);
    if (t == NULL)
        return -1;
    int r = hr_send_text(s, t);
    sodium_memzero(t, strlen(t));
    free(t);
    return r;
}

void hr_drop(struct hr_session *s, const char *why)
{
    wsc_client_abort(s->ws);
    snprintf(s->end, sizeof s->end, "%s", why);
    s->state = HS_DONE;
}

/* ------------------------------------------------------------ faults */

void hr_note_fault(struct hr_session *s, enum hr_fault k, long at)
{
    struct hr_relay *R = s->R;
    size_t used = strlen(s->injected);
    snprintf(s->injected + used, sizeof s->injected - used, "%s%s@%ld", used ? "," : "",
             hr_fault_names[k], at);
    pthread_mutex_lock(&R->run.mu);
    R->faults++;
    R->fault_kind[k]++;
    pthread_mutex_unlock(&R->run.mu);
}

/* Faults that land on one APDU (the others concern the whole session). */
static int per_apdu(enum hr_fault k)
{
    return k != HF_NONE && k != HF_LIE_UID && k != HF_PRE_COMMIT && k != HF_POST_COMMIT;
}

struct hr_fault_at *hr_fault_for(struct hr_session *s, long at)
{
    for (int i = 0; i < s->nf; i++)
        if (!s->f[i].done && s->f[i].at == at && per_apdu(s->f[i].kind))
            return &s->f[i];
    return NULL;
}

/* Runs the command on the card and keeps the answer for later replays. */
size_t hr_run_card(struct hr_session *s, const uint8_t *apdu, size_t n, uint8_t *resp)
{
    size_t rlen = 0;
    if (hr_card_xfer(s->c, apdu, n, resp, &rlen) != 0)
        rlen = 0;
    bank_add(s->R, apdu[1], resp, rlen);
    return rlen;
}

static void answer(struct hr_session *s, const uint8_t *resp, size_t rlen)
{
    memcpy(s->prev, resp, rlen);
    s->prev_len = rlen;
    send_response(s, resp, rlen);
}

static void unexpected(struct hr_session *s, uint32_t param, const uint8_t *apdu, size_t n)
{
    uint8_t resp[HR_ANSWER_MAX];
    size_t rlen;
    switch (param % 6) {
    case 0: /* the answer twice: the second arrives with no command outstanding */
        rlen = hr_run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        send_response(s, resp, rlen);
        break;
    case 1: /* a second operation in the middle of the session */
        hr_send_operation(s);
        rlen = hr_run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        break;
    case 2: /* a message type nobody defined */
        hr_send_text(s, "{\"type\":\"hello\",\"data\":\"9100\"}");
        rlen = hr_run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        break;
    case 3:
        hr_send_text(s, "{\"type\":\"response\",\"data\":");
        break;
    case 4:
        hr_send_text(s, "{\"type\":\"response\",\"data\":\"9z0\"}");
        break;
    default:
        hr_send_text(s, "{\"type\":\"error\",\"kind\":\"meteor\"}");
        rlen = hr_run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        break;
    }
}

uint8_t hr_relay_ins(enum hr_fault k)
{
    return k == HF_RELAY_COMMIT ? 0xC7 : k == HF_RELAY_ABORT ? 0xA7 : 0xEB;
}

static void on_command(struct hr_session *s, const uint8_t *apdu, size_t n)
{
    uint8_t resp[HR_ANSWER_MAX];
    size_t rlen;
    s->ncmd++;
    if (n <= UINT8_MAX)
        hr_cmd_add(s->R, apdu, n);
    struct hr_fault_at *f = s->clean ? NULL : hr_fault_for(s, s->ncmd);
    /* Batch-only faults have no meaning for a single command. */
    if (f == NULL || f->kind >= HF_FIRST_V2_ONLY) {
        rlen = hr_run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        return;
    }
    f->done = 1;
    hr_note_fault(s, f->kind, s->ncmd);
    switch (f->kind) {
    case HF_TAMPER:
        rlen = hr_run_card(s, apdu, n, resp);
        if (rlen > 0)
            resp[f->param % rlen] ^= (uint8_t)(1 + (f->param >> 8) % 255);
        answer(s, resp, rlen);
        break;
    case HF_REPLAY_SAME:
    case HF_REPLAY_OTHER:
        if (f->param & 1)
            (void)hr_run_card(s, apdu, n, resp);
        if (f->kind == HF_REPLAY_SAME && s->prev_len > 0) {
            memcpy(resp, s->prev, s->prev_len);
            rlen = s->prev_len;
        } else {
            rlen = hr_bank_pick(s, apdu[1], resp);
        }
        if (rlen == 0) {
            resp[0] = 0x91;
            resp[1] = 0x00;
            rlen = 2;
        }
        answer(s, resp, rlen);
        break;
    case HF_DROP_BEFORE:
        hr_drop(s, "dropped");
        break;
    case HF_DROP_AFTER:
        (void)hr_run_card(s, apdu, n, resp);
        hr_drop(s, "dropped");
        break;
    case HF_LOST_TAG:
        hr_send_text(s, "{\"type\":\"error\",\"kind\":\"lost-tag\",\"message\":\"hostile\"}");
        break;
    case HF_RELAY_COMMIT:
    case HF_RELAY_ABORT:
    case HF_RELAY_CLEAR: {
        uint8_t ins = hr_relay_ins(f->kind);
        if (f->param & 1)
            hr_card_own(s->c, ins);
        rlen = hr_run_card(s, apdu, n, resp);
        if (!(f->param & 1))
            hr_card_own(s->c, ins);
        answer(s, resp, rlen);
        break;
    }
    case HF_STALL:
        hr_sleep_ms((f->param & 1) ? s->R->o.stall_ms : s->R->o.stall_ms / 5);
        rlen = hr_run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        break;
    case HF_UNEXPECTED:
        unexpected(s, f->param, apdu, n);
        break;
    case HF_REPLAY_CMD: {
        uint8_t old[HR_ANSWER_MAX];
        size_t on = hr_cmd_pick(s, old), olen = 0;
        if (on > 0)
            (void)hr_card_xfer(s->c, old, on, resp, &olen);
        rlen = hr_run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        break;
    }
    case HF_TEAR:
        rlen = hr_run_card(s, apdu, n, resp);
        pthread_mutex_lock(&s->c->mu);
        sim_card_power_cycle(s->c->sim);
        pthread_mutex_unlock(&s->c->mu);
        answer(s, resp, rlen);
        break;
    default:
        rlen = hr_run_card(s, apdu, n, resp);
        answer(s, resp, rlen);
        break;
    }
}

static void copy_str(char *dst, size_t cap, json_t *v)
{
    const char *t = json_string_value(v);
    snprintf(dst, cap, "%s", t != NULL ? t : "");
}

void hr_on_message(struct hr_session *s, const char *text, size_t len)
{
    static _Thread_local struct wsm_msg m;
    char why[200];
    if (wsm_parse(text, len, (size_t)s->batch, &m, why, sizeof why) != 0) {
        /* The gateway broke the protocol (a batch larger than announced,
         * commands in a v1 session, bad hex): never a relay's doing. */
        hr_violation(s->R, "session %lu: the gateway sent a message no client can take: %s", s->idx,
                     why);
        snprintf(s->end, sizeof s->end, "bad_message");
        s->state = HS_DONE;
    } else if (m.kind == WSM_CARD && m.batch.single) {
        on_command(s, m.batch.apdu[0], m.batch.len[0]);
    } else if (m.kind == WSM_CARD) {
        hr_on_batch(s, &m.batch);
    } else if (m.kind == WSM_RESULT) {
        copy_str(s->status, sizeof s->status, json_object_get(m.json, "status"));
        copy_str(s->error, sizeof s->error, json_object_get(m.json, "error"));
        copy_str(s->txn, sizeof s->txn, json_object_get(m.json, "txn"));
        snprintf(s->end, sizeof s->end, "result");
        s->state = HS_DONE;
    }
    wsm_msg_clear(&m);
}
