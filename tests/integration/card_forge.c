/* card_forge: test-only tool for tests/integration/test_hardening.sh.
 *
 *   card_forge record CARD_FILE K0,K1,K2,K3[,K4] [SYSTEM_ID]
 *       appends a committed record with a random txn_id (one the ledger
 *       cannot know) to a personalized simulated card, through the reader
 *       core (SelectApplication, AuthenticateAES key 2, WriteRecord
 *       enciphered, CommitTransaction), and prints the txn_id in hex;
 *   card_forge keys UID K0,K1,K2,K3,K4 [SYSTEM_ID]
 *       prints the card's diversified keys in hex (application keys 0-3,
 *       then the PICC key), exactly as the worker derives them;
 *   card_forge sealed KEYFILE KEK_FILE
 *       prints the master keys and the code HMAC key of a sealed key file.
 *
 * It prints secrets on purpose (the test greps the logs for them) and is
 * never installed: check_PROGRAMS only.  It must never write to a card
 * file anything but the committed state of a well-formed EV1 session. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "card_profile.h"
#include "desfire_auth.h"
#include "desfire_crypto.h"
#include "desfire_session.h"
#include "hex.h"
#include "keyfile.h"
#include "ota_err.h"
#include "sim_card.h"

#define MAX_MASTERS PROF_NUM_MASTERS

static void usage(void)
{
    fprintf(stderr, "usage: card_forge record CARD_FILE K0,K1,K2,K3[,K4] [SYSTEM_ID]\n"
                    "       card_forge keys UID K0,K1,K2,K3,K4 [SYSTEM_ID]\n"
                    "       card_forge sealed KEYFILE KEK_FILE\n");
}

/* Parses "K0,K1,..." (each 32 hex characters); returns how many. */
static int parse_masters(const char *s, uint8_t m[MAX_MASTERS][16])
{
    int n = 0;
    while (*s != '\0') {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (n == MAX_MASTERS || len != 32 || hex_decode(s, len, m[n], 16) != 16)
            return -1;
        n++;
        s += len;
        if (*s == ',')
            s++;
    }
    return n;
}

/* Diversification input: UID || AID (LSB first) || system id. */
static size_t div_input(const uint8_t *uid, size_t uid_len, const uint8_t aid[3], const char *sid,
                        uint8_t *m)
{
    size_t sl = strlen(sid);
    memcpy(m, uid, uid_len);
    memcpy(m + uid_len, aid, 3);
    memcpy(m + uid_len + 3, sid, sl);
    return uid_len + 3 + sl;
}

static void print_hex(const uint8_t *p, size_t n)
{
    char out[2 * 64 + 1];
    hex_encode(p, n, out);
    puts(out);
}

static int xfer(struct sim_card *c, const uint8_t *apdu, size_t alen, uint8_t *r, size_t *rl)
{
    return sim_card_transceive(c, apdu, alen, r, DFC_APDU_MAX + 8, rl);
}

static int run_cmd(struct sim_card *c, struct dfc_session *s, const struct dfc_cmd_spec *spec)
{
    struct dfc_cmd cmd;
    uint8_t apdu[DFC_APDU_MAX + 8], r[DFC_APDU_MAX + 8];
    size_t alen = 0, rl = 0;
    int rc = dfc_cmd_start(&cmd, s, spec, apdu, sizeof apdu, &alen);
    while (rc == 0 || rc == DFC_MORE) {
        if (xfer(c, apdu, alen, r, &rl) != 0) {
            rc = OTA_ERR_IO;
            break;
        }
        rc = dfc_cmd_feed(&cmd, r, rl, apdu, sizeof apdu, &alen);
        if (rc != DFC_MORE)
            break;
    }
    dfc_cmd_clear(&cmd);
    return rc;
}

