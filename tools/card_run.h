/* card_run: `ota-card run`, the phone app as a command.  Connects to a
 * gateway, starts one operation for a simulated card file (or a card in a
 * PC/SC reader), relays every command to the card, prints modal texts and
 * the result, and saves the card file.  Exit: 0 ok, 1 failed, 2 usage,
 * 3 pending, 4 connection or protocol error (no result). */
#ifndef CARD_RUN_H
#define CARD_RUN_H

int card_cmd_run(int argc, char **argv);

#endif
