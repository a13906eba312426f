/* pool: local workers, their supervision and the ZeroMQ ROUTER; see
 * pool.h.  A local worker is known by the pid we started and the routing
 * id its READY frame came from; frames from any other peer are dropped,
 * and a worker may only speak for sessions pinned to it.
 *
 * Remote workers (gateway.worker_listen) reach the same ROUTER over tcp://
 * with CurveZMQ.  The ZAP handler below (inproc://zeromq.zap.01, served
 * from this event loop) admits only public keys on the allow-list and
 * names each connection by its key (ZeroMQ's User-Id property), so a READY
 * that carries a User-Id is a remote worker's and can never take a local
 * worker's slot.  Remote workers cannot be killed or restarted from here:
 * one that falls silent loses its sessions and its slot.
 *
 * ZMQ_FD is edge-triggered: every wake-up drains ZMQ_EVENTS until not
 * readable, and every send re-arms the check because a send can consume
 * the edge. */
#include "pool.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#include "config.h"
#include "curve_key.h"
#include "gw.h"
#include "log.h"
#include "ota_err.h"
#include "spawn.h"
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
};

static void spawned(void *arg, unsigned id, pid_t pid, int err);
static void worker_exited(struct worker *w, int status);

struct pool *pool_new(struct gw *g, const struct pool_io *io, void *arg)
{
    struct pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->gw = g;
    p->io = io;
    p->io_arg = arg;
    p->n = g->set.workers;
    p->nremote_max = *cfg_str(g->cfg, "gateway.worker_listen") ? REMOTE_MAX : 0;
    p->w = calloc(p->n + p->nremote_max ? p->n + p->nremote_max : 1, sizeof *p->w);
    if (!p->w) {
        free(p);
        return NULL;
    }
    for (unsigned i = 0; i < p->n + p->nremote_max; i++) {
        p->w[i].pool = p;
        p->w[i].id = i;
        p->w[i].remote = i >= p->n;
        p->w[i].backoff_ms = g->set.restart_backoff_ms;
        TAILQ_INIT(&p->w[i].sessions);
    }
    return p;
}

