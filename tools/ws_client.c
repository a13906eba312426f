/* ws_client: a poll()-driven WebSocket client connection, plain or TLS (see
 * ws_client.h).  The socket is non-blocking and every wait has a deadline,
 * so a silent server can delay the caller only as long as it allowed.
 * TLS writes may raise SIGPIPE on a dead peer: callers ignore SIGPIPE. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ota_err.h"
#include "ws_client.h"
#include "ws_proto.h"

#define WSC_DEFAULT_MAX_MESSAGE 16384
#define WSC_DEFAULT_TIMEOUT_MS 10000
#define WSC_MAX_HEADER 8192
#define WSC_READ_CHUNK 4096

enum wsc_conn_state {
    WSC_CONN_OPEN = 0,
    WSC_CONN_CLOSE_SENT, /* we sent close, waiting for the peer's */
    WSC_CONN_CLOSED,     /* close handshake done or connection ended */
    WSC_CONN_FAILED,
};

struct wsc_client {
    enum wsc_conn_state state;
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    struct wsc_client_opts opts;
    uint8_t *in; /* received, not yet decoded bytes */
    size_t in_len, in_cap;
    uint8_t *msg; /* the message being assembled (max_message + 1) */
    struct wsc_rx rx;
    uint16_t close_code;
    char close_reason[WSC_CONTROL_MAX + 1];
    char err[256];
};

enum wsc_io { WSC_IO_AGAIN = -1, WSC_IO_ERROR = -2 };

static long long wsc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

