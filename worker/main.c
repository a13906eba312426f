/* ota-worker: the key-holding process.  Start-up, privileges, event loop.
 *
 *   ota-worker --config FILE --connect ENDPOINT --worker-id N [--key=value ...]
 *
 * Refuses core dumps, loads the sealed master keys into sodium_malloc
 * memory, drops to worker.user when started as root, refuses to run unless
 * the database commits synchronously, then connects a ZeroMQ DEALER to the
 * gateway (worker/link.c) and runs sessions (worker/shell.c) with the
 * ledger in PostgreSQL (worker/ledger_pg.c), reporting to the gateway's
 * /metrics (worker/stats.c), until SIGTERM or until the gateway falls
 * silent.  This file wires those parts and owns signals, the drain and the
 * process's identity; it must never block once the loop runs and never log
 * a key, a code, a token or a full UID. */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "config.h"
#include "curve_key.h"
#include "engine.h"
#include "engine_cfg.h"
#include "keyfile.h"
#include "link.h"
#include "ledger_pg.h"
#include "log.h"
#include "ota_err.h"
#include "shell.h"
#include "stats.h"
#include "token_check.h"
#include "version.h"
#include "wire.h"
#include "num.h"

#define PROG "ota-worker"
/* After the sessions are gone (or abandoned), how long database writes in
 * flight may take before the worker exits anyway. */
#define DB_FLUSH_MS 5000

enum drain_phase {
    RUNNING = 0,
    DRAIN_SESSIONS, /* SIGTERM: no new sessions, the open ones finish */
    DRAIN_DB,       /* sessions abandoned; ledger writes in flight finish */
};

struct worker {
    struct cfg *cfg;
    unsigned id;
    const char *endpoint;
    struct master_keys *keys;
    struct eng_ctx *eng;
    struct event_base *base;
    struct shell *shell;
    struct ledger_pg *pg;
    struct tokc *tokc;
    struct link *link;
    struct stats *stats;
    struct event *ev_hb, *ev_drain, *ev_term, *ev_int, *ev_hup, *ev_gone;
    uint64_t last_gateway_ms;
    uint64_t gateway_dead_ms;
    /* A remote worker (tcp://) announces itself again after this much
     * silence (a restarted gateway does not know it); ready_sent_ms is its
     * last READY. */
    int remote;
    uint64_t reannounce_ms, ready_sent_ms;
    enum drain_phase phase;
    uint64_t phase_deadline_ms;
    int exit_code;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: " PROG " --config FILE --connect ENDPOINT --worker-id N "
               "[--key=value ...]\n"
               "       " PROG " --help | --version\n"
               "ota-gateway starts its local workers itself; run one by hand only as a\n"
               "remote worker (--connect tcp://HOST:PORT).  Every key is documented in\n"
               "ota.conf(5) and deploy/ota.conf.example.\n");
}

/* Before anything secret exists in this process. */
static int harden_process(void)
{
    struct rlimit no_core = {0, 0};
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || setrlimit(RLIMIT_CORE, &no_core) != 0) {
        fprintf(stderr, PROG ": cannot disable core dumps: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* Finds the value of --NAME VALUE or --NAME=VALUE in argv (no removal). */
static const char *arg_value(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0 || strncmp(argv[i] + 2, name, n) != 0)
            continue;
        const char *rest = argv[i] + 2 + n;
        if (*rest == '=')
            return rest + 1;
        if (*rest == '\0' && i + 1 < argc)
            return argv[i + 1];
    }
    return NULL;
}

/* Loads the file, applies --key=value overrides, then requires that what
 * is left is exactly our own three options. */
