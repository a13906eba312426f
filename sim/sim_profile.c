/* sim_profile: direct (APDU-free) personalization of a simulated card with
 * the profile of card_profile.h, and the human-readable dump of a card's
 * committed state.  Personalization builds exactly what the operator's
 * APDUs would: application C0FFEE with four AES keys diversified with
 * AN10922 from UID || AID || system id, value file 1 and cyclic record
 * file 2.  Must never print key material. */
#include "sim_priv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card_profile.h"
#include "ota_err.h"

static int add_profile_files(struct sim_app *a, int32_t balance)
{
    uint8_t p[13];
    struct sim_file *f;
    int st;

    dfc_put_le32(p, (uint32_t)PROF_VALUE_LOWER);
    dfc_put_le32(p + 4, (uint32_t)PROF_VALUE_UPPER);
    dfc_put_le32(p + 8, (uint32_t)balance);
    p[12] = PROF_LIMITED_CREDIT;
    st = sim_file_new(a, PROF_FILE_VALUE, SIM_FT_VALUE, PROF_COMM_ENC, PROF_VALUE_ACCESS, p, &f);
    if (st != 0)
        return OTA_ERR_INVAL;
    a->files[PROF_FILE_VALUE] = f;
    sim_put_le24(p, PROF_RECORD_SIZE);
    sim_put_le24(p + 3, PROF_RECORD_COUNT);
    st =
        sim_file_new(a, PROF_FILE_RECORDS, SIM_FT_CYCLIC, PROF_COMM_ENC, PROF_RECORD_ACCESS, p, &f);
    if (st != 0)
        return OTA_ERR_INVAL;
    a->files[PROF_FILE_RECORDS] = f;
    return OTA_OK;
}

int sim_card_personalize(struct sim_card *card, const uint8_t master_keys[4][16],
                         const char *system_id, int32_t balance)
{
    uint8_t m[31];
    size_t sl, mlen;
    struct sim_app *a;
    int i, slot = -1, rc;

    if (card == NULL || master_keys == NULL || system_id == NULL)
        return OTA_ERR_INVAL;
    sl = strlen(system_id);
    mlen = card->uid_len + 3 + sl;
    if (mlen > sizeof m || balance < PROF_VALUE_LOWER || balance > PROF_VALUE_UPPER)
        return OTA_ERR_INVAL;
    if (sim_find_app(card, PROF_AID_U32) != NULL)
        return OTA_ERR_STATE;
    for (i = 0; i < SIM_MAX_APPS && slot < 0; i++)
        if (card->apps[i] == NULL)
            slot = i;
    if (slot < 0)
        return OTA_ERR_LIMIT;
    a = calloc(1, sizeof *a);
    if (a == NULL)
        return OTA_ERR_NOMEM;
    a->aid = PROF_AID_U32;
    a->settings = PROF_APP_KEY_SETTINGS;
    a->nkeys = PROF_NUM_KEYS;
    a->key_type = SIM_KT_AES;
    memcpy(m, card->uid, card->uid_len);
    m[card->uid_len] = PROF_AID_0;
    m[card->uid_len + 1] = PROF_AID_1;
    m[card->uid_len + 2] = PROF_AID_2;
    memcpy(m + card->uid_len + 3, system_id, sl);
    for (i = 0; i < PROF_NUM_KEYS; i++) {
        rc = dfc_an10922_aes128(master_keys[i], m, mlen, a->keys[i].key);
        if (rc != 0) {
            sim_app_free(a);
            return rc;
        }
        a->keys[i].aes_version = 0;
    }
    rc = add_profile_files(a, balance);
    if (rc != OTA_OK) {
        sim_app_free(a);
        return rc;
    }
    card->apps[slot] = a;
    if (sim_mem_used(card) > SIM_MEM_TOTAL) {
        card->apps[slot] = NULL;
        sim_app_free(a);
        return OTA_ERR_LIMIT;
    }
    return OTA_OK;
}

/* --- describe --- */

struct tbuf {
    char *p;
    size_t cap, n;
    int trunc;
};