/* mkdir -p, the last component 0700. */
static int make_dir(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -1;
    for (char *s = tmp + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

int pool_prepare_dir(struct pool *p, uid_t uid, gid_t gid, gid_t worker_gid, int as_root)
{
    const char *dir = cfg_str(p->gw->cfg, "gateway.runtime_dir");
    struct stat st;
    if (make_dir(dir) != 0 || !realpath(dir, p->dir) || stat(p->dir, &st) != 0 ||
        !S_ISDIR(st.st_mode)) {
        log_error("runtime_dir_failed", "dir=\"%s\" errno=%d", dir, errno);
        return OTA_ERR_IO;
    }
    /* Workers of another user reach the socket through the directory's
     * group (setgid, so the socket inherits it). */
    mode_t mode = 0700;
    if (as_root) {
        if (gid != worker_gid)
            mode = 02750;
        if (chown(p->dir, uid, worker_gid) != 0) {
            log_error("runtime_dir_failed", "dir=\"%s\" errno=%d", p->dir, errno);
            return OTA_ERR_IO;
        }
    } else if (st.st_uid != geteuid()) {
        log_error("runtime_dir_not_ours", "dir=\"%s\" owner=%u", p->dir, (unsigned)st.st_uid);
        return OTA_ERR_IO;
    }
    if (chmod(p->dir, mode) != 0) {
        log_error("runtime_dir_failed", "dir=\"%s\" errno=%d", p->dir, errno);
        return OTA_ERR_IO;
    }
    int n = snprintf(p->endpoint, sizeof p->endpoint, "ipc://%s/workers.sock", p->dir);
    /* sun_path holds 108 bytes with the NUL. */
    if (n < 0 || (size_t)n - 6 > 107) {
        log_error("runtime_dir_too_long", "dir=\"%s\" detail=\"socket path over 107 bytes\"",
                  p->dir);
        return OTA_ERR_LENGTH;
    }
    (void)gid;
    return 0;
}

/* The worker binary: gateway.worker_path, else next to ota-gateway, else
 * ../worker/ota-worker beside it (the build tree). */
static int worker_path(const struct pool *p, char *out, size_t cap)
{
    const char *cfgd = cfg_str(p->gw->cfg, "gateway.worker_path");
    if (*cfgd) {
        snprintf(out, cap, "%s", cfgd);
        return access(out, X_OK) == 0 ? 0 : OTA_ERR_NOT_FOUND;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return OTA_ERR_IO;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return OTA_ERR_IO;
    *slash = '\0';
    static const char *const rel[] = {"/ota-worker", "/../worker/ota-worker"};
    for (size_t i = 0; i < 2; i++) {
        if (strlen(self) + strlen(rel[i]) >= cap)
            return OTA_ERR_LENGTH;
        memcpy(out, self, strlen(self));
        memcpy(out + strlen(self), rel[i], strlen(rel[i]) + 1);
        if (access(out, X_OK) == 0)
            return 0;
    }
    return OTA_ERR_NOT_FOUND;
}

static int build_argv(struct pool *p, int *id_index)
{
    char path[PATH_MAX];
    if (worker_path(p, path, sizeof path) != 0) {
        log_error("worker_not_found", "path=\"%s\"", path);
        return OTA_ERR_NOT_FOUND;
    }
    size_t nov;
    const char *const *ov = cfg_override_args(p->gw->cfg, &nov);
    const char *conf = cfg_path(p->gw->cfg);
    p->argv = calloc(nov + 10, sizeof *p->argv);
    if (!p->argv)
        return OTA_ERR_NOMEM;
    size_t i = 0;
    p->argv[i++] = strdup(path);
    if (conf) {
        p->argv[i++] = strdup("--config");
        p->argv[i++] = strdup(conf);
    }
    p->argv[i++] = strdup("--connect");
    p->argv[i++] = strdup(p->endpoint);
    p->argv[i++] = strdup("--worker-id");
    *id_index = (int)i;
    p->argv[i++] = strdup("0");
    for (size_t k = 0; k < nov; k++)
        p->argv[i++] = strdup(ov[k]);
    p->argc = i;
    for (size_t k = 0; k < i; k++)
        if (!p->argv[k])
            return OTA_ERR_NOMEM;
    return 0;
}

int pool_start_spawner(struct pool *p)
{
    int id_index;
    int rc = build_argv(p, &id_index);
    if (rc)
        return rc;
    p->spawn = spawn_new(p->gw->base, p->argv, id_index, p->n, geteuid() == 0, spawned, p);
    if (!p->spawn) {
        log_error("spawner_failed", "errno=%d", errno);
        return OTA_ERR_IO;
    }
    return 0;
}

/* ---- frames -------------------------------------------------------------- */

static void zmq_poke(struct pool *p)
{
    if (p->ev_zmq)
        event_active(p->ev_zmq, EV_READ, 0);
}

static int send_to(struct pool *p, const uint8_t *ident, size_t ilen, const uint8_t *frame,
                   size_t len)
{
    int rc = 0;
    if (zmq_send(p->zsock, ident, ilen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(p->zsock, frame, len, ZMQ_DONTWAIT) < 0)
        rc = errno == EAGAIN ? OTA_ERR_LIMIT : OTA_ERR_IO;
    zmq_poke(p);
    return rc;
}

int pool_send(struct pool *p, struct worker *w, const uint8_t *frame, size_t len)
{
    if (!w || w->state != WK_LIVE)
        return OTA_ERR_STATE;
    return send_to(p, w->ident, w->ident_len, frame, len);
}

static void wipe_and_free(void *data, void *hint)
{
    sodium_memzero(data, (size_t)(uintptr_t)hint);
    free(data);
}

int pool_send_secret(struct pool *p, struct worker *w, const uint8_t *frame, size_t len)
{
    if (!w || w->state != WK_LIVE)
        return OTA_ERR_STATE;
    uint8_t *copy = malloc(len);
    zmq_msg_t m;
    if (!copy)
        return OTA_ERR_NOMEM;
    memcpy(copy, frame, len);
    /* ZeroMQ calls wipe_and_free (from its I/O thread) once the frame is
     * written, or at zmq_msg_close if it never was. */
    if (zmq_msg_init_data(&m, copy, len, wipe_and_free, (void *)(uintptr_t)len) != 0) {
        wipe_and_free(copy, (void *)(uintptr_t)len);
        return OTA_ERR_NOMEM;
    }
    int rc = 0;
    if (zmq_send(p->zsock, w->ident, w->ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&m, p->zsock, ZMQ_DONTWAIT) < 0) {
        rc = errno == EAGAIN ? OTA_ERR_LIMIT : OTA_ERR_IO;
        zmq_msg_close(&m);
    }
    zmq_poke(p);
    return rc;
}

static struct worker *by_ident(struct pool *p, const uint8_t *id, size_t n)
{
    for (unsigned i = 0; i < p->n + p->nremote; i++) {
        struct worker *w = &p->w[i];
        if ((w->state == WK_LIVE || w->state == WK_STOPPING) && w->ident_len == n &&
            memcmp(w->ident, id, n) == 0)
            return w;
    }
    return NULL;
}

/* Heartbeats carry our incarnation; a worker that just said READY gets
 * one at once, before any OPEN (a remote worker drops the sessions of the
 * gateway it knew before us). */
static void send_heartbeat(struct pool *p, struct worker *w)
{
    uint8_t frame[WIRE_MAX_FRAME];
    struct wire_heartbeat hb = {.draining = (uint8_t)p->gw->draining,
                                .gateway = p->gw->incarnation};
    int n = wire_encode_heartbeat(frame, sizeof frame, &hb);
    if (n > 0 && w->ident_len)
        send_to(p, w->ident, w->ident_len, frame, (size_t)n);
}

static void sessions_lost(struct worker *w)
{
    struct pool_link *l;
    while ((l = TAILQ_FIRST(&w->sessions)) != NULL) {
        pool_detach(l);
        w->pool->io->worker_lost(w->pool->io_arg, l);
    }
}

/* A READY over CurveZMQ: the worker with this key and pid again (it
 * reconnected) keeps its slot, else the first free slot. */
static struct worker *on_ready_remote(struct pool *p, const uint8_t *id, size_t idn,
                                      const struct wire_ready *r, const char *key, const char *addr)
{
    struct worker *w = NULL, *free_slot = NULL;
    for (unsigned i = p->n; i < p->n + p->nremote_max; i++) {
        struct worker *c = &p->w[i];
        if (c->state == WK_LIVE && c->remote_pid == r->pid && strcmp(c->key, key) == 0) {
            w = c;
            break;
        }
        if (!free_slot && c->state == WK_STOPPED)
            free_slot = c;
    }
    if (w) {
        log_warn("remote_worker_reconnected", "worker=%u sessions=%" PRIu32, w->id, w->nsessions);
        sessions_lost(w);
    } else if (!(w = free_slot)) {
        p->remote_refused++;
        log_error("remote_worker_refused", "addr=%s key=\"%s\" why=no_free_slot", addr, key);
        return NULL;
    }
    if (w->id >= p->n + p->nremote)
        p->nremote = w->id - p->n + 1;
    memcpy(w->ident, id, idn);
    w->ident_len = idn;
    w->capacity = r->capacity;
    w->remote_pid = r->pid;
    snprintf(w->key, sizeof w->key, "%s", key);
    snprintf(w->addr, sizeof w->addr, "%s", addr);
    w->state = WK_LIVE;
    w->live_us = w->last_seen_us = gw_now_us();
    w->db_ok = 0; /* until its first heartbeat, as for local workers */
    w->stats_us = 0;
    log_info("remote_worker_ready",
             "worker=%u addr=%s key=\"%s\" pid=%" PRIu32 " capacity=%" PRIu32, w->id, addr, key,
             r->pid, r->capacity);
    return w;
}

static void on_ready(struct pool *p, const uint8_t *id, size_t idn, const uint8_t *f, size_t n,
                     const char *key, const char *addr)
{
    struct wire_ready r;
    if (wire_decode_ready(f, n, &r) != 0 || idn == 0 || idn > IDENT_MAX) {
        log_warn("bad_worker_frame", "frame=ready");
        return;
    }
    if (key) {
        struct worker *w = on_ready_remote(p, id, idn, &r, key, addr);
        if (w)
            send_heartbeat(p, w);
        return;
    }
    for (unsigned i = 0; i < p->n; i++) {
        struct worker *w = &p->w[i];
        if (w->state != WK_STARTING || w->pid != (pid_t)r.pid)
            continue;
        memcpy(w->ident, id, idn);
        w->ident_len = idn;
        w->capacity = r.capacity;
        w->state = WK_LIVE;
        w->live_us = w->last_seen_us = gw_now_us();
        /* READY comes while the worker's database pool is still connecting:
         * its first heartbeat says when the database is usable. */
        w->db_ok = 0;
        w->stats_us = 0;
        log_info("worker_ready", "worker=%u pid=%ld capacity=%" PRIu32, w->id, (long)w->pid,
                 r.capacity);
        send_heartbeat(p, w);
        return;
    }
    log_warn("unknown_worker_refused", "pid=%" PRIu32, r.pid);
}

static void on_frame(struct pool *p, const uint8_t *id, size_t idn, const uint8_t *f, size_t n,
                     const char *key, const char *addr)
{
    struct wire_hdr h;
    if (wire_decode_hdr(f, n, &h) != 0) {
        log_warn("bad_worker_frame", "len=%zu", n);
        return;
    }
    if (h.type == WIRE_READY) {
        on_ready(p, id, idn, f, n, key, addr);
        return;
    }
    struct worker *w = by_ident(p, id, idn);
    if (!w) {
        log_debug("frame_from_unknown_peer", "type=%u", (unsigned)h.type);
        return;
    }
    w->last_seen_us = gw_now_us();
    switch (h.type) {
    case WIRE_HEARTBEAT: {
        struct wire_heartbeat hb;
        if (wire_decode_heartbeat(f, n, &hb) == 0) {
            if (w->db_ok != hb.db_ok)
                log_info("worker_db", "worker=%u db_ok=%u", w->id, (unsigned)hb.db_ok);
            w->reported = hb.sessions;
            w->db_ok = hb.db_ok;
        }
        return;
    }
    case WIRE_STATS:
        if (wire_decode_stats(f, n, &w->stats) == 0)
            w->stats_us = gw_now_us();
        else
            log_warn("bad_worker_frame", "worker=%u frame=stats", w->id);
        return;
    case WIRE_COMMAND:
    case WIRE_COMMANDS:
    case WIRE_MODAL:
    case WIRE_RESULT:
    case WIRE_PHASE:
        p->io->session_frame(p->io_arg, w, &h, f, n);
        return;
    default:
        log_warn("unexpected_worker_frame", "worker=%u type=%u", w->id, (unsigned)h.type);
        return;
    }
}

static int recv_one(struct pool *p)
{
    zmq_msg_t parts[2];
    int n = 0, more;
    do {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, p->zsock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 2)
            parts[n++] = m;
        else {
            zmq_msg_close(&m);
            n = 3;
        }
    } while (more);
    if (n == 2) {
        /* Set by our ZAP handler for CurveZMQ peers only. */
        const char *key = zmq_msg_gets(&parts[1], "User-Id");
        if (key && !curve_z85_valid(key, strlen(key)))
            key = NULL;
        const char *addr = key ? zmq_msg_gets(&parts[1], "Peer-Address") : NULL;
        on_frame(p, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), zmq_msg_data(&parts[1]),
                 zmq_msg_size(&parts[1]), key, addr ? addr : "?");
    } else if (n > 0)
        log_warn("bad_worker_message", "parts=%d", n);
    for (int i = 0; i < n && i < 2; i++)
        zmq_msg_close(&parts[i]);
    return n > 0;
}

/* ZMQ_FD is edge-triggered: handles messages on sock until a receive finds
 * none (EAGAIN; libzmq then has taken in its pending commands, so the next
 * message raises the edge again); after ZMQ_BATCH of them, goes on from
 * the loop (ev activated) so one busy socket cannot starve the others.
 * Receiving until EAGAIN, rather than asking ZMQ_EVENTS before each
 * message, saves a poll() and a getpid() per message. */
static void drain_socket(struct pool *p, struct event *ev, int (*one)(struct pool *p))
{
    for (int i = 0; i < ZMQ_BATCH; i++)
        if (!one(p))
            return;
    if (ev)
        event_active(ev, EV_READ, 0);
}

static void on_zmq(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pool *p = arg;
    drain_socket(p, p->ev_zmq, recv_one);
}

/* ---- lifecycle ----------------------------------------------------------- */

static void start_one(struct worker *w)
{
    struct pool *p = w->pool;
    if (p->stopping)
        return;
    w->state = WK_STARTING;
    w->pid = 0;
    w->started_us = gw_now_us();
    /* Set again at READY: a worker that dies before it is a crash loop,
     * whatever an earlier incarnation did. */
    w->live_us = 0;
    if (spawn_worker(p->spawn, w->id) != 0)
        spawned(p, w->id, -1, errno);
}

static void restart_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_one(arg);
}

static void schedule_restart(struct worker *w)
{
    struct pool *p = w->pool;
    if (p->stopping)
        return;
    struct gw_settings *set = &p->gw->set;
    uint64_t now = gw_now_us();
    /* A worker that ran long enough starts over at the base delay. */
    if (w->live_us && (now - w->live_us) / 1000 >= set->restart_backoff_max_ms)
        w->backoff_ms = set->restart_backoff_ms;
    uint64_t delay = w->backoff_ms;
    w->backoff_ms = w->backoff_ms * 2 > set->restart_backoff_max_ms ? set->restart_backoff_max_ms
                                                                    : w->backoff_ms * 2;
    w->crash_loop = delay >= set->restart_backoff_max_ms;
    if (w->crash_loop)
        log_error("worker_crash_loop", "worker=%u restarts=%" PRIu32 " delay_ms=%" PRIu64, w->id,
                  w->restarts, delay);
    w->state = WK_STOPPED;
    struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)(delay % 1000) * 1000};
    evtimer_add(w->restart_ev, &tv);
}