static int parse_args(struct worker *w, int argc, char **argv)
{
    char err[256];
    const char *path = arg_value(argc, argv, "config");
    const char *id = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(argv[i], "--version") == 0) {
            fputs(OTA_VERSION_LINE(PROG), stdout);
            exit(0);
        }
    }
    w->cfg = cfg_new();
    if (!w->cfg) {
        fprintf(stderr, PROG ": out of memory\n");
        return -1;
    }
    if (path && cfg_load_file(w->cfg, path, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return -1;
    }
    argc = cfg_apply_args(w->cfg, argc, argv, err, sizeof err);
    if (argc < 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *names[] = {"config", "connect", "worker-id"};
        int known = 0;
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
            size_t n = strlen(names[k]);
            if (strncmp(a, "--", 2) == 0 && strncmp(a + 2, names[k], n) == 0) {
                if (a[2 + n] == '=') {
                    known = 1;
                } else if (a[2 + n] == '\0' && i + 1 < argc) {
                    known = 1;
                    i++;
                }
            }
        }
        if (!known) {
            fprintf(stderr, PROG ": unknown argument '%s'\n", a);
            usage(stderr);
            return -1;
        }
    }
    w->endpoint = arg_value(argc, argv, "connect");
    id = arg_value(argc, argv, "worker-id");
    if (!w->endpoint || !*w->endpoint || !id) {
        usage(stderr);
        return -1;
    }
    long long v;
    if (num_parse_ll(id, 0, 65535, &v) != 0) {
        fprintf(stderr, PROG ": bad --worker-id '%s'\n", id);
        return -1;
    }
    w->id = (unsigned)v;
    return 0;
}

static int start_log(const struct worker *w)
{
    const char *lvl = cfg_str(w->cfg, "log.level");
    enum log_level min = LOG_LVL_INFO;
    if (strcmp(lvl, "debug") == 0)
        min = LOG_LVL_DEBUG;
    else if (strcmp(lvl, "warn") == 0)
        min = LOG_LVL_WARN;
    else if (strcmp(lvl, "error") == 0)
        min = LOG_LVL_ERROR;
    int json = strcmp(cfg_str(w->cfg, "log.format"), "json") == 0;
    if (log_init(PROG, cfg_str(w->cfg, "log.file"), json, min) != 0) {
        fprintf(stderr, PROG ": cannot open log file '%s'\n", cfg_str(w->cfg, "log.file"));
        return -1;
    }
    return 0;
}

/* The KEK comes from worker.kek_file, or else from the passphrase in the
 * environment variable named by worker.kek_passphrase_env, which is wiped
 * from the environment once read. */
static int load_keys(struct worker *w)
{
    char err[256] = "";
    const char *keyfile = cfg_str(w->cfg, "worker.keyfile");
    const char *kek_file = cfg_str(w->cfg, "worker.kek_file");
    int rc;

    w->keys = keyfile_alloc();
    if (!w->keys) {
        log_error("keys_alloc_failed", "worker=%u", w->id);
        return -1;
    }
    if (kek_file && *kek_file) {
        rc = keyfile_open(keyfile, w->keys, KEYFILE_KEK_FILE, kek_file, err, sizeof err);
    } else {
        const char *var = cfg_str(w->cfg, "worker.kek_passphrase_env");
        char *env = var && *var ? getenv(var) : NULL;
        if (!env || !*env) {
            log_error("no_kek", "worker=%u detail=%s", w->id,
                      "neither worker.kek_file nor the passphrase variable is set");
            return -1;
        }
        size_t n = strlen(env);
        char *pass = sodium_malloc(n + 1);
        if (!pass) {
            log_error("keys_alloc_failed", "worker=%u", w->id);
            return -1;
        }
        memcpy(pass, env, n + 1);
        sodium_memzero(env, n);
        unsetenv(var);
        rc = keyfile_open(keyfile, w->keys, KEYFILE_KEK_PASSPHRASE, pass, err, sizeof err);
        sodium_free(pass);
    }
    if (rc != 0) {
        log_error("keyfile_open_failed", "worker=%u path=\"%s\" err=%s detail=\"%s\"", w->id,
                  keyfile, ota_strerror(rc), err);
        return -1;
    }
    return 0;
}

