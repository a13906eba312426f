/* sim_picc: PICC-level commands of the simulated card: GetVersion (three
 * frames of EV1 values), SelectApplication, GetApplicationIDs,
 * CreateApplication, DeleteApplication, FormatPICC, FreeMemory and
 * GetCardUID.  Access follows the PICC key settings (bit1 free listing,
 * bit2 free create); DeleteApplication and FormatPICC need a master key.
 * Must never leave the selection pointing at a freed application. */
#include "sim_priv.h"

#include <stdlib.h>
#include <string.h>

/* EV1, 8 KB, ISO 14443-2 and -3 (GetVersion bytes of a real MF3ICD81). */
static const uint8_t VERSION_HW[7] = {0x04, 0x01, 0x01, 0x01, 0x00, 0x1A, 0x05};
static const uint8_t VERSION_SW[7] = {0x04, 0x01, 0x01, 0x01, 0x04, 0x1A, 0x05};
/* Production batch, calendar week and year (2012) of every simulated card. */
static const uint8_t VERSION_BATCH[7] = {0xBA, 0x5E, 0x51, 0x3C, 0x00, 0x20, 0x12};

int sim_cmd_get_version(struct sim_card *c)
{
    uint8_t v[28];
    int st;

    if (c->cmd_len != 1)
        return SIM_LENGTH;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    memcpy(v, VERSION_HW, 7);
    memcpy(v + 7, VERSION_SW, 7);
    memset(v + 14, 0, 7);
    if (!(c->flags & SIM_FLAG_RANDOM_UID))
        memcpy(v + 14, c->uid, c->uid_len < 7 ? c->uid_len : 7);
    memcpy(v + 21, VERSION_BATCH, 7);
    st = sim_sm_reply(c, SIM_COMM_PLAIN, v, sizeof v);
    if (st != 0)
        return st;
    /* Hardware, software, then UID/batch (with the MAC, if any). */
    c->split[0] = 7;
    c->split[1] = 7;
    c->nsplit = 2;
    return 0;
}

int sim_cmd_select(struct sim_card *c)
{
    struct sim_app *a;

    if (!(c->flags & SIM_FLAG_KEEP_PENDING_ON_SELECT_AUTH))
        sim_txn_discard(c);
    sim_session_end(c);
    if (c->cmd_len != 4)
        return SIM_LENGTH;
    a = sim_find_app(c, sim_le24(c->cmd + 1));
    if (a == NULL)
        return SIM_APP_NOT_FOUND;
    c->sel = a;
    return sim_answer_raw(c, NULL, 0);
}

int sim_cmd_get_app_ids(struct sim_card *c)
{
    uint8_t ids[SIM_MAX_APPS * 3];
    size_t n = 0;
    int i, st;

    if (c->cmd_len != 1)
        return SIM_LENGTH;
    if (c->sel != &c->picc)
        return SIM_PERMISSION;
    if (!(c->picc.settings & 0x02) && !sim_auth_is_master(c))
        return SIM_AUTH;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    for (i = 0; i < SIM_MAX_APPS; i++) {
        if (c->apps[i] == NULL)
            continue;
        sim_put_le24(ids + n, c->apps[i]->aid);
        n += 3;
    }
    return sim_sm_reply(c, SIM_COMM_PLAIN, ids, n);
}

