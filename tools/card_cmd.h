/* card_cmd: the subcommands of ota-card (tools/ota_card.c dispatches).
 * Each takes the arguments after `ota-card` (argv[0] is the subcommand's
 * name) and returns the process exit status: 0 done, 1 failed, 2 usage. */
#ifndef CARD_CMD_H
#define CARD_CMD_H

#define CARD_EXIT_OK 0
#define CARD_EXIT_FAIL 1
#define CARD_EXIT_USAGE 2

/* ota-card new --card FILE --uid HEX [--blank | --profile --master-keys
 *   K0,K1,K2,K3] [--system-id ASCII] [--balance N] [--picc-key des0|aes0] */
int card_cmd_new(int argc, char **argv);
/* ota-card show --card FILE */
int card_cmd_show(int argc, char **argv);
/* ota-card vicc --card FILE [--connect HOST:PORT] */
int card_cmd_vicc(int argc, char **argv);
/* ota-card relay --card FILE (lines of 1..16 hex APDUs separated by spaces in,
 * their answers on one line out; see card_relay.c) */
int card_cmd_relay(int argc, char **argv);

#define CARD_USAGE_NEW                                                                             \
    "ota-card new --card FILE --uid HEX [--blank | --profile --master-keys K0,K1,K2,K3]\n"         \
    "             [--system-id ASCII] [--balance N] [--picc-key des0|aes0]\n"
#define CARD_USAGE_SHOW "ota-card show --card FILE\n"
#define CARD_USAGE_VICC "ota-card vicc --card FILE [--connect HOST:PORT]\n"
#define CARD_USAGE_RELAY                                                                           \
    "ota-card relay --card FILE (lines of 1..16 hex APDUs in, their answers out)\n"

#endif
