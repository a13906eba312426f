/* sim_card: the simulated card's life cycle and its ISO 7816-4 / native
 * frame layer.  It unwraps `90 INS 00 00 [Lc data] 00`, enforces the frame
 * limits (55 bytes of INS + data per command frame, 59 data bytes per
 * answer frame), reassembles AF-chained commands, splits long answers into
 * AF frames and dispatches each logical command to its handler.  It must
 * never let a malformed APDU reach a handler unchecked, and never answer
 * with more than one frame at a time. */
#include "sim_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_err.h"

#define INS_MORE 0xAF
#define INS_WRITE_DATA 0x3D
#define INS_WRITE_RECORD 0x3B

/* --- small helpers shared by the sim_*.c files --- */

uint32_t sim_le24(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16);
}

void sim_put_le24(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
}

size_t sim_key_len(uint8_t key_type)
{
    return key_type == SIM_KT_3K ? 24 : 16;
}

enum dfc_cipher sim_key_cipher(uint8_t key_type)
{
    switch (key_type) {
    case SIM_KT_AES:
        return DFC_AES128;
    case SIM_KT_3K:
        return DFC_TDES3;
    default:
        return DFC_TDES2;
    }
}

/* AES keys have a version byte; DES-type keys keep it in the parity bits
 * of their first eight bytes (most significant bit first). */
uint8_t sim_key_version(const struct sim_app *a, uint8_t keyno)
{
    const struct sim_key *k = &a->keys[keyno];
    uint8_t v = 0;
    int i;

    if (a->key_type == SIM_KT_AES)
        return k->aes_version;
    for (i = 0; i < 8; i++)
        v |= (uint8_t)((k->key[i] & 1u) << (7 - i));
    return v;
}

void sim_random(struct sim_card *c, uint8_t *p, size_t n)
{
    if (c->rng != NULL)
        c->rng(c->rng_ctx, p, n);
    else
        dfc_random(p, n);
}

struct sim_app *sim_find_app(struct sim_card *c, uint32_t aid)
{
    int i;

    if (aid == 0)
        return &c->picc;
    for (i = 0; i < SIM_MAX_APPS; i++)
        if (c->apps[i] != NULL && c->apps[i]->aid == aid)
            return c->apps[i];
    return NULL;
}

struct sim_file *sim_find_file(struct sim_card *c, uint8_t fileno)
{
    if (c->sel == NULL || c->sel == &c->picc || fileno >= SIM_MAX_FILES)
        return NULL;
    return c->sel->files[fileno];
}

static size_t round_unit(size_t n)
{
    return (n + SIM_MEM_UNIT - 1) / SIM_MEM_UNIT * SIM_MEM_UNIT;
}

size_t sim_mem_used(const struct sim_card *c)
{
    size_t used = 0;
    int i, j;

    for (i = 0; i < SIM_MAX_APPS; i++) {
        const struct sim_app *a = c->apps[i];
        if (a == NULL)
            continue;
        used += SIM_APP_OVERHEAD;
        for (j = 0; j < SIM_MAX_FILES; j++) {
            const struct sim_file *f = a->files[j];
            if (f == NULL)
                continue;
            switch (f->type) {
            case SIM_FT_STD:
                used += round_unit(f->size);
                break;
            case SIM_FT_BACKUP:
                used += 2 * round_unit(f->size);
                break;
            case SIM_FT_VALUE:
                used += SIM_MEM_UNIT;
                break;
            default:
                used += round_unit((size_t)f->rec_size * f->max_recs);
                break;
            }
        }
    }
    return used;
}

void sim_file_free(struct sim_file *f)
{
    if (f == NULL)
        return;
    if (f->data != NULL) {
        dfc_wipe(f->data, f->size);
        free(f->data);
    }
    if (f->shadow != NULL) {
        dfc_wipe(f->shadow, f->size);
        free(f->shadow);
    }
    if (f->recs != NULL) {
        dfc_wipe(f->recs, (size_t)f->rec_size * f->max_recs);
        free(f->recs);
    }
    if (f->pend_rec != NULL) {
        dfc_wipe(f->pend_rec, f->rec_size);
        free(f->pend_rec);
    }
    free(f);
}

