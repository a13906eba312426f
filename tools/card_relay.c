/* card_relay: `ota-card relay --card FILE`, the simulated card as a
 * co-process for clients written in other languages (the seed-app client in
 * python, browser tests).  Line protocol on stdin/stdout: first it prints
 * the card's UID in hex; then for every line holding one APDU in hex it
 * prints the card's answer in hex.  On EOF it saves the card's committed
 * state back to FILE.  A malformed line gets the line "error" and nothing
 * reaches the card. */
#include <stdio.h>
#include <string.h>

#include "card_cmd.h"
#include "hex.h"
#include "sim_card.h"

#define RELAY_APDU_MAX 300

int card_cmd_relay(int argc, char **argv)
{
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
    char hex[2 * RELAY_APDU_MAX + 1];
    hex_encode(uid, uid_len, hex);
    printf("%s\n", hex);
    fflush(stdout);

    char line[2 * RELAY_APDU_MAX + 8];
    uint8_t apdu[RELAY_APDU_MAX], resp[RELAY_APDU_MAX];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strcspn(line, "\r\n");
        size_t resp_len = 0;
        int len = hex_decode(line, n, apdu, sizeof apdu);
        if (len <= 0 ||
            sim_card_transceive(card, apdu, (size_t)len, resp, sizeof resp, &resp_len) != 0) {
            printf("error\n");
        } else {
            hex_encode(resp, resp_len, hex);
            printf("%s\n", hex);
        }
        fflush(stdout);
    }
    int rc = sim_card_save(card, path) == 0 ? CARD_EXIT_OK : CARD_EXIT_FAIL;
    if (rc != CARD_EXIT_OK)
        fprintf(stderr, "ota-card relay: cannot save card file %s\n", path);
    sim_card_free(card);
    return rc;
}
