/* spawn: worker process creation; see spawn.h.  The privileged helper
 * reads {op, id, signal} requests from a socket pair and answers spawns
 * with {id, pid, errno} records; it never runs anything but the fixed worker
 * command, never reads anything else, and exits when the gateway goes. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <limits.h>

#include "config.h"
#include "log.h"
#include "ota_err.h"

struct spawn {
    struct event_base *base;
    char **argv;
    int id_index;
    unsigned max_id;
    spawn_cb cb;
    void *arg;
    int fd; /* helper socket, -1 without a helper */
    pid_t helper;
    struct event *ev;
};

/* Requests: start worker id, or signal the last worker started as id
 * (TERM or KILL only; a worker still root while it loads its keys cannot
 * be signalled by the unprivileged gateway). */
enum { REQ_SPAWN = 1, REQ_SIGNAL = 2 };

struct request {
    uint32_t op;
    uint32_t id;
    int32_t sig;
};

struct reply {
    uint32_t id;
    int32_t pid;
    int32_t err;
};

/* In the new child: a clean signal state, no inherited descriptors but
 * 0-2, then exec.  Only async-signal-safe calls after fork. */
static void exec_worker(char **argv, int id_index, unsigned id)
{
    char idbuf[16];
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    close_range(3, ~0U, 0);
    snprintf(idbuf, sizeof idbuf, "%u", id);
    argv[id_index] = idbuf;
    execv(argv[0], argv);
    _exit(127);
}

static pid_t fork_worker(char **argv, int id_index, unsigned id, int *err)
{
    pid_t pid = fork();
    if (pid < 0) {
        *err = errno;
        return -1;
    }
    if (pid == 0)
        exec_worker(argv, id_index, id);
    *err = 0;
    return pid;
}

static int read_full(int fd, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* The helper's whole life. */
static void helper_main(int fd, char **argv, int id_index, unsigned max_id)
{
    pid_t *started = calloc(max_id ? max_id : 1, sizeof *started);
    if (!started)
        _exit(1);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(0);
    /* The gateway decides when workers stop; the helper lives exactly as
     * long as the gateway's end of the socket. */
    signal(SIGCHLD, SIG_DFL);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        struct request q;
        if (read_full(fd, &q, sizeof q) != 0)
            _exit(0);
        uint32_t id = q.id;
        if (q.op == REQ_SIGNAL) {
            if (id < max_id && started[id] > 0 && (q.sig == SIGTERM || q.sig == SIGKILL))
                kill(started[id], q.sig);
            continue;
        }
        struct reply r = {.id = id, .pid = -1, .err = EINVAL};
        if (q.op == REQ_SPAWN && id < max_id) {
            int p[2];
            if (pipe2(p, O_CLOEXEC) != 0) {
                r.err = errno;
            } else {
                pid_t mid = fork();
                if (mid == 0) {
                    /* The middle process: start the worker, report its pid
                     * through the pipe and vanish, so that the worker is
                     * re-parented to the gateway. */
                    close(p[0]);
                    int e = 0;
                    int32_t pid = (int32_t)fork_worker(argv, id_index, id, &e);
                    int32_t rec[2] = {pid, e};
                    if (write(p[1], rec, sizeof rec) < 0)
                        _exit(1);
                    _exit(0);
                }
                close(p[1]);
                if (mid < 0) {
                    r.err = errno;
                } else {
                    int32_t rec[2];
                    if (read_full(p[0], rec, sizeof rec) == 0) {
                        r.pid = rec[0];
                        r.err = rec[1];
                    } else {
                        r.err = EIO;
                    }
                    while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
                        ;
                    if (r.pid > 0)
                        started[id] = r.pid;
                }
                close(p[0]);
            }
        }
        if (write(fd, &r, sizeof r) != (ssize_t)sizeof r)
            _exit(1);
    }
}

static void on_helper(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct spawn *s = arg;
    struct reply r;
    ssize_t n = recv(fd, &r, sizeof r, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n != (ssize_t)sizeof r) {
        log_error("spawn_helper_gone", "pid=%ld", (long)s->helper);
        event_del(s->ev);
        return;
    }
    s->cb(s->arg, r.id, r.pid, r.err);
}