__attribute__((format(printf, 2, 3))) static void wsc_set_err(struct wsc_client *c, const char *fmt,
                                                              ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

/* Appends OpenSSL's first queued error (if any) to c->err, then clears the queue. */
static void wsc_ssl_reason(struct wsc_client *c)
{
    unsigned long e = ERR_get_error();
    size_t n = strlen(c->err);
    if (e != 0 && n + 3 < sizeof c->err) {
        char buf[200];
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(c->err + n, sizeof c->err - n, ": %s", buf);
    }
    ERR_clear_error();
}

/* Waits for events on fd until deadline (< 0: none).  1 ready, 0 timed
 * out, -1 interrupted, -2 error. */
static int wsc_wait(int fd, short events, long long deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    int timeout = -1, r;
    if (deadline >= 0) {
        long long left = deadline - wsc_now_ms();
        timeout = left > 0 ? (int)(left > 0x7FFFFFFF ? 0x7FFFFFFF : left) : 0;
    }
    r = poll(&p, 1, timeout);
    if (r < 0)
        return errno == EINTR ? -1 : -2;
    return r > 0 ? 1 : 0;
}

/* > 0 bytes, 0 end of stream, WSC_IO_AGAIN (*want says for what), WSC_IO_ERROR. */
static ssize_t wsc_io_read(struct wsc_client *c, uint8_t *p, size_t n, short *want)
{
    *want = POLLIN;
    if (c->ssl != NULL) {
        int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
        if (r > 0)
            return r;
        switch (SSL_get_error(c->ssl, r)) {
        case SSL_ERROR_WANT_READ:
            return WSC_IO_AGAIN;
        case SSL_ERROR_WANT_WRITE:
            *want = POLLOUT;
            return WSC_IO_AGAIN;
        case SSL_ERROR_ZERO_RETURN:
            return 0;
        default:
            wsc_set_err(c, "TLS read failed");
            wsc_ssl_reason(c);
            return WSC_IO_ERROR;
        }
    }
    for (;;) {
        ssize_t r = recv(c->fd, p, n, 0);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return WSC_IO_AGAIN;
        wsc_set_err(c, "read failed: %s", strerror(errno));
        return WSC_IO_ERROR;
    }
}

static ssize_t wsc_io_write(struct wsc_client *c, const uint8_t *p, size_t n, short *want)
{
    *want = POLLOUT;
    if (c->ssl != NULL) {
        int r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
        if (r > 0)
            return r;
        switch (SSL_get_error(c->ssl, r)) {
        case SSL_ERROR_WANT_READ:
            *want = POLLIN;
            return WSC_IO_AGAIN;
        case SSL_ERROR_WANT_WRITE:
            return WSC_IO_AGAIN;
        default:
            wsc_set_err(c, "TLS write failed");
            wsc_ssl_reason(c);
            return WSC_IO_ERROR;
        }
    }
    for (;;) {
        ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return WSC_IO_AGAIN;
        wsc_set_err(c, "write failed: %s", strerror(errno));
        return WSC_IO_ERROR;
    }
}

/* Writes all n bytes within the write timeout; signals do not cut it short
 * (a half-written frame would break the stream). */
static int wsc_send_all(struct wsc_client *c, const uint8_t *p, size_t n)
{
    long long deadline = wsc_now_ms() + c->opts.write_timeout_ms;
    size_t off = 0;
    while (off < n) {
        short want;
        ssize_t r = wsc_io_write(c, p + off, n - off, &want);
        if (r > 0) {
            off += (size_t)r;
            continue;
        }
        if (r == WSC_IO_ERROR)
            return OTA_ERR_IO;
        r = wsc_wait(c->fd, want, deadline);
        if (r == 0) {
            wsc_set_err(c, "write timed out after %d ms", c->opts.write_timeout_ms);
            return OTA_ERR_IO;
        }
        if (r == -2) {
            wsc_set_err(c, "poll failed: %s", strerror(errno));
            return OTA_ERR_IO;
        }
    }
    return 0;
}

static int wsc_send_frame(struct wsc_client *c, enum wsc_opcode op, const uint8_t *p, size_t n)
{
    uint8_t small[WSC_CONTROL_MAX + WSC_FRAME_OVERHEAD];
    uint8_t *frame = small;
    size_t cap = sizeof small;
    int len, r;

    if (n > WSC_CONTROL_MAX) {
        cap = n + WSC_FRAME_OVERHEAD;
        frame = malloc(cap);
        if (frame == NULL)
            return OTA_ERR_NOMEM;
    }
    len = wsc_frame_encode_random(frame, cap, op, p, n);
    r = len < 0 ? len : wsc_send_all(c, frame, (size_t)len);
    if (frame != small)
        free(frame);
    return r;
}

static int wsc_send_close(struct wsc_client *c, uint16_t code, const char *reason)
{
    uint8_t payload[WSC_CONTROL_MAX];
    size_t n = wsc_close_payload(payload, code, reason);
    int r = wsc_send_frame(c, WSC_OP_CLOSE, payload, n);
    if (c->state == WSC_CONN_OPEN)
        c->state = WSC_CONN_CLOSE_SENT;
    return r;
}

static int wsc_tcp_connect(struct wsc_client *c, const struct wsc_url *u, long long deadline)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL, *ai;
    int gai = getaddrinfo(u->host, u->port, &hints, &res);

    if (gai != 0) {
        wsc_set_err(c, "cannot resolve %s: %s", u->host, gai_strerror(gai));
        return OTA_ERR_IO;
    }
    wsc_set_err(c, "no address for %s", u->host);
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        int one = 1, soerr = 0, w;
        socklen_t sl = sizeof soerr;
        if (fd < 0) {
            wsc_set_err(c, "socket: %s", strerror(errno));
            continue;
        }
        /* One small message per exchange: do not let Nagle hold it back. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
            wsc_set_err(c, "connect to %s port %s: %s", u->host, u->port, strerror(errno));
            close(fd);
            continue;
        }
        do
            w = wsc_wait(fd, POLLOUT, deadline);
        while (w == -1);
        if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
            c->fd = fd;
            freeaddrinfo(res);
            return 0;
        }
        wsc_set_err(c, "connect to %s port %s: %s", u->host, u->port,
                    w == 0 ? "timed out" : strerror(soerr != 0 ? soerr : errno));
        close(fd);
    }
    freeaddrinfo(res);
    return OTA_ERR_IO;
}

static int wsc_host_is_ip(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

static int wsc_tls_setup(struct wsc_client *c, const struct wsc_url *u)
{
    const struct wsc_client_opts *o = &c->opts;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL || SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) != 1)
        goto fail;
    if (o->ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(c->ctx, o->ca_file, NULL) != 1) {
            wsc_set_err(c, "cannot load CA file %s", o->ca_file);
            goto fail_set;
        }
    } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        goto fail;
    }
    if (o->cert_file != NULL) {
        const char *key = o->key_file != NULL ? o->key_file : o->cert_file;
        if (SSL_CTX_use_certificate_chain_file(c->ctx, o->cert_file) != 1 ||
            SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(c->ctx) != 1) {
            wsc_set_err(c, "cannot load client certificate %s / key %s", o->cert_file, key);
            goto fail_set;
        }
    }
    SSL_CTX_set_verify(c->ctx, o->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        goto fail;
    if (wsc_host_is_ip(u->host)) {
        X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, u->host) != 1)
            goto fail;
    } else if (SSL_set_tlsext_host_name(c->ssl, u->host) != 1 ||
               SSL_set1_host(c->ssl, u->host) != 1) {
        goto fail;
    }
    return 0;
fail:
    wsc_set_err(c, "TLS setup failed");
fail_set:
    wsc_ssl_reason(c);
    return OTA_ERR_IO;
}

static int wsc_tls_handshake(struct wsc_client *c, long long deadline)
{
    for (;;) {
        int r = SSL_connect(c->ssl), w;
        short want;
        if (r == 1)
            return 0;
        switch (SSL_get_error(c->ssl, r)) {
        case SSL_ERROR_WANT_READ:
            want = POLLIN;
            break;
        case SSL_ERROR_WANT_WRITE:
            want = POLLOUT;
            break;
        default: {
            long vr = SSL_get_verify_result(c->ssl);
            if (vr != X509_V_OK)
                wsc_set_err(c, "TLS handshake failed: certificate: %s",
                            X509_verify_cert_error_string(vr));
            else
                wsc_set_err(c, "TLS handshake failed");
            wsc_ssl_reason(c);
            return OTA_ERR_IO;
        }
        }
        do
            w = wsc_wait(c->fd, want, deadline);
        while (w == -1);
        if (w != 1) {
            wsc_set_err(c, "TLS handshake %s", w == 0 ? "timed out" : "failed (poll)");
            return OTA_ERR_IO;
        }
    }
}

static int wsc_upgrade(struct wsc_client *c, const struct wsc_url *u, long long deadline)
{
    char key[WSC_KEY_LEN + 1];
    char req[WSC_MAX_HEADER];
    int n, status = 0;

    wsc_make_key(key);
    n = wsc_build_request(req, sizeof req, u->host_header, u->path, key);
    if (n < 0) {
        wsc_set_err(c, "cannot build the upgrade request: %s", ota_strerror(n));
        return n;
    }
    if (wsc_send_all(c, (const uint8_t *)req, (size_t)n) != 0)
        return OTA_ERR_IO;
    for (;;) {
        short want;
        ssize_t r;
        int w;
        /* wsc_parse_response fails once in_len reaches the header limit,
         * so there is always room here, and in_cap exceeds the limit. */
        r = wsc_io_read(c, c->in + c->in_len, WSC_MAX_HEADER + 1 - c->in_len, &want);
        if (r > 0) {
            c->in_len += (size_t)r;
            n = wsc_parse_response(c->in, c->in_len, WSC_MAX_HEADER, key, &status);
            if (n > 0) {
                memmove(c->in, c->in + n, c->in_len - (size_t)n);
                c->in_len -= (size_t)n;
                return 0;
            }
            if (n == OTA_ERR_STATE) {
                wsc_set_err(c, "the server refused the upgrade: HTTP %d", status);
                return n;
            }
            if (n < 0) {
                wsc_set_err(c, "invalid upgrade answer from the server (%s)", ota_strerror(n));
                return n;
            }
            continue;
        }
        if (r == 0) {
            wsc_set_err(c, "the server closed the connection during the upgrade");
            return OTA_ERR_IO;
        }
        if (r == WSC_IO_ERROR)
            return OTA_ERR_IO;
        do
            w = wsc_wait(c->fd, want, deadline);
        while (w == -1);
        if (w != 1) {
            wsc_set_err(c, "upgrade %s", w == 0 ? "timed out" : "failed (poll)");
            return OTA_ERR_IO;
        }
    }
}