void sim_app_free(struct sim_app *a)
{
    int i;

    if (a == NULL)
        return;
    for (i = 0; i < SIM_MAX_FILES; i++)
        sim_file_free(a->files[i]);
    dfc_wipe(a, sizeof *a);
    free(a);
}

int sim_auth_is_master(const struct sim_card *c)
{
    return c->s.kind != SIM_SESS_NONE && c->s.keyno == 0;
}

void sim_session_end(struct sim_card *c)
{
    dfc_wipe(&c->s, sizeof c->s);
    c->s.kind = SIM_SESS_NONE;
    dfc_wipe(&c->hs, sizeof c->hs);
}

int sim_fail(struct sim_card *c, uint8_t status)
{
    /* Every error ends the authentication and the transaction. */
    sim_session_end(c);
    sim_txn_discard(c);
    c->out_len = c->out_off = 0;
    c->nsplit = c->split_idx = 0;
    c->out_status = status;
    return 0;
}

int sim_answer_raw(struct sim_card *c, const uint8_t *data, size_t n)
{
    if (n > sizeof c->out)
        return SIM_BOUNDARY;
    if (n > 0)
        memcpy(c->out, data, n);
    c->out_len = n;
    c->out_off = 0;
    c->out_status = SIM_OK;
    return 0;
}

/* --- life cycle --- */

struct sim_card *sim_card_new(const uint8_t *uid, size_t uid_len, enum sim_picc_key picc_key)
{
    struct sim_card *c;

    if (uid == NULL || (uid_len != 4 && uid_len != 7) ||
        (picc_key != SIM_PICC_DES0 && picc_key != SIM_PICC_AES0))
        return NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    memcpy(c->uid, uid, uid_len);
    c->uid_len = uid_len;
    c->picc.aid = 0;
    c->picc.nkeys = 1;
    c->picc.settings = 0x0F; /* factory: everything free and changeable */
    c->picc.key_type = picc_key == SIM_PICC_AES0 ? SIM_KT_AES : SIM_KT_DES;
    c->sel = &c->picc;
    c->io = SIM_IO_IDLE;
    return c;
}

void sim_card_free(struct sim_card *card)
{
    int i;

    if (card == NULL)
        return;
    for (i = 0; i < SIM_MAX_APPS; i++)
        sim_app_free(card->apps[i]);
    dfc_wipe(card, sizeof *card);
    free(card);
}

/* A random ID starts with 08h (ISO 14443-3: a random, not unique, ID). */
static void new_random_id(struct sim_card *c)
{
    c->random_id[0] = 0x08;
    sim_random(c, c->random_id + 1, sizeof c->random_id - 1);
}

void sim_card_power_cycle(struct sim_card *card)
{
    if (card == NULL)
        return;
    if (card->flags & SIM_FLAG_RANDOM_UID)
        new_random_id(card);
    sim_session_end(card);
    sim_txn_discard(card);
    card->sel = &card->picc;
    card->io = SIM_IO_IDLE;
    dfc_wipe(card->cmd, sizeof card->cmd);
    dfc_wipe(card->out, sizeof card->out);
    card->cmd_len = card->cmd_expect = card->out_len = card->out_off = 0;
    card->nsplit = card->split_idx = 0;
}

void sim_card_set_flags(struct sim_card *card, unsigned flags)
{
    if (card == NULL)
        return;
    if ((flags & SIM_FLAG_RANDOM_UID) && !(card->flags & SIM_FLAG_RANDOM_UID))
        new_random_id(card);
    card->flags = flags;
}

void sim_card_set_rng(struct sim_card *card, void (*rng)(void *ctx, uint8_t *p, size_t n),
                      void *ctx)
{
    if (card == NULL)
        return;
    card->rng = rng;
    card->rng_ctx = rng != NULL ? ctx : NULL;
}

const uint8_t *sim_card_uid(const struct sim_card *card, size_t *len)
{
    if (card == NULL)
        return NULL;
    if (len != NULL)
        *len = card->uid_len;
    return card->uid;
}