static void spawned(void *arg, unsigned id, pid_t pid, int err)
{
    struct pool *p = arg;
    if (id >= p->n)
        return;
    struct worker *w = &p->w[id];
    if (pid <= 0) {
        log_error("worker_spawn_failed", "worker=%u errno=%d", id, err);
        w->live_us = 0;
        schedule_restart(w);
        return;
    }
    w->pid = pid;
    log_info("worker_started", "worker=%u pid=%ld", id, (long)pid);
    for (unsigned i = 0; i < p->nearly; i++) {
        if (p->early[i].pid == pid) {
            int st = p->early[i].status;
            p->early[i] = p->early[--p->nearly];
            worker_exited(w, st);
            return;
        }
    }
}

static void maybe_stopped(struct pool *p)
{
    if (!p->stopping || !p->stop_done)
        return;
    for (unsigned i = 0; i < p->n; i++)
        if (p->w[i].pid > 0)
            return;
    void (*done)(void *) = p->stop_done;
    p->stop_done = NULL;
    done(p->stop_arg);
}

static void worker_exited(struct worker *w, int status)
{
    struct pool *p = w->pool;
    if (WIFSIGNALED(status))
        log_warn("worker_exited", "worker=%u pid=%ld signal=%d sessions=%" PRIu32, w->id,
                 (long)w->pid, WTERMSIG(status), w->nsessions);
    else
        log_warn("worker_exited", "worker=%u pid=%ld status=%d sessions=%" PRIu32, w->id,
                 (long)w->pid, WEXITSTATUS(status), w->nsessions);
    enum wk_state was = w->state;
    w->state = WK_STOPPED;
    w->pid = 0;
    w->ident_len = 0;
    w->db_ok = 0;
    sessions_lost(w);
    if (p->stopping) {
        maybe_stopped(p);
        return;
    }
    (void)was;
    w->restarts++;
    schedule_restart(w);
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pool *p = arg;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == spawn_helper_pid(p->spawn)) {
            log_warn("spawn_helper_exited", "pid=%ld", (long)pid);
            continue;
        }
        struct worker *w = NULL;
        for (unsigned i = 0; i < p->n; i++)
            if (p->w[i].pid == pid)
                w = &p->w[i];
        if (w) {
            worker_exited(w, status);
        } else if (p->nearly < EARLY_EXITS) {
            p->early[p->nearly].pid = pid;
            p->early[p->nearly].status = status;
            p->nearly++;
        }
    }
}

