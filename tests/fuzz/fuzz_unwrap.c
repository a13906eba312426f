/* fuzz_unwrap: libFuzzer target for everything the DESFire core accepts
 * from a card.  The input picks a cipher and a target (handshake, command
 * answers in plain / MACed / enciphered mode with known or unknown length,
 * ChangeKey of the same or another key, an unauthenticated command, a
 * multi-frame command) and then supplies card answers as length-prefixed
 * frames, fed to dfc_auth_feed / dfc_cmd_feed until they stop asking.
 * Each run starts from the same fixed session, so seeds with valid MACs
 * and CRCs (made by building this file with -DFUZZ_UNWRAP_SEEDS) stay
 * valid and the fuzzer explores around them.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -I common \
 *   tests/fuzz/fuzz_unwrap.c common/desfire_*.c common/ota_err.c -lcrypto -lsodium
 * Run:   ./a.out -max_total_time=60 NEW_CORPUS_DIR tests/fuzz/corpus/unwrap
 * Seeds: clang -DFUZZ_UNWRAP_SEEDS -I common tests/fuzz/fuzz_unwrap.c \
 *   common/desfire_*.c common/ota_err.c -lcrypto -lsodium -o gen &&
 *   ./gen tests/fuzz/corpus/unwrap   (fails if a seed is not accepted) */
// FUZZ-SOURCES: common/desfire_*.c common/ota_err.c
// FUZZ-LIBS: -lcrypto -lsodium
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "desfire_apdu.h"
#include "desfire_auth.h"
#include "desfire_crypto.h"
#include "desfire_session.h"
#include "ota_err.h"

enum target {
    T_AUTH,
    T_RESP_PLAIN,
    T_RESP_MAC,
    T_RESP_ENC,
    T_CHANGEKEY_SAME,
    T_CHANGEKEY_OTHER,
    T_UNAUTH,
    T_MULTI_WRITE,
    T_COUNT
};

#define MAX_FEEDS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fixed_rnda[16] = {0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
                                       0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF};
static const uint8_t new_key[24] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
                                    13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
