/* desfire_session: reader-side EV1 secure messaging for one logical
 * command at a time (CONVENTIONS.md §4-§9): the running IV through every
 * CMAC, encryption and decryption; MACed and enciphered payloads; AF
 * chaining both ways; exact length, MAC, CRC and padding checks on every
 * answer.  Sans-I/O.  Never trusts a byte or a length from the card
 * without a check, never lets a session survive an error, never leaves
 * plaintext in its buffers after clearing. */
#include "desfire_session.h"

#include <string.h>

#include "desfire_apdu.h"
#include "ota_err.h"

#define INS_CHANGE_KEY 0xC4
#define HDR_MAX 16
#define MAC_LEN 8
#define CRC_LEN 4

void dfc_session_clear(struct dfc_session *s)
{
    if (s == NULL)
        return;
    dfc_wipe(s->key, sizeof s->key);
    dfc_wipe(s->iv, sizeof s->iv);
    s->keyno = 0;
    s->active = 0;
}

void dfc_cmd_clear(struct dfc_cmd *c)
{
    if (c == NULL)
        return;
    dfc_wipe(c, sizeof *c);
    c->state = DFC_CMD_IDLE;
}

static size_t round_up(size_t n, size_t bs)
{
    return (n + bs - 1) / bs * bs;
}

static int cmd_fail(struct dfc_cmd *c, int err)
{
    if (c->sess != NULL)
        dfc_session_clear(c->sess);
    c->sess = NULL;
    dfc_wipe(c->wire, sizeof c->wire);
    dfc_wipe(c->acc, sizeof c->acc);
    dfc_wipe(c->resp, sizeof c->resp);
    c->wire_len = c->wire_off = c->acc_len = c->resp_len_out = 0;
    c->state = DFC_CMD_FAILED;
    return err;
}

static int session_usable(const struct dfc_session *s)
{
    return s != NULL && s->active && dfc_key_size(s->cipher) != 0;
}

/* Writes the next command frame: INS first, then AF continuation frames. */
static int send_frame(struct dfc_cmd *c, uint8_t *apdu, size_t cap, size_t *apdu_len)
{
    int first = c->state == DFC_CMD_IDLE;
    size_t room = (size_t)(first ? c->first_max : c->next_max) - 1;
    size_t rest = c->wire_len - c->wire_off;
    size_t n = rest < room ? rest : room;
    int rc;

    if (!first && n == 0)
        return OTA_ERR_INTERNAL;
    rc = dfc_apdu_build(first ? c->ins : DFC_ST_ADDITIONAL_FRAME, c->wire + c->wire_off, n, apdu,
                        cap, apdu_len);
    if (rc != OTA_OK)
        return rc;
    c->wire_off += n;
    c->state = c->wire_off == c->wire_len ? DFC_CMD_RECEIVING : DFC_CMD_SENDING;
    return OTA_OK;
}

static int frame_limit(uint8_t want, uint8_t *out)
{
    if (want == 0)
        *out = DFC_FRAME_MAX_CMD;
    else if (want < 2 || want > DFC_FRAME_MAX_REPLAY)
        return OTA_ERR_INVAL;
    else
        *out = want;
    return OTA_OK;
}

static int comm_valid(enum dfc_comm m)
{
    return m == DFC_COMM_PLAIN || m == DFC_COMM_MAC || m == DFC_COMM_ENC;
}

