/* card_vicc: `ota-card vicc` parses its command line, installs the
 * signal handlers and runs the virtual ICC (vicc.c) until SIGTERM/SIGINT.
 * It must never touch the card's state itself. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card_cmd.h"
#include "log.h"
#include "ota_err.h"
#include "vicc.h"
#include "num.h"

#define VICC_HOST_MAX 256

static volatile sig_atomic_t vicc_stop;

static void vicc_on_signal(int sig)
{
    (void)sig;
    vicc_stop = 1;
}

static int vicc_usage(const char *why)
{
    if (why != NULL)
        fprintf(stderr, "ota-card vicc: %s\n", why);
    fprintf(stderr, "usage: " CARD_USAGE_VICC);
    return CARD_EXIT_USAGE;
}

/* HOST:PORT or [V6ADDR]:PORT; port 1..65535. */
static int vicc_split(const char *s, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon, *hs = s;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        hs = s + 1;
        hl = (size_t)(close - hs);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
    }
    const char *ps = colon + 1;
    size_t pl = strlen(ps);
    if (hl == 0 || hl >= hcap || pl == 0 || pl >= pcap)
        return -1;
    long long pv;
    if (num_parse_ll(ps, 1, 65535, &pv) != 0)
        return -1;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    memcpy(port, ps, pl + 1);
    return 0;
}

int card_cmd_vicc(int argc, char **argv)
{
    static const struct option opts[] = {
        {"card", required_argument, NULL, 'c'},
        {"connect", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    char host[VICC_HOST_MAX] = VICC_DEFAULT_HOST;
    char port[8] = VICC_DEFAULT_PORT;
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'C':
            if (vicc_split(optarg, host, sizeof host, port, sizeof port) < 0)
                return vicc_usage("--connect must be HOST:PORT");
            break;
        case 'h':
            fprintf(stdout, "usage: " CARD_USAGE_VICC);
            return CARD_EXIT_OK;
        case ':':
            return vicc_usage("an option is missing its argument");
        default:
            return vicc_usage("unknown option");
        }
    }
    if (optind != argc)
        return vicc_usage("unexpected argument");
    if (path == NULL)
        return vicc_usage("--card is required");

    if (log_init("ota-card", NULL, 0, LOG_LVL_INFO) < 0) {
        fprintf(stderr, "ota-card vicc: cannot start logging\n");
        return CARD_EXIT_FAIL;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = vicc_on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a blocking wait returns and sees the stop flag. */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    struct vicc_card *vc = vicc_card_open(path);
    if (vc == NULL) {
        fprintf(stderr, "ota-card vicc: cannot load the card file %s\n", path);
        return CARD_EXIT_FAIL;
    }
    int rc = vicc_serve(vc, host, port, &vicc_stop);
    vicc_card_close(vc);
    if (rc < 0) {
        fprintf(stderr, "ota-card vicc: stopped: %s\n", ota_strerror(rc));
        return CARD_EXIT_FAIL;
    }
    return CARD_EXIT_OK;
}
