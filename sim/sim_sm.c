/* sim_sm: the card's side of secure messaging, written independently of
 * the reader's desfire_session (it is that code's oracle).
 *
 * EV1 sessions (AuthenticateAES, ISO 0x1A): every command is MACed into the
 * running IV; MACed writes carry CMAC[0..7]; enciphered payloads are
 * data || CRC32(INS || header || data) || zeros; answers carry
 * CMAC(IV, data || 00)[0..7], or are enciphered as
 * data || CRC32(data || 00) || zeros with the command's CMAC as IV.
 * Legacy sessions (0x0A): nothing on plain traffic, a 4-byte DES CBC-MAC
 * over the data in MACed mode, CRC16 inside enciphered payloads, a fresh
 * zero IV for every message, and the reader's "send mode" (it deciphers to
 * encrypt, so the card enciphers to decrypt).
 * Never accept a MAC or CRC by a non-constant-time comparison, never leave
 * decrypted plaintext in a buffer that is not wiped. */
#include "sim_priv.h"

#include <string.h>

#define EV1_MAC_LEN 8
#define LEGACY_MAC_LEN 4

static size_t round_up(size_t n, size_t b)
{
    return (n + b - 1) / b * b;
}

int sim_session_active(const struct sim_card *c)
{
    return c->s.kind != SIM_SESS_NONE;
}

static size_t sess_block(const struct sim_card *c)
{
    return dfc_block_size(c->s.cipher);
}

int sim_sm_plain_cmd(struct sim_card *c)
{
    if (c->s.kind != SIM_SESS_EV1)
        return 0;
    if (dfc_cmac(c->s.cipher, c->s.key, c->s.iv, c->cmd, c->cmd_len, c->s.iv) != 0)
        return SIM_INTEGRITY;
    return 0;
}

size_t sim_sm_wire_len(const struct sim_card *c, enum sim_comm comm, size_t plen)
{
    if (c->s.kind == SIM_SESS_NONE || comm == SIM_COMM_PLAIN)
        return plen;
    if (c->s.kind == SIM_SESS_EV1)
        return comm == SIM_COMM_MAC ? plen + EV1_MAC_LEN : round_up(plen + 4, sess_block(c));
    return comm == SIM_COMM_MAC ? plen + LEGACY_MAC_LEN : round_up(plen + 2, 8);
}

/* Legacy MAC: the first 4 bytes of the last block of a DES/TDEA CBC
 * encryption (zero IV) of the data padded with zeros. */
static int legacy_mac(const struct sim_card *c, const uint8_t *p, size_t n, uint8_t mac[4])
{
    uint8_t buf[SIM_BUF_MAX];
    uint8_t iv[DFC_MAX_BLOCK] = {0};
    size_t len = round_up(n == 0 ? 1 : n, 8);
    int rc;

    if (len > sizeof buf)
        return SIM_LENGTH;
    memset(buf, 0, len);
    memcpy(buf, p, n);
    rc = dfc_cbc_encrypt(c->s.cipher, c->s.key, iv, buf, buf, len);
    memcpy(mac, buf + len - 8, 4);
    dfc_wipe(buf, len);
    return rc == 0 ? 0 : SIM_INTEGRITY;
}

/* Undoes the reader's legacy send mode: P_i = E(C_i) ^ C_(i-1), C_0 = 0. */
static int legacy_decode(const struct sim_card *c, const uint8_t *in, uint8_t *out, size_t n)
{
    uint8_t prev[8] = {0}, cur[8];
    size_t i, j;

    for (i = 0; i < n; i += 8) {
        memcpy(cur, in + i, 8);
        if (dfc_block_encrypt(c->s.cipher, c->s.key, cur, out + i) != 0)
            return SIM_INTEGRITY;
        for (j = 0; j < 8; j++)
            out[i + j] ^= prev[j];
        memcpy(prev, cur, 8);
    }
    return 0;
}

