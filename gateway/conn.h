/* conn: one client TCP (or TLS) connection through its states: optional
 * PROXY header, HTTP upgrade, WebSocket (wslay), closing.  Owns the
 * bufferevent, the wslay context and the connection's timer; hands
 * complete text messages to its owner (session.c) through the struct
 * conn_io the owner registered, and never calls up.  Every byte from the
 * network passes through here first. */
#ifndef GW_CONN_H
#define GW_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <wslay/wslay.h>

#include "gw.h"
#include "wire.h"
#include "wsmsg.h"

struct conn;

/* What a connection tells its owner.  The owner keeps user_size bytes
 * per connection (zeroed, freed with the connection); user points there. */
struct conn_io {
    size_t user_size;
    /* A new connection (arg: the pointer given to conn_accept). */
    void (*on_new)(void *arg, struct conn *c, void *user);
    /* A complete, valid UTF-8 text message. */
    void (*on_text)(void *user, const uint8_t *msg, size_t len);
    /* The client side is over (closing, or gone): the owner ends what it
     * runs for it.  Comes at least once, last when the connection is freed. */
    void (*on_close)(void *user);
    /* 1 while the owner waits for the client's first message (the
     * first-message deadline runs, and a drain closes it). */
    int (*idle)(const void *user);
    /* No first message within gateway.first_message_timeout_ms. */
    void (*on_no_operation)(void *user);
};

enum conn_state {
    CONN_PROXY = 0, /* reading a PROXY protocol header */
    CONN_UPGRADE,   /* reading the HTTP upgrade request */
    CONN_WS,        /* WebSocket open */
    CONN_CLOSING,   /* close frame queued; waiting for the peer's or a deadline */
    CONN_REJECTING, /* HTTP error answer queued; closing when written */
};

struct conn {
    TAILQ_ENTRY(conn) link;
    struct gw *gw;
    struct bufferevent *bev;
    struct event *timer;
    wslay_event_context_ptr ws;
    enum conn_state state;
    uint8_t listener; /* enum wire_listener */
    uint8_t ip_counted, ws_counted, ping_out, in_recv;
    uint8_t direct;   /* plain TCP: output is written at once (see flush_out in conn.c) */
    struct wsmsg msg; /* the data message being received (wiped once handled) */
    uint8_t *ws_ibuf; /* wslay's frame buffer (see ws_recv), wiped at free */
    size_t ws_ibuf_len;
    uint16_t close_code;      /* our close, queued after the pending messages */
    const char *close_reason; /* static text */
    uint64_t last_rx_us;
    uint64_t opened_us;           /* upgraded: the first operation is due first_message_ms later */
    uint64_t stalled_us;          /* output over the cap since (reading stopped); 0: not */
    char peer[WIRE_MAX_PEER + 1]; /* the client's address (PROXY header or TCP) */
    uint64_t session_id;          /* for log lines; set by the owner */
    const struct conn_io *io;
    void *user; /* the owner's bytes, after this struct */
};

/* A new accepted socket (already non-blocking); bev may be a TLS one. */
void conn_accept(struct gw *g, struct bufferevent *bev, const struct sockaddr *sa, int salen,
                 uint8_t listener, const struct conn_io *io, void *arg);
/* Queues one text message. */
int conn_send_text(struct conn *c, const char *text, size_t len);
/* Sends a close frame with code and starts closing. */
void conn_close(struct conn *c, uint16_t code, const char *reason);

/* Drain: closes the connection with 1001 if its session has not begun an
 * operation (or always, with all set). */
void conn_drain_one(struct conn *c, int all);
/* At exit: frees every connection still open. */
void conn_free_all(struct gw *g);

#endif
