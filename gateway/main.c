/* ota-gateway: start-up, privileges, signals and the event loop.
 *
 *   ota-gateway [--config FILE] [--key=value ...]
 *
 * Reads the configuration, binds the public, operator and admin listeners,
 * prepares the runtime directory, drops to gateway.user when started as
 * root (keeping only a helper that can start workers), starts the workers
 * and serves until SIGTERM/SIGINT, then drains (drain.c) and exits 0.  This
 * process parses everything from the network and must never load a card
 * key or link the key-handling library. */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "admin.h"
#include "climsg.h"
#include "config.h"
#include "conn.h"
#include "drain.h"
#include "gw.h"
#include "ipcount.h"
#include "listen.h"
#include "log.h"
#include "pool.h"
#include "session.h"
#include "version.h"
#include "wipe.h"
#include "wire.h"

#define PROG "ota-gateway"

static void usage(FILE *f)
{
    fprintf(f, "usage: " PROG " [--config FILE] [--key=value ...]\n"
               "       " PROG " --help | --version\n"
               "every key is documented in ota.conf(5) and deploy/ota.conf.example\n");
}

static int parse_args(struct gw *g, int argc, char **argv)
{
    char err[512];
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(argv[i], "--version") == 0) {
            fputs(OTA_VERSION_LINE(PROG), stdout);
            exit(0);
        }
    }
    g->cfg = cfg_new();
    if (!g->cfg)
        return -1;
    if (path && cfg_load_file(g->cfg, path, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return -1;
    }
    argc = cfg_apply_args(g->cfg, argc, argv, err, sizeof err);
    if (argc < 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return -1;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--config=", 9) == 0)
            continue;
        fprintf(stderr, PROG ": unknown argument '%s'\n", argv[i]);
        usage(stderr);
        return -1;
    }
    return 0;
}

static void read_settings(struct gw *g)
{
    struct gw_settings *s = &g->set;
    const struct cfg *c = g->cfg;
    s->max_connections = (size_t)cfg_int(c, "gateway.max_connections");
    s->max_connections_per_ip = (size_t)cfg_int(c, "gateway.max_connections_per_ip");
    s->max_message = (size_t)cfg_int(c, "gateway.max_message");
    s->max_header_bytes = (size_t)cfg_int(c, "gateway.max_header_bytes");
    s->max_headers = (unsigned)cfg_int(c, "gateway.max_headers");
    s->upgrade_timeout_ms = (uint64_t)cfg_int(c, "gateway.upgrade_timeout_ms");
    s->ping_interval_ms = (uint64_t)cfg_int(c, "gateway.ping_interval_ms");
    s->idle_timeout_ms = (uint64_t)cfg_int(c, "gateway.idle_timeout_ms");
    s->drain_timeout_ms = (uint64_t)cfg_int(c, "gateway.drain_timeout_ms");
    s->first_message_ms = (uint64_t)cfg_int(c, "gateway.first_message_timeout_ms");
    s->max_output = (size_t)cfg_int(c, "gateway.max_output_bytes");
    s->output_stall_ms = (uint64_t)cfg_int(c, "gateway.output_stall_ms");
    s->heartbeat_ms = (uint64_t)cfg_int(c, "gateway.heartbeat_ms");
    s->worker_dead_ms = (uint64_t)cfg_int(c, "gateway.worker_dead_ms");
    s->restart_backoff_ms = (uint64_t)cfg_int(c, "gateway.restart_backoff_ms");
    s->restart_backoff_max_ms = (uint64_t)cfg_int(c, "gateway.restart_backoff_max_ms");
    if (s->restart_backoff_max_ms < s->restart_backoff_ms)
        s->restart_backoff_max_ms = s->restart_backoff_ms;
    s->workers = (unsigned)cfg_int(c, "gateway.workers");
}

/* gateway.proxy_protocol_from: a comma list of IP addresses, stored in
 * canonical form so that they compare with inet_ntop's output. */