static int forge_record(const char *path, const char *keys, const char *sid)
{
    uint8_t m[MAX_MASTERS][16], in[32], key[16], apdu[DFC_APDU_MAX + 8], r[DFC_APDU_MAX + 8];
    size_t alen = 0, rl = 0, uid_len;
    static const uint8_t aid[3] = {PROF_AID_0, PROF_AID_1, PROF_AID_2};
    struct dfc_auth a;
    struct dfc_session s;
    int rc, n = parse_masters(keys, m);
    if (n < PROF_NUM_KEYS || strlen(sid) > 21) {
        usage();
        return 2;
    }
    struct sim_card *c = sim_card_load(path);
    if (c == NULL) {
        fprintf(stderr, "card_forge: cannot load %s\n", path);
        return 1;
    }
    const uint8_t *uid = sim_card_uid(c, &uid_len);
    int32_t balance = 0;
    if (sim_card_value(c, PROF_AID_U32, PROF_FILE_VALUE, &balance) != 0 ||
        dfc_an10922_aes128(m[PROF_KEY_CREDIT], in, div_input(uid, uid_len, aid, sid, in), key) !=
            0) {
        fprintf(stderr, "card_forge: %s is not a personalized card\n", path);
        sim_card_free(c);
        return 1;
    }
    static const uint8_t sel[] = {0x90,       0x5A,       0x00,       0x00, 0x03,
                                  PROF_AID_0, PROF_AID_1, PROF_AID_2, 0x00};
    if (xfer(c, sel, sizeof sel, r, &rl) != 0 || rl != 2 || r[0] != 0x91 || r[1] != 0x00) {
        fprintf(stderr, "card_forge: SelectApplication failed\n");
        sim_card_free(c);
        return 1;
    }
    memset(&a, 0, sizeof a);
    memset(&s, 0, sizeof s);
    rc = dfc_auth_start(&a, DFC_AES128, PROF_KEY_CREDIT, key, apdu, sizeof apdu, &alen);
    while (rc == 0 || rc == DFC_MORE) {
        if (xfer(c, apdu, alen, r, &rl) != 0) {
            rc = OTA_ERR_IO;
            break;
        }
        rc = dfc_auth_feed(&a, r, rl, apdu, sizeof apdu, &alen, &s);
        if (rc != DFC_MORE)
            break;
    }
    dfc_auth_clear(&a);
    dfc_wipe(key, sizeof key);
    if (rc != 0) {
        fprintf(stderr, "card_forge: authentication with key 2 failed (%s)\n", ota_strerror(rc));
        sim_card_free(c);
        return 1;
    }
    uint8_t txn[16], rec[PROF_RECORD_SIZE];
    dfc_random(txn, sizeof txn);
    memset(rec, 0, sizeof rec);
    memcpy(rec + PROF_REC_TXN, txn, sizeof txn);
    dfc_put_le32(rec + PROF_REC_AMOUNT, 1);
    dfc_put_le32(rec + PROF_REC_BALANCE, (uint32_t)balance);
    dfc_put_le32(rec + PROF_REC_TIME, 1700000000u);
    uint8_t hdr[7] = {PROF_FILE_RECORDS, 0, 0, 0, PROF_RECORD_SIZE, 0, 0};
    struct dfc_cmd_spec wr = {.ins = 0x3B,
                              .hdr = hdr,
                              .hdr_len = sizeof hdr,
                              .data = rec,
                              .data_len = sizeof rec,
                              .cmd_comm = DFC_COMM_ENC,
                              .resp_comm = DFC_COMM_MAC,
                              .resp_len = 0};
    struct dfc_cmd_spec commit = {
        .ins = 0xC7, .cmd_comm = DFC_COMM_PLAIN, .resp_comm = DFC_COMM_MAC, .resp_len = 0};
    rc = run_cmd(c, &s, &wr);
    if (rc == 0)
        rc = run_cmd(c, &s, &commit);
    dfc_session_clear(&s);
    if (rc == 0)
        rc = sim_card_save(c, path);
    sim_card_free(c);
    if (rc != 0) {
        fprintf(stderr, "card_forge: writing the record failed (%s)\n", ota_strerror(rc));
        return 1;
    }
    print_hex(txn, sizeof txn);
    return 0;
}

static int print_keys(const char *uidhex, const char *keys, const char *sid)
{
    uint8_t m[MAX_MASTERS][16], uid[10], in[32], out[16];
    static const uint8_t aid[3] = {PROF_AID_0, PROF_AID_1, PROF_AID_2};
    static const uint8_t picc_aid[3] = {0, 0, 0};
    int ul = hex_decode(uidhex, strlen(uidhex), uid, sizeof uid);
    if ((ul != 4 && ul != 7) || parse_masters(keys, m) != PROF_NUM_MASTERS || strlen(sid) > 21) {
        usage();
        return 2;
    }
    for (int k = 0; k < PROF_NUM_MASTERS; k++) {
        size_t n = div_input(uid, (size_t)ul, k == PROF_MASTER_PICC ? picc_aid : aid, sid, in);
        if (dfc_an10922_aes128(m[k], in, n, out) != 0)
            return 1;
        print_hex(out, sizeof out);
    }
    dfc_wipe(m, sizeof m);
    dfc_wipe(out, sizeof out);
    return 0;
}

static int print_sealed(const char *keyfile, const char *kek)
{
    char err[256];
    struct master_keys *k = keyfile_alloc();
    if (k == NULL)
        return 1;
    int rc = keyfile_open(keyfile, k, KEYFILE_KEK_FILE, kek, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "card_forge: %s: %s\n", keyfile, err);
        keyfile_free(k);
        return 1;
    }
    for (int i = 0; i < PROF_NUM_MASTERS; i++)
        print_hex(k->app[i], sizeof k->app[i]);
    print_hex(k->code_hmac, sizeof k->code_hmac);
    keyfile_free(k);
    return 0;
}

int main(int argc, char **argv)
{
    const char *sid = PROF_SYSTEM_ID_DEFAULT;
    if (sodium_init() < 0)
        return 1;
    if (argc == 4 || argc == 5) {
        if (argc == 5)
            sid = argv[4];
        if (strcmp(argv[1], "record") == 0)
            return forge_record(argv[2], argv[3], sid);
        if (strcmp(argv[1], "keys") == 0)
            return print_keys(argv[2], argv[3], sid);
        if (strcmp(argv[1], "sealed") == 0 && argc == 4)
            return print_sealed(argv[2], argv[3]);
    }
    usage();
    return 2;
}
