/* pcsc_reader: a real card through a PC/SC reader (libpcsclite), for
 * `ota-card run --pcsc [READER]`: connect to the card in the reader, read
 * its UID (GET DATA, FF CA 00 00 00) and pass APDUs to it unchanged.  It
 * must never interpret or rewrite an APDU: the card's answer goes back to
 * the server exactly as the reader returned it. */
#ifndef PCSC_READER_H
#define PCSC_READER_H

#include <stddef.h>
#include <stdint.h>

struct pcsc_reader;

/* Result of a transmit, for the client's `error` message kinds. */
enum pcsc_status {
    PCSC_OK = 0,
    PCSC_LOST_TAG = 1, /* the card left the field or was reset */
    PCSC_IO = 2,       /* anything else the reader reported */
};

/* Opens the reader whose name is `name` (exactly, or else the first whose
 * name contains it; NULL: the first reader) and connects to its card.
 * Returns 0 or OTA_ERR_IO / OTA_ERR_NOT_FOUND with a reason in err. */
int pcsc_reader_open(const char *name, struct pcsc_reader **out, char *err, size_t errlen);
/* The card's UID from GET DATA (4, 7 or 10 bytes).  Returns 0 or a
 * negative ota_err with a reason in err. */
int pcsc_reader_uid(struct pcsc_reader *r, uint8_t *uid, size_t cap, size_t *len, char *err,
                    size_t errlen);
/* One APDU in, the card's whole answer out. */
enum pcsc_status pcsc_reader_transceive(struct pcsc_reader *r, const uint8_t *apdu, size_t len,
                                        uint8_t *resp, size_t cap, size_t *resp_len, char *err,
                                        size_t errlen);
const char *pcsc_reader_name(const struct pcsc_reader *r);
void pcsc_reader_close(struct pcsc_reader *r);

#endif
