/* conn: client connections, from accept to close; see conn.h.
 *
 * States: PROXY (only for peers in gateway.proxy_protocol_from) -> UPGRADE
 * -> WS -> CLOSING, or -> REJECTING with an HTTP error.  Input is bounded
 * in every state: the read high-watermark holds at most one upgrade head,
 * wslay refuses messages over gateway.max_message, and output waiting for
 * a client is bounded: while a connection's output (frames wslay has
 * queued plus bytes libevent has not written) is over
 * gateway.max_output_bytes, nothing more is read from it (a client that
 * never reads would otherwise make us queue one pong per ping, without
 * end), and a connection that stays over it for gateway.output_stall_ms
 * is dropped.  A connection is freed only from the tail of a
 * libevent callback (conn_free), never from inside wslay or session code,
 * so nothing touches a freed connection. */
#include "conn.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "ipcount.h"
#include "log.h"
#include "metrics.h"
#include "ota_err.h"
#include "proxy.h"
#include "upgrade.h"
#include "utf8.h"
#include "wipe.h"

#define PROXY_MAX 1100 /* largest PROXY header we read (v2: 16 + 1024) */
/* What wslay allocates for one queued frame besides its payload (its
 * message struct, the payload copy's header and a queue cell). */
#define QUEUED_FRAME_COST 128
#define CLOSE_LINGER_MS 2000 /* after our close frame, wait this long for the peer's */
#define READ_CHUNK 4096

static void conn_free(struct conn *c);
static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void count_ip(struct conn *c);
static void on_ws_input(struct conn *c);

static void arm_ms(struct conn *c, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static void peer_text(const struct sockaddr *sa, char *out, size_t cap)
{
    const void *a = NULL;
    if (sa->sa_family == AF_INET)
        a = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!a || !evutil_inet_ntop(sa->sa_family, a, out, cap))
        snprintf(out, cap, "unknown");
}

/* The owner's bytes follow the struct, aligned for any type. */
#define USER_OFFSET                                                                                \
    ((sizeof(struct conn) + _Alignof(max_align_t) - 1) / _Alignof(max_align_t) *                   \
     _Alignof(max_align_t))

/* Tells the owner its client side is over. */
static void tell_close(struct conn *c)
{
    c->io->on_close(c->user);
}

static int owner_idle(const struct conn *c)
{
    return c->io->idle(c->user);
}

void conn_accept(struct gw *g, struct bufferevent *bev, const struct sockaddr *sa, int salen,
                 uint8_t listener, const struct conn_io *io, void *arg)
{
    (void)salen;
    struct conn *c = calloc(1, USER_OFFSET + io->user_size);
    if (!c) {
        bufferevent_free(bev);
        return;
    }
    c->io = io;
    c->user = (char *)c + USER_OFFSET;
    c->gw = g;
    c->bev = bev;
    c->listener = listener;
    peer_text(sa, c->peer, sizeof c->peer);
    c->timer = evtimer_new(g->base, timer_cb, c);
    if (!c->timer) {
        bufferevent_free(bev);
        free(c);
        return;
    }
    io->on_new(arg, c, c->user);
    c->state = gw_proxy_allowed(g, c->peer) ? CONN_PROXY : CONN_UPGRADE;
    TAILQ_INSERT_TAIL(&g->conns, c, link);
    g->nconns++;
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
    bufferevent_set_max_single_read(bev, READ_CHUNK);
    bufferevent_setwatermark(bev, EV_READ, 0,
                             c->state == CONN_PROXY ? PROXY_MAX : g->set.max_header_bytes);
    /* TLS output goes through OpenSSL's bufferevent, always armed; a plain
     * socket's write event is armed only when flush_out needs it. */
    c->direct = bufferevent_openssl_get_ssl(bev) == NULL;
    bufferevent_enable(bev, c->direct ? EV_READ : EV_READ | EV_WRITE);
    arm_ms(c, g->set.upgrade_timeout_ms);
    /* A direct peer is counted from the first byte, so that one address
     * cannot fill the gateway with sockets that never finish an upgrade;
     * a proxied client once its PROXY header names it. */
    if (c->state == CONN_UPGRADE)
        count_ip(c);
}

/* Drops unread input (a closing or rejected connection reads, so that the
 * kernel never answers the client's last bytes with a reset). */
