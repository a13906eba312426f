/* sim_files: file management on the simulated card: GetFileIDs,
 * GetFileSettings, ChangeFileSettings and the five CreateXxxFile commands
 * and DeleteFile.  Listing needs the application master key unless key
 * settings bit1 is set, creating/deleting unless bit2 is set.  Access
 * rights travel as 2 bytes LE of Read<<12 | Write<<8 | RW<<4 | Change.
 * Must never allocate a file the card's memory could not hold. */
#include "sim_priv.h"

#include <stdlib.h>
#include <string.h>

static int32_t get_le32s(const uint8_t *p)
{
    return (int32_t)dfc_get_le32(p);
}

static int app_level(const struct sim_card *c)
{
    return c->sel != NULL && c->sel != &c->picc;
}

static int valid_comm(uint8_t comm)
{
    return comm == 0x00 || comm == 0x01 || comm == 0x03;
}

int sim_cmd_get_file_ids(struct sim_card *c)
{
    uint8_t ids[SIM_MAX_FILES];
    size_t n = 0;
    int i, st;

    if (c->cmd_len != 1)
        return SIM_LENGTH;
    if (!app_level(c))
        return SIM_PERMISSION;
    if (!(c->sel->settings & 0x02) && !sim_auth_is_master(c))
        return SIM_AUTH;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    for (i = 0; i < SIM_MAX_FILES; i++)
        if (c->sel->files[i] != NULL)
            ids[n++] = (uint8_t)i;
    return sim_sm_reply(c, SIM_COMM_PLAIN, ids, n);
}

int sim_file_settings_bytes(const struct sim_file *f, uint8_t *out, size_t *n)
{
    out[0] = f->type;
    out[1] = f->comm;
    out[2] = (uint8_t)(f->access & 0xFF);
    out[3] = (uint8_t)(f->access >> 8);
    switch (f->type) {
    case SIM_FT_STD:
    case SIM_FT_BACKUP:
        sim_put_le24(out + 4, f->size);
        *n = 7;
        break;
    case SIM_FT_VALUE:
        dfc_put_le32(out + 4, (uint32_t)f->lower);
        dfc_put_le32(out + 8, (uint32_t)f->upper);
        dfc_put_le32(out + 12, (uint32_t)f->limit);
        out[16] = f->lc_flags;
        *n = 17;
        break;
    default:
        sim_put_le24(out + 4, f->rec_size);
        sim_put_le24(out + 7, f->max_recs);
        sim_put_le24(out + 10, f->count);
        *n = 13;
        break;
    }
    return 0;
}

int sim_cmd_get_file_settings(struct sim_card *c)
{
    struct sim_file *f;
    uint8_t r[17];
    size_t n;
    int st;

    if (c->cmd_len != 2)
        return SIM_LENGTH;
    if (!app_level(c))
        return SIM_PERMISSION;
    if (!(c->sel->settings & 0x02) && !sim_auth_is_master(c))
        return SIM_AUTH;
    f = sim_find_file(c, c->cmd[1]);
    if (f == NULL)
        return SIM_FILE_NOT_FOUND;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    sim_file_settings_bytes(f, r, &n);
    return sim_sm_reply(c, SIM_COMM_PLAIN, r, n);
}

int sim_cmd_change_file_settings(struct sim_card *c)
{
    struct sim_file *f;
    enum sim_comm comm;
    uint8_t p[3], ch;
    int st;

    if (c->cmd_len < 2)
        return SIM_LENGTH;
    if (!app_level(c))
        return SIM_PERMISSION;
    f = sim_find_file(c, c->cmd[1]);
    if (f == NULL)
        return SIM_FILE_NOT_FOUND;
    /* Enciphered whenever the Change key itself is authenticated, plain
     * when the Change right is free. */
    ch = (uint8_t)(f->access & 0x0F);
    if (sim_session_active(c) && c->s.keyno == ch)
        comm = SIM_COMM_ENC;
    else if (ch == 0x0E)
        comm = SIM_COMM_PLAIN;
    else
        return ch == 0x0F ? SIM_PERMISSION : SIM_AUTH;
    st = sim_sm_unwrap(c, comm, 1, 3, p);
    if (st != 0)
        return st;
    if (!valid_comm(p[0]))
        return SIM_PARAMETER;
    f->comm = p[0];
    f->access = (uint16_t)(p[1] | (p[2] << 8));
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}

static uint8_t type_for_ins(uint8_t ins)
{
    switch (ins) {
    case 0xCD:
        return SIM_FT_STD;
    case 0xCB:
        return SIM_FT_BACKUP;
    case 0xCC:
        return SIM_FT_VALUE;
    case 0xC1:
        return SIM_FT_LINEAR;
    default:
        return SIM_FT_CYCLIC;
    }
}

