/* Tests for gateway/pool.c through its callbacks (struct pool_io): a real
 * pool, a real ZeroMQ ROUTER and a real worker process (gw_rig.c), with the
 * test speaking for the worker.  Session frames reach the owner with their
 * decoded header and the worker they came from; a worker's death reaches
 * it once per attached session, already detached; heartbeats carry the
 * gateway's incarnation; the pool restarts a dead worker and stops. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "gw_rig.h"
#include "wire.h"

#define MAX_SEEN 8

struct seen {
    int frames;
    struct worker *from;
    struct wire_hdr hdr;
    uint8_t frame[WIRE_MAX_FRAME];
    size_t len;
    int lost;
    struct pool_link *lost_links[MAX_SEEN];
    int lost_attached; /* a lost link that was still attached when reported */
};

static void on_frame(void *arg, struct worker *w, const struct wire_hdr *h, const uint8_t *f)
{
    size_t n = WIRE_HDR_LEN + h->len;
    struct seen *s = arg;
    s->frames++;
    s->from = w;
    s->hdr = *h;
    memcpy(s->frame, f, n);
    s->len = n;
}

static void on_lost(void *arg, struct pool_link *l)
{
    struct seen *s = arg;
    if (l->worker)
        s->lost_attached++;
    if (s->lost < MAX_SEEN)
        s->lost_links[s->lost] = l;
    s->lost++;
}

static const struct pool_io io = {.session_frame = on_frame, .worker_lost = on_lost};

START_TEST(frames_reach_the_owner_with_their_header)
{
    struct rig r;
    struct seen s;
    memset(&s, 0, sizeof s);
    rig_init(&r, &io, &s);
    ck_assert_ptr_null(pool_pick(r.pool)); /* no live worker yet */
    rig_worker_ready(&r, 4);
    ck_assert_uint_eq(r.heartbeat_gateway, r.g.incarnation);
    ck_assert_int_eq(pool_ready(r.pool), 0); /* live, database unknown */
    rig_worker_heartbeat(&r, 1);
    RIG_WAIT(&r, pool_ready(r.pool));

    struct worker *w = pool_pick(r.pool);
    ck_assert_ptr_nonnull(w);
    struct pool_link link = {0};
    pool_attach(w, &link);
    ck_assert_ptr_eq(link.worker, w);

    uint8_t f[WIRE_MAX_FRAME];
    static const uint8_t apdu[] = {0x90, 0x5a, 0x00, 0x00, 0x03, 0xee, 0xff, 0xc0, 0x00};
    int n = wire_encode_bytes(f, sizeof f, WIRE_COMMAND, 77, apdu, sizeof apdu);
    rig_send(&r, f, n);
    RIG_WAIT(&r, s.frames == 1);
    ck_assert_ptr_eq(s.from, w);
    ck_assert_uint_eq(s.hdr.type, WIRE_COMMAND);
    ck_assert_uint_eq(s.hdr.session, 77);
    ck_assert_uint_eq(s.len, (size_t)n);
    ck_assert_mem_eq(s.frame, f, (size_t)n);

    /* Heartbeats and statistics are the pool's own business. */
    rig_worker_heartbeat(&r, 1);
    struct wire_result res = {.op = WIRE_OP_CHECK, .status = WIRE_ST_OK};
    rig_send(&r, f, wire_encode_result(f, sizeof f, 78, &res));
    RIG_WAIT(&r, s.frames == 2);
    ck_assert_uint_eq(s.hdr.type, WIRE_RESULT);
    ck_assert_uint_eq(s.hdr.session, 78);

    /* And down: what the owner sends reaches the worker as it was. */
    n = wire_encode_empty(f, sizeof f, WIRE_CLIENT_GONE, 77);
    ck_assert_int_eq(pool_send(r.pool, w, f, (size_t)n), 0);
    uint8_t got[WIRE_MAX_FRAME];
    ck_assert_int_eq(rig_recv(&r, got, sizeof got), n);
    ck_assert_mem_eq(got, f, (size_t)n);
    /* OPEN frames are sealed to the key the worker's READY announced. */
    ck_assert_mem_eq(pool_worker_seal_pk(w), r.seal.pk, WIRE_SEAL_PK_LEN);

    pool_detach(&link);
    ck_assert_ptr_null(link.worker);
    ck_assert_int_eq(s.lost, 0);
    rig_free(&r);
}
END_TEST

