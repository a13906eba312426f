/* session: one card session on one WebSocket (PROTOCOL.md section 2): the
 * order of messages, the one outstanding command, the worker it is pinned
 * to, and the translation between client JSON and wire frames.  It never
 * touches sockets (conn.c does) or ZeroMQ (pool.c does).  It is the owner
 * of both: they report to it through the callbacks below (sess_conn_io,
 * sess_pool_io), which the gateway registers when it makes them. */
#ifndef GW_SESSION_H
#define GW_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <jansson.h>

#include "pool.h"

struct conn;
struct gw;

enum sess_state {
    SESS_IDLE = 0,    /* upgraded, waiting for the operation message */
    SESS_WAIT_WORKER, /* with the worker; no command outstanding */
    SESS_WAIT_CLIENT, /* a command (or a v2 batch of commands) is outstanding */
    SESS_DONE,        /* result sent (or the session was cut) */
};

/* What every session shares: the tables and clock, and the workers. */
struct sess_ctx {
    struct gw *gw;
    struct pool *pool;
};

struct session {
    enum sess_state state;
    uint64_t id; /* 0 until registered */
    uint8_t op;
    uint8_t at_risk; /* the worker's last WIRE_PHASE */
    uint8_t batch;   /* APDUs per message the client announced: 1 = v1 */
    uint8_t nout;    /* APDUs outstanding at the client (SESS_WAIT_CLIENT) */
    uint8_t out_v2;  /* they went out as `commands` (answer: `responses`) */
    json_t *request_id;
    struct pool_link wl; /* the worker it is pinned to, and its place in its list */
    struct sess_ctx *ctx;
    struct conn *conn;
    uint64_t t_start_us, t_cmd_us, t_resp_us;
};

/* Registered with conn_accept (arg: the struct sess_ctx): the session is
 * the connection's owner object (conn_io.user_size bytes). */
extern const struct conn_io sess_conn_io;
/* Registered with pool_new (arg: the struct sess_ctx). */
extern const struct pool_io sess_pool_io;

#endif
