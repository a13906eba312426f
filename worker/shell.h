/* shell: the worker's table of live sessions and the dispatch of engine
 * actions to I/O.
 *
 * The shell turns gateway frames into engine events and engine actions into
 * gateway frames, ledger requests and libevent timers.  It owns no socket
 * and no database connection: frames leave through `send`, ledger requests
 * through `ledger` (worker/main.c wires them to ZeroMQ and ledger_pg), so a
 * test can drive it with plain callbacks.  It must never block, never trust
 * a frame beyond what wire_decode_* checked, and never log codes, keys or
 * full UIDs. */
#ifndef SHELL_H
#define SHELL_H

#include <stddef.h>
#include <stdint.h>
#include "engine.h"
#include "ledger.h"

struct event_base;
struct shell;

struct shell_io {
    /* Sends one frame to the gateway; returns 0 or a negative ota_err (the
     * shell logs a failure and goes on: the gateway times the session out). */
    int (*send)(void *arg, const uint8_t *frame, size_t len);
    /* Runs one ledger request.  The reply must come later through
     * shell_on_ledger_reply(), never from inside this call. */
    void (*ledger)(void *arg, const struct ledger_req *req);
    /* Checks an operator token (ENG_A_TOKEN) without blocking: returns a
     * verdict decided at once, or 0 when the verdict will come later
     * through shell_on_token_verdict(), never from inside this call. */
    int (*token)(void *arg, uint64_t session, uint64_t ticket, const struct eng_token *req);
    void *arg;
};

/* capacity: sessions at once (worker.capacity); one more is answered
 * `overloaded`.  eng is borrowed. */
struct shell *shell_new(struct event_base *base, struct eng_ctx *eng, uint32_t capacity,
                        const struct shell_io *io);
/* Ends every session without another event (shutdown: their leases expire)
 * and frees the shell. */
void shell_free(struct shell *sh);
/* The public half of the shell's sealing key pair, for READY: the gateway
 * seals each OPEN's authCode to it (see wire.h). */
const uint8_t *shell_seal_pk(const struct shell *sh);

/* One frame from the gateway, as received.  Malformed, unknown or
 * out-of-place frames are logged and dropped.  Returns the frame's type
 * (enum wire_type) when it was valid, 0 otherwise, so the caller can track
 * heartbeats. */
int shell_on_frame(struct shell *sh, const uint8_t *frame, size_t len);
/* The reply to a request the shell passed to io->ledger. */
void shell_on_ledger_reply(struct shell *sh, uint64_t session, const struct ledger_reply *r);
/* The verdict on a token the shell passed to io->token (enum
 * eng_token_verdict) with this ticket; ignored unless that session still
 * waits for it (a later session under the same id has another ticket). */
void shell_on_token_verdict(struct shell *sh, uint64_t session, uint64_t ticket, int verdict);

/* Draining: new sessions are answered `overloaded`; existing ones go on. */
void shell_set_draining(struct shell *sh, int draining);
uint32_t shell_sessions(const struct shell *sh);

/* Monotonic milliseconds, the clock every engine event carries. */
uint64_t shell_now_ms(void);

#endif