struct spawn *spawn_new(struct event_base *base, char **argv, int id_index, unsigned max_id,
                        int helper, spawn_cb cb, void *arg)
{
    struct spawn *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base = base;
    s->argv = argv;
    s->id_index = id_index;
    s->max_id = max_id;
    s->cb = cb;
    s->arg = arg;
    s->fd = -1;
    if (!helper)
        return s;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        free(s);
        return NULL;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        free(s);
        return NULL;
    }
    if (pid == 0) {
        close(sv[0]);
        /* Keep only the socket and stdio. */
        if (sv[1] != 3) {
            dup2(sv[1], 3);
            sv[1] = 3;
        }
        close_range(4, ~0U, 0);
        helper_main(sv[1], argv, id_index, max_id);
        _exit(0);
    }
    close(sv[1]);
    s->fd = sv[0];
    s->helper = pid;
    s->ev = event_new(base, s->fd, EV_READ | EV_PERSIST, on_helper, s);
    if (!s->ev || event_add(s->ev, NULL) != 0) {
        spawn_free(s);
        return NULL;
    }
    return s;
}

int spawn_worker(struct spawn *s, unsigned id)
{
    if (s->fd < 0) {
        int err = 0;
        pid_t pid = fork_worker(s->argv, s->id_index, id, &err);
        s->cb(s->arg, id, pid, err);
        return pid > 0 ? 0 : OTA_ERR_IO;
    }
    struct request q = {REQ_SPAWN, id, 0};
    if (send(s->fd, &q, sizeof q, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)sizeof q)
        return OTA_ERR_IO;
    return 0;
}

int spawn_signal(struct spawn *s, unsigned id, int sig)
{
    if (s->fd < 0)
        return OTA_ERR_STATE;
    struct request q = {REQ_SIGNAL, id, sig};
    if (send(s->fd, &q, sizeof q, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)sizeof q)
        return OTA_ERR_IO;
    return 0;
}

pid_t spawn_helper_pid(const struct spawn *s)
{
    return s ? s->helper : 0;
}

void spawn_free(struct spawn *s)
{
    if (!s)
        return;
    if (s->ev)
        event_free(s->ev);
    if (s->fd >= 0)
        close(s->fd); /* the helper reads EOF and exits; the pool reaps it */
    free(s);
}

/* The worker binary: gateway.worker_path, else next to ota-gateway, else
 * ../worker/ota-worker beside it (the build tree). */
static int worker_path(const struct cfg *cfg, char *out, size_t cap)
{
    const char *cfgd = cfg_str(cfg, "gateway.worker_path");
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

int spawn_argv_new(const struct cfg *cfg, const char *endpoint, char ***argvp, size_t *argcp,
                   int *id_index)
{
    char path[PATH_MAX];
    if (worker_path(cfg, path, sizeof path) != 0) {
        log_error("worker_not_found", "path=\"%s\"", path);
        return OTA_ERR_NOT_FOUND;
    }
    size_t nov;
    const char *const *ov = cfg_override_args(cfg, &nov);
    const char *conf = cfg_path(cfg);
    char **argv = *argvp = calloc(nov + 10, sizeof *argv);
    if (!argv)
        return OTA_ERR_NOMEM;
    size_t i = 0;
    argv[i++] = strdup(path);
    if (conf) {
        argv[i++] = strdup("--config");
        argv[i++] = strdup(conf);
    }
    argv[i++] = strdup("--connect");
    argv[i++] = strdup(endpoint);
    argv[i++] = strdup("--worker-id");
    *id_index = (int)i;
    argv[i++] = strdup("0");
    for (size_t k = 0; k < nov; k++)
        argv[i++] = strdup(ov[k]);
    *argcp = i;
    for (size_t k = 0; k < i; k++)
        if (!argv[k])
            return OTA_ERR_NOMEM;
    return 0;
}

void spawn_argv_free(char **argv, size_t argc)
{
    if (!argv)
        return;
    for (size_t i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
}