static const uint8_t old_key[24] = {0};
static const uint8_t hdr[7] = {0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
static uint8_t payload[120];

static enum dfc_cipher cipher_of(uint8_t b)
{
    switch (b & 3) {
    case 1:
        return DFC_TDES2;
    case 2:
        return DFC_TDES3;
    default:
        return DFC_AES128;
    }
}

static void long_term_key(enum dfc_cipher c, uint8_t *key)
{
    size_t i;

    for (i = 0; i < DFC_MAX_KEY; i++)
        key[i] = (uint8_t)(0x5A ^ (i * 29) ^ c);
}

static void fixed_session(enum dfc_cipher c, struct dfc_session *s)
{
    size_t i;

    memset(s, 0, sizeof *s);
    s->cipher = c;
    for (i = 0; i < DFC_MAX_KEY; i++)
        s->key[i] = (uint8_t)(0x11 * i + 7);
    s->keyno = 0;
    s->active = 1;
}

/* Starts the target's first frame.  Returns 0 or an error. */
static int start_target(enum target t, int resp_len, struct dfc_session *s, struct dfc_auth *a,
                        struct dfc_cmd *c, uint8_t *apdu, size_t cap, size_t *alen)
{
    struct dfc_cmd_spec sp;
    uint8_t key[DFC_MAX_KEY];
    int rc;

    memset(&sp, 0, sizeof sp);
    sp.ins = 0xBD;
    sp.hdr = hdr;
    sp.hdr_len = sizeof hdr;
    sp.cmd_comm = DFC_COMM_PLAIN;
    sp.resp_len = resp_len;
    switch (t) {
    case T_AUTH:
        long_term_key(s->cipher, key);
        rc = dfc_auth_start(a, s->cipher, 0, key, apdu, cap, alen);
        if (rc == 0)
            dfc_auth_set_rnda(a, fixed_rnda);
        dfc_wipe(key, sizeof key);
        return rc;
    case T_RESP_PLAIN:
        sp.resp_comm = DFC_COMM_PLAIN;
        break;
    case T_RESP_MAC:
        sp.resp_comm = DFC_COMM_MAC;
        break;
    case T_RESP_ENC:
        sp.resp_comm = DFC_COMM_ENC;
        break;
    case T_CHANGEKEY_SAME:
        return dfc_cmd_start_changekey(c, s, 0x80, DFC_AES128, new_key, 1, NULL, apdu, cap, alen);
    case T_CHANGEKEY_OTHER:
        return dfc_cmd_start_changekey(c, s, 0x01, s->cipher, new_key, 1, old_key, apdu, cap, alen);
    case T_UNAUTH:
        sp.resp_comm = DFC_COMM_MAC;
        return dfc_cmd_start(c, NULL, &sp, apdu, cap, alen);
    case T_MULTI_WRITE:
        sp.ins = 0x3D;
        sp.data = payload;
        sp.data_len = sizeof payload;
        sp.cmd_comm = DFC_COMM_ENC;
        sp.resp_comm = DFC_COMM_MAC;
        sp.resp_len = 0;
        break;
    default:
        return OTA_ERR_INVAL;
    }
    return dfc_cmd_start(c, s, &sp, apdu, cap, alen);
}

/* Returns the last feed result (0 when the card's answers were accepted). */
static int run_input(const uint8_t *data, size_t size)
{
    struct dfc_session s, out;
    struct dfc_auth a;
    struct dfc_cmd c;
    uint8_t apdu[DFC_APDU_MAX + 8];
    size_t alen = 0, off = 3, n;
    enum target t;
    int resp_len, rc = OTA_ERR_STATE, feeds = 0;

    if (size < 3)
        return OTA_ERR_LENGTH;
    fixed_session(cipher_of(data[0]), &s);
    memset(&out, 0, sizeof out);
    memset(&c, 0, sizeof c);
    memset(&a, 0, sizeof a);
    t = (enum target)(data[1] % T_COUNT);
    resp_len = data[2] == 0xFF ? -1 : data[2];
    if (start_target(t, resp_len, &s, &a, &c, apdu, sizeof apdu, &alen) != 0)
        abort(); /* the fixed starts are valid; failing here is a bug */
    do {
        if (off >= size)
            break;
        n = data[off++];
        if (n > size - off)
            n = size - off;
        alen = 0;
        if (t == T_AUTH)
            rc = dfc_auth_feed(&a, data + off, n, apdu, sizeof apdu, &alen, &out);
        else
            rc = dfc_cmd_feed(&c, data + off, n, apdu, sizeof apdu, &alen);
        off += n;
        if (rc == DFC_MORE && (alen < 5 || alen > sizeof apdu || apdu[0] != 0x90))
            abort();
        /* An answer that is refused must end the session. */
        if (rc < 0 && t != T_AUTH && t != T_UNAUTH && s.active)
            abort();
        if (rc == 0 && t != T_AUTH && t != T_UNAUTH &&
            (c.resp_len_out > DFC_DATA_MAX ||
             (resp_len >= 0 && t != T_CHANGEKEY_SAME && t != T_CHANGEKEY_OTHER &&
              t != T_MULTI_WRITE && c.resp_len_out != (size_t)resp_len)))
            abort();
        if (rc == 0 && t == T_AUTH && !out.active)
            abort();
    } while (rc == DFC_MORE && ++feeds < MAX_FEEDS);
    dfc_cmd_clear(&c);
    dfc_auth_clear(&a);
    dfc_session_clear(&out);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_input(data, size);
    return 0;
}

#ifdef FUZZ_UNWRAP_SEEDS
/* Seed writer: plays the card for each target with the fixed session, so
 * the seeds carry valid MACs, CRCs and handshake answers. */
struct seed {
    uint8_t b[2048];
    size_t n;
};

static void put_frame(struct seed *sd, const uint8_t *data, size_t n, uint8_t st)
{
    sd->b[sd->n++] = (uint8_t)(n + 2);
    if (n > 0)
        memcpy(sd->b + sd->n, data, n);
    sd->n += n;
    sd->b[sd->n++] = 0x91;
    sd->b[sd->n++] = st;
}

/* Card answer split in frames of 59 bytes. */
static void put_answer(struct seed *sd, const uint8_t *ans, size_t n)
{
    size_t o = 0, k;

    do {
        k = n - o > DFC_FRAME_MAX_RESP ? DFC_FRAME_MAX_RESP : n - o;
        put_frame(sd, ans + o, k, o + k < n ? 0xAF : 0x00);
        o += k;
    } while (o < n);
}

static void write_seed(const char *dir, const char *name, const struct seed *sd)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(sd->b, 1, sd->n, f) != sd->n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void mac_answer(struct dfc_session *card, const uint8_t *d, size_t n, struct seed *sd)
{
    uint8_t buf[700];

    if (n > 0)
        memcpy(buf, d, n);
    buf[n] = 0x00;
    dfc_cmac(card->cipher, card->key, card->iv, buf, n + 1, card->iv);
    memcpy(buf + n, card->iv, 8);
    put_answer(sd, buf, n + 8);
}

static void enc_answer(struct dfc_session *card, const uint8_t *d, size_t n, struct seed *sd)
{
    uint8_t buf[700];
    size_t bs = dfc_block_size(card->cipher), len;

    memcpy(buf, d, n);
    buf[n] = 0x00;
    dfc_put_le32(buf + n, dfc_crc32(buf, n + 1));
    len = n + 4;
    while (len % bs)
        buf[len++] = 0;
    dfc_cbc_encrypt(card->cipher, card->key, card->iv, buf, buf, len);
    put_answer(sd, buf, len);
}

int main(int argc, char **argv)
{
    static const char *names[T_COUNT] = {"auth",     "resp_plain",     "resp_mac",
                                         "resp_enc", "changekey_same", "changekey_other",
                                         "unauth",   "multi_write"};
    uint8_t apdu[DFC_APDU_MAX + 8], d[200], key[DFC_MAX_KEY], rndb[16], tok[32], iv[16];
    struct dfc_session s, card;
    struct dfc_auth a;
    struct dfc_cmd c;
    struct seed sd;
    size_t alen, i, rl;
    char name[64];
    int ci, t, resp_len;

    if (argc != 2) {
        fprintf(stderr, "usage: %s corpus-dir\n", argv[0]);
        return 2;
    }
    for (i = 0; i < sizeof d; i++)
        d[i] = (uint8_t)(i * 7 + 3);
    for (ci = 0; ci < 3; ci++) {
        for (t = 0; t < T_COUNT; t++) {
            resp_len = (t == T_RESP_ENC || t == T_RESP_MAC) ? 0xFF : 100;
            if (t == T_UNAUTH)
                resp_len = 20;
            fixed_session(cipher_of((uint8_t)ci), &s);
            start_target((enum target)t, resp_len == 0xFF ? -1 : resp_len, &s, &a, &c, apdu,
                         sizeof apdu, &alen);
            card = s; /* the card computes the same command MAC / IV */
            sd.n = 0;
            sd.b[sd.n++] = (uint8_t)ci;
            sd.b[sd.n++] = (uint8_t)t;
            sd.b[sd.n++] = (uint8_t)resp_len;
            switch (t) {
            case T_AUTH:
                rl = s.cipher == DFC_TDES2 ? 8 : 16;
                long_term_key(s.cipher, key);
                memset(iv, 0, sizeof iv);
                memset(rndb, 0x3C, sizeof rndb);
                dfc_cbc_encrypt(s.cipher, key, iv, rndb, tok, rl);
                put_frame(&sd, tok, rl, 0xAF);
                /* iv now holds the last ciphertext block, as on both sides. */
                /* RndA' under IV = last block the reader sends. */
                memcpy(tok, fixed_rnda, rl);
                memcpy(tok + rl, rndb + 1, rl - 1);
                tok[2 * rl - 1] = rndb[0];
                dfc_cbc_encrypt(s.cipher, key, iv, tok, tok, 2 * rl);
                memcpy(tok, fixed_rnda + 1, rl - 1);
                tok[rl - 1] = fixed_rnda[0];
                dfc_cbc_encrypt(s.cipher, key, iv, tok, tok, rl);
                put_frame(&sd, tok, rl, 0x00);
                break;
            case T_RESP_PLAIN:
                mac_answer(&card, d, 100, &sd);
                break;
            case T_RESP_MAC:
                mac_answer(&card, d, 130, &sd);
                break;
            case T_RESP_ENC:
                enc_answer(&card, d, 150, &sd);
                break;
            case T_CHANGEKEY_SAME:
                put_frame(&sd, NULL, 0, 0x00);
                break;
            case T_CHANGEKEY_OTHER:
                mac_answer(&card, NULL, 0, &sd);
                break;
            case T_UNAUTH:
                put_answer(&sd, d, 20);
                break;
            case T_MULTI_WRITE:
                while (c.state == DFC_CMD_SENDING) {
                    put_frame(&sd, NULL, 0, 0xAF);
                    dfc_cmd_feed(&c, sd.b + sd.n - 2, 2, apdu, sizeof apdu, &alen);
                }
                card = s;
                mac_answer(&card, NULL, 0, &sd);
                break;
            }
            snprintf(name, sizeof name, "%s_%d", names[t], ci);
            write_seed(argv[1], name, &sd);
            /* Every seed must pass the reader end to end. */
            if (run_input(sd.b, sd.n) != 0) {
                fprintf(stderr, "seed %s is not accepted\n", name);
                return 1;
            }
            dfc_cmd_clear(&c);
            dfc_auth_clear(&a);
        }
    }
    return 0;
}
#endif
