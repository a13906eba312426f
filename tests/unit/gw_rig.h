/* gw_rig: a real gateway pool for unit tests: a struct gw with short
 * timers, a pool (gateway/pool.c) bound on ipc:// in a temporary directory
 * that starts one stand-in worker process (a shell script that sleeps:
 * it is started, watched and killed like ota-worker), and a ZeroMQ DEALER
 * that the test uses to speak for that worker.  Everything is real (the
 * event loop, the sockets, the processes); only the worker's logic is the
 * test's own. */
#ifndef TEST_GW_RIG_H
#define TEST_GW_RIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gateway/gw.h"
#include "gateway/pool.h"

struct rig {
    char dir[64]; /* runtime dir and the stand-in script */
    struct gw g;
    struct pool *pool;
    void *zctx, *dealer;
    pid_t worker_pid;
    uint64_t heartbeat_gateway; /* the incarnation in the first heartbeat */
    struct wire_seal_key seal;  /* the stand-in worker's, announced in READY */
};

/* Makes the gateway context and the pool (reporting to io/arg), starts it. */
void rig_init(struct rig *r, const struct pool_io *io, void *arg);
/* Waits for the stand-in worker's pid, says READY for it from the DEALER
 * (capacity sessions) and reads the gateway's first heartbeat. */
void rig_worker_ready(struct rig *r, uint32_t capacity);
/* A heartbeat from the worker (db_ok as given). */
void rig_worker_heartbeat(struct rig *r, int db_ok);
/* One turn of the event loop without blocking, then a short nap. */
void rig_turn(struct rig *r);
/* Sends a frame from the worker's DEALER. */
void rig_send(struct rig *r, const uint8_t *frame, int n);
/* The next frame for the worker other than a heartbeat (the loop runs
 * while waiting, up to 10 s): its length, or -1. */
int rig_recv(struct rig *r, uint8_t *buf, size_t cap);
/* Runs the loop for this many turns: how many frames other than
 * heartbeats reached the worker meanwhile. */
int rig_quiet(struct rig *r, int turns);
/* Stops the pool (SIGTERM to the worker) and frees everything. */
void rig_free(struct rig *r);

/* Runs the loop until cond holds (fails the test after 10 s). */
#define RIG_WAIT(r, cond)                                                                          \
    do {                                                                                           \
        int rig_i_;                                                                                \
        for (rig_i_ = 0; rig_i_ < 10000 && !(cond); rig_i_++)                                      \
            rig_turn(r);                                                                           \
        ck_assert_msg(cond, "timed out waiting for " #cond);                                       \
    } while (0)

#endif
