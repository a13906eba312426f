/* session: one card session on one WebSocket (PROTOCOL.md section 2): the
 * order of messages, the one outstanding command, the worker it is pinned
 * to, and the translation between client JSON and wire frames.  It never
 * touches sockets (conn.c does) or ZeroMQ (pool.c does). */
#ifndef GW_SESSION_H
#define GW_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <jansson.h>

struct conn;
struct worker;

enum sess_state {
    SESS_IDLE = 0,    /* upgraded, waiting for the operation message */
    SESS_WAIT_WORKER, /* with the worker; no command outstanding */
    SESS_WAIT_CLIENT, /* a command (or a v2 batch of commands) is outstanding */
    SESS_DONE,        /* result sent (or the session was cut) */
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
    struct worker *worker;
    TAILQ_ENTRY(session) wlink; /* in the worker's list */
    uint64_t t_start_us, t_cmd_us, t_resp_us;
};

/* A complete text message from the client. */
void sess_on_text(struct conn *c, const uint8_t *msg, size_t len);
/* A session frame from the session's own worker (already header-checked). */
void sess_on_worker_frame(struct session *s, uint8_t type, const uint8_t *frame, size_t len);
/* The session's worker died or was killed. */
void sess_on_worker_lost(struct session *s);
/* The connection is going away: tells the worker, frees the session's
 * resources.  Safe to call in any state, more than once. */
void sess_end(struct conn *c);
/* No operation message within gateway.first_message_timeout_ms: result
 * failed/timeout and close. */
void sess_no_operation(struct conn *c);
/* Drain started: a session that has not begun an operation is closed. */
int sess_idle(const struct session *s);

#endif
