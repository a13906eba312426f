/* hostile_batch: the hostile relay inside a protocol v2 batch.  Every
 * per-command fault lands on one APDU of the batch; on top, it answers a
 * prefix, answers more than asked (or ignores the stop rule), reorders
 * answers or runs two APDUs out of order, slips its own
 * CommitTransaction / AbortTransaction / ClearRecordFile between two APDUs,
 * loses the tag part-way and sends `responses` that break the protocol.
 * See hostile_session.h. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "hex.h"
#include "hostile_session.h"
#include "sim_card.h"

/* ------------------------------------------------------------ batches (v2) */

#define HR_OUT_MAX (WSM_BATCH_MAX + 2)

/* What the relay sends for one batch: answers (honest or not) and an
 * error kind. */
struct hr_out {
    size_t n;
    const char *error;
    size_t len[HR_OUT_MAX];
    uint8_t data[HR_OUT_MAX][HR_ANSWER_MAX];
};

static void out_add(struct hr_out *o, const uint8_t *p, size_t n)
{
    if (o->n == HR_OUT_MAX)
        return;
    memcpy(o->data[o->n], p, n);
    o->len[o->n++] = n;
}

/* {"type":"responses","data":[...],"error":...}; type "response" (one
 * answer) when single is set, the way a confused client would. */
static int send_out(struct hr_session *s, const struct hr_out *o, int single)
{
    char msg[HR_OUT_MAX * (2 * HR_ANSWER_MAX + 3) + 96];
    size_t at = (size_t)snprintf(msg, sizeof msg, "{\"type\":\"%s\",\"data\":%s",
                                 single ? "response" : "responses", single ? "" : "[");
    for (size_t i = 0; i < o->n && (!single || i == 0); i++) {
        if (i > 0)
            msg[at++] = ',';
        msg[at++] = '"';
        hex_encode(o->data[i], o->len[i], msg + at);
        at += 2 * o->len[i];
        msg[at++] = '"';
    }
    if (single && o->n == 0)
        at += (size_t)snprintf(msg + at, sizeof msg - at, "\"\"");
    if (!single)
        msg[at++] = ']';
    if (o->error != NULL)
        at += (size_t)snprintf(msg + at, sizeof msg - at, ",\"error\":\"%s\"", o->error);
    snprintf(msg + at, sizeof msg - at, "}");
    return hr_send_text(s, msg);
}

/* Protocol breaches around a batch's answers (bad v2 input must get a
 * clear error and lose nothing). */
static void unexpected_batch(struct hr_session *s, uint32_t param, const struct hr_out *o)
{
    switch (param % 6) {
    case 0: /* the answers twice: the second with no batch outstanding */
        send_out(s, o, 0);
        send_out(s, o, 0);
        break;
    case 1: /* a second operation in the middle of the session */
        hr_send_operation(s);
        send_out(s, o, 0);
        break;
    case 2: /* a message type nobody defined, then the answers */
        hr_send_text(s, "{\"type\":\"hello\",\"data\":[\"9100\"]}");
        send_out(s, o, 0);
        break;
    case 3: /* responses whose data is not hex */
        hr_send_text(s, "{\"type\":\"responses\",\"data\":[\"9100\",\"9z00\"]}");
        break;
    case 4: /* responses whose data is not an array */
        hr_send_text(s, "{\"type\":\"responses\",\"data\":\"9100\"}");
        break;
    default: /* a single response to a batch */
        send_out(s, o, 1);
        break;
    }
}

/* Runs one APDU for a batch and adds its answer (the answer as sent
 * decides whether an honest client would go on). */
static size_t batch_run_one(struct hr_session *s, const uint8_t *apdu, size_t n, struct hr_out *o)
{
    uint8_t resp[HR_ANSWER_MAX];
    size_t rlen = hr_run_card(s, apdu, n, resp);
    out_add(o, resp, rlen);
    return rlen;
}

static int last_goes_on(const struct hr_out *o)
{
    return o->n > 0 && wsm_answer_goes_on(o->data[o->n - 1], o->len[o->n - 1]);
}

static void swap_last_two(struct hr_out *o)
{
    uint8_t tmp[HR_ANSWER_MAX];
    size_t a = o->n - 2, b = o->n - 1, tl = o->len[a];
    memcpy(tmp, o->data[a], tl);
    memcpy(o->data[a], o->data[b], o->len[b]);
    o->len[a] = o->len[b];
    memcpy(o->data[b], tmp, tl);
    o->len[b] = tl;
}

/* One APDU of a batch with the fault planned for it.  Returns 0 to go on
 * with the next APDU, 1 to stop and send, -1 when the session is over
 * (dropped).  *i may move past the next APDU (reorder). */
static int batch_fault(struct hr_session *s, const struct wsm_batch *b, size_t *i,
                       struct hr_fault_at *f, struct hr_out *o, int *more, int *unexp)
{
    const uint8_t *apdu = b->apdu[*i];
    size_t n = b->len[*i];
    uint8_t resp[HR_ANSWER_MAX];
    size_t rlen;