/* Protects INS || hdr || data into c->wire by the session rules. */
static int build_wire(struct dfc_cmd *c, struct dfc_session *s, const struct dfc_cmd_spec *sp)
{
    uint8_t msg[1 + HDR_MAX + DFC_DATA_MAX];
    size_t mlen = 1 + sp->hdr_len + sp->data_len, bs, plen;
    int rc = OTA_OK;

    msg[0] = sp->ins;
    if (sp->hdr_len > 0)
        memcpy(msg + 1, sp->hdr, sp->hdr_len);
    if (sp->data_len > 0)
        memcpy(msg + 1 + sp->hdr_len, sp->data, sp->data_len);
    memcpy(c->wire, msg + 1, mlen - 1);
    c->wire_len = mlen - 1;
    if (s == NULL)
        goto out;
    bs = dfc_block_size(s->cipher);
    switch (sp->cmd_comm) {
    case DFC_COMM_PLAIN:
        rc = dfc_cmac(s->cipher, s->key, s->iv, msg, mlen, s->iv);
        break;
    case DFC_COMM_MAC:
        rc = dfc_cmac(s->cipher, s->key, s->iv, msg, mlen, s->iv);
        if (rc == OTA_OK) {
            memcpy(c->wire + c->wire_len, s->iv, MAC_LEN);
            c->wire_len += MAC_LEN;
        }
        break;
    case DFC_COMM_ENC: {
        /* data || CRC32(INS || hdr || data) || zero padding, no extra block. */
        uint8_t *p = c->wire + sp->hdr_len;
        plen = round_up(sp->data_len + CRC_LEN, bs);
        dfc_put_le32(p + sp->data_len, dfc_crc32(msg, mlen));
        memset(p + sp->data_len + CRC_LEN, 0, plen - sp->data_len - CRC_LEN);
        rc = dfc_cbc_encrypt(s->cipher, s->key, s->iv, p, p, plen);
        c->wire_len = sp->hdr_len + plen;
        break;
    }
    default:
        rc = OTA_ERR_INVAL;
    }
out:
    dfc_wipe(msg, sizeof msg);
    return rc;
}

int dfc_cmd_start(struct dfc_cmd *c, struct dfc_session *s, const struct dfc_cmd_spec *spec,
                  uint8_t *apdu, size_t cap, size_t *apdu_len)
{
    int rc;

    if (c == NULL || spec == NULL || apdu == NULL || apdu_len == NULL)
        return OTA_ERR_INVAL;
    dfc_cmd_clear(c);
    if (spec->hdr_len > HDR_MAX || spec->data_len > DFC_DATA_MAX ||
        (spec->hdr == NULL && spec->hdr_len != 0) || (spec->data == NULL && spec->data_len != 0) ||
        spec->resp_len < -1 || spec->resp_len > DFC_DATA_MAX || !comm_valid(spec->cmd_comm) ||
        !comm_valid(spec->resp_comm) ||
        frame_limit(spec->first_frame_max, &c->first_max) != OTA_OK ||
        frame_limit(spec->next_frame_max, &c->next_max) != OTA_OK) {
        c->state = DFC_CMD_FAILED;
        return OTA_ERR_INVAL;
    }
    c->sess = session_usable(s) ? s : NULL;
    c->ins = spec->ins;
    c->resp_comm = spec->resp_comm;
    c->resp_len = spec->resp_len;
    rc = build_wire(c, c->sess, spec);
    if (rc == OTA_OK)
        rc = send_frame(c, apdu, cap, apdu_len);
    if (rc != OTA_OK)
        return cmd_fail(c, rc);
    return OTA_OK;
}

int dfc_cmd_start_changekey(struct dfc_cmd *c, struct dfc_session *s, uint8_t keyno_byte,
                            enum dfc_cipher new_type, const uint8_t *new_key, uint8_t key_version,
                            const uint8_t *old_key, uint8_t *apdu, size_t cap, size_t *apdu_len)
{
    uint8_t plain[1 + 1 + DFC_MAX_KEY + 1 + 2 * CRC_LEN + DFC_MAX_BLOCK];
    size_t klen = dfc_key_size(new_type), n, bs, i;
    int same, rc;

    if (c == NULL || new_key == NULL || apdu == NULL || apdu_len == NULL || klen == 0)
        return OTA_ERR_INVAL;
    dfc_cmd_clear(c);
    if (!session_usable(s)) {
        c->state = DFC_CMD_FAILED;
        return OTA_ERR_STATE;
    }
    same = (keyno_byte & 0x0F) == (s->keyno & 0x0F);
    if (same != (old_key == NULL)) {
        c->state = DFC_CMD_FAILED;
        return OTA_ERR_INVAL;
    }
    c->sess = s;
    c->ins = INS_CHANGE_KEY;
    c->resp_comm = DFC_COMM_MAC;
    c->resp_len = 0;
    c->changekey_same = same;
    c->first_max = DFC_FRAME_MAX_CMD;
    c->next_max = DFC_FRAME_MAX_CMD;
    bs = dfc_block_size(s->cipher);

    /* plain = C4 KeyNo | key material ... ; the CRC covers C4 and KeyNo. */
    plain[0] = INS_CHANGE_KEY;
    plain[1] = keyno_byte;
    n = 2;
    for (i = 0; i < klen; i++)
        plain[n + i] = (uint8_t)(new_key[i] ^ (same ? 0 : old_key[i]));
    n += klen;
    if (new_type == DFC_AES128)
        plain[n++] = key_version;
    dfc_put_le32(plain + n, dfc_crc32(plain, n));
    n += CRC_LEN;
    if (!same) {
        dfc_put_le32(plain + n, dfc_crc32(new_key, klen));
        n += CRC_LEN;
    }
    /* Encrypted part starts after C4 KeyNo. */
    memset(plain + n, 0, round_up(n - 2, bs) - (n - 2));
    n = 2 + round_up(n - 2, bs);
    rc = dfc_cbc_encrypt(s->cipher, s->key, s->iv, plain + 2, plain + 2, n - 2);
    if (rc == OTA_OK) {
        memcpy(c->wire, plain + 1, n - 1);
        c->wire_len = n - 1;
        rc = send_frame(c, apdu, cap, apdu_len);
    }
    dfc_wipe(plain, sizeof plain);
    if (rc != OTA_OK)
        return cmd_fail(c, rc);
    return OTA_OK;
}

