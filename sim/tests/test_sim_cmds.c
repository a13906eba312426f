/* test_sim_cmds: PICC, application, key and file management of the
 * simulated card: CreateApplication/DeleteApplication/GetApplicationIDs/
 * FormatPICC/FreeMemory and their errors, ISO (0x1A) authentication with
 * the factory DES key, ChangeKeySettings, ChangeKey (PICC DES -> AES under
 * EV1 and under a legacy 0x0A session driven by a reader written here,
 * application keys under each ChangeKey access setting), file creation
 * errors, MACed files through the core and a tampered MAC, GetCardUID and
 * the random ID. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "desfire_crypto.h"
#include "ota_err.h"
#include "sim_card.h"
#include "test_sim_util.h"

static const uint8_t NEWKEY[16] = {0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70,
                                   0x80, 0x90, 0xA0, 0xB0, 0xB0, 0xA0, 0x90, 0x80};

static int mac_cmd(struct sim_card *c, struct dfc_session *s, uint8_t ins, const uint8_t *hdr,
                   size_t hl, int resp_len, uint8_t *out, size_t *n, uint8_t *st)
{
    struct dfc_cmd_spec sp = {.ins = ins,
                              .hdr = hdr,
                              .hdr_len = hl,
                              .cmd_comm = DFC_COMM_PLAIN,
                              .resp_comm = DFC_COMM_MAC,
                              .resp_len = resp_len};
    return ts_cmd(c, s, &sp, st, out, n);
}

START_TEST(picc_management)
{
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    uint8_t app[5] = {0x01, 0x00, 0x00, 0x0F, 0x81}, out[128], fm[3];
    size_t n;
    uint32_t before;
    int i;

    ck_assert_int_eq(ts_native(c, 0x6E, NULL, 0, fm, &n), 0);
    ck_assert_uint_eq(n, 3);
    before = fm[0] | fm[1] << 8 | fm[2] << 16;
    ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0);
    ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0xDE);
    ck_assert_int_eq(ts_native(c, 0xCA, app, 4, NULL, NULL), 0x7E);
    app[0] = 0;
    ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0x9E);
    app[0] = 2;
    app[4] = 0x8F; /* 15 keys */
    ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0x9E);
    app[4] = 0xC1; /* no such key type */
    ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0x9E);
    ck_assert_int_eq(ts_native(c, 0x6E, NULL, 0, fm, &n), 0);
    ck_assert_uint_lt((uint32_t)(fm[0] | fm[1] << 8 | fm[2] << 16), before);
    /* 28 applications at most; GetApplicationIDs answers in two frames. */
    app[4] = 0x01;
    for (i = 2; i <= 28; i++) {
        app[0] = (uint8_t)i;
        ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0);
    }
    app[0] = 29;
    ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0xCE);
    ck_assert_int_eq(ts_native(c, 0x6A, NULL, 0, out, &n), 0);
    ck_assert_uint_eq(n, 84);
    ck_assert_uint_eq(out[81], 28);
    /* Delete and format need a master key. */
    ck_assert_int_eq(ts_native(c, 0xDA, app, 3, NULL, NULL), 0xAE);
    ck_assert_int_eq(ts_native(c, 0xFC, NULL, 0, NULL, NULL), 0xAE);
    /* Selecting an unknown application. */
    ck_assert_int_eq(ts_select(c, 0xABCDEF), 0xA0);
    /* Application-level commands at PICC level and vice versa. */
    ck_assert_int_eq(ts_native(c, 0x6F, NULL, 0, NULL, NULL), 0x9D);
    ck_assert_int_eq(ts_select(c, 0x000001), 0);
    ck_assert_int_eq(ts_native(c, 0x6A, NULL, 0, NULL, NULL), 0x9D);
    sim_card_free(c);
}
END_TEST

