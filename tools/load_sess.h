/* load_sess: one simulated phone of ota-load.  A slot owns one in-memory
 * card and runs operations on it one after another, each on a fresh
 * non-blocking WebSocket (ws_proto framing): connect, upgrade, operation,
 * then for each message with APDUs (a v1 `command` or a v2 `commands`
 * batch) a delay (one round trip of the phone's radio and network) and the
 * card's answers, until the result and the server's close.  It counts the
 * round trips and APDUs of each operation and its tap time (operation sent
 * to result).  The loop in
 * ota_load.c owns epoll and the clock; this file owns one slot's bytes and
 * state.  It must never block, never answer a command before its delay,
 * and never count the client's own delay as server time. */
#ifndef LOAD_SESS_H
#define LOAD_SESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "load_hist.h"
#include "ws_proto.h"
#include "ws_proto_msg.h"
#include "ws_url.h"

#define LOAD_MSG_CAP 8192 /* server messages: commands (up to 16 APDUs), modals, results */
#define LOAD_IN_CAP (LOAD_MSG_CAP + WSC_FRAME_OVERHEAD + 1024)
#define LOAD_OUT_CAP 4096 /* 16 answers of the short frames DESFire sends */
#define LOAD_CODE_MAX 64
#define LOAD_OUTCOMES_MAX 40

enum load_op { LOAD_OP_CHECK = 0, LOAD_OP_TOPUP, LOAD_OP_COUNT };

/* What the whole run shares; the loop fills it, sessions read and count. */
struct load_run {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct wsc_url url;
    long delay_ms;
    long timeout_ms;
    int batch;                   /* announced batch size; 0 = protocol v1 */
    unsigned mix[LOAD_OP_COUNT]; /* weights */
    char **codes;
    size_t ncodes, next_code;
    uint64_t rng;
    int epfd;
    /* Counters and histograms. */
    uint64_t started, completed, codes_exhausted;
    uint64_t ok_by_op[LOAD_OP_COUNT];
    struct {
        char name[32];
        uint64_t count;
    } outcome[LOAD_OUTCOMES_MAX];
    int noutcomes;
    struct load_hist session_us;  /* operation start to result */
    struct load_hist exchange_us; /* message sent to the server's next message */
    /* exchange_us split by what docs/PROTOCOL.md section 6 puts before the
     * server's next message: a ledger step (the lease before
     * AbortTransaction, card state and reserve before WriteRecord, the
     * booking and lease release before the result) or only card crypto. */
    struct load_hist exchange_ledger_us, exchange_card_us;
    /* Per operation kind, ok operations in the window only: tap time
     * (operation sent to result), round trips (messages with APDUs) and
     * APDUs. */
    struct load_hist tap_us[LOAD_OP_COUNT];
    uint64_t round_trips[LOAD_OP_COUNT], apdus[LOAD_OP_COUNT];
    unsigned round_trips_max[LOAD_OP_COUNT];
    /* The measured window (monotonic µs): samples and the window's counts
     * are taken only between these; 0 = open end. */
    uint64_t window_from, window_to;
    uint64_t window_ok_by_op[LOAD_OP_COUNT], window_completed;
};

enum load_sess_state {
    LS_IDLE = 0,    /* between operations (or before the first: ramp-up) */
    LS_CONNECTING,  /* TCP connect in progress */
    LS_UPGRADING,   /* upgrade request sent, waiting for 101 */
    LS_WAIT_SERVER, /* waiting for a command or the result */
    LS_DELAY,       /* APDUs are in, answered when the timer fires */
    LS_WAIT_CLOSE,  /* the result is in, waiting for the server's close */
};

struct sim_card;

struct load_sess {
    enum load_sess_state state;
    unsigned idx;
    int fd;
    struct sim_card *card;
    char uid_hex[2 * 7 + 1];
    char key[WSC_KEY_LEN + 1];
    enum load_op op;
    char code[LOAD_CODE_MAX + 1];
    struct wsm_batch batch; /* the APDUs being answered */
    unsigned round_trips, apdus;
    uint64_t t_op_start, t_op_sent, t_sent; /* µs, monotonic */
    uint64_t deadline;                      /* µs; the operation's end, swept by the loop */
    uint64_t timer_at;                      /* µs; 0 = none (delay or next start) */
    unsigned timer_gen;                     /* bumps to cancel the queued timer */
    int want_out;                           /* EPOLLOUT is armed */
    struct wsc_rx rx;
    size_t in_len, out_len, out_off;
    uint8_t in[LOAD_IN_CAP];
    uint8_t out[LOAD_OUT_CAP];
    uint8_t msg[LOAD_MSG_CAP + 1];
};

/* Sets (or moves) the slot's one timer; implemented by the loop. */
void load_timer_set(struct load_run *run, struct load_sess *s, uint64_t at_us);
uint64_t load_now_us(void);

/* Starts the slot's next operation now.  Returns 0, or a negative ota_err
 * when the slot could not even start (counted as an outcome; the slot
 * stays idle). */
int load_sess_start(struct load_run *run, struct load_sess *s);
/* Socket events (EPOLLIN/EPOLLOUT/EPOLLERR bits) and timer expiry. */
void load_sess_on_io(struct load_run *run, struct load_sess *s, uint32_t events);
void load_sess_on_timer(struct load_run *run, struct load_sess *s);
/* The operation's deadline passed: count a timeout (unless the result is
 * already in) and drop the connection. */
void load_sess_on_deadline(struct load_run *run, struct load_sess *s);
/* Whether a sample taken at now belongs to the measured window. */
int load_in_window(const struct load_run *run, uint64_t now);
/* Counts an outcome by name ("ok", an error code, "pending", "client:..."). */
void load_count(struct load_run *run, const char *name);

#endif