/* Largest answer (data plus protection) the spec allows, for early stops. */
static size_t answer_cap(const struct dfc_cmd *c)
{
    size_t bs;

    if (c->resp_len < 0)
        return sizeof c->acc;
    if (c->sess == NULL)
        return (size_t)c->resp_len;
    if (c->changekey_same)
        return 0;
    if (c->resp_comm == DFC_COMM_ENC) {
        /* 80-padding may add a whole block after an aligned CRC. */
        bs = dfc_block_size(c->sess->cipher);
        return round_up((size_t)c->resp_len + CRC_LEN + 1, bs);
    }
    return (size_t)c->resp_len + MAC_LEN;
}

static int padding_ok(const uint8_t *p, size_t n, size_t bs)
{
    uint8_t acc = 0;
    size_t i;

    if (n == 0)
        return 1;
    for (i = 1; i < n; i++)
        acc |= p[i];
    if (acc != 0)
        return 0;
    if (p[0] == 0x00)
        return n < bs;
    return p[0] == 0x80 && n <= bs;
}

static int crc_at(const uint8_t *plain, size_t dlen)
{
    static const uint8_t status_ok = DFC_ST_OK;
    uint32_t crc = dfc_crc32_update(dfc_crc32(plain, dlen), &status_ok, 1);

    return crc == dfc_get_le32(plain + dlen);
}

/* data || CRC32(data || 00) || padding, decrypted with the running IV. */
static int finish_enc(struct dfc_cmd *c)
{
    struct dfc_session *s = c->sess;
    size_t bs = dfc_block_size(s->cipher), n = c->acc_len, d, lo;
    int rc, found;

    if (n == 0 || n % bs != 0)
        return OTA_ERR_LENGTH;
    rc = dfc_cbc_decrypt(s->cipher, s->key, s->iv, c->acc, c->acc, n);
    if (rc != OTA_OK)
        return rc;
    if (c->resp_len >= 0) {
        d = (size_t)c->resp_len;
        if (d + CRC_LEN > n)
            return OTA_ERR_LENGTH;
        if (!padding_ok(c->acc + d + CRC_LEN, n - d - CRC_LEN, bs) || !crc_at(c->acc, d))
            return OTA_ERR_CRC;
    } else {
        if (n < CRC_LEN)
            return OTA_ERR_LENGTH;
        /* Unknown length: the CRC sits in the last block or, with 80
         * padding after an aligned CRC, the block before. */
        lo = n >= CRC_LEN + bs ? n - CRC_LEN - bs : 0;
        found = 0;
        for (d = n - CRC_LEN;; d--) {
            if (padding_ok(c->acc + d + CRC_LEN, n - d - CRC_LEN, bs) && crc_at(c->acc, d)) {
                found = 1;
                break;
            }
            if (d == lo)
                break;
        }
        if (!found)
            return OTA_ERR_CRC;
    }
    if (d > sizeof c->resp)
        return OTA_ERR_LENGTH;
    memcpy(c->resp, c->acc, d);
    c->resp_len_out = d;
    return OTA_OK;
}

