/* card_run_args: the command line of `ota-card run` (see card_run_args.h). */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "card_cmd.h"
#include "card_run_args.h"
#include "hex.h"
#include "num.h"
#include "ws_proto_msg.h"

int run_usage(const char *why)
{
    if (why != NULL)
        fprintf(stderr, "ota-card run: %s\n", why);
    fputs(RUN_USAGE, stderr);
    return CARD_EXIT_USAGE;
}

static int run_parse_count(const char *s, long min, long max, long *out)
{
    long long v;
    if (num_parse_ll(s, min, max, &v) != 0)
        return -1;
    *out = (long)v;
    return 0;
}

static int run_is_operation(const char *s)
{
    return strcmp(s, "check") == 0 || strcmp(s, "topup") == 0 || strcmp(s, "personalize") == 0;
}

/* A code or token must not stay readable in /proc/PID/cmdline. */
static void run_hide_arg(char *s)
{
    size_t n = strlen(s);
    if (n > 0)
        memset(s, 'x', n);
}

/* Options anywhere before the operation words; "--" ends options. */
int run_parse_args(int argc, char **argv, struct run_args *a, int *help)
{
    const char *pos[2] = {NULL, NULL};
    int npos = 0, no_more_opts = 0;
    char *auth_arg = NULL;

    memset(a, 0, sizeof *a);
    a->timeout_ms = RUN_DEFAULT_TIMEOUT_MS;
    a->stall_ms = 3000;
    a->batch = WSM_BATCH_MAX;
    *help = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (no_more_opts || o[0] != '-' || o[1] == '\0') {
            if (npos >= 2)
                return run_usage("too many arguments");
            if (npos == 1)
                auth_arg = argv[i];
            pos[npos++] = o;
            continue;
        }
        if (strcmp(o, "--") == 0) {
            no_more_opts = 1;
            continue;
        }
        if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
            *help = 1;
            return 0;
        }
        if (strcmp(o, "--quiet") == 0 || strcmp(o, "-q") == 0) {
            a->quiet = 1;
            takes = 0;
        } else if (strcmp(o, "--json") == 0) {
            a->json = 1;
            takes = 0;
        } else if (strcmp(o, "--verbose") == 0 || strcmp(o, "-v") == 0) {
            a->verbose = 1;
            takes = 0;
        } else if (strcmp(o, "--insecure") == 0) {
            a->insecure = 1;
            takes = 0;
        } else if (strcmp(o, "--pcsc") == 0) {
            a->pcsc = 1;
            takes = 0;
            /* The reader name is optional: take the next word unless it is
             * an option or the operation. */
            if (v != NULL && v[0] != '-' && !run_is_operation(v)) {
                a->pcsc_reader = v;
                i++;
            }
        } else if (v == NULL) {
            fprintf(stderr, "ota-card run: %s needs a value\n", o);
            return run_usage(NULL);
        } else if (strcmp(o, "--url") == 0) {
            a->url = v;
        } else if (strcmp(o, "--card") == 0) {
            a->card_file = v;
        } else if (strcmp(o, "--uid") == 0) {
            int n = hex_decode(v, strlen(v), a->uid, sizeof a->uid);
            if (n < 1)
                return run_usage("--uid wants 1 to 10 bytes of hex");
            a->uid_len = (size_t)n;
        } else if (strcmp(o, "--request-id") == 0) {
            if (strlen(v) > RUN_REQID_MAX)
                return run_usage("--request-id is too long");
            snprintf(a->request_id, sizeof a->request_id, "%s", v);
        } else if (strcmp(o, "--timeout-ms") == 0) {
            if (run_parse_count(v, 1, 3600000, &a->timeout_ms) != 0)
                return run_usage("--timeout-ms wants 1..3600000");
        } else if (strcmp(o, "--cacert") == 0) {
            a->ca_file = v;
        } else if (strcmp(o, "--cert") == 0) {
            a->cert_file = v;
        } else if (strcmp(o, "--key") == 0) {
            a->key_file = v;
        } else if (strcmp(o, "--drop-after") == 0) {
            if (run_parse_count(v, 1, 100000, &a->drop_after) != 0)
                return run_usage("--drop-after wants a command number >= 1");
        } else if (strcmp(o, "--lost-tag-after") == 0) {
            if (run_parse_count(v, 1, 100000, &a->lost_tag_after) != 0)
                return run_usage("--lost-tag-after wants a command number >= 1");
        } else if (strcmp(o, "--tear-after") == 0) {
            if (run_parse_count(v, 1, 100000, &a->tear_after) != 0)
                return run_usage("--tear-after wants a command number >= 1");
        } else if (strcmp(o, "--stall-after") == 0) {
            if (run_parse_count(v, 1, 100000, &a->stall_after) != 0)
                return run_usage("--stall-after wants a command number >= 1");
        } else if (strcmp(o, "--protocol") == 0) {
            if (strcmp(v, "v1") == 0)
                a->batch = 0;
            else if (strcmp(v, "v2") != 0)
                return run_usage("--protocol wants v1 or v2");
            else if (a->batch == 0)
                a->batch = WSM_BATCH_MAX;
        } else if (strcmp(o, "--batch") == 0) {
            if (run_parse_count(v, WSM_BATCH_MIN, WSM_BATCH_MAX, &a->batch) != 0)
                return run_usage("--batch wants 2..16");
        } else if (strcmp(o, "--trace") == 0) {
            a->trace_file = v;
        } else if (strcmp(o, "--stall-ms") == 0) {
            if (run_parse_count(v, 0, 3600000, &a->stall_ms) != 0)
                return run_usage("--stall-ms wants 0..3600000");
        } else {
            fprintf(stderr, "ota-card run: unknown option %s\n", o);
            return run_usage(NULL);
        }
        if (takes)
            i++;
    }
    if (a->url == NULL)
        return run_usage("--url is required");
    if ((a->card_file == NULL) == (a->pcsc == 0))
        return run_usage("give exactly one of --card FILE and --pcsc [READER]");
    if (npos == 0)
        return run_usage("which operation: check, topup CODE or personalize TOKEN?");
    a->operation = pos[0];
    if (strcmp(a->operation, "check") == 0) {
        if (npos != 1)
            return run_usage("check takes no argument");
    } else if (strcmp(a->operation, "topup") == 0 || strcmp(a->operation, "personalize") == 0) {
        if (npos != 2)
            return run_usage(strcmp(a->operation, "topup") == 0 ? "topup needs a CODE"
                                                                : "personalize needs a TOKEN");
        if (strlen(pos[1]) > RUN_AUTH_MAX)
            return run_usage("the code or token is too long");
        snprintf(a->auth, sizeof a->auth, "%s", pos[1]);
        run_hide_arg(auth_arg);
    } else {
        fprintf(stderr, "ota-card run: unknown operation '%s'\n", a->operation);
        return run_usage(NULL);
    }
    if (a->request_id[0] == '\0') {
        uint8_t rnd[8];
        randombytes_buf(rnd, sizeof rnd);
        memcpy(a->request_id, "run-", 4);
        hex_encode(rnd, sizeof rnd, a->request_id + 4);
    }
    return 0;
}