int sim_cmd_create_app(struct sim_card *c)
{
    const uint8_t *d = c->cmd + 1;
    size_t n = c->cmd_len - 1;
    struct sim_app *a;
    uint32_t aid;
    uint8_t nk;
    int i, slot = -1, st;

    if (c->sel != &c->picc)
        return SIM_PERMISSION;
    if (!(c->picc.settings & 0x04) && !sim_auth_is_master(c))
        return SIM_AUTH;
    if (n < 5)
        return SIM_LENGTH;
    nk = d[4];
    if ((nk & 0x20) ? (n < 7 || n > 7 + SIM_MAX_DFNAME) : n != 5)
        return SIM_LENGTH;
    aid = sim_le24(d);
    if (aid == 0 || (nk & 0x0F) > SIM_MAX_KEYS || (nk & 0xC0) == 0xC0 || (nk & 0x10))
        return SIM_PARAMETER;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    if (sim_find_app(c, aid) != NULL)
        return SIM_DUPLICATE;
    for (i = 0; i < SIM_MAX_APPS && slot < 0; i++)
        if (c->apps[i] == NULL)
            slot = i;
    if (slot < 0)
        return SIM_COUNT;
    if (sim_mem_used(c) + SIM_APP_OVERHEAD > SIM_MEM_TOTAL)
        return SIM_OUT_OF_EEPROM;
    a = calloc(1, sizeof *a);
    if (a == NULL)
        return SIM_OUT_OF_EEPROM;
    a->aid = aid;
    a->settings = d[3];
    a->nkeys = (uint8_t)(nk & 0x0F);
    a->key_type = (uint8_t)(nk & 0xC0);
    a->iso_flag = (uint8_t)(nk & 0x20);
    if (a->iso_flag) {
        a->has_fid = 1;
        a->iso_fid = (uint16_t)(d[5] | (d[6] << 8));
        a->dfname_len = (uint8_t)(n - 7);
        memcpy(a->dfname, d + 7, a->dfname_len);
    }
    c->apps[slot] = a;
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}

static void remove_app(struct sim_card *c, int idx)
{
    sim_app_free(c->apps[idx]);
    /* Keep the creation order, packed. */
    memmove(&c->apps[idx], &c->apps[idx + 1], (size_t)(SIM_MAX_APPS - idx - 1) * sizeof c->apps[0]);
    c->apps[SIM_MAX_APPS - 1] = NULL;
}

int sim_cmd_delete_app(struct sim_card *c)
{
    uint32_t aid;
    int i, idx = -1, st, was_selected;

    if (c->cmd_len != 4)
        return SIM_LENGTH;
    aid = sim_le24(c->cmd + 1);
    if (aid == 0)
        return SIM_PARAMETER;
    for (i = 0; i < SIM_MAX_APPS; i++)
        if (c->apps[i] != NULL && c->apps[i]->aid == aid)
            idx = i;
    /* The PICC master key, or the application's own master key. */
    if (!sim_auth_is_master(c) || (c->sel != &c->picc && c->sel->aid != aid))
        return SIM_AUTH;
    if (idx < 0)
        return SIM_APP_NOT_FOUND;
    st = sim_sm_plain_cmd(c);
    if (st == 0)
        st = sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
    if (st != 0)
        return st;
    was_selected = c->sel == c->apps[idx];
    remove_app(c, idx);
    if (was_selected) {
        c->sel = &c->picc;
        sim_session_end(c);
    }
    return 0;
}

int sim_cmd_format(struct sim_card *c)
{
    int i, st;

    if (c->cmd_len != 1)
        return SIM_LENGTH;
    if (c->sel != &c->picc)
        return SIM_PERMISSION;
    if (!sim_auth_is_master(c))
        return SIM_AUTH;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    for (i = 0; i < SIM_MAX_APPS; i++) {
        sim_app_free(c->apps[i]);
        c->apps[i] = NULL;
    }
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}

int sim_cmd_free_memory(struct sim_card *c)
{
    uint8_t r[3];
    size_t used;
    int st;

    if (c->cmd_len != 1)
        return SIM_LENGTH;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    used = sim_mem_used(c);
    sim_put_le24(r, used >= SIM_MEM_TOTAL ? 0 : (uint32_t)(SIM_MEM_TOTAL - used));
    return sim_sm_reply(c, SIM_COMM_PLAIN, r, sizeof r);
}

int sim_cmd_get_card_uid(struct sim_card *c)
{
    int st;

    if (c->cmd_len != 1)
        return SIM_LENGTH;
    if (!sim_session_active(c))
        return SIM_AUTH;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    return sim_sm_reply(c, SIM_COMM_ENC, c->uid, c->uid_len);
}