START_TEST(iso_des_auth_and_picc_key_to_aes)
{
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    struct dfc_session s;
    uint8_t out[64], st, set = 0x09;
    uint8_t aid[3] = {0x11, 0x22, 0x33}, app[5] = {0x11, 0x22, 0x33, 0x0F, 0x81};
    size_t n;
    struct dfc_cmd_spec cks = {.ins = 0x54,
                               .data = &set,
                               .data_len = 1,
                               .cmd_comm = DFC_COMM_ENC,
                               .resp_comm = DFC_COMM_MAC,
                               .resp_len = 0};

    ck_assert_int_eq(ts_auth(c, &s, DFC_TDES2, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(mac_cmd(c, &s, 0x45, NULL, 0, 2, out, &n, &st), 0);
    ck_assert_uint_eq(out[0], 0x0F);
    ck_assert_uint_eq(out[1], 0x01);
    ck_assert_int_eq(mac_cmd(c, &s, 0xCA, app, 5, 0, out, &n, &st), 0);
    ck_assert_int_eq(ts_cmd(c, &s, &cks, &st, NULL, NULL), 0);
    /* Settings 0x09: listing and creation need the PICC master key now. */
    ck_assert_int_eq(ts_select(c, 0), 0);
    ck_assert_int_eq(ts_native(c, 0x6A, NULL, 0, NULL, NULL), 0xAE);
    ck_assert_int_eq(ts_native(c, 0x45, NULL, 0, NULL, NULL), 0xAE);
    app[0] = 0x12;
    ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0xAE);
    /* The factory DES PICC key becomes an AES key (key number 0x80). */
    ck_assert_int_eq(ts_auth(c, &s, DFC_TDES2, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(ts_changekey(c, &s, 0x80, DFC_AES128, NEWKEY, 0x42, NULL, &st), 0);
    ck_assert_int_eq(s.active, 0);
    ck_assert_int_eq(ts_auth(c, &s, DFC_TDES2, 0, TS_ZERO_KEY), OTA_ERR_AUTH);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, NEWKEY), 0);
    ck_assert_int_eq(mac_cmd(c, &s, 0x45, NULL, 0, 2, out, &n, &st), 0);
    ck_assert_uint_eq(out[0], 0x09);
    ck_assert_uint_eq(out[1], 0x81);
    ck_assert_int_eq(mac_cmd(c, &s, 0x64, (const uint8_t *)"\0", 1, 1, out, &n, &st), 0);
    ck_assert_uint_eq(out[0], 0x42);
    ck_assert_int_eq(mac_cmd(c, &s, 0x6A, NULL, 0, 3, out, &n, &st), 0);
    ck_assert_mem_eq(out, aid, 3);
    ck_assert_int_eq(mac_cmd(c, &s, 0xDA, aid, 3, 0, out, &n, &st), 0);
    ck_assert_int_eq(mac_cmd(c, &s, 0xDA, aid, 3, 0, out, &n, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xA0);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, NEWKEY), 0);
    ck_assert_int_eq(mac_cmd(c, &s, 0xFC, NULL, 0, 0, out, &n, &st), 0);
    /* Settings 0x09 do not allow a frozen config? bit3 is set: allowed. */
    set = 0x01;
    ck_assert_int_eq(ts_cmd(c, &s, &cks, &st, NULL, NULL), 0);
    set = 0x0F;
    ck_assert_int_eq(ts_cmd(c, &s, &cks, &st, NULL, NULL), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x9D);
    sim_card_free(c);
}
END_TEST

/* ---- a legacy (0x0A) reader, written here from the DESFire rules ---- */

static void rotl8(const uint8_t *in, uint8_t *out)
{
    memmove(out, in + 1, 7);
    out[7] = in[0];
}

/* Reader send mode: C_i = D(P_i ^ C_(i-1)), C_0 = 0. */
static void send_mode(const uint8_t *key, uint8_t *p, size_t n)
{
    uint8_t prev[8] = {0}, x[8];
    size_t i, j;

    for (i = 0; i < n; i += 8) {
        for (j = 0; j < 8; j++)
            x[j] = (uint8_t)(p[i + j] ^ prev[j]);
        ck_assert_int_eq(dfc_block_decrypt(DFC_TDES2, key, x, p + i), 0);
        memcpy(prev, p + i, 8);
    }
}

