/* card_show: `ota-card show` prints a card file's committed state
 * (applications, files, values, records) as the simulator describes it.
 * It only reads the file; it must never write it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card_cmd.h"
#include "ota_err.h"
#include "sim_card.h"

/* Large enough for 28 applications of 32 files with their records. */
#define SHOW_MAX (1u << 20)

static int show_usage(const char *why)
{
    if (why != NULL)
        fprintf(stderr, "ota-card show: %s\n", why);
    fprintf(stderr, "usage: " CARD_USAGE_SHOW);
    return CARD_EXIT_USAGE;
}

int card_cmd_show(int argc, char **argv)
{
    static const struct option opts[] = {
        {"card", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'h':
            fprintf(stdout, "usage: " CARD_USAGE_SHOW);
            return CARD_EXIT_OK;
        case ':':
            return show_usage("an option is missing its argument");
        default:
            return show_usage("unknown option");
        }
    }
    if (optind != argc)
        return show_usage("unexpected argument");
    if (path == NULL)
        return show_usage("--card is required");

    struct sim_card *card = sim_card_load(path);
    if (card == NULL) {
        fprintf(stderr, "ota-card show: cannot load the card file %s\n", path);
        return CARD_EXIT_FAIL;
    }
    char *text = malloc(SHOW_MAX);
    int status = CARD_EXIT_FAIL;
    if (text == NULL) {
        fprintf(stderr, "ota-card show: %s\n", ota_strerror(OTA_ERR_NOMEM));
    } else {
        int rc = sim_card_describe(card, text, SHOW_MAX);
        if (rc < 0) {
            fprintf(stderr, "ota-card show: cannot describe %s: %s\n", path, ota_strerror(rc));
        } else {
            size_t n = strnlen(text, SHOW_MAX);
            fwrite(text, 1, n, stdout);
            if (n > 0 && text[n - 1] != '\n')
                fputc('\n', stdout);
            status = fflush(stdout) == 0 ? CARD_EXIT_OK : CARD_EXIT_FAIL;
        }
    }
    free(text);
    sim_card_free(card);
    return status;
}
