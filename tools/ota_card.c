/* ota_card: the `ota-card` tool.  Makes simulated card files (new), shows
 * them (show), attaches one to vsmartcard's vpcd as a PC/SC card (vicc) and
 * runs operations against a gateway as a client (run).  This file only
 * dispatches; it must never parse a subcommand's options itself. */
#include <stdio.h>
#include <string.h>

#include "card_cmd.h"
#include "card_run.h"
#include "version.h"

static void ota_card_usage(FILE *f)
{
    fprintf(f, "usage: " CARD_USAGE_NEW "       " CARD_USAGE_VICC "       " CARD_USAGE_SHOW
               "       " CARD_USAGE_RELAY "       ota-card run ... (see ota-card run --help)\n"
               "       ota-card --help | --version\n");
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"new", card_cmd_new}, {"show", card_cmd_show},   {"vicc", card_cmd_vicc},
        {"run", card_cmd_run}, {"relay", card_cmd_relay},
    };

    if (argc < 2) {
        ota_card_usage(stderr);
        return CARD_EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        ota_card_usage(stdout);
        return CARD_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        fputs(OTA_VERSION_LINE("ota-card"), stdout);
        return CARD_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].fn(argc - 1, argv + 1);

    fprintf(stderr, "ota-card: unknown %s '%s'\n", argv[1][0] == '-' ? "option" : "command",
            argv[1]);
    ota_card_usage(stderr);
    return CARD_EXIT_USAGE;
}