static void discard_input(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

/* Writes the queued output of a plain TCP connection now, and arms the
 * write event only when the socket did not take all of it (write_cb then
 * runs once it has drained, as it does for TLS).  A bufferevent arms its
 * write event for every frame and drops it once the frame is written: two
 * epoll_ctl calls per frame and one more loop pass, a fifth of the
 * gateway's syscalls per exchange.  An error is left to the bufferevent:
 * its write event meets it again and reports it (event_cb). */
static void flush_out(struct conn *c)
{
    if (!c->direct)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) == 0)
        return;
    /* The bufferevent keeps its output's front frozen but while it writes. */
    evbuffer_unfreeze(out, 1);
    int n = evbuffer_write(out, bufferevent_getfd(c->bev));
    evbuffer_freeze(out, 1);
    if (n < 0 || evbuffer_get_length(out) > 0)
        bufferevent_enable(c->bev, EV_WRITE);
}

/* After output was queued from outside this connection's own callbacks
 * (a worker's frame, a session's close, the timer): once the output is
 * gone, what write_cb does (finish a closing connection, resume a stalled
 * one) has to run from the loop, where the connection may be freed. */
static void flush_out_later(struct conn *c)
{
    flush_out(c);
    if (c->direct && (c->state != CONN_WS || c->stalled_us))
        bufferevent_enable(c->bev, EV_WRITE);
}

static void reject(struct conn *c, int status, const char *why, enum met_reject reason)
{
    char resp[512];
    int n = upg_response_error(status, why, resp, sizeof resp);
    c->gw->met.rejected_total[reason]++;
    log_info("upgrade_refused", "peer=%s listener=%u status=%d why=\"%s\"", c->peer,
             (unsigned)c->listener, status, why ? why : "");
    discard_input(c);
    c->state = CONN_REJECTING;
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    if (n > 0)
        bufferevent_write(c->bev, resp, (size_t)n);
    flush_out_later(c); /* conn_accept cannot free it: write_cb will */
    arm_ms(c, CLOSE_LINGER_MS);
}

/* Takes the client address's slot, or answers 503 past
 * gateway.max_connections_per_ip. */
static void count_ip(struct conn *c)
{
    struct gw *g = c->gw;
    if (ipcount_take(g->ips, c->peer, g->set.max_connections_per_ip) != 0) {
        reject(c, 503, "too many connections from this address", MET_REJ_LIMIT_IP);
        return;
    }
    c->ip_counted = 1;
}

/* ---- wslay callbacks (never free the connection from here) ------------ */

/* Drains n bytes of input after wiping them: a client's message (its
 * authCode) is masked with a key sent right next to it, so the masked
 * copy is as good as the text. */
static void wipe_input(struct evbuffer *in, size_t n)
{
    struct evbuffer_iovec v[8];
    size_t left = n;
    while (left) {
        int nv = evbuffer_peek(in, (ev_ssize_t)left, NULL, v, 8);
        size_t done = 0;
        for (int i = 0; i < nv && i < 8 && done < left; i++) {
            size_t k = v[i].iov_len < left - done ? v[i].iov_len : left - done;
            sodium_memzero(v[i].iov_base, k);
            done += k;
        }
        evbuffer_drain(in, done);
        if (done == 0)
            break;
        left -= done;
    }
}

/* Bytes waiting to go to the client: libevent's output buffer and what
 * wslay has queued (every frame counted with its bookkeeping). */
static size_t out_pending(const struct conn *c)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
    if (c->ws)
        n += wslay_event_get_queued_msg_length(c->ws) +
             wslay_event_get_queued_msg_count(c->ws) * QUEUED_FRAME_COST;
    return n;
}