static void kill_worker(struct worker *w, int sig, const char *why)
{
    if (w->pid <= 0)
        return;
    if (kill(w->pid, sig) != 0 &&
        !(errno == EPERM && spawn_signal(w->pool->spawn, w->id, sig) == 0))
        log_error("worker_kill_failed", "worker=%u pid=%ld signal=%d errno=%d", w->id, (long)w->pid,
                  sig, errno);
    else if (sig == SIGKILL)
        log_error("worker_killed", "worker=%u pid=%ld why=%s", w->id, (long)w->pid, why);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pool *p = arg;
    struct gw *g = p->gw;
    uint64_t now = gw_now_us();
    uint64_t grace =
        STARTUP_GRACE_MS > g->set.worker_dead_ms ? STARTUP_GRACE_MS : g->set.worker_dead_ms;
    for (unsigned i = 0; i < p->n + p->nremote; i++) {
        struct worker *w = &p->w[i];
        switch (w->state) {
        case WK_LIVE:
            send_heartbeat(p, w);
            if ((now - w->last_seen_us) / 1000 <= g->set.worker_dead_ms)
                break;
            if (!w->remote) {
                kill_worker(w, SIGKILL, "silent");
                break;
            }
            log_error("remote_worker_lost", "worker=%u addr=%s key=\"%s\" sessions=%" PRIu32, w->id,
                      w->addr, w->key, w->nsessions);
            w->state = WK_STOPPED;
            w->ident_len = 0;
            w->db_ok = 0;
            w->restarts++;
            sessions_lost(w);
            break;
        case WK_STARTING:
            if (w->pid > 0 && (now - w->started_us) / 1000 > grace)
                kill_worker(w, SIGKILL, "no_ready");
            break;
        case WK_STOPPING:
            send_heartbeat(p, w);
            if (now > w->stop_deadline_us)
                kill_worker(w, SIGKILL, "stop_deadline");
            break;
        case WK_STOPPED:
            break;
        }
    }
}

