/* sim_keys: key settings and key changes on the simulated card
 * (GetKeySettings 0x45, ChangeKeySettings 0x54, GetKeyVersion 0x64,
 * ChangeKey 0xC4).  Key settings: bit0 master key changeable, bit1 free
 * listing, bit2 free create/delete, bit3 settings changeable, high nibble
 * (applications) the key that may change the other keys (0xE: the key
 * itself, 0xF: frozen).  ChangeKey and ChangeKeySettings are always
 * enciphered; changing the authenticated key ends the session and its
 * answer carries no MAC.  Must never change a key before every CRC and the
 * padding of the cryptogram verified. */
#include "sim_priv.h"

#include <string.h>

#define PICC_CHANGE_TYPE_MASK 0xC0

int sim_cmd_get_key_settings(struct sim_card *c)
{
    struct sim_app *a = c->sel;
    uint8_t r[2];
    int st;

    if (c->cmd_len != 1)
        return SIM_LENGTH;
    if (!(a->settings & 0x02) && !sim_auth_is_master(c))
        return SIM_AUTH;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    r[0] = a->settings;
    r[1] = (uint8_t)(a->nkeys | a->key_type);
    return sim_sm_reply(c, SIM_COMM_PLAIN, r, sizeof r);
}

int sim_cmd_change_key_settings(struct sim_card *c)
{
    struct sim_app *a = c->sel;
    uint8_t s;
    int st;

    if (!sim_session_active(c) || c->s.keyno != 0)
        return SIM_AUTH;
    if (!(a->settings & 0x08))
        return SIM_PERMISSION;
    st = sim_sm_unwrap(c, SIM_COMM_ENC, 0, 1, &s);
    if (st != 0)
        return st;
    a->settings = s;
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}

int sim_cmd_get_key_version(struct sim_card *c)
{
    struct sim_app *a = c->sel;
    uint8_t v;
    int st;

    if (c->cmd_len != 2)
        return SIM_LENGTH;
    if (c->cmd[1] >= a->nkeys)
        return SIM_NO_SUCH_KEY;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    v = sim_key_version(a, c->cmd[1]);
    return sim_sm_reply(c, SIM_COMM_PLAIN, &v, 1);
}

/* Who may change key keyno (CONVENTIONS.md §9 and the key settings). */
static int may_change(const struct sim_card *c, const struct sim_app *a, uint8_t keyno)
{
    uint8_t acc = (uint8_t)(a->settings >> 4);

    if (keyno == 0) {
        if (c->s.keyno != 0)
            return SIM_AUTH;
        return (a->settings & 0x01) ? 0 : SIM_PERMISSION;
    }
    if (acc == 0x0F)
        return SIM_PERMISSION;
    if (acc == 0x0E)
        return c->s.keyno == keyno ? 0 : SIM_AUTH;
    return c->s.keyno == acc ? 0 : SIM_AUTH;
}

static size_t round_up(size_t n, size_t b)
{
    return (n + b - 1) / b * b;
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    size_t i;

    for (i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* Checks the decrypted cryptogram; fills newkey.  0 or 1E. */
static int check_cryptogram(const struct sim_card *c, const uint8_t *buf, size_t n, size_t klen,
                            size_t plen, int same, const uint8_t *old, uint8_t *newkey)
{
    size_t i, crcs;
    int ok;

    for (i = 0; i < klen; i++)
        newkey[i] = same ? buf[i] : (uint8_t)(buf[i] ^ old[i]);
    if (c->s.kind == SIM_SESS_EV1) {
        uint8_t want[8];
        dfc_put_le32(want, dfc_crc32_update(dfc_crc32(c->cmd, 2), buf, plen));
        ok = dfc_ct_equal(want, buf + plen, 4);
        crcs = 4;
        if (!same) {
            dfc_put_le32(want + 4, dfc_crc32(newkey, klen));
            ok &= dfc_ct_equal(want + 4, buf + plen + 4, 4);
            crcs = 8;
        }
    } else {
        uint16_t a = dfc_crc16(buf, plen);
        uint8_t want[4] = {(uint8_t)a, (uint8_t)(a >> 8), 0, 0};
        ok = dfc_ct_equal(want, buf + plen, 2);
        crcs = 2;
        if (!same) {
            uint16_t b = dfc_crc16(newkey, klen);
            want[2] = (uint8_t)b;
            want[3] = (uint8_t)(b >> 8);
            ok &= dfc_ct_equal(want + 2, buf + plen + 2, 2);
            crcs = 4;
        }
    }
    ok &= all_zero(buf + plen + crcs, n - plen - crcs);
    return ok ? 0 : SIM_INTEGRITY;
}

int sim_cmd_change_key(struct sim_card *c)
{
    struct sim_app *a = c->sel;
    uint8_t buf[64], newkey[DFC_MAX_KEY];
    uint8_t kb, keyno, type;
    size_t klen, plen, crcs, bs, n = 0;
    int same, st;

    if (c->cmd_len < 2)
        return SIM_LENGTH;
    if (!sim_session_active(c))
        return SIM_AUTH;
    kb = c->cmd[1];
    if (a == &c->picc) {
        /* At PICC level the key number byte carries the new key type. */
        type = (uint8_t)(kb & PICC_CHANGE_TYPE_MASK);
        keyno = (uint8_t)(kb & 0x3F);
        if (type == PICC_CHANGE_TYPE_MASK)
            return SIM_PARAMETER;
    } else {
        type = a->key_type;
        keyno = (uint8_t)(kb & 0x0F);
        if (kb & 0xF0)
            return SIM_PARAMETER;
    }
    if (keyno >= a->nkeys)
        return SIM_NO_SUCH_KEY;
    st = may_change(c, a, keyno);
    if (st != 0)
        return st;
    same = keyno == c->s.keyno;
    klen = sim_key_len(type);
    plen = klen + (type == SIM_KT_AES ? 1u : 0u);
    if (c->s.kind == SIM_SESS_EV1) {
        crcs = same ? 4 : 8;
        bs = dfc_block_size(c->s.cipher);
    } else {
        crcs = same ? 2 : 4;
        bs = 8;
    }
    if (c->cmd_len - 2 != round_up(plen + crcs, bs) || c->cmd_len - 2 > sizeof buf)
        return SIM_LENGTH;
    st = sim_sm_decrypt_payload(c, 1, buf, &n);
    if (st == 0)
        st = check_cryptogram(c, buf, n, klen, plen, same, a->keys[keyno].key, newkey);
    if (st == 0) {
        memset(a->keys[keyno].key, 0, DFC_MAX_KEY);
        memcpy(a->keys[keyno].key, newkey, klen);
        a->keys[keyno].aes_version = type == SIM_KT_AES ? buf[klen] : 0;
        a->key_type = type;
    }
    dfc_wipe(buf, sizeof buf);
    dfc_wipe(newkey, sizeof newkey);
    if (st != 0)
        return st;
    if (same) {
        /* The key of this session is gone: bare 00, session over. */
        sim_session_end(c);
        return sim_answer_raw(c, NULL, 0);
    }
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}