    switch (f->kind) {
    case HF_TAMPER:
        rlen = batch_run_one(s, apdu, n, o);
        if (rlen > 0)
            o->data[o->n - 1][f->param % rlen] ^= (uint8_t)(1 + (f->param >> 8) % 255);
        return 0;
    case HF_REPLAY_SAME:
    case HF_REPLAY_OTHER:
        if (f->param & 1)
            (void)hr_run_card(s, apdu, n, resp);
        rlen = 0;
        if (f->kind == HF_REPLAY_SAME && o->n > 0) {
            rlen = o->len[o->n - 1];
            memcpy(resp, o->data[o->n - 1], rlen);
        } else if (f->kind == HF_REPLAY_SAME && s->prev_len > 0) {
            rlen = s->prev_len;
            memcpy(resp, s->prev, rlen);
        } else {
            rlen = hr_bank_pick(s, apdu[1], resp);
        }
        if (rlen == 0) {
            resp[0] = 0x91;
            resp[1] = 0x00;
            rlen = 2;
        }
        out_add(o, resp, rlen);
        return 0;
    case HF_DROP_BEFORE:
        hr_drop(s, "dropped");
        return -1;
    case HF_DROP_AFTER:
        (void)hr_run_card(s, apdu, n, resp);
        hr_drop(s, "dropped");
        return -1;
    case HF_LOST_TAG:
        o->error = "lost-tag";
        return 1;
    case HF_RELAY_COMMIT:
    case HF_RELAY_ABORT:
    case HF_RELAY_CLEAR:
        /* Between two APDUs of the batch: before this one or after it. */
        if (f->param & 1)
            hr_card_own(s->c, hr_relay_ins(f->kind));
        batch_run_one(s, apdu, n, o);
        if (!(f->param & 1))
            hr_card_own(s->c, hr_relay_ins(f->kind));
        return 0;
    case HF_STALL:
        hr_sleep_ms((f->param & 1) ? s->R->o.stall_ms : s->R->o.stall_ms / 5);
        batch_run_one(s, apdu, n, o);
        return 0;
    case HF_UNEXPECTED:
        *unexp = (int)(f->param % 6);
        batch_run_one(s, apdu, n, o);
        return 0;
    case HF_REPLAY_CMD: {
        uint8_t old[HR_ANSWER_MAX];
        size_t on = hr_cmd_pick(s, old), olen = 0;
        if (on > 0)
            (void)hr_card_xfer(s->c, old, on, resp, &olen);
        batch_run_one(s, apdu, n, o);
        return 0;
    }
    case HF_TEAR:
        batch_run_one(s, apdu, n, o);
        pthread_mutex_lock(&s->c->mu);
        sim_card_power_cycle(s->c->sim);
        pthread_mutex_unlock(&s->c->mu);
        return 0;
    case HF_PREFIX:
        if (f->param & 1)
            (void)hr_run_card(s, apdu, n, resp);
        return 1;
    case HF_MORE:
        *more = (f->param & 1) ? 2 : 1;
        batch_run_one(s, apdu, n, o);
        return 0;
    case HF_REORDER:
        if (*i + 1 >= b->n) {
            batch_run_one(s, apdu, n, o);
            return 0;
        }
        s->ncmd++; /* the next APDU is taken with this one */
        if (f->param & 1) {
            /* The next APDU runs first; answers in the batch's order. */
            uint8_t r1[HR_ANSWER_MAX];
            size_t l1 = hr_run_card(s, b->apdu[*i + 1], b->len[*i + 1], r1);
            batch_run_one(s, apdu, n, o);
            out_add(o, r1, l1);
        } else {
            batch_run_one(s, apdu, n, o);
            batch_run_one(s, b->apdu[*i + 1], b->len[*i + 1], o);
            swap_last_two(o);
        }
        (*i)++;
        return 0;
    default:
        batch_run_one(s, apdu, n, o);
        return 0;
    }
}

/* A `commands` message: every APDU in order, each with its planned
 * fault, then one `responses` (or worse). */
void hr_on_batch(struct hr_session *s, const struct wsm_batch *b)
{
    static _Thread_local struct hr_out o;
    int more = 0, unexp = -1;

    pthread_mutex_lock(&s->R->run.mu);
    s->R->batches++;
    s->R->batch_apdus += (long)b->n;
    pthread_mutex_unlock(&s->R->run.mu);
    o.n = 0;
    o.error = NULL;
    for (size_t i = 0; i < b->n; i++) {
        struct hr_fault_at *f;
        int r = 0;
        s->ncmd++;
        if (b->len[i] <= UINT8_MAX)
            hr_cmd_add(s->R, b->apdu[i], b->len[i]);
        f = s->clean ? NULL : hr_fault_for(s, s->ncmd);
        if (f == NULL) {
            batch_run_one(s, b->apdu[i], b->len[i], &o);
        } else {
            f->done = 1;
            hr_note_fault(s, f->kind, s->ncmd);
            r = batch_fault(s, b, &i, f, &o, &more, &unexp);
        }
        if (r < 0)
            return;
        if (r > 0 || (more != 2 && !last_goes_on(&o)))
            break;
    }
    if (more > 0 && o.n > 0) /* one answer more than asked: the last one again */
        out_add(&o, o.data[o.n - 1], o.len[o.n - 1]);
    if (o.n > 0) {
        memcpy(s->prev, o.data[o.n - 1], o.len[o.n - 1]);
        s->prev_len = o.len[o.n - 1];
    }
    if (unexp >= 0)
        unexpected_batch(s, (uint32_t)unexp, &o);
    else
        send_out(s, &o, 0);
}