static int read_proxy_from(struct gw *g)
{
    const char *list = cfg_str(g->cfg, "gateway.proxy_protocol_from");
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        return -1;
    for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        unsigned char a[16];
        char canon[64];
        int af = strchr(t, ':') ? AF_INET6 : AF_INET;
        if (inet_pton(af, t, a) != 1 || !inet_ntop(af, a, canon, sizeof canon)) {
            log_error("bad_config", "key=gateway.proxy_protocol_from value=\"%s\"", t);
            free(copy);
            return -1;
        }
        char **grown = realloc(g->proxy_from, (g->nproxy_from + 1) * sizeof *grown);
        if (!grown) {
            free(copy);
            return -1;
        }
        g->proxy_from = grown;
        g->proxy_from[g->nproxy_from] = strdup(canon);
        if (!g->proxy_from[g->nproxy_from]) {
            free(copy);
            return -1;
        }
        g->nproxy_from++;
    }
    free(copy);
    return 0;
}

static int make_tables(struct gw *g)
{
    g->nslots = (uint32_t)g->set.max_connections;
    g->slots = calloc(g->nslots, sizeof *g->slots);
    g->free_slots = calloc(g->nslots, sizeof *g->free_slots);
    if (!g->slots || !g->free_slots)
        return -1;
    for (uint32_t i = 0; i < g->nslots; i++)
        g->free_slots[i] = g->nslots - 1 - i;
    g->nfree = g->nslots;
    /* New at every start: see gw.h (session ids) and wire.h (heartbeat). */
    do
        randombytes_buf(&g->incarnation, sizeof g->incarnation);
    while (g->incarnation == 0);
    g->ips = ipcount_new(g->set.max_connections / 4 + 64);
    return g->ips ? 0 : -1;
}

struct ids {
    int root;
    uid_t uid;
    gid_t gid, worker_gid;
    char user[64];
};

static int lookup_users(struct gw *g, struct ids *ids)
{
    ids->root = geteuid() == 0;
    ids->uid = geteuid();
    ids->gid = getegid();
    ids->worker_gid = ids->gid;
    if (!ids->root)
        return 0;
    const char *user = cfg_str(g->cfg, "gateway.user");
    const char *wuser = cfg_str(g->cfg, "worker.user");
    struct passwd *pw = getpwnam(user);
    if (!pw || pw->pw_uid == 0) {
        log_error("bad_user", "key=gateway.user user=%s detail=\"%s\"", user,
                  pw ? "must not be root" : "no such user");
        return -1;
    }
    ids->uid = pw->pw_uid;
    ids->gid = pw->pw_gid;
    snprintf(ids->user, sizeof ids->user, "%s", user);
    struct passwd *wp = getpwnam(wuser);
    if (!wp) {
        log_error("bad_user", "key=worker.user user=%s detail=\"no such user\"", wuser);
        return -1;
    }
    ids->worker_gid = wp->pw_gid;
    return 0;
}

static int drop_privileges(const struct ids *ids)
{
    if (!ids->root)
        return 0;
    if (initgroups(ids->user, ids->gid) != 0 || setgid(ids->gid) != 0 || setuid(ids->uid) != 0) {
        log_error("drop_privileges_failed", "user=%s errno=%d", ids->user, errno);
        return -1;
    }
    if (setuid(0) == 0 || geteuid() == 0) {
        log_error("drop_privileges_failed", "user=%s detail=\"root regained\"", ids->user);
        return -1;
    }
    log_info("privileges_dropped", "user=%s uid=%u", ids->user, (unsigned)ids->uid);
    return 0;
}

/* The parts main.c wires together; struct gw knows none of them. */
struct parts {
    struct sess_ctx sc;
    struct admin *admin;
    struct listener *pub, *op;
    struct drain *drain;
};

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct parts *pt = arg;
    if (sig == SIGHUP) {
        log_reopen();
        log_info("log_reopened", "signal=HUP");
        return;
    }
    log_info("signal", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
    drain_start(pt->drain);
}