int wsc_client_connect(const struct wsc_url *url, const struct wsc_client_opts *opts,
                       struct wsc_client **out, char *err, size_t errlen)
{
    struct wsc_client *c = calloc(1, sizeof *c);
    long long deadline;
    int r;

    *out = NULL;
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return OTA_ERR_NOMEM;
    }
    c->fd = -1;
    c->opts = *opts;
    if (c->opts.max_message == 0)
        c->opts.max_message = WSC_DEFAULT_MAX_MESSAGE;
    if (c->opts.connect_timeout_ms <= 0)
        c->opts.connect_timeout_ms = WSC_DEFAULT_TIMEOUT_MS;
    if (c->opts.write_timeout_ms <= 0)
        c->opts.write_timeout_ms = WSC_DEFAULT_TIMEOUT_MS;
    /* One whole frame must fit: header + largest payload + one read. */
    c->in_cap = c->opts.max_message + WSC_FRAME_OVERHEAD + WSC_READ_CHUNK;
    if (c->in_cap < WSC_MAX_HEADER + 1)
        c->in_cap = WSC_MAX_HEADER + 1;
    c->in = malloc(c->in_cap);
    c->msg = malloc(c->opts.max_message + 1);
    if (c->in == NULL || c->msg == NULL) {
        wsc_client_free(c);
        snprintf(err, errlen, "out of memory");
        return OTA_ERR_NOMEM;
    }
    wsc_rx_init(&c->rx, c->msg, c->opts.max_message);
    deadline = wsc_now_ms() + c->opts.connect_timeout_ms;
    r = wsc_tcp_connect(c, url, deadline);
    if (r == 0 && url->tls) {
        r = wsc_tls_setup(c, url);
        if (r == 0)
            r = wsc_tls_handshake(c, deadline);
    }
    if (r == 0)
        r = wsc_upgrade(c, url, deadline);
    if (r != 0) {
        snprintf(err, errlen, "%s", c->err);
        wsc_client_free(c);
        return r;
    }
    c->state = WSC_CONN_OPEN;
    *out = c;
    return 0;
}

