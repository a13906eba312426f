/* pool_int: what the pool's files share and nothing else includes:
 * struct pool, struct worker and the calls between the files.
 *
 *   pool.c       the pool's memory, its runtime directory and its answers
 *                (dispatch, attach, /status and /metrics figures)
 *   route.c      the ROUTER socket: frames in and out, READY, heartbeats
 *                from workers, session frames handed to the owner
 *   remote.c     remote workers: CurveZMQ keys and the ZAP handler
 *   supervise.c  starting, watching, restarting and stopping workers
 *   spawn.c      starting worker processes (and the root helper)
 *
 * Calls go down that list's reverse: supervise.c uses route.c and remote.c,
 * remote.c uses route.c, and all of them pool.c; never the other way. */
#ifndef GW_POOL_INT_H
#define GW_POOL_INT_H

#include <limits.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <event2/event.h>

#include "curve_key.h"
#include "pool.h"
#include "wire.h"

#define IDENT_MAX 255
#define ZMQ_BATCH 512          /* messages per wake-up before others get a turn */
#define STARTUP_GRACE_MS 30000 /* a new worker loads keys and checks the database */
#define STOP_DEADLINE_MS 10000 /* after SIGTERM, SIGKILL */
#define EARLY_EXITS 16
#define REMOTE_MAX 64 /* remote worker slots */
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_DOMAIN "ota-workers"

enum wk_state { WK_STOPPED = 0, WK_STARTING, WK_LIVE, WK_STOPPING };

TAILQ_HEAD(link_list, pool_link);

struct worker {
    struct pool *pool;
    unsigned id;
    enum wk_state state;
    pid_t pid;
    uint8_t ident[IDENT_MAX];
    size_t ident_len;
    uint32_t capacity, reported, restarts;
    uint8_t seal_pk[WIRE_SEAL_PK_LEN]; /* from its READY: OPEN's authCode is sealed to it */
    int db_ok;
    uint64_t started_us, live_us, last_seen_us, stop_deadline_us;
    uint64_t backoff_ms;
    int crash_loop; /* the last restart waited the longest back-off */
    struct event *restart_ev;
    struct link_list sessions;
    uint32_t nsessions;
    /* remote workers only */
    int remote;
    uint32_t remote_pid;
    char key[CURVE_Z85_LEN + 1]; /* its CurveZMQ public key */
    char addr[64];               /* its address, for the log */
    /* Its last WIRE_STATS (for /metrics; reset by each READY). */
    struct wire_stats stats;
    uint64_t stats_us; /* 0: none from this process yet */
};

struct pool {
    struct gw *gw;
    const struct pool_io *io;
    void *io_arg;
    struct worker *w;
    unsigned n, rr;
    unsigned nremote_max, nremote; /* remote slots after the n local ones; used so far */
    void *zap;                     /* ZAP handler (REP), with remote workers only */
    struct event *ev_zap;
    char (*allowed)[CURVE_Z85_LEN + 1];
    size_t nallowed;
    struct curve_keypair kp; /* read before privileges drop; wiped once bound */
    uint64_t remote_refused;
    char dir[PATH_MAX];
    char endpoint[PATH_MAX + 16];
    char **argv;
    size_t argc;
    struct spawn *spawn;
    void *zctx, *zsock;
    struct event *ev_zmq, *ev_hb, *ev_chld, *ev_stop;
    int stopping;
    void (*stop_done)(void *);
    void *stop_arg;
    /* Exits of pids the helper has not reported yet (a worker can die
     * before its pid arrives). */
    struct {
        pid_t pid;
        int status;
    } early[EARLY_EXITS];
    unsigned nearly;
    /* READYs of local pids the helper has not reported yet: a worker can
     * say READY before its pid arrives, and says it only once. */
    struct {
        pid_t pid;
        uint32_t capacity;
        uint8_t seal_pk[WIRE_SEAL_PK_LEN];
        uint8_t ident[IDENT_MAX];
        size_t ident_len;
    } early_ready[EARLY_EXITS];
    unsigned nearly_ready;
};

/* route.c */
void route_on_zmq(evutil_socket_t fd, short what, void *arg);
/* Handles messages on a ZMQ_FD-driven socket until one() finds none (or
 * a batch is done: then ev is activated to go on from the loop); one()
 * returns 0 when there was no message. */
void route_drain_socket(struct pool *p, struct event *ev, int (*one)(struct pool *p));
void route_heartbeat(struct pool *p, struct worker *w);
/* A local worker whose pid is now known said READY earlier: it goes live
 * as if the READY had come now.  Returns 1 if pid had said READY. */
int route_early_ready(struct pool *p, struct worker *w);
/* Detaches every session of w and reports each to the owner. */
void route_sessions_lost(struct worker *w);

/* remote.c: binds gateway.worker_listen with CurveZMQ and the ZAP handler. */
int remote_start(struct pool *p);

#endif