static int drop_privileges(const struct worker *w)
{
    if (geteuid() != 0)
        return 0;
    const char *user = cfg_str(w->cfg, "worker.user");
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        log_error("no_such_user", "worker=%u user=%s", w->id, user);
        return -1;
    }
    if (pw->pw_uid == 0) {
        log_error("user_is_root", "worker=%u user=%s", w->id, user);
        return -1;
    }
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        log_error("drop_privileges_failed", "worker=%u user=%s errno=%d", w->id, user, errno);
        return -1;
    }
    if (setuid(0) == 0) {
        log_error("drop_privileges_failed", "worker=%u user=%s detail=\"root regained\"", w->id,
                  user);
        return -1;
    }
    /* Changing credentials resets the dumpable flag. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        log_error("harden_failed", "worker=%u errno=%d", w->id, errno);
        return -1;
    }
    log_info("privileges_dropped", "worker=%u user=%s uid=%u", w->id, user, (unsigned)pw->pw_uid);
    return 0;
}

static int make_engine(struct worker *w)
{
    struct eng_config ec;
    char err[256];
    if (eng_config_read(w->cfg, &ec, err, sizeof err) != 0) {
        log_error("bad_config", "%s", err);
        return -1;
    }
    w->eng = eng_new(&ec, w->keys);
    if (!w->eng) {
        log_error("engine_failed", "worker=%u detail=\"bad configuration or no memory\"", w->id);
        return -1;
    }
    return 0;
}

/* ---- the gateway link (worker/link.c) ------------------------------------- */

static void send_ready(struct worker *w)
{
    uint8_t frame[WIRE_MAX_FRAME];
    struct wire_ready r = {.pid = (uint32_t)getpid(),
                           .capacity = (uint32_t)cfg_int(w->cfg, "worker.capacity")};
    if (!w->shell)
        return; /* sessions abandoned: nothing more to announce */
    memcpy(r.seal_pk, shell_seal_pk(w->shell), sizeof r.seal_pk);
    int n = wire_encode_ready(frame, sizeof frame, &r);
    if (n < 0 || link_send(w->link, frame, (size_t)n) != 0)
        log_error("send_failed", "worker=%u frame=ready", w->id);
    w->ready_sent_ms = shell_now_ms();
}

/* The shell's and the statistics' way to the gateway. */
static int gateway_send(void *arg, const uint8_t *frame, size_t len)
{
    struct worker *w = arg;
    return link_send(w->link, frame, len);
}

/* A frame from the gateway: to the shell (or, once the sessions are
 * abandoned, only as a sign of life). */
static void on_gateway_frame(void *arg, const uint8_t *frame, size_t len)
{
    struct worker *w = arg;
    if (w->shell) {
        if (shell_on_frame(w->shell, frame, len) != 0)
            w->last_gateway_ms = shell_now_ms();
        return;
    }
    struct wire_hdr h;
    if (wire_decode_hdr(frame, len, &h) == 0)
        w->last_gateway_ms = shell_now_ms();
}

/* ---- ledger ------------------------------------------------------------ */

static void ledger_submit(void *arg, const struct ledger_req *req)
{
    struct worker *w = arg;
    stats_on_request(w->stats, req);
    ledger_pg_submit(w->pg, req);
}

static void on_ledger_reply(void *arg, uint64_t session, const struct ledger_reply *r)
{
    struct worker *w = arg;
    if (w->shell)
        shell_on_ledger_reply(w->shell, session, r);
}

/* ---- operator tokens (worker/token_check.c) ------------------------------ */

static int eng_verdict(enum tokc_verdict v)
{
    switch (v) {
    case TOKC_QUEUED:
        return 0;
    case TOKC_OK:
        return ENG_TOKEN_OK;
    case TOKC_LIMITED:
        return ENG_TOKEN_LIMITED;
    case TOKC_BUSY:
        return ENG_TOKEN_BUSY;
    default:
        return ENG_TOKEN_WRONG;
    }
}

