/* ws_proto: the client side of RFC 6455 as a sans-I/O core.  It builds the
 * upgrade request, checks the server's 101 answer (Sec-WebSocket-Accept),
 * writes masked frames and turns received bytes into messages and control
 * events (fragments joined, UTF-8 of text checked, sizes bounded).  The
 * caller owns the socket, TLS and clocks: the blocking client (ws_client)
 * and the load generator's event loop share this core.  It must never read
 * or write a socket itself, and never accept a masked or oversized frame
 * from a server. */
#ifndef WS_PROTO_H
#define WS_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* base64 of 16 random bytes, and of a SHA-1 digest. */
#define WSC_KEY_LEN 24
#define WSC_ACCEPT_LEN 28
/* Largest header a client frame needs: 2 + 8 (length) + 4 (mask). */
#define WSC_FRAME_OVERHEAD 14
/* Control frames carry at most 125 bytes (RFC 6455 §5.5). */
#define WSC_CONTROL_MAX 125

enum wsc_opcode {
    WSC_OP_CONT = 0x0,
    WSC_OP_TEXT = 0x1,
    WSC_OP_BINARY = 0x2,
    WSC_OP_CLOSE = 0x8,
    WSC_OP_PING = 0x9,
    WSC_OP_PONG = 0xA,
};

/* Close codes this client sends or reports (RFC 6455 §7.4.1). */
enum wsc_close_code {
    WSC_CLOSE_NORMAL = 1000,
    WSC_CLOSE_GOING_AWAY = 1001,
    WSC_CLOSE_PROTOCOL = 1002,
    WSC_CLOSE_UNSUPPORTED = 1003,
    WSC_CLOSE_NO_STATUS = 1005, /* reported only: the close frame had no code */
    WSC_CLOSE_ABNORMAL = 1006,  /* reported only: the connection ended without close */
    WSC_CLOSE_BAD_DATA = 1007,
    WSC_CLOSE_POLICY = 1008,
    WSC_CLOSE_TOO_BIG = 1009,
    WSC_CLOSE_INTERNAL = 1011,
};

/* A fresh Sec-WebSocket-Key (16 random bytes, base64); out gets a NUL. */
void wsc_make_key(char out[WSC_KEY_LEN + 1]);
/* Sec-WebSocket-Accept for a key: base64(SHA-1(key || GUID)).  Returns 0
 * or OTA_ERR_CRYPTO. */
int wsc_accept_for_key(const char *key, char out[WSC_ACCEPT_LEN + 1]);

/* Writes the GET upgrade request.  host is the Host header's value (with
 * the port where it is not the scheme's default).  Returns the length or
 * OTA_ERR_LENGTH / OTA_ERR_INVAL (CR, LF or NUL in host or path). */
int wsc_build_request(char *out, size_t cap, const char *host, const char *path, const char *key);

/* Parses the server's handshake answer from the first len bytes received.
 * Returns the length of the header block (> 0; bytes after it are frame
 * data) when it is a valid 101 answer for key; 0 when more bytes are
 * needed (and len < max_header); OTA_ERR_LENGTH when the header exceeds
 * max_header; OTA_ERR_STATE when the status is not 101 (*status tells
 * which, 0 if unreadable); OTA_ERR_PARSE for a malformed answer, a
 * missing or wrong Upgrade, Connection or Sec-WebSocket-Accept, or an
 * extension or subprotocol we never asked for. */
int wsc_parse_response(const uint8_t *p, size_t len, size_t max_header, const char *key,
                       int *status);

/* Writes one final frame, masked with mask (a client must mask every
 * frame).  Returns the frame's length or OTA_ERR_LENGTH if it does not fit
 * in cap (a control frame's payload is limited to 125 bytes: OTA_ERR_INVAL). */
int wsc_frame_encode(uint8_t *out, size_t cap, enum wsc_opcode op, const uint8_t *payload,
                     size_t len, const uint8_t mask[4]);
/* wsc_frame_encode with a fresh random mask. */
int wsc_frame_encode_random(uint8_t *out, size_t cap, enum wsc_opcode op, const uint8_t *payload,
                            size_t len);
/* A close frame's payload: code (big-endian) and a reason cut to fit. */
size_t wsc_close_payload(uint8_t out[WSC_CONTROL_MAX], uint16_t code, const char *reason);

struct wsc_frame {
    int fin;
    enum wsc_opcode opcode;
    uint8_t *payload; /* points into the caller's buffer, unmasked in place */
    size_t len;
};

/* Decodes one frame at the start of p.  Returns its total length (> 0), 0
 * when more bytes are needed, OTA_ERR_PARSE for a protocol error (reserved
 * bits, unknown opcode, bad control frame, a non-minimal length, a mask
 * other than expected) or OTA_ERR_LENGTH when the payload exceeds
 * max_payload.  masked: 1 when the frame must be masked (what a server
 * receives), 0 when it must not (what a client receives). */
int wsc_frame_decode(uint8_t *p, size_t len, size_t max_payload, int masked, struct wsc_frame *f);

/* 1 if p[0..len) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
int wsc_utf8_valid(const uint8_t *p, size_t len);

/* The receiving side of one connection: joins fragments into messages. */
enum wsc_rx_state { WSC_RX_IDLE = 0, WSC_RX_IN_MESSAGE };

struct wsc_rx {
    enum wsc_rx_state state;
    enum wsc_opcode msg_op; /* TEXT or BINARY while a message is open */
    uint8_t *msg;           /* caller's buffer of msg_cap bytes (+1 for a NUL) */
    size_t msg_cap, msg_len;
    uint16_t close_code; /* the code to close with after an error return */
};

enum wsc_event_type {
    WSC_EV_NONE = 0, /* more bytes needed */
    WSC_EV_TEXT,     /* ev.data/len: a whole text message, NUL-terminated */
    WSC_EV_BINARY,
    WSC_EV_PING, /* ev.data/len: the payload to echo in a pong */
    WSC_EV_PONG,
    WSC_EV_CLOSE, /* ev.code (WSC_CLOSE_NO_STATUS if none), ev.data/len: reason */
};

struct wsc_event {
    enum wsc_event_type type;
    const uint8_t *data;
    size_t len;
    uint16_t code;
};

/* buf must hold cap + 1 bytes: messages of up to cap bytes are accepted. */
void wsc_rx_init(struct wsc_rx *rx, uint8_t *buf, size_t cap);
/* Consumes at most one frame from in[0..len): *consumed tells how many
 * bytes; ev tells what it completed.  The event's data stays valid until
 * the next call or until the caller moves the input bytes.  Returns 0, or
 * a negative ota_err with rx->close_code set (1002 protocol, 1007 invalid
 * UTF-8, 1009 too big); after an error the connection must be closed. */
int wsc_rx_feed(struct wsc_rx *rx, uint8_t *in, size_t len, size_t *consumed, struct wsc_event *ev);

#endif