static int out_full(const struct conn *c)
{
    return out_pending(c) >= c->gw->set.max_output;
}

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *arg)
{
    (void)flags;
    struct conn *c = arg;
    /* Over the output cap, parse nothing more: each ping would queue a
     * pong, each message an answer.  The bytes wait in the input buffer
     * (one read at most: reading stops too, see output_check). */
    if (out_full(c)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    struct evbuffer *in = bufferevent_get_input(c->bev);
    ev_ssize_t n = evbuffer_copyout(in, buf, len);
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    /* wslay reads into its frame buffer, the same one every time: the
     * first read, with nothing buffered yet, shows all of it.  Remembered
     * so that conn_free can wipe it (it holds unmasked payloads). */
    if (!c->ws_ibuf) {
        c->ws_ibuf = buf;
        c->ws_ibuf_len = len;
    }
    wipe_input(in, (size_t)n);
    return n;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *arg)
{
    (void)flags;
    struct conn *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) >= c->gw->set.max_output) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (bufferevent_write(c->bev, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

/* Data frames (text, binary, continuation) are collected in c->msg, up
 * to gateway.max_message in all; control frames stay with wslay. */
static void ws_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *a, void *arg)
{
    (void)ctx;
    struct conn *c = arg;
    wsmsg_frame_start(&c->msg, a->opcode);
}

static void ws_frame_chunk(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_chunk_arg *a, void *arg)
{
    struct conn *c = arg;
    if (!wslay_event_get_read_enabled(ctx))
        return;
    int rc = wsmsg_chunk(&c->msg, a->data, a->data_length);
    if (rc != 0) {
        /* What wslay does for one frame over the limit, for the sum of
         * the fragments. */
        wslay_event_queue_close(ctx,
                                rc == OTA_ERR_LENGTH ? WSLAY_CODE_MESSAGE_TOO_BIG
                                                     : WSLAY_CODE_INTERNAL_SERVER_ERROR,
                                NULL, 0);
        wslay_event_shutdown_read(ctx);
    }
}

static void ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *m,
                   void *arg)
{
    (void)ctx;
    struct conn *c = arg;
    c->last_rx_us = gw_now_us();
    c->ping_out = 0;
    if (c->state != CONN_WS) {
        wsmsg_clear(&c->msg);
        return;
    }
    switch (m->opcode) {
    case WSLAY_TEXT_FRAME:
        if (!wslay_event_get_read_enabled(ctx)) { /* over max_message: closing */
            wsmsg_clear(&c->msg);
            return;
        }
        if (!utf8_valid(c->msg.buf, c->msg.len)) {
            wsmsg_clear(&c->msg);
            conn_close(c, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8");
            return;
        }
        c->io->on_text(c->user, c->msg.buf ? c->msg.buf : (const uint8_t *)"", c->msg.len);
        wsmsg_clear(&c->msg);
        return;
    case WSLAY_BINARY_FRAME:
        wsmsg_clear(&c->msg);
        conn_close(c, WSLAY_CODE_UNSUPPORTED_DATA, "binary frames are not accepted");
        return;
    case WSLAY_CONNECTION_CLOSE:
        /* wslay has queued its answer; the session is over for the client. */
        tell_close(c);
        c->state = CONN_CLOSING;
        arm_ms(c, CLOSE_LINGER_MS);
        return;
    default: /* ping (wslay answers it) and pong */
        return;
    }
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = ws_recv,
    .send_callback = ws_send,
    .on_frame_recv_start_callback = ws_frame_start,
    .on_frame_recv_chunk_callback = ws_frame_chunk,
    .on_msg_recv_callback = ws_msg,
};

/* ---- state machine --------------------------------------------------- */

/* Sends what wslay has queued.  wslay sends control frames before data
 * frames, so our own close frame is queued only once every message before
 * it has gone out (a result must reach the client before the 1000). */
static int ws_pump_out(struct conn *c)
{
    for (int round = 0; round < 2; round++) {
        if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0)
            return -1;
        if (!c->close_code || wslay_event_get_queued_msg_count(c->ws) != 0)
            break;
        size_t rn = c->close_reason ? strlen(c->close_reason) : 0;
        if (wslay_event_queue_close(c->ws, c->close_code, (const uint8_t *)c->close_reason,
                                    rn > 120 ? 120 : rn) == 0)
            c->gw->met.close_codes_total[met_close_index(c->close_code)]++;
        c->close_code = 0;
    }
    flush_out(c);
    return 0;
}

static void ws_flush(struct conn *c)
{
    /* Inside wslay_event_recv the caller sends once it returns. */
    if (c->ws && !c->in_recv) {
        ws_pump_out(c);
        flush_out_later(c);
    }
}

/* Milliseconds from since_us to now, and what is left of limit_ms. */
static uint64_t ms_since(uint64_t since_us, uint64_t now)
{
    return now > since_us ? (now - since_us) / 1000 : 0;
}

static uint64_t ms_left(uint64_t since_us, uint64_t now, uint64_t limit_ms)
{
    uint64_t el = ms_since(since_us, now);
    return el >= limit_ms ? 0 : limit_ms - el;
}

/* The earliest of an open WebSocket's deadlines: the next ping, the idle
 * close, the first operation message, the output stall. */