static int zeros(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    size_t i;

    for (i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

int sim_sm_decrypt_payload(struct sim_card *c, size_t hdr, uint8_t *out, size_t *n)
{
    const uint8_t *w = c->cmd + 1 + hdr;
    size_t wl, bs;

    if (c->s.kind == SIM_SESS_NONE)
        return SIM_AUTH;
    if (c->cmd_len < 1 + hdr)
        return SIM_LENGTH;
    wl = c->cmd_len - 1 - hdr;
    bs = c->s.kind == SIM_SESS_EV1 ? sess_block(c) : 8;
    if (wl == 0 || wl % bs != 0 || wl > SIM_BUF_MAX)
        return SIM_LENGTH;
    *n = wl;
    if (c->s.kind == SIM_SESS_EV1)
        return dfc_cbc_decrypt(c->s.cipher, c->s.key, c->s.iv, w, out, wl) == 0 ? 0 : SIM_INTEGRITY;
    return legacy_decode(c, w, out, wl);
}

int sim_sm_unwrap(struct sim_card *c, enum sim_comm comm, size_t hdr, size_t plen, uint8_t *out)
{
    uint8_t buf[SIM_BUF_MAX];
    uint8_t mac[DFC_MAX_BLOCK];
    const uint8_t *w;
    size_t wl, n;
    int st = 0;

    if (c->cmd_len < 1 + hdr)
        return SIM_LENGTH;
    w = c->cmd + 1 + hdr;
    wl = c->cmd_len - 1 - hdr;
    if (wl != sim_sm_wire_len(c, comm, plen))
        return SIM_LENGTH;
    if (c->s.kind == SIM_SESS_NONE || comm == SIM_COMM_PLAIN) {
        memcpy(out, w, plen);
        return sim_sm_plain_cmd(c);
    }
    if (comm == SIM_COMM_MAC) {
        if (c->s.kind == SIM_SESS_EV1) {
            if (dfc_cmac(c->s.cipher, c->s.key, c->s.iv, c->cmd, 1 + hdr + plen, mac) != 0)
                return SIM_INTEGRITY;
            memcpy(c->s.iv, mac, sess_block(c));
            if (!dfc_ct_equal(mac, w + plen, EV1_MAC_LEN))
                return SIM_INTEGRITY;
        } else {
            st = legacy_mac(c, w, plen, mac);
            if (st != 0)
                return st;
            if (!dfc_ct_equal(mac, w + plen, LEGACY_MAC_LEN))
                return SIM_INTEGRITY;
        }
        memcpy(out, w, plen);
        return 0;
    }
    /* Enciphered. */
    st = sim_sm_decrypt_payload(c, hdr, buf, &n);
    if (st == 0) {
        if (c->s.kind == SIM_SESS_EV1) {
            uint32_t crc = dfc_crc32_update(dfc_crc32(c->cmd, 1 + hdr), buf, plen);
            uint8_t want[4];
            dfc_put_le32(want, crc);
            if (!dfc_ct_equal(want, buf + plen, 4) || !zeros(buf + plen + 4, n - plen - 4))
                st = SIM_INTEGRITY;
        } else {
            uint16_t crc = dfc_crc16(buf, plen);
            uint8_t want[2] = {(uint8_t)crc, (uint8_t)(crc >> 8)};
            if (!dfc_ct_equal(want, buf + plen, 2) || !zeros(buf + plen + 2, n - plen - 2))
                st = SIM_INTEGRITY;
        }
    }
    if (st == 0)
        memcpy(out, buf, plen);
    dfc_wipe(buf, sizeof buf);
    return st;
}

int sim_sm_reply(struct sim_card *c, enum sim_comm comm, const uint8_t *data, size_t n)
{
    uint8_t mac[DFC_MAX_BLOCK];
    uint8_t *o = c->out;
    size_t bs, len;

    if (n + 4 + DFC_MAX_BLOCK + EV1_MAC_LEN > sizeof c->out)
        return SIM_BOUNDARY;
    if (n > 0 && data != o)
        memmove(o, data, n);
    c->out_off = 0;
    c->out_status = SIM_OK;
    if (c->s.kind == SIM_SESS_NONE || (c->s.kind == SIM_SESS_LEGACY && comm == SIM_COMM_PLAIN)) {
        c->out_len = n;
        return 0;
    }
    if (c->s.kind == SIM_SESS_EV1 && comm != SIM_COMM_ENC) {
        o[n] = SIM_OK;
        if (dfc_cmac(c->s.cipher, c->s.key, c->s.iv, o, n + 1, mac) != 0)
            return SIM_INTEGRITY;
        memcpy(c->s.iv, mac, sess_block(c));
        memcpy(o + n, mac, EV1_MAC_LEN);
        c->out_len = n + EV1_MAC_LEN;
        return 0;
    }
    if (c->s.kind == SIM_SESS_EV1) {
        static const uint8_t st = SIM_OK;
        bs = sess_block(c);
        dfc_put_le32(o + n, dfc_crc32_update(dfc_crc32(o, n), &st, 1));
        len = round_up(n + 4, bs);
        memset(o + n + 4, 0, len - n - 4);
        if (dfc_cbc_encrypt(c->s.cipher, c->s.key, c->s.iv, o, o, len) != 0)
            return SIM_INTEGRITY;
        c->out_len = len;
        return 0;
    }
    /* Legacy MACed or enciphered. */
    if (comm == SIM_COMM_MAC) {
        int st = legacy_mac(c, o, n, mac);
        if (st != 0)
            return st;
        memcpy(o + n, mac, LEGACY_MAC_LEN);
        c->out_len = n + LEGACY_MAC_LEN;
        return 0;
    }
    {
        uint8_t iv[DFC_MAX_BLOCK] = {0};
        uint16_t crc = dfc_crc16(o, n);
        o[n] = (uint8_t)crc;
        o[n + 1] = (uint8_t)(crc >> 8);
        len = round_up(n + 2, 8);
        memset(o + n + 2, 0, len - n - 2);
        if (dfc_cbc_encrypt(c->s.cipher, c->s.key, iv, o, o, len) != 0)
            return SIM_INTEGRITY;
        c->out_len = len;
    }
    return 0;
}

static enum sim_comm file_comm(const struct sim_file *f)
{
    switch (f->comm & 0x03) {
    case 0x01:
        return SIM_COMM_MAC;
    case 0x03:
        return SIM_COMM_ENC;
    default:
        return SIM_COMM_PLAIN;
    }
}

int sim_file_access(const struct sim_card *c, const struct sim_file *f, unsigned need,
                    enum sim_comm *comm)
{
    static const unsigned shift[4] = {12, 8, 4, 0}; /* R, W, RW, Change */
    int any_free = 0, all_never = 1, key_match = 0;
    int i;

    for (i = 0; i < 4; i++) {
        unsigned v;
        if (!(need & (1u << i)))
            continue;
        v = (f->access >> shift[i]) & 0x0Fu;
        if (v == 0x0E)
            any_free = 1;
        if (v != 0x0F)
            all_never = 0;
        if (c->s.kind != SIM_SESS_NONE && v == c->s.keyno)
            key_match = 1;
    }
    /* An authenticated key that holds the right gets the file's mode; a
     * free right alone means plain traffic (as libfreefare expects). */
    if (key_match) {
        *comm = file_comm(f);
        return 0;
    }
    if (any_free) {
        *comm = SIM_COMM_PLAIN;
        return 0;
    }
    return all_never ? SIM_PERMISSION : SIM_AUTH;
}