/* ---- remote workers: CurveZMQ and the ZAP handler ------------------------ */

static void zap_reply(void *sock, zmq_msg_t *reqid, const char *code, const char *text,
                      const char *user)
{
    zmq_send(sock, "1.0", 3, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, zmq_msg_data(reqid), zmq_msg_size(reqid), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, code, strlen(code), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, text, strlen(text), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, user, strlen(user), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, "", 0, ZMQ_DONTWAIT);
}

/* One ZAP request (RFC 27): version, request id, domain, address,
 * identity, mechanism, credentials.  CURVE: the client's 32-byte public
 * key must be on the allow-list.  NULL: only the local ipc:// endpoint
 * runs without CurveZMQ (a tcp:// peer cannot, the endpoint is a CURVE
 * server), and ZeroMQ asks about NULL only when a domain is set there. */
static int zap_one(struct pool *p)
{
    enum { NPARTS = 7 };
    zmq_msg_t parts[NPARTS + 1];
    int n = 0, more = 0;
    do {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, p->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < NPARTS + 1)
            parts[n++] = m;
        else
            zmq_msg_close(&m);
    } while (more);
    if (n == 0)
        return 0;
    if (n < 6) {
        /* A REP socket must answer every request it read; without the
         * request id there is nothing to answer. */
        log_warn("zap_bad_request", "parts=%d", n);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
        return 1;
    }
    const char *mech = zmq_msg_data(&parts[5]);
    size_t mn = zmq_msg_size(&parts[5]);
    char addr[64];
    size_t an =
        zmq_msg_size(&parts[3]) < sizeof addr - 1 ? zmq_msg_size(&parts[3]) : sizeof addr - 1;
    memcpy(addr, zmq_msg_data(&parts[3]), an);
    addr[an] = '\0';
    for (size_t i = 0; i < an; i++)
        if (addr[i] < 0x21 || addr[i] > 0x7e)
            addr[i] = '?';
    char key[CURVE_Z85_LEN + 1] = "";
    int ok = 0;
    const char *why = "unknown mechanism";
    if (zmq_msg_size(&parts[0]) != 3 || memcmp(zmq_msg_data(&parts[0]), "1.0", 3) != 0) {
        why = "bad ZAP version";
    } else if (mn == 4 && memcmp(mech, "NULL", 4) == 0) {
        ok = 1;
    } else if (mn == 5 && memcmp(mech, "CURVE", 5) == 0 && n == 7 &&
               zmq_msg_size(&parts[6]) == 32) {
        if (!zmq_z85_encode(key, zmq_msg_data(&parts[6]), 32)) {
            why = "bad key";
        } else {
            why = "public key not on gateway.curve_allowed_keys";
            for (size_t i = 0; i < p->nallowed && !ok; i++)
                ok = strcmp(p->allowed[i], key) == 0;
        }
    }
    if (ok) {
        zap_reply(p->zap, &parts[1], "200", "OK", key);
        if (key[0])
            log_info("remote_worker_admitted", "addr=%s key=\"%s\"", addr, key);
    } else {
        zap_reply(p->zap, &parts[1], "400", why, "");
        /* A refused worker retries every few hundred ms: log the first
         * refusal and then every 100th. */
        if (p->remote_refused++ % 100 == 0)
            log_warn("remote_worker_refused",
                     "addr=%s key=\"%s\" why=\"%s\" refused_total=%" PRIu64, addr,
                     key[0] ? key : "-", why, p->remote_refused);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
    return 1;
}

