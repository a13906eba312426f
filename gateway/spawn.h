/* spawn: starts ota-worker processes.  Unprivileged, the gateway forks and
 * execs them itself.  Started as root, the gateway first forks a tiny
 * helper that keeps root and can do one thing only: start worker N with
 * the argument vector fixed at start-up (so the worker can read its keys
 * as root and drop to worker.user itself).  The helper double-forks, so
 * every worker is re-parented to the gateway (a child subreaper) and the
 * gateway reaps and supervises it like its own child. */
#ifndef GW_SPAWN_H
#define GW_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

#include <event2/event.h>

struct spawn;
struct cfg;

/* The worker's argument vector: its binary (gateway.worker_path, else
 * beside ota-gateway, else the build tree's), the configuration file and
 * every --key=value override the gateway was given, --connect endpoint
 * and --worker-id 0 (at *id_index, replaced per worker).  0 or a negative
 * ota_err; free with spawn_argv_free. */
int spawn_argv_new(const struct cfg *cfg, const char *endpoint, char ***argv, size_t *argc,
                   int *id_index);
void spawn_argv_free(char **argv, size_t argc);

/* Called with the pid of a started worker, or pid <= 0 and an errno. */
typedef void (*spawn_cb)(void *arg, unsigned id, pid_t pid, int err);

/* argv: the worker's argument vector; argv[id_index] is replaced by the
 * worker id.  helper: use the privileged helper (when root). */
struct spawn *spawn_new(struct event_base *base, char **argv, int id_index, unsigned max_id,
                        int helper, spawn_cb cb, void *arg);
/* Asks for worker id; the callback reports the outcome (at once without a
 * helper, later with one).  Returns 0 or a negative ota_err. */
int spawn_worker(struct spawn *s, unsigned id);
/* Has the helper send SIGTERM or SIGKILL to the last worker it started
 * as id (used when the gateway itself may not signal it). */
int spawn_signal(struct spawn *s, unsigned id, int sig);
/* The helper's pid (0 without one): its exit is not a worker's. */
pid_t spawn_helper_pid(const struct spawn *s);
void spawn_free(struct spawn *s);

#endif