static int token_submit(void *arg, uint64_t session, uint64_t ticket, const struct eng_token *req)
{
    struct worker *w = arg;
    return eng_verdict(tokc_submit(w->tokc, session, ticket, req->token, req->len, req->peer));
}

static void on_token_verdict(void *arg, uint64_t session, uint64_t ticket, enum tokc_verdict v)
{
    struct worker *w = arg;
    if (w->shell)
        shell_on_token_verdict(w->shell, session, ticket, eng_verdict(v));
}

static int make_token_check(struct worker *w)
{
    struct tokc_config tc = {
        .max_failures = (uint32_t)cfg_int(w->cfg, "worker.token_failures_per_peer"),
        .window_s = (uint32_t)cfg_int(w->cfg, "worker.token_failure_window_s"),
        .queue = (uint32_t)cfg_int(w->cfg, "worker.token_check_queue"),
    };
    const char *hash = cfg_str(w->cfg, "worker.operator_token_hash");
    if (strlen(hash) >= sizeof tc.hash) {
        log_error("bad_config", "key=worker.operator_token_hash detail=\"too long\"");
        return -1;
    }
    memcpy(tc.hash, hash, strlen(hash) + 1);
    w->tokc = tokc_new(w->base, &tc, on_token_verdict, w, shell_now_ms);
    if (!w->tokc)
        log_error("token_check_failed", "worker=%u detail=\"bad configuration or no thread\"",
                  w->id);
    return w->tokc ? 0 : -1;
}

/* ---- lifecycle ---------------------------------------------------------- */