static void on_zap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pool *p = arg;
    drain_socket(p, p->ev_zap, zap_one);
}

int pool_load_curve(struct pool *p)
{
    if (!p->nremote_max)
        return 0;
    const struct cfg *c = p->gw->cfg;
    const char *ep = cfg_str(c, "gateway.worker_listen");
    const char *secf = cfg_str(c, "gateway.curve_secret_file");
    const char *allowf = cfg_str(c, "gateway.curve_allowed_keys");
    char err[512];
    if (!*secf || !*allowf) {
        log_error("bad_config", "key=gateway.worker_listen detail=\"remote workers need "
                                "gateway.curve_secret_file and gateway.curve_allowed_keys\"");
        return OTA_ERR_INVAL;
    }
    if (strncmp(ep, "tcp://", 6) != 0) {
        log_error("bad_config", "key=gateway.worker_listen value=\"%s\" detail=\"tcp://HOST:PORT\"",
                  ep);
        return OTA_ERR_INVAL;
    }
    if (curve_allow_load(allowf, &p->allowed, &p->nallowed, err, sizeof err) != 0) {
        log_error("bad_config", "key=gateway.curve_allowed_keys detail=\"%s\"", err);
        return OTA_ERR_INVAL;
    }
    if (curve_key_load(secf, &p->kp, err, sizeof err) != 0) {
        log_error("bad_config", "key=gateway.curve_secret_file detail=\"%s\"", err);
        return OTA_ERR_INVAL;
    }
    return 0;
}

