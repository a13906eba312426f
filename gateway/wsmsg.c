/* wsmsg: a WebSocket data message in a buffer that is wiped; see wsmsg.h.
 * The bound is checked before every copy, so a message never grows past
 * max whatever its fragments claim. */
#include "wsmsg.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ota_err.h"

#define OPCODE_CONTROL 0x8 /* RFC 6455: opcodes 0x8-0xF are control frames */
#define OPCODE_TEXT 0x1
#define OPCODE_BINARY 0x2

void wsmsg_init(struct wsmsg *m, size_t max)
{
    memset(m, 0, sizeof *m);
    m->max = max;
}

void wsmsg_frame_start(struct wsmsg *m, uint8_t opcode)
{
    m->data_frame = !(opcode & OPCODE_CONTROL);
    if (opcode == OPCODE_TEXT || opcode == OPCODE_BINARY)
        wsmsg_clear(m);
}

int wsmsg_chunk(struct wsmsg *m, const uint8_t *p, size_t n)
{
    if (!m->data_frame || n == 0)
        return 0;
    if (n > m->max - m->len) {
        wsmsg_clear(m);
        return OTA_ERR_LENGTH;
    }
    /* The whole bound at once: one allocation per message, never a
     * realloc that would leave a copy behind. */
    if (!m->buf && !(m->buf = malloc(m->max)))
        return OTA_ERR_NOMEM;
    memcpy(m->buf + m->len, p, n);
    m->len += n;
    return 0;
}

void wsmsg_clear(struct wsmsg *m)
{
    if (m->buf) {
        sodium_memzero(m->buf, m->len);
        free(m->buf);
    }
    m->buf = NULL;
    m->len = 0;
}