START_TEST(frames_from_a_stranger_are_dropped)
{
    struct rig r;
    struct seen s;
    memset(&s, 0, sizeof s);
    rig_init(&r, &io, &s);
    rig_worker_ready(&r, 4);
    /* A second peer that never said READY for a worker we started. */
    void *stranger = zmq_socket(r.zctx, ZMQ_DEALER);
    char ep[160];
    snprintf(ep, sizeof ep, "ipc://%s/run/workers.sock", r.dir);
    ck_assert_int_eq(zmq_connect(stranger, ep), 0);
    uint8_t f[WIRE_MAX_FRAME];
    int n = wire_encode_bytes(f, sizeof f, WIRE_COMMAND, 5, (const uint8_t *)"\x90", 1);
    ck_assert_int_eq(zmq_send(stranger, f, (size_t)n, 0), n);
    struct wire_ready rd = {.pid = 1, .capacity = 4}; /* not our worker's pid */
    n = wire_encode_ready(f, sizeof f, &rd);
    ck_assert_int_eq(zmq_send(stranger, f, (size_t)n, 0), n);
    /* The real worker's frame, sent after them, is the first reported. */
    n = wire_encode_bytes(f, sizeof f, WIRE_MODAL, 6, (const uint8_t *)"hi", 2);
    rig_send(&r, f, n);
    RIG_WAIT(&r, s.frames == 1);
    ck_assert_uint_eq(s.hdr.session, 6);
    for (int i = 0; i < 50; i++)
        rig_turn(&r);
    ck_assert_int_eq(s.frames, 1);
    ck_assert_uint_eq(pool_count(r.pool), 1);
    int zero = 0;
    zmq_setsockopt(stranger, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(stranger);
    rig_free(&r);
}
END_TEST

START_TEST(a_dead_worker_loses_each_session_once)
{
    struct rig r;
    struct seen s;
    memset(&s, 0, sizeof s);
    rig_init(&r, &io, &s);
    rig_worker_ready(&r, 4);
    struct worker *w = pool_pick(r.pool);
    ck_assert_ptr_nonnull(w);
    struct pool_link a = {0}, b = {0};
    pool_attach(w, &a);
    pool_attach(w, &b);
    struct pool_worker_info wi;
    pool_info(r.pool, 0, &wi);
    ck_assert_uint_eq(wi.sessions, 2);

    ck_assert_int_eq(kill(r.worker_pid, SIGKILL), 0);
    RIG_WAIT(&r, s.lost == 2);
    ck_assert_ptr_eq(s.lost_links[0], &a);
    ck_assert_ptr_eq(s.lost_links[1], &b);
    ck_assert_int_eq(s.lost_attached, 0);
    ck_assert_ptr_null(a.worker);
    ck_assert_ptr_null(b.worker);
    pool_info(r.pool, 0, &wi);
    ck_assert_uint_eq(wi.sessions, 0);
    ck_assert_uint_eq(wi.restarts, 1);
    ck_assert_int_eq(wi.live, 0);

    /* Restarted after the back-off: a new process, live once it says READY. */
    pid_t old = r.worker_pid;
    RIG_WAIT(&r, (pool_info(r.pool, 0, &wi), wi.pid > 0 && wi.pid != old));
    rig_worker_ready(&r, 4);
    ck_assert_ptr_nonnull(pool_pick(r.pool));
    for (int i = 0; i < 20; i++)
        rig_turn(&r);
    ck_assert_int_eq(s.lost, 2);
    rig_free(&r);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("gw_pool");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, frames_reach_the_owner_with_their_header);
    tcase_add_test(tc, frames_from_a_stranger_are_dropped);
    tcase_add_test(tc, a_dead_worker_loses_each_session_once);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
