/* card_relay: `ota-card relay --card FILE`, the simulated card as a
 * co-process for clients written in other languages (the seed-app client in
 * python, browser tests, a phone app's own test harness against a running
 * gateway).  Line protocol on stdin/stdout (docs/PROTOCOL.md, "Testing an
 * app"): first it prints the card's UID in hex; then for every line holding
 * one APDU in hex it prints the card's answer in hex, and for every line
 * holding a batch (2 to 16 APDUs in hex, separated by single spaces, as a
 * `commands` message carries them) it runs them in order, stopping after
 * the first answer that ends in neither 91 00 nor 91 AF, and prints the
 * answers on one line, separated by spaces (fewer than asked when it
 * stopped).  On EOF it saves the card's committed state back to FILE.  A
 * malformed line gets the line "error" and nothing of it reaches the card. */
#include <stdio.h>
#include <string.h>

#include "card_cmd.h"
#include "hex.h"
#include "sim_card.h"
#include "ws_proto_msg.h"

#define RELAY_LINE_MAX (WSM_BATCH_MAX * (2 * WSM_APDU_MAX + 1) + 8)

/* Splits a line into the APDUs of a batch.  Returns 0 or -1 (malformed:
 * empty, more than 16, a word that is not hex of 4..261 bytes). */
static int relay_parse_line(const char *line, size_t n, struct wsm_batch *b)
{
    size_t i = 0;
    b->n = 0;
    b->single = 0;
    while (i < n) {
        size_t start = i;
        int len;
        while (i < n && line[i] != ' ')
            i++;
        if (i == start || b->n == WSM_BATCH_MAX)
            return -1;
        len = hex_decode(line + start, i - start, b->apdu[b->n], WSM_APDU_MAX);
        if (len < 4)
            return -1;
        b->len[b->n++] = (size_t)len;
        if (i < n)
            i++; /* the one space between two APDUs */
        if (i == n && line[n - 1] == ' ')
            return -1;
    }
    return b->n > 0 ? 0 : -1;
}

static const char *relay_card(void *ctx, const uint8_t *apdu, size_t len, uint8_t *resp, size_t cap,
                              size_t *resp_len)
{
    return sim_card_transceive(ctx, apdu, len, resp, cap, resp_len) == 0 ? NULL : "io";
}

static void relay_print(const struct wsm_answers *a)
{
    char hex[2 * WSM_ANSWER_MAX + 1];
    if (a->error != NULL && a->n == 0) {
        printf("error\n");
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        hex_encode(a->data[i], a->len[i], hex);
        printf("%s%s", i > 0 ? " " : "", hex);
    }
    printf("\n");
}

int card_cmd_relay(int argc, char **argv)
{
    static char line[RELAY_LINE_MAX];
    static struct wsm_batch batch;
    static struct wsm_answers answers;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--card") == 0 && i + 1 < argc)
            path = argv[++i];
        else {
            fprintf(stderr, "usage: " CARD_USAGE_RELAY);
            return CARD_EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: " CARD_USAGE_RELAY);
        return CARD_EXIT_USAGE;
    }
    struct sim_card *card = sim_card_load(path);
    if (!card) {
        fprintf(stderr, "ota-card relay: cannot load card file %s\n", path);
        return CARD_EXIT_FAIL;
    }
    size_t uid_len;
    const uint8_t *uid = sim_card_uid(card, &uid_len);
    char hex[2 * 10 + 1];
    hex_encode(uid, uid_len < 10 ? uid_len : 10, hex);
    printf("%s\n", hex);
    fflush(stdout);

    while (fgets(line, sizeof line, stdin)) {
        size_t n = strcspn(line, "\r\n");
        if (line[n] == '\0' && n == sizeof line - 1) {
            /* Longer than any batch: skip the rest of it, run nothing. */
            int c;
            while ((c = getchar()) != EOF && c != '\n')
                ;
            printf("error\n");
        } else if (relay_parse_line(line, n, &batch) != 0) {
            printf("error\n");
        } else {
            wsm_batch_run(&batch, relay_card, card, &answers);
            relay_print(&answers);
        }
        fflush(stdout);
    }
    int rc = sim_card_save(card, path) == 0 ? CARD_EXIT_OK : CARD_EXIT_FAIL;
    if (rc != CARD_EXIT_OK)
        fprintf(stderr, "ota-card relay: cannot save card file %s\n", path);
    sim_card_free(card);
    return rc;
}
