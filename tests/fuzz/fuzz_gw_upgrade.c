/* fuzz_gw_upgrade: libFuzzer target for every byte a client connection
 * reads, in the order gateway/conn.c reads them: an optional PROXY
 * protocol header (gateway/proxy.c), the HTTP upgrade head
 * (gateway/upgrade.c) with the gateway's default limits, then WebSocket
 * frames through a wslay server context configured as conn.c configures
 * it (unbuffered for data frames, collected by gateway/wsmsg.c), with
 * in-memory recv/send callbacks in place of the bufferevent.
 * Each complete text message goes through the UTF-8 check and the JSON
 * parser (gateway/utf8.c, gateway/climsg.c) and is answered like the
 * session answers it (a result, then close 1000; 1007 and 1003 for
 * invalid UTF-8 and binary frames), so that wslay's send path and close
 * handshake run too.
 *
 * Input: byte 0 = flags (bit 0: the peer may send a PROXY header; bits
 * 1-3: read size per recv call, 1..4096, so that frames split anywhere;
 * bit 4: write out after every read), then the bytes as the client sent
 * them.  Must never crash, leak, or hand the parser an unbounded message.
 *
 * Build and run: tests/fuzz/run.sh fuzz_gw_upgrade
 * Seeds: tests/fuzz/corpus/fuzz_gw_upgrade/ (made by tests/fuzz/gw_seeds.py) */
// FUZZ-SOURCES: gateway/upgrade.c gateway/proxy.c gateway/utf8.c gateway/climsg.c gateway/wsmsg.c
// FUZZ-SOURCES: common/hex.c common/wire.c common/buf.c common/ota_err.c
// FUZZ-LIBS: -lwslay -ljansson -lsodium -lcrypto
// FUZZ-MAX-LEN: 16384
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <jansson.h>
#include <wslay/wslay.h>

#include "climsg.h"
#include "proxy.h"
#include "upgrade.h"
#include "utf8.h"
#include "wire.h"
#include "wsmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The gateway's defaults (deploy/ota.conf.example) and conn.c's bounds. */
#define PROXY_MAX 1100
#define MAX_HEADER_BYTES 8192
#define MAX_HEADERS 64
#define MAX_MESSAGE 4096
#define OUT_MAX (64 * 1024)

struct stream {
    const uint8_t *p;
    size_t n, off, chunk;
    size_t out; /* bytes "written" to the client */
    int closing, results;
    struct wsmsg msg;
};

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *arg)
{
    (void)flags;
    struct stream *s = arg;
    size_t left = s->n - s->off;
    size_t k = len < s->chunk ? len : s->chunk;
    if (k > left)
        k = left;
    if (k == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    memcpy(buf, s->p + s->off, k);
    s->off += k;
    return (ssize_t)k;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *arg)
{
    (void)flags;
    (void)data;
    struct stream *s = arg;
    if (s->out >= OUT_MAX) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    s->out += len;
    return (ssize_t)len;
}

static void close_with(wslay_event_context_ptr ctx, struct stream *s, uint16_t code)
{
    if (s->closing)
        return;
    s->closing = 1;
    wslay_event_queue_close(ctx, code, NULL, 0);
}

static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *a, void *arg)
{
    (void)ctx;
    wsmsg_frame_start(&((struct stream *)arg)->msg, a->opcode);
}

