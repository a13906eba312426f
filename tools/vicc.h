/* vicc: a file-backed simulated DESFire EV1 card attached to vsmartcard's
 * vpcd as a virtual ICC, so any PC/SC program sees it in a reader.
 * The vpcd protocol: TCP, every message prefixed by its 2-byte big-endian
 * length; a 1-byte message is a control code (power off, power on, reset,
 * get ATR), anything else an APDU to answer.  The card's committed state is
 * written back to its file after every command that may have changed it,
 * before the answer leaves. */
#ifndef VICC_H
#define VICC_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define VICC_DEFAULT_HOST "127.0.0.1"
#define VICC_DEFAULT_PORT "35963"

/* vpcd control codes (1-byte messages). */
#define VICC_CTRL_OFF 0x00
#define VICC_CTRL_ON 0x01
#define VICC_CTRL_RESET 0x02
#define VICC_CTRL_ATR 0x04

struct vicc_card;

/* Loads the card file; NULL (with a logged reason) if it cannot be read. */
struct vicc_card *vicc_card_open(const char *path);
void vicc_card_close(struct vicc_card *vc);

/* The ATR of a DESFire EV1 behind a PC/SC contactless reader (PC/SC part 3:
 * 3B 8n 80 01, historical bytes from the ATS, TCK). */
const uint8_t *vicc_atr(size_t *len);

/* Handles one vpcd message (without its length prefix).  On return
 * *out_len is the answer's length, 0 when the message needs no answer.
 * Returns 0, or a negative ota_err when the card file could not be saved
 * (then no answer may be sent: to the reader the card lost power). */
int vicc_card_message(struct vicc_card *vc, const uint8_t *msg, size_t len, uint8_t *out,
                      size_t cap, size_t *out_len);

/* Connects to vpcd at host:port (retrying with back-off while it is not
 * up, and again after it closes the connection) and serves the card until
 * *stop becomes nonzero.  Returns 0 on stop, or a negative ota_err. */
int vicc_serve(struct vicc_card *vc, const char *host, const char *port,
               const volatile sig_atomic_t *stop);

#endif
