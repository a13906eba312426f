// FUZZ-SOURCES: sim/sim_*.c common/desfire_*.c common/ota_err.c
// FUZZ-LIBS: -lcrypto -lsodium
/* fuzz_sim: libFuzzer target for the card simulator.  Byte 0 picks the
 * card (personalized profile card, factory DES card, factory AES card) and
 * whether the harness first selects and authenticates (so that plain
 * commands run inside an EV1 session, whose MACs the fuzzer cannot forge);
 * the rest is a sequence of APDUs, each prefixed by its length byte
 * (length 0: power cycle).  Every answer must be 2..61 bytes with a
 * plausible SW1, and the card must describe itself at the end.
 *
 * Build: clang -g -fsanitize=fuzzer,address,undefined -I common -I sim \
 *   tests/fuzz/fuzz_sim.c sim/sim_*.c common/desfire_*.c common/ota_err.c \
 *   -lcrypto -lsodium -o fuzz_sim
 * Run:   ./fuzz_sim -max_total_time=60 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "card_profile.h"
#include "desfire_auth.h"
#include "desfire_crypto.h"
#include "sim_card.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t UID[7] = {0x04, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60};

static void fixed_rng(void *ctx, uint8_t *p, size_t n)
{
    (void)ctx;
    memset(p, 0xA5, n);
}

static void xfer(struct sim_card *c, const uint8_t *apdu, size_t len, uint8_t *r, size_t *rl)
{
    if (sim_card_transceive(c, apdu, len, r, 64, rl) != 0 || *rl < 2 || *rl > 61)
        abort();
    if (r[*rl - 2] != 0x91 && r[*rl - 2] != 0x90 && r[*rl - 2] != 0x67 && r[*rl - 2] != 0x6E &&
        r[*rl - 2] != 0x6A && r[*rl - 2] != 0x6D)
        abort();
}

/* Select and authenticate with the reader core (deterministic RndA). */
static void pre_auth(struct sim_card *c, uint32_t aid, uint8_t keyno, const uint8_t *key)
{
    uint8_t apdu[80], r[64], rnda[16];
    size_t alen, rl;
    struct dfc_auth a;
    struct dfc_session s;
    const uint8_t sel[9] = {
        0x90, 0x5A, 0, 0, 3, (uint8_t)aid, (uint8_t)(aid >> 8), (uint8_t)(aid >> 16), 0};
    int rc;

    xfer(c, sel, sizeof sel, r, &rl);
    if (dfc_auth_start(&a, DFC_AES128, keyno, key, apdu, sizeof apdu, &alen) != 0)
        abort();
    memset(rnda, 0x3C, sizeof rnda);
    dfc_auth_set_rnda(&a, rnda);
    do {
        xfer(c, apdu, alen, r, &rl);
        rc = dfc_auth_feed(&a, r, rl, apdu, sizeof apdu, &alen, &s);
    } while (rc == DFC_MORE);
    dfc_auth_clear(&a);
    dfc_session_clear(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t zero[16];
    uint8_t masters[4][16], r[64];
    struct sim_card *c;
    char *text;
    size_t off = 1, rl;
    int i;

    if (size < 1)
        return 0;
    c = sim_card_new(UID, sizeof UID, (data[0] & 3) == 2 ? SIM_PICC_AES0 : SIM_PICC_DES0);
    if (c == NULL)
        abort();
    sim_card_set_rng(c, fixed_rng, NULL);
    if (data[0] & 0x10)
        sim_card_set_flags(c, SIM_FLAG_KEEP_PENDING_ON_SELECT_AUTH);
    if ((data[0] & 3) == 0) {
        for (i = 0; i < 4; i++)
            memset(masters[i], i + 1, 16);
        if (sim_card_personalize(c, (const uint8_t(*)[16])masters, "OTA1", 500) != 0)
            abort();
    }
    if ((data[0] & 3) == 2 && (data[0] & 0x04))
        pre_auth(c, 0, 0, zero);
    while (off < size) {
        size_t len = data[off++];
        if (len == 0) {
            sim_card_power_cycle(c);
            continue;
        }
        if (len > size - off)
            len = size - off;
        xfer(c, data + off, len, r, &rl);
        off += len;
    }
    text = malloc(16384);
    if (text == NULL || sim_card_describe(c, text, 16384) != 0)
        abort();
    free(text);
    sim_card_free(c);
    return 0;
}