/* Parameter bytes after FileNo/[FID]/Comm/Access, per file type. */
static size_t params_len(uint8_t type)
{
    switch (type) {
    case SIM_FT_STD:
    case SIM_FT_BACKUP:
        return 3;
    case SIM_FT_VALUE:
        return 13;
    default:
        return 6;
    }
}

int sim_file_new(struct sim_app *a, uint8_t no, uint8_t type, uint8_t comm, uint16_t access,
                 const uint8_t *params, struct sim_file **out)
{
    struct sim_file *f;
    uint32_t size = 0, rec = 0, max = 0;

    *out = NULL;
    if (no >= SIM_MAX_FILES || !valid_comm(comm))
        return SIM_PARAMETER;
    if (a->files[no] != NULL)
        return SIM_DUPLICATE;
    f = calloc(1, sizeof *f);
    if (f == NULL)
        return SIM_OUT_OF_EEPROM;
    f->type = type;
    f->comm = comm;
    f->access = access;
    switch (type) {
    case SIM_FT_STD:
    case SIM_FT_BACKUP:
        size = sim_le24(params);
        if (size == 0) {
            free(f);
            return SIM_PARAMETER;
        }
        if (size > SIM_MEM_TOTAL) {
            free(f);
            return SIM_OUT_OF_EEPROM;
        }
        f->size = size;
        f->data = calloc(1, size);
        f->shadow = type == SIM_FT_BACKUP ? calloc(1, size) : NULL;
        if (f->data == NULL || (type == SIM_FT_BACKUP && f->shadow == NULL)) {
            sim_file_free(f);
            return SIM_OUT_OF_EEPROM;
        }
        break;
    case SIM_FT_VALUE:
        f->lower = get_le32s(params);
        f->upper = get_le32s(params + 4);
        f->value = get_le32s(params + 8);
        f->lc_flags = params[12];
        if (f->lower > f->upper || f->value < f->lower || f->value > f->upper ||
            (f->lc_flags & ~0x03u)) {
            free(f);
            return SIM_PARAMETER;
        }
        f->pend_value = f->value;
        break;
    default:
        rec = sim_le24(params);
        max = sim_le24(params + 3);
        if (rec == 0 || max == 0 || (type == SIM_FT_CYCLIC && max < 2)) {
            free(f);
            return SIM_PARAMETER;
        }
        if ((uint64_t)rec * max > SIM_MEM_TOTAL) {
            free(f);
            return SIM_OUT_OF_EEPROM;
        }
        f->rec_size = rec;
        f->max_recs = max;
        f->recs = calloc(max, rec);
        f->pend_rec = calloc(1, rec);
        if (f->recs == NULL || f->pend_rec == NULL) {
            sim_file_free(f);
            return SIM_OUT_OF_EEPROM;
        }
        break;
    }
    *out = f;
    return 0;
}

int sim_cmd_create_file(struct sim_card *c)
{
    const uint8_t *d = c->cmd + 1;
    size_t n = c->cmd_len - 1;
    uint8_t type = type_for_ins(c->cmd[0]);
    size_t fid;
    struct sim_file *f;
    int st;

    if (!app_level(c))
        return SIM_PERMISSION;
    if (!(c->sel->settings & 0x04) && !sim_auth_is_master(c))
        return SIM_AUTH;
    fid = (c->sel->iso_flag && type != SIM_FT_VALUE) ? 2 : 0;
    if (n != 1 + fid + 3 + params_len(type))
        return SIM_LENGTH;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    st = sim_file_new(c->sel, d[0], type, d[1 + fid], (uint16_t)(d[2 + fid] | (d[3 + fid] << 8)),
                      d + 4 + fid, &f);
    if (st != 0)
        return st;
    if (fid) {
        f->has_fid = 1;
        f->iso_fid = (uint16_t)(d[1] | (d[2] << 8));
    }
    c->sel->files[d[0]] = f;
    if (sim_mem_used(c) > SIM_MEM_TOTAL) {
        c->sel->files[d[0]] = NULL;
        sim_file_free(f);
        return SIM_OUT_OF_EEPROM;
    }
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}

int sim_cmd_delete_file(struct sim_card *c)
{
    struct sim_file *f;
    int st;

    if (c->cmd_len != 2)
        return SIM_LENGTH;
    if (!app_level(c))
        return SIM_PERMISSION;
    if (!(c->sel->settings & 0x04) && !sim_auth_is_master(c))
        return SIM_AUTH;
    f = sim_find_file(c, c->cmd[1]);
    if (f == NULL)
        return SIM_FILE_NOT_FOUND;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    c->sel->files[c->cmd[1]] = NULL;
    sim_file_free(f);
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}