static void enter_phase(struct worker *w, enum drain_phase p, const char *why)
{
    if (p <= w->phase)
        return;
    uint64_t now = shell_now_ms();
    w->phase = p;
    if (p == DRAIN_SESSIONS) {
        /* Sessions end by their own operation deadline; a little margin
         * for their last ledger writes. */
        w->phase_deadline_ms =
            now + (uint64_t)cfg_int(w->cfg, "worker.operation_timeout_ms") + DB_FLUSH_MS;
        shell_set_draining(w->shell, 1);
        stats_stop_counts(w->stats);
        log_info("draining", "worker=%u reason=%s sessions=%" PRIu32, w->id, why,
                 shell_sessions(w->shell));
    } else {
        w->phase_deadline_ms = now + DB_FLUSH_MS;
        uint32_t left = w->shell ? shell_sessions(w->shell) : 0;
        if (left)
            log_warn("sessions_abandoned", "worker=%u reason=%s sessions=%" PRIu32, w->id, why,
                     left);
        /* Abandoned sessions send nothing more; their leases expire. */
        shell_free(w->shell);
        w->shell = NULL;
    }
    struct timeval tick = {0, 100 * 1000};
    event_add(w->ev_drain, &tick);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    uint64_t now = shell_now_ms();
    if (w->phase == DRAIN_SESSIONS &&
        ((shell_sessions(w->shell) == 0 && ledger_pg_pending(w->pg) == 0) ||
         now >= w->phase_deadline_ms))
        enter_phase(w, DRAIN_DB, shell_sessions(w->shell) ? "drain_timeout" : "drained");
    if (w->phase == DRAIN_DB) {
        size_t pending = ledger_pg_pending(w->pg);
        if (pending == 0 || now >= w->phase_deadline_ms) {
            if (pending)
                log_warn("db_writes_abandoned", "worker=%u pending=%zu", w->id, pending);
            event_base_loopbreak(w->base);
            return;
        }
    }
    struct timeval tick = {0, 100 * 1000};
    event_add(w->ev_drain, &tick);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    uint8_t frame[WIRE_MAX_FRAME];
    struct wire_heartbeat hb = {.sessions = w->shell ? shell_sessions(w->shell) : 0,
                                .db_ok = (uint8_t)ledger_pg_ready(w->pg)};
    int n = wire_encode_heartbeat(frame, sizeof frame, &hb);
    if (n < 0 || link_send(w->link, frame, (size_t)n) != 0)
        log_warn("send_failed", "worker=%u frame=heartbeat", w->id);
    uint64_t now = shell_now_ms(), silent = now - w->last_gateway_ms;
    if (w->remote) {
        /* A remote worker outlives its gateway.  A gateway that knows us
         * heartbeats; silence means it restarted (it does not know us) or
         * the connection came back under a new routing id: announce
         * ourselves again, and keep doing so until a gateway answers.  Our
         * sessions' clients are gone with the old connection; their
         * deadlines settle them.  A READY to a gateway that still knows us
         * ends those sessions there, which the silence already did. */
        if (silent > w->reannounce_ms && now - w->ready_sent_ms > w->reannounce_ms &&
            w->phase == RUNNING) {
            log_warn("gateway_silent", "worker=%u silent_ms=%" PRIu64 " action=announce", w->id,
                     silent);
            send_ready(w);
        }
        return;
    }
    if (silent > w->gateway_dead_ms && w->phase < DRAIN_DB) {
        log_error("gateway_silent", "worker=%u silent_ms=%" PRIu64, w->id, silent);
        w->exit_code = 1;
        enter_phase(w, DRAIN_DB, "gateway_silent");
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    if (sig == SIGUSR2) {
        /* PR_SET_PDEATHSIG: the gateway that started us is gone, and with
         * it every client of our sessions.  Finish the database writes. */
        if (w->phase < DRAIN_DB) {
            log_error("gateway_gone", "worker=%u", w->id);
            w->exit_code = 1;
            enter_phase(w, DRAIN_DB, "gateway_gone");
        }
        return;
    }
    if (sig == SIGHUP) {
        log_reopen();
        return;
    }
    /* A second SIGTERM/SIGINT cuts the drain short. */
    if (w->phase == RUNNING)
        enter_phase(w, DRAIN_SESSIONS, sig == SIGTERM ? "sigterm" : "sigint");
    else
        enter_phase(w, DRAIN_DB, "second_signal");
}

static int start_loop(struct worker *w)
{
    struct ledger_pg_opts po = {.conninfo = cfg_str(w->cfg, "db.conninfo"),
                                .nconns = (unsigned)cfg_int(w->cfg, "worker.db_connections"),
                                .group_max = (unsigned)cfg_int(w->cfg, "worker.db_group_max"),
                                /* The engine's closing grace outlasts it. */
                                .request_timeout_ms =
                                    (uint32_t)cfg_int(w->cfg, "db.request_timeout_ms")};
    struct shell_io io = {
        .send = gateway_send, .ledger = ledger_submit, .token = token_submit, .arg = w};
    long long cap = cfg_int(w->cfg, "worker.capacity");
    long long hb_ms = cfg_int(w->cfg, "gateway.heartbeat_ms");

    if (cap <= 0 || cap > (1 << 24) || hb_ms <= 0 || hb_ms > 600000) {
        log_error("bad_config", "worker=%u detail=\"worker.capacity or gateway.heartbeat_ms\"",
                  w->id);
        return -1;
    }
    w->base = event_base_new();
    if (!w->base)
        return -1;
    w->pg = ledger_pg_new(w->base, &po, on_ledger_reply, w);
    w->shell = shell_new(w->base, w->eng, (uint32_t)cap, &io);
    if (!w->pg || !w->shell || make_token_check(w) != 0)
        return -1;
    w->link = link_new(w->base, w->cfg, w->id, w->endpoint, on_gateway_frame, w);
    if (!w->link)
        return -1;
    w->stats = stats_new(w->base, w->pg, w->eng, w->id, gateway_send, w);
    if (!w->stats)
        return -1;

    struct timeval hb = {.tv_sec = hb_ms / 1000, .tv_usec = (hb_ms % 1000) * 1000};
    w->ev_hb = event_new(w->base, -1, EV_PERSIST, on_heartbeat, w);
    w->ev_drain = evtimer_new(w->base, on_drain_tick, w);
    w->ev_term = evsignal_new(w->base, SIGTERM, on_signal, w);
    w->ev_int = evsignal_new(w->base, SIGINT, on_signal, w);
    w->ev_hup = evsignal_new(w->base, SIGHUP, on_signal, w);
    w->ev_gone = evsignal_new(w->base, SIGUSR2, on_signal, w);
    if (!w->ev_hb || !w->ev_drain || !w->ev_term || !w->ev_int || !w->ev_hup || !w->ev_gone ||
        event_add(w->ev_hb, &hb) || event_add(w->ev_term, NULL) || event_add(w->ev_int, NULL) ||
        event_add(w->ev_hup, NULL) || event_add(w->ev_gone, NULL))
        return -1;
    /* A local worker (ipc://) is the gateway's child: when the gateway dies
     * (even by SIGKILL) the kernel tells us at once, instead of after ten
     * missed heartbeats.  Set here, after privileges were dropped (that
     * clears it) and once the handler exists.  Remote workers outlive a
     * gateway restart by design and reconnect. */
    if (strncmp(w->endpoint, "ipc://", 6) == 0 && prctl(PR_SET_PDEATHSIG, SIGUSR2) != 0) {
        log_error("harden_failed", "worker=%u what=pdeathsig errno=%d", w->id, errno);
        return -1;
    }
    /* The gateway heartbeats every gateway.heartbeat_ms; ten missed in a
     * row means it is gone (it restarts a local worker when it comes
     * back); a remote worker announces itself again after three. */
    w->gateway_dead_ms = (uint64_t)hb_ms * 10;
    w->remote = strncmp(w->endpoint, "tcp://", 6) == 0;
    w->reannounce_ms = (uint64_t)hb_ms * 3;
    w->last_gateway_ms = shell_now_ms();
    send_ready(w);
    log_info("worker_started", "worker=%u pid=%ld capacity=%lld endpoint=\"%s\"", w->id,
             (long)getpid(), cap, w->endpoint);
    return 0;
}

static void cleanup(struct worker *w)
{
    shell_free(w->shell);
    tokc_free(w->tokc);
    stats_free(w->stats);
    ledger_pg_free(w->pg);
    struct event *evs[] = {w->ev_hb, w->ev_drain, w->ev_term, w->ev_int, w->ev_hup, w->ev_gone};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    link_free(w->link);
    if (w->base)
        event_base_free(w->base);
    eng_ctx_free(w->eng);
    keyfile_free(w->keys);
    cfg_free(w->cfg);
}

int main(int argc, char **argv)
{
    struct worker w = {0};
    char err[256];

    if (harden_process() != 0)
        return 1;
    if (sodium_init() < 0) {
        fprintf(stderr, PROG ": libsodium failed to initialize\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (parse_args(&w, argc, argv) != 0 || start_log(&w) != 0) {
        cfg_free(w.cfg);
        return 2;
    }
    w.exit_code = 1;
    if (load_keys(&w) != 0 || drop_privileges(&w) != 0)
        goto out;
    int rc = ledger_pg_check(cfg_str(w.cfg, "db.conninfo"), err, sizeof err);
    if (rc != 0) {
        log_error(rc == OTA_ERR_STATE ? "db_not_durable" : "db_unreachable",
                  "worker=%u detail=\"%s\"", w.id, err);
        goto out;
    }
    if (make_engine(&w) != 0 || start_loop(&w) != 0) {
        log_error("startup_failed", "worker=%u", w.id);
        goto out;
    }
    w.exit_code = 0;
    event_base_dispatch(w.base);
    log_info("worker_stopped", "worker=%u exit=%d", w.id, w.exit_code);
out:
    cleanup(&w);
    return w.exit_code;
}