static void arm_ws(struct conn *c, uint64_t now)
{
    const struct gw_settings *set = &c->gw->set;
    uint64_t next = ms_left(c->last_rx_us, now, set->idle_timeout_ms);
    uint64_t t;
    if (!c->ping_out && !c->stalled_us &&
        (t = ms_left(c->last_rx_us, now, set->ping_interval_ms)) < next)
        next = t;
    if (owner_idle(c) && (t = ms_left(c->opened_us, now, set->first_message_ms)) < next)
        next = t;
    if (c->stalled_us && (t = ms_left(c->stalled_us, now, set->output_stall_ms)) < next)
        next = t;
    arm_ms(c, next ? next : 1);
}

/* Stops reading while the output is over the cap, resumes (with the input
 * already buffered) once half of it has drained.  Returns 1 if the
 * connection was freed. */
static int output_check(struct conn *c)
{
    if (!c->stalled_us) {
        if (!out_full(c))
            return 0;
        c->stalled_us = gw_now_us();
        bufferevent_disable(c->bev, EV_READ);
        if (c->state == CONN_WS)
            arm_ws(c, c->stalled_us);
        return 0;
    }
    if (out_pending(c) > c->gw->set.max_output / 2)
        return 0;
    c->stalled_us = 0;
    bufferevent_enable(c->bev, EV_READ);
    if (c->state == CONN_WS)
        arm_ws(c, gw_now_us());
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
        return 0;
    on_ws_input(c);
    return 1; /* on_ws_input may have freed it: the caller stops here */
}

int conn_send_text(struct conn *c, const char *text, size_t len)
{
    if (c->state != CONN_WS || !c->ws)
        return OTA_ERR_STATE;
    /* A client over the output cap is not reading: what it would get is
     * not queued (its connection goes when the stall lasts). */
    if (out_full(c)) {
        if (!c->stalled_us && !c->in_recv)
            output_check(c);
        return OTA_ERR_LIMIT;
    }
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
    if (wslay_event_queue_msg(c->ws, &m) != 0)
        return OTA_ERR_IO;
    ws_flush(c);
    if (!c->in_recv && !c->stalled_us && out_full(c))
        output_check(c);
    return 0;
}

void conn_close(struct conn *c, uint16_t code, const char *reason)
{
    if (c->state != CONN_WS)
        return;
    tell_close(c);
    c->close_code = code;
    c->close_reason = reason;
    c->state = CONN_CLOSING;
    if (code != WSLAY_CODE_NORMAL_CLOSURE)
        log_info("ws_close", "session=%" PRIu64 " peer=%s code=%u reason=\"%s\"", c->session_id,
                 c->peer, (unsigned)code, reason ? reason : "");
    arm_ms(c, CLOSE_LINGER_MS);
    ws_flush(c);
}

static int start_ws(struct conn *c)
{
    if (wslay_event_context_server_init(&c->ws, &ws_callbacks, c) != 0)
        return OTA_ERR_NOMEM;
    wslay_event_config_set_max_recv_msg_length(c->ws, c->gw->set.max_message);
    wslay_event_config_set_no_buffering(c->ws, 1);
    wsmsg_init(&c->msg, c->gw->set.max_message);
    return 0;
}

/* The upgrade head is complete and valid: admit or refuse the client. */
static void admit(struct conn *c, const struct upg_result *r)
{
    struct gw *g = c->gw;
    if (g->draining) {
        reject(c, 503, "draining", MET_REJ_DRAINING);
        return;
    }
    if (g->nws >= g->set.max_connections) {
        reject(c, 503, "too many connections", MET_REJ_LIMIT_TOTAL);
        return;
    }
    if (start_ws(c) != 0) {
        reject(c, 503, "out of memory", MET_REJ_LIMIT_TOTAL);
        return;
    }
    char resp[256];
    int n = upg_response_101(r->accept, resp, sizeof resp);
    if (n < 0 || bufferevent_write(c->bev, resp, (size_t)n) != 0) {
        reject(c, 503, "out of memory", MET_REJ_LIMIT_TOTAL);
        return;
    }
    evbuffer_drain(bufferevent_get_input(c->bev), r->head_len);
    g->nws++;
    c->ws_counted = 1;
    c->state = CONN_WS;
    c->last_rx_us = c->opened_us = gw_now_us();
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    flush_out(c);
    arm_ws(c, c->opened_us);
}

