/* pool: the pool's memory, its runtime directory and what it answers
 * about its workers; see pool.h.  The work is split as pool_int.h says:
 * frames in route.c, remote workers in remote.c, the workers' lives in
 * supervise.c. */
#include "pool.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "config.h"
#include "gw.h"
#include "log.h"
#include "ota_err.h"
#include "pool_int.h"
#include "spawn.h"

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
    spawn_argv_free(p->argv, p->argc);
    free(p->w);
    free(p);
}

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

const uint8_t *pool_worker_seal_pk(const struct worker *w)
{
    return w->seal_pk;
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
