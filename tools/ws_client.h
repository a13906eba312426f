/* ws_client: one WebSocket client connection over TCP, optionally TLS
 * (OpenSSL), driven by poll() with deadlines: connect, handshake, send a
 * text message, wait for the next message (answering pings on the way),
 * close with a code, or drop.  The framing is ws_proto's.  It must never
 * block without a deadline, never skip certificate verification unless the
 * caller asked for it, and never accept a message larger than max_message. */
#ifndef WS_CLIENT_H
#define WS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "ws_proto.h"
#include "ws_url.h"

struct wsc_client;

struct wsc_client_opts {
    size_t max_message;     /* largest message accepted (default 16384) */
    int connect_timeout_ms; /* TCP connect + TLS + upgrade (default 10000) */
    int write_timeout_ms;   /* one send (default 10000) */
    const char *ca_file;    /* wss: trust these CAs instead of the system's */
    const char *cert_file;  /* wss: client certificate (operator listener) */
    const char *key_file;   /* wss: its private key (default: cert_file) */
    int insecure;           /* wss: do not verify the server (tests only) */
};

enum wsc_recv_status {
    WSC_RECV_TIMEOUT = 0,
    WSC_RECV_MESSAGE = 1,     /* *msg (NUL-terminated, valid until the next call), *len */
    WSC_RECV_CLOSED = 2,      /* the peer closed; see wsc_client_close_info() */
    WSC_RECV_INTERRUPTED = 3, /* a signal arrived (poll returned EINTR) */
};

/* Connects and upgrades.  Returns 0 or a negative ota_err with a reason
 * for a person in err (OTA_ERR_IO: resolve/connect/TLS failed;
 * OTA_ERR_STATE: the server did not answer 101; OTA_ERR_PARSE: the answer
 * was no valid upgrade). */
int wsc_client_connect(const struct wsc_url *url, const struct wsc_client_opts *opts,
                       struct wsc_client **out, char *err, size_t errlen);

/* Sends one text message (one frame).  Returns 0 or OTA_ERR_IO/LENGTH/STATE. */
int wsc_client_send_text(struct wsc_client *c, const char *text, size_t len);

/* Waits up to timeout_ms (< 0: without limit) for the next text message.
 * Pings are answered and pongs ignored on the way.  A close from the peer
 * is answered and reported as WSC_RECV_CLOSED.  Returns a wsc_recv_status
 * or a negative ota_err: OTA_ERR_IO when the connection broke (or closed
 * without a close frame), OTA_ERR_PARSE / OTA_ERR_LENGTH when the peer
 * broke the protocol (the connection is then closed with 1002 / 1003 /
 * 1007 / 1009).  After CLOSED or an error only free is useful. */
int wsc_client_recv(struct wsc_client *c, int timeout_ms, const char **msg, size_t *len);

/* The close code and reason the peer sent (WSC_CLOSE_ABNORMAL if the
 * connection ended without a close frame; 0 while open). */
uint16_t wsc_client_close_code(const struct wsc_client *c);
const char *wsc_client_close_reason(const struct wsc_client *c);
/* A person-readable description of the last failure ("" if none). */
const char *wsc_client_error(const struct wsc_client *c);

/* Sends close(code, reason) and waits up to timeout_ms for the peer's
 * close and the end of the stream.  Returns 0 or a negative ota_err. */
int wsc_client_close(struct wsc_client *c, uint16_t code, const char *reason, int timeout_ms);
/* Drops the TCP connection at once, without a close frame (a phone that
 * lost its network). */
void wsc_client_abort(struct wsc_client *c);
void wsc_client_free(struct wsc_client *c);

#endif