static void on_frame_chunk(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_chunk_arg *a, void *arg)
{
    struct stream *s = arg;
    if (!wslay_event_get_read_enabled(ctx))
        return;
    if (wsmsg_chunk(&s->msg, a->data, a->data_length) != 0) {
        wslay_event_queue_close(ctx, WSLAY_CODE_MESSAGE_TOO_BIG, NULL, 0);
        wslay_event_shutdown_read(ctx);
    }
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *m,
                   void *arg)
{
    struct stream *s = arg;
    if (s->msg.len > MAX_MESSAGE)
        abort(); /* wsmsg must have refused it */
    if (s->closing || !wslay_event_get_read_enabled(ctx)) {
        wsmsg_clear(&s->msg);
        return;
    }
    switch (m->opcode) {
    case WSLAY_TEXT_FRAME: {
        const uint8_t *text = s->msg.buf ? s->msg.buf : (const uint8_t *)"";
        size_t len = s->msg.len;
        if (!utf8_valid(text, len)) {
            wsmsg_clear(&s->msg);
            close_with(ctx, s, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA);
            return;
        }
        struct cm_msg cm;
        const char *why = NULL;
        struct wire_result r;
        memset(&r, 0, sizeof r);
        r.status = WIRE_ST_FAILED;
        r.error = WIRE_E_BAD_REQUEST;
        int parsed = cm_parse(text, len, &cm, &why);
        wsmsg_clear(&s->msg);
        if (parsed == 0) {
            r.op = cm.op;
            /* A response is answered with the next command, the rest with
             * a result; either way something goes out before the close. */
            if (cm.type == CM_RESPONSE && s->results++ < 4) {
                char *t = cm_build_command(cm.data, cm.data_len);
                struct wslay_event_msg out = {WSLAY_TEXT_FRAME, (const uint8_t *)t,
                                              t ? strlen(t) : 0};
                if (t)
                    wslay_event_queue_msg(ctx, &out);
                free(t);
                cm_msg_clear(&cm);
                return;
            }
        }
        char *t = cm_build_result(&r, cm.request_id);
        cm_msg_clear(&cm);
        if (t) {
            struct wslay_event_msg out = {WSLAY_TEXT_FRAME, (const uint8_t *)t, strlen(t)};
            wslay_event_queue_msg(ctx, &out);
            free(t);
        }
        close_with(ctx, s, WSLAY_CODE_NORMAL_CLOSURE);
        return;
    }
    case WSLAY_BINARY_FRAME:
        wsmsg_clear(&s->msg);
        close_with(ctx, s, WSLAY_CODE_UNSUPPORTED_DATA);
        return;
    default: /* close (wslay answers), ping (wslay answers), pong */
        return;
    }
}

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = on_recv,
    .send_callback = on_send,
    .on_frame_recv_start_callback = on_frame_start,
    .on_frame_recv_chunk_callback = on_frame_chunk,
    .on_msg_recv_callback = on_msg,
};

static void run_ws(const uint8_t *p, size_t n, size_t chunk, int send_each)
{
    struct stream s = {.p = p, .n = n, .chunk = chunk};
    wslay_event_context_ptr ctx;
    if (wslay_event_context_server_init(&ctx, &callbacks, &s) != 0)
        return;
    wslay_event_config_set_max_recv_msg_length(ctx, MAX_MESSAGE);
    wslay_event_config_set_no_buffering(ctx, 1);
    wsmsg_init(&s.msg, MAX_MESSAGE);
    /* Each recv call reads until the callback would block; a bounded
     * number of rounds covers inputs that stop being read. */
    for (int round = 0; round < 64 && s.off < s.n; round++) {
        if (!wslay_event_get_read_enabled(ctx))
            break;
        size_t before = s.off;
        if (wslay_event_recv(ctx) != 0)
            break;
        if (send_each || s.off == before) {
            s.out = 0;
            if (wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0)
                break;
        }
        if (s.off == before)
            break;
    }
    s.out = 0;
    if (wslay_event_want_write(ctx))
        wslay_event_send(ctx);
    wsmsg_clear(&s.msg);
    wslay_event_context_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[8] = {1, 2, 3, 7, 16, 64, 512, 4096};
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    const uint8_t *p = data + 1;
    size_t n = size - 1;

    if (flags & 1) {
        size_t k = n < PROXY_MAX ? n : PROXY_MAX;
        struct pp_result pr;
        enum pp_status st = pp_parse(p, k, &pr);
        if (st != PP_OK)
            return 0; /* waiting for more, or refused */
        if (pr.consumed == 0 || pr.consumed > k)
            abort();
        if (pr.has_addr && memchr(pr.addr, 0, sizeof pr.addr) == NULL)
            abort();
        p += pr.consumed;
        n -= pr.consumed;
    }

    size_t k = n < MAX_HEADER_BYTES ? n : MAX_HEADER_BYTES;
    struct upg_limits lim = {MAX_HEADER_BYTES, MAX_HEADERS};
    struct upg_result ur;
    char resp[512];
    switch (upg_parse((const char *)p, k, &lim, &ur)) {
    case UPG_NEED_MORE:
        return 0;
    case UPG_ERROR:
        if (upg_response_error(ur.http_status, ur.why, resp, sizeof resp) <= 0)
            abort();
        return 0;
    case UPG_OK:
        break;
    }
    if (ur.head_len == 0 || ur.head_len > k || strlen(ur.accept) != 28)
        abort();
    if (upg_response_101(ur.accept, resp, sizeof resp) <= 0)
        abort();
    run_ws(p + ur.head_len, n - ur.head_len, chunks[(flags >> 1) & 7], flags & 16);
    return 0;
}