/* Binds gateway.worker_listen as a CurveZMQ server.  The ZAP handler is
 * bound first: a CURVE server without one admits every client. */
static int start_remote(struct pool *p)
{
    const char *ep = cfg_str(p->gw->cfg, "gateway.worker_listen");
    int one = 1, zero = 0, fd;
    size_t fdsz = sizeof fd;
    p->zap = zmq_socket(p->zctx, ZMQ_REP);
    int rc = !p->zap || zmq_setsockopt(p->zap, ZMQ_LINGER, &zero, sizeof zero) ||
             zmq_bind(p->zap, ZAP_ENDPOINT) || zmq_getsockopt(p->zap, ZMQ_FD, &fd, &fdsz) ||
             zmq_setsockopt(p->zsock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
             zmq_setsockopt(p->zsock, ZMQ_CURVE_SECRETKEY, p->kp.sec, CURVE_Z85_LEN) ||
             zmq_setsockopt(p->zsock, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN));
    curve_keypair_wipe(&p->kp);
    if (!rc) {
        p->ev_zap = event_new(p->gw->base, fd, EV_READ | EV_PERSIST, on_zap, p);
        rc = !p->ev_zap || event_add(p->ev_zap, NULL);
    }
    if (!rc)
        rc = zmq_bind(p->zsock, ep);
    if (rc) {
        log_error("zmq_failed", "endpoint=\"%s\" err=\"%s\"", ep, zmq_strerror(zmq_errno()));
        return OTA_ERR_IO;
    }
    log_info("listening", "listener=workers addr=\"%s\" curve=1 allowed_keys=%zu", ep, p->nallowed);
    return 0;
}

