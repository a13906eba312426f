/* card_run_args: the command line of `ota-card run` (tools/card_run.c):
 * its options, usage and help text.  Parsing only: it opens nothing and
 * connects nowhere.  It must never leave the code or token readable in
 * /proc/PID/cmdline (the argument is overwritten once copied). */
#ifndef CARD_RUN_ARGS_H
#define CARD_RUN_ARGS_H

#include <stddef.h>
#include <stdint.h>

#define RUN_UID_MAX 10
#define RUN_AUTH_MAX 256
#define RUN_REQID_MAX 64
#define RUN_DEFAULT_TIMEOUT_MS 90000

#define RUN_USAGE                                                                                  \
    "usage: ota-card run --url ws[s]://HOST:PORT/v1/session (--card FILE | --pcsc [READER])\n"     \
    "                    [--uid HEX] [--request-id ID] [--quiet] [--json] [--verbose]\n"           \
    "                    [--timeout-ms MS] [--cacert FILE] [--cert FILE [--key FILE]]\n"           \
    "                    [--insecure] [--protocol v1|v2] [--batch N] [--trace FILE]\n"             \
    "                    check | topup CODE | personalize TOKEN\n"
#define RUN_HELP                                                                                   \
    "Plays the phone app: starts one operation on the gateway for a card and relays the\n"         \
    "server's APDUs to it.\n"                                                                      \
    "\n"                                                                                           \
    "  --url URL          the gateway's WebSocket URL (ws:// only on loopback or a private hop)\n" \
    "  --card FILE        a simulated card file (ota-card new); saved back after the session\n"    \
    "  --pcsc [READER]    a card in a PC/SC reader instead (first reader, or the one named)\n"     \
    "  --uid HEX          send this UID instead of the card's (tests: a lying client)\n"           \
    "  --request-id ID    the requestId to send (default: a random one)\n"                         \
    "  --quiet            print only the result\n"                                                 \
    "  --json             print the result message as JSON (one line on stdout); without a\n"      \
    "                     result, a {\"type\":\"client-error\",\"kind\":...} line instead\n"       \
    "  --verbose          print every command and response on stderr\n"                            \
    "  --timeout-ms MS    give up when no result came within MS (default 90000)\n"                 \
    "  --cacert FILE      wss: trust these CAs instead of the system's\n"                          \
    "  --cert FILE        wss: client certificate (operator listener); --key FILE its key\n"       \
    "  --insecure         wss: do not verify the server's certificate (tests only)\n"              \
    "  --protocol v1|v2   v2 (default) announces batches: the gateway may send up to --batch\n"    \
    "                     APDUs in one `commands` message; v1 gets one `command` at a time\n"      \
    "  --batch N          the largest batch to announce, 2..16 (default 16; implies v2)\n"         \
    "  --trace FILE       append every message of the session to FILE, one JSON line each\n"       \
    "                     with direction and time (the code or token is replaced by \"***\")\n"    \
    "\n"                                                                                           \
    "Fault injection, for tests (N counts the server's APDUs from 1, also inside batches):\n"      \
    "  --drop-after N     close the TCP connection instead of answering command N\n"               \
    "  --lost-tag-after N lose the card at command N: "                                            \
    "{\"type\":\"error\",\"kind\":\"lost-tag\"},\n"                                                \
    "                     or in a batch the answers before it and \"error\":\"lost-tag\"\n"        \
    "  --tear-after N     run command N on the card, power-cycle the card, then drop\n"            \
    "  --stall-after N    wait --stall-ms MS (default 3000) before answering command N\n"          \
    "\n"                                                                                           \
    "Exit status: 0 ok, 1 failed, 2 usage, 3 pending, 4 no result (connection or protocol\n"       \
    "error, timeout, fault injected, interrupted).\n"

struct run_args {
    const char *url;
    const char *card_file;
    int pcsc;
    const char *pcsc_reader;
    uint8_t uid[RUN_UID_MAX];
    size_t uid_len;
    char request_id[RUN_REQID_MAX + 1];
    int quiet, json, verbose;
    long timeout_ms;
    const char *ca_file, *cert_file, *key_file;
    int insecure;
    long drop_after, lost_tag_after, tear_after, stall_after, stall_ms;
    long batch; /* announced batch size; 0 = v1 */
    const char *trace_file;
    const char *operation;
    char auth[RUN_AUTH_MAX + 1];
};

/* Parses argv (argv[0] is "run").  Returns 0 (with *help set when --help
 * was asked) or the exit status of a usage error, already explained on
 * stderr. */
int run_parse_args(int argc, char **argv, struct run_args *a, int *help);
/* Prints why (if any) and the usage line on stderr; returns the usage
 * exit status. */
int run_usage(const char *why);

#endif