static void cleanup(struct gw *g, struct parts *pt, struct event **evs, size_t nevs)
{
    conn_free_all(g);
    for (size_t i = 0; i < nevs; i++)
        if (evs[i])
            event_free(evs[i]);
    drain_free(pt->drain);
    admin_free(pt->admin);
    listener_free(pt->pub);
    listener_free(pt->op);
    pool_free(pt->sc.pool);
    ipcount_free(g->ips);
    for (size_t i = 0; i < g->nproxy_from; i++)
        free(g->proxy_from[i]);
    free(g->proxy_from);
    free(g->slots);
    free(g->free_slots);
    if (g->base)
        event_base_free(g->base);
    cfg_free(g->cfg);
}

int main(int argc, char **argv)
{
    static struct gw g;
    static struct parts pt = {.sc = {.gw = &g}};
    struct ids ids;
    struct event *evs[3] = {NULL, NULL, NULL};
    int rc = 1;

    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0) {
        fprintf(stderr, PROG ": libsodium failed to initialize\n");
        return 1;
    }
    TAILQ_INIT(&g.conns);
    if (parse_args(&g, argc, argv) != 0) {
        cfg_free(g.cfg);
        return 2;
    }
    int json = strcmp(cfg_str(g.cfg, "log.format"), "json") == 0;
    if (log_init(PROG, cfg_str(g.cfg, "log.file"), json,
                 log_parse_level(cfg_str(g.cfg, "log.level"))) != 0) {
        fprintf(stderr, PROG ": cannot open log file '%s'\n", cfg_str(g.cfg, "log.file"));
        cfg_free(g.cfg);
        return 2;
    }
    read_settings(&g);
    met_init(&g.met);
    cm_json_wipe_on_free(free);
    /* Before any other libevent call: its buffers (a client's bytes, with
     * the authCode) are wiped whenever libevent frees or moves them. */
    event_set_mem_functions(malloc, wipe_realloc, wipe_free);
    /* Workers re-parented from the root helper become our children. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);

    g.base = event_base_new();
    if (!g.base || make_tables(&g) != 0 || read_proxy_from(&g) != 0 || lookup_users(&g, &ids) != 0)
        goto out;
    pt.pub = listener_new(&g, WIRE_LISTENER_PUBLIC, &sess_conn_io, &pt.sc);
    pt.op = listener_new(&g, WIRE_LISTENER_OPERATOR, &sess_conn_io, &pt.sc);
    struct pool *pool = pt.sc.pool = pool_new(&g, &sess_pool_io, &pt.sc);
    if (!pt.pub || !pt.op || !pool)
        goto out;
    pt.admin = admin_new(&g, pool);
    pt.drain = drain_new(&g, pool, pt.pub, pt.op);
    if (!pt.admin || !pt.drain)
        goto out;
    if (pool_prepare_dir(pool, ids.uid, ids.gid, ids.worker_gid, ids.root) != 0 ||
        pool_load_curve(pool) != 0 || pool_start_spawner(pool) != 0 || drop_privileges(&ids) != 0 ||
        pool_start(pool) != 0)
        goto out;

    evs[0] = evsignal_new(g.base, SIGTERM, on_signal, &pt);
    evs[1] = evsignal_new(g.base, SIGINT, on_signal, &pt);
    evs[2] = evsignal_new(g.base, SIGHUP, on_signal, &pt);
    if (!evs[0] || !evs[1] || !evs[2] || event_add(evs[0], NULL) || event_add(evs[1], NULL) ||
        event_add(evs[2], NULL))
        goto out;
    log_info("gateway_started", "pid=%ld workers=%u max_connections=%zu incarnation=%016" PRIx64,
             (long)getpid(), g.set.workers, g.set.max_connections, g.incarnation);
    if (event_base_dispatch(g.base) == 0)
        rc = 0;
out:
    if (rc)
        log_error("gateway_failed", "detail=\"start-up or loop failed; see the lines above\"");
    cleanup(&g, &pt, evs, 3);
    return rc;
}