static const struct sim_file *committed_file(const struct sim_card *card, uint32_t aid,
                                             uint8_t file)
{
    int i;

    if (card == NULL || aid == 0 || file >= SIM_MAX_FILES)
        return NULL;
    for (i = 0; i < SIM_MAX_APPS; i++)
        if (card->apps[i] != NULL && card->apps[i]->aid == aid)
            return card->apps[i]->files[file];
    return NULL;
}

int sim_card_value(const struct sim_card *card, uint32_t aid, uint8_t file, int32_t *value)
{
    const struct sim_file *f = committed_file(card, aid, file);

    if (value == NULL)
        return OTA_ERR_INVAL;
    if (f == NULL || f->type != SIM_FT_VALUE)
        return OTA_ERR_NOT_FOUND;
    *value = f->value;
    return OTA_OK;
}

int sim_card_records(const struct sim_card *card, uint32_t aid, uint8_t file, uint8_t *out,
                     size_t record_size, int max)
{
    const struct sim_file *f = committed_file(card, aid, file);
    uint32_t n, first;

    if (max < 0 || (out == NULL && max > 0))
        return OTA_ERR_INVAL;
    if (f == NULL || (f->type != SIM_FT_LINEAR && f->type != SIM_FT_CYCLIC))
        return OTA_ERR_NOT_FOUND;
    if (record_size != f->rec_size)
        return OTA_ERR_LENGTH;
    /* The newest max records, oldest first. */
    n = f->count < (uint32_t)max ? f->count : (uint32_t)max;
    first = f->count - n;
    if (n > 0)
        memcpy(out, f->recs + (size_t)first * f->rec_size, (size_t)n * f->rec_size);
    return (int)n;
}

/* --- the frame layer --- */

typedef int (*sim_handler)(struct sim_card *c);

static sim_handler handler_for(uint8_t ins)
{
    switch (ins) {
    case 0x0A:
    case 0x1A:
    case 0xAA:
        return sim_cmd_auth_start;
    case 0x45:
        return sim_cmd_get_key_settings;
    case 0x54:
        return sim_cmd_change_key_settings;
    case 0x64:
        return sim_cmd_get_key_version;
    case 0xC4:
        return sim_cmd_change_key;
    case 0x60:
        return sim_cmd_get_version;
    case 0x5A:
        return sim_cmd_select;
    case 0x6A:
        return sim_cmd_get_app_ids;
    case 0xCA:
        return sim_cmd_create_app;
    case 0xDA:
        return sim_cmd_delete_app;
    case 0xFC:
        return sim_cmd_format;
    case 0x6E:
        return sim_cmd_free_memory;
    case 0x51:
        return sim_cmd_get_card_uid;
    case 0x6F:
        return sim_cmd_get_file_ids;
    case 0xF5:
        return sim_cmd_get_file_settings;
    case 0x5F:
        return sim_cmd_change_file_settings;
    case 0xCD:
    case 0xCB:
    case 0xCC:
    case 0xC1:
    case 0xC0:
        return sim_cmd_create_file;
    case 0xDF:
        return sim_cmd_delete_file;
    case 0xBD:
        return sim_cmd_read_data;
    case INS_WRITE_DATA:
        return sim_cmd_write_data;
    case 0x6C:
        return sim_cmd_get_value;
    case 0x0C:
    case 0xDC:
    case 0x1C:
        return sim_cmd_value_op;
    case INS_WRITE_RECORD:
        return sim_cmd_write_record;
    case 0xBB:
        return sim_cmd_read_records;
    case 0xEB:
        return sim_cmd_clear_records;
    case 0xC7:
        return sim_cmd_commit;
    case 0xA7:
        return sim_cmd_abort;
    default:
        return NULL;
    }
}

static void run_command(struct sim_card *c)
{
    sim_handler h = handler_for(c->cmd[0]);
    int st;

    c->out_len = c->out_off = 0;
    c->nsplit = c->split_idx = 0;
    c->out_status = SIM_OK;
    if (h == NULL) {
        sim_fail(c, SIM_ILLEGAL_COMMAND);
        return;
    }
    st = h(c);
    if (st != 0)
        sim_fail(c, (uint8_t)st);
}