static void on_proxy(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    size_t n = len < PROXY_MAX ? len : PROXY_MAX;
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
    if (!p)
        return;
    struct pp_result r;
    enum pp_status st = pp_parse(p, n, &r);
    if (st == PP_NEED_MORE && len < PROXY_MAX)
        return;
    if (st != PP_OK) {
        c->gw->met.rejected_total[MET_REJ_PROXY]++;
        log_warn("proxy_header_refused", "peer=%s why=\"%s\"", c->peer, r.why ? r.why : "too long");
        discard_input(c);
        c->state = CONN_REJECTING;
        arm_ms(c, 0);
        return;
    }
    evbuffer_drain(in, r.consumed);
    if (r.has_addr)
        snprintf(c->peer, sizeof c->peer, "%s", r.addr);
    c->state = CONN_UPGRADE;
    bufferevent_setwatermark(c->bev, EV_READ, 0, c->gw->set.max_header_bytes);
    count_ip(c);
}

static void on_upgrade(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    size_t n = len < c->gw->set.max_header_bytes ? len : c->gw->set.max_header_bytes;
    if (n == 0)
        return;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    if (!p)
        return;
    struct upg_limits lim = {c->gw->set.max_header_bytes, c->gw->set.max_headers};
    struct upg_result r;
    switch (upg_parse(p, n, &lim, &r)) {
    case UPG_NEED_MORE:
        return;
    case UPG_ERROR:
        reject(c, r.http_status, r.why, MET_REJ_BAD_UPGRADE);
        return;
    case UPG_OK:
        admit(c, &r);
        return;
    }
}

/* Frees the connection when its closing is complete; returns 1 if freed. */
static int maybe_finish(struct conn *c)
{
    size_t out = evbuffer_get_length(bufferevent_get_output(c->bev));
    if (c->state == CONN_REJECTING && out == 0) {
        conn_free(c);
        return 1;
    }
    if (c->state != CONN_CLOSING || out != 0 || !c->ws || c->close_code)
        return 0;
    int sent = wslay_event_get_close_sent(c->ws);
    int can_read = wslay_event_get_read_enabled(c->ws);
    int got = wslay_event_get_close_received(c->ws);
    if ((sent && (got || !can_read)) || (!sent && !wslay_event_want_write(c->ws))) {
        conn_free(c);
        return 1;
    }
    return 0;
}

/* wslay_event_recv fails (instead of queueing a 1002) on a malformed frame
 * header: a fragmented or over-long control frame, a 64-bit length with
 * the top bit set or a length not in its shortest form.  Its own queued
 * close would carry no code, so the 1002 of RFC 6455 section 7.4.1 is
 * written here and wslay is not asked to send anything more. */
static void protocol_error(struct conn *c)
{
    static const uint8_t close_1002[] = {0x88, 0x02, 0x03, 0xea};
    if (wslay_event_get_close_sent(c->ws)) {
        conn_free(c);
        return;
    }
    if (c->state == CONN_WS)
        log_info("ws_close", "session=%" PRIu64 " peer=%s code=1002 reason=\"malformed frame\"",
                 c->session_id, c->peer);
    tell_close(c);
    c->close_code = 0;
    c->state = CONN_REJECTING;
    discard_input(c);
    c->gw->met.close_codes_total[met_close_index(1002)]++;
    if (bufferevent_write(c->bev, close_1002, sizeof close_1002) != 0) {
        conn_free(c);
        return;
    }
    flush_out(c);
    arm_ms(c, CLOSE_LINGER_MS);
    maybe_finish(c);
}

