/* desfire_session: reader-side EV1 secure messaging, sans-I/O.
 *
 * A dfc_session is what AuthenticateAES (or ISO 0x1A) yields: the session
 * key and the running IV.  A dfc_cmd runs one logical native command as a
 * series of ISO 7816-4 APDUs (90 INS 00 00 Lc data 00, continuation frames
 * 90 AF ...), applying the EV1 rules of tests/vectors/CONVENTIONS.md:
 * CMAC over every command and answer after authentication, enciphered
 * payloads with CRC32 and zero padding, AF chaining both ways within the
 * card's frame limits, exact length and CRC position checks, SW1 == 0x91.
 *
 * It never does I/O: dfc_cmd_start() writes the first APDU to send,
 * dfc_cmd_feed() consumes the card's answer and either writes the next
 * APDU or finishes.  Any error ends the session (s->active = 0), like the
 * card does. */
#ifndef DESFIRE_SESSION_H
#define DESFIRE_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include "desfire_crypto.h"

/* Frame limits of a real EV1 (and of libfreefare): INS + data in one
 * command frame, data bytes in one answer frame. */
#define DFC_FRAME_MAX_CMD 55
#define DFC_FRAME_MAX_RESP 59
/* Largest ISO APDU either way: 5 header + 54 data + Le; answer 59 + SW. */
#define DFC_APDU_MAX 64
/* Largest native command frame a spec may ask for (PN532 readers send 60). */
#define DFC_FRAME_MAX_REPLAY 60
/* Largest logical command payload / answer data we build or accept. */
#define DFC_DATA_MAX 512

/* Native status codes (SW2 of an ISO answer). */
enum dfc_status {
    DFC_ST_OK = 0x00,
    DFC_ST_NO_CHANGES = 0x0C,
    DFC_ST_OUT_OF_EEPROM = 0x0E,
    DFC_ST_ILLEGAL_COMMAND = 0x1C,
    DFC_ST_INTEGRITY_ERROR = 0x1E,
    DFC_ST_NO_SUCH_KEY = 0x40,
    DFC_ST_LENGTH_ERROR = 0x7E,
    DFC_ST_PERMISSION_DENIED = 0x9D,
    DFC_ST_PARAMETER_ERROR = 0x9E,
    DFC_ST_APPLICATION_NOT_FOUND = 0xA0,
    DFC_ST_AUTHENTICATION_ERROR = 0xAE,
    DFC_ST_ADDITIONAL_FRAME = 0xAF,
    DFC_ST_BOUNDARY_ERROR = 0xBE,
    DFC_ST_COMMAND_ABORTED = 0xCA,
    DFC_ST_DUPLICATE_ERROR = 0xDE,
    DFC_ST_FILE_NOT_FOUND = 0xF0,
};

enum dfc_comm {
    DFC_COMM_PLAIN = 0x00, /* nothing appended; still MACed into the IV */
    DFC_COMM_MAC = 0x01,   /* CMAC[0..7] appended */
    DFC_COMM_ENC = 0x03,   /* enciphered with CRC32 */
};

struct dfc_session {
    enum dfc_cipher cipher;
    uint8_t key[DFC_MAX_KEY];
    uint8_t iv[DFC_MAX_BLOCK];
    uint8_t keyno;
    int active; /* 1 from authentication until an error, select or key change */
};

/* Wipes key and IV and marks the session inactive. */
void dfc_session_clear(struct dfc_session *s);

/* Returned by the feed functions when another APDU was written. */
#define DFC_MORE 1

struct dfc_cmd_spec {
    uint8_t ins;
    const uint8_t *hdr; /* clear header after INS (FileNo, offset, ...) */
    size_t hdr_len;
    const uint8_t *data; /* payload; enciphered in DFC_COMM_ENC mode */
    size_t data_len;
    enum dfc_comm cmd_comm;  /* protection of the command (after auth) */
    enum dfc_comm resp_comm; /* protection of the answer (after auth) */
    int resp_len;            /* exact answer data length, or -1 if unknown */
    /* Framing of a long command: most bytes of the first native frame (INS
     * included) and of each continuation frame (AF included).  0 means
     * DFC_FRAME_MAX_CMD; at most DFC_FRAME_MAX_REPLAY (then the APDU needs
     * 6 + DFC_FRAME_MAX_REPLAY bytes of cap).  Only for reproducing recorded
     * traffic of other readers; production code leaves both 0. */
    uint8_t first_frame_max;
    uint8_t next_frame_max;
};

enum dfc_cmd_state {
    DFC_CMD_IDLE = 0,
    DFC_CMD_SENDING,
    DFC_CMD_RECEIVING,
    DFC_CMD_DONE,
    DFC_CMD_FAILED
};

struct dfc_cmd {
    enum dfc_cmd_state state;
    struct dfc_session *sess; /* NULL or inactive: unauthenticated command */
    uint8_t ins;
    enum dfc_comm resp_comm;
    int resp_len;
    int changekey_same;              /* ChangeKey of the authenticated key: no answer MAC */
    uint8_t wire[DFC_DATA_MAX + 64]; /* hdr + protected payload as sent */
    size_t wire_len, wire_off;
    uint8_t first_max, next_max;    /* frame limits in force */
    uint8_t acc[DFC_DATA_MAX + 64]; /* answer frames' data, concatenated */
    size_t acc_len;
    /* Results, valid when dfc_cmd_feed() returned 0 (or CARD_STATUS). */
    uint8_t status;
    uint8_t resp[DFC_DATA_MAX];
    size_t resp_len_out;
};

/* Builds the command and writes its first APDU. */
int dfc_cmd_start(struct dfc_cmd *c, struct dfc_session *s, const struct dfc_cmd_spec *spec,
                  uint8_t *apdu, size_t cap, size_t *apdu_len);
/* Consumes one ISO answer.  Returns DFC_MORE (apdu holds the next frame),
 * 0 (done: c->resp / c->resp_len_out, status 0x00), OTA_ERR_CARD_STATUS
 * (c->status holds the card's error), or OTA_ERR_SW1 / OTA_ERR_LENGTH /
 * OTA_ERR_MAC / OTA_ERR_CRC / OTA_ERR_STATE.  Every error ends s. */
int dfc_cmd_feed(struct dfc_cmd *c, const uint8_t *rapdu, size_t rlen, uint8_t *apdu, size_t cap,
                 size_t *apdu_len);
/* Wipes the command buffers (they may hold plaintext). */
void dfc_cmd_clear(struct dfc_cmd *c);

/* ChangeKey (0xC4), always enciphered.  keyno_byte is what goes on the wire
 * (at PICC level it carries the new key type: 0x80 AES).  old_key NULL means
 * the authenticated key itself is changed (cryptogram NewKey||Ver||CRC, the
 * answer has no CMAC and the session ends); otherwise (New^Old)||Ver||CRC||
 * CRC32(New).  key_version is sent only for AES new keys.  new_key and
 * old_key hold dfc_key_size(new_type) bytes (a DES key as K||K).  old_key
 * must be NULL exactly when (keyno_byte & 0x0F) is the authenticated key
 * number, else OTA_ERR_INVAL; without an active session OTA_ERR_STATE. */
int dfc_cmd_start_changekey(struct dfc_cmd *c, struct dfc_session *s, uint8_t keyno_byte,
                            enum dfc_cipher new_type, const uint8_t *new_key, uint8_t key_version,
                            const uint8_t *old_key, uint8_t *apdu, size_t cap, size_t *apdu_len);

#endif
