/* supervise: the workers' lives; see pool_int.h.  Starts the local
 * workers (spawn.c), watches them with heartbeats, restarts one that
 * exits with exponential back-off (a crash loop is flagged), kills one
 * that falls silent or never says READY, drops a silent remote worker,
 * and stops them all at the end (SIGTERM, SIGKILL after a deadline). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "config.h"
#include "gw.h"
#include "log.h"
#include "ota_err.h"
#include "pool_int.h"
#include "spawn.h"

static void spawned(void *arg, unsigned id, pid_t pid, int err);
static void worker_exited(struct worker *w, int status);

int pool_start_spawner(struct pool *p)
{
    int id_index;
    int rc = spawn_argv_new(p->gw->cfg, p->endpoint, &p->argv, &p->argc, &id_index);
    if (rc)
        return rc;
    p->spawn = spawn_new(p->gw->base, p->argv, id_index, p->n, geteuid() == 0, spawned, p);
    if (!p->spawn) {
        log_error("spawner_failed", "errno=%d", errno);
        return OTA_ERR_IO;
    }
    return 0;
}

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
    route_early_ready(p, w); /* before an early exit, which then ends it */
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
    route_sessions_lost(w);
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
            route_heartbeat(p, w);
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
            route_sessions_lost(w);
            break;
        case WK_STARTING:
            if (w->pid > 0 && (now - w->started_us) / 1000 > grace)
                kill_worker(w, SIGKILL, "no_ready");
            break;
        case WK_STOPPING:
            route_heartbeat(p, w);
            if (now > w->stop_deadline_us)
                kill_worker(w, SIGKILL, "stop_deadline");
            break;
        case WK_STOPPED:
            break;
        }
    }
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
    if (p->nremote_max && (rc = remote_start(p)) != 0)
        return rc;
    uint64_t hb = p->gw->set.heartbeat_ms;
    struct timeval tv = {(time_t)(hb / 1000), (suseconds_t)(hb % 1000) * 1000};
    p->ev_zmq = event_new(base, fd, EV_READ | EV_PERSIST, route_on_zmq, p);
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