static int put_sw(uint8_t *resp, size_t *resp_len, uint8_t sw1, uint8_t sw2)
{
    resp[0] = sw1;
    resp[1] = sw2;
    *resp_len = 2;
    return OTA_OK;
}

/* Sends the next frame of the current answer. */
static int emit(struct sim_card *c, uint8_t *resp, size_t *resp_len)
{
    size_t rem = c->out_len - c->out_off;
    size_t chunk = SIM_RESP_FRAME_MAX;
    int fixed = 0;

    if (c->out_status != SIM_OK && c->out_status != SIM_MORE) {
        c->io = SIM_IO_IDLE;
        return put_sw(resp, resp_len, 0x91, c->out_status);
    }
    if (c->split_idx < c->nsplit) {
        chunk = c->split[c->split_idx];
        fixed = 1;
    }
    if (!fixed && rem <= chunk) {
        memcpy(resp, c->out + c->out_off, rem);
        resp[rem] = 0x91;
        resp[rem + 1] = c->out_status;
        *resp_len = rem + 2;
        c->out_off = c->out_len;
        c->io = c->out_status == SIM_MORE ? SIM_IO_AUTH : SIM_IO_IDLE;
        if (c->io == SIM_IO_IDLE)
            dfc_wipe(c->out, c->out_len);
        return OTA_OK;
    }
    if (chunk > rem)
        chunk = rem;
    memcpy(resp, c->out + c->out_off, chunk);
    resp[chunk] = 0x91;
    resp[chunk + 1] = SIM_MORE;
    *resp_len = chunk + 2;
    c->out_off += chunk;
    c->split_idx++;
    c->io = SIM_IO_RESP_MORE;
    return OTA_OK;
}

/* The first frame of a command: chained commands learn their length. */
static void start_command(struct sim_card *c, uint8_t ins, const uint8_t *d, size_t n)
{
    size_t expect = n;
    int st;

    c->cmd[0] = ins;
    if (n > 0)
        memcpy(c->cmd + 1, d, n);
    c->cmd_len = 1 + n;
    if (ins == INS_WRITE_DATA || ins == INS_WRITE_RECORD) {
        st = sim_write_expect(c, &expect);
        if (st != 0) {
            sim_fail(c, (uint8_t)st);
            return;
        }
    }
    if (n < expect) {
        c->cmd_expect = expect;
        c->io = SIM_IO_CMD_MORE;
        c->out_len = c->out_off = 0;
        c->nsplit = c->split_idx = 0;
        c->out_status = SIM_MORE;
        return;
    }
    run_command(c);
}

static void continue_command(struct sim_card *c, const uint8_t *d, size_t n)
{
    size_t have = c->cmd_len - 1;

    if (n == 0 || n > c->cmd_expect - have) {
        c->io = SIM_IO_IDLE;
        sim_fail(c, SIM_LENGTH);
        return;
    }
    memcpy(c->cmd + c->cmd_len, d, n);
    c->cmd_len += n;
    if (c->cmd_len - 1 < c->cmd_expect) {
        c->out_len = c->out_off = 0;
        c->out_status = SIM_MORE;
        return;
    }
    c->io = SIM_IO_IDLE;
    run_command(c);
}