int wsc_client_send_text(struct wsc_client *c, const char *text, size_t len)
{
    if (c->state != WSC_CONN_OPEN)
        return OTA_ERR_STATE;
    if (len > c->opts.max_message)
        return OTA_ERR_LENGTH;
    if (wsc_send_frame(c, WSC_OP_TEXT, (const uint8_t *)text, len) != 0) {
        c->state = WSC_CONN_FAILED;
        return OTA_ERR_IO;
    }
    return 0;
}

/* The peer broke the protocol: tell it why (best effort) and give up. */
static int wsc_fail_protocol(struct wsc_client *c, uint16_t code, int err, const char *why)
{
    wsc_set_err(c, "%s (closing with %u)", why, code);
    if (c->state == WSC_CONN_OPEN)
        wsc_send_close(c, code, why);
    c->state = WSC_CONN_FAILED;
    return err;
}

/* Handles one decoded event.  Returns WSC_RECV_MESSAGE / WSC_RECV_CLOSED
 * when the caller must return, 0 to go on, or a negative ota_err. */
static int wsc_on_event(struct wsc_client *c, const struct wsc_event *ev)
{
    switch (ev->type) {
    case WSC_EV_TEXT:
        return c->state == WSC_CONN_OPEN ? WSC_RECV_MESSAGE : 0;
    case WSC_EV_BINARY:
        return wsc_fail_protocol(c, WSC_CLOSE_UNSUPPORTED, OTA_ERR_PARSE,
                                 "binary message on a text-only session");
    case WSC_EV_PING:
        if (c->state == WSC_CONN_OPEN && wsc_send_frame(c, WSC_OP_PONG, ev->data, ev->len) != 0) {
            c->state = WSC_CONN_FAILED;
            return OTA_ERR_IO;
        }
        return 0;
    case WSC_EV_PONG:
        return 0;
    case WSC_EV_CLOSE:
        c->close_code = ev->code;
        memcpy(c->close_reason, ev->data, ev->len);
        c->close_reason[ev->len] = '\0';
        /* Echo the code (RFC 6455 §5.5.1); 1005 must not be sent. */
        if (c->state == WSC_CONN_OPEN)
            wsc_send_close(c, ev->code == WSC_CLOSE_NO_STATUS ? WSC_CLOSE_NORMAL : ev->code, NULL);
        c->state = WSC_CONN_CLOSED;
        return WSC_RECV_CLOSED;
    case WSC_EV_NONE:
        break;
    }
    return 0;
}

