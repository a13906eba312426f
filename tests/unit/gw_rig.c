/* gw_rig: see gw_rig.h. */
#include "gw_rig.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>
#include <zmq.h>

#include "config.h"
#include "wire.h"

static void set(struct cfg *c, const char *key, const char *value)
{
    char err[256];
    ck_assert_msg(cfg_set(c, key, value, err, sizeof err) == 0, "%s", err);
}

static void write_script(const char *path)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("#!/bin/sh\nexec sleep 300\n", f);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0755), 0);
}

void rig_init(struct rig *r, const struct pool_io *io, void *arg)
{
    memset(r, 0, sizeof *r);
    /* The pool reaps its workers with waitpid(-1): they must be ours even
     * when the root helper (double fork) starts them. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    snprintf(r->dir, sizeof r->dir, "/tmp/gw_rig.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(r->dir));
    char script[128], run[128];
    snprintf(script, sizeof script, "%s/worker.sh", r->dir);
    snprintf(run, sizeof run, "%s/run", r->dir);
    write_script(script);

    struct gw *g = &r->g;
    TAILQ_INIT(&g->conns);
    g->base = event_base_new();
    g->cfg = cfg_new();
    ck_assert_ptr_nonnull(g->base);
    ck_assert_ptr_nonnull(g->cfg);
    set(g->cfg, "gateway.worker_path", script);
    set(g->cfg, "gateway.runtime_dir", run);
    struct gw_settings *s = &g->set;
    s->workers = 1;
    s->max_connections = 16;
    s->max_connections_per_ip = 16;
    s->max_message = 8192;
    s->max_header_bytes = 4096;
    s->max_headers = 32;
    s->max_output = 1 << 20;
    s->upgrade_timeout_ms = s->idle_timeout_ms = s->ping_interval_ms = 60000;
    s->first_message_ms = s->output_stall_ms = s->drain_timeout_ms = 60000;
    s->heartbeat_ms = 50;
    s->worker_dead_ms = 60000;
    s->restart_backoff_ms = 50;
    s->restart_backoff_max_ms = 1000;
    met_init(&g->met);
    g->nslots = 16;
    g->slots = calloc(g->nslots, sizeof *g->slots);
    g->free_slots = calloc(g->nslots, sizeof *g->free_slots);
    ck_assert_ptr_nonnull(g->slots);
    ck_assert_ptr_nonnull(g->free_slots);
    for (uint32_t i = 0; i < g->nslots; i++)
        g->free_slots[i] = g->nslots - 1 - i;
    g->nfree = g->nslots;
    g->incarnation = 0x1122334455667788ull;

    r->pool = pool_new(g, io, arg);
    ck_assert_ptr_nonnull(r->pool);
    ck_assert_int_eq(pool_prepare_dir(r->pool, geteuid(), getegid(), getegid(), 0), 0);
    ck_assert_int_eq(pool_start_spawner(r->pool), 0);
    ck_assert_int_eq(pool_start(r->pool), 0);
}

void rig_turn(struct rig *r)
{
    event_base_loop(r->g.base, EVLOOP_NONBLOCK);
    usleep(1000);
}

void rig_send(struct rig *r, const uint8_t *frame, int n)
{
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(zmq_send(r->dealer, frame, (size_t)n, 0), n);
}

/* Any next frame (heartbeats included). */
static int recv_any(struct rig *r, uint8_t *buf, size_t cap)
{
    for (int i = 0; i < 10000; i++) {
        int n = zmq_recv(r->dealer, buf, cap, ZMQ_DONTWAIT);
        if (n >= 0)
            return n;
        rig_turn(r);
    }
    return -1;
}

int rig_recv(struct rig *r, uint8_t *buf, size_t cap)
{
    for (;;) {
        int n = recv_any(r, buf, cap);
        struct wire_hdr h;
        if (n < 0 || wire_decode_hdr(buf, (size_t)n, &h) != 0 || h.type != WIRE_HEARTBEAT)
            return n;
    }
}

void rig_worker_ready(struct rig *r, uint32_t capacity)
{
    struct pool_worker_info wi;
    RIG_WAIT(r, (pool_info(r->pool, 0, &wi), wi.pid > 0));
    r->worker_pid = wi.pid;
    char ep[160];
    snprintf(ep, sizeof ep, "ipc://%s/run/workers.sock", r->dir);
    if (!r->zctx)
        r->zctx = zmq_ctx_new();
    if (r->dealer)
        zmq_close(r->dealer);
    r->dealer = zmq_socket(r->zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(r->dealer, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_connect(r->dealer, ep), 0);
    uint8_t f[WIRE_MAX_FRAME];
    struct wire_ready rd = {.pid = (uint32_t)wi.pid, .capacity = capacity};
    ck_assert_int_ge(sodium_init(), 0);
    ck_assert_int_eq(crypto_box_keypair(r->seal.pk, r->seal.sk), 0);
    memcpy(rd.seal_pk, r->seal.pk, sizeof rd.seal_pk);
    rig_send(r, f, wire_encode_ready(f, sizeof f, &rd));
    /* The gateway's first frame to a READY worker is a heartbeat. */
    int n = recv_any(r, f, sizeof f);
    struct wire_hdr h;
    struct wire_heartbeat hb;
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(wire_decode_hdr(f, (size_t)n, &h), 0);
    ck_assert_int_eq(wire_decode_heartbeat(&h, f, &hb), 0);
    r->heartbeat_gateway = hb.gateway;
    RIG_WAIT(r, (pool_info(r->pool, 0, &wi), wi.live));
}

int rig_quiet(struct rig *r, int turns)
{
    uint8_t buf[WIRE_MAX_FRAME];
    int others = 0;
    for (int i = 0; i < turns; i++) {
        int n;
        while ((n = zmq_recv(r->dealer, buf, sizeof buf, ZMQ_DONTWAIT)) >= 0) {
            struct wire_hdr h;
            if (wire_decode_hdr(buf, (size_t)n, &h) != 0 || h.type != WIRE_HEARTBEAT)
                others++;
        }
        rig_turn(r);
    }
    return others;
}

void rig_worker_heartbeat(struct rig *r, int db_ok)
{
    uint8_t f[WIRE_MAX_FRAME];
    struct wire_heartbeat hb = {.db_ok = (uint8_t)db_ok};
    rig_send(r, f, wire_encode_heartbeat(f, sizeof f, &hb));
}

static int stopped;

static void on_stopped(void *arg)
{
    (void)arg;
    stopped = 1;
}

void rig_free(struct rig *r)
{
    /* pool_stop signals the workers whose pid it knows; one the helper has
     * not reported yet would only go at its start-up grace (30 s): wait
     * for its pid first. */
    struct pool_worker_info wi;
    RIG_WAIT(r, (pool_info(r->pool, 0, &wi), wi.pid > 0));
    stopped = 0;
    pool_stop(r->pool, on_stopped, NULL);
    RIG_WAIT(r, stopped);
    if (r->dealer)
        zmq_close(r->dealer);
    if (r->zctx)
        zmq_ctx_term(r->zctx);
    pool_free(r->pool);
    free(r->g.slots);
    free(r->g.free_slots);
    cfg_free(r->g.cfg);
    event_base_free(r->g.base);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    ck_assert_int_eq(system(cmd), 0);
}