static void on_ws_input(struct conn *c)
{
    if (wslay_event_get_read_enabled(c->ws)) {
        /* While the owner is idle the next message is its operation, which
         * carries the authCode: the calls that copied, parsed and sent it
         * (and the registers a lazily bound call or a signal saved) leave
         * their stack below this frame. */
        int secret = owner_idle(c);
        c->in_recv = 1;
        int rc = wslay_event_recv(c->ws);
        c->in_recv = 0;
        if (secret)
            wipe_stack();
        if (rc != 0) {
            protocol_error(c);
            return;
        }
    } else {
        discard_input(c);
    }
    /* wslay may have queued a close on its own (1002, 1009, ...). */
    if (c->state == CONN_WS &&
        (!wslay_event_get_read_enabled(c->ws) || wslay_event_get_close_received(c->ws))) {
        tell_close(c);
        c->state = CONN_CLOSING;
        arm_ms(c, CLOSE_LINGER_MS);
    }
    if (ws_pump_out(c) != 0) {
        conn_free(c);
        return;
    }
    if (output_check(c))
        return;
    maybe_finish(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    if (c->state == CONN_PROXY) {
        on_proxy(c);
        if (c->state == CONN_REJECTING) {
            maybe_finish(c);
            return;
        }
    }
    if (c->state == CONN_UPGRADE) {
        on_upgrade(c);
        if (c->state == CONN_REJECTING) {
            maybe_finish(c);
            return;
        }
    }
    switch (c->state) {
    case CONN_WS:
    case CONN_CLOSING:
        on_ws_input(c);
        return;
    case CONN_REJECTING:
        discard_input(c);
        return;
    default:
        return;
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    /* The output is empty (the low watermark is 0): a plain connection's
     * write event waits until flush_out arms it again. */
    if (c->direct)
        bufferevent_disable(bev, EV_WRITE);
    if (c->state == CONN_WS || c->state == CONN_CLOSING) {
        if (ws_pump_out(c) != 0) {
            conn_free(c);
            return;
        }
        if (output_check(c))
            return;
    }
    maybe_finish(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_ERROR) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e && c->state <= CONN_UPGRADE) {
            c->gw->met.rejected_total[MET_REJ_TLS]++;
            char buf[256];
            ERR_error_string_n(e, buf, sizeof buf);
            log_info("tls_failed", "peer=%s err=\"%s\"", c->peer, buf);
        }
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(c);
}

/* A client that has not read its output for gateway.output_stall_ms: a
 * close frame would not reach it either. */
static void drop_stalled(struct conn *c)
{
    c->gw->met.output_stalled_total++;
    log_info("output_stalled", "session=%" PRIu64 " peer=%s queued=%zu", c->session_id, c->peer,
             out_pending(c));
    conn_free(c);
}

static void ws_timer(struct conn *c)
{
    const struct gw_settings *set = &c->gw->set;
    uint64_t now = gw_now_us(), idle = ms_since(c->last_rx_us, now);
    if (c->stalled_us && ms_since(c->stalled_us, now) >= set->output_stall_ms) {
        drop_stalled(c);
        return;
    }
    /* Pings keep last_rx_us fresh, never opened_us. */
    if (owner_idle(c) && ms_since(c->opened_us, now) >= set->first_message_ms) {
        c->io->on_no_operation(c->user);
        maybe_finish(c);
        return;
    }
    if (idle >= set->idle_timeout_ms) {
        conn_close(c, WSLAY_CODE_GOING_AWAY, "idle");
        maybe_finish(c);
        return;
    }
    if (idle >= set->ping_interval_ms && !c->ping_out && !c->stalled_us) {
        struct wslay_event_msg m = {WSLAY_PING, NULL, 0};
        wslay_event_queue_msg(c->ws, &m);
        c->ping_out = 1; /* queued, or never will be: either way no second one */
        ws_flush(c);
    }
    arm_ws(c, now);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    switch (c->state) {
    case CONN_PROXY:
    case CONN_UPGRADE:
        reject(c, 408, "upgrade request not complete in time", MET_REJ_UPGRADE_TIMEOUT);
        maybe_finish(c);
        return;
    case CONN_WS:
        ws_timer(c);
        return;
    case CONN_CLOSING:
    case CONN_REJECTING:
        conn_free(c);
        return;
    }
}

static void conn_free(struct conn *c)
{
    struct gw *g = c->gw;
    tell_close(c);
    if (c->ip_counted)
        ipcount_put(g->ips, c->peer);
    if (c->ws_counted)
        g->nws--;
    TAILQ_REMOVE(&g->conns, c, link);
    g->nconns--;
    wsmsg_clear(&c->msg);
    if (c->ws_ibuf)
        sodium_memzero(c->ws_ibuf, c->ws_ibuf_len);
    if (c->ws)
        wslay_event_context_free(c->ws);
    event_free(c->timer);
    /* Unread input goes with the buffers: libevent frees through
     * wipe_free (main.c), so no chunk keeps a client's bytes. */
    bufferevent_free(c->bev);
    free(c);
    /* Whatever message of this connection carried a secret (also one that
     * broke the protocol, e.g. a second operation), nothing of its
     * handling stays on the stack once the connection is gone. */
    wipe_stack();
}

void conn_drain_one(struct conn *c, int all)
{
    if (c->state == CONN_WS && (all || owner_idle(c))) {
        conn_close(c, WSLAY_CODE_GOING_AWAY, "server going away");
        maybe_finish(c);
    }
}

void conn_free_all(struct gw *g)
{
    struct conn *c;
    while ((c = TAILQ_FIRST(&g->conns)) != NULL)
        conn_free(c);
}