int wsc_client_recv(struct wsc_client *c, int timeout_ms, const char **msg, size_t *len)
{
    long long deadline = timeout_ms < 0 ? -1 : wsc_now_ms() + timeout_ms;

    if (c->state != WSC_CONN_OPEN && c->state != WSC_CONN_CLOSE_SENT)
        return OTA_ERR_STATE;
    for (;;) {
        short want;
        ssize_t r;
        int w;
        while (c->in_len > 0) {
            struct wsc_event ev;
            size_t used = 0;
            int e = wsc_rx_feed(&c->rx, c->in, c->in_len, &used, &ev);
            if (e < 0)
                return wsc_fail_protocol(c, c->rx.close_code, e,
                                         c->rx.close_code == WSC_CLOSE_TOO_BIG ? "message too big"
                                         : c->rx.close_code == WSC_CLOSE_BAD_DATA
                                             ? "invalid UTF-8"
                                             : "WebSocket protocol error");
            if (used == 0)
                break;
            e = wsc_on_event(c, &ev);
            /* Event data points into c->in (control frames) or c->msg
             * (messages): use it before moving the input. */
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= used;
            if (e == WSC_RECV_MESSAGE) {
                *msg = (const char *)ev.data;
                *len = ev.len;
                return e;
            }
            if (e != 0)
                return e;
        }
        r = wsc_io_read(c, c->in + c->in_len, c->in_cap - c->in_len, &want);
        if (r > 0) {
            c->in_len += (size_t)r;
            continue;
        }
        if (r == 0) {
            c->close_code = WSC_CLOSE_ABNORMAL;
            wsc_set_err(c, "the server closed the connection without a close frame");
            c->state = WSC_CONN_CLOSED;
            return OTA_ERR_IO;
        }
        if (r == WSC_IO_ERROR) {
            c->state = WSC_CONN_FAILED;
            return OTA_ERR_IO;
        }
        w = wsc_wait(c->fd, want, deadline);
        if (w == 0)
            return WSC_RECV_TIMEOUT;
        if (w == -1)
            return WSC_RECV_INTERRUPTED;
        if (w == -2) {
            wsc_set_err(c, "poll failed: %s", strerror(errno));
            c->state = WSC_CONN_FAILED;
            return OTA_ERR_IO;
        }
    }
}

uint16_t wsc_client_close_code(const struct wsc_client *c)
{
    return c->close_code;
}

const char *wsc_client_close_reason(const struct wsc_client *c)
{
    return c->close_reason;
}

const char *wsc_client_error(const struct wsc_client *c)
{
    return c->err;
}

int wsc_client_close(struct wsc_client *c, uint16_t code, const char *reason, int timeout_ms)
{
    long long deadline = wsc_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int r = 0;

    if (c->state == WSC_CONN_OPEN && wsc_send_close(c, code, reason) != 0) {
        c->state = WSC_CONN_FAILED;
        return OTA_ERR_IO;
    }
    while (c->state == WSC_CONN_CLOSE_SENT) {
        const char *m;
        size_t n;
        long long left = deadline - wsc_now_ms();
        if (left <= 0)
            return OTA_ERR_IO;
        r = wsc_client_recv(c, (int)left, &m, &n);
        if (r == WSC_RECV_CLOSED)
            break;
        if (r < 0)
            return r == OTA_ERR_IO && c->close_code == WSC_CLOSE_ABNORMAL ? 0 : r;
        if (r == WSC_RECV_TIMEOUT)
            return OTA_ERR_IO;
    }
    /* The server ends the TCP connection first (RFC 6455 §7.1.1): wait for it. */
    if (c->state == WSC_CONN_CLOSED && c->fd >= 0 && c->ssl == NULL) {
        uint8_t sink[256];
        for (;;) {
            short want;
            ssize_t got = wsc_io_read(c, sink, sizeof sink, &want);
            if (got == 0 || got == WSC_IO_ERROR)
                break;
            if (got == WSC_IO_AGAIN && wsc_wait(c->fd, want, deadline) != 1)
                break;
        }
    }
    return 0;
}

void wsc_client_abort(struct wsc_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = WSC_CONN_FAILED;
}

void wsc_client_free(struct wsc_client *c)
{
    if (c == NULL)
        return;
    if (c->ssl != NULL) {
        if (c->state == WSC_CONN_CLOSED && c->fd >= 0)
            SSL_shutdown(c->ssl); /* best effort close_notify; non-blocking */
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    free(c->msg);
    free(c);
}