int pool_start(struct pool *p)
{
    struct event_base *base = p->gw->base;
    int hwm = 200000, zero = 0, one = 1, fd;
    size_t fdsz = sizeof fd;
    mode_t old = umask(0007);
    p->zctx = zmq_ctx_new();
    p->zsock = p->zctx ? zmq_socket(p->zctx, ZMQ_ROUTER) : NULL;
    int rc = !p->zsock || zmq_setsockopt(p->zsock, ZMQ_LINGER, &zero, sizeof zero) ||
             zmq_setsockopt(p->zsock, ZMQ_ROUTER_MANDATORY, &one, sizeof one) ||
             zmq_setsockopt(p->zsock, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
             zmq_setsockopt(p->zsock, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
             zmq_bind(p->zsock, p->endpoint) || zmq_getsockopt(p->zsock, ZMQ_FD, &fd, &fdsz);
    umask(old);
    if (rc) {
        log_error("zmq_failed", "endpoint=\"%s\" err=\"%s\"", p->endpoint,
                  zmq_strerror(zmq_errno()));
        return OTA_ERR_IO;
    }
    /* After the ipc:// bind: ZeroMQ copies the socket's options into each
     * endpoint when it binds, so only tcp:// gets CurveZMQ. */
    if (p->nremote_max && (rc = start_remote(p)) != 0)
        return rc;
    uint64_t hb = p->gw->set.heartbeat_ms;
    struct timeval tv = {(time_t)(hb / 1000), (suseconds_t)(hb % 1000) * 1000};
    p->ev_zmq = event_new(base, fd, EV_READ | EV_PERSIST, on_zmq, p);
    p->ev_hb = event_new(base, -1, EV_PERSIST, on_heartbeat, p);
    p->ev_chld = evsignal_new(base, SIGCHLD, on_sigchld, p);
    if (!p->ev_zmq || !p->ev_hb || !p->ev_chld || event_add(p->ev_zmq, NULL) ||
        event_add(p->ev_hb, &tv) || event_add(p->ev_chld, NULL))
        return OTA_ERR_NOMEM;
    for (unsigned i = 0; i < p->n; i++) {
        p->w[i].restart_ev = evtimer_new(base, restart_cb, &p->w[i]);
        if (!p->w[i].restart_ev)
            return OTA_ERR_NOMEM;
    }
    for (unsigned i = 0; i < p->n; i++)
        start_one(&p->w[i]);
    /* A child may have exited before the SIGCHLD event existed. */
    on_sigchld(-1, 0, p);
    return 0;
}

static void stop_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maybe_stopped(arg);
}

void pool_stop(struct pool *p, void (*done)(void *arg), void *arg)
{
    p->stopping = 1;
    p->stop_done = done;
    p->stop_arg = arg;
    uint64_t deadline = gw_now_us() + (uint64_t)STOP_DEADLINE_MS * 1000;
    for (unsigned i = 0; i < p->n; i++) {
        struct worker *w = &p->w[i];
        if (w->restart_ev)
            evtimer_del(w->restart_ev);
        if (w->pid > 0) {
            w->state = WK_STOPPING;
            w->stop_deadline_us = deadline;
            kill_worker(w, SIGTERM, "stop");
        }
    }
    log_info("workers_stopping", "workers=%u", p->n);
    /* Reported from the loop, never from inside the caller. */
    p->ev_stop = evtimer_new(p->gw->base, stop_check, p);
    struct timeval now = {0, 0};
    if (p->ev_stop)
        evtimer_add(p->ev_stop, &now);
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    for (unsigned i = 0; i < p->n; i++)
        if (p->w[i].restart_ev)
            event_free(p->w[i].restart_ev);
    struct event *evs[] = {p->ev_zmq, p->ev_hb, p->ev_chld, p->ev_stop, p->ev_zap};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    spawn_free(p->spawn);
    if (p->zsock)
        zmq_close(p->zsock);
    if (p->zap)
        zmq_close(p->zap);
    free(p->allowed);
    curve_keypair_wipe(&p->kp);
    if (p->zctx)
        zmq_ctx_term(p->zctx);
    for (size_t i = 0; i < p->argc; i++)
        free(p->argv[i]);
    free(p->argv);
    free(p->w);
    free(p);
}

/* ---- dispatch -------------------------------------------------------------- */

struct worker *pool_pick(struct pool *p)
{
    /* Least loaded among the workers whose database is usable; only when
     * none is, any live worker (it answers the client itself). */
    struct worker *best = NULL;
    unsigned all = p->n + p->nremote;
    for (unsigned k = 0; k < all; k++) {
        struct worker *w = &p->w[(p->rr + k) % all];
        if (w->state != WK_LIVE || w->nsessions >= w->capacity)
            continue;
        if (!best || (w->db_ok && !best->db_ok) ||
            (w->db_ok == best->db_ok && w->nsessions < best->nsessions))
            best = w;
    }
    if (best)
        p->rr = (best->id + 1) % all;
    return best;
}

void pool_attach(struct worker *w, struct pool_link *l)
{
    l->worker = w;
    TAILQ_INSERT_TAIL(&w->sessions, l, next);
    w->nsessions++;
}

void pool_detach(struct pool_link *l)
{
    struct worker *w = l->worker;
    if (!w)
        return;
    TAILQ_REMOVE(&w->sessions, l, next);
    w->nsessions--;
    l->worker = NULL;
}

unsigned pool_worker_id(const struct worker *w)
{
    return w->id;
}

int pool_ready(const struct pool *p)
{
    for (unsigned i = 0; i < p->n + p->nremote; i++)
        if (p->w[i].state == WK_LIVE && p->w[i].db_ok)
            return 1;
    return 0;
}

size_t pool_count(const struct pool *p)
{
    return p->n + p->nremote;
}

uint64_t pool_remote_refused(const struct pool *p)
{
    return p->remote_refused;
}

void pool_info(const struct pool *p, size_t i, struct pool_worker_info *out)
{
    const struct worker *w = &p->w[i];
    memset(out, 0, sizeof *out);
    out->id = w->id;
    out->pid = w->pid;
    out->live = w->state == WK_LIVE;
    out->db_ok = w->db_ok;
    out->sessions = w->nsessions;
    out->reported_sessions = w->reported;
    out->capacity = w->capacity;
    out->restarts = w->restarts;
    uint64_t now = gw_now_us(), max_ms = p->gw->set.restart_backoff_max_ms;
    out->crash_loop = w->crash_loop &&
                      !(w->state == WK_LIVE && w->live_us && (now - w->live_us) / 1000 >= max_ms);
    out->remote = w->remote;
    if (w->remote) {
        out->pid = (pid_t)w->remote_pid;
        snprintf(out->key, sizeof out->key, "%s", w->key);
        snprintf(out->addr, sizeof out->addr, "%s", w->addr);
    }
    out->last_heartbeat_age_s =
        w->last_seen_us && w->state == WK_LIVE ? (double)(now - w->last_seen_us) / 1e6 : -1;
}

const struct wire_stats *pool_worker_stats(const struct pool *p, size_t i, double *age_s)
{
    const struct worker *w = &p->w[i];
    if (!w->stats_us)
        return NULL;
    *age_s = (double)(gw_now_us() - w->stats_us) / 1e6;
    return &w->stats;
}
