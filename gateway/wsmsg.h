/* wsmsg: one WebSocket data message (text or binary), collected from the
 * payload chunks of its frames (conn.c runs wslay unbuffered for data
 * frames) into a buffer of at most max bytes, which is wiped when the
 * message has been handled or dropped: a client's message may carry its
 * authCode, and wslay's own buffers would be freed without a wipe.  Pure:
 * no I/O and no wslay; the fuzz target uses it as conn.c does. */
#ifndef GW_WSMSG_H
#define GW_WSMSG_H

#include <stddef.h>
#include <stdint.h>

struct wsmsg {
    uint8_t *buf; /* NULL until the first payload byte */
    size_t len, max;
    int data_frame; /* the frame being read belongs to the message */
};

void wsmsg_init(struct wsmsg *m, size_t max);
/* A frame starts (opcode as on the wire, RFC 6455): text or binary starts
 * a new message, a continuation goes on with it, a control frame (which
 * may come between fragments) is not part of it. */
void wsmsg_frame_start(struct wsmsg *m, uint8_t opcode);
/* Payload bytes of the current frame (none for a control frame).
 * Returns 0, OTA_ERR_LENGTH (the message would pass max: it is dropped)
 * or OTA_ERR_NOMEM. */
int wsmsg_chunk(struct wsmsg *m, const uint8_t *p, size_t n);
/* Wipes and frees the message; the struct is ready for the next one. */
void wsmsg_clear(struct wsmsg *m);

#endif
