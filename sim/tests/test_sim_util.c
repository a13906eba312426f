/* test_sim_util: see test_sim_util.h. */
#include "test_sim_util.h"

#include <check.h>
#include <string.h>

#include "card_profile.h"
#include "desfire_auth.h"
#include "ota_err.h"

const uint8_t TS_UID[7] = {0x04, 0x52, 0x5A, 0x1A, 0x3B, 0x28, 0x80};
const uint8_t TS_ZERO_KEY[24] = {0};

static void counter_rng(void *ctx, uint8_t *p, size_t n)
{
    uint8_t *ctr = ctx;
    size_t i;

    for (i = 0; i < n; i++)
        p[i] = (uint8_t)(*ctr + 17 * i + 1);
    (*ctr)++;
}

static uint8_t rng_state;

struct sim_card *ts_card(enum sim_picc_key k)
{
    struct sim_card *c = sim_card_new(TS_UID, sizeof TS_UID, k);
    ck_assert_ptr_nonnull(c);
    sim_card_set_rng(c, counter_rng, &rng_state);
    return c;
}

size_t ts_apdu(struct sim_card *c, const uint8_t *apdu, size_t len, uint8_t *resp)
{
    size_t rl = 0;
    ck_assert_int_eq(sim_card_transceive(c, apdu, len, resp, 64, &rl), 0);
    ck_assert_uint_ge(rl, 2);
    ck_assert_uint_le(rl, 61);
    return rl;
}

int ts_frame(struct sim_card *c, uint8_t ins, const uint8_t *d, size_t n, uint8_t *out,
             size_t *outlen)
{
    uint8_t apdu[300], r[64];
    size_t len = 0, rl;

    apdu[len++] = 0x90;
    apdu[len++] = ins;
    apdu[len++] = 0;
    apdu[len++] = 0;
    if (n > 0) {
        apdu[len++] = (uint8_t)n;
        memcpy(apdu + len, d, n);
        len += n;
    }
    apdu[len++] = 0;
    rl = ts_apdu(c, apdu, len, r);
    ck_assert_uint_eq(r[rl - 2], 0x91);
    if (out != NULL)
        memcpy(out, r, rl - 2);
    if (outlen != NULL)
        *outlen = rl - 2;
    return r[rl - 1];
}

int ts_native(struct sim_card *c, uint8_t ins, const uint8_t *d, size_t n, uint8_t *out,
              size_t *outlen)
{
    size_t off = n < 54 ? n : 54, got = 0, k;
    uint8_t buf[64];
    int st = ts_frame(c, ins, d, off, buf, &k);

    while (st == 0xAF && off < n) {
        size_t m = n - off < 54 ? n - off : 54;
        ck_assert_uint_eq(k, 0);
        st = ts_frame(c, 0xAF, d + off, m, buf, &k);
        off += m;
    }
    for (;;) {
        if (out != NULL)
            memcpy(out + got, buf, k);
        got += k;
        if (st != 0xAF)
            break;
        st = ts_frame(c, 0xAF, NULL, 0, buf, &k);
    }
    if (outlen != NULL)
        *outlen = got;
    return st;
}

int ts_auth(struct sim_card *c, struct dfc_session *s, enum dfc_cipher ci, uint8_t keyno,
            const uint8_t *key)
{
    struct dfc_auth a;
    uint8_t apdu[DFC_APDU_MAX + 8], r[64];
    size_t alen, rl;
    int rc;

    memset(s, 0, sizeof *s);
    rc = dfc_auth_start(&a, ci, keyno, key, apdu, sizeof apdu, &alen);
    ck_assert_int_eq(rc, 0);
    do {
        rl = ts_apdu(c, apdu, alen, r);
        rc = dfc_auth_feed(&a, r, rl, apdu, sizeof apdu, &alen, s);
    } while (rc == DFC_MORE);
    dfc_auth_clear(&a);
    return rc;
}

static int run(struct sim_card *c, struct dfc_cmd *cmd, int rc, uint8_t *apdu, size_t alen,
               uint8_t *status, uint8_t *resp, size_t *rlen)
{
    uint8_t r[64];
    size_t rl;

    ck_assert_int_eq(rc, 0);
    do {
        rl = ts_apdu(c, apdu, alen, r);
        rc = dfc_cmd_feed(cmd, r, rl, apdu, DFC_APDU_MAX + 8, &alen);
    } while (rc == DFC_MORE);
    if (status != NULL)
        *status = rc == 0 ? 0 : cmd->status;
    if (rc == 0 && resp != NULL)
        memcpy(resp, cmd->resp, cmd->resp_len_out);
    if (rlen != NULL)
        *rlen = rc == 0 ? cmd->resp_len_out : 0;
    dfc_cmd_clear(cmd);
    return rc;
}

int ts_cmd(struct sim_card *c, struct dfc_session *s, const struct dfc_cmd_spec *spec,
           uint8_t *status, uint8_t *resp, size_t *rlen)
{
    struct dfc_cmd cmd;
    uint8_t apdu[DFC_APDU_MAX + 8];
    size_t alen = 0;
    int rc = dfc_cmd_start(&cmd, s, spec, apdu, sizeof apdu, &alen);
    return run(c, &cmd, rc, apdu, alen, status, resp, rlen);
}

int ts_changekey(struct sim_card *c, struct dfc_session *s, uint8_t keyno_byte,
                 enum dfc_cipher type, const uint8_t *new_key, uint8_t ver, const uint8_t *old,
                 uint8_t *status)
{
    struct dfc_cmd cmd;
    uint8_t apdu[DFC_APDU_MAX + 8];
    size_t alen = 0;
    int rc = dfc_cmd_start_changekey(&cmd, s, keyno_byte, type, new_key, ver, old, apdu,
                                     sizeof apdu, &alen);
    return run(c, &cmd, rc, apdu, alen, status, NULL, NULL);
}

int ts_select(struct sim_card *c, uint32_t aid)
{
    uint8_t d[3] = {(uint8_t)aid, (uint8_t)(aid >> 8), (uint8_t)(aid >> 16)};
    return ts_frame(c, 0x5A, d, 3, NULL, NULL);
}

static void masters(uint8_t m[4][16])
{
    int i;
    for (i = 0; i < 4; i++)
        memset(m[i], 0x10 + i, 16);
}

struct sim_card *ts_profile_card(int32_t balance)
{
    uint8_t m[4][16];
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    masters(m);
    ck_assert_int_eq(sim_card_personalize(c, (const uint8_t(*)[16])m, "OTA1", balance), 0);
    return c;
}

void ts_profile_key(struct sim_card *c, int n, uint8_t out[16])
{
    uint8_t m[4][16], in[14];
    size_t ul;
    const uint8_t *uid = sim_card_uid(c, &ul);
    masters(m);
    ck_assert_uint_eq(ul, 7);
    memcpy(in, uid, 7);
    in[7] = PROF_AID_0;
    in[8] = PROF_AID_1;
    in[9] = PROF_AID_2;
    memcpy(in + 10, "OTA1", 4);
    ck_assert_int_eq(dfc_an10922_aes128(m[n], in, sizeof in, out), 0);
}