static int legacy_auth(struct sim_card *c, uint8_t keyno, const uint8_t *key, uint8_t skey[16])
{
    uint8_t r[64], rndb[8], rnda[8] = {1, 2, 3, 4, 5, 6, 7, 8}, tok[16], ra2[8], want[8];
    size_t n;
    int st = ts_frame(c, 0x0A, &keyno, 1, r, &n);

    if (st != 0xAF)
        return st;
    ck_assert_uint_eq(n, 8);
    ck_assert_int_eq(dfc_block_decrypt(DFC_TDES2, key, r, rndb), 0);
    memcpy(tok, rnda, 8);
    rotl8(rndb, tok + 8);
    send_mode(key, tok, 16);
    st = ts_frame(c, 0xAF, tok, 16, r, &n);
    if (st != 0)
        return st;
    ck_assert_uint_eq(n, 8);
    ck_assert_int_eq(dfc_block_decrypt(DFC_TDES2, key, r, ra2), 0);
    rotl8(rnda, want);
    ck_assert_mem_eq(ra2, want, 8);
    /* Single DES session key: RndA[0..3] || RndB[0..3], twice. */
    memcpy(skey, rnda, 4);
    memcpy(skey + 4, rndb, 4);
    memcpy(skey + 8, skey, 8);
    return 0;
}