/* One native frame (INS and its data, at most 55 bytes together). */
static int native_frame(struct sim_card *c, uint8_t ins, const uint8_t *d, size_t n, uint8_t *resp,
                        size_t *resp_len)
{
    if (1 + n > SIM_CMD_FRAME_MAX) {
        c->io = SIM_IO_IDLE;
        sim_fail(c, SIM_LENGTH);
        return emit(c, resp, resp_len);
    }
    if (ins == INS_MORE) {
        switch (c->io) {
        case SIM_IO_RESP_MORE:
            if (n != 0) {
                c->io = SIM_IO_IDLE;
                sim_fail(c, SIM_LENGTH);
            }
            return emit(c, resp, resp_len);
        case SIM_IO_CMD_MORE:
            continue_command(c, d, n);
            if (c->io == SIM_IO_CMD_MORE)
                return put_sw(resp, resp_len, 0x91, SIM_MORE);
            return emit(c, resp, resp_len);
        case SIM_IO_AUTH: {
            int st;
            c->io = SIM_IO_IDLE;
            c->out_len = c->out_off = 0;
            c->nsplit = c->split_idx = 0;
            st = sim_cmd_auth_token(c, d, n);
            if (st != 0)
                sim_fail(c, (uint8_t)st);
            return emit(c, resp, resp_len);
        }
        default:
            sim_fail(c, SIM_ILLEGAL_COMMAND);
            return emit(c, resp, resp_len);
        }
    }
    if (c->io == SIM_IO_CMD_MORE) {
        /* The reader left a chained command unfinished. */
        c->io = SIM_IO_IDLE;
        sim_fail(c, SIM_ABORTED);
        return emit(c, resp, resp_len);
    }
    if (c->io == SIM_IO_AUTH)
        dfc_wipe(&c->hs, sizeof c->hs);
    /* An unread answer is dropped; the new command runs. */
    c->io = SIM_IO_IDLE;
    start_command(c, ins, d, n);
    if (c->io == SIM_IO_CMD_MORE)
        return put_sw(resp, resp_len, 0x91, SIM_MORE);
    return emit(c, resp, resp_len);
}

/* PC/SC GET DATA (class FF): P1 00 asks for the UID. */
static int get_data(struct sim_card *c, const uint8_t *apdu, size_t len, uint8_t *resp,
                    size_t *resp_len)
{
    if (apdu[1] != 0xCA)
        return put_sw(resp, resp_len, 0x6D, 0x00);
    if (len > 5)
        return put_sw(resp, resp_len, 0x67, 0x00);
    if (apdu[2] != 0x00 || apdu[3] != 0x00)
        return put_sw(resp, resp_len, 0x6A, 0x81);
    if (c->flags & SIM_FLAG_RANDOM_UID) {
        memcpy(resp, c->random_id, sizeof c->random_id);
        resp[4] = 0x90;
        resp[5] = 0x00;
        *resp_len = 6;
        return OTA_OK;
    }
    memcpy(resp, c->uid, c->uid_len);
    resp[c->uid_len] = 0x90;
    resp[c->uid_len + 1] = 0x00;
    *resp_len = c->uid_len + 2;
    return OTA_OK;
}

int sim_card_transceive(struct sim_card *card, const uint8_t *apdu, size_t apdu_len, uint8_t *resp,
                        size_t cap, size_t *resp_len)
{
    size_t lc;

    if (card == NULL || resp == NULL || resp_len == NULL || (apdu == NULL && apdu_len > 0))
        return OTA_ERR_INVAL;
    *resp_len = 0;
    if (cap < SIM_RESP_FRAME_MAX + 2)
        return OTA_ERR_LENGTH;
    if (apdu_len < 4)
        return put_sw(resp, resp_len, 0x67, 0x00);
    if (apdu[0] == 0xFF)
        return get_data(card, apdu, apdu_len, resp, resp_len);
    if (apdu[0] != 0x90)
        return put_sw(resp, resp_len, 0x6E, 0x00);
    if (apdu[2] != 0x00 || apdu[3] != 0x00)
        return put_sw(resp, resp_len, 0x6A, 0x86);
    /* Case 2 (no data, Le) or case 4 (Lc data Le); Le is always 00. */
    if (apdu_len == 5) {
        if (apdu[4] != 0x00)
            return put_sw(resp, resp_len, 0x67, 0x00);
        return native_frame(card, apdu[1], NULL, 0, resp, resp_len);
    }
    if (apdu_len < 6)
        return put_sw(resp, resp_len, 0x67, 0x00);
    lc = apdu[4];
    if (lc == 0 || apdu_len != 6 + lc || apdu[apdu_len - 1] != 0x00)
        return put_sw(resp, resp_len, 0x67, 0x00);
    return native_frame(card, apdu[1], apdu + 5, lc, resp, resp_len);
}
