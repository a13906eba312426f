/* pool: the local ota-worker processes and the ZeroMQ ROUTER that talks to
 * them.  Starts them (gateway/spawn.c), supervises them with heartbeats,
 * restarts them with exponential back-off, dispatches each new session to
 * the least-loaded live worker and routes frames between workers and
 * sessions.  Never parses client input and never holds a key.  It never
 * calls up: what happens to a session's worker is reported to the owner
 * through the struct pool_io it registered (pgbouncer's sbuf proto_cb). */
#ifndef GW_POOL_H
#define GW_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

struct gw;
struct pool;
struct worker;
struct wire_hdr;

/* What the owner embeds in each session it pins to a worker. */
struct pool_link {
    struct worker *worker; /* NULL: not attached */
    TAILQ_ENTRY(pool_link) next;
};

/* What the pool tells its owner; arg is the pointer given to pool_new. */
struct pool_io {
    /* A session frame (COMMAND, MODAL, PHASE, RESULT) from live worker w;
     * h is its header, decoded once here (it bounds the frame: hand both
     * to the wire_decode_* payload decoders); whether h->session is pinned
     * to w is for the owner to check. */
    void (*session_frame)(void *arg, struct worker *w, const struct wire_hdr *h,
                          const uint8_t *frame);
    /* l's worker died or was cut off; l is already detached. */
    void (*worker_lost)(void *arg, struct pool_link *l);
};

struct pool *pool_new(struct gw *g, const struct pool_io *io, void *arg);
/* Creates the runtime directory (before privileges are dropped, so that it
 * can be given to the unprivileged users). */
int pool_prepare_dir(struct pool *p, uid_t uid, gid_t gid, gid_t worker_gid, int as_root);
/* Starts the helper that launches workers as root (only when root). */
int pool_start_spawner(struct pool *p);
/* Reads the CurveZMQ key pair and the allow-list of remote workers (when
 * gateway.worker_listen is set), before privileges are dropped. */
int pool_load_curve(struct pool *p);
/* Binds the ROUTER and starts every worker. */
int pool_start(struct pool *p);
void pool_free(struct pool *p);

struct worker *pool_pick(struct pool *p);
int pool_send(struct pool *p, struct worker *w, const uint8_t *frame, size_t len);
void pool_attach(struct worker *w, struct pool_link *l);
void pool_detach(struct pool_link *l);
unsigned pool_worker_id(const struct worker *w);
/* The key w announced in its READY (wire_encode_open seals to it). */
const uint8_t *pool_worker_seal_pk(const struct worker *w);

/* Ready = at least one live worker whose database is usable. */
int pool_ready(const struct pool *p);
/* Stops every worker (SIGTERM, SIGKILL after a deadline); done() runs when
 * all have exited. */
void pool_stop(struct pool *p, void (*done)(void *arg), void *arg);

/* For /status and /metrics. */
struct pool_worker_info {
    unsigned id;
    pid_t pid;
    int live, db_ok;
    uint32_t sessions, reported_sessions, capacity, restarts;
    int crash_loop;              /* restarted at the longest back-off and not yet up
                                  * for that long since */
    double last_heartbeat_age_s; /* -1 if never */
    int remote;                  /* over tcp:// with CurveZMQ (pid is the remote one) */
    char key[41];                /* remote: its public key (Z85) */
    char addr[64];               /* remote: its address */
};
size_t pool_count(const struct pool *p);
/* Remote workers refused (key not allowed, or no free slot). */
uint64_t pool_remote_refused(const struct pool *p);
void pool_info(const struct pool *p, size_t i, struct pool_worker_info *out);
/* The last WIRE_STATS of worker slot i since its READY (NULL: none yet)
 * and how old it is; gateway/wmetrics.c renders them. */
struct wire_stats;
const struct wire_stats *pool_worker_stats(const struct pool *p, size_t i, double *age_s);

#endif