START_TEST(legacy_des_session)
{
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    uint8_t skey[16], out[64], app[5] = {0x01, 0x02, 0x03, 0x0B, 0x04};
    uint8_t crypt[2 + 24];
    struct dfc_session s;
    uint16_t crc;
    size_t n;

    ck_assert_int_eq(legacy_auth(c, 0, TS_ZERO_KEY, skey), 0);
    /* Plain commands carry no MAC in a legacy session. */
    ck_assert_int_eq(ts_native(c, 0x45, NULL, 0, out, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(out[0], 0x0F);
    ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0);
    ck_assert_int_eq(ts_native(c, 0x6A, NULL, 0, out, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ts_native(c, 0xDA, app, 3, NULL, NULL), 0);
    ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0);
    /* ChangeKey PICC -> AES: NewKey || Ver || CRC16(NewKey || Ver), 24 bytes. */
    crypt[0] = 0x80;
    memset(crypt + 1, 0, 24);
    memcpy(crypt + 1, NEWKEY, 16);
    crypt[17] = 0x07;
    crc = dfc_crc16(crypt + 1, 17);
    crypt[18] = (uint8_t)crc;
    crypt[19] = (uint8_t)(crc >> 8);
    send_mode(skey, crypt + 1, 24);
    ck_assert_int_eq(ts_native(c, 0xC4, crypt, 25, out, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(legacy_auth(c, 0, TS_ZERO_KEY, skey), 0xAE);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, NEWKEY), 0);
    ck_assert_int_eq(mac_cmd(c, &s, 0x64, (const uint8_t *)"\0", 1, 1, out, &n, NULL), 0);
    ck_assert_uint_eq(out[0], 0x07);
    /* An AES key refuses the legacy authentication. */
    ck_assert_int_eq(legacy_auth(c, 0, NEWKEY, skey), 0xAE);
    /* The DES application (settings 0x0B) with its zero key. */
    ck_assert_int_eq(ts_select(c, 0x030201), 0);
    ck_assert_int_eq(legacy_auth(c, 3, TS_ZERO_KEY, skey), 0);
    ck_assert_int_eq(legacy_auth(c, 4, TS_ZERO_KEY, skey), 0x40);
    /* A corrupted cryptogram: integrity error. */
    ck_assert_int_eq(legacy_auth(c, 0, TS_ZERO_KEY, skey), 0);
    crypt[0] = 0x01;
    memset(crypt + 1, 0, 24);
    memcpy(crypt + 1, NEWKEY, 16);
    crc = dfc_crc16(crypt + 1, 16);
    crypt[17] = (uint8_t)(crc ^ 1);
    crypt[18] = (uint8_t)(crc >> 8);
    crc = dfc_crc16(NEWKEY, 16);
    crypt[19] = (uint8_t)crc;
    crypt[20] = (uint8_t)(crc >> 8);
    send_mode(skey, crypt + 1, 24);
    ck_assert_int_eq(ts_native(c, 0xC4, crypt, 25, out, &n), 0x1E);
    sim_card_free(c);
}
END_TEST

static struct sim_card *aes_app_card(uint8_t settings)
{
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    uint8_t app[5] = {0x01, 0x02, 0x03, settings, 0x83};
    ck_assert_int_eq(ts_native(c, 0xCA, app, sizeof app, NULL, NULL), 0);
    ck_assert_int_eq(ts_select(c, 0x030201), 0);
    return c;
}

START_TEST(app_changekey_rules)
{
    struct sim_card *c = aes_app_card(0x0F);
    struct dfc_session s;
    uint8_t st, k1[16], k0[16];

    memset(k1, 0x11, 16);
    memset(k0, 0x22, 16);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(ts_changekey(c, &s, 1, DFC_AES128, k1, 5, TS_ZERO_KEY, &st), 0);
    ck_assert_int_eq(s.active, 1);
    ck_assert_int_eq(ts_changekey(c, &s, 0, DFC_AES128, k0, 6, NULL, &st), 0);
    ck_assert_int_eq(s.active, 0);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 1, k1), 0);
    /* Key 1 may not change key 2 (access nibble 0: master only). */
    ck_assert_int_eq(ts_changekey(c, &s, 2, DFC_AES128, k1, 0, TS_ZERO_KEY, &st),
                     OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xAE);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, k0), 0);
    /* Wrong old key: the CRC of the new key fails. */
    ck_assert_int_eq(ts_changekey(c, &s, 2, DFC_AES128, k1, 0, k1, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x1E);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, k0), 0);
    ck_assert_int_eq(ts_changekey(c, &s, 3, DFC_AES128, k1, 0, TS_ZERO_KEY, &st),
                     OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x40);
    sim_card_free(c);

    /* 0xE: each key changes itself; master key not changeable (bit0 = 0). */
    c = aes_app_card(0xEE);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 1, TS_ZERO_KEY), 0);
    ck_assert_int_eq(ts_changekey(c, &s, 1, DFC_AES128, k1, 1, NULL, &st), 0);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(ts_changekey(c, &s, 0, DFC_AES128, k0, 1, NULL, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x9D);
    sim_card_free(c);

    /* 0xF: frozen. */
    c = aes_app_card(0xFF);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(ts_changekey(c, &s, 1, DFC_AES128, k1, 1, TS_ZERO_KEY, &st),
                     OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x9D);
    sim_card_free(c);
}
END_TEST