/* data || CMAC(IV, data || 00)[0..7]. */
static int finish_mac(struct dfc_cmd *c)
{
    struct dfc_session *s = c->sess;
    uint8_t got[MAC_LEN], full[DFC_MAX_BLOCK];
    size_t d;
    int rc, ok;

    if (c->acc_len < MAC_LEN)
        return OTA_ERR_LENGTH;
    d = c->acc_len - MAC_LEN;
    if ((c->resp_len >= 0 && d != (size_t)c->resp_len) || d > sizeof c->resp)
        return OTA_ERR_LENGTH;
    memcpy(got, c->acc + d, MAC_LEN);
    c->acc[d] = DFC_ST_OK; /* the CMAC covers data then status */
    rc = dfc_cmac(s->cipher, s->key, s->iv, c->acc, d + 1, full);
    if (rc != OTA_OK)
        return rc;
    ok = dfc_ct_equal(got, full, MAC_LEN);
    if (!ok)
        return OTA_ERR_MAC;
    memcpy(s->iv, full, dfc_block_size(s->cipher));
    memcpy(c->resp, c->acc, d);
    c->resp_len_out = d;
    return OTA_OK;
}

static int finish(struct dfc_cmd *c)
{
    int rc;

    if (c->sess == NULL) {
        if ((c->resp_len >= 0 && c->acc_len != (size_t)c->resp_len) || c->acc_len > sizeof c->resp)
            return OTA_ERR_LENGTH;
        memcpy(c->resp, c->acc, c->acc_len);
        c->resp_len_out = c->acc_len;
        return OTA_OK;
    }
    if (c->changekey_same) {
        /* The card dropped the session with the old key: no MAC follows. */
        if (c->acc_len != 0)
            return OTA_ERR_LENGTH;
        dfc_session_clear(c->sess);
        c->resp_len_out = 0;
        return OTA_OK;
    }
    if (c->resp_comm == DFC_COMM_ENC)
        rc = finish_enc(c);
    else
        rc = finish_mac(c);
    return rc;
}

int dfc_cmd_feed(struct dfc_cmd *c, const uint8_t *rapdu, size_t rlen, uint8_t *apdu, size_t cap,
                 size_t *apdu_len)
{
    const uint8_t *data;
    uint8_t st;
    size_t n;
    int rc;

    if (c == NULL)
        return OTA_ERR_INVAL;
    if (c->state != DFC_CMD_SENDING && c->state != DFC_CMD_RECEIVING)
        return cmd_fail(c, OTA_ERR_STATE);
    if (c->sess != NULL && !c->sess->active)
        return cmd_fail(c, OTA_ERR_STATE);
    rc = dfc_apdu_parse(rapdu, rlen, &st, &data, &n);
    if (rc != OTA_OK)
        return cmd_fail(c, rc);
    c->status = st;
    if (st != DFC_ST_OK && st != DFC_ST_ADDITIONAL_FRAME)
        return cmd_fail(c, OTA_ERR_CARD_STATUS);

    if (c->state == DFC_CMD_SENDING) {
        /* Between command frames the card only asks for more. */
        if (st != DFC_ST_ADDITIONAL_FRAME || n != 0)
            return cmd_fail(c, OTA_ERR_LENGTH);
        if (apdu == NULL || apdu_len == NULL)
            return cmd_fail(c, OTA_ERR_INVAL);
        rc = send_frame(c, apdu, cap, apdu_len);
        return rc == OTA_OK ? DFC_MORE : cmd_fail(c, rc);
    }

    /* An empty AF frame would let the card keep us asking forever. */
    if (st == DFC_ST_ADDITIONAL_FRAME && n == 0)
        return cmd_fail(c, OTA_ERR_LENGTH);
    if (n > sizeof c->acc - c->acc_len || c->acc_len + n > answer_cap(c))
        return cmd_fail(c, OTA_ERR_LENGTH);
    memcpy(c->acc + c->acc_len, data, n);
    c->acc_len += n;
    if (st == DFC_ST_ADDITIONAL_FRAME) {
        if (apdu == NULL || apdu_len == NULL)
            return cmd_fail(c, OTA_ERR_INVAL);
        /* Continuation requests are not MACed (CONVENTIONS.md §6). */
        rc = dfc_apdu_build(DFC_ST_ADDITIONAL_FRAME, NULL, 0, apdu, cap, apdu_len);
        return rc == OTA_OK ? DFC_MORE : cmd_fail(c, rc);
    }
    rc = finish(c);
    if (rc != OTA_OK)
        return cmd_fail(c, rc);
    dfc_wipe(c->wire, sizeof c->wire);
    dfc_wipe(c->acc, sizeof c->acc);
    c->sess = NULL;
    c->state = DFC_CMD_DONE;
    return OTA_OK;
}