__attribute__((format(printf, 2, 3))) static void t_printf(struct tbuf *t, const char *fmt, ...)
{
    va_list ap;
    int k;

    if (t->trunc)
        return;
    va_start(ap, fmt);
    k = vsnprintf(t->p + t->n, t->cap - t->n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= t->cap - t->n) {
        t->trunc = 1;
        return;
    }
    t->n += (size_t)k;
}

static void t_hex(struct tbuf *t, const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        t_printf(t, "%02X", p[i]);
}

static const char *key_type_name(uint8_t kt)
{
    switch (kt) {
    case SIM_KT_AES:
        return "AES";
    case SIM_KT_3K:
        return "3K3DES";
    default:
        return "DES/2K3DES";
    }
}

static const char *comm_name(uint8_t comm)
{
    switch (comm) {
    case 0x01:
        return "maced";
    case 0x03:
        return "enciphered";
    default:
        return "plain";
    }
}

static void access_str(uint16_t acc, char out[5])
{
    static const char digits[] = "0123456789ABCDEF";
    out[0] = digits[(acc >> 12) & 0xF];
    out[1] = digits[(acc >> 8) & 0xF];
    out[2] = digits[(acc >> 4) & 0xF];
    out[3] = digits[acc & 0xF];
    out[4] = '\0';
}

static void describe_file(struct tbuf *t, int no, const struct sim_file *f)
{
    static const char *types[] = {"standard", "backup", "value", "linear-record", "cyclic-record"};
    char acc[5];
    uint32_t i;

    access_str(f->access, acc);
    t_printf(t, "    file %d: %s, %s, access R/W/RW/C=%c/%c/%c/%c", no, types[f->type],
             comm_name(f->comm), acc[0], acc[1], acc[2], acc[3]);
    switch (f->type) {
    case SIM_FT_STD:
    case SIM_FT_BACKUP:
        t_printf(t, ", size %u\n      data ", (unsigned)f->size);
        t_hex(t, f->data, f->size);
        t_printf(t, "\n");
        break;
    case SIM_FT_VALUE:
        t_printf(t, ", limits %d..%d, limited credit %s (%d)\n      value %d\n", (int)f->lower,
                 (int)f->upper, (f->lc_flags & 1) ? "on" : "off", (int)f->limit, (int)f->value);
        break;
    default:
        t_printf(t, ", record size %u, max records %u, records %u\n", (unsigned)f->rec_size,
                 (unsigned)f->max_recs, (unsigned)f->count);
        for (i = 0; i < f->count; i++) {
            t_printf(t, "      record %u (%s) ", (unsigned)i,
                     i + 1 == f->count ? "newest" : (i == 0 ? "oldest" : "-"));
            t_hex(t, f->recs + (size_t)i * f->rec_size, f->rec_size);
            t_printf(t, "\n");
        }
        break;
    }
}

int sim_card_describe(const struct sim_card *card, char *out, size_t cap)
{
    struct tbuf t = {out, cap, 0, 0};
    int i, j, napps = 0;

    if (card == NULL || out == NULL || cap == 0)
        return OTA_ERR_INVAL;
    out[0] = '\0';
    t_printf(&t, "card uid ");
    t_hex(&t, card->uid, card->uid_len);
    t_printf(&t, "\npicc: key settings 0x%02X, master key %s (version 0x%02X), free memory %u\n",
             card->picc.settings, key_type_name(card->picc.key_type),
             sim_key_version(&card->picc, 0), (unsigned)(SIM_MEM_TOTAL - sim_mem_used(card)));
    for (i = 0; i < SIM_MAX_APPS; i++) {
        const struct sim_app *a = card->apps[i];
        if (a == NULL)
            continue;
        napps++;
        t_printf(&t, "application %06X: key settings 0x%02X, %u %s keys, versions",
                 (unsigned)a->aid, a->settings, (unsigned)a->nkeys, key_type_name(a->key_type));
        for (j = 0; j < a->nkeys; j++)
            t_printf(&t, " %02X", sim_key_version(a, (uint8_t)j));
        t_printf(&t, "\n");
        for (j = 0; j < SIM_MAX_FILES; j++)
            if (a->files[j] != NULL)
                describe_file(&t, j, a->files[j]);
    }
    if (napps == 0)
        t_printf(&t, "no applications\n");
    if (t.trunc)
        return OTA_ERR_LENGTH;
    return OTA_OK;
}