START_TEST(file_management_errors)
{
    struct sim_card *c = aes_app_card(0x0B);
    struct dfc_session s;
    uint8_t f[7] = {1, 0x03, 0x00, 0x11, 32, 0, 0}, out[32], st;
    uint8_t v[17] = {2, 0, 0xEE, 0xEE, 10, 0, 0, 0, 5, 0, 0, 0, 7, 0, 0, 0, 0};
    uint8_t big[7] = {3, 0, 0xEE, 0xEE, 0x40, 0x1F, 0};
    struct dfc_cmd_spec vsp = {.ins = 0xCC,
                               .hdr = v,
                               .hdr_len = 1,
                               .data = v + 1,
                               .data_len = 16,
                               .cmd_comm = DFC_COMM_PLAIN,
                               .resp_comm = DFC_COMM_MAC,
                               .resp_len = 0};
    size_t n;

    /* Settings 0x0B: creating needs the master key. */
    ck_assert_int_eq(ts_native(c, 0xCD, f, sizeof f, NULL, NULL), 0xAE);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(mac_cmd(c, &s, 0xCD, f, sizeof f, 0, NULL, NULL, &st), 0);
    ck_assert_int_eq(mac_cmd(c, &s, 0xCD, f, sizeof f, 0, NULL, NULL, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xDE);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    f[0] = 32;
    ck_assert_int_eq(mac_cmd(c, &s, 0xCD, f, sizeof f, 0, NULL, NULL, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x9E);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    f[0] = 4;
    f[1] = 0x02;
    ck_assert_int_eq(mac_cmd(c, &s, 0xCD, f, sizeof f, 0, NULL, NULL, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x9E);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(mac_cmd(c, &s, 0xCD, f, 6, 0, NULL, NULL, &st), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x7E);
    /* Value file with lower > upper. */
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(ts_cmd(c, &s, &vsp, &st, NULL, NULL), OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x9E);
    /* 8000 bytes do not fit. */
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(mac_cmd(c, &s, 0xCD, big, sizeof big, 0, NULL, NULL, &st),
                     OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0x0E);
    /* Listing is free (bit1), settings of file 1 are exact. */
    ck_assert_int_eq(ts_select(c, 0x030201), 0);
    ck_assert_int_eq(ts_native(c, 0x6F, NULL, 0, out, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(out[0], 1);
    ck_assert_int_eq(ts_native(c, 0xF5, (const uint8_t *)"\x01", 1, out, &n), 0);
    ck_assert_uint_eq(n, 7);
    ck_assert_uint_eq(out[0], 0x00);
    ck_assert_uint_eq(out[1], 0x03);
    ck_assert_uint_eq(out[2], 0x00);
    ck_assert_uint_eq(out[3], 0x11);
    ck_assert_uint_eq(out[4], 32);
    /* Deleting needs the master key too. */
    ck_assert_int_eq(ts_native(c, 0xDF, (const uint8_t *)"\x01", 1, NULL, NULL), 0xAE);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(mac_cmd(c, &s, 0xDF, (const uint8_t *)"\x01", 1, 0, NULL, NULL, &st), 0);
    ck_assert_int_eq(mac_cmd(c, &s, 0xF5, (const uint8_t *)"\x01", 1, 7, out, &n, &st),
                     OTA_ERR_CARD_STATUS);
    ck_assert_uint_eq(st, 0xF0);
    sim_card_free(c);
}
END_TEST

START_TEST(maced_file_and_tampered_mac)
{
    struct sim_card *c = aes_app_card(0x0F);
    struct dfc_session s;
    /* File 1, MACed, Read=1 Write=1 RW=0 Change=0. */
    uint8_t f[7] = {1, 0x01, 0x00, 0x11, 100, 0, 0}, hdr[7] = {1, 0, 0, 0, 80, 0, 0};
    uint8_t data[80], out[128], st, apdu[DFC_APDU_MAX + 8], r[64];
    struct dfc_cmd_spec wr = {.ins = 0x3D,
                              .hdr = hdr,
                              .hdr_len = 7,
                              .data = data,
                              .data_len = 80,
                              .cmd_comm = DFC_COMM_MAC,
                              .resp_comm = DFC_COMM_MAC,
                              .resp_len = 0};
    struct dfc_cmd cmd;
    size_t n, alen, rl;
    int i, rc;

    for (i = 0; i < 80; i++)
        data[i] = (uint8_t)(3 * i);
    ck_assert_int_eq(ts_native(c, 0xCD, f, sizeof f, NULL, NULL), 0);
    /* Without a key, the data is out of reach. */
    ck_assert_int_eq(ts_native(c, 0xBD, hdr, 7, NULL, NULL), 0xAE);
    ck_assert_int_eq(ts_auth(c, &s, DFC_AES128, 1, TS_ZERO_KEY), 0);
    ck_assert_int_eq(ts_cmd(c, &s, &wr, &st, NULL, NULL), 0);
    ck_assert_int_eq(mac_cmd(c, &s, 0xBD, hdr, 7, 80, out, &n, &st), 0);
    ck_assert_mem_eq(out, data, 80);
    /* The same write with one bit of its CMAC flipped. */
    rc = dfc_cmd_start(&cmd, &s, &wr, apdu, sizeof apdu, &alen);
    ck_assert_int_eq(rc, 0);
    rl = ts_apdu(c, apdu, alen, r);
    ck_assert_uint_eq(r[rl - 1], 0xAF);
    rc = dfc_cmd_feed(&cmd, r, rl, apdu, sizeof apdu, &alen);
    ck_assert_int_eq(rc, DFC_MORE);
    apdu[alen - 2] ^= 0x80; /* the last CMAC byte */
    rl = ts_apdu(c, apdu, alen, r);
    ck_assert_uint_eq(rl, 2);
    ck_assert_uint_eq(r[1], 0x1E);
    dfc_cmd_clear(&cmd);
    /* The session is over. */
    ck_assert_int_eq(ts_native(c, 0xBD, hdr, 7, NULL, NULL), 0xAE);
    sim_card_free(c);
}
END_TEST

/* GetCardUID needs an authentication (any key) and answers enciphered with
 * CRC32; a random-ID card shows the reader a new 08 xx xx xx at every
 * power-up and zeros in GetVersion, so only GetCardUID tells its UID. */
START_TEST(get_card_uid_and_random_id)
{
    static const uint8_t get_data[] = {0xFF, 0xCA, 0x00, 0x00, 0x00};
    struct sim_card *c = ts_card(SIM_PICC_DES0);
    struct dfc_session s;
    struct dfc_cmd_spec uid_sp = {
        .ins = 0x51, .cmd_comm = DFC_COMM_PLAIN, .resp_comm = DFC_COMM_ENC, .resp_len = -1};
    uint8_t r[64], first[4], st;
    size_t n;

    ck_assert_uint_eq(ts_apdu(c, get_data, sizeof get_data, r), 9);
    ck_assert_mem_eq(r, TS_UID, 7);
    ck_assert_int_eq(ts_native(c, 0x51, NULL, 0, NULL, NULL), 0xAE);

    sim_card_set_flags(c, SIM_FLAG_RANDOM_UID);
    ck_assert_uint_eq(ts_apdu(c, get_data, sizeof get_data, r), 6);
    ck_assert_uint_eq(r[0], 0x08);
    ck_assert_uint_eq(r[4], 0x90);
    memcpy(first, r, 4);
    sim_card_power_cycle(c);
    ck_assert_uint_eq(ts_apdu(c, get_data, sizeof get_data, r), 6);
    ck_assert_uint_eq(r[0], 0x08);
    ck_assert(memcmp(r, first, 4) != 0);
    ck_assert_int_eq(ts_native(c, 0x60, NULL, 0, r, &n), 0);
    ck_assert_uint_eq(n, 28);
    for (size_t i = 14; i < 21; i++)
        ck_assert_uint_eq(r[i], 0);
    ck_assert_int_eq(ts_native(c, 0x51, NULL, 0, NULL, NULL), 0xAE);

    ck_assert_int_eq(ts_auth(c, &s, DFC_TDES2, 0, TS_ZERO_KEY), 0);
    ck_assert_int_eq(ts_cmd(c, &s, &uid_sp, &st, r, &n), 0);
    ck_assert_uint_eq(n, 7);
    ck_assert_mem_eq(r, TS_UID, 7);
    ck_assert_int_eq(s.active, 1);
    sim_card_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("sim_cmds");
    TCase *tc = tcase_create("cmds");
    tcase_add_test(tc, picc_management);
    tcase_add_test(tc, iso_des_auth_and_picc_key_to_aes);
    tcase_add_test(tc, legacy_des_session);
    tcase_add_test(tc, app_changekey_rules);
    tcase_add_test(tc, file_management_errors);
    tcase_add_test(tc, maced_file_and_tampered_mac);
    tcase_add_test(tc, get_card_uid_and_random_id);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
